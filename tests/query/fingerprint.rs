//! The fingerprint normalizer: the tricky inputs (one test per case), properties, and the literal canary.

use perfscope::query::model::MAX_NORMALIZED_LEN;
use perfscope::query::{Dialect, enrich, normalize};
use proptest::prelude::*;

use crate::support::canary::canary_corpus;

const DIALECTS: [Dialect; 5] = [
    Dialect::Generic,
    Dialect::PostgreSql,
    Dialect::MySql,
    Dialect::Sqlite,
    Dialect::TSql,
];

fn pg(sql: &str) -> String {
    normalize(sql, Dialect::PostgreSql).text
}

fn my(sql: &str) -> String {
    normalize(sql, Dialect::MySql).text
}

fn generic(sql: &str) -> String {
    normalize(sql, Dialect::Generic).text
}

fn same(dialect: Dialect, a: &str, b: &str) -> bool {
    normalize(a, dialect).id == normalize(b, dialect).id
}

/// The normalized text parses (so enrichment can run on it).
fn parses(dialect: Dialect, sql: &str) -> bool {
    let text = normalize(sql, dialect).text;
    let e = enrich(&text, dialect);
    assert!(e.parsed, "{text:?} did not parse: {:?}", e.skipped);
    e.parsed
}

#[test]
fn e01_in_lists_of_different_lengths_share_a_fingerprint() {
    let a = "SELECT * FROM t WHERE id IN (1, 2, 3)";
    assert!(same(
        Dialect::PostgreSql,
        a,
        "SELECT * FROM t WHERE id IN (4, 5)"
    ));
    assert_eq!(pg(a), "SELECT * FROM t WHERE id IN ($1)");
    assert!(parses(Dialect::PostgreSql, a));
}

#[test]
fn e02_one_element_in_list_equals_many() {
    // Decision: unlike PG18, one element and many share a fingerprint (a loop's first page has one id).
    for dialect in DIALECTS {
        assert!(same(
            dialect,
            "SELECT * FROM t WHERE id IN (1)",
            "SELECT * FROM t WHERE id IN (1, 2)"
        ));
    }
}

#[test]
fn e03_in_lists_of_parameters_collapse() {
    let a = pg("SELECT * FROM t WHERE id IN ($1, $2, $3)");
    assert_eq!(a, pg("SELECT * FROM t WHERE id IN ($1)"));
    assert_eq!(a, pg("SELECT * FROM t WHERE id IN (?, ?)"));
    assert_eq!(
        generic("SELECT * FROM t WHERE id IN (?, ?)"),
        "SELECT * FROM t WHERE id IN (?)"
    );
}

#[test]
fn e04_mixed_in_lists_collapse() {
    assert_eq!(
        pg("SELECT * FROM t WHERE x IN ('a', $1, 3)"),
        "SELECT * FROM t WHERE x IN ($1)"
    );
    // `NULL` is a keyword, not a value: a list holding it is kept as written.
    assert_eq!(
        pg("SELECT * FROM t WHERE x IN ('a', $1, NULL)"),
        "SELECT * FROM t WHERE x IN ($1, NULL)"
    );
}

#[test]
fn e05_any_forms_stay_distinct_shapes() {
    // Decision: `= ANY($1)`, `= ANY(ARRAY[…])` and `IN (…)` stay three shapes; each collapses its own list.
    assert_eq!(
        pg("SELECT * FROM t WHERE id = ANY($1)"),
        "SELECT * FROM t WHERE id = ANY($1)"
    );
    assert_eq!(
        pg("SELECT * FROM t WHERE id = ANY(ARRAY[1,2,3])"),
        "SELECT * FROM t WHERE id = ANY(ARRAY[$1])"
    );
    assert!(same(
        Dialect::PostgreSql,
        "SELECT 1 FROM t WHERE id = ANY(ARRAY[1])",
        "SELECT 1 FROM t WHERE id = ANY(ARRAY[1, 2, 3])"
    ));
    assert_eq!(
        pg("SELECT * FROM t WHERE id = ANY('{1,2,3}'::int[])"),
        "SELECT * FROM t WHERE id = ANY($1::int[])"
    );
    for sql in [
        "SELECT * FROM t WHERE id = ANY($1)",
        "SELECT * FROM t WHERE id = ANY(ARRAY[1,2,3])",
    ] {
        assert!(parses(Dialect::PostgreSql, sql));
    }
}

#[test]
fn e06_in_subquery_is_not_collapsed() {
    assert_eq!(
        pg("SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE x = 1)"),
        "SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE x = $1)"
    );
    assert!(!same(
        Dialect::PostgreSql,
        "SELECT * FROM t WHERE id IN (SELECT id FROM u)",
        "SELECT * FROM t WHERE id IN (1)"
    ));
}

#[test]
fn e07_multi_row_values_share_a_fingerprint() {
    let one = "INSERT INTO t (a, b) VALUES (1, 'a')";
    assert!(same(
        Dialect::PostgreSql,
        one,
        "INSERT INTO t (a, b) VALUES (1,'a'), (2,'b')"
    ));
    assert!(same(
        Dialect::PostgreSql,
        one,
        "INSERT INTO t (a, b) VALUES ($1,$2),($3,$4),($5,$6)"
    ));
    assert_eq!(pg(one), "INSERT INTO t(a, b) VALUES ($1, $2)");
    assert!(parses(Dialect::PostgreSql, one));
}

