//! ffmpeg as a real RTP peer in tests, and the small media containers the tests need to hand
//! what they received back to ffmpeg for decoding (IVF for VP8, Ogg for Opus).
//!
//! Every ffmpeg run is bounded by coreutils `timeout` (and senders by the length of their
//! input, `-t`), so a test that goes wrong fails instead of hanging.

use bytes::Bytes;
use rtc_rtp::codec::vp8::Vp8Packet;
use rtc_rtp::packetizer::Depacketizer;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Fails the test with a message naming the fix when ffmpeg or ffprobe is missing.
pub fn require() {
    for tool in ["ffmpeg", "ffprobe"] {
        let found = Command::new(tool)
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "{tool} is not installed: run ./scripts/test, which installs the Debian packages \
             in scripts/apt-packages (ffmpeg among them)"
        );
    }
}

/// A scratch directory for one test's files, removed when dropped.
pub struct Scratch {
    /// Its path.
    pub path: PathBuf,
}

impl Scratch {
    /// A fresh directory named after the test.
    pub fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("switchboard-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create scratch directory");
        Self { path }
    }

    /// A path inside it.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Command-line arguments from words separated by spaces, followed by `paths` (kept whole,
/// whatever they contain).
pub fn args(words: &str, paths: &[&Path]) -> Vec<String> {
    words
        .split_whitespace()
        .map(String::from)
        .chain(paths.iter().map(|p| p.display().to_string()))
        .collect()
}

/// Runs ffmpeg (`-nostdin -hide_banner -v error` first) to completion on a blocking thread,
/// killed after `limit`.
pub async fn run(args: Vec<String>, limit: Duration) -> Output {
    run_tool("ffmpeg", args, limit, true).await
}

async fn run_tool(tool: &str, args: Vec<String>, limit: Duration, quiet: bool) -> Output {
    let tool = tool.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("timeout");
        cmd.args(["-s", "KILL", &format!("{}", limit.as_secs().max(1))])
            .arg(&tool);
        if quiet {
            cmd.args(["-nostdin", "-hide_banner", "-v", "error"]);
        }
        cmd.args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run timeout/ffmpeg")
    })
    .await
    .expect("ffmpeg thread")
}

/// What `ffmpeg -v error -i <file> -f null -` prints: empty when every frame decodes.
pub async fn decode_errors(file: &Path) -> String {
    let out = run(
        vec![
            "-i".into(),
            file.display().to_string(),
            "-f".into(),
            "null".into(),
            "-".into(),
        ],
        Duration::from_secs(20),
    )
    .await;
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        text.push_str(&format!("\n(ffmpeg exited with {})", out.status));
    }
    text
}

/// Frames ffprobe decodes in the first stream of `kind` (`v` or `a`) of `file`.
pub async fn count_frames(file: &Path, kind: &str) -> u64 {
    let out = run_tool(
        "ffprobe",
        vec![
            "-v".into(),
            "error".into(),
            "-count_frames".into(),
            "-select_streams".into(),
            format!("{kind}:0"),
            "-show_entries".into(),
            "stream=nb_read_frames".into(),
            "-of".into(),
            "csv=p=0".into(),
            file.display().to_string(),
        ],
        Duration::from_secs(20),
        false,
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().unwrap_or_else(|_| {
        panic!(
            "ffprobe could not count frames of {}: {text} {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Two consecutive free UDP ports on loopback, the first even (RTP and RTCP for a receiver
/// that, like ffmpeg, binds `port` and `port + 1`). Free when checked: another process could
/// take them before the caller binds, which on a test machine does not happen in practice.
pub fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind probe");
        let port = probe.local_addr().expect("probe address").port() & !1;
        drop(probe);
        if port == 0 || port == u16::MAX - 1 {
            continue;
        }
        let a = std::net::UdpSocket::bind(("127.0.0.1", port));
        let b = std::net::UdpSocket::bind(("127.0.0.1", port + 1));
        if a.is_ok() && b.is_ok() {
            return port;
        }
    }
    panic!("no two consecutive free UDP ports on loopback");
}

/// One frame of an IVF file.
#[derive(Clone, Debug)]
pub struct IvfFrame {
    /// Its timestamp, in the file's time base.
    pub pts: u64,
    /// The encoded frame.
    pub data: Bytes,
}

/// The frames of an IVF file (`DKIF` header, then size-prefixed frames).
pub fn read_ivf(bytes: &[u8]) -> Vec<IvfFrame> {
    assert!(
        bytes.len() >= 32 && &bytes[..4] == b"DKIF",
        "not an IVF file"
    );
    let header_len = usize::from(u16::from_le_bytes([bytes[6], bytes[7]]));
    let mut at = header_len;
    let mut frames = Vec::new();
    while at + 12 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let pts = u64::from_le_bytes(bytes[at + 4..at + 12].try_into().expect("8 bytes"));
        let data = bytes
            .get(at + 12..at + 12 + size)
            .expect("IVF frame inside the file");
        frames.push(IvfFrame {
            pts,
            data: Bytes::copy_from_slice(data),
        });
        at += 12 + size;
    }
    frames
}

/// An IVF file of VP8 frames at a 1/90000 time base (RTP timestamps as they come).
pub fn write_ivf(width: u16, height: u16, frames: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"DKIF");
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&32u16.to_le_bytes());
    out.extend_from_slice(b"VP80");
    out.extend_from_slice(&width.to_le_bytes());
    out.extend_from_slice(&height.to_le_bytes());
    out.extend_from_slice(&90_000u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    let first = frames.first().map_or(0, |(ts, _)| *ts);
    for (ts, data) in frames {
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&u64::from(ts.wrapping_sub(first)).to_le_bytes());
        out.extend_from_slice(data);
    }
    out
}

