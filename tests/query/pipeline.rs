//! The whole pipeline through the manual API: requests settle into findings and statistics, literals never
//! reach an export, and a request's memory stays bounded.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use perfscope::query::{DetectConfig, Dialect, FindingKind, QueryConfig, QueryRecorder};
use perfscope::{HeaderPolicy, MethodLabel, Perfscope, RequestContext, RequestId};

use crate::support::canary::canary_corpus;
use crate::support::{get_request, send};

fn perf_with(dialect: Dialect) -> Perfscope {
    Perfscope::builder()
        .timing_headers(HeaderPolicy::Always)
        .query(
            QueryConfig::default()
                .dialect(dialect)
                .detect(DetectConfig::development()),
        )
        .build()
        .unwrap()
}

/// A request context made by hand, settled when the last clone is dropped.
fn context(route: &str) -> RequestContext {
    let context = RequestContext::new(
        RequestId::generate(1_700_000_000_000),
        MethodLabel::of(&http::Method::GET),
        tokio::time::Instant::now(),
        1_700_000_000_000,
    );
    context.set_route(route.into());
    context
}

/// Runs the quotations page the N+1 way: the list, then per row its customer and its lines.
fn quotations_n_plus_one(recorder: &QueryRecorder, context: &RequestContext) {
    let ms = Duration::from_millis(1);
    recorder.record_in(
        context,
        "SELECT id, number, customer_id FROM quotations ORDER BY id DESC LIMIT 20 OFFSET 0",
        ms,
        Some(20),
    );
    for id in 1..=20 {
        recorder.record_in(
            context,
            &format!("SELECT id, name FROM customers WHERE id = {id}"),
            ms,
            Some(1),
        );
        recorder.record_in(
            context,
            &format!("SELECT product_id, quantity FROM quotation_lines WHERE quotation_id = {id}"),
            ms,
            Some(5),
        );
    }
}

/// An app whose `GET /api/quotations` runs the N+1 page through the manual API, inside both layers.
fn quotations_app(perf: &Perfscope) -> Router {
    let recorder = perf.query_recorder();
    Router::new()
        .route(
            "/api/quotations",
            get(move || {
                let recorder = recorder.clone();
                async move {
                    let ctx = RequestContext::current().unwrap();
                    quotations_n_plus_one(&recorder, &ctx);
                    "[]"
                }
            }),
        )
        .layer(perf.query_layer())
        .layer(perf.layer())
        .with_state(())
}

async fn settled(perf: &Perfscope, context: RequestContext) -> perfscope::query::RequestReport {
    let id = context.request_id().as_str().to_owned();
    drop(context);
    perf.request_queries(&id).await.expect("settled")
}

#[tokio::test]
async fn the_quotations_n_plus_one_is_found_with_high_confidence() {
    let perf = perf_with(Dialect::Sqlite);
    let recorder = perf.query_recorder();
    let ctx = context("/api/quotations");
    quotations_n_plus_one(&recorder, &ctx);
    let report = settled(&perf, ctx).await;
    assert_eq!(report.count, 41);
    let n_plus_one: Vec<_> = report.n_plus_one().collect();
    assert!(!n_plus_one.is_empty(), "{:#?}", report.findings);
    assert!(
        n_plus_one
            .iter()
            .any(|f| f.confidence == perfscope::query::Confidence::High),
        "{n_plus_one:#?}"
    );
    let finding = n_plus_one[0];
    // Two lookups per quotation: one loop, with its two steps.
    assert_eq!(n_plus_one.len(), 1, "{n_plus_one:#?}");
    assert_eq!(finding.kind, FindingKind::MnPlusOne);
    assert_eq!((finding.count, finding.pattern.len()), (20, 2));
    assert_eq!(finding.route, "/api/quotations");
    assert!(!finding.recommendation.sqlx.is_empty());
    assert!(!finding.recommendation.diesel.is_empty());
    assert!(!finding.recommendation.sea_orm.is_empty());
    let listed = perf.snapshot().queries.findings;
    assert!(
        listed
            .iter()
            .any(|f| f.finding.kind == FindingKind::MnPlusOne)
    );
}

