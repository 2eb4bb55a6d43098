//! The application cache: tags, single flight, lifetimes, races, statistics and the sweeper.
#![allow(clippy::unwrap_used)]

mod invalidation;
mod lifetimes;
mod loads;
mod races;
mod stats;

use std::sync::Once;

use perfscope::cache::{Cache, CacheBuilder};

/// Deliberate loader panics say "deliberate"; keep them out of the test output while real failures still print.
pub(crate) fn quiet_deliberate_panics() {
    static QUIET: Once = Once::new();
    QUIET.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let deliberate = payload
                .downcast_ref::<&str>()
                .is_some_and(|m| m.contains("deliberate"))
                || payload
                    .downcast_ref::<String>()
                    .is_some_and(|m| m.contains("deliberate"));
            if !deliberate {
                default(info);
            }
        }));
    });
}

/// A cache builder with the background sweeper off, so tests decide when sweeps run.
pub(crate) fn builder<K, V>() -> CacheBuilder<K, V>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    Cache::builder().sweep_interval(std::time::Duration::ZERO)
}