#[test]
fn e08_negative_numbers_and_subtraction() {
    assert_eq!(
        pg("SELECT * FROM t WHERE x > -100"),
        "SELECT * FROM t WHERE x > $1"
    );
    assert_eq!(
        pg("SELECT x-1, x - -1, (-1) FROM t"),
        "SELECT x - $1, x - $2, ($3) FROM t"
    );
    assert_eq!(pg("SELECT ARRAY[-1,-2]"), "SELECT ARRAY[$1]");
}

#[test]
fn e09_numeric_forms() {
    assert_eq!(
        pg("SELECT 1e7, 1.5E-3, .5, 5., 0x1F, X'0A', B'101', 1_000"),
        "SELECT $1, $2, $3, $4, $5, $6, $7, $8"
    );
    assert_eq!(pg("SELECT 1::bigint"), "SELECT $1::bigint");
}

#[test]
fn e10_string_forms() {
    assert_eq!(
        pg("SELECT 'it''s', E'it\\'s', N'foo', U&'\\0041', ''"),
        "SELECT $1, $2, $3, $4, $5"
    );
    assert_eq!(my("SELECT 'it\\'s', 'x'"), "SELECT ?, ?");
    assert_eq!(
        pg("SELECT * FROM t WHERE a = 'abc"),
        "SELECT * FROM t WHERE a = $1"
    );
}

#[test]
fn e11_dollar_quoting() {
    assert_eq!(
        pg("SELECT $$ a;b'c $$, $fn$ x $$ y $fn$, $1"),
        "SELECT $1, $2, $3"
    );
    assert_eq!(pg("SELECT $tag$ unterminated"), "SELECT $1");
}

#[test]
fn e12_quoted_identifiers() {
    assert_eq!(
        pg("SELECT \"User\".\"Id\" FROM \"User\""),
        "SELECT \"User\".\"Id\" FROM \"User\""
    );
    assert!(!same(
        Dialect::PostgreSql,
        "SELECT \"User\".\"Id\" FROM t",
        "SELECT user.id FROM t"
    ));
    assert!(same(
        Dialect::PostgreSql,
        "SELECT \"users\".\"id\" FROM \"users\"",
        "SELECT users.id FROM users"
    ));
    assert_eq!(
        my("SELECT `user`, `Name` FROM `orders`"),
        "SELECT `user`, `Name` FROM orders"
    );
    assert_eq!(
        generic("SELECT [Id] FROM [dbo].[users]"),
        "SELECT [Id] FROM dbo.users"
    );
    assert_eq!(
        my("SELECT * FROM t WHERE a = \"foo\""),
        "SELECT * FROM t WHERE a = ?"
    );
    assert_eq!(
        pg("SELECT * FROM t WHERE a = \"foo\""),
        "SELECT * FROM t WHERE a = foo"
    );
}

#[test]
fn e13_casts_and_typed_literals() {
    assert_eq!(
        pg("SELECT $1::int, '2024-01-01'::date, CAST(? AS INT), int4(1)"),
        "SELECT $1::int, $2::date, CAST($3 AS int), int4($4)"
    );
    assert_eq!(
        pg("SELECT interval '1 day', DATE '2024-01-01'"),
        "SELECT CAST($1 AS interval), CAST($2 AS date)"
    );
    assert_eq!(
        pg("SELECT TIMESTAMP WITH TIME ZONE '2024-01-01 00:00:00+00'"),
        "SELECT CAST($1 AS timestamp WITH time zone)"
    );
    assert!(parses(
        Dialect::PostgreSql,
        "SELECT x FROM t WHERE d > DATE '2024-01-01' AND e < now() - interval '1 day'"
    ));
}

#[test]
fn e14_placeholder_styles() {
    assert_eq!(
        generic("SELECT ?, ?1, $1, :name, :1, @p1, @name, %s, %(name)s"),
        "SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?"
    );
    assert_eq!(
        normalize("SELECT ?1, ?2, :a, @b, $c", Dialect::Sqlite).text,
        "SELECT ?, ?, ?, ?, ?"
    );
    assert!(same(
        Dialect::Generic,
        "SELECT * FROM t WHERE a = '$1' AND b = ':x'",
        "SELECT * FROM t WHERE a = ? AND b = ?"
    ));
}

#[test]
fn e15_casts_are_not_named_parameters() {
    assert_eq!(
        pg("SELECT a::text, a :: text, a::\"MyType\""),
        "SELECT a::text, a::text, a::\"MyType\""
    );
}

#[test]
fn e16_jsonb_operators_are_not_parameters() {
    assert_eq!(
        pg(
            "SELECT * FROM t WHERE data ? 'k' AND data ?| array['a'] AND data ?& array['b'] AND data @? '$.a'"
        ),
        "SELECT * FROM t WHERE data ? $1 AND data ?| ARRAY[$2] AND data ?& ARRAY[$3] AND data @? $4"
    );
    assert_eq!(
        pg("SELECT data #>> '{a,b}', data->>'k' FROM t"),
        "SELECT data #>> $1, data ->> $2 FROM t"
    );
    assert!(parses(
        Dialect::PostgreSql,
        "SELECT * FROM t WHERE data ? 'k' AND data->>'k' = 'v'"
    ));
}

#[test]
fn e17_array_slices() {
    assert_eq!(
        pg("SELECT a[1:2], a[:2], a[1] FROM t"),
        "SELECT a[$1:$2], a[:$3], a[$4] FROM t"
    );
}