#[tokio::test]
async fn ordinary_repeats_are_not_n_plus_one() {
    let perf = perf_with(Dialect::PostgreSql);
    let recorder = perf.query_recorder();
    let ms = Duration::from_millis(30);
    let cases: [(&str, Vec<String>); 4] = [
        (
            "transaction",
            (0..10)
                .flat_map(|_| ["BEGIN".to_owned(), "COMMIT".to_owned()])
                .collect(),
        ),
        ("health check", vec!["SELECT 1".to_owned(); 10]),
        (
            "below the threshold",
            std::iter::once("SELECT id FROM orders LIMIT 10".to_owned())
                .chain((1..=2).map(|i| format!("SELECT * FROM lines WHERE order_id = {i}")))
                .collect(),
        ),
        (
            "different statements",
            (0..10)
                .map(|i| {
                    format!(
                        "SELECT c{i} FROM table_{} WHERE k = {i}",
                        ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"][i]
                    )
                })
                .collect(),
        ),
    ];
    for (name, statements) in cases {
        let ctx = context("/case");
        for sql in &statements {
            recorder.record_in(&ctx, sql, ms, Some(1));
        }
        let report = settled(&perf, ctx).await;
        assert_eq!(report.count, statements.len() as u64, "{name}");
        assert_eq!(
            report.n_plus_one().count(),
            0,
            "{name}: {:#?}",
            report.findings
        );
    }
}

#[tokio::test]
async fn a_million_queries_keep_the_request_log_bounded_and_still_report_the_n_plus_one() {
    let perf = perf_with(Dialect::Sqlite);
    let recorder = perf.query_recorder();
    let ctx = context("/api/flood");
    let statements: Vec<String> = (0..10)
        .map(|i| format!("SELECT v{i} FROM flood_{i} WHERE id = $1"))
        .collect();
    recorder.record_in(
        &ctx,
        "SELECT id FROM flood_list LIMIT 100000",
        Duration::from_micros(5),
        Some(100_000),
    );
    // Warm the memo, so the measurement sees only the request's own log.
    for sql in &statements {
        recorder.record_in(&ctx, sql, Duration::from_micros(5), Some(1));
    }
    let before = crate::alloc::live_bytes();
    for i in 0..1_000_000 - 11 {
        recorder.record_in(&ctx, &statements[i % 10], Duration::from_micros(5), Some(1));
    }
    let grown = crate::alloc::live_bytes() - before;
    assert!(
        grown < 256 * 1024,
        "the request's log grew by {grown} bytes"
    );
    let report = settled(&perf, ctx).await;
    assert_eq!(report.count, 1_000_000);
    assert!(report.records_dropped > 0);
    assert!(report.n_plus_one().count() > 0, "{:#?}", report.findings);
    println!("1,000,000 queries: the request's log grew by {grown} bytes");
}

/// Every statement of the canary corpus runs five times in a request (so that findings quote it) under each
/// dialect; no planted literal may appear in the JSON snapshot, the Prometheus text, the admin endpoint or the
/// findings.
#[tokio::test]
async fn no_literal_reaches_any_export() {
    let corpus = canary_corpus();
    assert!(corpus.len() >= 500, "{}", corpus.len());
    for dialect in [
        Dialect::PostgreSql,
        Dialect::MySql,
        Dialect::Sqlite,
        Dialect::Generic,
        Dialect::TSql,
    ] {
        let perf = perf_with(dialect);
        // `Debug` of every public type that holds a statement or its tags.
        let mut debug = String::new();
        let recorder = perf.query_recorder();
        let statements: Vec<(String, Vec<String>)> = corpus
            .iter()
            .filter(|(d, _, _)| *d == dialect)
            .map(|(_, sql, canaries)| (sql.clone(), canaries.clone()))
            .collect();
        let canaries: Vec<String> = statements.iter().flat_map(|(_, c)| c.clone()).collect();
        for (sql, _) in &statements {
            let ctx = context("/api/canary/{id}");
            recorder.record_in(
                &ctx,
                "SELECT id FROM parents LIMIT 50",
                Duration::from_millis(1),
                Some(50),
            );
            for _ in 0..5 {
                recorder.record_in(&ctx, sql, Duration::from_millis(150), Some(2000));
            }
            let builder = recorder
                .query(sql)
                .dialect(dialect)
                .duration(Duration::from_millis(1));
            debug.push_str(&format!("{builder:?}"));
            builder.record_in(&ctx);
            let timer = ctx.clone().scope(async { recorder.time(sql) }).await;
            debug.push_str(&format!("{timer:?} {recorder:?}"));
            drop(timer);
            let id = ctx.request_id().as_str().to_owned();
            drop(ctx);
            let report = perf.request_queries_now(&id).expect("settled when dropped");
            let violation = perfscope::query::QueryBudget::at_most(1)
                .no_n_plus_one()
                .no_duplicates()
                .check(&report);
            debug.push_str(&format!("{report:?} {violation:?}"));
            if let Err(violation) = violation {
                debug.push_str(&violation.to_string());
            }
        }
        debug.push_str(&format!("{:?}", perf.snapshot()));
        let admin: Router = Router::new()
            .nest(
                "/admin/perf",
                perf.admin_router(perfscope::AdminAuth::token("canary-admin-token-1234").unwrap()),
            )
            .with_state(());
        let request = http::Request::get("/admin/perf/queries")
            .header("authorization", "Bearer canary-admin-token-1234")
            .body(axum::body::Body::empty())
            .unwrap();
        let (status, _, queries) = send(&admin, request).await;
        assert_eq!(status, 200);
        let outputs = [
            ("json", perf.json()),
            ("prometheus", perf.prometheus()),
            ("admin", String::from_utf8(queries.to_vec()).unwrap()),
            (
                "findings",
                format!("{:?}", perf.snapshot().queries.findings),
            ),
            ("debug", debug),
        ];
        assert!(
            perf.snapshot().queries.findings.len() > 10,
            "the corpus produced findings that quote statements"
        );
        for (name, text) in &outputs {
            for canary in &canaries {
                assert!(
                    !text.contains(canary.as_str()),
                    "{dialect:?}: canary {canary} leaked into the {name} output"
                );
            }
        }
    }
}

