//! A user-space UDP relay between a client and the server, to lose packets on purpose (the
//! kernel here has no netem). The client is given the relay's address as the server's
//! candidate; the relay forwards both ways and can drop chosen server-to-client datagrams.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::net::UdpSocket;

/// A running relay.
pub struct Relay {
    /// Where the client should send (the address to announce in its SDP).
    pub addr: SocketAddr,
    armed: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// A relay to `server`, on loopback.
    pub async fn start(server: SocketAddr) -> Self {
        let client_side = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("relay bind"));
        let addr = client_side.local_addr().expect("relay address");
        let armed = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let (arm, count) = (armed.clone(), dropped.clone());
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let mut client: Option<SocketAddr> = None;
            loop {
                let Ok((n, from)) = client_side.recv_from(&mut buf).await else {
                    return;
                };
                let data = &buf[..n];
                if from == server {
                    // RTP (not RTCP: payload types 72-76 after the marker bit are RTCP) with a
                    // video-sized payload.
                    let is_rtp =
                        n > 300 && data[0] & 0xC0 == 0x80 && !(72..=76).contains(&(data[1] & 0x7F));
                    if is_rtp && arm.swap(false, Ordering::Relaxed) {
                        count.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if let Some(c) = client {
                        let _ = client_side.send_to(data, c).await;
                    }
                } else {
                    client = Some(from);
                    let _ = client_side.send_to(data, server).await;
                }
            }
        });
        Self {
            addr,
            armed,
            dropped,
            task,
        }
    }

    /// Loses the next large RTP datagram from the server (video-sized, so not audio or RTCP).
    pub fn drop_next_large_rtp(&self) {
        self.armed.store(true, Ordering::Relaxed);
    }

    /// Datagrams dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Rewrites the server's candidates in an SDP to point at the relay.
    pub fn rewrite_sdp(&self, sdp: &str, server: SocketAddr) -> String {
        sdp.replace(
            &format!("{} {} typ host", server.ip(), server.port()),
            &format!("{} {} typ host", self.addr.ip(), self.addr.port()),
        )
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
