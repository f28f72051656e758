//! Codec knowledge the recorder needs: which codecs it records, how their RTP payloads become
//! frames (through `rtc_rtp`'s depacketizers), which frames are keyframes, picture sizes and
//! Opus packet durations.

use bytes::{Bytes, BytesMut};
use rtc_rtp::codec::{h264::H264Packet, vp8::Vp8Packet, vp9::Vp9Packet};
use rtc_rtp::packetizer::Depacketizer;

/// A codec the recorder can write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// VP8 video.
    Vp8,
    /// VP9 video.
    Vp9,
    /// H.264 video.
    H264,
    /// Opus audio.
    Opus,
}

impl Codec {
    /// The codec for a MIME type (`video/VP8`, ...), if recordable.
    pub fn from_mime(mime: &str) -> Option<Self> {
        let (_, name) = mime.split_once('/')?;
        match name.to_ascii_lowercase().as_str() {
            "vp8" => Some(Self::Vp8),
            "vp9" => Some(Self::Vp9),
            "h264" => Some(Self::H264),
            "opus" => Some(Self::Opus),
            _ => None,
        }
    }

    /// Whether it is a video codec.
    pub fn is_video(self) -> bool {
        self != Self::Opus
    }

    /// Whether WebM (a Matroska subset) allows it.
    pub fn webm_compatible(self) -> bool {
        self != Self::H264
    }

    /// The Matroska codec id.
    pub fn matroska_id(self) -> &'static str {
        match self {
            Self::Vp8 => "V_VP8",
            Self::Vp9 => "V_VP9",
            Self::H264 => "V_MPEG4/ISO/AVC",
            Self::Opus => "A_OPUS",
        }
    }
}

/// Depacketizes one stream's in-order payloads into codec frames.
pub enum PayloadReader {
    /// VP8.
    Vp8(Vp8Packet),
    /// VP9.
    Vp9(Vp9Packet),
    /// H.264, emitting length-prefixed (AVC) NAL units.
    H264(H264Packet),
    /// Opus: one packet, one frame.
    Opus,
}

impl PayloadReader {
    /// A fresh reader for a codec.
    pub fn new(codec: Codec) -> Self {
        match codec {
            Codec::Vp8 => Self::Vp8(Vp8Packet::default()),
            Codec::Vp9 => Self::Vp9(Vp9Packet::default()),
            Codec::H264 => {
                let mut d = H264Packet::default();
                d.is_avc = true;
                Self::H264(d)
            }
            Codec::Opus => Self::Opus,
        }
    }

    /// Whether this payload starts a frame.
    pub fn is_frame_start(&self, payload: &Bytes) -> bool {
        match self {
            Self::Vp8(d) => {
                // S bit set on partition 0.
                d.is_partition_head(payload) && payload.first().is_some_and(|b| b & 0x07 == 0)
            }
            Self::Vp9(d) => d.is_partition_head(payload),
            Self::H264(d) => d.is_partition_head(payload),
            Self::Opus => true,
        }
    }

    /// The codec data carried by one payload (may be empty while an H.264 fragment builds up).
    pub fn read(&mut self, payload: &Bytes) -> Result<Bytes, String> {
        match self {
            Self::Vp8(d) => d.depacketize(payload).map_err(|e| e.to_string()),
            Self::Vp9(d) => d.depacketize(payload).map_err(|e| e.to_string()),
            Self::H264(d) => {
                check_stap_a(payload)?;
                d.depacketize(payload).map_err(|e| e.to_string())
            }
            Self::Opus => Ok(payload.clone()),
        }
    }

    /// For VP9, the picture size the payload's scalability structure announced.
    fn vp9_size(&self) -> Option<(u16, u16)> {
        match self {
            Self::Vp9(d) if d.v && d.y => Some((*d.width.last()?, *d.height.last()?)),
            _ => None,
        }
    }
}

/// The depacketizer indexes STAP-A aggregates without checking every length field; check them
/// here so a malformed packet becomes an error rather than a panic.
fn check_stap_a(payload: &Bytes) -> Result<(), String> {
    const STAP_A: u8 = 24;
    if payload.first().is_some_and(|b| b & 0x1F == STAP_A) {
        let mut at = 1;
        while at < payload.len() {
            if at + 2 > payload.len() {
                return Err("truncated STAP-A length".into());
            }
            let len = usize::from(u16::from_be_bytes([payload[at], payload[at + 1]]));
            at += 2 + len;
            if at > payload.len() {
                return Err("STAP-A unit longer than the packet".into());
            }
        }
    }
    Ok(())
}

/// A frame put together from one or more packets.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The codec bitstream of one frame (AVC length-prefixed for H.264).
    pub data: Bytes,
    /// Its RTP timestamp.
    pub rtp_ts: u32,
    /// The SSRC it came on.
    pub ssrc: u32,
    /// Whether decoding can start here.
    pub keyframe: bool,
    /// When its first packet arrived (ns since the recorder started).
    pub arrival_ns: i64,
}

