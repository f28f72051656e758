//! What a connection reports in `transport.stats`.

use super::*;

/// A WebRTC connection's counters and state (docs/rpc.md, `transport.stats` → `plugin`).
#[derive(Serialize)]
pub struct ConnectionStats {
    /// The connection state.
    pub state: TransportState,
    /// RTP packets sent to the client.
    pub rtp_packets_sent: u64,
    /// Outgoing RTP dropped before ICE and DTLS were up.
    pub rtp_packets_not_connected: u64,
    /// Outgoing RTP for an SSRC the connection does not send, dropped.
    pub rtp_packets_rejected: u64,
    /// RTCP packets sent to the client.
    pub rtcp_packets_sent: u64,
    /// RTCP packets received from the client.
    pub rtcp_packets_received: u64,
    /// How the connection was created (`send`, `recv` or both).
    pub direction: &'static str,
    /// RTP decrypted and handed to the router.
    pub rtp_packets_received: u64,
    /// RTP decrypted but of no accepted m-line, or not RTP.
    pub rtp_packets_unroutable: u64,
    /// RTP from a client that negotiated sending nothing.
    pub rtp_packets_ignored: u64,
    /// SRTP or SRTCP from more SSRCs than a connection may have, dropped before decryption.
    pub ssrc_limit_drops: u64,
    /// SSRCs the client sends on.
    pub remote_streams: usize,
    /// What the server sent the client about its media.
    pub feedback_sent: FeedbackCounts,
    /// Producers of the connection.
    pub producers: usize,
    /// Packets that failed SRTP authentication.
    pub srtp_failures: u64,
    /// Connectivity checks with wrong credentials or integrity.
    pub stun_refused: u64,
    /// DTLS errors.
    pub dtls_errors: u64,
    /// Checks that arrived before the client's description, dropped.
    pub early_connectivity_checks: u64,
    /// Packets that could not be encrypted.
    pub encrypt_failures: u64,
    /// The negotiated SRTP protection profile.
    pub srtp_profile: Option<String>,
    /// The client address media goes to.
    pub selected_address: Option<String>,
    /// The worker socket's counters.
    pub socket: Option<super::super::net::SocketStats>,
}