#[test]
fn e18_comments() {
    assert_eq!(
        pg("SELECT 1 -- trailing\n FROM t /* block */"),
        "SELECT $1 FROM t"
    );
    assert_eq!(pg("SELECT /* a /* b */ c */ 1"), "SELECT $1");
    assert_eq!(my("SELECT 1 # comment\nFROM t"), "SELECT ? FROM t");
    assert_eq!(
        my("SELECT /*+ INDEX(t) */ /*!40001 SQL_NO_CACHE */ a FROM t"),
        "SELECT a FROM t"
    );
    let n = pg("/*controller:x*/ SELECT 1");
    assert_eq!(n, "SELECT $1");
    let n = normalize(
        "SELECT 1 /*traceparent='00-4bf9-01',route='%2Fapi%2Forders'*/",
        Dialect::PostgreSql,
    );
    assert_eq!(n.text, "SELECT $1");
    // `traceparent` is not on the allowlist of keys: its pair is dropped.
    assert_eq!(n.tags, [("route".to_owned(), "/api/orders".to_owned())]);
}

#[test]
fn e19_comment_markers_inside_literals() {
    assert_eq!(
        pg("SELECT '--not a comment', '/* no */', \"--col\" FROM t"),
        "SELECT $1, $2, \"--col\" FROM t"
    );
}

#[test]
fn e20_multiple_and_empty_statements() {
    assert_eq!(pg("SELECT 1; SELECT 2"), "SELECT $1; SELECT $2");
    assert_eq!(
        pg("BEGIN; UPDATE t SET a = 1; COMMIT;"),
        "BEGIN; UPDATE t SET a = $1; COMMIT"
    );
    assert_eq!(pg("SELECT 1;"), pg("SELECT 1"));
    assert_eq!(pg(";;"), "");
    assert_eq!(
        enrich(&pg("SELECT 1; SELECT 2"), Dialect::PostgreSql).skipped,
        Some("multiple_statements")
    );
}

#[test]
fn e21_truncated_sql_ends() {
    let sql =
        "SELECT * FROM t WHERE a = 'abc' AND b = $$x$$ /* c */ AND d = \"q\" AND e = E'\\'' -- z";
    for cut in 0..=sql.len() {
        let Some(prefix) = sql.get(..cut) else {
            continue;
        };
        for dialect in DIALECTS {
            let n = normalize(prefix, dialect);
            assert!(
                !n.text.contains("abc") && !n.text.contains(" x"),
                "{prefix:?} → {:?}",
                n.text
            );
        }
    }
}

#[test]
fn e22_limit_forms() {
    assert_eq!(
        pg("SELECT * FROM t LIMIT 10 OFFSET 20"),
        "SELECT * FROM t LIMIT $1 OFFSET $2"
    );
    assert_eq!(
        my("SELECT * FROM t LIMIT 20, 10"),
        "SELECT * FROM t LIMIT ?, ?"
    );
    assert_eq!(
        pg("SELECT * FROM t FETCH FIRST 5 ROWS ONLY"),
        "SELECT * FROM t FETCH FIRST $1 ROWS ONLY"
    );
    assert_eq!(
        generic("SELECT TOP (10) * FROM t"),
        "SELECT TOP (?) * FROM t"
    );
    assert_eq!(pg("SELECT * FROM t LIMIT ALL"), "SELECT * FROM t LIMIT ALL");
    for (dialect, sql) in [
        (Dialect::PostgreSql, "SELECT * FROM t LIMIT 10 OFFSET 20"),
        (Dialect::MySql, "SELECT * FROM t LIMIT 20, 10"),
        (
            Dialect::PostgreSql,
            "SELECT * FROM t FETCH FIRST 5 ROWS ONLY",
        ),
        (Dialect::Generic, "SELECT TOP (10) * FROM t"),
    ] {
        assert!(parses(dialect, sql));
        assert!(
            enrich(&normalize(sql, dialect).text, dialect).has_limit,
            "{sql}"
        );
    }
}

#[test]
fn e23_booleans_and_null() {
    // Keywords, not values (issue 12, item 6): they stay as written, upper case.
    assert_eq!(
        pg(
            "SELECT * FROM t WHERE a = true AND b IS TRUE AND c IS NOT FALSE AND d IS NULL AND e IS NOT DISTINCT FROM NULL AND f = NULL AND g IS NOT NULL"
        ),
        "SELECT * FROM t WHERE a = TRUE AND b IS TRUE AND c IS NOT FALSE AND d IS NULL AND e IS NOT DISTINCT FROM NULL AND f = NULL AND g IS NOT NULL"
    );
}

#[test]
fn e24_digits_in_identifiers() {
    // Decision: runs of two or more digits go (libpg_query's partition rule), single digits stay.
    assert_eq!(pg("SELECT * FROM orders_2024_01"), "SELECT * FROM orders__");
    assert!(same(
        Dialect::PostgreSql,
        "SELECT * FROM orders_2024_01",
        "SELECT * FROM orders_2023_12"
    ));
    assert_eq!(
        pg("SELECT * FROM t1 JOIN t2 ON t1.id = t2.id"),
        "SELECT * FROM t1 JOIN t2 ON t1.id = t2.id"
    );
    assert_eq!(
        pg("SELECT * FROM shard_17.users"),
        "SELECT * FROM shard_.users"
    );
    assert!(same(
        Dialect::PostgreSql,
        "SELECT * FROM tmp_123456",
        "SELECT * FROM tmp_654321"
    ));
    assert_eq!(pg("SELECT sha256(x) FROM t"), "SELECT sha256(x) FROM t");
}

