//! A small Matroska/WebM muxer: just what a recording needs.
//!
//! Why not a crate: the `webm` crate (libwebm bindings, MPL-2.0) only knows VP8, VP9, AV1,
//! Opus and Vorbis (no H.264), wants every track's picture size before the first frame, and
//! reports every I/O failure as "unknown error"; the pure-Rust Matroska writers on crates.io
//! were incomplete or unmaintained when this was written. The subset written here is small:
//! EBML header, a Segment with SeekHead, Info (with Duration), Tracks, Clusters of
//! SimpleBlocks and Cues.
//!
//! Crash safety: the Segment starts with an "unknown" size and every Cluster is written whole
//! (with its size) once complete, so a file cut off by a crash still plays up to its last
//! complete Cluster. [`MkvWriter::finish`] then patches the Segment size, the Duration, the
//! picture sizes learnt late, and the SeekHead, and appends Cues.

use std::io::{self, Seek, SeekFrom, Write};

use super::codec::Codec;

// Element ids (Matroska specification).
const EBML: u32 = 0x1A45_DFA3;
const EBML_VERSION: u32 = 0x4286;
const EBML_READ_VERSION: u32 = 0x42F7;
const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
const DOC_TYPE: u32 = 0x4282;
const DOC_TYPE_VERSION: u32 = 0x4287;
const DOC_TYPE_READ_VERSION: u32 = 0x4285;
const SEGMENT: u32 = 0x1853_8067;
const SEEK_HEAD: u32 = 0x114D_9B74;
const SEEK: u32 = 0x4DBB;
const SEEK_ID: u32 = 0x53AB;
const SEEK_POSITION: u32 = 0x53AC;
const INFO: u32 = 0x1549_A966;
const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const MUXING_APP: u32 = 0x4D80;
const WRITING_APP: u32 = 0x5741;
const DURATION: u32 = 0x4489;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_NUMBER: u32 = 0xD7;
const TRACK_UID: u32 = 0x73C5;
const TRACK_TYPE: u32 = 0x83;
const FLAG_LACING: u32 = 0x9C;
const CODEC_ID: u32 = 0x86;
const CODEC_PRIVATE: u32 = 0x63A2;
const CODEC_DELAY: u32 = 0x56AA;
const SEEK_PRE_ROLL: u32 = 0x56BB;
const NAME: u32 = 0x536E;
const VIDEO: u32 = 0xE0;
const PIXEL_WIDTH: u32 = 0xB0;
const PIXEL_HEIGHT: u32 = 0xBA;
const AUDIO: u32 = 0xE1;
const SAMPLING_FREQUENCY: u32 = 0xB5;
const CHANNELS: u32 = 0x9F;
const CLUSTER: u32 = 0x1F43_B675;
const TIMESTAMP: u32 = 0xE7;
const SIMPLE_BLOCK: u32 = 0xA3;
const CUES: u32 = 0x1C53_BB6B;
const CUE_POINT: u32 = 0xBB;
const CUE_TIME: u32 = 0xB3;
const CUE_TRACK_POSITIONS: u32 = 0xB7;
const CUE_TRACK: u32 = 0xF7;
const CUE_CLUSTER_POSITION: u32 = 0xF1;
const VOID: u32 = 0xEC;

/// Timestamps are in milliseconds (TimestampScale 1 000 000 ns).
const TIMESTAMP_SCALE_NS: u64 = 1_000_000;
/// Room kept after Info for the SeekHead written at the end.
const SEEK_HEAD_RESERVED: usize = 96;
/// A Cluster is closed after this long, well inside SimpleBlock's signed 16-bit offsets.
const MAX_CLUSTER_MS: u64 = 5_000;
/// ... or this many bytes.
const MAX_CLUSTER_BYTES: usize = 4 << 20;

/// One track of a file.
#[derive(Clone, Debug)]
pub struct TrackSpec {
    /// Its codec.
    pub codec: Codec,
    /// Picture size, when known (may be set later with [`MkvWriter::set_picture_size`]).
    pub size: Option<(u16, u16)>,
    /// Audio channels.
    pub channels: u8,
    /// `CodecPrivate` (OpusHead for Opus, avcC for H.264).
    pub codec_private: Option<Vec<u8>>,
    /// A name shown by players (the producer id).
    pub name: String,
}

