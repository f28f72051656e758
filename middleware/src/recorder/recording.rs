//! One output file: its tracks, the frames waiting to be interleaved, and the container
//! writer. Decides when the file starts (every video track has a keyframe, or the start
//! timeout passed), writes frames in time order, and finalizes it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde_json::{Value, json};
use switchboard_core::ProducerId;

use super::codec::{Codec, opus_samples};
use super::mkv::{MkvWriter, TrackSpec, opus_head};
use super::ogg_opus::OggOpusWriter;
use super::options::Format;
use super::timeline::SharedClock;

/// Where a file's bytes go: a file, or in tests anything seekable.
pub trait Output: Write + Seek + Send {}
impl<T: Write + Seek + Send> Output for T {}

/// Opens a file's output; replaceable in tests (to simulate a full disk).
pub type Opener = fn(&Path) -> io::Result<Box<dyn Output>>;

/// Creates the file (and its directory).
pub fn open_file(path: &Path) -> io::Result<Box<dyn Output>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = File::options().write(true).create_new(true).open(path)?;
    Ok(Box::new(BufWriter::with_capacity(256 << 10, file)))
}

const APP: &str = concat!("switchboard-recorder ", env!("CARGO_PKG_VERSION"));

/// One track of a file.
#[derive(Debug)]
pub struct Slot {
    /// The producer.
    pub producer: ProducerId,
    /// Its codec.
    pub codec: Codec,
    /// Audio channels.
    pub channels: u8,
    /// Picture size once known.
    pub size: Option<(u16, u16)>,
    /// H.264 decoder configuration once known.
    pub avcc: Option<Vec<u8>>,
    /// Whether it has produced a usable frame (video: a keyframe).
    pub ready: bool,
    /// Whether its producer closed.
    pub ended: bool,
    /// Track index in the container, once the file started (None: left out).
    index: Option<usize>,
    /// End of its last written frame (ns).
    end_ns: i64,
    last_video_ns: Option<i64>,
    frame_ns: i64,
}

struct Queued {
    time_ns: i64,
    seq: u64,
    slot: usize,
    data: Bytes,
    keyframe: bool,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.time_ns, self.seq) == (o.time_ns, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.time_ns, self.seq).cmp(&(o.time_ns, o.seq))
    }
}

enum Sink {
    Mkv(MkvWriter<Box<dyn Output>>),
    Ogg(OggOpusWriter<Box<dyn Output>>),
}

/// Where a file stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Collecting tracks and first frames.
    Pending,
    /// Writing.
    Writing,
    /// Failed (disk full, unwritable directory): frames are dropped.
    Failed,
    /// Finalized.
    Finished,
}

/// Limits and timings of a file.
#[derive(Clone, Debug)]
pub struct Timing {
    /// Interleaving delay.
    pub mux_delay_ns: i64,
    /// Longest wait for video keyframes before starting.
    pub start_timeout_ns: i64,
    /// Most bytes held in memory.
    pub max_buffered_bytes: usize,
}