/// Whether a VP8 frame is a keyframe (the inverse key-frame bit of its frame tag, RFC 6386).
pub fn vp8_is_keyframe(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 0x01 == 0)
}

/// Reassembles VP8 frames from RTP packets in arrival order, as a decoder's jitter buffer
/// would without waiting: a gap in sequence numbers discards the frame it breaks, and output
/// starts at the first keyframe, so every frame it returns is decodable given the previous.
#[derive(Default)]
pub struct Vp8Assembler {
    last_seq: Option<u16>,
    current: Vec<u8>,
    current_ts: u32,
    started: bool,
    broken: bool,
    seen_keyframe: bool,
    /// Frames discarded because a packet of theirs was missing.
    pub discarded: u64,
}

impl Vp8Assembler {
    /// Adds one packet; returns a frame (with its RTP timestamp) when this packet completes it.
    pub fn push(
        &mut self,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: &Bytes,
    ) -> Option<(u32, Vec<u8>)> {
        let in_order = self.last_seq.is_none_or(|last| seq == last.wrapping_add(1));
        self.last_seq = Some(seq);
        let mut descriptor = Vp8Packet::default();
        let data = descriptor.depacketize(payload).ok()?;
        let frame_start = descriptor.s == 1 && descriptor.pid == 0;
        if frame_start {
            self.current.clear();
            self.current_ts = ts;
            self.started = true;
            self.broken = false;
        } else if !in_order || !self.started || ts != self.current_ts {
            self.broken = true;
        }
        if self.broken {
            if marker {
                self.discarded += 1;
                self.started = false;
            }
            return None;
        }
        self.current.extend_from_slice(&data);
        if !marker {
            return None;
        }
        self.started = false;
        let frame = std::mem::take(&mut self.current);
        if !self.seen_keyframe && !vp8_is_keyframe(&frame) {
            return None;
        }
        self.seen_keyframe = true;
        Some((ts, frame))
    }
}

/// The width and height in a VP8 keyframe's header.
pub fn vp8_dimensions(keyframe: &[u8]) -> Option<(u16, u16)> {
    if !vp8_is_keyframe(keyframe) || keyframe.get(3..6)? != [0x9D, 0x01, 0x2A] {
        return None;
    }
    let w = u16::from_le_bytes([keyframe[6], keyframe[7]]) & 0x3FFF;
    let h = u16::from_le_bytes([keyframe[8], keyframe[9]]) & 0x3FFF;
    Some((w, h))
}

/// An Ogg Opus file (RFC 7845) of 48 kHz stereo packets, each with its RTP timestamp.
pub fn write_ogg_opus(packets: &[(u32, Vec<u8>)]) -> Vec<u8> {
    const SERIAL: u32 = 0x5357_4244;
    let mut out = Vec::new();
    let mut head = b"OpusHead".to_vec();
    head.push(1); // version
    head.push(2); // channels
    head.extend_from_slice(&312u16.to_le_bytes()); // pre-skip, libopus's default
    head.extend_from_slice(&48_000u32.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes()); // output gain
    head.push(0); // channel mapping family
    ogg_page(&mut out, SERIAL, 0, 0x02, 0, &[&head]);
    let mut tags = b"OpusTags".to_vec();
    let vendor = b"switchboard-tests";
    tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    tags.extend_from_slice(vendor);
    tags.extend_from_slice(&0u32.to_le_bytes());
    ogg_page(&mut out, SERIAL, 1, 0, 0, &[&tags]);
    let first = packets.first().map_or(0, |(ts, _)| *ts);
    for (i, (ts, data)) in packets.iter().enumerate() {
        // Granule position: samples up to the end of this packet. RTP timestamps count 48 kHz
        // samples for Opus; each packet here is 20 ms.
        let granule = u64::from(ts.wrapping_sub(first)) + 960;
        let flags = if i + 1 == packets.len() { 0x04 } else { 0 };
        ogg_page(&mut out, SERIAL, i as u32 + 2, flags, granule, &[data]);
    }
    out
}

