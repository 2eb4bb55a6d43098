#![allow(clippy::unwrap_used)]
#![cfg(all(feature = "monitor", feature = "axum"))]
//! The Prometheus export of a real monitor, driven through axum with hostile route templates and checked by
//! `promtool check metrics` (Debian package `prometheus`; `PROMTOOL` overrides the binary).
//!
//! A request URI cannot hold a raw line feed, space, `#`, `<` or `>`, and axum matches the path still
//! percent-encoded, so templates with those characters can be registered but never hit; the unit proptest in
//! `src/export/prometheus.rs` covers arbitrary label strings instead.

#[allow(dead_code, unreachable_pub)]
#[path = "support/promtool.rs"]
mod promtool;
use promtool::promtool_check;

use std::collections::BTreeSet;

use axum::Router;
use axum::body::Body;
use axum::extract::MatchedPath;
use axum::routing::{any, get};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use perfscope::{Perfscope, Snapshot};
use tower::ServiceExt;

/// Route templates that break naive exporters, with a request URI axum matches to each. `MatchedPath` (and so
/// the label) is the template as registered, `{{`/`}}` escapes included.
const HOSTILE: &[(&str, &str)] = &[
    ("/a\\\"b", "/a\\\"b"),
    ("/back\\\\slash", "/back\\\\slash"),
    ("/quote\"x", "/quote\"x"),
    ("/new%0Aline", "/new%0Aline"),
    (
        "/inj\",http_route=\"evil\"}}",
        "/inj\",http_route=\"evil\"}",
    ),
    ("/close\"}}", "/close\"}"),
    ("/brace{{x}}/{id}", "/brace{x}/7"),
    ("/emoji/😀", "/emoji/😀"),
    ("/pipe|caret^tick'", "/pipe|caret^tick'"),
];

/// Metric families and unlabelled (process-wide) samples of the exposition, as listed in `docs/schema.md`.
const FAMILIES: usize = 14;
const GLOBAL_SAMPLES: usize = 8;

async fn matched_path(path: MatchedPath) -> String {
    path.as_str().to_owned()
}

/// Sends `request` and reads the whole body (the monitor records a request when its body ends).
async fn send(app: &Router, request: Request<Body>) -> (StatusCode, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn get_request(uri: &str) -> Request<Body> {
    Request::builder().uri(uri).body(Body::empty()).unwrap()
}

/// One sample line: its metric name and labels (unescaped).
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
}

impl Sample {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses `name{k="v",...} value` strictly; `None` if the line is anything else.
fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(mut r) = rest.strip_prefix('{') {
        loop {
            let (key, after) = r.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next()?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        _ => return None,
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.push((key.to_owned(), value));
            r = &after[end + 1..];
            if let Some(next) = r.strip_prefix(',') {
                r = next;
            } else {
                rest = r.strip_prefix('}')?;
                break;
            }
        }
    }
    let value = rest.strip_prefix(' ')?;
    let numeric = matches!(value, "+Inf" | "-Inf" | "NaN") || value.parse::<f64>().is_ok();
    let valid_name =
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (numeric && valid_name).then(|| Sample {
        name: name.to_owned(),
        labels,
    })
}

/// Checks the line structure of `text` against `snapshot` and returns its samples.
fn check_lines(text: &str, snapshot: &Snapshot) -> Vec<Sample> {
    let mut comments = 0;
    let mut samples = Vec::new();
    for line in text.strip_suffix('\n').unwrap().split('\n') {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            comments += 1;
        } else {
            samples.push(parse_sample(line).unwrap_or_else(|| panic!("malformed line {line:?}")));
        }
    }
    let summary = |count: u64| if count > 0 { 7 } else { 0 };
    // `process_resident_memory_bytes` where the resident memory is known (Linux).
    // `process_open_fds` and `process_max_fds`, where they are known (Linux) too.
    let memory = usize::from(snapshot.process.resident_memory_bytes.is_some())
        + usize::from(snapshot.process.open_fds.is_some())
        + usize::from(snapshot.process.max_fds.is_some());
    let expected: usize = GLOBAL_SAMPLES
        + memory
        + snapshot
            .routes
            .iter()
            .map(|r| {
                (r.buckets.len() + 3)
                    + 1
                    + r.statuses.len()
                    + 7
                    + summary(r.time_to_headers.count)
                    + summary(r.streams.count)
            })
            .sum::<usize>();
    assert_eq!(comments, (FAMILIES + memory) * 2, "HELP/TYPE lines");
    assert_eq!(
        samples.len(),
        expected,
        "sample lines (an injected line changes this)"
    );
    samples
}

