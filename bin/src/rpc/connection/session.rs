//! One connection's reading side: frames decoded, the first request authenticated, each
//! request run on a task of its own within the in-flight limit, protocol errors counted.

use super::*;

/// Whether the connection goes on after a message.
pub(super) enum Flow {
    Continue,
    Close,
}

pub(super) struct Session {
    pub(super) ctx: Ctx,
    pub(super) responses: mpsc::Sender<Vec<u8>>,
    /// Whether `auth` must be the first request.
    pub(super) token_required: bool,
    /// The pre-auth slot, until the first valid request.
    pub(super) pending: Option<PendingSlot>,
    /// The `rpc.max_connections` slot, from the first valid request on.
    pub(super) open: Option<OpenGuard>,
    pub(super) in_flight: Arc<Semaphore>,
    /// Invalid messages so far; `rpc.max_protocol_errors` of them close the connection.
    pub(super) protocol_errors: u32,
    pub(super) peer: String,
}

/// What the reader waits for besides bytes: the deadline that applies now.
#[derive(Clone, Copy)]
pub(super) enum Deadline {
    /// The first valid request is due (`rpc.auth_timeout_ms`).
    Auth,
    /// A message that has begun must be complete (`rpc.read_timeout_ms`).
    Read,
    /// Something must come (`rpc.idle_timeout_ms`).
    Idle,
}

impl Session {
    pub(super) fn rpc(&self) -> &RpcShared {
        &self.ctx.rpc
    }

    pub(super) fn established(&self) -> bool {
        self.open.is_some()
    }

    /// The frame limit now: lower before `auth` when a token is set.
    pub(super) fn frame_limit(&self) -> usize {
        let config = &self.rpc().config;
        if self.token_required && !self.established() {
            config.max_preauth_frame_bytes.min(config.max_frame_bytes)
        } else {
            config.max_frame_bytes
        }
    }

    pub(super) async fn read_loop<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> Ended {
        let mut scanner = FrameScanner::new(self.frame_limit());
        let mut buf = BytesMut::with_capacity(READ_CHUNK.min(scanner.max_frame_bytes() + 1));
        let config = self.rpc().config.clone();
        let accepted = Instant::now();
        let mut last_read = accepted;
        // When the reader last finished with a message. Reading may pause for a while (a
        // connection with MAX_IN_FLIGHT requests running waits for a slot), and the client
        // must not be blamed for that time.
        let mut last_handled = accepted;
        // When the first bytes of the message now in `buf` arrived.
        let mut message_started: Option<Instant> = None;
        let mut first_frame = true;
        let evicted = self
            .pending
            .as_ref()
            .map(PendingSlot::evicted)
            .unwrap_or_default();
        loop {
            loop {
                if first_frame && !buf.is_empty() {
                    match wire::sniff_http(&buf) {
                        HttpSniff::Http => {
                            self.refuse_http().await;
                            return Ended::Refused;
                        }
                        // Wait for a few more bytes (the auth deadline bounds the wait).
                        HttpSniff::Maybe => break,
                        HttpSniff::No => {}
                    }
                }
                match scanner.scan(&buf) {
                    Scan::Complete(len) => {
                        let frame = buf.split_to(len);
                        scanner.reset();
                        first_frame = false;
                        message_started = None;
                        let was_established = self.established();
                        if let Flow::Close = self.on_frame(&frame).await {
                            return Ended::Refused;
                        }
                        last_handled = Instant::now();
                        if self.established() != was_established {
                            scanner = FrameScanner::new(self.frame_limit());
                        }
                    }
                    Scan::Incomplete => break,
                    Scan::TooLarge => {
                        let max = scanner.max_frame_bytes();
                        let setting = if max < config.max_frame_bytes {
                            "rpc.max_preauth_frame_bytes, before auth"
                        } else {
                            "rpc.max_frame_bytes"
                        };
                        let error = RpcError::new(
                            ErrorCode::FrameTooLarge,
                            format!("message larger than {max} bytes ({setting})"),
                        );
                        self.fatal(error).await;
                        return Ended::Refused;
                    }
                    Scan::Invalid => {
                        let error = RpcError::new(
                            ErrorCode::ParseError,
                            "not MessagePack: reserved byte 0xc1 where a value starts",
                        );
                        self.fatal(error).await;
                        return Ended::Refused;
                    }
                }
            }
            let since = last_read.max(last_handled);
            if !buf.is_empty() && message_started.is_none() {
                message_started = Some(since);
            }
            let deadline = if !self.established() {
                Some((accepted + ms(config.auth_timeout_ms), Deadline::Auth))
            } else if let Some(started) = message_started {
                Some((started + ms(config.read_timeout_ms), Deadline::Read))
            } else if config.idle_timeout_ms > 0 {
                Some((since + ms(config.idle_timeout_ms), Deadline::Idle))
            } else {
                None
            };
            let (until, why) = deadline.unwrap_or((accepted, Deadline::Idle));
            buf.reserve(READ_CHUNK.min(scanner.max_frame_bytes() + 1));
            let read = tokio::select! {
                biased;
                _ = self.ctx.rpc.stop.cancelled() => return Ended::Server,
                _ = self.responses.closed() => return Ended::Server,
                _ = evicted.cancelled(), if self.pending.is_some() => {
                    self.evicted().await;
                    return Ended::Refused;
                }
                _ = tokio::time::sleep_until(until), if deadline.is_some() => {
                    self.timed_out(why).await;
                    return Ended::Refused;
                }
                read = reader.read_buf(&mut buf) => read,
            };
            match read {
                Ok(0) => {
                    if !buf.is_empty() {
                        let error = RpcError::new(
                            ErrorCode::ParseError,
                            "the stream ended in the middle of a message",
                        );
                        self.fatal(error).await;
                    }
                    return Ended::Client;
                }
                Ok(_) => last_read = Instant::now(),
                Err(e) => {
                    debug!(peer = %self.peer, error = %e, "control connection read failed");
                    return Ended::Client;
                }
            }
        }
    }

