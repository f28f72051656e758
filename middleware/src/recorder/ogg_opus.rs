//! Ogg Opus files (RFC 7845) through the `ogg` crate's page writer.
//!
//! Granule positions follow recording time, not just the packets written: a gap in the
//! stream (loss, DTX, a pause) is filled with empty Opus frames (a TOC byte alone, which a
//! decoder conceals as silence), so the file's timeline matches the other tracks recorded
//! alongside it and the wall clock.

use std::borrow::Cow;
use std::io::{self, Write};

use ogg::writing::{PacketWriteEndInfo, PacketWriter};

use super::codec::opus_samples;
use super::mkv::opus_head;

/// Pages are closed at least this often (in samples), bounding what a crash loses.
const PAGE_SAMPLES: u64 = 48_000;
/// Gaps longer than this are not filled sample for sample (the file would grow for nothing).
const MAX_FILL_SAMPLES: u64 = 48_000 * 600;

/// Writes one Ogg Opus stream.
pub struct OggOpusWriter<W: Write> {
    out: PacketWriter<'static, CountingWriter<W>>,
    serial: u32,
    granule: u64,
    page_start: u64,
    /// The last packet is held back so that [`OggOpusWriter::finish`] can mark the end of
    /// the stream on it.
    held: Option<(Vec<u8>, u64)>,
}

/// Counts the bytes a writer has taken.
pub struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> OggOpusWriter<W> {
    /// Writes the OpusHead and OpusTags pages.
    pub fn new(out: W, channels: u8, serial: u32, vendor: &str) -> io::Result<Self> {
        let mut out = PacketWriter::new(CountingWriter {
            inner: out,
            count: 0,
        });
        out.write_packet(opus_head(channels), serial, PacketWriteEndInfo::EndPage, 0)?;
        let mut tags = b"OpusTags".to_vec();
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor.as_bytes());
        tags.extend_from_slice(&0u32.to_le_bytes());
        out.write_packet(tags, serial, PacketWriteEndInfo::EndPage, 0)?;
        Ok(Self {
            out,
            serial,
            granule: 0,
            page_start: 0,
            held: None,
        })
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.out.inner().count
    }

    /// Samples (48 kHz) written so far, including the held packet.
    pub fn samples(&self) -> u64 {
        self.held.as_ref().map_or(self.granule, |h| h.1)
    }

    fn emit(&mut self, data: Vec<u8>, granule: u64, end: PacketWriteEndInfo) -> io::Result<()> {
        self.out
            .write_packet(Cow::Owned(data), self.serial, end, granule)
    }

    fn release_held(&mut self) -> io::Result<()> {
        if let Some((data, granule)) = self.held.take() {
            let end = if granule - self.page_start >= PAGE_SAMPLES {
                self.page_start = granule;
                PacketWriteEndInfo::EndPage
            } else {
                PacketWriteEndInfo::NormalPacket
            };
            self.emit(data, granule, end)?;
        }
        Ok(())
    }

    /// Adds an Opus packet that starts at `time_ms` from the start of the file. Packets whose
    /// TOC is invalid are skipped (returns `Ok(false)`).
    pub fn write_packet(&mut self, packet: &[u8], time_ms: u64) -> io::Result<bool> {
        let Some(samples) = opus_samples(packet) else {
            return Ok(false);
        };
        let start = time_ms * 48;
        let mut at = self.samples();
        // Fill a gap of at least one frame with empty frames of this packet's configuration.
        let frame = u64::from(opus_samples(&[packet[0] & 0xFC]).unwrap_or(960));
        if start > at + frame && start - at <= MAX_FILL_SAMPLES {
            let fill = (start - at) / frame;
            for _ in 0..fill {
                self.release_held()?;
                at += frame;
                self.held = Some((vec![packet[0] & 0xFC], at));
            }
        }
        self.release_held()?;
        self.granule = at + u64::from(samples);
        self.held = Some((packet.to_vec(), self.granule));
        Ok(true)
    }

    /// Ends the stream (its last page carries the end-of-stream flag), flushes, and returns
    /// the file's size and the writer.
    pub fn finish(mut self) -> io::Result<(u64, W)> {
        let (data, granule) = self
            .held
            .take()
            // No audio at all: end the stream on an empty frame.
            .unwrap_or_else(|| (vec![0xF8], self.granule + 960));
        self.emit(data, granule, PacketWriteEndInfo::EndStream)?;
        let mut counting = self.out.into_inner();
        counting.flush()?;
        Ok((counting.count, counting.inner))
    }
}