fn id_bytes(id: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(4);
    put_id(&mut v, id);
    v
}

fn put_id(out: &mut Vec<u8>, id: u32) {
    // Ids carry their own length marker: drop leading zero bytes.
    let bytes = id.to_be_bytes();
    let skip = (id.leading_zeros() / 8) as usize;
    out.extend_from_slice(&bytes[skip..]);
}

/// Writes an EBML variable-size integer in the fewest bytes (at least `min_len`).
fn put_size(out: &mut Vec<u8>, size: u64, min_len: usize) {
    let mut len = min_len.max(1);
    while len < 8 && size >= (1u64 << (7 * len)) - 1 {
        len += 1;
    }
    let marked = size | (1u64 << (7 * len));
    out.extend_from_slice(&marked.to_be_bytes()[8 - len..]);
}

fn put_uint(out: &mut Vec<u8>, id: u32, v: u64) {
    let len = (8 - (v.leading_zeros() / 8) as usize).max(1);
    put_id(out, id);
    put_size(out, len as u64, 1);
    out.extend_from_slice(&v.to_be_bytes()[8 - len..]);
}

fn put_fixed_uint(out: &mut Vec<u8>, id: u32, v: u64, len: usize) {
    put_id(out, id);
    put_size(out, len as u64, 1);
    out.extend_from_slice(&v.to_be_bytes()[8 - len..]);
}

fn put_float(out: &mut Vec<u8>, id: u32, v: f64) {
    put_id(out, id);
    put_size(out, 8, 1);
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, id: u32, v: &[u8]) {
    put_id(out, id);
    put_size(out, v.len() as u64, 1);
    out.extend_from_slice(v);
}

fn put_master(out: &mut Vec<u8>, id: u32, body: &[u8]) {
    put_bytes(out, id, body);
}

/// A Void element filling exactly `len` (>= 2) bytes.
fn put_void(out: &mut Vec<u8>, len: usize) {
    debug_assert!(len >= 2);
    put_id(out, VOID);
    if len - 2 < 127 {
        put_size(out, (len - 2) as u64, 1);
        out.resize(out.len() + len - 2, 0);
    } else {
        put_size(out, (len - 9) as u64, 8);
        out.resize(out.len() + len - 9, 0);
    }
}

/// The OpusHead `CodecPrivate` of an Opus track (RFC 7845 section 5.1): no pre-skip, since a
/// recording starts mid-stream.
pub fn opus_head(channels: u8) -> Vec<u8> {
    let mut v = b"OpusHead".to_vec();
    v.push(1);
    v.push(channels);
    v.extend_from_slice(&0u16.to_le_bytes());
    v.extend_from_slice(&48_000u32.to_le_bytes());
    v.extend_from_slice(&0i16.to_le_bytes());
    v.push(0);
    v
}

/// Where a video track's PixelWidth and PixelHeight values sit, and the size to patch in.
type PictureAt = Option<(u64, u64, Option<(u16, u16)>)>;

struct Cue {
    time_ms: u64,
    track: u64,
    cluster_pos: u64,
}

/// Writes one Matroska (or WebM) file.
pub struct MkvWriter<W: Write + Seek> {
    out: W,
    segment_size_pos: u64,
    segment_data_pos: u64,
    seek_head_pos: u64,
    info_pos: u64,
    duration_pos: u64,
    tracks_pos: u64,
    /// Offsets of each video track's PixelWidth/PixelHeight payloads, and the size to patch.
    picture: Vec<PictureAt>,
    video_track: Option<u64>,
    cluster: Vec<u8>,
    cluster_time_ms: u64,
    cluster_pos_cue: Option<Cue>,
    cues: Vec<Cue>,
    bytes: u64,
    last_ms: u64,
}

