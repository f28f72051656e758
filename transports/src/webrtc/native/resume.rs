//! Moving a connection to another server: what the client's connection has agreed so far (its
//! SDP session and m-lines), so that the new server's first offer is a valid next offer for
//! the client's existing `RTCPeerConnection`. That offer carries the new server's ICE
//! credentials, candidate and DTLS fingerprint: the client restarts ICE towards it, and the
//! changed fingerprint makes it start a new DTLS handshake.
//!
//! The m-lines the client sends on go along with what was accepted on them (codecs and header
//! extensions in the client's numbering, its SSRCs): the new server offers them `recvonly` as
//! they were, routes what arrives on them from the start, and the client keeps sending the
//! same streams (an ICE or DTLS restart changes none of its SSRCs).

use super::*;
use serde::{Deserialize, Serialize};

/// A receive connection's SDP state, as the old server exports it and the new one resumes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resume {
    /// The `o=` line's session id, which must not change within a session.
    pub session_id: u64,
    /// The last offer's `o=` version; the next offer has a greater one.
    pub version: u64,
    /// The m-lines in their order.
    pub lines: Vec<ResumedLine>,
}

/// One m-line of a [`Resume`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumedLine {
    /// Its `a=mid`.
    pub mid: String,
    /// Audio or video; `None` for the data-channel m-line.
    pub kind: Option<MediaKind>,
    /// The `m=` line's media and protocol, as first written.
    pub media: String,
    /// The `m=` line's protocol.
    pub protocol: String,
    /// Whether it stays open: the data channel, a line carrying a consumer, whose track the
    /// new server puts back on it, or a line the client sends on. The others (idle or
    /// stopped) are stopped there: a consumer placed on an idle line would not land where the
    /// client expects it.
    pub open: bool,
    /// The consumer on it, on the old server (exported, for the caller to find its producer;
    /// ignored when resuming).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<ConsumerId>,
    /// What the client sends on it, if it sends: the line is offered `recvonly` with these
    /// codecs and extensions, and its SSRCs are routed to the producer made for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving: Option<Receiving>,
    /// The producer of what the client sends on it, on the old server (exported, for the
    /// caller to make its successor; ignored when resuming).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer: Option<ProducerId>,
}

/// The most m-lines a resumed session may have: the default of
/// `limits.max_sdp_media_sections`, which the session's descriptions were held to.
const MAX_LINES: usize = 1_024;

/// The most SSRCs one resumed m-line may declare (a media stream and its RTX, with room for
/// simulcast layers).
const MAX_SSRCS_PER_LINE: usize = 16;

impl Resume {
    /// Refuses a state no connection of this server exported: a backend can pass one with
    /// the `resume` option, so it is input like any other.
    pub(super) fn check(&self) -> Result<()> {
        if self.lines.len() > MAX_LINES {
            return Err(Error::invalid(format!(
                "resume: {} m-lines, at most {MAX_LINES}",
                self.lines.len()
            )));
        }
        let mut mids = std::collections::HashSet::new();
        for l in &self.lines {
            if l.mid.is_empty() || l.mid.len() > 32 || !mids.insert(l.mid.as_str()) {
                return Err(Error::invalid(format!(
                    "resume: the mid {:?} is empty, too long or repeated",
                    l.mid
                )));
            }
            if let Some(r) = &l.receiving
                && (l.kind.is_none() || r.ssrcs.len() > MAX_SSRCS_PER_LINE)
            {
                return Err(Error::invalid(format!(
                    "resume: m-line {:?} sends without a media kind or with over {MAX_SSRCS_PER_LINE} SSRCs",
                    l.mid
                )));
            }
        }
        Ok(())
    }

    /// The m-lines a resumed connection starts with: open lines idle, waiting for their
    /// consumers (which must be added in the lines' order), the others stopped.
    pub(super) fn tracks(&self) -> Vec<Track> {
        self.lines
            .iter()
            .map(|l| {
                let mut t = match l.kind {
                    Some(kind) => Track::server(l.mid.clone(), kind),
                    None => Track::application(l.mid.clone()),
                };
                t.media.clone_from(&l.media);
                t.protocol.clone_from(&l.protocol);
                t.stopped = !l.open;
                if let Some(r) = l.receiving.as_ref().filter(|_| l.open) {
                    // The client's own m-line: no consumer takes it while idle.
                    t.server_line = false;
                    t.last_codecs.clone_from(&r.codecs);
                    t.receiving = Some(r.clone());
                }
                t
            })
            .collect()
    }
}

