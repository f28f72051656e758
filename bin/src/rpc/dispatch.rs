//! The method table: names to typed handlers.
//!
//! A handler is an `async fn(Ctx, Params) -> Result<Output, RpcError>` where `Params`
//! deserializes from the request's parameter map (declare it `#[serde(deny_unknown_fields)]`
//! so a misspelt field is an error, not a silently ignored option) and `Output` serializes
//! to the result. The table does the rest: unknown names become `method_not_found`,
//! parameters that do not fit become `invalid_params` naming the field, and results are
//! converted to the wire's data model.

use super::{RpcError, RpcShared, RpcStats, Subscriptions, wire};
use crate::settings::RpcConfig;
use rmpv::Value as Msgpack;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use switchboard_actors::ServerHandle;
use switchboard_core::{ErrorCode, RouterId};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Handler = Box<dyn Fn(Ctx, Value) -> BoxFuture<Result<Value, RpcError>> + Send + Sync>;

/// What a handler may use: the server, and the connection the request came on.
#[derive(Clone)]
pub struct Ctx {
    server: ServerHandle,
    pub(crate) rpc: Arc<RpcShared>,
    pub(crate) conn: Arc<dyn ConnectionEvents>,
}

/// What a handler may ask of the connection its request came on: event subscriptions.
pub(crate) trait ConnectionEvents: Send + Sync {
    /// Adds a subscription (`None` for everything); the connection starts sending events.
    fn subscribe(&self, ctx: &Ctx, router: Option<RouterId>) -> Result<Subscriptions, RpcError>;
    /// Removes a subscription (`None` removes all of them).
    fn unsubscribe(&self, router: Option<RouterId>) -> Subscriptions;
}

impl Ctx {
    pub(crate) fn new(
        server: ServerHandle,
        rpc: Arc<RpcShared>,
        conn: Arc<dyn ConnectionEvents>,
    ) -> Self {
        Self { server, rpc, conn }
    }

    /// The server the methods act on.
    pub fn server(&self) -> &ServerHandle {
        &self.server
    }

    /// The control socket's configuration.
    pub fn config(&self) -> &RpcConfig {
        &self.rpc.config
    }

    /// The control socket's counters.
    pub fn rpc_stats(&self) -> RpcStats {
        self.rpc.stats()
    }

    /// The node's cluster membership, when `[cluster]` is configured.
    pub fn cluster(&self) -> Option<&crate::cluster::Cluster> {
        self.rpc.cluster.get()
    }

    /// Every method name the socket answers to, sorted.
    pub fn method_names(&self) -> Vec<&'static str> {
        self.rpc.methods.names()
    }

    /// Runs a method through this context's own table, as a request on its connection would.
    pub async fn call(&self, method: &str, params: Msgpack) -> Result<Value, RpcError> {
        self.rpc.methods.call(self, method, params).await
    }
}

/// Method names mapped to handlers.
#[derive(Default)]
pub struct MethodTable {
    methods: BTreeMap<&'static str, Handler>,
}

impl MethodTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a method.
    ///
    /// # Panics
    ///
    /// When `name` is already taken: two handlers for one name is a programming error that
    /// must fail at start-up, not pick a winner silently.
    pub fn add<P, R, F, Fut>(&mut self, name: &'static str, handler: F) -> &mut Self
    where
        P: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        F: Fn(Ctx, P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, RpcError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: Handler = Box::new(move |ctx, params| {
            let handler = handler.clone();
            Box::pin(async move {
                let params = typed_params::<P>(params)?;
                let output = handler(ctx, params).await?;
                serde_json::to_value(output)
                    .map_err(|e| RpcError::internal(format!("cannot encode the result: {e}")))
            })
        });
        let previous = self.methods.insert(name, erased);
        assert!(previous.is_none(), "RPC method {name:?} registered twice");
        self
    }

    /// The table's own spelling of a method name, usable as a metric label; `None` for names
    /// it does not know.
    pub fn canonical(&self, name: &str) -> Option<&'static str> {
        self.methods.get_key_value(name).map(|(k, _)| *k)
    }

    /// Whether a method of that name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.methods.contains_key(name)
    }

    /// Every method name, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.methods.keys().copied().collect()
    }

    /// Runs `method` with raw parameters as they came off the wire.
    pub async fn call(&self, ctx: &Ctx, method: &str, params: Msgpack) -> Result<Value, RpcError> {
        // An unknown method is reported before its parameters are looked at.
        self.handler(method)?;
        let params = wire::params_map(params)?;
        self.call_json(ctx, method, params).await
    }

    /// Like [`MethodTable::call`] with parameters already read into a map: forwarded to the
    /// owner of their object when that is another node of the cluster, else run here.
    pub(crate) async fn call_json(
        &self,
        ctx: &Ctx,
        method: &str,
        mut params: Value,
    ) -> Result<Value, RpcError> {
        // An unknown method is not forwarded anywhere.
        self.handler(method)?;
        if let Some(cluster) = ctx.cluster() {
            if method == "router.create"
                && cluster.places_rooms()
                && let Value::Object(map) = &mut params
                && map.get("node").is_none_or(Value::is_null)
                && map.get("worker").is_none_or(Value::is_null)
                && let Some(target) = cluster.place_room().await
            {
                map.insert("node".to_owned(), Value::String(target.node.clone()));
                return cluster.forward(&target, method, params).await;
            }
            if method == "peer.join"
                && let Some(target) = cluster.place_peer(&params).await?
            {
                if let Value::Object(map) = &mut params {
                    map.insert("node".to_owned(), Value::String(target.node.clone()));
                }
                cluster.remember_peer(&params, &target);
                return cluster.forward(&target, method, params).await;
            }
            if let Some(first) = cluster.room_request_owner(method, &params).await? {
                return cluster.forward(&first, method, params).await;
            }
            if forwardable(method)
                && let Some(owner) = cluster.owner_elsewhere(&params).await?
            {
                return cluster.forward(&owner, method, params).await;
            }
        }
        self.call_here(ctx, method, params).await
    }

    /// Runs `method` here, never forwarding it: what a request that stays on this node, and
    /// `cluster.forward` for the node that sent it, come to.
    pub(crate) async fn call_here(
        &self,
        ctx: &Ctx,
        method: &str,
        mut params: Value,
    ) -> Result<Value, RpcError> {
        let handler = self.handler(method)?;
        if let Some(cluster) = ctx.cluster() {
            strip_own_node(cluster, &mut params);
        }
        if method == "router.create" && ctx.rpc.draining.load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(draining_error());
        }
        handler(ctx.clone(), params).await
    }

    fn handler(&self, method: &str) -> Result<&Handler, RpcError> {
        self.methods.get(method).ok_or_else(|| {
            RpcError::new(
                ErrorCode::MethodNotFound,
                format!("no method named {method:?}"),
            )
        })
    }
}

