//! Containing failures: panics in plugin, middleware or forwarding code become clean closures
//! with a `crashed` reason instead of taking down a worker thread.
//!
//! Two mechanisms work together. Calls into code we do not control are wrapped in
//! [`contain`], which turns a panic into an error carrying the panic message. And every actor
//! holds a [`CrashGuard`]: if the actor's task dies without a clean stop (a panic somewhere
//! we did not wrap), dropping the guard runs the actor's crash handler, so its parent still
//! learns about it and the backend still gets exactly one closing event.

use actix::MailboxError;
use std::sync::Once;
use switchboard_core::event::CloseReason;
pub use switchboard_core::panics::{contain, take_last as take_last_panic};
use switchboard_core::{Error, ErrorCode};

/// Installs a panic hook (once per process) that records each thread's last panic message
/// ([`switchboard_core::panics`]) and logs it through `tracing`, then defers to the previous
/// hook (so test failures and backtraces still print as usual).
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_owned());
            let location = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let text = format!("{message}{location}");
            tracing::error!(panic = %text, "contained a panic");
            switchboard_core::panics::note(text);
            previous(info);
        }));
    });
}

/// Runs a closure when dropped, unless disarmed: the actor's "I died" signal.
pub struct CrashGuard {
    on_crash: Option<Box<dyn FnOnce(String)>>,
}

impl CrashGuard {
    /// A guard that calls `on_crash` with the panic message if the actor dies uncleanly.
    pub fn new(on_crash: impl FnOnce(String) + 'static) -> Self {
        Self {
            on_crash: Some(Box::new(on_crash)),
        }
    }

    /// The actor stopped cleanly; nothing to report.
    pub fn disarm(&mut self) {
        self.on_crash = None;
    }

    /// For the actor's `stopped`: disarms the guard and returns true when the stop is clean.
    /// actix stops an actor whose handler panicked by polling it once more as its task is
    /// dropped, which runs `stopped` too; a panic on this thread that nobody has handled yet
    /// means that is what is happening, and the guard stays armed so that dropping it reports
    /// the crash.
    pub fn stopped_cleanly(&mut self) -> bool {
        let clean = !switchboard_core::panics::pending();
        if clean {
            self.disarm();
        }
        clean
    }
}

impl Drop for CrashGuard {
    fn drop(&mut self) {
        if let Some(f) = self.on_crash.take() {
            let message = take_last_panic().unwrap_or_else(|| "actor stopped unexpectedly".into());
            // The crash handler itself must never unwind out of a destructor.
            let _ = contain(|| f(message));
        }
    }
}

/// The crash guard of an actor whose object lives in `room`: if the actor dies uncleanly,
/// `close` closes the object there with reason `crashed`, through the same room functions as
/// any other closure (so parents and the backend hear of it exactly once).
pub(crate) fn crash_guard(
    room: &crate::room::RoomRef,
    close: impl FnOnce(&mut crate::room::Room, CloseReason) + 'static,
) -> CrashGuard {
    let weak = std::rc::Rc::downgrade(room);
    CrashGuard::new(move |message| {
        if let Some(room) = weak.upgrade()
            && let Ok(mut r) = room.try_borrow_mut()
        {
            close(&mut r, CloseReason::Crashed { message });
        }
    })
}

/// Stops an actor without it emitting anything: the room already did.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub(crate) struct Stop;

/// A failed send to an actor as the error its caller answers: `closed` when the actor is
/// gone, `timeout` when it did not answer in time.
pub(crate) fn mailbox(what: &'static str) -> impl Fn(MailboxError) -> Error {
    move |e| match e {
        MailboxError::Closed => Error::closed(what),
        MailboxError::Timeout => Error::new(ErrorCode::Timeout, format!("{what} did not answer")),
    }
}
