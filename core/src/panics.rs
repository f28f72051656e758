//! Contained panics: each thread's last panic message, and [`contain`], which turns a panic
//! into an error carrying that message.
//!
//! The server's panic hook (installed by the actors crate) records every panic here with
//! [`note`]; whoever catches one takes the message with [`take_last`], so a message left
//! behind always belongs to a panic nobody has handled yet ([`pending`]). Plugins that catch
//! panics themselves use [`contain`] too, so they leave nothing behind.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Records a panic on this thread (the panic hook calls it).
pub fn note(message: String) {
    LAST_PANIC.with(|p| *p.borrow_mut() = Some(message));
}

/// The last panic message seen on this thread, if nobody took it yet, clearing it.
pub fn take_last() -> Option<String> {
    LAST_PANIC.with(|p| p.borrow_mut().take())
}

/// Whether this thread panicked and nobody has taken the message yet: the thread is
/// unwinding, or something caught the panic without handling it (a task harness).
pub fn pending() -> bool {
    std::thread::panicking() || LAST_PANIC.with(|p| p.borrow().is_some())
}

/// Runs `f`, turning a panic into `Err(message)`.
pub fn contain<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        take_last().unwrap_or_else(|| {
            // No hook installed (a plugin's unit test): the payload still says something.
            payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panicked".to_owned())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contain_takes_the_message_and_leaves_nothing_pending() {
        note("boom at here".to_owned());
        let r: Result<(), String> = contain(|| std::panic::resume_unwind(Box::new("x")));
        assert_eq!(r.unwrap_err(), "boom at here");
        assert!(!pending());
        let r: Result<(), String> = contain(|| std::panic::resume_unwind(Box::new("payload")));
        assert_eq!(r.unwrap_err(), "payload");
        assert_eq!(contain(|| 7), Ok(7));
    }
}
