use super::*;

#[test]
fn bus_gaps_are_placed_after_what_the_full_queue_held() {
    let rpc = RpcShared::new(
        crate::settings::RpcConfig::default(),
        super::super::MethodTable::builtin(),
    );
    let event = |worker| Event::WorkerStarted {
        worker: switchboard_core::WorkerId(worker),
    };
    let (tx, mut bus) = mpsc::channel(4);
    // Some other subscriber's drop before: not ours.
    let mut gaps = BusGaps::new(&bus, 5);
    for w in 0..4 {
        tx.try_send(event(w)).unwrap();
    }
    // The queue is full; the bus drops 3 of ours (its counter: 5 + 3).
    assert!(tx.try_send(event(9)).is_err());
    let mut lost = 0;
    for expected_lost in [0, 0, 0, 3] {
        bus.try_recv().unwrap();
        gaps.received(&bus, 8);
        gaps.passed(&mut lost, &rpc);
        assert_eq!(lost, expected_lost);
    }
    // After the gap, a queue that never filled drops nothing of ours, whatever the
    // counter says.
    tx.try_send(event(5)).unwrap();
    bus.try_recv().unwrap();
    gaps.received(&bus, 20);
    gaps.passed(&mut lost, &rpc);
    assert_eq!(lost, 3);
    assert_eq!(rpc.stats().events_dropped, 3);
}
