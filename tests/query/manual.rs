//! The manual API (issue 12, item 8): a query described with its start, duration, rows, call site and dialect,
//! and a finished request's report read synchronously once its context is dropped (no runtime).

use std::time::Duration;

use perfscope::query::{DetectConfig, Dialect, FindingKind, QueryConfig, RequestReport};
use perfscope::{MethodLabel, Perfscope, RequestContext, RequestId};

const LOOKUP: &str = "SELECT name FROM users WHERE id = $1";

fn perf() -> Perfscope {
    Perfscope::builder()
        .query(
            QueryConfig::default()
                .dialect(Dialect::PostgreSql)
                .detect(DetectConfig::development()),
        )
        .build()
        .unwrap()
}

fn context() -> RequestContext {
    let context = RequestContext::new(
        RequestId::generate(1_700_000_000_000),
        MethodLabel::of(&http::Method::GET),
        tokio::time::Instant::now(),
        1_700_000_000_000,
    );
    context.set_route("/manual".into());
    context
}

/// Runs `record` against a fresh request, drops the request, and reads its report at once.
fn settled(perf: &Perfscope, record: impl FnOnce(&RequestContext)) -> RequestReport {
    let context = context();
    let id = context.request_id().as_str().to_owned();
    record(&context);
    assert!(
        perf.request_queries_now(&id).is_none(),
        "not settled while its context lives"
    );
    drop(context);
    perf.request_queries_now(&id)
        .expect("settled as soon as its last context is dropped")
}

/// No tokio runtime anywhere: the report is read synchronously.
#[test]
fn a_report_is_there_as_soon_as_the_context_is_dropped() {
    let perf = perf();
    let recorder = perf.query_recorder();
    let report = settled(&perf, |ctx| {
        recorder
            .query("UPDATE users SET name = $1 WHERE id = $2")
            .duration(Duration::from_millis(2))
            .rows_affected(1)
            .record_in(ctx);
        // The existing methods still work beside the builder.
        recorder.record_in(ctx, LOOKUP, Duration::from_millis(1), Some(1));
    });
    assert_eq!(report.count, 2);
    assert_eq!(report.route, "/manual");
    assert!(
        (report.db_time_ms - 3.0).abs() < 1e-9,
        "{}",
        report.db_time_ms
    );
    assert!(perf.request_queries_now("no-such-request").is_none());
}

#[test]
fn repeats_from_one_site_are_a_loop_from_several_sites_are_not() {
    let perf = perf();
    let recorder = perf.query_recorder();
    let record = |ctx: &RequestContext, site: u64, i: u64| {
        recorder
            .query(LOOKUP)
            .started_at(Duration::from_micros(100 * i))
            .duration(Duration::from_micros(80))
            .rows_returned(1)
            .site(site)
            .record_in(ctx);
    };
    let one_site = settled(&perf, |ctx| (0..4).for_each(|i| record(ctx, 7, i)));
    let finding = one_site
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::NPlusOne)
        .unwrap_or_else(|| panic!("{:?}", one_site.findings));
    assert_eq!((finding.count, finding.site), (4, Some(7)));

    let four_sites = settled(&perf, |ctx| (0..4).for_each(|i| record(ctx, 100 + i, i)));
    assert!(
        four_sites.findings.iter().all(|f| !f.kind.is_loop()),
        "{:?}",
        four_sites.findings
    );

    // `site_here` tells two call sites in the code apart, and one call site in a loop is one site.
    let here = settled(&perf, |ctx| {
        for _ in 0..4 {
            recorder
                .query(LOOKUP)
                .duration(Duration::from_micros(80))
                .site_here()
                .record_in(ctx);
        }
    });
    assert!(
        here.findings
            .iter()
            .any(|f| f.kind == FindingKind::NPlusOne),
        "{:?}",
        here.findings
    );
    let apart = settled(&perf, |ctx| {
        recorder
            .query(LOOKUP)
            .duration(Duration::from_micros(80))
            .site_here()
            .record_in(ctx);
        recorder
            .query(LOOKUP)
            .duration(Duration::from_micros(80))
            .site_here()
            .record_in(ctx);
        recorder
            .query(LOOKUP)
            .duration(Duration::from_micros(80))
            .site_here()
            .record_in(ctx);
    });
    assert!(
        apart.findings.iter().all(|f| !f.kind.is_loop()),
        "{:?}",
        apart.findings
    );
}

/// The start offset is used: the same repeats spread out with long waits between are a poll, not a loop.
#[test]
fn start_offsets_tell_a_poll_from_a_loop() {
    let perf = perf();
    let recorder = perf.query_recorder();
    let status = "SELECT state FROM jobs WHERE id = $1";
    let run = |gap: Duration| {
        settled(&perf, |ctx| {
            for i in 0..5 {
                recorder
                    .query(status)
                    .started_at(gap * i)
                    .duration(Duration::from_micros(200))
                    .rows_returned(1)
                    .record_in(ctx);
            }
        })
    };
    let back_to_back = run(Duration::from_micros(200));
    assert!(
        back_to_back
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::NPlusOne)
    );
    let polled = run(Duration::from_millis(500));
    assert!(
        polled.findings.iter().all(|f| !f.kind.is_loop()),
        "{:?}",
        polled.findings
    );
}

/// One application, two databases: a per-record dialect reads a SQL Server statement as T-SQL while the
/// configured dialect stays PostgreSQL.
#[test]
fn a_record_can_carry_its_own_dialect() {
    let perf = perf();
    let recorder = perf.query_recorder();
    let tsql = "SELECT TOP 5 [Name] FROM #recent WHERE [Id] = @P1 AND [Note] = N'x'";
    let report = settled(&perf, |ctx| {
        recorder
            .query(tsql)
            .dialect(Dialect::TSql)
            .duration(Duration::from_millis(1))
            .rows_returned(5)
            .record_in(ctx);
        recorder
            .query(LOOKUP)
            .duration(Duration::from_millis(1))
            .record_in(ctx);
    });
    let sql: Vec<&str> = report
        .fingerprints
        .iter()
        .filter_map(|f| f.sql.as_deref())
        .collect();
    assert_eq!(
        sql,
        [
            "SELECT TOP (?) name FROM #recent WHERE id = ? AND note = ?",
            "SELECT name FROM users WHERE id = $1"
        ]
    );
}

/// Outside a request the builder's query counts as unattributed, as `record` does.
#[test]
fn outside_a_request_it_is_unattributed() {
    let perf = perf();
    perf.query_recorder()
        .query(LOOKUP)
        .duration(Duration::from_millis(1))
        .record();
    assert_eq!(perf.snapshot().queries.unattributed_queries, 1);
}
