//! Typed identifiers for every object in the server.
//!
//! Each id is a UUID behind its own type, so a `ConsumerId` can never be passed where a
//! `ProducerId` is expected. Workers are numbered instead, because they are created once at
//! start-up and their index is what operators see in logs and metrics.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random id.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::from_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// A router, which is one room on one worker.
    RouterId
);
uuid_id!(
    /// A transport: one connection of a peer, or one plain-RTP, pipe or direct endpoint.
    TransportId
);
uuid_id!(
    /// A producer: one incoming track.
    ProducerId
);
uuid_id!(
    /// A consumer: one outgoing track, fed by one producer.
    ConsumerId
);

/// A worker, numbered from 0 in start-up order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Debug)]
#[serde(transparent)]
pub struct WorkerId(pub u32);

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "worker-{}", self.0)
    }
}

/// A peer: one participant in one room, grouping its transports. Chosen by the backend
/// (usually its own user or session id), unique within a room.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Debug)]
#[serde(transparent)]
pub struct PeerId(pub String);

impl PeerId {
    /// Longest accepted id, in bytes.
    pub const MAX_LEN: usize = 128;

    /// A peer id, if it is 1 to [`PeerId::MAX_LEN`] bytes without control characters.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty() && s.len() <= Self::MAX_LEN && !s.chars().any(char::is_control);
        ok.then(|| Self(s.to_owned()))
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text_and_serde() {
        let id = ProducerId::new();
        let parsed: ProducerId = id.to_string().parse().unwrap();
        assert_eq!(id, parsed);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_ne!(ProducerId::new(), ProducerId::new());
    }

    #[test]
    fn peer_ids_are_bounded_printable_text() {
        assert_eq!(PeerId::parse("alice").unwrap().to_string(), "alice");
        assert!(PeerId::parse("").is_none());
        assert!(PeerId::parse("a\nb").is_none());
        assert!(PeerId::parse(&"x".repeat(129)).is_none());
    }

    #[test]
    fn bad_id_text_is_an_error() {
        assert!("not-a-uuid".parse::<RouterId>().is_err());
    }
}