impl NativeConnection {
    /// What [`Resume`] needs of this connection.
    pub fn export_resume(&self) -> Result<Resume> {
        let tracks = self.tracks.borrow();
        let producers = self.producers_by_mid.borrow();
        let lines = tracks
            .iter()
            .map(|t| ResumedLine {
                mid: t.mid.clone(),
                kind: t.kind,
                media: t.media.clone(),
                protocol: t.protocol.clone(),
                open: !t.stopped
                    && (t.kind.is_none() || t.sending.is_some() || t.receiving.is_some()),
                consumer: t.sending.as_ref().map(|s| s.consumer),
                receiving: t.receiving.clone(),
                producer: t
                    .receiving
                    .as_ref()
                    .and_then(|_| producers.get(&t.mid).copied()),
            })
            .collect();
        Ok(Resume {
            session_id: self.session_id,
            version: self.negotiation.borrow().version,
            lines,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(mid: &str) -> ResumedLine {
        ResumedLine {
            mid: mid.into(),
            kind: Some(MediaKind::Audio),
            media: "audio".into(),
            protocol: "UDP/TLS/RTP/SAVPF".into(),
            open: true,
            consumer: None,
            receiving: None,
            producer: None,
        }
    }

    #[test]
    fn a_state_no_server_exported_is_refused() {
        let resume = |lines| Resume {
            session_id: 1,
            version: 1,
            lines,
        };
        assert!(resume(vec![line("0"), line("1")]).check().is_ok());
        assert!(
            resume(vec![line("0"), line("0")]).check().is_err(),
            "repeated mid"
        );
        assert!(resume(vec![line("")]).check().is_err(), "empty mid");
        let many: Vec<ResumedLine> = (0..=MAX_LINES).map(|i| line(&i.to_string())).collect();
        assert!(resume(many).check().is_err(), "too many m-lines");
        let mut flood = line("0");
        flood.receiving = Some(Receiving {
            ssrcs: (0..=MAX_SSRCS_PER_LINE as u32).map(|s| (s, None)).collect(),
            ..Receiving::default()
        });
        assert!(resume(vec![flood]).check().is_err(), "too many SSRCs");
        let mut no_kind = line("0");
        no_kind.kind = None;
        no_kind.receiving = Some(Receiving::default());
        assert!(
            resume(vec![no_kind]).check().is_err(),
            "sending without a kind"
        );
    }

    #[test]
    fn open_lines_wait_idle_and_the_others_stop() {
        let resume = Resume {
            session_id: 7,
            version: 3,
            lines: vec![
                ResumedLine {
                    mid: "0".into(),
                    kind: None,
                    media: "application".into(),
                    protocol: "UDP/DTLS/SCTP".into(),
                    open: true,
                    consumer: None,
                    receiving: None,
                    producer: None,
                },
                ResumedLine {
                    mid: "1".into(),
                    kind: Some(MediaKind::Video),
                    media: "video".into(),
                    protocol: "UDP/TLS/RTP/SAVPF".into(),
                    open: false,
                    consumer: None,
                    receiving: None,
                    producer: None,
                },
                ResumedLine {
                    mid: "2".into(),
                    kind: Some(MediaKind::Video),
                    media: "video".into(),
                    protocol: "UDP/TLS/RTP/SAVPF".into(),
                    open: true,
                    consumer: None,
                    receiving: None,
                    producer: None,
                },
            ],
        };
        let tracks = resume.tracks();
        let shape: Vec<(&str, bool, bool)> = tracks
            .iter()
            .map(|t| (t.mid.as_str(), t.kind.is_some(), t.stopped))
            .collect();
        assert_eq!(
            shape,
            [("0", false, false), ("1", true, true), ("2", true, false)]
        );
        // The first video consumer added takes mid 2: the stopped line is never reused.
        let idle = tracks
            .iter()
            .position(|t| t.server_line && !t.stopped && t.kind == Some(MediaKind::Video));
        assert_eq!(idle, Some(2));
    }
}
