use super::*;

#[test]
fn rpc_requests_render_by_method_and_result_with_latency_buckets() {
    let m = RpcMetrics::new();
    m.record("router.create", "ok", Duration::from_millis(3));
    m.record("router.create", "ok", Duration::from_millis(30));
    m.record("unknown", "method_not_found", Duration::from_micros(10));
    let text = m.render();
    assert!(
        text.contains("switchboard_rpc_requests_total{method=\"router.create\",result=\"ok\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE switchboard_rpc_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        text.contains(
            "switchboard_rpc_request_duration_seconds_bucket{method=\"router.create\",le=\"0.005\"} 1"
        ),
        "{text}"
    );
}