    /// Closes a connection that missed a deadline.
    pub(super) async fn timed_out(&self, why: Deadline) {
        let config = &self.rpc().config;
        let counters = &self.rpc().counters;
        let message = match why {
            Deadline::Auth => {
                Counters::bump(&counters.auth_timeouts);
                let first = if self.token_required {
                    "auth {token}"
                } else {
                    "a request"
                };
                format!(
                    "no {first} within {} ms of connecting (rpc.auth_timeout_ms)",
                    config.auth_timeout_ms
                )
            }
            Deadline::Read => {
                Counters::bump(&counters.read_timeouts);
                format!(
                    "a message took longer than {} ms to arrive (rpc.read_timeout_ms)",
                    config.read_timeout_ms
                )
            }
            Deadline::Idle => {
                Counters::bump(&counters.idle_timeouts);
                format!(
                    "nothing received for {} ms (rpc.idle_timeout_ms)",
                    config.idle_timeout_ms
                )
            }
        };
        info!(peer = %self.peer, reason = %message, "closing control connection");
        self.send(wire::encode_error_notification(&RpcError::new(
            ErrorCode::Timeout,
            message,
        )))
        .await;
    }

    /// Closes a pending connection to make room for a newer one.
    pub(super) async fn evicted(&self) {
        let max = self.rpc().config.max_preauth_connections;
        // Counted; at debug level because a flood of connections would flood the log too.
        debug!(peer = %self.peer, max, "closing control connection: pre-auth slots are full");
        self.send(wire::encode_error_notification(&RpcError::new(
            ErrorCode::LimitExceeded,
            format!(
                "closed to make room for a newer connection: {max} connections were waiting \
                 for their first request (rpc.max_preauth_connections)"
            ),
        )))
        .await;
    }

    /// Answers an HTTP request line with an HTTP error, so that whoever sent it (a browser,
    /// a proxy, a server tricked into a request) sees a clear refusal, then closes.
    pub(super) async fn refuse_http(&self) {
        Counters::bump(&self.rpc().counters.http_refused);
        Counters::bump(&self.rpc().counters.protocol_errors);
        info!(peer = %self.peer, "control connection refused: an HTTP request");
        let body = "This is Switchboard's MessagePack-RPC control socket, not an HTTP server \
                    (docs/rpc.md).\n";
        let response = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        self.send(response.into_bytes()).await;
    }

