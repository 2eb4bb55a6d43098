//! The second level and the invalidation bus: across two nodes on one store (in process, and on a real
//! redis-server), under faults of the server, and with corrupt entries.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)]

#[allow(dead_code, unreachable_pub)]
#[path = "support/services.rs"]
mod services;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use perfscope::cache::l2::{L2Backend, MemoryLevel, RedisLevel, SecondLevel};
use perfscope::cache::{Cache, CacheStatus, Loaded};

const HARD: Duration = Duration::from_millis(100);

/// A level with the short settings of these tests: staleness bound 150 + 50 + 100 = 300 ms.
fn level(backend: impl L2Backend, prefix: &str) -> SecondLevel {
    SecondLevel::builder(backend)
        .prefix(prefix)
        .soft_timeout(Duration::from_millis(40))
        .hard_timeout(HARD)
        .circuit_breaker(3, Duration::from_millis(300))
        .heartbeat(Duration::from_millis(50), Duration::from_millis(150))
        .reverify_interval(Duration::from_millis(50))
        .build()
        .unwrap()
}

fn cache(level: &SecondLevel) -> Cache<String, u64> {
    Cache::builder()
        .name("items")
        .ttl(Duration::from_secs(30))
        .sweep_interval(Duration::ZERO)
        .second_level(level.clone())
        .build()
        .unwrap()
}

fn unique_prefix(test: &str) -> String {
    format!(
        "t{}-{}-{test}:",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    )
}

/// `REDIS_URL`, or `None` (the test skips) unless `PERFSCOPE_REQUIRE_SERVICES=1` (set by `scripts/test`).
fn redis_url() -> Option<String> {
    services::service_url("REDIS_URL", &["redis:", "rediss:", "unix:"], "Redis")
}

async fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_loaded_on_one_node_is_read_from_l2_on_another_and_invalidated_everywhere() {
    let store = MemoryLevel::new();
    let prefix = unique_prefix("memory");
    let (la, lb) = (level(store.clone(), &prefix), level(store.clone(), &prefix));
    wait_until("both buses", Duration::from_secs(2), || {
        la.is_verified() && lb.is_verified()
    })
    .await;
    let (a, b) = (cache(&la), cache(&lb));
    let loads = Arc::new(AtomicU64::new(0));
    let loader = |loads: Arc<AtomicU64>, value: u64| {
        move || async move {
            loads.fetch_add(1, Ordering::SeqCst);
            Loaded::new(value).tag("item:1")
        }
    };
    let key = "item:1".to_owned();
    assert_eq!(
        a.get_or_compute(&key, loader(loads.clone(), 1))
            .await
            .unwrap(),
        1
    );
    wait_until("the write", Duration::from_secs(2), || {
        la.stats().writes == 1
    })
    .await;
    let fetched = b
        .try_get_or_compute_entry(&key, {
            let loads = loads.clone();
            move || async move { Ok::<_, ()>(loader(loads, 2)().await) }
        })
        .await
        .unwrap();
    assert_eq!(
        (fetched.value, fetched.status),
        (1, CacheStatus::SecondLevelHit)
    );
    assert_eq!(loads.load(Ordering::SeqCst), 1, "B did not load");
    assert_eq!(b.get(&key), Some(1), "filled B's L1");
    a.invalidate_tag("item:1");
    wait_until("B's L1 to drop it", Duration::from_secs(1), || {
        b.get(&key).is_none()
    })
    .await;
    // L2 holds the old entry, but its tag version says it is stale: B loads.
    assert_eq!(
        b.get_or_compute(&key, loader(loads.clone(), 3))
            .await
            .unwrap(),
        3
    );
    let stats = b.stats().second_level.unwrap();
    assert_eq!((stats.hits, stats.rejected), (1, 1), "{stats:?}");
    assert!(stats.bus_received >= 1);
    assert!(b.stats().second_level.unwrap().stores_values);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_truncated_foreign_and_old_entries_are_counted_misses() {
    let store = MemoryLevel::new();
    let prefix = unique_prefix("corrupt");
    let l = level(store.clone(), &prefix);
    let c = cache(&l);
    let good = {
        let key = "good:1".to_owned();
        c.get_or_compute(&key, || async { 5_u64 }).await.unwrap();
        wait_until("the write", Duration::from_secs(2), || {
            l.stats().writes == 1
        })
        .await;
        store.get_raw(&format!("{prefix}items:e:good:1")).unwrap()
    };
    let mut old = good.clone();
    old[2] = 0;
    let mut bad_payload = good.clone();
    bad_payload.truncate(good.len() - 1);
    bad_payload.extend_from_slice(&[0xff; 12]);
    let cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"{\"json\": true}".to_vec(),
        good[..10].to_vec(),
        old,
        bad_payload,
    ];
    for (i, bytes) in cases.into_iter().enumerate() {
        store.put_raw(&format!("{prefix}items:e:bad:{i}"), bytes);
        let value = c
            .get_or_compute(&format!("bad:{i}"), move || async move { 100 + i as u64 })
            .await;
        assert_eq!(value.unwrap(), 100 + i as u64);
    }
    let stats = c.stats().second_level.unwrap();
    assert_eq!(stats.corrupt, 5, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_is_down_fails_no_request_and_the_breaker_makes_no_calls_while_open() {
    let store = MemoryLevel::new();
    let prefix = unique_prefix("down");
    let l = level(store.clone(), &prefix);
    let c = cache(&l);
    store.set_down(true);
    let mut tasks = Vec::new();
    for reader in 0..50_u64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..4_u64 {
                let key = format!("k:{reader}:{round}");
                c.get_or_compute(&key, move || async move { reader })
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stats = l.stats();
    assert_eq!(stats.breaker, "open", "{stats:?}");
    assert!(stats.breaker_opened >= 1);
    let calls = store.calls();
    for i in 0..20_u64 {
        c.get_or_compute(&format!("open:{i}"), move || async move { i })
            .await
            .unwrap();
    }
    if l.stats().breaker_opened == stats.breaker_opened && l.stats().breaker == "open" {
        assert!(
            store.calls() <= calls + 2,
            "no calls while open (the bus may probe)"
        );
    }
    store.set_down(false);
    wait_until("the breaker to close", Duration::from_secs(3), || {
        l.stats().breaker == "closed" && l.is_verified()
    })
    .await;
    // Nothing stale: the periodic clears ran while the bus was lost.
    assert!(l.stats().unverified_periods >= 1);
}

#[test]
fn bad_settings_are_refused_with_a_hint() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let store = MemoryLevel::new();
    let err = SecondLevel::builder(store.clone())
        .soft_timeout(Duration::from_secs(1))
        .hard_timeout(Duration::from_millis(10))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("soft_timeout"), "{err}");
    assert!(
        SecondLevel::builder(store.clone())
            .heartbeat(Duration::from_secs(1), Duration::from_secs(1))
            .build()
            .is_err()
    );
    assert!(
        SecondLevel::builder(store.clone())
            .prefix("has space")
            .build()
            .is_err()
    );
    let level = SecondLevel::builder(store).build().unwrap();
    assert_eq!(
        level.staleness_bound(),
        Duration::from_millis(3000 + 1000 + 250)
    );
    let err = Cache::<(u8, u8), u64>::builder()
        .second_level(level)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("second_level"), "{err}");
}

