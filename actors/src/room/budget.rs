//! The room-wide limit on transports, shared by every router of a room.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use switchboard_core::{Error, Result};

/// How many transports the backend sees in a room, across every router it spans (each
/// router only knows its own). Pipes between the room's routers do not count.
#[derive(Debug, Default)]
pub(crate) struct TransportBudget {
    taken: AtomicUsize,
}

impl TransportBudget {
    /// Takes a slot if fewer than `max` are taken; it is given back if the slot is dropped
    /// before [`TransportSlot::keep`].
    pub fn take(self: &Arc<Self>, max: usize) -> Result<TransportSlot> {
        self.taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| Error::limit("transports per room", max))?;
        Ok(TransportSlot(Some(self.clone())))
    }

    /// A kept slot's transport closed.
    pub fn release(&self) {
        let _ = self
            .taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

/// A slot taken for a transport being created.
pub(crate) struct TransportSlot(Option<Arc<TransportBudget>>);

impl TransportSlot {
    /// A slot for a transport the limit does not count (a pipe between the room's routers).
    pub fn uncounted() -> Self {
        Self(None)
    }

    /// The transport exists: the slot stays taken until [`TransportBudget::release`].
    pub fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TransportSlot {
    fn drop(&mut self) {
        if let Some(budget) = self.0.take() {
            budget.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_slot_is_given_back_and_a_kept_one_is_not() {
        let budget = Arc::new(TransportBudget::default());
        let kept = budget.take(2).expect("first");
        kept.keep();
        drop(budget.take(2).expect("second"));
        let second = budget.take(2).expect("second again");
        assert!(budget.take(2).is_err(), "the limit holds");
        second.keep();
        budget.release();
        budget.take(2).expect("a released slot is free").keep();
        assert!(budget.take(2).is_err());
    }
}
