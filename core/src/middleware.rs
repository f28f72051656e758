//! Middleware: code that sees a room's media and events (logging, recording, mixing, yours).
//!
//! A [`MiddlewareFactory`] is registered once by name in a [`MiddlewareRegistry`]; a router
//! creates a [`Middleware`] instance from it when the middleware is attached to the room.
//! Instances live on the router's worker thread. The router catches a panicking middleware
//! and detaches it, so a bug in one never takes the room down.

use crate::error::{Error, ErrorCode, Result};
use crate::event::Event;
use crate::id::{ProducerId, RouterId, WorkerId};
use rtc_rtp::Packet;
use serde_json::Value;
use std::sync::Arc;

/// What a middleware instance is told about the room it joins.
#[derive(Clone, Debug)]
pub struct MiddlewareContext {
    /// The room.
    pub router: RouterId,
    /// The worker it runs on.
    pub worker: WorkerId,
}

/// One middleware attached to one room.
pub trait Middleware {
    /// A room event (producer added, consumer closed, ...).
    fn on_event(&mut self, _event: &Event) {}
    /// An RTP packet of one of the room's producers, as received (before rewriting).
    /// This runs on the forwarding path: do little here, queue heavy work elsewhere.
    fn on_rtp(&mut self, _producer: ProducerId, _packet: &Packet) {}
    /// Statistics for `stats`/`dump`.
    fn stats(&self) -> Value {
        Value::Null
    }
    /// Detached or the room closed. Finish files and release resources here.
    fn close(&mut self) {}
}

/// Creates middleware instances; registered once per server.
pub trait MiddlewareFactory: Send + Sync + 'static {
    /// The name the backend attaches it by, e.g. `recorder`.
    fn name(&self) -> &'static str;
    /// Creates an instance for a room from middleware-specific options.
    fn create(&self, ctx: MiddlewareContext, options: &Value) -> Result<Box<dyn Middleware>>;
}

/// The middleware available to this server, in registration order.
#[derive(Clone, Default)]
pub struct MiddlewareRegistry {
    factories: Vec<Arc<dyn MiddlewareFactory>>,
}

impl MiddlewareRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a factory. Names are unique.
    pub fn register(&mut self, factory: Arc<dyn MiddlewareFactory>) -> Result<()> {
        if self.get(factory.name()).is_some() {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!("middleware {:?} is already registered", factory.name()),
            ));
        }
        self.factories.push(factory);
        Ok(())
    }

    /// The factory with this name.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn MiddlewareFactory>> {
        self.factories.iter().find(|f| f.name() == name)
    }

    /// The factory with this name, or an `unknown_plugin` error listing the known ones.
    pub fn require(&self, name: &str) -> Result<&Arc<dyn MiddlewareFactory>> {
        self.get(name).ok_or_else(|| {
            Error::new(
                ErrorCode::UnknownPlugin,
                format!(
                    "no middleware {name:?}; registered: {}",
                    self.names().join(", ")
                ),
            )
        })
    }

    /// Registered names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.factories.iter().map(|f| f.name()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter;
    impl MiddlewareFactory for Counter {
        fn name(&self) -> &'static str {
            "counter"
        }
        fn create(&self, _ctx: MiddlewareContext, _options: &Value) -> Result<Box<dyn Middleware>> {
            struct Instance;
            impl Middleware for Instance {}
            Ok(Box::new(Instance))
        }
    }

    #[test]
    fn registry_finds_by_name_and_rejects_duplicates() {
        let mut r = MiddlewareRegistry::new();
        r.register(Arc::new(Counter)).unwrap();
        assert_eq!(
            r.register(Arc::new(Counter)).unwrap_err().code,
            ErrorCode::AlreadyExists
        );
        assert!(r.get("counter").is_some());
        assert_eq!(
            r.require("nope").err().unwrap().code,
            ErrorCode::UnknownPlugin
        );
    }
}