/// Latency from an invalidation returning on A to B's L1 missing, over 1,000 trials of each kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_reach_the_other_node_within_50_ms_p99() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("fanout");
    let la = level(RedisLevel::open(&url).unwrap(), &prefix);
    let lb = level(RedisLevel::open(&url).unwrap(), &prefix);
    wait_until("both buses", Duration::from_secs(3), || {
        la.is_verified() && lb.is_verified()
    })
    .await;
    let (a, b) = (cache(&la), cache(&lb));
    let bound = lb.staleness_bound();
    let mut latencies = Vec::new();
    for trial in 0..1000_u64 {
        let key = format!("product:{trial}:details");
        b.insert_with(key.clone(), Loaded::new(trial).tag(format!("tag:{trial}")));
        assert_eq!(b.get(&key), Some(trial));
        let started = Instant::now();
        match trial % 3 {
            0 => a.invalidate_tag(&format!("tag:{trial}")),
            1 => drop(a.invalidate(&key)),
            _ => a.invalidate_prefix(&format!("product:{trial}")),
        }
        while b.get(&key).is_some() {
            assert!(
                started.elapsed() < bound,
                "trial {trial}: stale after the bound"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100];
    let max = latencies[latencies.len() - 1];
    eprintln!("fan-out over Redis: p50 {p50:?}, p99 {p99:?}, max {max:?}");
    assert!(p99 <= Duration::from_millis(50), "p99 {p99:?}");
    assert!(max <= Duration::from_millis(250), "max {max:?}");
    assert!(lb.stats().bus_received >= 1000);
}

/// A redis-server of this test's own, on a free port, that the test can kill, freeze and restart.
struct Server {
    port: u16,
    child: Option<Child>,
}

impl Server {
    fn start(port: Option<u16>) -> Server {
        let port = port.unwrap_or_else(|| {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        });
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Server {
            port,
            child: Some(child),
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
        }
    }

    fn kill(&mut self) {
        self.signal("-KILL");
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    fn cli(&self, args: &[&str]) {
        let status = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.signal("-CONT");
        self.kill();
    }
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Kill,
    Freeze,
    KillPubSub,
    RestartEmpty,
}

/// 50 readers on B, a writer on A bumping the source of truth and invalidating, and a fault in the middle:
/// no request fails, every call is bounded, and no read returns a version older than the staleness bound.
async fn survive(fault: Fault) {
    if !redis_available() {
        return;
    }
    let mut server = Server::start(None);
    let prefix = unique_prefix("fault");
    let la = level(RedisLevel::open(&server.url()).unwrap(), &prefix);
    let lb = level(RedisLevel::open(&server.url()).unwrap(), &prefix);
    wait_until("both buses", Duration::from_secs(3), || {
        la.is_verified() && lb.is_verified()
    })
    .await;
    let (a, b) = (cache(&la), cache(&lb));
    let bound = lb.staleness_bound();
    let truth = Arc::new(AtomicU64::new(0));
    // When each version stopped being current.
    let replaced_at = Arc::new(parking_lot::Mutex::new(Vec::<Instant>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (truth, replaced_at, stop) = (truth.clone(), replaced_at.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                replaced_at.lock().push(Instant::now());
                truth.fetch_add(1, Ordering::SeqCst);
                a.invalidate_tag("truth");
            }
        })
    };
    let errors = Arc::new(AtomicU64::new(0));
    let violations = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for reader in 0..50_u64 {
        let (b, truth, replaced_at, stop, errors, violations) = (
            b.clone(),
            truth.clone(),
            replaced_at.clone(),
            stop.clone(),
            errors.clone(),
            violations.clone(),
        );
        readers.push(tokio::spawn(async move {
            let key = format!("item:{}", reader % 5);
            while !stop.load(Ordering::SeqCst) {
                let truth = truth.clone();
                let read = b
                    .get_or_compute(&key, move || async move {
                        Loaded::new(truth.load(Ordering::SeqCst)).tag("truth")
                    })
                    .await;
                let now = Instant::now();
                match read {
                    Ok(version) => {
                        // Version v stopped being current at replaced_at[v]; reading it later than the bound
                        // after that is a stale read.
                        let replaced = replaced_at.lock().get(version as usize).copied();
                        if replaced.is_some_and(|at| now.saturating_duration_since(at) > bound) {
                            violations.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Err(_) => drop(errors.fetch_add(1, Ordering::SeqCst)),
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    match fault {
        Fault::Kill => {
            server.kill();
            tokio::time::sleep(Duration::from_millis(200)).await;
            let stats = lb.stats();
            assert!(stats.breaker == "open" || stats.unverified, "{stats:?}");
            tokio::time::sleep(Duration::from_millis(400)).await;
            server = Server::start(Some(server.port));
        }
        Fault::Freeze => {
            server.signal("-STOP");
            tokio::time::sleep(Duration::from_millis(600)).await;
            let stats = lb.stats();
            assert!(stats.breaker_opened >= 1, "{stats:?}");
            server.signal("-CONT");
        }
        Fault::KillPubSub => {
            server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Fault::RestartEmpty => {
            server.kill();
            server = Server::start(Some(server.port));
        }
    }
    wait_until("recovery", Duration::from_secs(5), || {
        la.is_verified() && lb.is_verified() && lb.stats().breaker == "closed"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    for reader in readers {
        reader.await.unwrap();
    }
    let stats = lb.stats();
    eprintln!("{fault:?}: {stats:?}");
    assert_eq!(errors.load(Ordering::SeqCst), 0, "request errors");
    assert_eq!(
        violations.load(Ordering::SeqCst),
        0,
        "reads older than the bound"
    );
    assert!(
        stats.call_max_ms <= (HARD + Duration::from_millis(20)).as_secs_f64() * 1e3,
        "{stats:?}"
    );
    assert!(stats.unverified_periods >= 1, "{stats:?}");
    drop(server);
}

fn redis_available() -> bool {
    // The fault tests start servers of their own with the same binary as the shared one.
    redis_url().is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_redis_killed() {
    survive(Fault::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_redis_frozen() {
    survive(Fault::Freeze).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_the_pubsub_connection_killed() {
    survive(Fault::KillPubSub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_redis_restarted_empty() {
    survive(Fault::RestartEmpty).await;
}

/// A server that accepts connections and never answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackhole_server_fails_no_request_and_every_call_is_bounded() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let l = level(
        RedisLevel::open(&format!("redis://127.0.0.1:{port}/")).unwrap(),
        "blackhole:",
    );
    let c = cache(&l);
    let mut tasks = Vec::new();
    for reader in 0..50_u64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..3_u64 {
                let key = format!("k:{reader}:{round}");
                assert_eq!(
                    c.get_or_compute(&key, move || async move { reader })
                        .await
                        .unwrap(),
                    reader
                );
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stats = l.stats();
    assert_eq!(stats.breaker, "open", "{stats:?}");
    assert!(
        stats.call_max_ms <= (HARD + Duration::from_millis(20)).as_secs_f64() * 1e3,
        "{stats:?}"
    );
    assert!(!l.is_verified());
    hold.abort();
}

#[cfg(feature = "json")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_level_statistics_are_exported() {
    let store = MemoryLevel::new();
    let l = level(store, &unique_prefix("export"));
    let c = cache(&l);
    c.get_or_compute(&"a:1".to_owned(), || async { 1 })
        .await
        .unwrap();
    let perf = perfscope::Perfscope::builder().build().unwrap();
    perf.register_cache(c.handle());
    let text = perf.prometheus();
    assert!(
        text.contains("perfscope_cache_l2_lookups_total{cache=\"items\",result=\"miss\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("perfscope_cache_l2_breaker_state{cache=\"items\",state=\"closed\"} 1"),
        "{text}"
    );
    if let Ok(promtool) = std::env::var("PROMTOOL").or_else(|_| Ok::<_, ()>("promtool".to_owned()))
    {
        use std::io::Write;
        if let Ok(mut child) = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let output = child.wait_with_output().unwrap();
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(
                output.status.success() && said.trim().is_empty(),
                "promtool: {said}"
            );
        }
    }
    let json = serde_json::to_value(c.stats()).unwrap();
    assert_eq!(json["second_level"]["misses"], 1);
    assert_eq!(json["second_level"]["breaker"], "closed");
}
