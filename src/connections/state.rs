//! What the connection wrappers of one [`Perfscope`](crate::Perfscope) count into, per listener, and the
//! read side that turns it into the snapshot's `connections` section.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::connections::histogram::{LogHistogram, exact_p50_p99};
use crate::snapshot::{
    ClosedConnections, ConnectionsSnapshot, HeadPendingAges, HeadReadTimes, ListenerConnections,
};

/// Most listeners one handle reports on; later names share [`OVERFLOW_LISTENER`].
pub const MAX_LISTENERS: usize = 16;
/// The listener name shared once [`MAX_LISTENERS`] names exist.
pub const OVERFLOW_LISTENER: &str = "<overflow>";

/// Why a connection ended, as its wrapper saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// After its first request head, the client closed or reset the connection.
    ClientClosed,
    /// After its first request head, the server closed it (keep-alive idle timeout, `Connection: close`, an
    /// error, shutdown).
    ServerClosed,
    /// The server closed it while the first request head was incomplete, without answering: hyper's
    /// `header_read_timeout`, or shutdown.
    HeadTimeout,
    /// The client closed or reset it after sending part of a request head.
    HeadAbandoned,
    /// The server answered before the first request head was complete and closed it: hyper's automatic
    /// 431, 414 or 400 to a head it could not parse; no request reached the application.
    Refused,
    /// The client closed it without sending a byte.
    Empty,
    /// The server closed it to stay within its connection limit (marked with
    /// [`TrackedIo::mark_shed`](super::TrackedIo::mark_shed)), whatever its head.
    Shed,
}

const REASONS: usize = 7;

impl CloseReason {
    fn index(self) -> usize {
        self as usize
    }
}

/// Counters and gauges of one listener.
#[derive(Debug)]
pub(crate) struct ListenerState {
    pub(crate) name: Arc<str>,
    next_id: AtomicU64,
    open: AtomicU64,
    peak_open: AtomicU64,
    accepted: AtomicU64,
    /// Accept times of the connections whose first request head is not complete yet, by connection id.
    pending: Mutex<HashMap<u64, Instant>>,
    head_read: LogHistogram,
    closed: [AtomicU64; REASONS],
    shared: Arc<Shared>,
}

impl ListenerState {
    /// A connection was accepted: it is open and its head pending. Returns its id.
    pub(crate) fn opened(&self, now: Instant) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.accepted.fetch_add(1, Ordering::Relaxed);
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_open.fetch_max(open, Ordering::Relaxed);
        let open_total = self.shared.open.fetch_add(1, Ordering::Relaxed) + 1;
        let pending = {
            let mut pending = self.pending.lock();
            pending.insert(id, now);
            pending.len()
        };
        self.shared
            .warnings
            .check(&self.name, pending, open_total, now);
        id
    }

    /// The first request head of connection `id`, accepted at `accepted`, is complete.
    pub(crate) fn head_complete(&self, id: u64, accepted: Instant, now: Instant) {
        remove_pending(&mut self.pending.lock(), id);
        self.head_read
            .record(now.saturating_duration_since(accepted));
    }

    /// Connection `id` ended; `head_pending` when its first head never completed.
    pub(crate) fn closed(&self, id: u64, head_pending: bool, reason: CloseReason) {
        if head_pending {
            remove_pending(&mut self.pending.lock(), id);
        }
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.shared.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(counter) = self.closed.get(reason.index()) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn view(&self, now: Instant) -> ListenerConnections {
        let mut ages: Vec<u64> = self
            .pending
            .lock()
            .values()
            .map(|start| micros(now.saturating_duration_since(*start)))
            .collect();
        let head_pending = ages.len() as u64;
        let oldest = ages.iter().copied().max().unwrap_or(0);
        let (p50, p99) = exact_p50_p99(&mut ages);
        let read = self.head_read.summary();
        let closed = |reason: CloseReason| {
            self.closed
                .get(reason.index())
                .map_or(0, |c| c.load(Ordering::Relaxed))
        };
        ListenerConnections {
            listener: self.name.to_string(),
            open: self.open.load(Ordering::Relaxed),
            peak_open: self.peak_open.load(Ordering::Relaxed),
            accepted_total: self.accepted.load(Ordering::Relaxed),
            head_pending,
            head_pending_age: HeadPendingAges {
                oldest_ms: ms(oldest),
                p50_ms: ms(p50),
                p99_ms: ms(p99),
            },
            head_read: HeadReadTimes {
                count: read.count,
                p50_ms: ms(read.p50),
                p99_ms: ms(read.p99),
                max_ms: ms(read.max),
                sum_ms: ms(read.sum),
            },
            closed: ClosedConnections {
                client_closed: closed(CloseReason::ClientClosed),
                server_closed: closed(CloseReason::ServerClosed),
                head_timeout: closed(CloseReason::HeadTimeout),
                head_abandoned: closed(CloseReason::HeadAbandoned),
                refused: closed(CloseReason::Refused),
                empty: closed(CloseReason::Empty),
                shed: closed(CloseReason::Shed),
            },
        }
    }
}

