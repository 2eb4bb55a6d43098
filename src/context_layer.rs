//! Attaches each request's [`RequestContext`] to its `tracing` span, so code that runs on another thread inside
//! that span (sqlx's SQLite worker re-enters the caller's span) can find the request.
//!
//! The monitor opens the request span right after putting the context in a thread-local hand-off slot;
//! [`ContextLayer::on_new_span`] runs synchronously inside span creation on the same thread and moves the context
//! into the span's extensions. No map of requests, nothing global that outlives the call.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::Subscriber;
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use crate::context::RequestContext;

/// Target of the request span the monitor opens.
pub const REQUEST_SPAN_TARGET: &str = "perfscope::request";

thread_local! {
    static HANDOFF: RefCell<Option<RequestContext>> = const { RefCell::new(None) };
}

/// Makes `context` the one attached to the next request span created on this thread, runs `make_span`, then
/// clears the slot (the layer may not be installed, or the span may be disabled).
pub(crate) fn with_handoff<T>(context: &RequestContext, make_span: impl FnOnce() -> T) -> T {
    let _ = HANDOFF.try_with(|slot| *slot.borrow_mut() = Some(context.clone()));
    let span = make_span();
    let _ = HANDOFF.try_with(|slot| slot.borrow_mut().take());
    span
}

/// A `tracing_subscriber` layer that stores each request's [`RequestContext`] in its span's extensions.
///
/// ```
/// use tracing_subscriber::prelude::*;
///
/// tracing_subscriber::registry()
///     .with(perfscope::ContextLayer::new())
///     .try_init()
///     .ok();
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ContextLayer {
    _private: (),
}

/// Whether any `ContextLayer` was made in this process: without one no span carries a context, and
/// [`RequestContext::current`] skips the span lookup. A process-wide fact, like a subscriber, not measured data.
static LAYER_INSTALLED: AtomicBool = AtomicBool::new(false);

#[inline]
pub(crate) fn layer_installed() -> bool {
    LAYER_INSTALLED.load(Ordering::Relaxed)
}

/// Notes that request spans may carry contexts from now on.
pub(crate) fn mark_installed() {
    LAYER_INSTALLED.store(true, Ordering::Relaxed);
}

impl ContextLayer {
    /// A new layer.
    pub fn new() -> Self {
        mark_installed();
        ContextLayer { _private: () }
    }
}

impl Default for ContextLayer {
    fn default() -> Self {
        ContextLayer::new()
    }
}

impl<S> Layer<S> for ContextLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        attach_context(attrs, id, &ctx);
    }
}

/// Moves the handed-off context into the extensions of the request span being created, if this is one. Also
/// used by the query capture layer, so either layer alone attaches contexts; with both, the first one does.
pub(crate) fn attach_context<S>(attrs: &Attributes<'_>, id: &Id, ctx: &Context<'_, S>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    if attrs.metadata().target() != REQUEST_SPAN_TARGET {
        return;
    }
    let Some(context) = HANDOFF
        .try_with(|slot| slot.borrow_mut().take())
        .ok()
        .flatten()
    else {
        return;
    };
    if let Some(span) = ctx.span(id) {
        span.extensions_mut().insert(context);
    }
}

impl RequestContext {
    /// The context attached to `span` or to the nearest request span above it.
    pub fn from_span<S>(span: &SpanRef<'_, S>) -> Option<RequestContext>
    where
        S: for<'a> LookupSpan<'a>,
    {
        span.scope()
            .find_map(|span| span.extensions().get::<RequestContext>().cloned())
    }
}

/// The context of the request span this thread is in, when the global subscriber is built on a `Registry`.
pub(crate) fn from_current_span() -> Option<RequestContext> {
    tracing::Span::current()
        .with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
            let span = registry.span(id)?;
            RequestContext::from_span(&span)
        })
        .flatten()
}