#[tokio::test]
async fn hostile_route_templates_pass_promtool() {
    let perf = Perfscope::builder().max_routes(64).build().unwrap();
    let mut app = Router::new();
    for (template, _) in HOSTILE {
        app = app.route(template, any(matched_path));
    }
    // axum registers a template with a raw line feed, but no request can reach it.
    app = app.route("/raw\nline", get(matched_path));
    let app = app.layer(perf.layer());

    let mut templates = BTreeSet::new();
    for (template, uri) in HOSTILE {
        let (status, matched) = send(&app, get_request(uri)).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(&matched, template, "{uri}");
        templates.insert(matched);
    }
    // An extension method on a hostile route, and a hostile unmatched path.
    let purge = Request::builder()
        .method(Method::from_bytes(b"PURGE").unwrap())
        .uri(HOSTILE[0].1);
    let (status, _) = send(&app, purge.body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(&app, get_request("/nope\"%0A%22\\{x}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let snapshot = perf.snapshot();
    let text = perfscope::export::prometheus(&snapshot);
    promtool_check(&text);
    let samples = check_lines(&text, &snapshot);

    // Every route label gives back a template (or a reserved label), never a raw path or a raw method.
    let routes: BTreeSet<&str> = samples
        .iter()
        .filter_map(|s| s.label("http_route"))
        .collect();
    let methods: BTreeSet<&str> = samples
        .iter()
        .filter_map(|s| s.label("http_request_method"))
        .collect();
    for template in &templates {
        assert!(
            routes.contains(template.as_str()),
            "{template:?} missing from {routes:?}"
        );
    }
    for route in &routes {
        let reserved = matches!(*route, "<unmatched>" | "<overflow>");
        assert!(
            templates.contains(*route) || reserved,
            "unexpected route label {route:?}"
        );
    }
    assert!(routes.contains("<unmatched>"), "{routes:?}");
    assert!(
        methods.contains("_OTHER") && !methods.contains("PURGE"),
        "{methods:?}"
    );
    assert!(!text.contains("nope"), "raw path leaked");
    for sample in &samples {
        if let Some(route) = sample.label("http_route") {
            assert_eq!(sample.labels[0].0, "http_request_method", "{}", sample.name);
            assert_eq!(sample.labels[1].0, "http_route", "{}", sample.name);
            assert!(
                sample.labels.len() <= 3,
                "{} {route:?}: {:?}",
                sample.name,
                sample.labels
            );
        }
    }
    let hits: usize = samples
        .iter()
        .filter(|s| {
            s.name == "perfscope_http_server_outcomes_total" && s.label("outcome") == Some("ok")
        })
        .filter(|s| s.label("http_route") == Some(HOSTILE[0].0))
        .count();
    assert_eq!(
        hits, 2,
        "one GET and one _OTHER series for {:?}",
        HOSTILE[0].0
    );
}

#[tokio::test]
async fn overflow_routes_pass_promtool() {
    let perf = Perfscope::builder().max_routes(2).build().unwrap();
    let mut app = Router::new();
    for (template, _) in HOSTILE {
        app = app.route(template, get(matched_path));
    }
    let app = app.layer(perf.layer());
    for (_, uri) in HOSTILE {
        let (status, _) = send(&app, get_request(uri)).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
    }

    let snapshot = perf.snapshot();
    let text = perfscope::export::prometheus(&snapshot);
    promtool_check(&text);
    let samples = check_lines(&text, &snapshot);

    let overflowed = (HOSTILE.len() - 2) as u64;
    assert_eq!(snapshot.overflow.route_overflow_requests, overflowed);
    assert!(
        text.contains(&format!(
            "\nperfscope_route_overflow_requests_total {overflowed}\n"
        )),
        "{text}"
    );
    let routes: BTreeSet<&str> = samples
        .iter()
        .filter_map(|s| s.label("http_route"))
        .collect();
    assert!(routes.contains("<overflow>"), "{routes:?}");
    let templates: BTreeSet<&str> = routes.into_iter().filter(|r| !r.starts_with('<')).collect();
    assert_eq!(
        templates,
        BTreeSet::from([HOSTILE[0].0, HOSTILE[1].0]),
        "the first two templates seen"
    );
}

#[tokio::test]
async fn idle_monitor_passes_promtool() {
    let perf = Perfscope::builder().build().unwrap();
    let snapshot = perf.snapshot();
    let text = perfscope::export::prometheus(&snapshot);
    promtool_check(&text);
    check_lines(&text, &snapshot);
    assert!(text.contains("# TYPE http_server_request_duration_seconds histogram\n"));
    assert!(text.contains("\nperfscope_http_server_requests_total 0\n"));
}

#[cfg(feature = "cache")]
#[tokio::test]
async fn cache_families_with_hostile_names_pass_promtool() {
    use perfscope::cache::{Cache, CacheKey};

    let perf = Perfscope::builder().build().unwrap();
    // Cache names are checked at build time; key namespaces come from application data and may be anything.
    for name in ["products", "orders-v2"] {
        let cache: Cache<CacheKey, u64> = Cache::builder().name(name).build().unwrap();
        cache.insert(CacheKey::new("a\"b\nc").part(1), 1);
        assert!(cache.get(&CacheKey::new("a\"b\nc").part(1)).is_some());
        assert!(cache.get(&CacheKey::new("other").part(2)).is_none());
        let loaded = cache
            .get_or_compute(&CacheKey::new("load").part(3), || async { 3 })
            .await;
        assert_eq!(loaded.unwrap(), 3);
        perf.register_cache(cache.handle());
    }
    let text = perf.prometheus();
    promtool_check(&text);
    assert!(text.contains("perfscope_cache_lookups_total{cache=\"orders-v2\",result=\"hit\"} 1"));
    assert!(
        text.contains("namespace=\"a\\\"b\\nc\",result=\"hit\"} 1"),
        "{text}"
    );
    assert!(text.contains("# TYPE perfscope_cache_load_duration_seconds histogram\n"));
}

#[cfg(feature = "query")]
#[tokio::test]
async fn query_families_with_hostile_routes_pass_promtool() {
    let perf = Perfscope::builder().build().unwrap();
    let recorder = perf.query_recorder();
    let mut app = Router::new();
    for (template, _) in HOSTILE {
        let recorder = recorder.clone();
        app = app.route(
            template,
            any(move || {
                let recorder = recorder.clone();
                async move {
                    for id in 0..5 {
                        recorder.record(
                            &format!("SELECT name FROM t WHERE id = {id}"),
                            std::time::Duration::from_micros(300),
                            Some(1),
                        );
                    }
                    "ok"
                }
            }),
        );
    }
    let app = app.layer(perf.query_layer()).layer(perf.layer());
    for (_, uri) in HOSTILE {
        let (status, _) = send(&app, get_request(uri)).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
    }
    // Requests settle once their context is gone; the body has been read, so that is now or very soon.
    for _ in 0..100 {
        if perf.snapshot().queries.requests == HOSTILE.len() as u64 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let text = perf.prometheus();
    promtool_check(&text);
    assert!(text.contains("# TYPE perfscope_db_queries_per_request summary\n"));
    assert_eq!(
        text.matches("\nperfscope_db_queries_total{").count(),
        HOSTILE.len(),
        "{text}"
    );
}