#[test]
fn e25_aliases_are_kept() {
    // Aliases are kept: `AS x` and `AS y` are different texts (the tokenizer does not know what is an alias).
    assert_eq!(
        pg("SELECT a AS x FROM users u"),
        "SELECT a AS x FROM users u"
    );
    assert!(!same(
        Dialect::PostgreSql,
        "SELECT a AS x FROM t",
        "SELECT a AS y FROM t"
    ));
}

#[test]
fn e26_schema_qualification_is_kept() {
    assert_eq!(
        pg("SELECT * FROM public.users"),
        "SELECT * FROM public.users"
    );
    assert!(!same(
        Dialect::PostgreSql,
        "SELECT * FROM public.users",
        "SELECT * FROM users"
    ));
    assert_eq!(
        enrich(&pg("SELECT * FROM public.users"), Dialect::PostgreSql).tables,
        ["users"]
    );
}

#[test]
fn e27_savepoint_and_cursor_names() {
    assert_eq!(pg("SAVEPOINT sp_3"), "SAVEPOINT ?");
    assert!(same(
        Dialect::PostgreSql,
        "SAVEPOINT sp_3",
        "SAVEPOINT sp_4"
    ));
    assert_eq!(pg("RELEASE SAVEPOINT \"s1399_x1\""), "RELEASE SAVEPOINT ?");
    assert_eq!(pg("ROLLBACK TO SAVEPOINT sp_9"), "ROLLBACK TO SAVEPOINT ?");
    assert_eq!(
        pg("DECLARE c123 CURSOR FOR SELECT 1"),
        "DECLARE ? CURSOR FOR SELECT $1"
    );
    assert_eq!(pg("FETCH 100 FROM c123"), "FETCH $1 FROM ?");
    assert_eq!(pg("CLOSE c123"), "CLOSE ?");
    assert_eq!(
        normalize("SAVEPOINT sp_3", Dialect::PostgreSql).kind,
        perfscope::query::StatementKind::Transaction
    );
}

#[test]
fn e28_upserts() {
    assert_eq!(
        pg(
            "INSERT INTO t (id, x) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET x = EXCLUDED.x RETURNING *"
        ),
        "INSERT INTO t(id, x) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET x = excluded.x RETURNING *"
    );
    assert!(same(
        Dialect::MySql,
        "INSERT INTO t (id, x) VALUES (1, 2) ON DUPLICATE KEY UPDATE x = VALUES(x)",
        "INSERT INTO t (id, x) VALUES (1, 2), (3, 4) ON DUPLICATE KEY UPDATE x = VALUES(x)"
    ));
    assert_eq!(my("REPLACE INTO t VALUES (1)"), "REPLACE INTO t VALUES (?)");
    assert!(parses(
        Dialect::PostgreSql,
        "INSERT INTO t (id, x) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET x = EXCLUDED.x RETURNING *"
    ));
    assert!(parses(
        Dialect::MySql,
        "INSERT INTO t (id, x) VALUES (1, 2), (3, 4) ON DUPLICATE KEY UPDATE x = VALUES(x)"
    ));
}

#[test]
fn e29_utility_statements() {
    use perfscope::query::StatementKind::{Other, Session};
    assert_eq!(pg("SET search_path = public"), "SET search_path = public");
    let n = normalize("SET LOCAL statement_timeout = 5000", Dialect::PostgreSql);
    assert_eq!(
        (n.text.as_str(), n.kind),
        ("SET LOCAL statement_timeout = $1", Session)
    );
    assert_eq!(
        normalize("SHOW work_mem", Dialect::PostgreSql).kind,
        Session
    );
    assert_eq!(pg("NOTIFY ch, 'payload'"), "NOTIFY ch, $1");
    assert_eq!(normalize("LISTEN ch", Dialect::PostgreSql).kind, Other);
    assert_eq!(pg("COPY t FROM STDIN"), "COPY t FROM stdin");
    assert_eq!(pg("EXPLAIN ANALYZE SELECT 1"), "EXPLAIN ANALYZE SELECT $1");
}

#[test]
fn e30_case_and_window_functions() {
    assert_eq!(
        pg(
            "SELECT CASE WHEN a = 1 THEN 'x' ELSE 'z' END, row_number() OVER (PARTITION BY b ORDER BY c) FROM t"
        ),
        "SELECT CASE WHEN a = $1 THEN $2 ELSE $3 END, row_number() OVER (PARTITION BY b ORDER BY c) FROM t"
    );
    // Branch counts are structure: different counts stay different fingerprints.
    assert!(!same(
        Dialect::PostgreSql,
        "SELECT CASE WHEN a = 1 THEN 1 END",
        "SELECT CASE WHEN a = 1 THEN 1 WHEN a = 2 THEN 2 END"
    ));
}

#[test]
fn e31_ctes() {
    use perfscope::query::StatementKind::With;
    let n = normalize(
        "WITH RECURSIVE r AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r",
        Dialect::PostgreSql,
    );
    assert_eq!(
        n.text,
        "WITH RECURSIVE r AS (SELECT $1 UNION ALL SELECT n + $2 FROM r WHERE n < $3) SELECT * FROM r"
    );
    assert_eq!(n.kind, With);
    assert_eq!(
        pg("WITH d AS (DELETE FROM t WHERE a = 1 RETURNING *) SELECT * FROM d"),
        "WITH d AS (DELETE FROM t WHERE a = $1 RETURNING *) SELECT * FROM d"
    );
    assert!(parses(
        Dialect::PostgreSql,
        "WITH d AS (DELETE FROM t WHERE a = 1 RETURNING *) SELECT * FROM d"
    ));
}

