//! Fleet-wide latency against a real Redis (`REDIS_URL`): merged percentiles equal those of the union of the
//! instances' samples, stopped instances age out within their TTL, the admin endpoint, and foreign entries.
#![cfg(all(
    feature = "redis",
    feature = "monitor",
    feature = "axum",
    feature = "json"
))]
#![allow(clippy::unwrap_used)]

#[path = "support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use http::{Request, StatusCode};
use perfscope::fleet::{FleetConfig, FleetError, FleetSnapshot};
use perfscope::monitor::bench_support::record;
use perfscope::{AdminAuth, MethodLabel, Perfscope};
use support::{Rng, app_with_routes, get_request, send};

const ROUTE: &str = "/api/products/{id}";
const TOKEN: &str = "fleet-test-token-0123456789";
/// Short enough to keep the tests fast, long enough for a loaded machine to publish in time.
const INTERVAL: Duration = Duration::from_millis(100);
const TTL: Duration = Duration::from_millis(800);
/// Allowance for polling and a loaded machine when timing an age-out.
const SLACK: Duration = Duration::from_millis(200);

fn redis_url() -> Option<String> {
    support::services::service_url("REDIS_URL", &["redis:", "rediss:", "unix:"], "Redis")
}

/// A prefix of its own per test and process, so parallel tests and runs never see each other.
fn prefix(test: &str) -> String {
    format!("perfscope-test:{}:{test}", std::process::id())
}

fn config(url: &str, prefix: &str, id: &str) -> FleetConfig {
    FleetConfig::new(url)
        .prefix(prefix)
        .instance_id(id)
        .interval(INTERVAL)
        .ttl(TTL)
}

/// Instance A: 3,000 fast samples, 1 to 20 ms.
fn samples_a() -> Vec<u64> {
    let mut rng = Rng(1);
    (0..3_000).map(|_| 1_000 + rng.below(19_000)).collect()
}

/// Instance B: 1,000 samples, nine in ten between 2 and 10 ms, one in ten between 200 and 900 ms (a slow
/// instance that dominates the fleet's p99).
fn samples_b(seed: u64) -> Vec<u64> {
    let mut rng = Rng(seed);
    (0..1_000)
        .map(|i| {
            if i % 10 == 0 {
                200_000 + rng.below(700_000)
            } else {
                2_000 + rng.below(8_000)
            }
        })
        .collect()
}

fn record_all(perf: &Perfscope, samples: &[u64]) {
    for &micros in samples {
        record(
            perf,
            MethodLabel::Get,
            ROUTE,
            Duration::from_micros(micros),
            200,
        );
    }
}

