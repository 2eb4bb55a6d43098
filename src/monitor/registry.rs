//! The route table: one [`RouteEntry`] per (method, route template), capped at `max_routes`.
//!
//! Lookups take a read lock on one method's map and hash the template with a fast non-keyed hasher: the keys are
//! route templates chosen by the application, never raw paths, so there is nothing for a client to flood.
//! New templates beyond the cap share the `<overflow>` entry of their method, so totals stay exact.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::RwLock;

use crate::monitor::config::MonitorConfig;
use crate::monitor::histogram::Layout;
use crate::monitor::route_entry::{RouteEntry, RouteMode};
use crate::route::{MethodLabel, OVERFLOW_ROUTE, UNMATCHED_ROUTE};

/// FNV-1a: a few cycles per byte on short keys, enough for a table of application-chosen templates.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FnvHasher(u64);

impl Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &byte in bytes {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

type Table = HashMap<Arc<str>, Arc<RouteEntry>, BuildHasherDefault<FnvHasher>>;

/// All route entries of one monitor.
#[derive(Debug)]
pub(crate) struct Registry {
    by_method: [RwLock<Table>; 10],
    /// `<unmatched>` per method, made up front.
    unmatched: [Arc<RouteEntry>; 10],
    /// `<overflow>` per method, made up front.
    overflow: [Arc<RouteEntry>; 10],
    templates: AtomicUsize,
    overflow_requests: AtomicU64,
    layout: Layout,
    config: Arc<MonitorConfig>,
}

impl Registry {
    pub(crate) fn new(config: Arc<MonitorConfig>) -> Self {
        let layout = Layout::new(micros(config.histogram_max), config.significant_digits);
        let make = |route: &str| {
            let route: Arc<str> = Arc::from(route);
            MethodLabel::ALL.map(|method| {
                Arc::new(RouteEntry::new(
                    method,
                    route.clone(),
                    RouteMode::Full,
                    config.slow_threshold,
                    layout,
                    0,
                ))
            })
        };
        Registry {
            by_method: std::array::from_fn(|_| RwLock::new(Table::default())),
            unmatched: make(UNMATCHED_ROUTE),
            overflow: make(OVERFLOW_ROUTE),
            templates: AtomicUsize::new(0),
            overflow_requests: AtomicU64::new(0),
            layout,
            config,
        }
    }

    /// The entry of a request that matched no route.
    pub(crate) fn unmatched(&self, method: MethodLabel) -> Arc<RouteEntry> {
        self.unmatched[method.index()].clone()
    }

    /// The entry of `template`, registered on first sight, or `None` when the route is excluded.
    pub(crate) fn route(
        &self,
        method: MethodLabel,
        template: &str,
        now_slot: u64,
    ) -> Option<Arc<RouteEntry>> {
        if let Some(entry) = self.by_method[method.index()].read().get(template) {
            return Some(entry.clone());
        }
        self.register(method, template, now_slot)
    }

    /// Whether `template` is configured as excluded.
    pub(crate) fn is_excluded(&self, template: &str) -> bool {
        self.config
            .excluded
            .iter()
            .any(|excluded| &**excluded == template)
    }

    #[cold]
    fn register(
        &self,
        method: MethodLabel,
        template: &str,
        now_slot: u64,
    ) -> Option<Arc<RouteEntry>> {
        if self.is_excluded(template) {
            return None;
        }
        // The table is full: no lock needed to say so (a template registered meanwhile was looked up above).
        if self.templates.load(Ordering::Relaxed) >= self.config.max_routes {
            self.overflow_requests.fetch_add(1, Ordering::Relaxed);
            return Some(self.overflow[method.index()].clone());
        }
        let mut table = self.by_method[method.index()].write();
        if let Some(entry) = table.get(template) {
            return Some(entry.clone());
        }
        if self.templates.load(Ordering::Relaxed) >= self.config.max_routes {
            self.overflow_requests.fetch_add(1, Ordering::Relaxed);
            return Some(self.overflow[method.index()].clone());
        }
        self.templates.fetch_add(1, Ordering::Relaxed);
        let mode = if self
            .config
            .count_only
            .iter()
            .any(|route| &**route == template)
        {
            RouteMode::CountOnly
        } else {
            RouteMode::Full
        };
        let slow = self
            .config
            .route_slow_thresholds
            .iter()
            .find(|(route, _)| &**route == template)
            .map_or(self.config.slow_threshold, |(_, threshold)| *threshold);
        let key: Arc<str> = Arc::from(template);
        let entry = Arc::new(RouteEntry::new(
            method,
            key.clone(),
            mode,
            slow,
            self.layout,
            now_slot,
        ));
        table.insert(key, entry.clone());
        Some(entry)
    }

    /// Requests that went to `<overflow>` because the table was full.
    pub(crate) fn overflow_requests(&self) -> u64 {
        self.overflow_requests.load(Ordering::Relaxed)
    }

    /// Every entry: registered templates, then `<unmatched>` and `<overflow>`.
    pub(crate) fn entries(&self) -> Vec<Arc<RouteEntry>> {
        let mut entries: Vec<Arc<RouteEntry>> = self
            .by_method
            .iter()
            .flat_map(|table| table.read().values().cloned().collect::<Vec<_>>())
            .collect();
        entries.extend(self.unmatched.iter().cloned());
        entries.extend(self.overflow.iter().cloned());
        entries
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(max_routes: usize) -> Registry {
        Registry::new(Arc::new(MonitorConfig {
            max_routes,
            ..MonitorConfig::default()
        }))
    }

    #[test]
    fn same_template_same_entry() {
        let registry = registry(8);
        let a = registry.route(MethodLabel::Get, "/a", 0).unwrap();
        let b = registry.route(MethodLabel::Get, "/a", 0).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let post = registry.route(MethodLabel::Post, "/a", 0).unwrap();
        assert!(!Arc::ptr_eq(&a, &post));
    }

    #[test]
    fn templates_past_the_cap_go_to_overflow() {
        let registry = registry(2);
        registry.route(MethodLabel::Get, "/a", 0).unwrap();
        registry.route(MethodLabel::Get, "/b", 0).unwrap();
        let c = registry.route(MethodLabel::Get, "/c", 0).unwrap();
        assert_eq!(&*c.route, OVERFLOW_ROUTE);
        assert_eq!(registry.overflow_requests(), 1);
        // Registered ones still resolve.
        assert_eq!(
            &*registry.route(MethodLabel::Get, "/a", 0).unwrap().route,
            "/a"
        );
    }

    #[test]
    fn fnv_is_stable() {
        let mut hasher = FnvHasher::default();
        hasher.write(b"a");
        assert_eq!(hasher.finish(), 0xaf63_dc4c_8601_ec8c);
    }
}
