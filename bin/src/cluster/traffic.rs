//! Traffic between nodes: what this node's ends of pipes (`cluster.pipe`) carried, by the node
//! at the other end, as counters that never go backwards.
//!
//! A pipe end is an `rtp` transport; its plugin counts what it sent and received. Those counts
//! vanish with the transport, so each read is remembered, and when a pipe end closes its last
//! reading moves into the node's retired totals. A pipe closed because its node was lost is
//! read just before it closes; one closed otherwise (its room closed, the backend closed it)
//! keeps what the last read saw, which undercounts at most what it carried since.

use std::collections::{BTreeMap, HashMap, HashSet};
use switchboard_core::TransportId;
use switchboard_core::report::TransportStats;

/// Packets and bytes through pipe ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PipeTraffic {
    /// RTP packets received from the other node.
    pub packets_in: u64,
    /// Bytes received from the other node (RTP and RTCP datagrams, SRTP included).
    pub bytes_in: u64,
    /// RTP packets sent to the other node.
    pub packets_out: u64,
    /// Bytes sent to the other node.
    pub bytes_out: u64,
}

impl PipeTraffic {
    /// The counts of an `rtp` transport's statistics; `None` for another plugin's.
    pub fn from_stats(stats: &TransportStats) -> Option<Self> {
        let plugin = &stats.plugin;
        Some(Self {
            packets_in: plugin.get("rtp_received")?.as_u64()?,
            bytes_in: plugin.get("bytes_received")?.as_u64()?,
            packets_out: plugin.get("rtp_sent")?.as_u64()?,
            bytes_out: plugin.get("bytes_sent")?.as_u64()?,
        })
    }

    fn add(&mut self, other: &Self) {
        self.packets_in += other.packets_in;
        self.bytes_in += other.bytes_in;
        self.packets_out += other.packets_out;
        self.bytes_out += other.bytes_out;
    }
}

/// The readings of open pipe ends and the totals of closed ones.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    open: HashMap<TransportId, (String, PipeTraffic)>,
    retired: BTreeMap<String, PipeTraffic>,
}

impl Ledger {
    /// A reading of an open pipe end to `node`.
    pub fn read(&mut self, transport: TransportId, node: &str, traffic: PipeTraffic) {
        self.open.insert(transport, (node.to_owned(), traffic));
    }

    /// Pipe ends no longer open: their last readings become their nodes' retired totals.
    pub fn retire_all_but(&mut self, open: &HashSet<TransportId>) {
        let closed: Vec<TransportId> = self
            .open
            .keys()
            .filter(|t| !open.contains(t))
            .copied()
            .collect();
        for t in closed {
            if let Some((node, traffic)) = self.open.remove(&t) {
                self.retired.entry(node).or_default().add(&traffic);
            }
        }
    }

    /// Everything carried, by node: retired totals plus the open ends' last readings.
    pub fn by_node(&self) -> BTreeMap<String, PipeTraffic> {
        let mut all = self.retired.clone();
        for (node, traffic) in self.open.values() {
            all.entry(node.clone()).or_default().add(traffic);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(packets: u64) -> PipeTraffic {
        PipeTraffic {
            packets_in: packets,
            bytes_in: packets * 100,
            packets_out: packets * 2,
            bytes_out: packets * 200,
        }
    }

    #[test]
    fn a_closed_pipe_keeps_counting_in_its_node_total() {
        let (a, b) = (TransportId::new(), TransportId::new());
        let mut ledger = Ledger::default();
        ledger.read(a, "node-a", t(10));
        ledger.read(b, "node-a", t(5));
        assert_eq!(ledger.by_node()["node-a"].packets_in, 15);
        ledger.retire_all_but(&HashSet::from([b]));
        ledger.read(b, "node-a", t(7));
        let now = ledger.by_node()["node-a"];
        assert_eq!(now.packets_in, 17, "a's 10 retired, b's 7 open");
        assert_eq!(now.bytes_out, 3400);
        ledger.retire_all_but(&HashSet::new());
        assert_eq!(
            ledger.by_node()["node-a"],
            now,
            "nothing lost when b closes"
        );
    }
}
