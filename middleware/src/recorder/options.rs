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

/// Most bytes one file may hold in memory (`max_buffered_bytes`).
pub const MAX_BUFFERED_BYTES: usize = 1 << 30;
/// Most packets one stream's jitter buffer may hold (`max_jitter_packets`).
pub const MAX_JITTER_PACKETS: usize = 1 << 16;

/// The configured options overlaid with an attach request's, where a requested `directory`
/// is a relative path inside the configured one (or the default `recordings`): the backend
/// chooses where in the recordings tree a room's files go, the configuration chooses the
/// tree. An absolute path, or one that climbs out with `..`, is refused.
pub fn merge(configured: &serde_json::Map<String, Value>, requested: &Value) -> Result<Value> {
    let mut merged = switchboard_core::middleware::overlay_options(configured, requested);
    let Some(wanted) = requested.get("directory") else {
        return Ok(merged);
    };
    let invalid = |why: &str| {
        Error::new(
            ErrorCode::InvalidParams,
            format!("recorder options: directory {wanted}: {why}"),
        )
    };
    let wanted = PathBuf::from(wanted.as_str().ok_or_else(|| invalid("not a string"))?);
    let inside = wanted.components().all(|c| {
        matches!(
            c,
            std::path::Component::Normal(_) | std::path::Component::CurDir
        )
    });
    if !inside {
        return Err(invalid(
            "must be a relative path inside the configured directory (no leading /, no ..)",
        ));
    }
    let base = configured
        .get("directory")
        .and_then(Value::as_str)
        .map(PathBuf::from)
        .unwrap_or_else(|| RecorderOptions::default().directory);
    if let Value::Object(m) = &mut merged {
        m.insert(
            "directory".to_owned(),
            Value::String(base.join(wanted).to_string_lossy().into_owned()),
        );
    }
    Ok(merged)
}

impl RecorderOptions {
    /// Parses and checks options; `null` gives the defaults.
    pub fn from_value(value: &Value) -> Result<Self> {
        let options: Self = parse_options("recorder", value)?;
        let invalid = |message: String| {
            Err(Error::new(
                ErrorCode::InvalidParams,
                format!("recorder options: {message}"),
            ))
        };
        if options.directory.as_os_str().is_empty() {
            return invalid("directory is empty".to_owned());
        }
        if options.jitter_ms > 10_000 || options.mux_delay_ms > 10_000 {
            return invalid("jitter_ms and mux_delay_ms are at most 10000".to_owned());
        }
        if options.start_timeout_ms > 60_000 || options.keyframe_retry_ms > 60_000 {
            return invalid("start_timeout_ms and keyframe_retry_ms are at most 60000".to_owned());
        }
        if !(1..=MAX_JITTER_PACKETS).contains(&options.max_jitter_packets) {
            return invalid(format!(
                "max_jitter_packets must be 1 to {MAX_JITTER_PACKETS}"
            ));
        }
        if !(64 * 1024..=MAX_BUFFERED_BYTES).contains(&options.max_buffered_bytes) {
            return invalid(format!(
                "max_buffered_bytes must be 65536 to {MAX_BUFFERED_BYTES}"
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
        for unbounded in [
            json!({"max_buffered_bytes": 1u64 << 40}),
            json!({"max_buffered_bytes": 0}),
            json!({"max_jitter_packets": 100_000_000}),
            json!({"max_jitter_packets": 0}),
            json!({"start_timeout_ms": 86_400_000}),
        ] {
            let e = RecorderOptions::from_value(&unbounded).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidParams, "{unbounded}");
        }
    }

    #[test]
    fn an_attach_request_cannot_point_the_recorder_outside_its_directory() {
        let configured: serde_json::Map<String, Value> =
            serde_json::from_value(json!({"directory": "/srv/recordings"})).unwrap();
        let merged = merge(&configured, &json!({"directory": "bank-42/calls"})).unwrap();
        assert_eq!(merged["directory"], "/srv/recordings/bank-42/calls");
        for escape in ["/etc", "../../etc", "a/../../b", "/srv/recordings/x"] {
            let e = merge(&configured, &json!({"directory": escape})).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidParams, "{escape}");
            assert!(e.message.contains("relative path"), "{}", e.message);
        }
        // Without a configured directory, requests land under the default one.
        let merged = merge(&serde_json::Map::new(), &json!({"directory": "room-1"})).unwrap();
        assert_eq!(merged["directory"], "recordings/room-1");
        // Other options overlay as before.
        let merged = merge(&configured, &json!({"jitter_ms": 50})).unwrap();
        assert_eq!(merged["directory"], "/srv/recordings");
        assert_eq!(merged["jitter_ms"], 50);
    }
}
