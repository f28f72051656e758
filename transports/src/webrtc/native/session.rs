//! The connection's SDP side: what its consumers may use, the offers it writes, and the
//! client's offers and answers applied.

use super::*;

/// Which way a native connection was made to carry media. Every connection can do both
/// (client offers add producers, consumers make the server offer); the direction decides
/// how it starts and what its statistics say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Made for the server to offer the router's consumers (`"recv"`): its first offer starts
    /// with a data-channel m-line, so that it connects before the first track.
    Receive,
    /// Made for the client to offer what it sends (`"send"`).
    Publish,
    /// Both (`"sendrecv"`, the default): one connection per peer.
    Both,
}

impl Direction {
    /// As the `direction` option spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Receive => "recv",
            Direction::Publish => "send",
            Direction::Both => "sendrecv",
        }
    }
}

impl NativeConnection {
    /// What a consumer on this connection may use: the router's capabilities (RTX included:
    /// the router's NACK answers go out on each consumer's RTX stream, which the server's
    /// offer declares), renumbered to the client's own payload types and extension ids once
    /// the client has offered. Every m-line of a BUNDLE group shares one payload-type and
    /// extension-id space, so a consumer must not give a number the client's own m-lines
    /// already gave another meaning; codecs that would collide are left out.
    pub fn receive_capabilities(&self, router: &RtpCapabilities) -> RtpCapabilities {
        use switchboard_core::negotiation::{MatchMode, codecs_match};
        let tracks = self.tracks.borrow();
        let client: Vec<&switchboard_core::rtp_parameters::RtpCodecParameters> = tracks
            .iter()
            .filter(|t| !t.server_line)
            .flat_map(|t| t.last_codecs.iter())
            .collect();
        if client.is_empty() {
            return router.clone();
        }
        let mut caps = router.clone();
        let mut renumbered: HashMap<u8, u8> = HashMap::new();
        for c in caps
            .codecs
            .iter_mut()
            .filter(|c| !c.mime_type.eq_ignore_ascii_case("video/rtx"))
        {
            let theirs = client
                .iter()
                .find(|o| !o.is_rtx() && codecs_match(**o, &*c, MatchMode::Strict));
            if let (Some(theirs), Some(ours)) = (theirs, c.preferred_payload_type) {
                renumbered.insert(ours, theirs.payload_type);
                c.preferred_payload_type = Some(theirs.payload_type);
            }
        }
        for c in caps
            .codecs
            .iter_mut()
            .filter(|c| c.mime_type.eq_ignore_ascii_case("video/rtx"))
        {
            let apt = c
                .parameters
                .get("apt")
                .and_then(|v| v.as_u32())
                .and_then(|a| u8::try_from(a).ok());
            let Some(new_apt) = apt.and_then(|a| renumbered.get(&a)).copied() else {
                continue;
            };
            c.parameters
                .insert("apt".to_owned(), u32::from(new_apt).into());
            if let Some(theirs) = client
                .iter()
                .find(|o| o.is_rtx() && o.apt() == Some(new_apt))
            {
                c.preferred_payload_type = Some(theirs.payload_type);
            }
        }
        // Whatever still has the router's number must not collide with the client's.
        let taken: Vec<u8> = client.iter().map(|c| c.payload_type).collect();
        caps.codecs.retain(|c| {
            c.preferred_payload_type.is_none_or(|pt| {
                !taken.contains(&pt)
                    || client.iter().any(|o| {
                        o.payload_type == pt
                            && switchboard_core::rtp_parameters::mime_eq(&o.mime_type, &c.mime_type)
                    })
            })
        });
        let extensions: Vec<(u8, String)> = tracks
            .iter()
            .filter_map(|t| t.receiving.as_ref())
            .flat_map(|r| r.extensions.iter().cloned())
            .collect();
        for e in caps.header_extensions.iter_mut() {
            if let Some((id, _)) = extensions.iter().find(|(_, uri)| *uri == e.uri) {
                e.preferred_id = *id;
            }
        }
        let ids: Vec<u8> = extensions.iter().map(|(id, _)| *id).collect();
        caps.header_extensions.retain(|e| {
            !ids.contains(&e.preferred_id)
                || extensions
                    .iter()
                    .any(|(id, uri)| *id == e.preferred_id && *uri == e.uri)
        });
        caps
    }