#[test]
fn e32_like_patterns() {
    assert!(same(
        Dialect::PostgreSql,
        "SELECT * FROM t WHERE a LIKE 'abc%'",
        "SELECT * FROM t WHERE a LIKE $1"
    ));
    assert_eq!(
        pg("SELECT * FROM t WHERE a ILIKE ANY(ARRAY['x%', 'y%'])"),
        "SELECT * FROM t WHERE a ILIKE ANY(ARRAY[$1])"
    );
}

#[test]
fn e33_odbc_escapes() {
    assert_eq!(
        generic("SELECT * FROM t WHERE d > {ts '2023-12-31 23:59:59'} AND e = {d '2023-12-31'}"),
        "SELECT * FROM t WHERE d > {ts ?} AND e = {d ?}"
    );
}

// ---- item 6 of issue 12: the last fingerprint rules ---------------------------------------------------

#[test]
fn e50_unary_minus_folds_whatever_the_spacing() {
    let table = [
        (
            "SELECT * FROM t WHERE a = -5",
            "SELECT * FROM t WHERE a = ?",
        ),
        (
            "SELECT * FROM t WHERE a = - 5",
            "SELECT * FROM t WHERE a = ?",
        ),
        (
            "SELECT * FROM t WHERE a = -\n\t5.5",
            "SELECT * FROM t WHERE a = ?",
        ),
        (
            "SELECT * FROM t WHERE a = +  .5",
            "SELECT * FROM t WHERE a = ?",
        ),
        (
            "SELECT * FROM t WHERE a IN (- 1, -2, - 3)",
            "SELECT * FROM t WHERE a IN (?)",
        ),
        (
            "UPDATE t SET a = - 1e3 WHERE id = ?",
            "UPDATE t SET a = ? WHERE id = ?",
        ),
        // A binary minus stays an operator.
        ("SELECT a - 5 FROM t", "SELECT a - ? FROM t"),
        ("SELECT 3 - 5 FROM t", "SELECT ? - ? FROM t"),
        ("SELECT a - - 5 FROM t", "SELECT a - ? FROM t"),
    ];
    for (sql, want) in table {
        for dialect in [
            Dialect::Generic,
            Dialect::MySql,
            Dialect::Sqlite,
            Dialect::TSql,
        ] {
            assert_eq!(normalize(sql, dialect).text, want, "{sql:?} {dialect:?}");
        }
    }
    assert!(same(
        Dialect::PostgreSql,
        "SELECT * FROM t WHERE a = - 5",
        "SELECT * FROM t WHERE a = -5"
    ));
    assert!(same(
        Dialect::PostgreSql,
        "SELECT * FROM t WHERE a = - 5",
        "SELECT * FROM t WHERE a = $1"
    ));
}

#[test]
fn e51_null_true_false_default_are_keywords() {
    let table = [
        (
            "UPDATE t SET notes = NULL WHERE id = 1",
            "UPDATE t SET notes = NULL WHERE id = ?",
        ),
        (
            "UPDATE t SET notes = null WHERE id = 1",
            "UPDATE t SET notes = NULL WHERE id = ?",
        ),
        (
            "SELECT * FROM t WHERE active = true",
            "SELECT * FROM t WHERE active = TRUE",
        ),
        (
            "SELECT * FROM t WHERE active = FALSE",
            "SELECT * FROM t WHERE active = FALSE",
        ),
        (
            "INSERT INTO t (a, b) VALUES (DEFAULT, 'x')",
            "INSERT INTO t(a, b) VALUES (DEFAULT, ?)",
        ),
        ("UPDATE t SET a = DEFAULT", "UPDATE t SET a = DEFAULT"),
        (
            "SELECT * FROM t WHERE a IS NOT NULL",
            "SELECT * FROM t WHERE a IS NOT NULL",
        ),
        (
            "SELECT * FROM t WHERE a IS TRUE",
            "SELECT * FROM t WHERE a IS TRUE",
        ),
    ];
    for (sql, want) in table {
        for dialect in [
            Dialect::Generic,
            Dialect::MySql,
            Dialect::Sqlite,
            Dialect::TSql,
        ] {
            assert_eq!(normalize(sql, dialect).text, want, "{sql:?} {dialect:?}");
        }
    }
    assert!(!same(
        Dialect::PostgreSql,
        "UPDATE orders SET notes = NULL WHERE id = $1",
        "UPDATE orders SET notes = $1 WHERE id = $2"
    ));
    assert!(!same(
        Dialect::PostgreSql,
        "SELECT * FROM t WHERE active = TRUE",
        "SELECT * FROM t WHERE active = FALSE"
    ));
    assert!(parses(
        Dialect::PostgreSql,
        "UPDATE t SET notes = NULL, a = DEFAULT WHERE b = true"
    ));
}

