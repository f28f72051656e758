//! Piping a producer from one node's router into another's: two `rtp` transports with SRTP,
//! keys exchanged over the control sockets, PLI and NACK flowing back over the same pair.

use super::*;
use futures_util::future::BoxFuture;
use serde_json::Value;
use switchboard_client::protocol::{ClusterPipeResult, RpcError};

/// Runs a control request as a backend's would be run: forwarded to the node that owns its
/// object (or the node its `node` parameter names), else run here. The RPC layer provides it,
/// so that the cluster can build pipes and rooms out of ordinary requests.
pub trait Requests: Send + Sync {
    /// Runs `method` with `params` (a map) and returns the result as the owner answered it.
    fn call(
        &self,
        method: &'static str,
        params: Value,
    ) -> BoxFuture<'static, Result<Value, RpcError>>;
}

/// The cipher of the inter-node leg: AES-GCM, the fastest suite both ends have.
const PIPE_CRYPTO_SUITE: &str = "AEAD_AES_128_GCM";

/// Where the two ends of a pipe are, when the caller knows; `None` lets the directory say.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ends<'a> {
    /// The node holding the producer.
    pub source: Option<&'a str>,
    /// The node whose router of the room gets it (a room spanning nodes has one on each).
    pub destination: Option<&'a str>,
}

/// `params` with `node` set, when there is one to set.
pub(super) fn on(node: Option<&str>, mut params: Value) -> Value {
    if let (Some(node), Value::Object(map)) = (node, &mut params) {
        map.insert("node".to_owned(), Value::String(node.to_owned()));
    }
    params
}

pub(super) fn text(v: &Value, key: &str) -> Result<String, RpcError> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| RpcError::internal(format!("no `{key}` in {v}")))
}

pub(super) fn parsed<T: std::str::FromStr>(v: &str, what: &str) -> Result<T, RpcError> {
    v.parse()
        .map_err(|_| RpcError::internal(format!("{what} id {v:?}")))
}

impl Cluster {
    /// Pipes `producer` into `router`, wherever each is in the cluster: an `rtp` transport
    /// with SRTP on each side (each node's own `rtp` listen and announced addresses), keys
    /// exchanged over the control sockets, a consumer of the producer on the source side and
    /// a producer of what it sends on the destination side. Every step is an ordinary request
    /// run where its object is, so the two nodes need nothing but each other's control socket
    /// and UDP between their `rtp` ports. RTCP flows back the same way: receiver reports and
    /// NACKs from the destination side reach the source router, and a keyframe request for
    /// the piped producer becomes a PLI to the source. Whatever was built is closed again if
    /// a step fails.
    pub async fn pipe(
        &self,
        producer: ProducerId,
        router: RouterId,
        ends: Ends<'_>,
    ) -> Result<ClusterPipeResult, RpcError> {
        let requests = self.requests()?;
        let call = |method: &'static str, params: Value| requests.call(method, params);
        let dump = call(
            "producer.dump",
            on(ends.source, serde_json::json!({ "producer": producer })),
        )
        .await?;
        let source_router = text(&dump, "router")?;
        let kind = text(&dump, "kind")?;
        let caps = call(
            "router.capabilities",
            on(ends.destination, serde_json::json!({ "router": router })),
        )
        .await?;
        let options = serde_json::json!({ "srtp": true, "srtp_crypto_suite": PIPE_CRYPTO_SUITE });
        let there = call(
            "transport.create",
            on(
                ends.destination,
                serde_json::json!({ "router": router, "kind": "rtp", "options": options }),
            ),
        )
        .await?;
        let there_id = text(&there, "id")?;
        let built = async {
            let here = call(
                "transport.create",
                on(
                    ends.source,
                    serde_json::json!({ "router": source_router, "kind": "rtp", "options": options }),
                ),
            )
            .await?;
            let here_id = text(&here, "id")?;
            let remote = |t: &Value| {
                serde_json::json!({
                    "ip": t["local"]["ip"],
                    "port": t["local"]["port"],
                    "srtp": t["local"]["srtp"],
                })
            };
            let steps = async {
                call(
                    "transport.connect",
                    serde_json::json!({ "transport": here_id, "remote": remote(&there) }),
                )
                .await?;
                let consumer = call(
                    "consumer.create",
                    serde_json::json!({
                        "transport": here_id,
                        "producer": producer,
                        "rtp_capabilities": caps,
                    }),
                )
                .await?;
                call(
                    "transport.connect",
                    serde_json::json!({ "transport": there_id, "remote": remote(&here) }),
                )
                .await?;
                let mut parameters = consumer["rtp_parameters"].clone();
                // The piped stream is a plain RTP stream on the far side: no m-line to match.
                if let Value::Object(map) = &mut parameters {
                    map.remove("mid");
                }
                let piped = call(
                    "producer.create",
                    serde_json::json!({
                        "transport": there_id,
                        "kind": kind,
                        "rtp_parameters": parameters,
                    }),
                )
                .await?;
                Ok::<_, RpcError>((text(&consumer, "id")?, text(&piped, "id")?))
            };
            match steps.await {
                Ok((consumer, piped)) => Ok((here_id, consumer, piped)),
                Err(e) => {
                    let _ = call(
                        "transport.close",
                        serde_json::json!({ "transport": here_id }),
                    )
                    .await;
                    Err(e)
                }
            }
        };
        match built.await {
            Ok((source_transport, source_consumer, piped)) => {
                self.record_pipe_peers(&there_id, &source_transport, producer)
                    .await?;
                Ok(ClusterPipeResult {
                    producer: parsed(&piped, "producer")?,
                    transport: parsed(&there_id, "transport")?,
                    source_transport: parsed(&source_transport, "transport")?,
                    source_consumer: parsed(&source_consumer, "consumer")?,
                })
            }
            Err(e) => {
                let _ = call(
                    "transport.close",
                    serde_json::json!({ "transport": there_id }),
                )
                .await;
                Err(e)
            }
        }
    }

    /// Tells the nodes of both ends of a pipe which node holds the other end, so that each
    /// closes its end when the other node is lost, and the source node which track its end
    /// feeds (`cluster.fanout`).
    async fn record_pipe_peers(
        &self,
        there: &str,
        here: &str,
        producer: ProducerId,
    ) -> Result<(), RpcError> {
        // `None`: this node holds it.
        let node_of = |id: String| async move {
            self.owner_elsewhere(&serde_json::json!({ "transport": id }))
                .await
        };
        let there_node = node_of(there.to_owned()).await?;
        let here_node = node_of(here.to_owned()).await?;
        let name = |n: &Option<Located>| {
            n.as_ref()
                .map_or_else(|| self.inner.node.clone(), |l| l.node.clone())
        };
        for (transport, owner, peer, feeds) in [
            (there, &there_node, name(&here_node), None),
            (here, &here_node, name(&there_node), Some(producer)),
        ] {
            match owner {
                None => {
                    let id = parsed(transport, "transport")?;
                    self.record_pipe(id, peer);
                    if let Some(p) = feeds {
                        self.record_feed(id, p);
                    }
                }
                Some(owner) => {
                    let mut params = serde_json::json!({ "transport": transport, "peer": peer });
                    if let Some(p) = feeds {
                        params["producer"] = serde_json::json!(p);
                    }
                    self.forward(owner, "cluster.pipe_peer", params).await?;
                }
            }
        }
        Ok(())
    }
}
