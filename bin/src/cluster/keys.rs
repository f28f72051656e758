//! The Redis keys of one cluster, all under its `cluster.key_prefix` (docs/cluster.md).

/// Key names.
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// A node's entry (JSON of its record), with a TTL renewed by its heartbeat.
    pub(super) fn node(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }

    /// The set of nodes that registered and were not yet swept.
    pub(super) fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// The set of directory keys a node wrote, so that they can be removed with it.
    pub(super) fn owned(&self, node: &str) -> String {
        format!("{}:owned:{node}", self.prefix)
    }

    /// The pub/sub channel of the nodes' room events.
    pub(super) fn events(&self) -> String {
        format!("{}:events", self.prefix)
    }

    /// Which node owns an object: `kind` is `router`, `transport`, `producer` or `consumer`.
    pub(super) fn object(&self, kind: &str, id: &str) -> String {
        format!("{}:{kind}:{id}", self.prefix)
    }

    /// Whether `node` holds a router of `room` (one key per node and room, so that a node's
    /// share is written, repaired and swept like its other directory entries).
    pub(super) fn span(&self, room: switchboard_core::RouterId, node: &str) -> String {
        self.object("span", &format!("{room}/{node}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_under_the_prefix() {
        let k = Keys::new("sb");
        assert_eq!(k.node("a"), "sb:node:a");
        assert_eq!(k.nodes(), "sb:nodes");
        assert_eq!(k.events(), "sb:events");
        assert_eq!(k.owned("a"), "sb:owned:a");
        assert_eq!(k.object("router", "r"), "sb:router:r");
        assert_eq!(k.object("producer", "p"), "sb:producer:p");
        let room = switchboard_core::RouterId::new();
        assert_eq!(k.span(room, "a"), format!("sb:span:{room}/a"));
    }
}