    /// Adds a consumer's track: on an idle m-line of its kind if there is one, else on a new
    /// one. The change is offered by the next [`NativeConnection::create_offer`].
    pub fn add_consumer(
        &self,
        id: ConsumerId,
        kind: MediaKind,
        params: &RtpParameters,
    ) -> Result<()> {
        let ssrc = params
            .ssrc()
            .ok_or_else(|| Error::internal("consumer without an SSRC"))?;
        let mut tracks = self.tracks.borrow_mut();
        let sending = Sending {
            consumer: id,
            params: params.clone(),
        };
        let idle = tracks.iter().position(|t| {
            t.server_line
                && !t.stopped
                && t.kind == Some(kind)
                && t.sending.is_none()
                && t.receiving.is_none()
        });
        let index = match idle {
            Some(i) => i,
            None => {
                let mid = free_mid(&tracks);
                tracks.push(Track::server(mid, kind));
                tracks.len() - 1
            }
        };
        tracks[index].sending = Some(sending);
        // Retransmissions go out on the RTX stream the offer declares, with its own sequence
        // numbers and so its own rollover counter.
        let mut streams = self.by_ssrc.borrow_mut();
        streams.insert(
            ssrc,
            OutStream {
                track: index,
                rollover: Rollover::default(),
                repairs: None,
            },
        );
        if let (Some((rtx_ssrc, rtx_pt)), Some(media)) = (params.rtx(), params.media_codec()) {
            streams.insert(
                rtx_ssrc,
                OutStream {
                    track: index,
                    rollover: Rollover::default(),
                    repairs: Some(Repairs {
                        media_ssrc: ssrc,
                        media_pt: media.payload_type,
                        rtx_pt,
                        negotiated: false,
                    }),
                },
            );
        }
        Ok(())
    }

    /// Removes a consumer's track; its m-line goes inactive in the next offer.
    pub fn remove_consumer(&self, id: ConsumerId) {
        let mut tracks = self.tracks.borrow_mut();
        for t in tracks.iter_mut() {
            if t.sending.as_ref().is_some_and(|s| s.consumer == id)
                && let Some(sending) = t.sending.take()
            {
                // What the idle m-line is described with from now on.
                t.last_codecs = sending.params.codecs;
            }
        }
        self.by_ssrc
            .borrow_mut()
            .retain(|_, s| tracks.get(s.track).is_some_and(|t| t.sending.is_some()));
    }

    /// The server's offer for the current tracks; `None` while one is unanswered (unless
    /// `force`), in which case the change is offered after the answer.
    pub fn create_offer(&self, force: bool) -> Result<Option<String>> {
        let mut n = self.negotiation.borrow_mut();
        if !force && (!n.offered || n.awaiting_answer) {
            if n.offered {
                n.pending = true;
            }
            return Ok(None);
        }
        let net = self
            .net
            .upgrade()
            .ok_or_else(|| failed("worker socket gone"))?;
        n.version += 1;
        let ice = self.ice.borrow();
        let sdp = write_offer(
            &LocalDescription {
                session_id: self.session_id,
                version: n.version,
                ufrag: ice.ufrag(),
                pwd: ice.pwd(),
                fingerprint: self.certificate.fingerprint(),
                address: net.announced,
            },
            &self.tracks.borrow(),
        );
        n.offered = true;
        n.awaiting_answer = true;
        n.pending = false;
        Ok(Some(sdp))
    }