/// Something the backend should hear about.
pub type Notice = (&'static str, Value);

/// One output file.
pub struct Recording {
    /// The file's path (its extension is fixed when the file starts).
    pub path: PathBuf,
    /// Tracks.
    pub slots: Vec<Slot>,
    /// The sender-clock relation shared by its tracks.
    pub clock: SharedClock,
    state: State,
    format: Format,
    timing: Timing,
    queue: BinaryHeap<Reverse<Queued>>,
    queued_bytes: usize,
    seq: u64,
    first_arrival_ns: Option<i64>,
    origin_ns: i64,
    sink: Option<Sink>,
    opener: Opener,
    /// Frames written.
    pub frames: u64,
    /// Frames dropped (failed file, memory limit, track left out).
    pub dropped: u64,
    bytes: u64,
}

impl Recording {
    /// A pending file; `path` is given without extension.
    pub fn new(path: PathBuf, format: Format, timing: Timing, opener: Opener) -> Self {
        Self {
            path,
            slots: Vec::new(),
            clock: SharedClock::default(),
            state: State::Pending,
            format,
            timing,
            queue: BinaryHeap::new(),
            queued_bytes: 0,
            seq: 0,
            first_arrival_ns: None,
            origin_ns: 0,
            sink: None,
            opener,
            frames: 0,
            dropped: 0,
            bytes: 0,
        }
    }

    /// Where it stands.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether tracks can still join (the file has not started).
    pub fn accepts_tracks(&self) -> bool {
        self.state == State::Pending && self.slots.len() < 126
    }

    /// Adds a track; returns its slot.
    pub fn add_track(&mut self, producer: ProducerId, codec: Codec, channels: u8) -> usize {
        self.slots.push(Slot {
            producer,
            codec,
            channels,
            size: None,
            avcc: None,
            ready: false,
            ended: false,
            index: None,
            end_ns: 0,
            last_video_ns: None,
            frame_ns: 0,
        });
        self.slots.len() - 1
    }

    /// Producers recorded in it.
    pub fn producers(&self) -> Vec<ProducerId> {
        self.slots.iter().map(|s| s.producer).collect()
    }

    /// Bytes written.
    pub fn bytes(&self) -> u64 {
        match &self.sink {
            Some(Sink::Mkv(w)) => w.bytes(),
            Some(Sink::Ogg(w)) => w.bytes(),
            None => self.bytes,
        }
    }

    /// Length so far (ms).
    pub fn duration_ms(&self) -> u64 {
        let end = self.slots.iter().map(|s| s.end_ns).max().unwrap_or(0);
        ((end - self.origin_ns).max(0) / 1_000_000) as u64
    }

    /// A frame of `slot` at recording time `time_ns`, which arrived at `arrival_ns`.
    pub fn push(
        &mut self,
        slot: usize,
        time_ns: i64,
        arrival_ns: i64,
        data: Bytes,
        keyframe: bool,
    ) {
        if matches!(self.state, State::Failed | State::Finished) {
            self.dropped += 1;
            return;
        }
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        if self.state == State::Writing && s.index.is_none() {
            self.dropped += 1; // a track left out of the file
            return;
        }
        if self.queued_bytes + data.len() > self.timing.max_buffered_bytes {
            self.dropped += 1;
            return;
        }
        s.ready |= !s.codec.is_video() || keyframe;
        self.first_arrival_ns.get_or_insert(arrival_ns);
        self.queued_bytes += data.len();
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            time_ns,
            seq: self.seq,
            slot,
            data,
            keyframe,
        }));
    }

    /// A video track's picture size or H.264 configuration, from a keyframe.
    pub fn set_keyframe_info(
        &mut self,
        slot: usize,
        size: Option<(u16, u16)>,
        avcc: Option<Vec<u8>>,
    ) {
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        if let Some(size) = size {
            s.size = Some(size);
            if let (Some(i), Some(Sink::Mkv(w))) = (s.index, &mut self.sink) {
                w.set_picture_size(i, size);
            }
        }
        if s.avcc.is_none() {
            s.avcc = avcc;
        }
    }

    /// Writes what is due at `now_ns`: starts the file when it is time, then frames older than
    /// the interleaving delay. Returns what the backend should hear.
    pub fn pump(&mut self, now_ns: i64, notices: &mut Vec<Notice>) {
        if self.state == State::Pending {
            let Some(first) = self.first_arrival_ns else {
                return;
            };
            let waited = now_ns - first;
            let ready = self.slots.iter().all(|s| s.ready || s.ended);
            if !(ready && waited >= self.timing.mux_delay_ns
                || waited >= self.timing.start_timeout_ns)
            {
                return;
            }
            self.start(notices);
        }
        self.write_due(now_ns - self.timing.mux_delay_ns, notices);
    }

    fn start(&mut self, notices: &mut Vec<Notice>) {
        // Tracks that cannot be written yet are left out: H.264 without parameter sets, and
        // tracks that never produced a frame.
        let mut specs = Vec::new();
        for s in &mut self.slots {
            let usable = s.ready && (s.codec != Codec::H264 || s.avcc.is_some());
            if usable {
                s.index = Some(specs.len());
                specs.push(TrackSpec {
                    codec: s.codec,
                    size: s.size,
                    channels: s.channels,
                    codec_private: match s.codec {
                        Codec::Opus => Some(opus_head(s.channels)),
                        Codec::H264 => s.avcc.clone(),
                        _ => None,
                    },
                    name: s.producer.to_string(),
                });
            }
        }
        if specs.is_empty() {
            // Nothing usable yet (say, video without a keyframe past the timeout): keep waiting.
            return;
        }
        let ogg = self.format == Format::Auto && specs.len() == 1 && specs[0].codec == Codec::Opus;
        let ext = if ogg {
            "ogg"
        } else if specs.iter().all(|t| t.codec.webm_compatible()) {
            "webm"
        } else {
            "mkv"
        };
        self.path.set_extension(ext);
        self.origin_ns = self.queue.peek().map_or(0, |q| q.0.time_ns);
        let opened = (self.opener)(&self.path).and_then(|out| {
            Ok(if ogg {
                let serial = self.seq as u32 ^ 0x5357_4252;
                Sink::Ogg(OggOpusWriter::new(
                    out,
                    specs[0].channels.max(1),
                    serial,
                    APP,
                )?)
            } else {
                Sink::Mkv(MkvWriter::new(out, &specs, APP)?)
            })
        });
        match opened {
            Ok(sink) => {
                self.sink = Some(sink);
                self.state = State::Writing;
                for s in &mut self.slots {
                    s.end_ns = self.origin_ns;
                }
                let left_out: Vec<String> = self
                    .slots
                    .iter()
                    .filter(|s| s.index.is_none())
                    .map(|s| s.producer.to_string())
                    .collect();
                notices.push((
                    "recording_started",
                    json!({"path": self.path, "producers": self.producers(), "left_out": left_out}),
                ));
            }
            Err(e) => self.fail(&e, notices),
        }
    }

    fn fail(&mut self, e: &io::Error, notices: &mut Vec<Notice>) {
        tracing::warn!(path = %self.path.display(), error = %e, "recording failed");
        self.bytes = self.bytes();
        self.sink = None;
        self.state = State::Failed;
        self.dropped += self.queue.len() as u64;
        self.queue.clear();
        self.queued_bytes = 0;
        notices.push((
            "recording_failed",
            json!({"path": self.path, "producers": self.producers(), "message": e.to_string()}),
        ));
    }

    fn write_due(&mut self, until_ns: i64, notices: &mut Vec<Notice>) {
        while self.state == State::Writing {
            let due = self.queue.peek().is_some_and(|q| q.0.time_ns <= until_ns);
            if !due {
                break;
            }
            let Some(Reverse(q)) = self.queue.pop() else {
                break;
            };
            self.queued_bytes -= q.data.len();
            if let Err(e) = self.write(q) {
                self.fail(&e, notices);
            }
        }
    }

    fn write(&mut self, q: Queued) -> io::Result<()> {
        let Some(slot) = self.slots.get_mut(q.slot) else {
            return Ok(());
        };
        let Some(index) = slot.index else {
            self.dropped += 1;
            return Ok(());
        };
        let time_ns = q.time_ns.max(self.origin_ns);
        let time_ms = ((time_ns - self.origin_ns) / 1_000_000) as u64;
        let written = match &mut self.sink {
            Some(Sink::Mkv(w)) => {
                w.write_frame(index, time_ms, &q.data, q.keyframe)?;
                true
            }
            Some(Sink::Ogg(w)) => w.write_packet(&q.data, time_ms)?,
            None => false,
        };
        if !written {
            self.dropped += 1;
            return Ok(());
        }
        self.frames += 1;
        // How long the frame lasts: Opus says; video lasts until the next frame.
        let duration = if slot.codec == Codec::Opus {
            i64::from(opus_samples(&q.data).unwrap_or(960)) * 1_000_000 / 48
        } else {
            if let Some(prev) = slot.last_video_ns {
                slot.frame_ns = (time_ns - prev).clamp(0, 1_000_000_000);
            }
            slot.last_video_ns = Some(time_ns);
            slot.frame_ns
        };
        slot.end_ns = slot.end_ns.max(time_ns + duration);
        Ok(())
    }

    /// Writes everything held and finalizes the file (Matroska: Cues, Duration, sizes; Ogg:
    /// end of stream). A file that never started is started first if it has any frame.
    pub fn finish(&mut self, notices: &mut Vec<Notice>) {
        if self.state == State::Pending {
            if self.queue.is_empty() {
                self.state = State::Finished;
                return;
            }
            self.start(notices);
        }
        self.write_due(i64::MAX, notices);
        if self.state != State::Writing {
            if self.state == State::Pending {
                self.dropped += self.queue.len() as u64;
                self.queue.clear();
                self.state = State::Finished;
            }
            return;
        }
        let duration_ms = self.duration_ms();
        let result = match self.sink.take() {
            Some(Sink::Mkv(w)) => w.finish(duration_ms).map(|(n, _)| n),
            Some(Sink::Ogg(w)) => w.finish().map(|(n, _)| n),
            None => Ok(self.bytes),
        };
        match result {
            Ok(bytes) => {
                self.bytes = bytes;
                self.state = State::Finished;
                notices.push((
                    "recording_finished",
                    json!({
                        "path": self.path,
                        "producers": self.producers(),
                        "duration_ms": duration_ms,
                        "bytes": bytes,
                        "frames": self.frames,
                    }),
                ));
            }
            Err(e) => self.fail(&e, notices),
        }
    }

    /// A summary for `stats`.
    pub fn stats(&self) -> Value {
        json!({
            "path": self.path,
            "state": format!("{:?}", self.state).to_lowercase(),
            "producers": self.producers(),
            "frames": self.frames,
            "dropped": self.dropped,
            "bytes": self.bytes(),
            "duration_ms": self.duration_ms(),
        })
    }
}