/// Polls `perf`'s fleet view until `done` holds, for at most `limit`.
async fn wait_for(
    perf: &Perfscope,
    limit: Duration,
    done: impl Fn(&FleetSnapshot) -> bool,
) -> FleetSnapshot {
    let start = Instant::now();
    loop {
        let fleet = perf.fleet_snapshot().await.unwrap();
        if done(&fleet) || start.elapsed() > limit {
            return fleet;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn has(fleet: &FleetSnapshot, id: &str) -> bool {
    fleet.instances.iter().any(|instance| instance.id == id)
}

/// The fleet route's percentiles against the union of `samples`: equal to those of one histogram holding the
/// union (same bins), and within the histograms' precision (two significant digits) of the exact order
/// statistics.
fn assert_union(fleet: &FleetSnapshot, samples: &[u64]) {
    let route = fleet
        .routes
        .iter()
        .find(|r| r.route == ROUTE && r.method == "GET")
        .unwrap();
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let max = *sorted.last().unwrap();
    let mut union = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 2).unwrap();
    for &value in samples {
        union.record(value).unwrap();
    }
    assert_eq!(route.lifetime.count, samples.len() as u64);
    assert_eq!(route.lifetime.max_ms, max as f64 / 1_000.0, "exact maximum");
    for (quantile, got) in [
        (0.5, route.lifetime.p50_ms),
        (0.95, route.lifetime.p95_ms),
        (0.99, route.lifetime.p99_ms),
    ] {
        let same_bins = union.value_at_quantile(quantile).min(max) as f64 / 1_000.0;
        assert_eq!(
            got, same_bins,
            "q{quantile} against one histogram of the union"
        );
        let rank = ((quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        let exact = sorted[rank - 1] as f64 / 1_000.0;
        assert!(
            (got - exact).abs() <= exact * 0.01,
            "q{quantile}: fleet {got} ms, exact {exact} ms"
        );
        println!("q{quantile}: fleet {got} ms, exact order statistic {exact} ms");
    }
}

#[tokio::test]
async fn merged_percentiles_are_those_of_the_union_of_samples() {
    let Some(url) = redis_url() else { return };
    let prefix = prefix("union");
    let (a, b) = (
        Perfscope::builder().build().unwrap(),
        Perfscope::builder().build().unwrap(),
    );
    let (samples_a, samples_b) = (samples_a(), samples_b(2));
    record_all(&a, &samples_a);
    record_all(&b, &samples_b);
    record(
        &b,
        MethodLabel::Post,
        "/api/orders",
        Duration::from_millis(30),
        201,
    );
    let publisher_a = a.publish_fleet(config(&url, &prefix, "a")).unwrap();
    let publisher_b = b.publish_fleet(config(&url, &prefix, "b")).unwrap();
    publisher_a.publish_now().await.unwrap();
    publisher_b.publish_now().await.unwrap();

    for perf in [&a, &b] {
        let fleet = perf.fleet_snapshot().await.unwrap();
        let ids: Vec<&str> = fleet.instances.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert!(ids.contains(&"a") && ids.contains(&"b"));
        assert!(
            fleet
                .instances
                .iter()
                .all(|i| i.age_ms <= TTL.as_millis() as u64)
        );
        assert_eq!((fleet.skipped_instances, fleet.skipped_routes), (0, 0));
        let union: Vec<u64> = samples_a.iter().chain(&samples_b).copied().collect();
        assert_union(&fleet, &union);
        let orders = fleet
            .routes
            .iter()
            .find(|r| r.route == "/api/orders")
            .unwrap();
        assert_eq!(
            (
                orders.method.as_str(),
                orders.instances,
                orders.lifetime.count
            ),
            ("POST", 1, 1)
        );
        let products = fleet.routes.iter().find(|r| r.route == ROUTE).unwrap();
        assert_eq!(products.instances, 2);
        assert_eq!(products.window_5m.count, 4_000);
    }
    // The fleet's p99 is B's slow tail, which neither instance's own p99 nor their mean shows.
    let fleet = a.fleet_snapshot().await.unwrap();
    let local_a = a.snapshot().routes[0].p99_ms;
    assert!(
        fleet
            .routes
            .iter()
            .find(|r| r.route == ROUTE)
            .unwrap()
            .lifetime
            .p99_ms
            > 10.0 * local_a
    );
    assert!(publisher_a.stats().publishes >= 1);
    publisher_a.shutdown().await.unwrap();
    publisher_b.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_stopped_instance_ages_out_within_its_ttl() {
    let Some(url) = redis_url() else { return };
    let prefix = prefix("ageout");
    let (a, b) = (
        Perfscope::builder().build().unwrap(),
        Perfscope::builder().build().unwrap(),
    );
    record_all(&b, &samples_b(3));
    let _publisher_a = a.publish_fleet(config(&url, &prefix, "a")).unwrap();
    let publisher_b = b.publish_fleet(config(&url, &prefix, "b")).unwrap();
    let fleet = wait_for(&a, Duration::from_secs(5), |f| has(f, "a") && has(f, "b")).await;
    assert!(has(&fleet, "b"), "{fleet:?}");
    // Let B publish a few times, then stop it as a crash would (no withdrawal).
    tokio::time::sleep(3 * INTERVAL).await;
    drop(publisher_b);
    let stopped = Instant::now();
    assert!(
        b.fleet_snapshot()
            .await
            .is_err_and(|e| matches!(e, FleetError::NotConfigured))
    );
    let fleet = wait_for(&a, 3 * TTL, |f| !has(f, "b")).await;
    let gone_after = stopped.elapsed();
    assert!(
        !has(&fleet, "b"),
        "B still listed {gone_after:?} after it stopped"
    );
    assert!(has(&fleet, "a"));
    assert!(
        fleet.routes.iter().all(|r| r.route != ROUTE),
        "B's route left with it"
    );
    println!("stopped instance gone after {gone_after:?} (ttl {TTL:?}, interval {INTERVAL:?})");
    // Gone within the TTL of its last publish (plus polling), and not before its last publish expired.
    assert!(gone_after <= TTL + SLACK, "{gone_after:?}");
    assert!(gone_after + INTERVAL + SLACK >= TTL, "{gone_after:?}");
}

#[tokio::test]
async fn shutdown_withdraws_at_once() {
    let Some(url) = redis_url() else { return };
    let prefix = prefix("shutdown");
    let (a, b) = (
        Perfscope::builder().build().unwrap(),
        Perfscope::builder().build().unwrap(),
    );
    let _publisher_a = a.publish_fleet(config(&url, &prefix, "a")).unwrap();
    let publisher_b = b.publish_fleet(config(&url, &prefix, "b")).unwrap();
    publisher_b.publish_now().await.unwrap();
    assert!(has(&a.fleet_snapshot().await.unwrap(), "b"));
    publisher_b.shutdown().await.unwrap();
    assert!(!has(&a.fleet_snapshot().await.unwrap(), "b"));
}

/// Runs as the second process of `two_processes_merge_and_a_killed_one_ages_out`: records B's samples and
/// publishes until killed.
#[tokio::test]
#[ignore = "the child process of two_processes_merge_and_a_killed_one_ages_out"]
async fn child_publisher() {
    let Ok(spec) = std::env::var("PERFSCOPE_FLEET_CHILD") else {
        return;
    };
    let mut parts = spec.splitn(3, '|');
    let (url, prefix, id) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let perf = Perfscope::builder().build().unwrap();
    record_all(&perf, &samples_b(4));
    let publisher = perf.publish_fleet(config(url, prefix, id)).unwrap();
    publisher.publish_now().await.unwrap();
    println!("child publishing as {id}");
    // The parent kills this process; the bound only keeps an orphan from lingering.
    tokio::time::sleep(Duration::from_secs(60)).await;
}

/// Kills the child on every exit path of the test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn two_processes_merge_and_a_killed_one_ages_out() {
    let Some(url) = redis_url() else { return };
    let prefix = prefix("processes");
    let child_id = format!("child-{}", std::process::id());
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "child_publisher",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                "PERFSCOPE_FLEET_CHILD",
                format!("{url}|{prefix}|{child_id}"),
            )
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let perf = Perfscope::builder().build().unwrap();
    let samples_a = samples_a();
    record_all(&perf, &samples_a);
    let publisher = perf.publish_fleet(config(&url, &prefix, "parent")).unwrap();
    publisher.publish_now().await.unwrap();
    let fleet = wait_for(&perf, Duration::from_secs(30), |f| has(f, &child_id)).await;
    assert!(
        has(&fleet, &child_id),
        "the child never published: {fleet:?}"
    );
    let union: Vec<u64> = samples_a.iter().chain(&samples_b(4)).copied().collect();
    assert_union(&fleet, &union);

    // SIGKILL: no withdrawal, no last publish; the entry must expire on its own.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let killed = Instant::now();
    let fleet = wait_for(&perf, 3 * TTL, |f| !has(f, &child_id)).await;
    let gone_after = killed.elapsed();
    println!("killed process gone after {gone_after:?} (ttl {TTL:?})");
    assert!(!has(&fleet, &child_id));
    assert!(gone_after <= TTL + SLACK, "{gone_after:?}");
    assert_eq!(
        fleet
            .routes
            .iter()
            .find(|r| r.route == ROUTE)
            .unwrap()
            .lifetime
            .count,
        3_000
    );
    publisher.shutdown().await.unwrap();
}

fn admin_app(perf: &Perfscope) -> Router {
    app_with_routes(1).layer(perf.layer()).nest(
        "/admin/perf",
        perf.admin_router(AdminAuth::token(TOKEN).unwrap()),
    )
}

fn admin_request(uri: &str) -> Request<axum::body::Body> {
    Request::get(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(axum::body::Body::empty())
        .unwrap()
}

async fn admin_json(app: &Router, uri: &str) -> (StatusCode, serde_json::Value) {
    let (status, headers, body) = send(app, admin_request(uri)).await;
    assert_eq!(headers["content-type"], "application/json");
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn admin_stats_scope_fleet() {
    let perf = Perfscope::builder().build().unwrap();
    let app = admin_app(&perf);
    for _ in 0..3 {
        send(&app, get_request("/r0/1")).await;
    }
    // Not configured: 503 with a message, never a panic.
    let (status, body) = admin_json(&app, "/admin/perf/stats?scope=fleet").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["error"].as_str().unwrap().contains("publish_fleet"),
        "{body}"
    );
    let (status, body) = admin_json(&app, "/admin/perf/stats?scope=everywhere").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("scope=fleet"));
    let (status, _, _) = send(&app, get_request("/admin/perf/stats?scope=fleet")).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "same authentication as /stats"
    );

    // Redis unreachable (a port nobody listens on): 503 within the timeout, requests still served.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let publisher = perf
        .publish_fleet(
            config(&format!("redis://{closed}/"), "unreachable", "a")
                .timeout(Duration::from_millis(300)),
        )
        .unwrap();
    let start = Instant::now();
    let (status, body) = admin_json(&app, "/admin/perf/stats?scope=fleet").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["error"].as_str().unwrap().contains("Redis"), "{body}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(send(&app, get_request("/r0/2")).await.0, StatusCode::OK);
    assert!(publisher.publish_now().await.is_err());
    let stats = publisher.stats();
    assert!(
        stats.publish_failures >= 1 && stats.last_error.is_some(),
        "{stats:?}"
    );
    drop(publisher);

    let Some(url) = redis_url() else { return };
    let publisher = perf
        .publish_fleet(config(&url, &prefix("admin"), "a"))
        .unwrap();
    publisher.publish_now().await.unwrap();
    let (status, body) = admin_json(&app, "/admin/perf/stats?scope=fleet").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["instance_id"], "a");
    assert_eq!(body["instances"][0]["id"], "a");
    assert_eq!(body["instances"][0]["this_instance"], true);
    assert_eq!(body["routes"][0]["route"], "/r0/{id}");
    assert_eq!(body["routes"][0]["lifetime"]["count"], 4);
    // The local scope is unchanged.
    let (status, body) = admin_json(&app, "/admin/perf/stats?scope=local").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["routes"].is_array() && body.get("instances").is_none());
    publisher.shutdown().await.unwrap();
}

