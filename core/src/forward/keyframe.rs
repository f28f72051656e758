//! Keyframe detection from RTP payloads, and throttling of keyframe requests.
//!
//! A consumer that starts or resumes mid-stream must not show a decoder garbage built on a
//! missing reference, so the forwarder holds video back until a keyframe and asks the producer
//! for one. Many consumers asking at once must not flood the sender, hence the throttle.

use std::time::{Duration, Instant};

/// How a codec marks keyframes in its RTP payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyframeCodec {
    /// Audio, or a codec we cannot inspect: every packet counts as decodable.
    None,
    /// VP8 (RFC 7741).
    Vp8,
    /// VP9 (RFC 9628).
    Vp9,
    /// H.264 (RFC 6184).
    H264,
    /// AV1 (AOM RTP payload format).
    Av1,
}

impl KeyframeCodec {
    /// The detector for a codec MIME type such as `video/VP8`.
    pub fn from_mime(mime: &str) -> Self {
        let subtype = mime.rsplit('/').next().unwrap_or_default();
        match subtype.to_ascii_uppercase().as_str() {
            "VP8" => KeyframeCodec::Vp8,
            "VP9" => KeyframeCodec::Vp9,
            "H264" => KeyframeCodec::H264,
            "AV1" => KeyframeCodec::Av1,
            _ => KeyframeCodec::None,
        }
    }

    /// Whether consumers of this codec must wait for a keyframe after (re)synchronising.
    pub fn needs_keyframe(self) -> bool {
        self != KeyframeCodec::None
    }

    /// Whether this RTP payload starts a keyframe. Truncated payloads are never keyframes.
    pub fn is_keyframe(self, payload: &[u8]) -> bool {
        match self {
            KeyframeCodec::None => true,
            KeyframeCodec::Vp8 => vp8_is_keyframe(payload),
            KeyframeCodec::Vp9 => vp9_is_keyframe(payload),
            KeyframeCodec::H264 => h264_is_keyframe(payload),
            KeyframeCodec::Av1 => av1_is_keyframe(payload),
        }
    }
}

fn vp8_is_keyframe(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    let start_of_partition = b0 & 0x10 != 0;
    let partition_id = b0 & 0x07;
    if !start_of_partition || partition_id != 0 {
        return false;
    }
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let Some(&x) = p.get(i) else { return false };
        i += 1;
        if x & 0x80 != 0 {
            // PictureID: one byte, or two when its M bit is set.
            let Some(&pid) = p.get(i) else { return false };
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID/Y/KEYIDX
        }
    }
    // The inverse key frame flag is bit 0 of the VP8 frame header.
    p.get(i).is_some_and(|h| h & 0x01 == 0)
}