#[test]
fn e52_odbc_escapes_keep_their_type_keyword() {
    let table = [
        (
            "SELECT * FROM t WHERE d > {ts '2023-12-31 23:59:59'}",
            "SELECT * FROM t WHERE d > {ts ?}",
        ),
        (
            "SELECT * FROM t WHERE d = { D '2023-12-31' }",
            "SELECT * FROM t WHERE d = {d ?}",
        ),
        (
            "SELECT * FROM t WHERE d = {t '23:59'}",
            "SELECT * FROM t WHERE d = {t ?}",
        ),
        (
            "SELECT * FROM t WHERE d = {ts ?}",
            "SELECT * FROM t WHERE d = {ts ?}",
        ),
        (
            "SELECT * FROM t WHERE d IN ({d '2024-01-01'}, {d '2024-01-02'})",
            "SELECT * FROM t WHERE d IN ({d ?})",
        ),
    ];
    for (sql, want) in table {
        for dialect in [
            Dialect::Generic,
            Dialect::MySql,
            Dialect::Sqlite,
            Dialect::TSql,
        ] {
            assert_eq!(normalize(sql, dialect).text, want, "{sql:?} {dialect:?}");
        }
    }
    assert_eq!(
        pg("SELECT * FROM t WHERE d > {ts '2023-12-31'} AND e = $2"),
        "SELECT * FROM t WHERE d > {ts $1} AND e = $2"
    );
    assert!(!same(
        Dialect::Generic,
        "SELECT * FROM t WHERE d = {d '2024-01-01'}",
        "SELECT * FROM t WHERE d = {ts '2024-01-01 00:00'}"
    ));
    // No literal survives, and the value is not taken for a bound parameter.
    let n = normalize("SELECT {ts 'CANARYodbc'}", Dialect::Generic);
    assert!(!n.text.contains("CANARY") && !n.bound);
}

#[test]
fn e53_tsql_dialect() {
    let tsql = |sql: &str| normalize(sql, Dialect::TSql).text;
    assert_eq!(
        tsql(
            "SELECT [Id], [Order Details].[Unit Price] FROM [dbo].[Order Details] WHERE [Id] = @P1"
        ),
        "SELECT id, [Order Details].[Unit Price] FROM dbo.[Order Details] WHERE id = ?"
    );
    assert_eq!(
        tsql("SELECT TOP (@p1) name FROM users WHERE name = N'Zoë' AND note = N'it''s'"),
        "SELECT TOP (?) name FROM users WHERE name = ? AND note = ?"
    );
    assert_eq!(
        tsql("SELECT a FROM [we]]ird] WHERE b = @p2"),
        "SELECT a FROM [we]]ird] WHERE b = ?"
    );
    assert_eq!(
        tsql(
            "INSERT INTO #tmp (a) SELECT a FROM ##global WHERE a > @min /* a /* nested */ comment */"
        ),
        "INSERT INTO #tmp(a) SELECT a FROM ##global WHERE a > ?"
    );
    // `@p1`, `@P1` and literals are one statement; the parameter numbering does not matter.
    assert!(same(
        Dialect::TSql,
        "SELECT name FROM users WHERE id = @P1",
        "SELECT name FROM users WHERE id = 42"
    ));
    assert!(same(
        Dialect::TSql,
        "SELECT name FROM users WHERE id IN (@p1, @p2, @p3)",
        "SELECT name FROM users WHERE id IN (@p1)"
    ));
    assert!(normalize("SELECT 1 FROM t WHERE id = @p1", Dialect::TSql).bound);
    assert_eq!(tsql("SELECT TOP 10 a FROM t"), "SELECT TOP (?) a FROM t");
    assert!(parses(Dialect::TSql, "SELECT TOP 10 a FROM t"));
    assert!(parses(
        Dialect::TSql,
        "SELECT TOP (@P2) [Id] FROM [dbo].[Orders] WHERE [CustomerId] = @P1 ORDER BY [Id]"
    ));
    assert!(parses(
        Dialect::TSql,
        "UPDATE [Orders] SET [Notes] = NULL, [Total] = - 5 WHERE [Id] IN (@p1, @p2) AND d > {ts '2024-01-01'}"
    ));
}

#[test]
fn e34_unicode_crlf_tabs_nbsp() {
    assert_eq!(
        pg("SELECT  naïve,\r\n\t'日本語' FROM\u{a0}t WHERE x = 'ü'"),
        "SELECT naïve, $1 FROM t WHERE x = $2"
    );
    assert_eq!(pg("\u{feff}SELECT\u{3000}1"), "SELECT $1");
    assert_eq!(pg("SELECT \"Ünïcode\" FROM t"), "SELECT \"Ünïcode\" FROM t");
}

#[test]
fn e35_huge_inputs_are_linear_and_capped() {
    let list = (0..10_000)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    assert_eq!(
        pg(&format!("SELECT * FROM t WHERE id IN ({list})")),
        "SELECT * FROM t WHERE id IN ($1)"
    );
    let rows = vec!["(1, 'a')"; 5_000].join(", ");
    let n = normalize(
        &format!("INSERT INTO t (a, b) VALUES {rows}"),
        Dialect::PostgreSql,
    );
    assert_eq!(n.text, "INSERT INTO t(a, b) VALUES ($1, $2)");
    let big = format!("SELECT '{}'", "x".repeat(1 << 20));
    let n = normalize(&big, Dialect::PostgreSql);
    assert!(n.truncated && n.text.len() <= MAX_NORMALIZED_LEN);
}

