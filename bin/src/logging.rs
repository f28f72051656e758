//! Log output through `tracing`: a filter, a format, standard error.
//!
//! Actors log inside spans named `worker`, `room`, `peer` and `transport`, each carrying its
//! id, so one room's story can be picked out: in the human format the spans prefix each
//! line (`worker{worker=0}:room{room=…}:transport{transport=… peer=alice}: …`); in JSON they
//! are in each line's `spans` list (`jq 'select(any(.spans[]?; .room == "…"))'`).

use crate::settings::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Dependency log targets that report a peer's ordinary behaviour as a fault, silenced unless
/// the configured filter names the crate:
/// - The SCTP association carries only the receive connection's placeholder data channel,
///   and browsers end it with an ABORT chunk on every close, which `rtc-sctp` logs at ERROR;
///   Switchboard counts closes itself.
/// - `rtc-dtls` warns on every handshake in the client role that no server name is set (it
///   has no use in WebRTC, where the certificate is checked against the SDP fingerprint),
///   and on every hello that carries an extension it does not implement, which TLS says to
///   ignore and browsers always send.
const QUIETED: &[(&str, &str)] = &[
    ("rtc_sctp", "rtc_sctp=off"),
    ("rtc_dtls", "rtc_dtls::config=error"),
    ("rtc_dtls", "rtc_dtls::handshake=error"),
];

/// Installs the global subscriber. `filter` has already been checked while loading the
/// configuration, so a parse failure here would be a bug.
///
/// Logs go to standard error so that standard output stays free for data such as
/// `check-config`'s TOML.
pub fn init(filter: &str, format: LogFormat) {
    let ansi = std::io::stderr().is_terminal();
    init_with_writer(filter, format, ansi, std::io::stderr);
}

/// Like [`init`], writing to `writer` (tests capture logs this way), with colours only when
/// `ansi`.
pub fn init_with_writer<W>(filter: &str, format: LogFormat, ansi: bool, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let mut directives =
        EnvFilter::try_new(filter).expect("log filter was validated while loading");
    for (target, directive) in QUIETED {
        if !filter.contains(target) {
            directives = directives.add_directive(directive.parse().expect("a valid directive"));
        }
    }
    let filter = directives;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Human => builder.with_ansi(ansi).init(),
        // Span lists are on by default; said here because filtering by room relies on them.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}