/// What a video keyframe tells about the stream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeyframeInfo {
    /// Picture width and height, when found.
    pub size: Option<(u16, u16)>,
    /// For H.264: the `avcC` decoder configuration built from the frame's SPS and PPS.
    pub avcc: Option<Vec<u8>>,
}

/// Puts in-order payloads together into frames for one stream.
pub struct FrameAssembler {
    codec: Codec,
    reader: PayloadReader,
    parts: BytesMut,
    current: Option<(u32, u32, i64)>,
    broken: bool,
    vp9_size: Option<(u16, u16)>,
    /// Payloads the depacketizer rejected.
    pub malformed: u64,
}

impl FrameAssembler {
    /// An assembler for a codec.
    pub fn new(codec: Codec) -> Self {
        Self {
            codec,
            reader: PayloadReader::new(codec),
            parts: BytesMut::new(),
            current: None,
            broken: false,
            vp9_size: None,
            malformed: 0,
        }
    }

    /// Packets were lost: the frame in progress cannot be completed.
    pub fn on_loss(&mut self) {
        // Drop the frame in progress; the lost packets may also have started the next frame,
        // whose remaining packets then do not start with a frame head and are skipped.
        self.current = None;
        self.broken = false;
        self.parts.clear();
        self.reader = PayloadReader::new(self.codec);
    }

    /// The frame in progress is complete as far as it goes (end of stream, SSRC change).
    pub fn flush(&mut self) -> Option<Frame> {
        self.finish()
    }

    fn finish(&mut self) -> Option<Frame> {
        let (ts, ssrc, arrival_ns) = self.current.take()?;
        let data = self.parts.split().freeze();
        if std::mem::take(&mut self.broken) || data.is_empty() {
            return None;
        }
        let keyframe = match self.codec {
            Codec::Opus => true,
            Codec::Vp8 => data.first().is_some_and(|b| b & 1 == 0),
            // The bitstream decides: not every sender sets the payload descriptor's P bit.
            Codec::Vp9 => vp9_size(&data).is_some(),
            Codec::H264 => avc_units(&data).any(|n| n.first().is_some_and(|h| h & 0x1F == 5)),
        };
        Some(Frame {
            data,
            rtp_ts: ts,
            ssrc,
            keyframe,
            arrival_ns,
        })
    }

    /// One in-order packet; returns the frames it completes (at most two: the previous one,
    /// when this packet starts a new timestamp, and this one when it is the frame's last).
    pub fn push(
        &mut self,
        ssrc: u32,
        ts: u32,
        marker: bool,
        payload: &Bytes,
        arrival_ns: i64,
        out: &mut Vec<Frame>,
    ) {
        if payload.is_empty() {
            return; // padding
        }
        if let Some((cur_ts, cur_ssrc, _)) = self.current
            && (cur_ts != ts || cur_ssrc != ssrc)
        {
            // A new frame began without the last one's marker: the marker packet was lost,
            // or the sender does not set it; keep the frame unless loss broke it.
            out.extend(self.finish());
        }
        if self.current.is_none() {
            if !self.reader.is_frame_start(payload) {
                // The middle of a frame whose start we never saw.
                return;
            }
            self.broken = false;
            self.current = Some((ts, ssrc, arrival_ns));
        }
        match self.reader.read(payload) {
            Ok(data) => {
                if let Some(size) = self.reader.vp9_size() {
                    self.vp9_size = Some(size);
                }
                self.parts.extend_from_slice(&data);
            }
            Err(_) => {
                self.malformed += 1;
                self.broken = true;
            }
        }
        let tail = match self.codec {
            Codec::Opus => true,
            _ => marker,
        };
        if tail {
            out.extend(self.finish());
        }
    }

    /// What a keyframe of this stream says about the picture (and the H.264 parameter sets).
    pub fn keyframe_info(&self, frame: &Frame) -> KeyframeInfo {
        match self.codec {
            Codec::Vp8 => KeyframeInfo {
                size: vp8_size(&frame.data),
                avcc: None,
            },
            Codec::Vp9 => KeyframeInfo {
                size: self.vp9_size.or_else(|| vp9_size(&frame.data)),
                avcc: None,
            },
            Codec::H264 => h264_info(&frame.data),
            Codec::Opus => KeyframeInfo::default(),
        }
    }
}

/// The picture size in a VP8 keyframe's header (RFC 6386 section 9.1).
pub fn vp8_size(frame: &[u8]) -> Option<(u16, u16)> {
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([frame[6], frame[7]]) & 0x3FFF;
    let h = u16::from_le_bytes([frame[8], frame[9]]) & 0x3FFF;
    (w > 0 && h > 0).then_some((w, h))
}

/// A most-significant-bit-first reader for codec headers.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }
    fn bit(&mut self) -> Option<u32> {
        let byte = self.data.get(self.pos / 8)?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(b))
    }
    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0u32, |acc, _| Some((acc << 1) | self.bit()?))
    }
    /// Exp-Golomb unsigned (H.264 ue(v)).
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.bits(zeros)?)
    }
    fn se(&mut self) -> Option<i32> {
        let v = self.ue()?;
        Some(if v % 2 == 1 {
            v.div_ceil(2) as i32
        } else {
            -((v / 2) as i32)
        })
    }
}

