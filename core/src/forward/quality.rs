//! Receiver-reported media quality as fixed-bucket histograms.
//!
//! Receiver reports arrive on the worker thread, next to the forwarding table, and must not
//! cost a lock or an allocation there. So each router keeps plain counters per bucket, and
//! whoever reports them (the RPC `router.stats`, the Prometheus endpoint) reads and adds them
//! up later. The buckets are fixed so that histograms of different routers and workers can be
//! summed bucket by bucket.

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

/// The most buckets any histogram here has, the `+Inf` bucket included.
pub const MAX_BUCKETS: usize = 12;

/// Upper bounds of the round-trip-time buckets, in seconds.
pub const RTT_SECONDS_BOUNDS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2];

/// Upper bounds of the fraction-lost buckets (0 to 1, as receivers report it per interval).
pub const LOSS_RATIO_BOUNDS: &[f64] = &[0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];

/// Upper bounds of the interarrival-jitter buckets, in seconds.
pub const JITTER_SECONDS_BOUNDS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32];

/// A histogram with fixed upper bounds: counts per bucket, their sum and their number.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    /// `counts[i]` holds observations in `(bounds[i-1], bounds[i]]`; the last used slot,
    /// `counts[bounds.len()]`, holds those above every bound.
    counts: [u64; MAX_BUCKETS],
    sum: f64,
    count: u64,
}

impl Histogram {
    /// An empty histogram with these upper bounds (ascending, at most `MAX_BUCKETS - 1`).
    pub const fn new(bounds: &'static [f64]) -> Self {
        assert!(bounds.len() < MAX_BUCKETS);
        Self {
            bounds,
            counts: [0; MAX_BUCKETS],
            sum: 0.0,
            count: 0,
        }
    }

    /// Counts one observation. NaN is ignored: it fits no bucket and would poison the sum.
    pub fn observe(&mut self, value: f64) {
        if value.is_nan() {
            return;
        }
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += value;
        self.count += 1;
    }

    /// Adds another histogram with the same bounds (a different one is a programming error
    /// and is ignored rather than mixing incompatible buckets).
    pub fn merge(&mut self, other: &Histogram) {
        if self.bounds != other.bounds {
            debug_assert!(false, "merging histograms with different bounds");
            return;
        }
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.sum += other.sum;
        self.count += other.count;
    }

    /// The upper bounds, without `+Inf`.
    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }

    /// Cumulative counts per upper bound, as Prometheus writes buckets: one per bound, then
    /// the `+Inf` bucket (which equals [`Histogram::count`]).
    pub fn cumulative(&self) -> impl Iterator<Item = u64> + '_ {
        self.counts[..=self.bounds.len()]
            .iter()
            .scan(0u64, |total, c| {
                *total += c;
                Some(*total)
            })
    }

    /// Sum of all observations.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count
    }
}

impl Serialize for Histogram {
    /// `{"le": [...bounds], "buckets": [...cumulative, +Inf last], "sum": .., "count": ..}`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let buckets: Vec<u64> = self.cumulative().collect();
        let mut s = serializer.serialize_struct("Histogram", 4)?;
        s.serialize_field("le", self.bounds)?;
        s.serialize_field("buckets", &buckets)?;
        s.serialize_field("sum", &self.sum)?;
        s.serialize_field("count", &self.count)?;
        s.end()
    }
}

/// What receivers report about the streams a router sends them, one observation per
/// reception report block.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QualityHistograms {
    /// Round-trip time, in seconds (only reports that echo one of our sender reports).
    pub rtt_seconds: Histogram,
    /// Fraction of packets lost since the receiver's previous report, 0 to 1.
    pub loss_ratio: Histogram,
    /// Interarrival jitter, in seconds.
    pub jitter_seconds: Histogram,
}

impl Default for QualityHistograms {
    fn default() -> Self {
        Self {
            rtt_seconds: Histogram::new(RTT_SECONDS_BOUNDS),
            loss_ratio: Histogram::new(LOSS_RATIO_BOUNDS),
            jitter_seconds: Histogram::new(JITTER_SECONDS_BOUNDS),
        }
    }
}

impl QualityHistograms {
    /// Adds another router's histograms.
    pub fn merge(&mut self, other: &QualityHistograms) {
        self.rtt_seconds.merge(&other.rtt_seconds);
        self.loss_ratio.merge(&other.loss_ratio);
        self.jitter_seconds.merge(&other.jitter_seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let mut h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 2.5, f64::NAN] {
            h.observe(v);
        }
        assert_eq!(h.cumulative().collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(h.count(), 4);
        assert_eq!(h.sum(), 5.5);
    }

    #[test]
    fn merging_adds_bucket_by_bucket() {
        let mut a = QualityHistograms::default();
        let mut b = QualityHistograms::default();
        a.loss_ratio.observe(0.0);
        b.loss_ratio.observe(0.3);
        b.rtt_seconds.observe(0.03);
        a.merge(&b);
        assert_eq!(a.loss_ratio.count(), 2);
        assert_eq!(a.rtt_seconds.count(), 1);
        let json = serde_json::to_value(&a.loss_ratio).unwrap();
        assert_eq!(json["count"], 2);
        assert_eq!(
            json["buckets"].as_array().unwrap().len(),
            LOSS_RATIO_BOUNDS.len() + 1
        );
    }
}