/// The packets of an Ogg stream (one logical stream), headers included, in order.
pub fn read_ogg_packets(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let mut partial = Vec::new();
    let mut at = 0;
    while at + 27 <= bytes.len() {
        assert_eq!(&bytes[at..at + 4], b"OggS", "Ogg page at {at}");
        let segments = usize::from(bytes[at + 26]);
        let lacing = &bytes[at + 27..at + 27 + segments];
        let mut body = at + 27 + segments;
        for &len in lacing {
            partial.extend_from_slice(&bytes[body..body + usize::from(len)]);
            body += usize::from(len);
            if len < 255 {
                packets.push(std::mem::take(&mut partial));
            }
        }
        at = body;
    }
    packets
}

/// Where `got` sits in `reference` as one unbroken run, if it does: the index of its first
/// element. `reference` wraps around, for a source that is played in a loop.
pub fn find_run<T: PartialEq>(reference: &[T], got: &[T]) -> Option<usize> {
    let first = got.first()?;
    (0..reference.len()).find(|&k| {
        &reference[k] == first
            && got
                .iter()
                .enumerate()
                .all(|(i, g)| reference[(k + i) % reference.len()] == *g)
    })
}

fn ogg_page(out: &mut Vec<u8>, serial: u32, seq: u32, flags: u8, granule: u64, packets: &[&[u8]]) {
    let mut lacing = Vec::new();
    for p in packets {
        lacing.extend(std::iter::repeat_n(255u8, p.len() / 255));
        lacing.push((p.len() % 255) as u8);
    }
    let start = out.len();
    out.extend_from_slice(b"OggS");
    out.push(0);
    out.push(flags);
    out.extend_from_slice(&granule.to_le_bytes());
    out.extend_from_slice(&serial.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // CRC, filled in below
    out.push(lacing.len() as u8);
    out.extend_from_slice(&lacing);
    for p in packets {
        out.extend_from_slice(p);
    }
    let crc = ogg_crc(&out[start..]);
    out[start + 22..start + 26].copy_from_slice(&crc.to_le_bytes());
}

/// Ogg's CRC-32: polynomial 0x04C11DB7, no reflection, zero initial value and final XOR.
fn ogg_crc(data: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &byte in data {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ogg_crc_matches_the_known_check_value() {
        // CRC-32/MPEG-2 without the initial all-ones and final XOR, the Ogg variant.
        assert_eq!(ogg_crc(b"123456789"), 0x89A1_897F);
    }

    #[test]
    fn ogg_round_trips_and_runs_are_found() {
        let packets = vec![(0, vec![1u8; 300]), (960, vec![2u8; 10])];
        let read = read_ogg_packets(&write_ogg_opus(&packets));
        assert_eq!(read.len(), 4);
        assert!(read[0].starts_with(b"OpusHead") && read[1].starts_with(b"OpusTags"));
        assert_eq!(read[2], vec![1u8; 300]);
        assert_eq!(find_run(&[1, 2, 3, 4], &[3, 4, 1]), Some(2));
        assert_eq!(find_run(&[1, 2, 3, 4], &[2, 4]), None);
    }

    #[test]
    fn ivf_round_trips() {
        let frames = vec![(1000, vec![0x10, 0x02, 0x00]), (4000, vec![0x11])];
        let file = write_ivf(320, 240, &frames);
        let read = read_ivf(&file);
        assert_eq!(read.len(), 2);
        assert_eq!(read[1].pts, 3000);
        assert_eq!(&read[1].data[..], &[0x11]);
    }

    #[test]
    fn assembler_drops_frames_with_gaps_and_waits_for_a_keyframe() {
        let mut a = Vp8Assembler::default();
        // The depacketizer wants at least 4 bytes: a descriptor byte and 3 of frame.
        let start = Bytes::from_static(&[0x10, 0x01, 0xAA, 0xAA]); // S=1, interframe
        assert_eq!(a.push(1, 10, true, &start), None, "no keyframe yet");
        let key = Bytes::from_static(&[0x10, 0x00, 0xBB, 0xBB]);
        let cont = Bytes::from_static(&[0x00, 0xCC, 0xCC, 0xCC]);
        assert_eq!(a.push(2, 20, false, &key), None);
        assert_eq!(
            a.push(3, 20, true, &cont),
            Some((20, vec![0x00, 0xBB, 0xBB, 0xCC, 0xCC, 0xCC]))
        );
        assert_eq!(a.push(4, 30, false, &start), None);
        // Sequence 5 is lost.
        assert_eq!(a.push(6, 30, true, &cont), None);
        assert_eq!(a.discarded, 1);
        assert_eq!(
            a.push(7, 40, true, &start),
            Some((40, vec![0x01, 0xAA, 0xAA]))
        );
    }
}