#[test]
fn e36_deep_nesting_is_stack_safe() {
    let deep = format!("SELECT {}1{}", "(".repeat(5_000), ")".repeat(5_000));
    let n = normalize(&deep, Dialect::PostgreSql);
    assert!(n.text.len() <= MAX_NORMALIZED_LEN);
    assert_eq!(
        enrich(&n.text, Dialect::PostgreSql).skipped,
        Some("too_deep")
    );
    let sum = format!("SELECT {}1", "1+".repeat(5_000));
    let n = normalize(&sum, Dialect::PostgreSql);
    assert!(!enrich(&n.text, Dialect::PostgreSql).parsed || n.text.len() <= MAX_NORMALIZED_LEN);
    let sub = format!(
        "SELECT * FROM t WHERE id IN {}SELECT 1{}",
        "(SELECT id FROM t WHERE id IN ".repeat(100),
        ")".repeat(100)
    );
    let _ = enrich(
        &normalize(&sub, Dialect::PostgreSql).text,
        Dialect::PostgreSql,
    );
}

#[test]
fn e37_keywords_as_identifiers() {
    assert_eq!(
        pg("SELECT \"select\", \"user\", \"order\" FROM t"),
        "SELECT \"select\", \"user\", \"order\" FROM t"
    );
    assert!(parses(
        Dialect::PostgreSql,
        "SELECT \"select\", \"user\" FROM \"order\""
    ));
    assert_eq!(
        pg("SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS v(id, name)"),
        "SELECT * FROM (VALUES ($1, $2)) AS v(id, name)"
    );
}

#[test]
fn e38_case_of_keywords_and_literals() {
    let a = "select * from t where a = 'ABC'";
    assert!(same(
        Dialect::PostgreSql,
        a,
        "SELECT * FROM t WHERE a = 'abc'"
    ));
    assert!(same(
        Dialect::PostgreSql,
        a,
        "SeLeCt * FrOm t WhErE a = 'x'"
    ));
    assert_eq!(pg(a), "SELECT * FROM t WHERE a = $1");
}

#[test]
fn e39_already_normalized_input_is_idempotent() {
    for (dialect, sql) in [
        (
            Dialect::Generic,
            "SELECT * FROM t WHERE a = ? AND b IN (?) AND c = %s",
        ),
        (
            Dialect::PostgreSql,
            "SELECT * FROM t WHERE a = $1 AND b IN ($2)",
        ),
        (Dialect::MySql, "INSERT INTO t(a, b) VALUES (?, ?)"),
    ] {
        let once = normalize(sql, dialect).text;
        assert_eq!(normalize(&once, dialect).text, once);
    }
    assert_eq!(
        generic("SELECT * FROM t WHERE a = %s"),
        "SELECT * FROM t WHERE a = ?"
    );
}

#[test]
fn e40_dialect_specific_syntax() {
    assert_eq!(
        my("INSERT IGNORE INTO t VALUES (1)"),
        "INSERT IGNORE INTO t VALUES (?)"
    );
    assert_eq!(
        my("SELECT STRAIGHT_JOIN * FROM a JOIN b"),
        "SELECT STRAIGHT_JOIN * FROM a JOIN b"
    );
    assert_eq!(generic("SELECT TOP 10 * FROM t"), "SELECT TOP ? * FROM t");
    assert_eq!(
        generic("INSERT INTO t OUTPUT inserted.* VALUES (1)"),
        "INSERT INTO t OUTPUT inserted.* VALUES (?)"
    );
    assert_eq!(
        normalize("INSERT OR REPLACE INTO t VALUES (?1, ?2)", Dialect::Sqlite).text,
        "INSERT OR REPLACE INTO t VALUES (?, ?)"
    );
    assert_eq!(
        pg("SELECT DISTINCT ON (a) * FROM t, LATERAL (SELECT 1) x FOR UPDATE SKIP LOCKED"),
        "SELECT DISTINCT ON (a) * FROM t, LATERAL (SELECT $1) x FOR UPDATE SKIP LOCKED"
    );
    assert!(parses(
        Dialect::PostgreSql,
        "SELECT DISTINCT ON (a) * FROM t, LATERAL (SELECT 1) x FOR UPDATE SKIP LOCKED"
    ));
    assert!(parses(
        Dialect::Sqlite,
        "INSERT OR REPLACE INTO t VALUES (?1, ?2)"
    ));
}

// ---- properties --------------------------------------------------------------------------------------

