//! Notices handler panics that an inner `CatchPanicLayer` turns into 500 responses.
//!
//! The panic never reaches the monitor (it is caught inside), so the monitor cannot see it by unwinding. A panic
//! hook can: it runs on the panicking thread while the handler's task is being polled, when the request's
//! task-local context is set, and marks that context. The hook is installed once per process, chains to the
//! hook that was there before, and holds no data: each request's mark lives in its own context.

use std::sync::Once;

use crate::context::RequestContext;

static INSTALL: Once = Once::new();

thread_local! {
    /// How many panic-catching scopes this thread is in (see [`caught`]).
    static CATCHING: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

#[cfg_attr(not(any(feature = "cache", feature = "query")), allow(dead_code))]
/// Runs `f` in a scope whose panics are caught and handled by perfscope itself (a cache loader): the hook then
/// does not mark the request as panicked, since the request goes on.
pub(crate) fn caught<R>(f: impl FnOnce() -> R) -> R {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            let _ = CATCHING.try_with(|depth| depth.set(depth.get().saturating_sub(1)));
        }
    }
    let _ = CATCHING.try_with(|depth| depth.set(depth.get() + 1));
    let _leave = Leave;
    f()
}

/// Installs the marking hook, once per process.
#[cfg_attr(not(feature = "monitor"), allow(dead_code))]
pub(crate) fn install() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.try_with(std::cell::Cell::get).unwrap_or(0) == 0 {
                RequestContext::mark_current_panicked();
            }
            previous(info);
        }));
    });
}