    /// Applies the client's answer: whether another offer is due, the consumers whose
    /// m-lines the client rejected, and those whose m-lines kept fewer header extensions than
    /// the offer gave them.
    pub fn apply_answer(&self, answer: &switchboard_sdp::Sdp) -> Result<AnswerOutcome> {
        if !self.negotiation.borrow().awaiting_answer {
            return Err(Error::invalid(
                "no offer is waiting for an answer on this connection",
            ));
        }
        let sections = switchboard_sdp::media_sections(answer);
        let first = sections
            .iter()
            .find(|m| !m.rejected)
            .or_else(|| sections.first());
        if let Some(m) = first {
            let ufrag = m.ice_ufrag.as_deref().ok_or_else(|| {
                Error::new(ErrorCode::InvalidSdp, "the answer has no a=ice-ufrag")
            })?;
            let fingerprint = sha256_fingerprint(m, "answer")?;
            let role = match m.setup {
                Some(switchboard_sdp::Setup::Passive) => Role::Client,
                // `active`, and anything a confused answer says: the client connects.
                _ => Role::Server,
            };
            self.ice.borrow_mut().set_remote_ufrag(ufrag);
            let mut dtls = self.dtls.borrow_mut();
            if dtls.is_none() {
                *dtls = Some(Dtls::new(
                    &self.certificate,
                    role,
                    &fingerprint,
                    self.crypto.clone(),
                )?);
            }
        }
        let rejected: Vec<ConsumerId> = {
            let tracks = self.tracks.borrow();
            sections
                .iter()
                .filter(|m| m.rejected)
                .filter_map(|m| {
                    let mid = m.mid.as_deref()?;
                    tracks
                        .iter()
                        .find(|t| t.mid == mid)
                        .and_then(|t| t.sending.as_ref().map(|s| s.consumer))
                })
                .collect()
        };
        {
            // Which m-lines kept the RTX payload type the offer gave them.
            let tracks = self.tracks.borrow();
            for stream in self.by_ssrc.borrow_mut().values_mut() {
                let Some(repairs) = stream.repairs.as_mut() else {
                    continue;
                };
                let Some(mid) = tracks.get(stream.track).map(|t| t.mid.as_str()) else {
                    continue;
                };
                if let Some(m) = sections.iter().find(|m| m.mid.as_deref() == Some(mid)) {
                    repairs.negotiated =
                        !m.rejected && m.codecs.iter().any(|c| c.payload_type == repairs.rtx_pt);
                }
            }
        }
        let consumer_extensions: Vec<(ConsumerId, Vec<u8>)> = {
            let tracks = self.tracks.borrow();
            tracks
                .iter()
                .filter_map(|t| {
                    let sending = t.sending.as_ref()?;
                    let m = sections
                        .iter()
                        .find(|m| !m.rejected && m.mid.as_deref() == Some(t.mid.as_str()))?;
                    let kept: Vec<u8> = m.header_extensions.iter().map(|e| e.id).collect();
                    let narrower = sending
                        .params
                        .header_extensions
                        .iter()
                        .any(|e| !kept.contains(&e.id));
                    narrower.then_some((sending.consumer, kept))
                })
                .collect()
        };
        // An answer is the client's word on the m-lines it sends on too (a server offer on a
        // connection the client publishes on: one moved here from another server).
        let closed_producers: Vec<ProducerId> = {
            let mut tracks = self.tracks.borrow_mut();
            let by_mid = self.producers_by_mid.borrow();
            let mut closed = Vec::new();
            for m in sections
                .iter()
                .filter(|m| m.rejected || !m.direction.sends())
            {
                let Some(t) = m
                    .mid
                    .as_deref()
                    .and_then(|mid| tracks.iter_mut().find(|t| t.mid == mid))
                else {
                    continue;
                };
                if t.receiving.take().is_some() {
                    t.stopped |= m.rejected;
                    closed.extend(by_mid.get(&t.mid).copied());
                }
            }
            if !closed.is_empty() {
                let (receiving, extensions) = ingress_sections(&tracks);
                self.ingress.borrow_mut().negotiated(receiving, extensions);
            }
            closed
        };
        let mut n = self.negotiation.borrow_mut();
        n.awaiting_answer = false;
        Ok(AnswerOutcome {
            renegotiate: std::mem::take(&mut n.pending),
            rejected_consumers: rejected,
            consumer_extensions,
            closed_producers,
        })
    }