/// Capacity of the head-pending table kept whatever its length (about 30 KiB).
const PENDING_KEPT_CAPACITY: usize = 1_024;

/// Removes `id` from the head-pending table, and gives back the table's memory once a burst has passed: a
/// table that held 20,000 stalled connections keeps their 800 KiB otherwise (a map never shrinks by itself).
/// Shrinking to twice the length when the length falls under an eighth of the capacity costs one rehash per
/// halving of a burst, never one per connection.
fn remove_pending(pending: &mut HashMap<u64, Instant>, id: u64) {
    pending.remove(&id);
    let capacity = pending.capacity();
    if capacity > PENDING_KEPT_CAPACITY && pending.len() < capacity / 8 {
        pending.shrink_to(PENDING_KEPT_CAPACITY.max(pending.len() * 2));
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1_000.0
}

/// The settings of the connection warnings.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionsConfig {
    /// Connections still reading their first head on one listener from which a warning is logged.
    pub(crate) head_pending_warning: usize,
    /// Share of the open-files limit from which a warning is logged.
    pub(crate) open_files_warning_ratio: f64,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        ConnectionsConfig {
            head_pending_warning: 1_000,
            open_files_warning_ratio: 0.8,
        }
    }
}

/// What all listeners of a handle share: the connections open on all of them, the settings and the warnings'
/// rate limits.
#[derive(Debug)]
struct Shared {
    open: AtomicU64,
    warnings: Warnings,
}

/// The listeners of one handle.
#[derive(Debug)]
pub(crate) struct Connections {
    listeners: Mutex<Vec<Arc<ListenerState>>>,
    shared: Arc<Shared>,
}

impl Connections {
    pub(crate) fn new(config: ConnectionsConfig) -> Self {
        Connections {
            listeners: Mutex::new(Vec::new()),
            shared: Arc::new(Shared {
                open: AtomicU64::new(0),
                warnings: Warnings::new(config),
            }),
        }
    }

    /// The state of listener `name`, made on first use; past [`MAX_LISTENERS`] names, the shared overflow one.
    pub(crate) fn listener(&self, name: &str) -> Arc<ListenerState> {
        let mut listeners = self.listeners.lock();
        if let Some(found) = listeners.iter().find(|l| &*l.name == name) {
            return found.clone();
        }
        let name = if listeners.len() >= MAX_LISTENERS {
            if let Some(found) = listeners.iter().find(|l| &*l.name == OVERFLOW_LISTENER) {
                return found.clone();
            }
            OVERFLOW_LISTENER
        } else {
            name
        };
        let state = Arc::new(ListenerState {
            name: Arc::from(name),
            next_id: AtomicU64::new(0),
            open: AtomicU64::new(0),
            peak_open: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
            head_read: LogHistogram::default(),
            closed: Default::default(),
            shared: self.shared.clone(),
        });
        listeners.push(state.clone());
        state
    }