fn sql_like() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        Just("SELECT ".to_owned()),
        Just("FROM t ".to_owned()),
        Just("WHERE ".to_owned()),
        Just("IN (".to_owned()),
        Just("VALUES (".to_owned()),
        Just("ARRAY[".to_owned()),
        Just(")".to_owned()),
        Just("]".to_owned()),
        Just(", ".to_owned()),
        Just("'x'".to_owned()),
        Just("'".to_owned()),
        Just("\"".to_owned()),
        Just("$$".to_owned()),
        Just("$1".to_owned()),
        Just("?".to_owned()),
        Just(":n".to_owned()),
        Just("::int".to_owned()),
        Just("-".to_owned()),
        Just("1".to_owned()),
        Just(".5".to_owned()),
        Just("/*".to_owned()),
        Just("*/".to_owned()),
        Just("--".to_owned()),
        Just("\n".to_owned()),
        Just("#".to_owned()),
        Just(";".to_owned()),
        Just("DATE ".to_owned()),
        Just("NULL ".to_owned()),
        Just("TRUE ".to_owned()),
        Just("DEFAULT ".to_owned()),
        Just("- ".to_owned()),
        Just("{ts ".to_owned()),
        Just("{d '".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("@p1".to_owned()),
        Just("#t".to_owned()),
        Just("N'".to_owned()),
        Just("IS ".to_owned()),
        Just("SAVEPOINT ".to_owned()),
        Just("é".to_owned()),
        Just("\u{a0}".to_owned()),
        "[a-z_0-9]{1,6} ",
        "[ -~]{0,4}",
    ];
    prop::collection::vec(atom, 0..24).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_text(sql in any::<String>()) {
        for dialect in DIALECTS {
            let n = normalize(&sql, dialect);
            prop_assert!(n.text.len() <= MAX_NORMALIZED_LEN);
        }
    }

    #[test]
    fn never_panics_on_lossy_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let sql = String::from_utf8_lossy(&bytes);
        for dialect in DIALECTS {
            let n = normalize(&sql, dialect);
            prop_assert!(n.text.len() <= MAX_NORMALIZED_LEN);
            let _ = enrich(&n.text, dialect);
        }
    }

    #[test]
    fn idempotent_on_arbitrary_text(sql in any::<String>()) {
        for dialect in DIALECTS {
            let once = normalize(&sql, dialect).text;
            prop_assert_eq!(normalize(&once, dialect).text, once.clone(), "{:?} {:?}", dialect, sql);
        }
    }

    #[test]
    fn idempotent_on_sql_like_text(sql in sql_like()) {
        for dialect in DIALECTS {
            let once = normalize(&sql, dialect).text;
            prop_assert_eq!(normalize(&once, dialect).text, once.clone(), "{:?} {:?}", dialect, sql);
        }
    }

    #[test]
    fn in_lists_of_any_length_share_a_fingerprint(n in 1usize..1000, dialect in prop::sample::select(DIALECTS.to_vec())) {
        let list = (0..n).map(|i| (i * 7919).to_string()).collect::<Vec<_>>().join(", ");
        let a = normalize(&format!("SELECT * FROM t WHERE id IN ({list})"), dialect);
        let b = normalize("SELECT * FROM t WHERE id IN (1)", dialect);
        prop_assert_eq!(a.id, b.id);
    }

    #[test]
    fn values_of_any_length_share_a_fingerprint(n in 1usize..1000, dialect in prop::sample::select(DIALECTS.to_vec())) {
        let rows = (0..n).map(|i| format!("({i}, 'v{i}', NULL)")).collect::<Vec<_>>().join(", ");
        let a = normalize(&format!("INSERT INTO t (a, b, c) VALUES {rows}"), dialect);
        let b = normalize("INSERT INTO t (a, b, c) VALUES (1, 'x', NULL)", dialect);
        prop_assert_eq!(a.id, b.id);
    }
}

#[test]
fn equal_texts_have_equal_ids() {
    let a = normalize("SELECT 1", Dialect::Generic);
    let b = normalize("select   2", Dialect::Generic);
    assert_eq!((a.text.as_str(), a.id), (b.text.as_str(), b.id));
}

// ---- the canary --------------------------------------------------------------------------------------

#[test]
fn no_canary_survives_normalization() {
    let corpus = canary_corpus();
    assert!(corpus.len() >= 500, "{} statements", corpus.len());
    for dialect in DIALECTS {
        assert!(
            corpus.iter().filter(|(d, ..)| *d == dialect).count() >= 50,
            "{dialect:?}"
        );
    }
    let mut leaks = Vec::new();
    for (dialect, sql, canaries) in &corpus {
        assert!(!canaries.is_empty(), "{sql}");
        let n = normalize(sql, *dialect);
        // Every public type that holds the statement or its tags, printed whole.
        let memo = perfscope::query::FingerprintMemo::default();
        let info = memo.fingerprint(sql, *dialect);
        let everything = format!("{} {n:?} {info:?} {memo:?}", n.text);
        for canary in canaries {
            assert!(
                sql.contains(canary.as_str()),
                "{canary} not planted in {sql}"
            );
            if everything.contains(canary.as_str()) {
                leaks.push(format!(
                    "{dialect:?} {sql:?} leaked {canary:?} → {everything}"
                ));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "{} leaks:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}

// ---- the fuzz seeds ----------------------------------------------------------------------------------

/// Every seed of the `analyze` fuzz target goes through the target's steps, so the seeds run on stable too.
#[test]
fn fuzz_seeds_pass_the_analyze_steps() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/analyze");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        perfscope::query::analyze_for_fuzzing(&String::from_utf8_lossy(&data));
        seen += 1;
    }
    assert!(seen >= 30, "{seen} seeds in {}", dir.display());
}

/// Found by the fuzzer: a control character after `[` made the first pass read an array subscript and the
/// second a bracketed identifier; a slice's `:` written next to `=` read back as `:=`; a name scrubbed down to
/// `$1` read back as a placeholder.
#[test]
fn blanks_after_an_opening_bracket_keep_normalization_idempotent() {
    for dialect in DIALECTS {
        for sql in [
            "SELECT TOP (1) * FROM [\u{4}\0ers] WHERE a = 1",
            "SELECT * FROM [ users]",
            "SELECT a[ 1] FROM t",
            // A slice's `:` then `=` must not read back as one `:=`.
            "SELECT x FROM [user:\0= see",
            "SELECT a[b: =c]",
            // A name whose hex run goes must not leave a placeholder-looking `$1` behind.
            "SELECT x * a666666666$1::int FROM t",
        ] {
            let once = normalize(sql, dialect).text;
            assert_eq!(normalize(&once, dialect).text, once, "{dialect:?} {sql:?}");
        }
    }
}
