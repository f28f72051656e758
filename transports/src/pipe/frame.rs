//! The pipe's wire: one datagram per frame.
//!
//! A frame is what one pipe transport sends to its peer. Today frames cross an in-process
//! channel; the layout is made for a UDP datagram, so a socket can carry the same bytes
//! between machines later without changing either end.
//!
//! ```text
//!  0                   1
//!  0 1 2 3 4 5 6 7 8 9 0 1 ...
//! +-------+-------+---------------------------------+
//! |version| type  | body                            |
//! +-------+-------+---------------------------------+
//! ```
//!
//! - byte 0, high nibble: the version, [`VERSION`] (1). A frame of another version is
//!   refused, so two ends of different releases fail loudly instead of misreading each other.
//! - byte 0, low nibble: the type.
//!   - `0` RTP: the body is one RTP packet, unchanged (as the sending router wrote it for its
//!     pipe consumer: the router's payload types and extension ids, the consumer's SSRC).
//!   - `1` RTCP: the body is one RTCP compound packet, unchanged (reports to the receiving
//!     side, feedback such as PLI, FIR and NACK back to the sending side).
//!   - `2` control: the body's first byte is an opcode. `1` is *bye*: the sender closed its end
//!     and will send nothing more. Unknown opcodes are refused.
//!
//! Neither RTP nor RTCP is encrypted on the pipe: both ends are this server's workers. A UDP
//! carrier between machines would add its own protection around whole frames.

use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// The frame layout's version.
pub const VERSION: u8 = 1;

/// Bytes in front of the body.
pub const HEADER_LEN: usize = 1;

/// Largest frame accepted: a UDP datagram's payload.
pub const MAX_FRAME_LEN: usize = 65_507;

const TYPE_RTP: u8 = 0;
const TYPE_RTCP: u8 = 1;
const TYPE_CONTROL: u8 = 2;
const OP_BYE: u8 = 1;

/// A control message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// The sending end closed.
    Bye,
}

/// One decoded frame. RTP and RTCP bodies share the frame's buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// An RTP packet.
    Rtp(Bytes),
    /// An RTCP compound packet.
    Rtcp(Bytes),
    /// A control message.
    Control(Control),
}

/// Why a datagram is not a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Empty, or an empty body.
    Truncated,
    /// Longer than [`MAX_FRAME_LEN`].
    TooLong,
    /// A version this end does not speak.
    Version(u8),
    /// A type this version does not define.
    Type(u8),
    /// A control opcode this version does not define.
    Opcode(u8),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => write!(f, "truncated frame"),
            Self::TooLong => write!(f, "frame longer than {MAX_FRAME_LEN} bytes"),
            Self::Version(v) => write!(f, "frame version {v}, expected {VERSION}"),
            Self::Type(t) => write!(f, "unknown frame type {t}"),
            Self::Opcode(o) => write!(f, "unknown control opcode {o}"),
        }
    }
}

fn encode(kind: u8, body: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(HEADER_LEN + body.len());
    b.put_u8(VERSION << 4 | kind);
    b.put_slice(body);
    b.freeze()
}

/// A frame carrying one RTP packet.
pub fn rtp(packet: &[u8]) -> Bytes {
    encode(TYPE_RTP, packet)
}

/// A frame carrying one RTCP compound packet.
pub fn rtcp(packet: &[u8]) -> Bytes {
    encode(TYPE_RTCP, packet)
}

/// A control frame.
pub fn control(c: Control) -> Bytes {
    match c {
        Control::Bye => encode(TYPE_CONTROL, &[OP_BYE]),
    }
}

/// Reads one frame. Never panics; whatever is not a frame of this version is an error.
pub fn decode(datagram: Bytes) -> Result<Frame, FrameError> {
    if datagram.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLong);
    }
    let Some(&first) = datagram.first() else {
        return Err(FrameError::Truncated);
    };
    if first >> 4 != VERSION {
        return Err(FrameError::Version(first >> 4));
    }
    let body = datagram.slice(HEADER_LEN..);
    if body.is_empty() {
        return Err(FrameError::Truncated);
    }
    match first & 0x0f {
        TYPE_RTP => Ok(Frame::Rtp(body)),
        TYPE_RTCP => Ok(Frame::Rtcp(body)),
        TYPE_CONTROL => match body[0] {
            OP_BYE => Ok(Frame::Control(Control::Bye)),
            op => Err(FrameError::Opcode(op)),
        },
        t => Err(FrameError::Type(t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_with_their_bodies_unchanged() {
        let packet = [0x80u8, 96, 0, 1, 0, 0, 0, 9, 1, 2, 3, 4, 0xAA, 0xBB];
        let f = rtp(&packet);
        assert_eq!(f[0], 0x10);
        assert_eq!(&f[1..], &packet);
        assert_eq!(decode(f), Ok(Frame::Rtp(Bytes::copy_from_slice(&packet))));
        let r = rtcp(&[0x81, 206, 0, 2]);
        assert_eq!(
            decode(r),
            Ok(Frame::Rtcp(Bytes::from_static(&[0x81, 206, 0, 2])))
        );
        assert_eq!(
            decode(control(Control::Bye)),
            Ok(Frame::Control(Control::Bye))
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(decode(Bytes::new()), Err(FrameError::Truncated));
        assert_eq!(
            decode(Bytes::from_static(&[0x10])),
            Err(FrameError::Truncated)
        );
        assert_eq!(
            decode(Bytes::from_static(&[0x20, 1])),
            Err(FrameError::Version(2))
        );
        assert_eq!(
            decode(Bytes::from_static(&[0x17, 1])),
            Err(FrameError::Type(7))
        );
        assert_eq!(
            decode(Bytes::from_static(&[0x12, 9])),
            Err(FrameError::Opcode(9))
        );
        assert_eq!(
            decode(Bytes::from(vec![0x10; MAX_FRAME_LEN + 1])),
            Err(FrameError::TooLong)
        );
    }
}