fn vp9_is_keyframe(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    let inter_picture = b0 & 0x40 != 0;
    let start_of_frame = b0 & 0x08 != 0;
    if inter_picture || !start_of_frame {
        return false;
    }
    // With layer indices present, only the base spatial layer starts a keyframe.
    if b0 & 0x20 != 0 {
        let mut i = 1;
        if b0 & 0x80 != 0 {
            let Some(&pid) = p.get(i) else { return false };
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        let Some(&layers) = p.get(i) else {
            return false;
        };
        return (layers >> 1) & 0x07 == 0;
    }
    true
}

fn h264_is_keyframe(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    match b0 & 0x1F {
        // IDR slice or SPS (an encoder sends SPS/PPS right before an IDR).
        5 | 7 => true,
        // STAP-A: look at each aggregated NAL unit.
        24 => {
            let mut i = 1;
            while i + 2 < p.len() {
                let size = usize::from(u16::from_be_bytes([p[i], p[i + 1]]));
                let Some(&nal) = p.get(i + 2) else { break };
                if matches!(nal & 0x1F, 5 | 7) {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        // FU-A: the first fragment of an IDR slice.
        28 => p.get(1).is_some_and(|fu| fu & 0x80 != 0 && fu & 0x1F == 5),
        _ => false,
    }
}

fn av1_is_keyframe(p: &[u8]) -> bool {
    // The N bit marks the first packet of a coded video sequence, which starts with a keyframe.
    p.first().is_some_and(|b| b & 0x08 != 0)
}

/// Limits keyframe requests sent to one producer to one per interval.
///
/// A request inside the window is remembered, not lost: it is sent when the window ends, so a
/// consumer that joins right after another still gets its keyframe.
#[derive(Debug)]
pub struct KeyframeThrottle {
    interval: Duration,
    last_sent: Option<Instant>,
    pending: bool,
}

impl KeyframeThrottle {
    /// A throttle allowing one request per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_sent: None,
            pending: false,
        }
    }

    /// Records a request; returns true when it should be sent upstream now.
    pub fn request(&mut self, now: Instant) -> bool {
        if self.window_open(now) {
            self.last_sent = Some(now);
            self.pending = false;
            true
        } else {
            self.pending = true;
            false
        }
    }

    /// Forgets the last request sent: the next one goes out at once. For a request that went
    /// where its sender could not hear it.
    pub fn forget(&mut self) {
        self.last_sent = None;
    }

    /// Called periodically; returns true when a deferred request is now due.
    pub fn poll(&mut self, now: Instant) -> bool {
        if self.pending && self.window_open(now) {
            self.pending = false;
            self.last_sent = Some(now);
            true
        } else {
            false
        }
    }

    /// Whether a request is waiting for the window to end.
    pub fn is_pending(&self) -> bool {
        self.pending
    }

    fn window_open(&self, now: Instant) -> bool {
        self.last_sent
            .is_none_or(|t| now.saturating_duration_since(t) >= self.interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keyframe_and_interframe() {
        // S=1, PID=0, no extension; frame header bit0 = 0 → keyframe.
        assert!(KeyframeCodec::Vp8.is_keyframe(&[0x10, 0x00, 0x9d, 0x01, 0x2a]));
        // Same but P bit set → interframe.
        assert!(!KeyframeCodec::Vp8.is_keyframe(&[0x10, 0x01]));
        // Not a partition start.
        assert!(!KeyframeCodec::Vp8.is_keyframe(&[0x00, 0x00]));
        // X with I (two-byte picture id), then frame header.
        assert!(KeyframeCodec::Vp8.is_keyframe(&[0x90, 0x80, 0x81, 0x23, 0x00]));
        assert!(!KeyframeCodec::Vp8.is_keyframe(&[0x90, 0x80, 0x81, 0x23, 0x01]));
        // Truncated.
        assert!(!KeyframeCodec::Vp8.is_keyframe(&[0x90, 0x80]));
        assert!(!KeyframeCodec::Vp8.is_keyframe(&[]));
    }

    #[test]
    fn vp9_keyframe_rules() {
        // B=1, P=0, no layers.
        assert!(KeyframeCodec::Vp9.is_keyframe(&[0x08]));
        // P=1.
        assert!(!KeyframeCodec::Vp9.is_keyframe(&[0x48]));
        // Not start of frame.
        assert!(!KeyframeCodec::Vp9.is_keyframe(&[0x00]));
        // L present, SID=1 → not the base layer.
        assert!(!KeyframeCodec::Vp9.is_keyframe(&[0x28, 0x02]));
        assert!(KeyframeCodec::Vp9.is_keyframe(&[0x28, 0x00]));
    }

    #[test]
    fn h264_keyframe_forms() {
        assert!(KeyframeCodec::H264.is_keyframe(&[0x65, 0x88])); // IDR
        assert!(KeyframeCodec::H264.is_keyframe(&[0x67, 0x42])); // SPS
        assert!(!KeyframeCodec::H264.is_keyframe(&[0x41, 0x9a])); // non-IDR slice
        // STAP-A with SPS inside.
        assert!(KeyframeCodec::H264.is_keyframe(&[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68]));
        // STAP-A with only a non-IDR slice.
        assert!(!KeyframeCodec::H264.is_keyframe(&[0x78, 0x00, 0x02, 0x41, 0x9a]));
        // FU-A start of IDR, and a middle fragment.
        assert!(KeyframeCodec::H264.is_keyframe(&[0x7c, 0x85]));
        assert!(!KeyframeCodec::H264.is_keyframe(&[0x7c, 0x05]));
        // Truncated STAP-A length does not panic.
        assert!(!KeyframeCodec::H264.is_keyframe(&[0x78, 0xff, 0xff]));
    }

    #[test]
    fn av1_and_audio() {
        assert!(KeyframeCodec::Av1.is_keyframe(&[0x18]));
        assert!(!KeyframeCodec::Av1.is_keyframe(&[0x10]));
        assert!(KeyframeCodec::None.is_keyframe(&[]));
        assert_eq!(KeyframeCodec::from_mime("video/vp8"), KeyframeCodec::Vp8);
        assert_eq!(KeyframeCodec::from_mime("audio/opus"), KeyframeCodec::None);
    }

    #[test]
    fn throttle_sends_once_per_window_and_keeps_the_pending_one() {
        let t0 = Instant::now();
        let mut th = KeyframeThrottle::new(Duration::from_millis(1000));
        assert!(th.request(t0));
        assert!(!th.request(t0 + Duration::from_millis(10)));
        assert!(!th.request(t0 + Duration::from_millis(500)));
        assert!(th.is_pending());
        assert!(!th.poll(t0 + Duration::from_millis(999)));
        assert!(th.poll(t0 + Duration::from_millis(1000)));
        assert!(!th.poll(t0 + Duration::from_millis(3000)));
        assert!(th.request(t0 + Duration::from_millis(2000)));
    }
}
