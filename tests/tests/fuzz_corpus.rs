//! The fuzz targets (`fuzz/`) over their seed corpus, in the normal suite: every seed, and
//! every input the fuzzer once found a crash with (kept in the corpus), must run without a
//! panic. `scripts/fuzz` does the fuzzing itself.

#[path = "../../fuzz/src/targets.rs"]
mod targets;

use std::path::Path;

/// Runs `target` on every file of `fuzz/corpus/<name>`; there must be some.
fn replay(name: &str, target: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(name);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        let outcome = std::panic::catch_unwind(|| target(&data));
        assert!(outcome.is_ok(), "{name} panics on {}", path.display());
        n += 1;
    }
    assert!(n > 0, "no seeds in {}", dir.display());
}

#[test]
fn rpc_frame_seeds() {
    replay("rpc_frame", targets::rpc_frame);
}

#[test]
fn sdp_seeds() {
    replay("sdp", targets::sdp);
}

#[test]
fn forwarder_seeds() {
    replay("forwarder", targets::forwarder);
}

#[test]
fn stun_demux_seeds() {
    replay("stun_demux", targets::stun_demux);
}

#[test]
fn depacketizers_seeds() {
    replay("depacketizers", targets::depacketizers);
}
