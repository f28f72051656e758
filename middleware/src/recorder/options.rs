//! The recorder's options: the configuration's `[middleware.options.recorder]` table overlaid
//! with the attach request's options.

use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;
use switchboard_core::middleware::parse_options;
use switchboard_core::{Error, ErrorCode, ProducerId, Result};

/// How producers are grouped into files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grouping {
    /// One file per peer: its audio and video tracks together (producers without a peer are
    /// grouped by transport).
    #[default]
    Peer,
    /// One file per producer.
    Producer,
}

/// Which container a file gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Ogg for a file with a single Opus track, Matroska otherwise (`.webm` when every
    /// codec is VP8, VP9 or Opus; `.mkv` with H.264).
    #[default]
    Auto,
    /// Always Matroska/WebM.
    Matroska,
}

/// Recorder options. Every field has a default.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecorderOptions {
    /// Where files go; a sub-directory per room is created in it.
    pub directory: PathBuf,
    /// Producers to record; empty records the whole room (present and future producers).
    pub producers: Vec<ProducerId>,
    /// How producers are grouped into files.
    pub group: Grouping,
    /// Container choice.
    pub format: Format,
    /// How long a missing packet is waited for before it counts as lost.
    pub jitter_ms: u64,
    /// Most packets held per stream while waiting for a missing one.
    pub max_jitter_packets: usize,
    /// How long frames wait to be interleaved in time order across a file's tracks.
    pub mux_delay_ms: u64,
    /// How long a file waits for every video track's first keyframe before it starts
    /// without it.
    pub start_timeout_ms: u64,
    /// Least time between two keyframe requests for one producer.
    pub keyframe_retry_ms: u64,
    /// Most bytes of frames one file holds in memory (before it starts, and while
    /// interleaving); beyond it frames are dropped and counted.
    pub max_buffered_bytes: usize,
}

impl Default for RecorderOptions {
    fn default() -> Self {
        Self {
            directory: PathBuf::from("recordings"),
            producers: Vec::new(),
            group: Grouping::Peer,
            format: Format::Auto,
            jitter_ms: 200,
            max_jitter_packets: 2000,
            mux_delay_ms: 500,
            start_timeout_ms: 3000,
            keyframe_retry_ms: 1000,
            max_buffered_bytes: 64 << 20,
        }
    }
}

impl RecorderOptions {
    /// Parses and checks options; `null` gives the defaults.
    pub fn from_value(value: &Value) -> Result<Self> {
        let options: Self = parse_options("recorder", value)?;
        if options.directory.as_os_str().is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidParams,
                "recorder options: directory is empty",
            ));
        }
        if options.jitter_ms > 10_000 || options.mux_delay_ms > 10_000 {
            return Err(Error::new(
                ErrorCode::InvalidParams,
                "recorder options: jitter_ms and mux_delay_ms are at most 10000",
            ));
        }
        Ok(options)
    }

    pub(crate) fn jitter(&self) -> Duration {
        Duration::from_millis(self.jitter_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_errors() {
        let o = RecorderOptions::from_value(&Value::Null).unwrap();
        assert_eq!(o.directory, PathBuf::from("recordings"));
        assert!(o.producers.is_empty());
        let id = ProducerId::new();
        let o = RecorderOptions::from_value(
            &json!({"directory": "/tmp/x", "producers": [id], "group": "producer"}),
        )
        .unwrap();
        assert_eq!(o.producers, vec![id]);
        assert_eq!(o.group, Grouping::Producer);
        let e = RecorderOptions::from_value(&json!({"directroy": "x"})).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidParams);
        assert!(e.message.contains("directroy"), "{}", e.message);
        assert!(RecorderOptions::from_value(&json!({"producers": ["nope"]})).is_err());
        assert!(RecorderOptions::from_value(&json!({"jitter_ms": 999_999})).is_err());
    }
}