    /// Sends an error notification for a problem that ends the connection.
    pub(super) async fn fatal(&self, error: RpcError) {
        Counters::bump(&self.rpc().counters.protocol_errors);
        info!(peer = %self.peer, code = %error.code, message = %error.message, "closing control connection");
        self.send(wire::encode_error_notification(&error)).await;
    }

    pub(super) async fn send(&self, frame: Vec<u8>) {
        // A closed channel means the writer gave up on the socket; nothing is left to tell.
        let _ = self.responses.send(frame).await;
    }

    pub(super) async fn on_frame(&mut self, frame: &[u8]) -> Flow {
        let max_values = self.rpc().config.max_message_values;
        let message = wire::decode_frame_with(frame, max_values).map(wire::parse_message);
        let incoming = match message {
            Ok(Ok(incoming)) => incoming,
            Ok(Err(bad)) => {
                let error = RpcError::new(ErrorCode::InvalidRequest, bad.message);
                return self.reject(bad.msgid, error).await;
            }
            Err(message) => {
                // Too deep or too big to decode, yet a request's msgid may be readable.
                let error = RpcError::new(ErrorCode::InvalidRequest, message);
                return self.reject(wire::peek_msgid(frame), error).await;
            }
        };
        let msgid = match &incoming {
            Incoming::Request { msgid, .. } => Some(*msgid),
            Incoming::Notification { .. } => None,
        };
        match incoming {
            Incoming::Request {
                msgid,
                method,
                params,
            } if method == "auth" => self.authenticate(msgid, params).await,
            _ if self.token_required && !self.established() => {
                self.unauthorized(msgid, "the first request must be auth {token}")
                    .await
            }
            incoming => {
                if !self.established()
                    && let Flow::Close = self.establish(msgid).await
                {
                    return Flow::Close;
                }
                let (msgid, method, params) = match incoming {
                    Incoming::Request {
                        msgid,
                        method,
                        params,
                    } => (Some(msgid), method, params),
                    Incoming::Notification { method, params } => (None, method, params),
                };
                self.spawn_call(msgid, method, params).await;
                Flow::Continue
            }
        }
    }

    /// Moves the connection from its pre-auth slot to an `rpc.max_connections` slot, or
    /// refuses it (answering `msgid`) when they are all taken.
    pub(super) async fn establish(&mut self, msgid: Option<u32>) -> Flow {
        let rpc = self.ctx.rpc.clone();
        match rpc.connections.clone().try_acquire_owned() {
            Ok(permit) => {
                self.open = Some(OpenGuard::new(rpc, permit));
                self.pending = None;
                Flow::Continue
            }
            Err(_) => {
                Counters::bump(&rpc.counters.connections_rejected);
                let max = rpc.config.max_connections;
                info!(peer = %self.peer, max, "control connection refused: rpc.max_connections reached");
                let error = RpcError::new(
                    ErrorCode::LimitExceeded,
                    format!("connection limit of {max} reached (rpc.max_connections)"),
                );
                let frame = match msgid {
                    Some(msgid) => wire::encode_response(msgid, &Err(error)),
                    None => wire::encode_error_notification(&error),
                };
                self.send(frame).await;
                Flow::Close
            }
        }
    }