#[tokio::test]
async fn foreign_and_corrupt_entries_are_counted_skips() {
    let Some(url) = redis_url() else { return };
    let prefix = prefix("foreign");
    let perf = Perfscope::builder().build().unwrap();
    record_all(&perf, &samples_a());
    let publisher = perf.publish_fleet(config(&url, &prefix, "good")).unwrap();
    publisher.publish_now().await.unwrap();

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let index = format!("{prefix}:instances");
    let entries: [(&str, Vec<u8>); 4] = [
        ("json", b"{\"p99\": 12}".to_vec()),
        ("empty", Vec::new()),
        ("old-format", b"PSFH\x00rest".to_vec()),
        ("truncated", b"PSFH\x01\x00\x00".to_vec()),
    ];
    for (id, bytes) in &entries {
        let key = format!("{prefix}:instance:{id}");
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(bytes)
            .arg("PX")
            .arg(5_000)
            .query_async(&mut connection)
            .await
            .unwrap();
        let _: () = redis::cmd("ZADD")
            .arg(&index)
            .arg(u64::MAX >> 12)
            .arg(id)
            .query_async(&mut connection)
            .await
            .unwrap();
    }
    // A key of the wrong type.
    let _: () = redis::cmd("RPUSH")
        .arg(format!("{prefix}:instance:list"))
        .arg("x")
        .query_async(&mut connection)
        .await
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg(&index)
        .arg(u64::MAX >> 12)
        .arg("list")
        .query_async(&mut connection)
        .await
        .unwrap();

    let fleet = perf.fleet_snapshot().await.unwrap();
    assert_eq!(fleet.instances.len(), 1, "{:?}", fleet.instances);
    assert_eq!(fleet.instances[0].id, "good");
    assert_eq!(fleet.skipped_instances, 5);
    assert_eq!(fleet.stats.skipped_entries, 5);
    assert_eq!(fleet.routes[0].lifetime.count, 3_000);
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}:instance:list"))
        .arg(&index)
        .query_async(&mut connection)
        .await
        .unwrap();
    publisher.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_configuration_is_refused_with_the_setting_named() {
    let perf = Perfscope::builder().build().unwrap();
    let error = perf
        .publish_fleet(FleetConfig::new("not a url"))
        .unwrap_err();
    assert!(matches!(error, FleetError::InvalidUrl { .. }), "{error}");
    let error = perf
        .publish_fleet(FleetConfig::new("redis://127.0.0.1/").ttl(Duration::from_secs(1)))
        .unwrap_err();
    assert!(error.to_string().contains("ttl"), "{error}");
    let error = std::thread::spawn(move || {
        perf.publish_fleet(FleetConfig::new("redis://127.0.0.1/"))
            .unwrap_err()
    })
    .join()
    .unwrap();
    assert!(matches!(error, FleetError::NoRuntime), "{error}");
}
