//! A user-space UDP relay between a client and the server, to lose packets on purpose (the
//! kernel here has no netem). The client is given the relay's address as the server's
//! candidate; the relay forwards both ways and can drop chosen server-to-client datagrams:
//! the next large RTP packet, a share of everything at random, or everything for a while.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// What the relay's task and its handle share.
#[derive(Default)]
struct Faults {
    /// Drop the next large RTP datagram.
    armed: AtomicBool,
    /// Datagrams dropped by `armed`.
    dropped: AtomicU64,
    /// Share of server-to-client datagrams to lose at random, in parts per million.
    loss_ppm: AtomicU32,
    /// Lose everything from the server until this many microseconds after `epoch`.
    blackout_until_us: AtomicU64,
    /// Datagrams lost at random or in a blackout.
    lost: AtomicU64,
}

/// A fixed-seed xorshift: the same loss pattern on every run.
struct Dice(u64);

impl Dice {
    fn roll_ppm(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % 1_000_000) as u32
    }
}

/// A running relay.
pub struct Relay {
    /// Where the client should send (the address to announce in its SDP).
    pub addr: SocketAddr,
    socket: Arc<UdpSocket>,
    server: SocketAddr,
    faults: Arc<Faults>,
    epoch: Instant,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// A relay to `server`, on loopback.
    pub async fn start(server: SocketAddr) -> Self {
        let client_side = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("relay bind"));
        let addr = client_side.local_addr().expect("relay address");
        let faults = Arc::new(Faults::default());
        let epoch = Instant::now();
        let f = faults.clone();
        let socket = client_side.clone();
        let task = tokio::spawn(async move {
            let mut dice = Dice(0x9E37_79B9_7F4A_7C15);
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
                    if is_rtp && f.armed.swap(false, Ordering::Relaxed) {
                        f.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let now_us = epoch.elapsed().as_micros() as u64;
                    let blackout = now_us < f.blackout_until_us.load(Ordering::Relaxed);
                    let loss = f.loss_ppm.load(Ordering::Relaxed);
                    if blackout || (loss > 0 && dice.roll_ppm() < loss) {
                        f.lost.fetch_add(1, Ordering::Relaxed);
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
            socket,
            server,
            faults,
            epoch,
            task,
        }
    }

    /// Loses the next large RTP datagram from the server (video-sized, so not audio or RTCP).
    pub fn drop_next_large_rtp(&self) {
        self.faults.armed.store(true, Ordering::Relaxed);
    }

    /// Sends `datagram` to the server from the relay's address, as if the client sent it.
    pub async fn send_to_server(&self, datagram: &[u8]) {
        self.socket
            .send_to(datagram, self.server)
            .await
            .expect("relay send");
    }

    /// Datagrams dropped so far by [`Relay::drop_next_large_rtp`].
    pub fn dropped(&self) -> u64 {
        self.faults.dropped.load(Ordering::Relaxed)
    }

    /// Loses this share (0.0–1.0) of the server's datagrams at random from now on; 0 stops.
    pub fn set_loss(&self, share: f64) {
        let ppm = (share.clamp(0.0, 1.0) * 1_000_000.0) as u32;
        self.faults.loss_ppm.store(ppm, Ordering::Relaxed);
    }

    /// Loses every datagram from the server for `length` from now.
    pub fn blackout(&self, length: Duration) {
        let until = (self.epoch.elapsed() + length).as_micros() as u64;
        self.faults
            .blackout_until_us
            .store(until, Ordering::Relaxed);
    }

    /// Datagrams lost so far at random or in blackouts.
    pub fn lost(&self) -> u64 {
        self.faults.lost.load(Ordering::Relaxed)
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

#[cfg(test)]
mod tests {
    use super::Dice;

    #[test]
    fn dice_lose_about_the_share_asked() {
        let mut dice = Dice(0x9E37_79B9_7F4A_7C15);
        let lost = (0..100_000).filter(|_| dice.roll_ppm() < 50_000).count();
        assert!((4_500..5_500).contains(&lost), "{lost} of 100000 at 5%");
    }
}