#[tokio::test]
async fn query_statistics_reach_the_snapshot_and_prometheus() {
    let perf = perf_with(Dialect::Sqlite);
    let app = quotations_app(&perf);
    for _ in 0..3 {
        let (_, headers, _) = send(&app, get_request("/api/quotations")).await;
        assert_eq!(headers["x-query-count"], "41");
        assert!(
            headers["server-timing"]
                .to_str()
                .unwrap()
                .contains("db;dur=41.0")
        );
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let snapshot = perf.snapshot();
    let route = &snapshot.queries.routes[0];
    assert_eq!((route.requests, route.queries), (3, 123));
    assert_eq!(route.queries_per_request.max, 41);
    assert_eq!(route.n_plus_one_requests, 3);
    assert!(route.top_fingerprints.len() >= 3);
    let text = perf.prometheus();
    assert!(text.contains(
        "perfscope_db_queries_total{http_request_method=\"GET\",http_route=\"/api/quotations\"} 123"
    ));
    let statements = perf.route_statements("GET", "/api/quotations");
    assert_eq!(statements.len(), 3, "{statements:?}");
}

/// The analysis runs once the request is over: while the response body is still unread, the request is not
/// settled; once it has been read, it is.
#[tokio::test]
async fn analysis_waits_until_the_response_is_done() {
    use tower::ServiceExt;

    let perf = perf_with(Dialect::Sqlite);
    let app = quotations_app(&perf);
    let response = app.oneshot(get_request("/api/quotations")).await.unwrap();
    assert_eq!(response.headers()["x-query-count"], "41");
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        perf.last_request_queries("GET", "/api/quotations")
            .is_none()
    );
    assert_eq!(perf.snapshot().queries.requests, 0);
    drop(
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap(),
    );
    let report = perf
        .request_queries(&id)
        .await
        .expect("settled after the body");
    assert_eq!(report.count, 41);
    assert!(report.n_plus_one().count() > 0);
}

#[tokio::test]
async fn a_request_that_runs_no_query_counts_on_its_route_and_reports_zero() {
    let perf = perf_with(Dialect::Sqlite);
    let app = Router::new()
        .route("/api/health-summary", get(|| async { "ok" }))
        .layer(perf.query_layer())
        .layer(perf.layer())
        .with_state(());
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, headers, _) = send(&app, get_request("/api/health-summary")).await;
        assert_eq!(headers.get("x-query-count").unwrap(), "0");
        ids.push(
            headers
                .get("x-request-id")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    for id in &ids {
        let report = perf.request_queries(id).await.expect("settled");
        assert_eq!(
            (report.count, report.route.as_str(), report.method.as_str()),
            (0, "/api/health-summary", "GET")
        );
        assert!(report.fingerprints.is_empty() && report.findings.is_empty());
    }
    let snapshot = perf.snapshot();
    let route = snapshot
        .queries
        .routes
        .iter()
        .find(|r| r.route == "/api/health-summary")
        .expect("the route is in the query statistics");
    assert_eq!((route.requests, route.queries), (3, 0));
}