    /// Answers a client's offer: which of its sending m-lines become producers, and which
    /// producers end. Nothing changes when the offer is refused, including for adding more
    /// producers than `producer_slots`.
    pub fn apply_offer(
        self: &Rc<Self>,
        sdp: &str,
        producer_slots: Option<usize>,
    ) -> Result<OfferOutcome> {
        if self.negotiation.borrow().awaiting_answer {
            return Err(Error::invalid(
                "the server's offer on this connection is waiting for its answer: answer it (or roll it back with a fresh webrtc.subscribe) before offering",
            ));
        }
        let offer = switchboard_sdp::parse(sdp)?;
        switchboard_sdp::check_webrtc_offer(&offer)?;
        let sections = switchboard_sdp::media_sections(&offer);
        let first = sections.iter().find(|m| !m.rejected).ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidSdp,
                "every m-line of the offer is stopped",
            )
        })?;
        // check_webrtc_offer saw both on every m-line that is not stopped.
        let remote_ufrag = first.ice_ufrag.clone().unwrap_or_default();
        let fingerprint = sha256_fingerprint(first, "offer")?;
        let known_ufrag = self.ice.borrow().remote_ufrag().map(str::to_owned);
        let restart = known_ufrag.is_some_and(|u| u != remote_ufrag);
        let net = self
            .net
            .upgrade()
            .ok_or_else(|| failed("worker socket gone"))?;
        let (tracks, stopped_consumers) =
            tracks_after_offer(&self.tracks.borrow(), &sections, &self.capabilities)?;
        // A client that restarts ICE gets fresh server credentials in the answer (RFC 8839
        // §4.4.1.1.1); they take effect only once the answer is sure to go out.
        let fresh = restart.then(|| IceLite::credentials(self.crypto.as_ref()));
        let version = self.negotiation.borrow().version + 1;
        let setup = match self.dtls.borrow().as_ref().map(Dtls::role) {
            Some(Role::Client) => switchboard_sdp::Setup::Active,
            Some(Role::Server) => switchboard_sdp::Setup::Passive,
            None => answer_setup(first.setup),
        };
        let answer = {
            let ice = self.ice.borrow();
            let (ufrag, pwd) = match &fresh {
                Some((u, p)) => (u.as_str(), p.as_str()),
                None => (ice.ufrag(), ice.pwd()),
            };
            write_answer(
                &LocalDescription {
                    session_id: self.session_id,
                    version,
                    ufrag,
                    pwd,
                    fingerprint: self.certificate.fingerprint(),
                    address: net.announced,
                },
                &sections,
                &tracks,
                setup,
            )
        };
        let parsed = switchboard_sdp::parse(&answer)?;
        let (new_producers, closed_producers) =
            super::super::publish_diff(&offer, &parsed, &self.producers_by_mid.borrow())?;
        if let Some(slots) = producer_slots.map(|s| s + closed_producers.len())
            && new_producers.len() > slots
        {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!(
                    "producers per transport: the offer adds {} sending m-lines, room for {slots}",
                    new_producers.len()
                ),
            ));
        }

        // Committed from here on.
        if let Some((ufrag, pwd)) = fresh {
            let old = self.local_ufrag();
            self.ice.borrow_mut().restart(ufrag.clone(), pwd);
            let weak: Weak<dyn NetConnection> = Rc::downgrade(self) as _;
            net.rename(&old, &ufrag, weak);
        }
        self.ice.borrow_mut().set_remote_ufrag(&remote_ufrag);
        {
            let mut dtls = self.dtls.borrow_mut();
            if dtls.is_none() {
                let role = match setup {
                    switchboard_sdp::Setup::Active => Role::Client,
                    _ => Role::Server,
                };
                *dtls = Some(Dtls::new(
                    &self.certificate,
                    role,
                    &fingerprint,
                    self.crypto.clone(),
                )?);
            }
        }
        let (receiving, extensions) = ingress_sections(&tracks);
        self.ingress.borrow_mut().negotiated(receiving, extensions);
        if !stopped_consumers.is_empty() {
            // Their m-lines are stopped: nothing of theirs can reach the client any more.
            tracing::debug!(consumers = ?stopped_consumers, "the client stopped consumers' m-lines");
        }
        *self.tracks.borrow_mut() = tracks;
        {
            let tracks = self.tracks.borrow();
            self.by_ssrc
                .borrow_mut()
                .retain(|_, s| tracks.get(s.track).is_some_and(|t| t.sending.is_some()));
        }
        self.negotiation.borrow_mut().version = version;
        Ok(OfferOutcome {
            answer,
            new_producers,
            closed_producers,
        })
    }

    /// A producer of this publishing connection was created for the m-line `mid`.
    pub fn producer_added(&self, id: ProducerId, mid: &str) {
        self.producers_by_mid
            .borrow_mut()
            .insert(mid.to_owned(), id);
    }

    /// A producer of this publishing connection is gone.
    pub fn producer_removed(&self, id: ProducerId) {
        self.producers_by_mid.borrow_mut().retain(|_, p| *p != id);
    }

    /// New ICE credentials for the next offer.
    pub fn restart_ice(self: &Rc<Self>) {
        let (ufrag, pwd) = IceLite::credentials(self.crypto.as_ref());
        let old = self.local_ufrag();
        self.ice.borrow_mut().restart(ufrag.clone(), pwd);
        if let Some(net) = self.net.upgrade() {
            let weak: Weak<dyn NetConnection> = Rc::downgrade(self) as _;
            net.rename(&old, &ufrag, weak);
        }
    }
}

