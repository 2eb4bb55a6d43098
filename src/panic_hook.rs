//! Notices handler panics that an inner `CatchPanicLayer` turns into 500 responses.
//!
//! The panic never reaches the monitor (it is caught inside), so the monitor cannot see it by unwinding. A panic
//! hook can: it runs on the panicking thread while the handler's task is being polled, when the request's
//! task-local context is set, and marks that context. The hook is installed once per process, chains to the
//! hook that was there before, and holds no data: each request's mark lives in its own context.

use std::sync::Once;

use crate::context::RequestContext;

static INSTALL: Once = Once::new();

/// Installs the marking hook, once per process.
pub(crate) fn install() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            RequestContext::mark_current_panicked();
            previous(info);
        }));
    });
}