/// The picture size in a VP9 keyframe's uncompressed header; `None` for other frames.
pub fn vp9_size(frame: &[u8]) -> Option<(u16, u16)> {
    let mut r = Bits::new(frame);
    if r.bits(2)? != 2 {
        return None; // frame marker
    }
    let profile = r.bit()? | (r.bit()? << 1);
    if profile == 3 {
        r.bit()?;
    }
    if r.bit()? == 1 {
        return None; // show_existing_frame
    }
    if r.bit()? != 0 {
        return None; // not a keyframe
    }
    r.bits(2)?; // show_frame, error_resilient_mode
    if r.bits(24)? != 0x49_83_42 {
        return None;
    }
    // color_config
    if profile >= 2 {
        r.bit()?; // ten_or_twelve_bit
    }
    let color_space = r.bits(3)?;
    if color_space != 7 {
        r.bit()?; // color_range
        if profile == 1 || profile == 3 {
            r.bits(3)?;
        }
    } else if profile == 1 || profile == 3 {
        r.bit()?;
    }
    let w = r.bits(16)? + 1;
    let h = r.bits(16)? + 1;
    Some((u16::try_from(w).ok()?, u16::try_from(h).ok()?))
}

/// The NAL units of an AVC (4-byte length-prefixed) access unit; stops at the first
/// inconsistent length.
pub fn avc_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if rest.len() < 4 + len {
            return None;
        }
        let (unit, tail) = rest[4..].split_at(len);
        rest = tail;
        Some(unit)
    })
}

/// Removes emulation-prevention bytes (00 00 03) from a NAL unit.
fn unescape(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

fn h264_info(data: &[u8]) -> KeyframeInfo {
    let sps = avc_units(data).find(|n| n.first().is_some_and(|h| h & 0x1F == 7));
    let pps = avc_units(data).find(|n| n.first().is_some_and(|h| h & 0x1F == 8));
    let (Some(sps), Some(pps)) = (sps, pps) else {
        return KeyframeInfo::default();
    };
    let avcc = (sps.len() >= 4 && sps.len() <= 0xFFFF && pps.len() <= 0xFFFF).then(|| {
        let mut v = vec![1, sps[1], sps[2], sps[3], 0xFF, 0xE1];
        v.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        v.extend_from_slice(sps);
        v.push(1);
        v.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        v.extend_from_slice(pps);
        v
    });
    KeyframeInfo {
        size: h264_sps_size(&unescape(&sps[1..])),
        avcc,
    }
}

/// The picture size an H.264 SPS (without its NAL header, unescaped) describes.
pub fn h264_sps_size(sps: &[u8]) -> Option<(u16, u16)> {
    let mut r = Bits::new(sps);
    let profile = r.bits(8)?;
    r.bits(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format = 1;
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format = r.ue()?;
        if chroma_format == 3 {
            r.bit()?;
        }
        r.ue()?;
        r.ue()?; // bit depths
        r.bit()?;
        if r.bit()? == 1 {
            let lists = if chroma_format == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i32, 8i32);
                    for _ in 0..size {
                        if next != 0 {
                            // delta_scale is -128..=127 (H.264 7.4.2.1.1.1); anything else is
                            // not an SPS, and would overflow here.
                            let delta = r.se()?;
                            if !(-128..=127).contains(&delta) {
                                return None;
                            }
                            next = (last + delta + 256) % 256;
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()?.min(255) {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?;
    let w_mbs = r.ue()?.checked_add(1)?;
    let h_units = r.ue()?.checked_add(1)?;
    let frame_mbs_only = r.bit()?;
    if frame_mbs_only == 0 {
        r.bit()?;
    }
    r.bit()?; // direct_8x8_inference
    // ue(v) values reach 2^32 - 2: sizes are worked out in 64 bits, and too large a picture
    // is no picture (the u16 conversion below refuses it).
    let mut w = u64::from(w_mbs) * 16;
    let mut h = u64::from(h_units) * 16 * u64::from(2 - frame_mbs_only);
    if r.bit()? == 1 {
        let (l, rt, t, b) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        let (cx, cy): (u32, u32) = match chroma_format {
            0 => (1, 2 - frame_mbs_only),
            1 => (2, 2 * (2 - frame_mbs_only)),
            2 => (2, 2 - frame_mbs_only),
            _ => (1, 2 - frame_mbs_only),
        };
        w = w.checked_sub((u64::from(l) + u64::from(rt)) * u64::from(cx))?;
        h = h.checked_sub((u64::from(t) + u64::from(b)) * u64::from(cy))?;
    }
    Some((u16::try_from(w).ok()?, u16::try_from(h).ok()?))
}

/// Samples (at 48 kHz) in one Opus packet, from its TOC byte (RFC 6716 section 3.1).
pub fn opus_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3F),
    };
    let total = frame * frames;
    // A packet holds at most 120 ms.
    (total <= 5760).then_some(total)
}

#[cfg(test)]
mod tests;