impl<W: Write + Seek> MkvWriter<W> {
    /// Writes the headers for these tracks (numbered from 1 in this order).
    pub fn new(mut out: W, tracks: &[TrackSpec], app: &str) -> io::Result<Self> {
        let webm = tracks.iter().all(|t| t.codec.webm_compatible());
        let mut head = Vec::with_capacity(512);
        let mut ebml = Vec::new();
        put_uint(&mut ebml, EBML_VERSION, 1);
        put_uint(&mut ebml, EBML_READ_VERSION, 1);
        put_uint(&mut ebml, EBML_MAX_ID_LENGTH, 4);
        put_uint(&mut ebml, EBML_MAX_SIZE_LENGTH, 8);
        put_bytes(
            &mut ebml,
            DOC_TYPE,
            if webm { b"webm" } else { b"matroska" },
        );
        put_uint(&mut ebml, DOC_TYPE_VERSION, 4);
        put_uint(&mut ebml, DOC_TYPE_READ_VERSION, 2);
        put_master(&mut head, EBML, &ebml);

        put_id(&mut head, SEGMENT);
        let segment_size_pos = head.len() as u64;
        // "Unknown" size until finish().
        head.extend_from_slice(&0x01FF_FFFF_FFFF_FFFFu64.to_be_bytes());
        let segment_data_pos = head.len() as u64;

        let seek_head_pos = head.len() as u64;
        put_void(&mut head, SEEK_HEAD_RESERVED);

        let info_pos = head.len() as u64;
        let mut info = Vec::new();
        put_uint(&mut info, TIMESTAMP_SCALE, TIMESTAMP_SCALE_NS);
        put_bytes(&mut info, MUXING_APP, app.as_bytes());
        put_bytes(&mut info, WRITING_APP, app.as_bytes());
        let duration_in_info = info.len();
        // Duration: 2-byte id + 1-byte size + 8-byte float, reserved as Void until known.
        put_void(&mut info, 11);
        put_id(&mut head, INFO);
        put_size(&mut head, info.len() as u64, 1);
        let duration_pos = head.len() as u64 + duration_in_info as u64;
        head.extend_from_slice(&info);

        let tracks_pos = head.len() as u64;
        let mut body = Vec::new();
        let mut picture_at = Vec::new();
        let mut video_track = None;
        for (i, t) in tracks.iter().enumerate() {
            let number = i as u64 + 1;
            let mut e = Vec::new();
            put_uint(&mut e, TRACK_NUMBER, number);
            put_uint(&mut e, TRACK_UID, number);
            put_uint(&mut e, TRACK_TYPE, if t.codec.is_video() { 1 } else { 2 });
            put_uint(&mut e, FLAG_LACING, 0);
            put_bytes(&mut e, NAME, t.name.as_bytes());
            put_bytes(&mut e, CODEC_ID, t.codec.matroska_id().as_bytes());
            if let Some(private) = &t.codec_private {
                put_bytes(&mut e, CODEC_PRIVATE, private);
            }
            let mut picture = None;
            if t.codec.is_video() {
                video_track.get_or_insert(number);
                let (w, h) = t.size.unwrap_or((640, 480));
                let mut v = Vec::new();
                // Fixed 2-byte values so a size learnt later can be patched in place.
                let w_at = v.len() + 2;
                put_fixed_uint(&mut v, PIXEL_WIDTH, u64::from(w), 2);
                let h_at = v.len() + 2;
                put_fixed_uint(&mut v, PIXEL_HEIGHT, u64::from(h), 2);
                let mut header = Vec::new();
                put_id(&mut header, VIDEO);
                put_size(&mut header, v.len() as u64, 1);
                let base = e.len() + header.len();
                e.extend_from_slice(&header);
                e.extend_from_slice(&v);
                picture = Some(((base + w_at) as u64, (base + h_at) as u64, t.size));
            } else {
                put_uint(&mut e, CODEC_DELAY, 0);
                put_uint(&mut e, SEEK_PRE_ROLL, 80_000_000);
                let mut a = Vec::new();
                put_float(&mut a, SAMPLING_FREQUENCY, 48_000.0);
                put_uint(&mut a, CHANNELS, u64::from(t.channels.max(1)));
                put_master(&mut e, AUDIO, &a);
            }
            let mut entry_header = Vec::new();
            put_id(&mut entry_header, TRACK_ENTRY);
            put_size(&mut entry_header, e.len() as u64, 1);
            let entry_start = body.len() + entry_header.len();
            picture_at
                .push(picture.map(|(w, h, s)| (entry_start as u64 + w, entry_start as u64 + h, s)));
            body.extend_from_slice(&entry_header);
            body.extend_from_slice(&e);
        }
        let mut tracks_header = Vec::new();
        put_id(&mut tracks_header, TRACKS);
        put_size(&mut tracks_header, body.len() as u64, 1);
        let tracks_body_pos = tracks_pos + tracks_header.len() as u64;
        head.extend_from_slice(&tracks_header);
        head.extend_from_slice(&body);
        let picture = picture_at
            .into_iter()
            .map(|p| p.map(|(w, h, s)| (tracks_body_pos + w, tracks_body_pos + h, s)))
            .collect();

        out.write_all(&head)?;
        Ok(Self {
            out,
            segment_size_pos,
            segment_data_pos,
            seek_head_pos,
            info_pos,
            duration_pos,
            tracks_pos,
            picture,
            video_track,
            cluster: Vec::new(),
            cluster_time_ms: 0,
            cluster_pos_cue: None,
            cues: Vec::new(),
            bytes: head.len() as u64,
            last_ms: 0,
        })
    }