    pub(crate) fn snapshot(&self) -> ConnectionsSnapshot {
        let now = Instant::now();
        let mut listeners: Vec<ListenerConnections> =
            self.listeners.lock().iter().map(|l| l.view(now)).collect();
        listeners.sort_by(|a, b| a.listener.cmp(&b.listener));
        ConnectionsSnapshot {
            listeners,
            warnings_suppressed: self.shared.warnings.suppressed.load(Ordering::Relaxed),
        }
    }
}

/// The two connection warnings, each logged at most once a minute.
#[derive(Debug)]
struct Warnings {
    config: ConnectionsConfig,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last read of the open-file limit; read at most once a second.
    last_fd_check_ms: AtomicU64,
    /// The open-file limit last read (0 when unknown or unlimited).
    max_fds: AtomicU64,
    last_head_warning_ms: AtomicU64,
    last_fd_warning_ms: AtomicU64,
    suppressed: AtomicU64,
}

const WARNING_INTERVAL_MS: u64 = 60_000;
const FD_CHECK_INTERVAL_MS: u64 = 1_000;

impl Warnings {
    fn new(config: ConnectionsConfig) -> Self {
        Warnings {
            config,
            epoch: Instant::now(),
            last_fd_check_ms: AtomicU64::new(0),
            max_fds: AtomicU64::new(0),
            last_head_warning_ms: AtomicU64::new(0),
            last_fd_warning_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether a warning may be logged now (`now_ms` since the epoch, plus one so the first is never 0).
    fn allow(&self, last: &AtomicU64, now_ms: u64) -> bool {
        let previous = last.load(Ordering::Relaxed);
        if previous != 0 && now_ms.saturating_sub(previous) < WARNING_INTERVAL_MS {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        last.compare_exchange(previous, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// Called at each accept: warns when `pending` connections of `listener` are reading their head, and when
    /// the `open` connections of all listeners reach the share of the open-file limit (read at most once a
    /// second). Each connection is a file descriptor; counting them costs nothing, where listing
    /// `/proc/self/fd` takes tens of milliseconds at 20,000 descriptors, which the accepting task cannot spend
    /// during the very attack the warning is about. The snapshot still lists them (`ProcessStats::open_fds`).
    fn check(&self, listener: &str, pending: usize, open: u64, now: Instant) {
        let now_ms = micros(now.saturating_duration_since(self.epoch)) / 1_000 + 1;
        if pending >= self.config.head_pending_warning
            && self.allow(&self.last_head_warning_ms, now_ms)
        {
            tracing::warn!(
                target: "perfscope::connections",
                listener,
                head_pending = pending,
                "{pending} connections are still sending their request head: slow or stalled clients; \
                 set a header read timeout on the HTTP server (hyper's `header_read_timeout`)"
            );
        }
        let last = self.last_fd_check_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) >= FD_CHECK_INTERVAL_MS
            && self
                .last_fd_check_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.max_fds
                .store(crate::process::max_fds().unwrap_or(0), Ordering::Relaxed);
        }
        let max = self.max_fds.load(Ordering::Relaxed);
        if max > 0
            && open as f64 >= self.config.open_files_warning_ratio * max as f64
            && self.allow(&self.last_fd_warning_ms, now_ms)
        {
            tracing::warn!(
                target: "perfscope::connections",
                open_connections = open,
                max_fds = max,
                "{open} connections are open, each a file, against the process's open-file limit of {max}: new \
                 connections will soon be refused; limit concurrent connections or raise RLIMIT_NOFILE"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_are_bounded_and_shared_by_name() {
        let connections = Connections::new(ConnectionsConfig::default());
        let a = connections.listener("a");
        assert!(Arc::ptr_eq(&a, &connections.listener("a")));
        for i in 0..40 {
            let _ = connections.listener(&format!("l{i}"));
        }
        let snapshot = connections.snapshot();
        assert_eq!(snapshot.listeners.len(), MAX_LISTENERS + 1);
        assert!(
            snapshot
                .listeners
                .iter()
                .any(|l| l.listener == OVERFLOW_LISTENER)
        );
    }

    #[test]
    fn counts_open_pending_and_closes() {
        let connections = Connections::new(ConnectionsConfig::default());
        let l = connections.listener("http");
        let t0 = Instant::now();
        let a = l.opened(t0);
        let b = l.opened(t0);
        let c = l.opened(t0);
        l.head_complete(a, t0, t0 + Duration::from_millis(3));
        let view = l.view(t0 + Duration::from_millis(10));
        assert_eq!((view.open, view.peak_open, view.head_pending), (3, 3, 2));
        assert_eq!(view.head_pending_age.oldest_ms, 10.0);
        assert_eq!(view.head_read.count, 1);
        l.closed(a, false, CloseReason::ClientClosed);
        l.closed(b, true, CloseReason::HeadTimeout);
        l.closed(c, true, CloseReason::Refused);
        let view = l.view(t0);
        assert_eq!((view.open, view.peak_open, view.head_pending), (0, 3, 0));
        assert_eq!(view.closed.client_closed, 1);
        assert_eq!(view.closed.head_timeout, 1);
        assert_eq!(view.closed.refused, 1);
        assert_eq!(view.accepted_total, 3);
        let d = l.opened(t0);
        l.closed(d, true, CloseReason::Shed);
        assert_eq!(l.view(t0).closed.shed, 1);
    }

    #[test]
    fn the_pending_table_gives_back_its_memory_after_a_burst() {
        let connections = Connections::new(ConnectionsConfig::default());
        let l = connections.listener("http");
        let t0 = Instant::now();
        let ids: Vec<u64> = (0..20_000).map(|_| l.opened(t0)).collect();
        let burst = l.pending.lock().capacity();
        assert!(burst >= 20_000);
        for (i, id) in ids.iter().enumerate() {
            if i % 2 == 0 {
                l.head_complete(*id, t0, t0);
            } else {
                l.closed(*id, true, CloseReason::HeadTimeout);
            }
            // Never shrunk below what it holds, nor while it is more than an eighth full.
            let pending = l.pending.lock();
            assert!(pending.capacity() >= pending.len());
        }
        let after = l.pending.lock().capacity();
        assert!(after <= 2 * PENDING_KEPT_CAPACITY, "{burst} -> {after}");
        assert_eq!(l.view(t0).head_pending, 0);
    }

    #[test]
    fn warnings_are_rate_limited() {
        let warnings = Warnings::new(ConnectionsConfig {
            head_pending_warning: 2,
            open_files_warning_ratio: 0.8,
        });
        let t0 = Instant::now();
        warnings.check("http", 5, 0, t0);
        warnings.check("http", 5, 0, t0 + Duration::from_secs(1));
        assert_eq!(warnings.suppressed.load(Ordering::Relaxed), 1);
        warnings.check("http", 5, 0, t0 + Duration::from_secs(62));
        assert_eq!(warnings.suppressed.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_open_files_warning_counts_connections_against_the_limit() {
        let warnings = Warnings::new(ConnectionsConfig {
            head_pending_warning: usize::MAX,
            open_files_warning_ratio: 0.8,
        });
        let t0 = Instant::now();
        // The limit as if just read: 100 files.
        warnings.last_fd_check_ms.store(1, Ordering::Relaxed);
        warnings.max_fds.store(100, Ordering::Relaxed);
        warnings.check("http", 0, 79, t0);
        assert_eq!(warnings.last_fd_warning_ms.load(Ordering::Relaxed), 0);
        warnings.check("http", 0, 80, t0);
        assert_ne!(warnings.last_fd_warning_ms.load(Ordering::Relaxed), 0);
        warnings.check("http", 0, 90, t0);
        assert_eq!(warnings.suppressed.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn open_connections_are_counted_across_listeners() {
        let connections = Connections::new(ConnectionsConfig::default());
        let (a, b) = (connections.listener("a"), connections.listener("b"));
        let t0 = Instant::now();
        let ids = [a.opened(t0), b.opened(t0), b.opened(t0)];
        assert_eq!(connections.shared.open.load(Ordering::Relaxed), 3);
        a.closed(ids[0], true, CloseReason::Empty);
        assert_eq!(connections.shared.open.load(Ordering::Relaxed), 2);
    }
}