/// How the cluster runs the requests it builds pipes and rooms from: as a backend's request
/// would run (forwarded to the owner of its object), on no connection.
pub(crate) struct InternalRequests {
    ctx: Ctx,
}

impl InternalRequests {
    pub(crate) fn new(server: ServerHandle, rpc: Arc<RpcShared>) -> Self {
        Self {
            ctx: Ctx::new(server, rpc, Arc::new(NoConnection)),
        }
    }
}

impl crate::cluster::Requests for InternalRequests {
    fn call(
        &self,
        method: &'static str,
        params: Value,
    ) -> futures_util::future::BoxFuture<'static, Result<Value, RpcError>> {
        let ctx = self.ctx.clone();
        Box::pin(async move { ctx.rpc.methods.call_json(&ctx, method, params).await })
    }
}

/// The connection of internal requests: it takes no events.
struct NoConnection;

impl ConnectionEvents for NoConnection {
    fn subscribe(&self, _: &Ctx, _: Option<RouterId>) -> Result<Subscriptions, RpcError> {
        Err(RpcError::invalid_param(
            "router",
            "an internal request cannot subscribe to events",
        ))
    }

    fn unsubscribe(&self, _: Option<RouterId>) -> Subscriptions {
        Subscriptions::default()
    }
}

/// Methods whose objects may live on another node of a cluster. The others describe or
/// act on the node that answers (`server.*`, `worker.list`, `router.list`), on the caller's
/// own connection (`auth`, `events.*`), or on the cluster itself (`cluster.*`).
fn forwardable(method: &str) -> bool {
    !(method == "auth"
        || method.starts_with("server.")
        || method.starts_with("worker.")
        || method.starts_with("events.")
        || method.starts_with("cluster.")
        || method == "router.list")
}

/// What `router.create` answers on a draining node that could place the room nowhere else.
fn draining_error() -> RpcError {
    RpcError::new(
        ErrorCode::Closed,
        "this node is draining: it takes no new rooms (server.drain)",
    )
}

/// `node` names where a request runs; once it runs there, the method itself must not see it.
fn strip_own_node(cluster: &crate::cluster::Cluster, params: &mut Value) {
    if let Value::Object(map) = params
        && map
            .get("node")
            .is_some_and(|n| n.is_null() || n.as_str() == Some(cluster.node_id()))
    {
        map.remove("node");
    }
}

/// Deserializes a parameter map, naming the offending field on failure.
pub fn typed_params<P: DeserializeOwned>(params: Value) -> Result<P, RpcError> {
    serde_path_to_error::deserialize(params).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let field = field_name(&path, &inner);
        let message = if path == "." {
            inner
        } else {
            format!("{path}: {inner}")
        };
        RpcError::new(ErrorCode::InvalidParams, message)
            .with_data(serde_json::json!({ "field": field }))
    })
}

/// The field an error is about. For a missing field the path is that of the map lacking
/// it, and only the message names the field.
fn field_name(path: &str, message: &str) -> String {
    let named = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (path, named) {
        (".", Some(name)) => name.to_owned(),
        (_, Some(name)) => format!("{path}.{name}"),
        (_, None) => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Params {
        router: String,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u8,
    }

    fn field_of(params: Value) -> (String, String) {
        let e = typed_params::<Params>(params).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidParams);
        let field = e.data.unwrap()["field"].as_str().unwrap().to_owned();
        (field, e.message)
    }

    #[test]
    fn invalid_params_name_the_field() {
        assert_eq!(field_of(json!({})).0, "router");
        assert_eq!(field_of(json!({ "router": 1 })).0, "router");
        assert_eq!(field_of(json!({ "router": "r", "extra": 1 })).0, "extra");
        let (field, message) = field_of(json!({ "router": "r", "inner": { "count": 300 } }));
        assert_eq!(field, "inner.count");
        assert!(message.starts_with("inner.count: "), "{message}");
        assert_eq!(
            field_of(json!({ "router": "r", "inner": { "cuont": 1 } })).0,
            "inner.cuont"
        );
    }

    #[test]
    fn the_builtin_table_registers_each_name_once() {
        let table = MethodTable::builtin();
        assert!(table.contains("router.create"));
        assert!(!table.contains("router.explode"));
    }
}