    /// Bytes written so far (excluding the Cluster being built).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// A video track's picture size, learnt after the headers were written.
    pub fn set_picture_size(&mut self, track: usize, size: (u16, u16)) {
        if let Some(Some(p)) = self.picture.get_mut(track) {
            p.2 = Some(size);
        }
    }

    /// Adds a frame of `track` (0-based, in the order given to [`MkvWriter::new`]) at `time_ms`
    /// from the start of the file. Frames should come in time order across tracks.
    pub fn write_frame(
        &mut self,
        track: usize,
        time_ms: u64,
        data: &[u8],
        keyframe: bool,
    ) -> io::Result<()> {
        let number = track as u64 + 1;
        let video = self.picture.get(track).is_some_and(Option::is_some);
        let starts_gop = video && keyframe;
        let time_ms = time_ms.max(self.cluster_time_ms);
        let cluster_full = !self.cluster.is_empty()
            && (time_ms - self.cluster_time_ms >= MAX_CLUSTER_MS
                || self.cluster.len() >= MAX_CLUSTER_BYTES
                || starts_gop);
        if cluster_full {
            self.flush_cluster()?;
        }
        if self.cluster.is_empty() {
            self.cluster_time_ms = time_ms;
            put_uint(&mut self.cluster, TIMESTAMP, time_ms);
            // Cue the cluster if it starts a video GOP, or every cluster of an audio-only file.
            if starts_gop || self.video_track.is_none() {
                self.cluster_pos_cue = Some(Cue {
                    time_ms,
                    track: number,
                    cluster_pos: 0,
                });
            }
        }
        let rel = (time_ms - self.cluster_time_ms) as i16;
        put_id(&mut self.cluster, SIMPLE_BLOCK);
        put_size(&mut self.cluster, data.len() as u64 + 4, 1);
        put_size(&mut self.cluster, number, 1);
        self.cluster.extend_from_slice(&rel.to_be_bytes());
        // Audio frames are all "keyframes" (each decodes on its own after pre-roll).
        let flags = if keyframe || !video { 0x80 } else { 0x00 };
        self.cluster.push(flags);
        self.cluster.extend_from_slice(data);
        self.last_ms = self.last_ms.max(time_ms);
        Ok(())
    }

    fn flush_cluster(&mut self) -> io::Result<()> {
        if self.cluster.is_empty() {
            return Ok(());
        }
        let pos = self.bytes;
        let mut header = Vec::with_capacity(12);
        put_id(&mut header, CLUSTER);
        put_size(&mut header, self.cluster.len() as u64, 1);
        self.out.write_all(&header)?;
        self.out.write_all(&self.cluster)?;
        // Hand complete clusters to the OS, so a crash loses at most the one being built.
        self.out.flush()?;
        self.bytes += (header.len() + self.cluster.len()) as u64;
        self.cluster.clear();
        if let Some(mut cue) = self.cluster_pos_cue.take() {
            cue.cluster_pos = pos - self.segment_data_pos;
            self.cues.push(cue);
        }
        Ok(())
    }