/// What the ingress routes: the m-lines the client sends on, and their header extensions
/// (one id space for the whole BUNDLE group).
pub(super) fn ingress_sections(tracks: &[Track]) -> (Vec<Section>, Vec<(u8, String)>) {
    let mut extensions: Vec<(u8, String)> = Vec::new();
    let sections = tracks
        .iter()
        .filter_map(|t| {
            let r = t.receiving.as_ref()?;
            for (id, uri) in &r.extensions {
                if !extensions.iter().any(|(i, _)| i == id) {
                    extensions.push((*id, uri.clone()));
                }
            }
            Some(Section {
                mid: t.mid.clone(),
                codecs: r.codecs.clone(),
                ssrcs: r.ssrcs.clone(),
            })
        })
        .collect();
    (sections, extensions)
}

/// The SHA-256 certificate fingerprint a client's description (`what`: offer or answer)
/// gives for an m-line: the only algorithm the DTLS endpoint checks.
pub(super) fn sha256_fingerprint(m: &switchboard_sdp::MediaSection, what: &str) -> Result<String> {
    m.fingerprints
        .iter()
        .find(|f| f.algorithm.eq_ignore_ascii_case("sha-256"))
        .map(|f| f.value.clone())
        .ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidSdp,
                format!("the {what} has no sha-256 a=fingerprint"),
            )
        })
}

/// The smallest number not yet a mid of `tracks`, as a mid: what the next m-line the server
/// opens is called (clients pick theirs the same way, avoiding every mid in the session).
pub(super) fn free_mid(tracks: &[Track]) -> String {
    (0..)
        .map(|n: usize| n.to_string())
        .find(|mid| tracks.iter().all(|t| t.mid != *mid))
        .unwrap_or_default()
}
