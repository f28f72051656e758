//! An ordinary call logs nothing at WARN or ERROR with the default filter: an operator reads
//! those levels as faults, so what every client does in the normal course of a call (DTLS
//! extensions the stack does not know, the SCTP ABORT that ends the placeholder data channel,
//! connectivity checks before the answer) must not reach them.

use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::io::Write;
use std::sync::{Arc, Mutex};
use switchboard::logging;
use switchboard::settings::{LogConfig, LogFormat};
use switchboard_core::PeerId;
use switchboard_tests::webrtc_client::{self, Client};
use switchboard_tests::*;
use webrtc::media_stream::track_local::TrackLocal;

/// Log output collected in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The server runs on its own worker threads and logs through the global subscriber; the
/// test's webrtc-rs clients share the crates that log (`rtc-ice`, `rtc-dtls`, …), so their
/// threads get a subscriber that drops everything, and only the server's lines are judged.
#[test]
fn a_whole_call_logs_no_warning_or_error_at_the_default_level() {
    let captured = Captured::default();
    let writer = captured.clone();
    let default_level = LogConfig::default().level;
    logging::init_with_writer(&default_level, LogFormat::Json, false, move || {
        writer.clone()
    });
    let silent = || tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let _main_thread = tracing::dispatcher::set_default(&silent());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            // The guard lives as long as the thread: the runtime's threads run only the
            // clients.
            std::mem::forget(tracing::dispatcher::set_default(&silent()));
        })
        .build()
        .expect("runtime");
    runtime.block_on(call());

    let bytes = captured.0.lock().expect("not poisoned").clone();
    let text = String::from_utf8(bytes).expect("UTF-8");
    let loud: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
        .collect();
    assert!(
        loud.is_empty(),
        "an ordinary call logged warnings or errors:\n{}",
        loud.join("\n")
    );
    // The capture worked at all: the server logs the call's lifecycle at INFO.
    assert!(
        text.contains("\"level\":\"INFO\""),
        "the server logged nothing: {text}"
    );
}

async fn call() {
    let t = start_webrtc(1);
    let room = t.room().await;
    let publisher = webrtc_client::publish_vp8_and_opus(&t.server, room).await;
    let bob = PeerId::parse("bob").expect("peer id");
    t.server.join_peer(room, bob.clone()).await.expect("join");
    let offer = t
        .server
        .subscribe_peer(room, bob.clone())
        .await
        .expect("offer");
    let mut bob_client = Client::new(96, 111).await;
    let answer = bob_client.answer(&offer.sdp).await;
    t.server
        .answer(room, bob.clone(), answer)
        .await
        .expect("answer");
    bob_client.connected().await;

    // Media flows both legs, so SRTP, RTCP and the forwarder all had their say.
    let mut seq = 1u16;
    let track = loop {
        publisher
            .video
            .write_rtp(client_rtp(0x1000, 96, seq, vec![0x10, 0x00, 0xAB]))
            .await
            .expect("write");
        seq += 1;
        if let Ok(track) = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            bob_client.next_track(),
        )
        .await
            && track.kind().await == RtpCodecKind::Video
        {
            break track;
        }
        assert!(seq < 200, "Bob got no video");
    };
    drop(track);

    // The call ends the usual way: both peers leave, their connections close.
    t.server.leave_peer(room, bob).await.expect("bob leaves");
    t.server
        .leave_peer(room, PeerId::parse("publisher").expect("peer id"))
        .await
        .expect("publisher leaves");
    drop(bob_client);
    drop(publisher);
    t.server.close_router(room).await.expect("room closes");
}
