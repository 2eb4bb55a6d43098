//! One loop, one finding, on real databases: creating an article with six new tags looks each tag up, inserts
//! it, and links it to the article, through sqlx in an axum handler behind `perf.layers()` and the capture
//! layer. The findings hold exactly one entry for the loop, with its three steps and their counts, and a fix
//! written from the statements themselves, which the test then runs on the same database.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use perfscope::query::{DetectConfig, Dialect, FindingKind, QueryConfig, RequestReport};
use perfscope::{HeaderPolicy, Perfscope};

use super::capture::{capture_handle, open_all, postgres_url, temp_db};
use crate::support::{get_request, send};

const TAGS: [&str; 6] = ["rust", "sql", "axum", "tokio", "serde", "tower"];

fn perf(dialect: Dialect) -> Perfscope {
    capture_handle();
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

/// The statements of one database: the article, then per tag its lookup, its insert and its link.
struct Statements {
    article: &'static str,
    find: &'static str,
    insert: &'static str,
    link: &'static str,
}

macro_rules! article_app {
    ($pool:ty, $sql:expr) => {{
        async fn create(State(pool): State<$pool>) -> Result<String, String> {
            let sql: Statements = $sql;
            let error = |e: sqlx::Error| e.to_string();
            let article: i64 = sqlx::query_scalar(sql.article)
                .bind("one-loop")
                .bind("One loop, one finding")
                .fetch_one(&pool)
                .await
                .map_err(error)?;
            for tag in TAGS {
                let found: Option<(i64, String)> = sqlx::query_as(sql.find)
                    .bind(tag)
                    .fetch_optional(&pool)
                    .await
                    .map_err(error)?;
                let id = match found {
                    Some((id, _)) => id,
                    None => {
                        let (id, _): (i64, String) = sqlx::query_as(sql.insert)
                            .bind(tag)
                            .fetch_one(&pool)
                            .await
                            .map_err(error)?;
                        id
                    }
                };
                sqlx::query(sql.link)
                    .bind(article)
                    .bind(id)
                    .execute(&pool)
                    .await
                    .map_err(error)?;
            }
            Ok(article.to_string())
        }
        move |perf: &Perfscope, pool: $pool| -> Router {
            Router::new()
                .route("/api/articles", get(create))
                .with_state(pool)
                .layer(perf.layers())
        }
    }};
}

/// Runs the request and returns its settled report.
async fn create_article(perf: &Perfscope, app: &Router) -> RequestReport {
    let (status, headers, body) = send(app, get_request("/api/articles")).await;
    assert_eq!(status, 200, "{body:?}");
    assert_eq!(headers["x-query-count"], "19");
    let id = headers["x-request-id"].to_str().unwrap();
    perf.request_queries(id).await.expect("settled")
}

/// Exactly one finding: the loop, its three steps with their kinds and counts.
fn the_one_loop(report: &RequestReport, sql: &Statements) -> perfscope::query::Recommendation {
    assert_eq!(report.findings.len(), 1, "{:#?}", report.findings);
    let finding = &report.findings[0];
    assert_eq!(finding.kind, FindingKind::MnPlusOne);
    assert_eq!(finding.count, 6);
    let steps: Vec<(&str, FindingKind, u64)> = finding
        .pattern
        .iter()
        .map(|step| (step.sql.as_str(), step.kind, step.count))
        .collect();
    let normalized = |s: &str| perfscope::query::normalize(s, Dialect::PostgreSql).text;
    let (find, insert, link) = (
        normalized(sql.find),
        normalized(sql.insert),
        normalized(sql.link),
    );
    let kinds: Vec<(FindingKind, u64)> = steps.iter().map(|s| (s.1, s.2)).collect();
    assert_eq!(
        kinds,
        vec![
            (FindingKind::NPlusOne, 6),
            (FindingKind::BatchableWrites, 6),
            (FindingKind::BatchableWrites, 6)
        ],
        "{steps:#?}"
    );
    for (step, statement) in steps.iter().zip([&find, &insert, &link]) {
        assert_eq!(
            step.0.replace('?', "$1").split_whitespace().next(),
            statement.split_whitespace().next()
        );
    }
    let fix = finding.recommendation.clone();
    for text in [&fix.sqlx, &fix.diesel, &fix.sea_orm] {
        // Nothing the statements do not show: no invented type, no invented column.
        for invented in ["i64", "bigint", "Vec<i64>", "$2::text", "quantity"] {
            assert!(!text.contains(invented), "{invented} in {text}");
        }
    }
    fix
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_article_with_tags_is_one_loop_with_a_fix_that_runs() {
    let Some(url) = postgres_url() else {
        return;
    };
    let perf = perf(Dialect::PostgreSql);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .unwrap();
    for ddl in [
        "DROP TABLE IF EXISTS loops_pg_article_tags, loops_pg_tags, loops_pg_articles",
        "CREATE TABLE loops_pg_articles (id BIGSERIAL PRIMARY KEY, slug TEXT NOT NULL, title TEXT NOT NULL)",
        "CREATE TABLE loops_pg_tags (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
        "CREATE TABLE loops_pg_article_tags (article_id BIGINT NOT NULL, tag_id BIGINT NOT NULL, \
         PRIMARY KEY (article_id, tag_id))",
    ] {
        sqlx::query(ddl).execute(&pool).await.unwrap();
    }
    open_all(&pool).await;
    fn statements() -> Statements {
        Statements {
            article: "INSERT INTO loops_pg_articles (slug, title) VALUES ($1, $2) RETURNING id",
            find: "SELECT id, name FROM loops_pg_tags WHERE name = $1",
            insert: "INSERT INTO loops_pg_tags (name) VALUES ($1) RETURNING *",
            link: "INSERT INTO loops_pg_article_tags (article_id, tag_id) VALUES ($1, $2) \
                   ON CONFLICT DO NOTHING",
        }
    }
    let app = article_app!(sqlx::PgPool, statements())(&perf, pool.clone());
    let report = create_article(&perf, &app).await;
    let fix = the_one_loop(&report, &statements());

    let find = "SELECT id, name FROM loops_pg_tags WHERE name = ANY($1)";
    let insert = "INSERT INTO loops_pg_tags(name) SELECT * FROM UNNEST($1) RETURNING *";
    let link = "INSERT INTO loops_pg_article_tags(article_id, tag_id) SELECT * FROM UNNEST($1, $2) \
                ON CONFLICT DO NOTHING";
    for statement in [find, insert, link] {
        assert!(
            fix.sqlx.contains(statement),
            "{statement}\nnot in\n{}",
            fix.sqlx
        );
    }
    assert!(
        fix.sqlx
            .contains("`Vec<_>` of the type of `loops_pg_tags.name`"),
        "{}",
        fix.sqlx
    );
    assert!(
        fix.diesel.contains("loops_pg_tags::name.eq_any"),
        "{}",
        fix.diesel
    );
    assert!(
        fix.diesel.contains(
            "(loops_pg_article_tags::article_id.eq(&row.article_id), loops_pg_article_tags::tag_id.eq(&row.tag_id))"
        ),
        "{}",
        fix.diesel
    );
    assert!(fix.diesel.contains(".on_conflict_do_nothing()"));

    // The fix, as written, on the same tables: three statements instead of eighteen.
    let names: Vec<String> = ["kafka", "redis", "rust"].map(String::from).to_vec();
    let found: Vec<(i64, String)> = sqlx::query_as(find)
        .bind(&names)
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    let missing: Vec<String> = names.iter().filter(|n| *n != "rust").cloned().collect();
    let inserted: Vec<(i64, String)> = sqlx::query_as(insert)
        .bind(&missing)
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(inserted.len(), 2);
    let ids: Vec<i64> = inserted
        .iter()
        .map(|t| t.0)
        .chain(found.iter().map(|t| t.0))
        .collect();
    let linked = sqlx::query(link)
        .bind(vec![1_i64; ids.len()])
        .bind(&ids)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        linked.rows_affected(),
        2,
        "rust was linked by the request already"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_article_with_tags_is_one_loop_with_a_fix_that_runs() {
    let perf = perf(Dialect::Sqlite);
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(2)
        .connect(&temp_db())
        .await
        .unwrap();
    for ddl in [
        "CREATE TABLE loops_lite_articles (id INTEGER PRIMARY KEY, slug TEXT NOT NULL, title TEXT NOT NULL)",
        "CREATE TABLE loops_lite_tags (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
        "CREATE TABLE loops_lite_article_tags (article_id INTEGER NOT NULL, tag_id INTEGER NOT NULL, \
         PRIMARY KEY (article_id, tag_id))",
    ] {
        sqlx::query(ddl).execute(&pool).await.unwrap();
    }
    open_all(&pool).await;
    fn statements() -> Statements {
        Statements {
            article: "INSERT INTO loops_lite_articles (slug, title) VALUES (?, ?) RETURNING id",
            find: "SELECT id, name FROM loops_lite_tags WHERE name = ?",
            insert: "INSERT INTO loops_lite_tags (name) VALUES (?) RETURNING id, name",
            link: "INSERT INTO loops_lite_article_tags (article_id, tag_id) VALUES (?, ?) \
                   ON CONFLICT DO NOTHING",
        }
    }
    let app = article_app!(sqlx::SqlitePool, statements())(&perf, pool.clone());
    let report = create_article(&perf, &app).await;
    let fix = the_one_loop(&report, &statements());
    for postgres_only in ["ANY(", "UNNEST", "$1"] {
        assert!(
            !fix.sqlx.contains(postgres_only),
            "{postgres_only} in {}",
            fix.sqlx
        );
    }
    let json_each =
        "SELECT id, name FROM loops_lite_tags WHERE name IN (SELECT value FROM json_each(?))";
    for expected in [
        "QueryBuilder::new(\"SELECT id, name FROM loops_lite_tags WHERE name IN (\")",
        json_each,
        "QueryBuilder::new(\"INSERT INTO loops_lite_tags(name) \"); q.push_values(&rows, |mut b, row| { b.push_bind(row.name); });",
        "QueryBuilder::new(\"INSERT INTO loops_lite_article_tags(article_id, tag_id) \"); q.push_values(&rows, |mut b, row| { b.push_bind(row.article_id).push_bind(row.tag_id); }); q.push(\" ON CONFLICT DO NOTHING\");",
    ] {
        assert!(
            fix.sqlx.contains(expected),
            "{expected}\nnot in\n{}",
            fix.sqlx
        );
    }

    // The fix, as written, on the same tables.
    let found: Vec<(i64, String)> = sqlx::query_as(json_each)
        .bind(r#"["kafka","rust"]"#)
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    let rows = ["kafka", "redis"];
    let mut q = sqlx::QueryBuilder::new("INSERT INTO loops_lite_tags(name) ");
    q.push_values(rows, |mut b, name| {
        b.push_bind(name);
    });
    q.push(" RETURNING id, name");
    let inserted: Vec<(i64, String)> = q.build_query_as().fetch_all(&pool).await.unwrap();
    assert_eq!(inserted.len(), 2);
    let mut q = sqlx::QueryBuilder::new("SELECT id, name FROM loops_lite_tags WHERE name IN (");
    let mut list = q.separated(", ");
    for name in ["kafka", "redis", "rust"] {
        list.push_bind(name);
    }
    list.push_unseparated(")");
    let all: Vec<(i64, String)> = q.build_query_as().fetch_all(&pool).await.unwrap();
    assert_eq!(all.len(), 3);
}
