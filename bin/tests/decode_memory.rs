//! What decoding a control-socket message costs in memory, measured with a counting
//! allocator: the numbers behind `rpc.max_message_values` and `rpc.max_preauth_frame_bytes`
//! in docs/security.md. Run with `--nocapture` to see them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use switchboard::rpc::wire::{decode_frame, decode_frame_with};

/// Counts live bytes and the peak since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// One measurement at a time: the test harness runs tests on several threads.
static MEASURING: Mutex<()> = Mutex::new(());

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated at the peak of `f`, beyond what was live before it.
fn peak_of<T>(f: impl FnOnce() -> T) -> usize {
    let _one = MEASURING.lock().unwrap_or_else(|p| p.into_inner());
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let out = f();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    drop(out);
    peak
}

/// `[0, 1, "auth", [nil; n]]`.
fn request_of_nils(n: u32) -> Vec<u8> {
    let mut frame = vec![0x94, 0x00, 0x01, 0xa4];
    frame.extend_from_slice(b"auth");
    frame.push(0xdd);
    frame.extend_from_slice(&n.to_be_bytes());
    frame.resize(frame.len() + n as usize, 0xc0);
    frame
}

const MIB: f64 = 1024.0 * 1024.0;

#[test]
fn a_megabyte_of_nils_is_refused_before_it_is_decoded() {
    let frame = request_of_nils((1 << 20) - 64);
    let unbounded = peak_of(|| decode_frame(&frame).expect("decodes"));
    let bounded = peak_of(|| decode_frame_with(&frame, 65_536).expect_err("too many values"));
    let at_limit = request_of_nils(65_536 - 5);
    let largest = peak_of(|| decode_frame_with(&at_limit, 65_536).expect("decodes"));
    println!(
        "decoding {} bytes of nils: {:.1} MiB at the peak without a bound, {} bytes refused \
         by rpc.max_message_values = 65536; a message at that limit: {:.1} MiB",
        frame.len(),
        unbounded as f64 / MIB,
        bounded,
        largest as f64 / MIB,
    );
    assert!(
        unbounded > 16 << 20,
        "the cost the bound avoids: {unbounded}"
    );
    assert!(bounded < 4096, "refused without decoding: {bounded}");
    assert!(largest < 8 << 20, "bounded at the limit: {largest}");
}