/// In production's profile a loop that is fast today (20 lookups, 0.3 ms in all) is still listed, as `info`,
/// with its count; the snapshot says which profile and thresholds are in force.
#[tokio::test]
async fn production_lists_a_fast_loop_and_the_snapshot_names_the_profile() {
    let perf = Perfscope::builder()
        .query(
            QueryConfig::default()
                .dialect(Dialect::Sqlite)
                .detect(DetectConfig::production()),
        )
        .build()
        .unwrap();
    let recorder = perf.query_recorder();
    let ctx = context("/api/products/lookups");
    recorder.record_in(
        &ctx,
        "SELECT id FROM products ORDER BY id LIMIT 20",
        Duration::from_micros(15),
        Some(20),
    );
    for id in 1..=20 {
        recorder.record_in(
            &ctx,
            &format!("SELECT name FROM products WHERE id = {id}"),
            Duration::from_micros(15),
            Some(1),
        );
    }
    let report = settled(&perf, ctx).await;
    let loops: Vec<_> = report.n_plus_one().collect();
    assert_eq!(loops.len(), 1, "{:#?}", report.findings);
    assert_eq!(loops[0].count, 20);
    assert_eq!(loops[0].severity, perfscope::query::Severity::Info);

    let snapshot = perf.snapshot();
    let detection = &snapshot.queries.detection;
    assert_eq!(
        detection.profile,
        perfscope::query::DetectProfile::Production
    );
    assert_eq!(detection.n_plus_one_min_repeats, 5);
    assert_eq!(detection.n_plus_one_warning_ms, 20.0);
    let json = perfscope::export::json(&snapshot);
    assert!(json.contains(r#""profile":"production""#), "{json}");
    assert!(
        json.contains(&format!(
            r#""build":"{}""#,
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
        )),
        "{json}"
    );
}

/// The first layer made logs, once, the build and the thresholds in force.
#[test]
fn the_first_layer_logs_the_settings_in_force_once() {
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::{Context, SubscriberExt};

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<String>>>);
    struct Message<'a>(&'a mut String);
    impl tracing::field::Visit for Message<'_> {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                *self.0 = format!("{value:?}");
            }
        }
    }
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Lines {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            if event.metadata().target() == "perfscope" {
                let mut line = String::new();
                event.record(&mut Message(&mut line));
                self.0.lock().unwrap().push(line);
            }
        }
    }

    let lines = Lines::default();
    let subscriber = tracing_subscriber::registry().with(lines.clone());
    let perf = Perfscope::builder()
        .query(QueryConfig::default().detect(DetectConfig::production()))
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        let _ = perf.layers();
        let _ = perf.layer();
        let _ = perf.query_layer();
    });
    let lines = lines.0.lock().unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    assert!(lines[0].contains(&format!("{build} build")), "{}", lines[0]);
    assert!(lines[0].contains("profile production"), "{}", lines[0]);
    assert!(lines[0].contains("N+1 from 5 repeats"), "{}", lines[0]);
}

/// Every field name of the JSON snapshot, with routes, a cache, queries and findings in it, is documented in
/// `docs/schema.md`.
#[tokio::test]
async fn every_json_field_is_documented_in_the_schema() {
    use perfscope::cache::{Cache, CacheKey};

    let perf = Perfscope::builder()
        .timing_headers(HeaderPolicy::Always)
        .slow_threshold(Duration::ZERO)
        .query(
            QueryConfig::default()
                .dialect(Dialect::Sqlite)
                .detect(DetectConfig::development()),
        )
        .build()
        .unwrap();
    let products: Cache<CacheKey, u64> = Cache::builder().name("products").build().unwrap();
    perf.register_cache(products.handle());
    products
        .get_or_compute(&CacheKey::new("product").part(1), || async { 1 })
        .await
        .unwrap();
    let _ = products.get(&CacheKey::new("product").part(1));
    let app = quotations_app(&perf);
    for _ in 0..2 {
        send(&app, get_request("/api/quotations")).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let json: serde_json::Value =
        serde_json::from_str(&perfscope::export::json(&perf.snapshot())).unwrap();

    // Keys of maps (status codes, skip reasons) are data, not fields.
    const MAPS: [&str; 3] = ["statuses", "skipped", "quotations_by_status"];
    fn collect(value: &serde_json::Value, keys: &mut std::collections::BTreeSet<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    keys.insert(key.clone());
                    if !MAPS.contains(&key.as_str()) {
                        collect(value, keys);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| collect(item, keys)),
            _ => {}
        }
    }
    let mut keys = std::collections::BTreeSet::new();
    collect(&json, &mut keys);
    assert!(
        keys.contains("findings") && keys.contains("namespaces"),
        "{keys:?}"
    );
    let schema =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/schema.md")).unwrap();
    let missing: Vec<&String> = keys
        .iter()
        .filter(|key| !schema.contains(&format!("`{key}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "fields missing from docs/schema.md: {missing:?}"
    );
}