    /// Answers a frame that is not a request: a response when it had a msgid, else an
    /// `error` notification. The stream is still in step, so an established connection
    /// goes on, until its `rpc.max_protocol_errors`th invalid message; one that has not made
    /// a valid request yet is closed at once (it is not speaking this protocol: an HTTP
    /// client, say, whose every byte reads as a number).
    pub(super) async fn reject(&mut self, msgid: Option<u32>, error: RpcError) -> Flow {
        if self.token_required && !self.established() {
            return self
                .unauthorized(msgid, "the first request must be auth {token}")
                .await;
        }
        let counters = &self.ctx.rpc.counters;
        Counters::bump(&counters.protocol_errors);
        self.protocol_errors = self.protocol_errors.saturating_add(1);
        debug!(peer = %self.peer, message = %error.message, "invalid request");
        let frame = match msgid {
            Some(msgid) => wire::encode_response(msgid, &Err(error)),
            None => wire::encode_error_notification(&error),
        };
        self.send(frame).await;
        let max = self.rpc().config.max_protocol_errors;
        let reason = if !self.established() {
            "closing: the first message was not a request".to_owned()
        } else if self.protocol_errors >= max {
            format!("closing after {max} invalid messages (rpc.max_protocol_errors)")
        } else {
            return Flow::Continue;
        };
        Counters::bump(&self.ctx.rpc.counters.protocol_error_closes);
        info!(peer = %self.peer, %reason, "closing control connection");
        let error = RpcError::new(ErrorCode::InvalidRequest, reason)
            .with_data(json!({ "protocol_errors": self.protocol_errors }));
        self.send(wire::encode_error_notification(&error)).await;
        Flow::Close
    }

    pub(super) async fn unauthorized(&mut self, msgid: Option<u32>, message: &str) -> Flow {
        Counters::bump(&self.rpc().counters.auth_failures);
        warn!(peer = %self.peer, reason = message, "control connection refused: not authenticated");
        let error = RpcError::new(ErrorCode::Unauthorized, message);
        let frame = match msgid {
            Some(msgid) => wire::encode_response(msgid, &Err(error)),
            None => wire::encode_error_notification(&error),
        };
        self.send(frame).await;
        Flow::Close
    }

    /// `auth` runs here, before the next message is read, so no request that follows it on
    /// the stream can slip through ahead of the check.
    pub(super) async fn authenticate(&mut self, msgid: u32, params: Msgpack) -> Flow {
        match check_token(&self.rpc().config.token, params) {
            Ok(()) => {
                if !self.established()
                    && let Flow::Close = self.establish(Some(msgid)).await
                {
                    return Flow::Close;
                }
                self.send(wire::encode_response(msgid, &Ok(serde_json::Value::Null)))
                    .await;
                Flow::Continue
            }
            Err(error) => {
                Counters::bump(&self.rpc().counters.auth_failures);
                warn!(peer = %self.peer, "control connection refused: bad token");
                self.send(wire::encode_response(msgid, &Err(error))).await;
                Flow::Close
            }
        }
    }

    /// Runs a request (or a notification, when `msgid` is `None`) on its own task.
    pub(super) async fn spawn_call(&mut self, msgid: Option<u32>, method: String, params: Msgpack) {
        let permit = tokio::select! {
            permit = self.in_flight.clone().acquire_owned() => permit,
            _ = self.ctx.rpc.stop.cancelled() => return,
        };
        let Ok(permit) = permit else { return };
        let rpc = self.ctx.rpc.clone();
        Counters::bump(&rpc.counters.requests);
        let ctx = self.ctx.clone();
        let responses = self.responses.clone();
        rpc.tracker.clone().spawn(async move {
            let started = std::time::Instant::now();
            let outcome = run(&ctx, &method, params).await;
            if let Err(e) = &outcome {
                Counters::bump(&rpc.counters.request_errors);
                if e.code == ErrorCode::Timeout {
                    Counters::bump(&rpc.counters.request_timeouts);
                }
            }
            let label = rpc.methods.canonical(&method).unwrap_or("unknown");
            let result = match &outcome {
                Ok(_) => "ok".to_owned(),
                Err(e) => e.code.to_string(),
            };
            rpc.metrics.record(label, &result, started.elapsed());
            let frame = match (msgid, &outcome) {
                (Some(msgid), _) => Some(wire::encode_response(msgid, &outcome)),
                (None, Ok(_)) => None,
                (None, Err(e)) => {
                    let mut e = e.clone();
                    let data = e.data.take();
                    Some(wire::encode_error_notification(
                        &e.with_data(json!({ "method": method, "detail": data })),
                    ))
                }
            };
            if let Some(frame) = frame {
                let _ = responses.send(frame).await;
            }
            drop(permit);
        });
    }
}
