//! A corpus of statements with planted canaries in every literal and comment form, to prove that no literal
//! survives fingerprinting (and, downstream, that none reaches an export).

use perfscope::query::Dialect;

/// A text canary: unique per template and variant.
fn word(t: usize, i: usize) -> String {
    format!("CANARYq7x{t}z{i}")
}

/// A numeric canary, long enough never to collide with a placeholder number.
fn number(t: usize, i: usize) -> String {
    format!("98765{t:02}{i:03}")
}

type Template = fn(&str, &str) -> (Dialect, String);

/// Each template plants a text canary `w` and/or a numeric canary `n`.
const TEMPLATES: &[(Template, bool, bool)] = &[
    (
        |w, _| {
            (
                Dialect::PostgreSql,
                format!("SELECT * FROM users WHERE email = '{w}@example.com'"),
            )
        },
        true,
        false,
    ),
    (
        |w, _| {
            (
                Dialect::PostgreSql,
                format!("SELECT * FROM users WHERE note = E'{w}\\'s \\\\ note'"),
            )
        },
        true,
        false,
    ),
    (
        |w, _| {
            (
                Dialect::PostgreSql,
                format!("SELECT $${w} body; 'quoted' $$ AS x"),
            )
        },
        true,
        false,
    ),
    (
        |w, _| {
            (
                Dialect::PostgreSql,
                format!("SELECT $tag$ {w} $$ nested $$ $tag$ FROM t"),
            )
        },
        true,
        false,
    ),
    (
        |w, n| {
            (
                Dialect::PostgreSql,
                format!("SELECT * FROM orders WHERE id IN ({n}, 2, 3) AND ref = '{w}'"),
            )
        },
        true,
        true,
    ),
    (
        |w, n| {
            (
                Dialect::PostgreSql,
                format!("INSERT INTO items (id, name) VALUES ({n}, '{w}'), (2, 'b') RETURNING id"),
            )
        },
        true,
        true,
    ),
    (
        |w, _| {
            (
                Dialect::PostgreSql,
                format!("SELECT * FROM events WHERE day = '{w}'::date"),
            )
        },
        true,
        false,
    ),
    (
        |_, n| {
            (
                Dialect::PostgreSql,
                format!("SELECT * FROM events WHERE at > DATE '2024-01-{n}' - interval '{n} days'"),
            )
        },
        false,
        true,
    ),
    (
        |w, _| {
            (
                Dialect::PostgreSql,
                format!("SELECT 1 /* outer /* {w} */ still comment */ FROM t"),
            )
        },
        true,
        false,
    ),
    (
        |w, n| (Dialect::PostgreSql, format!("SELECT a -- {w} {n}\nFROM t")),
        true,
        true,
    ),
    (
        |w, _| {
            (
                Dialect::PostgreSql,
                format!("SELECT U&'{w}\\0041', N'{w}' FROM t"),
            )
        },
        true,
        false,
    ),
    (
        |_, n| {
            (
                Dialect::PostgreSql,
                format!("SELECT X'{n}', B'1010', {n}.5e3, -{n} FROM t"),
            )
        },
        false,
        true,
    ),
    (
        |w, n| {
            (
                Dialect::PostgreSql,
                format!("UPDATE accounts SET balance = balance - {n}, memo = '{w}' WHERE id = $1"),
            )
        },
        true,
        true,
    ),
    (
        |w, _| {
            (
                Dialect::PostgreSql,
                format!("SELECT * FROM docs WHERE data @> '{{\"k\": \"{w}\"}}' AND data ? '{w}'"),
            )
        },
        true,
        false,
    ),
    (
        |w, n| {
            (
                Dialect::PostgreSql,
                format!(
                    "SELECT * FROM t WHERE id = ANY(ARRAY[{n}, 2]) OR tags && '{{{w}}}'::text[]"
                ),
            )
        },
        true,
        true,
    ),
    (
        |w, _| (Dialect::PostgreSql, format!("SELECT 'it''s {w}' AS quote")),
        true,
        false,
    ),
    (
        |w, n| {
            (
                Dialect::PostgreSql,
                format!("SET application_name = '{w}'; SET statement_timeout = {n}"),
            )
        },
        true,
        true,
    ),
    (
        |w, _| (Dialect::PostgreSql, format!("NOTIFY orders, '{w}'")),
        true,
        false,
    ),
    (
        |w, _| {
            (
                Dialect::PostgreSql,
                format!("SELECT * FROM t WHERE a = '{w}"),
            )
        },
        true,
        false,
    ),
    (
        |w, n| {
            (
                Dialect::MySql,
                format!("SELECT * FROM users WHERE name = \"{w}\" AND age > {n}"),
            )
        },
        true,
        true,
    ),
    (
        |w, _| {
            (
                Dialect::MySql,
                format!("SELECT * FROM users WHERE bio = 'it\\'s {w}' AND x = \"a\\\"{w}\""),
            )
        },
        true,
        false,
    ),
    (
        |w, n| (Dialect::MySql, format!("SELECT 1 # {w} {n}\nFROM t")),
        true,
        true,
    ),
    (
        |w, _| {
            (
                Dialect::MySql,
                format!("SELECT /*+ {w} */ a FROM t /*!40001 {w} */"),
            )
        },
        true,
        false,
    ),
    (
        |w, n| {
            (
                Dialect::MySql,
                format!(
                    "INSERT INTO t (a, b) VALUES ({n}, '{w}'), ({n}, \"{w}\") ON DUPLICATE KEY UPDATE b = VALUES(b)"
                ),
            )
        },
        true,
        true,
    ),
    (
        |_, n| {
            (
                Dialect::MySql,
                format!("SELECT 0x{n}ABCDEF, X'{n}', b'1010', _utf8mb4'{n}' FROM t"),
            )
        },
        false,
        true,
    ),
    (
        |w, n| {
            (
                Dialect::MySql,
                format!("SELECT * FROM t WHERE created > '2024-01-01 {w}' LIMIT {n}, 10"),
            )
        },
        true,
        true,
    ),
    (
        |w, n| {
            (
                Dialect::MySql,
                format!("UPDATE t SET a = '{w}' WHERE id IN ({n}, {n})"),
            )
        },
        true,
        true,
    ),
    (
        |w, _| {
            (
                Dialect::Sqlite,
                format!("SELECT * FROM notes WHERE body LIKE '%{w}%'"),
            )
        },
        true,
        false,
    ),
    (
        |w, n| {
            (
                Dialect::Sqlite,
                format!("INSERT OR REPLACE INTO kv (k, v) VALUES ('{w}', {n}), ('b', 2)"),
            )
        },
        true,
        true,
    ),
    (
        |_, n| {
            (
                Dialect::Sqlite,
                format!("SELECT X'{n}', {n}, -{n}.25 FROM t WHERE id = ?1"),
            )
        },
        false,
        true,
    ),
    (
        |w, n| {
            (
                Dialect::Sqlite,
                format!("UPDATE t SET v = '{w}' WHERE id = {n} -- {w}"),
            )
        },
        true,
        true,
    ),
    (
        |w, _| {
            (
                Dialect::Sqlite,
                format!("SELECT * FROM t WHERE a = '{w}' /* {w} */"),
            )
        },
        true,
        false,
    ),
    (
        |w, n| {
            (
                Dialect::Generic,
                format!("SELECT TOP ({n}) * FROM [dbo].[users] WHERE name = N'{w}'"),
            )
        },
        true,
        true,
    ),
    (
        |w, _| {
            (
                Dialect::Generic,
                format!("SELECT * FROM t WHERE d > {{ts '2023-12-31 {w}'}} AND e = {{d '{w}'}}"),
            )
        },
        true,
        false,
    ),
    (
        |w, n| {
            (
                Dialect::Generic,
                format!("INSERT INTO t OUTPUT inserted.id VALUES ({n}, N'{w}')"),
            )
        },
        true,
        true,
    ),
    (
        |w, n| {
            (
                Dialect::Generic,
                format!("DECLARE @x INT = {n}; SELECT * FROM t WHERE a = '{w}'"),
            )
        },
        true,
        true,
    ),
    (
        |w, n| {
            (
                Dialect::Generic,
                format!("SELECT * FROM t WHERE id IN ('{w}', {n}) /* {w} */ -- {n}"),
            )
        },
        true,
        true,
    ),
    // sqlcommenter comments: a caller's values under keys off the allowlist (issue 12, item 7).
    (
        |w, n| {
            (
                Dialect::PostgreSql,
                format!(
                    "SELECT * FROM orders WHERE id = $1 /*user='{w}',order_no='{n}',route='%2Fapi%2Forders'*/"
                ),
            )
        },
        true,
        true,
    ),
    (
        |w, n| {
            (
                Dialect::MySql,
                format!(
                    "UPDATE t SET a = ? WHERE id = ? /*controller='orders',email='{w}%40example.com',tenant='{n}'*/"
                ),
            )
        },
        true,
        true,
    ),
    (
        |w, _| {
            (
                Dialect::Sqlite,
                format!("DELETE FROM t WHERE id = ? /*action='purge',traceparent='00-{w}-01'*/"),
            )
        },
        true,
        false,
    ),
    (
        |w, n| {
            (
                Dialect::Generic,
                format!(
                    "SELECT TOP ({n}) a FROM t WHERE b = @p1 /*db_driver='tiberius',session='{w}'*/"
                ),
            )
        },
        true,
        true,
    ),
];

/// Statements across the five dialects (the MSSQL-flavoured ones in both generic and T-SQL), each with the
/// canaries planted in it.
pub fn canary_corpus() -> Vec<(Dialect, String, Vec<String>)> {
    let mut corpus = Vec::new();
    for i in 0..16 {
        for (t, (template, text, numeric)) in TEMPLATES.iter().enumerate() {
            let (w, n) = (word(t, i), number(t, i));
            let (dialect, sql) = template(&w, &n);
            let mut canaries = Vec::new();
            if *text {
                canaries.push(w);
            }
            if *numeric {
                canaries.push(n);
            }
            if dialect == Dialect::Generic {
                corpus.push((Dialect::TSql, sql.clone(), canaries.clone()));
            }
            corpus.push((dialect, sql, canaries));
        }
    }
    corpus
}