    /// Writes the last Cluster and the Cues, patches Segment size, Duration, picture sizes and
    /// SeekHead; returns the file's size and the writer.
    pub fn finish(mut self, duration_ms: u64) -> io::Result<(u64, W)> {
        self.flush_cluster()?;
        let cues_pos = self.bytes;
        if !self.cues.is_empty() {
            let mut body = Vec::new();
            for cue in &self.cues {
                let mut pos = Vec::new();
                put_uint(&mut pos, CUE_TRACK, cue.track);
                put_uint(&mut pos, CUE_CLUSTER_POSITION, cue.cluster_pos);
                let mut point = Vec::new();
                put_uint(&mut point, CUE_TIME, cue.time_ms);
                put_master(&mut point, CUE_TRACK_POSITIONS, &pos);
                put_master(&mut body, CUE_POINT, &point);
            }
            let mut cues = Vec::new();
            put_master(&mut cues, CUES, &body);
            self.out.write_all(&cues)?;
            self.bytes += cues.len() as u64;
        }
        let end = self.bytes;

        // Segment size, as an 8-byte vint in the room reserved for it.
        let size = end - self.segment_data_pos;
        self.patch(self.segment_size_pos, &(size | (1u64 << 56)).to_be_bytes())?;
        let mut duration = Vec::new();
        put_float(&mut duration, DURATION, duration_ms as f64);
        self.patch(self.duration_pos, &duration)?;
        for p in self.picture.clone().into_iter().flatten() {
            if let (w_at, h_at, Some((w, h))) = p {
                self.patch(w_at, &w.to_be_bytes())?;
                self.patch(h_at, &h.to_be_bytes())?;
            }
        }
        let rel = |p: u64| p - self.segment_data_pos;
        let mut seeks = Vec::new();
        let mut entries = vec![(INFO, rel(self.info_pos)), (TRACKS, rel(self.tracks_pos))];
        if !self.cues.is_empty() {
            entries.push((CUES, rel(cues_pos)));
        }
        for (id, pos) in entries {
            let mut s = Vec::new();
            put_bytes(&mut s, SEEK_ID, &id_bytes(id));
            put_fixed_uint(&mut s, SEEK_POSITION, pos, 8);
            put_master(&mut seeks, SEEK, &s);
        }
        let mut seek_head = Vec::new();
        put_master(&mut seek_head, SEEK_HEAD, &seeks);
        let room = SEEK_HEAD_RESERVED - seek_head.len();
        put_void(&mut seek_head, room);
        self.patch(self.seek_head_pos, &seek_head)?;
        self.out.seek(SeekFrom::Start(end))?;
        self.out.flush()?;
        Ok((end, self.out))
    }

    fn patch(&mut self, at: u64, data: &[u8]) -> io::Result<()> {
        self.out.seek(SeekFrom::Start(at))?;
        self.out.write_all(data)
    }

    /// The latest frame time written, in ms.
    pub fn last_ms(&self) -> u64 {
        self.last_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vints_use_the_fewest_bytes() {
        let enc = |v: u64| {
            let mut o = Vec::new();
            put_size(&mut o, v, 1);
            o
        };
        assert_eq!(enc(0), vec![0x80]);
        assert_eq!(enc(126), vec![0xFE]);
        assert_eq!(
            enc(127),
            vec![0x40, 0x7F],
            "all-ones is reserved for 'unknown'"
        );
        assert_eq!(enc(300), vec![0x41, 0x2C]);
        let mut v = Vec::new();
        put_void(&mut v, 96);
        assert_eq!(v.len(), 96);
        let mut v = Vec::new();
        put_void(&mut v, 300);
        assert_eq!(v.len(), 300);
        assert_eq!(id_bytes(SEGMENT), vec![0x18, 0x53, 0x80, 0x67]);
        assert_eq!(id_bytes(VOID), vec![0xEC]);
    }
}
