//! How a statement run once per item becomes one statement for all items, read from its normalized text.
//!
//! Everything a fix states comes from the statement: the table, the key columns (each `column = ?` of the
//! `WHERE` clause), the column list of an `INSERT` and what each value is, the clauses that follow
//! (`ON CONFLICT …`, `RETURNING …`). A type is named only where the statement shows it (a `::type` cast or a
//! `CAST(? AS type)`, kept by the normalizer, as typed literals are); otherwise the fix says `Vec<_>` and names
//! the column whose type it is. PostgreSQL gets `= ANY($1)` and `UNNEST`; SQLite and MySQL get an `IN (…)`
//! list or multi-row `VALUES` built with `sqlx::QueryBuilder` (SQLite also `json_each`), never `ANY`.

use super::context::Statement;
use crate::query::model::{Dialect, StatementKind};

/// Longest identifier or type name written in a fix; longer ones make the fix generic.
const MAX_NAME: usize = 64;

/// One token of a normalized text, with its byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tok<'a> {
    text: &'a str,
    start: usize,
    end: usize,
}

/// Splits a normalized text into words (identifiers, keywords, placeholders, numbers), `::`, comparison
/// operators and single punctuation characters. Quoted identifiers are one word.
fn tokens(text: &str) -> Vec<Tok<'_>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(&b) = bytes.get(at) else { break };
        let start = at;
        if b.is_ascii_whitespace() {
            at += 1;
            continue;
        }
        if b == b'"' || b == b'`' {
            at += 1;
            while bytes.get(at).is_some_and(|&c| c != b) {
                at += 1;
            }
            at = (at + 1).min(bytes.len());
        } else if is_word_byte(b) {
            while bytes.get(at).is_some_and(|&c| is_word_byte(c)) {
                at += 1;
            }
        } else if two_char_operator(bytes.get(at..at + 2).unwrap_or_default()) {
            at += 2;
        } else {
            // One character, whole (the text may hold non-ASCII identifiers).
            at += text
                .get(at..)
                .and_then(|r| r.chars().next())
                .map_or(1, char::len_utf8);
        }
        if let Some(word) = text.get(start..at) {
            out.push(Tok {
                text: word,
                start,
                end: at,
            });
        }
    }
    out
}

/// `::`, `<=`, `>=`, `!=`, `<>`.
fn two_char_operator(pair: &[u8]) -> bool {
    matches!(pair, b"::" | b"<=" | b">=" | b"!=" | b"<>")
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'?' | b'.')
}

fn is_param(word: &str) -> bool {
    let rest = word
        .strip_prefix('$')
        .or_else(|| word.strip_prefix('?'))
        .unwrap_or("x");
    rest.bytes().all(|b| b.is_ascii_digit())
}

/// An identifier as a fix may write it: the last part of a qualified name, unquoted, lower case.
fn name(word: &str) -> Option<String> {
    let last = word.rsplit('.').next().unwrap_or(word);
    let last = last.trim_matches(|c| matches!(c, '"' | '`'));
    let valid = !last.is_empty()
        && last.len() <= MAX_NAME
        && last.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && last.chars().next().is_some_and(|c| !c.is_ascii_digit())
        && !is_keyword(last);
    valid.then(|| last.to_ascii_lowercase())
}

fn is_keyword(word: &str) -> bool {
    const KEYWORDS: [&str; 16] = [
        "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "IS", "NULL", "VALUES", "SET",
        "LIMIT", "ORDER", "GROUP", "ANY", "CAST",
    ];
    KEYWORDS.iter().any(|k| word.eq_ignore_ascii_case(k))
}

/// A type name as written after `::` or `AS`: letters, digits, `_`, spaces and `[]`, bounded.
fn type_name(words: &[Tok<'_>]) -> Option<String> {
    let text = words.iter().map(|t| t.text).collect::<Vec<_>>().join(" ");
    let text = text
        .replace(" [", "[")
        .replace("[ ", "[")
        .replace(" ]", "]");
    let valid = !text.is_empty()
        && text.len() <= MAX_NAME
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ' ' | '[' | ']'));
    valid.then(|| text.to_ascii_lowercase())
}

/// A value of the statement: a bound parameter (with the type the statement casts it to, if any), or another
/// expression, kept as written (`now()`, `DEFAULT`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Bound(Option<String>),
    Expr(String),
}

/// Reads a value expression: `?`, `$1`, `$1::text`, `CAST($1 AS text)`, or anything else.
fn value(words: &[Tok<'_>], text: &str) -> Value {
    match words {
        [p] if is_param(p.text) => Value::Bound(None),
        [p, cast, ty @ ..] if is_param(p.text) && cast.text == "::" => Value::Bound(type_name(ty)),
        [cast, open, p, as_, ty @ .., close]
            if cast.text.eq_ignore_ascii_case("CAST")
                && open.text == "("
                && is_param(p.text)
                && as_.text.eq_ignore_ascii_case("AS")
                && close.text == ")" =>
        {
            Value::Bound(type_name(ty))
        }
        [first, .., last] => Value::Expr(text.get(first.start..last.end).unwrap_or("").to_string()),
        [only] => Value::Expr(only.text.to_string()),
        [] => Value::Expr(String::new()),
    }
}

/// The Rust type sqlx decodes a SQL type to, for the common unambiguous ones.
fn rust_type(sql_type: &str) -> Option<&'static str> {
    Some(match sql_type {
        "int2" | "smallint" => "i16",
        "int4" | "int" | "integer" => "i32",
        "int8" | "bigint" => "i64",
        "text" | "varchar" | "character varying" | "citext" | "name" => "String",
        "bool" | "boolean" => "bool",
        "float4" | "real" => "f32",
        "float8" | "double precision" => "f64",
        "uuid" => "uuid::Uuid",
        "bytea" | "blob" => "Vec<u8>",
        "json" | "jsonb" => "serde_json::Value",
        _ => return None,
    })
}

/// A column with what the statement shows of its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) sql_type: Option<String>,
}

impl Column {
    /// `Vec<String>` when the type is shown, else `Vec<_>`.
    fn vec(&self) -> String {
        match self.sql_type.as_deref().and_then(rust_type) {
            Some(ty) => format!("Vec<{ty}>"),
            None => "Vec<_>".to_string(),
        }
    }

    /// How a fix refers to the values to bind: "the `name` values (a `Vec<_>`, of `tags.name`'s type)".
    fn values(&self, table: &str) -> String {
        match (
            self.sql_type.as_deref(),
            self.sql_type.as_deref().and_then(rust_type),
        ) {
            (Some(sql), Some(ty)) => format!(
                "the `{}` values (a `Vec<{ty}>`, the statement casts to `{sql}`)",
                self.name
            ),
            (Some(sql), None) => format!(
                "the `{}` values (a `Vec<_>` of the Rust type of `{sql}`)",
                self.name
            ),
            _ => format!(
                "the `{}` values (a `Vec<_>` of the type of `{table}.{}`)",
                self.name, self.name
            ),
        }
    }

    /// The PostgreSQL array parameter, cast when the type is known: `$1::text[]`, else `$1`.
    fn pg_array(&self, n: usize) -> String {
        match &self.sql_type {
            Some(ty) if !ty.ends_with(']') => format!("${n}::{ty}[]"),
            _ => format!("${n}"),
        }
    }
}

/// A key predicate `column = ?` of the `WHERE` clause, with the bytes it spans.
#[derive(Debug, Clone)]
struct Key {
    column: Column,
    start: usize,
    end: usize,
}

/// What a fix needs to know of a statement.
#[derive(Debug, Clone)]
pub(crate) struct Form {
    pub(crate) table: String,
    text: String,
    dialect: Dialect,
    kind: StatementKind,
    /// The `column = ?` predicates of the top-level `WHERE`, in order.
    keys: Vec<Key>,
    /// For an `INSERT`: its columns and their values (empty when the statement lists none).
    insert: Vec<(Column, Value)>,
    /// For an `INSERT`: the text before `VALUES` and after its row (`ON CONFLICT …`, `RETURNING …`).
    insert_head: String,
    insert_tail: String,
    /// The statement has a `LIMIT` (per item in the loop, for all items once batched).
    limit: bool,
}

/// Words after which the `WHERE` clause is over.
const CLAUSE_END: [&str; 8] = [
    "GROUP",
    "ORDER",
    "LIMIT",
    "OFFSET",
    "RETURNING",
    "FOR",
    "HAVING",
    "WINDOW",
];

impl Form {
    /// Reads a statement's normalized text.
    pub(crate) fn of(statement: &Statement, table: &str) -> Form {
        let text = statement.text().to_string();
        let toks = tokens(&text);
        let mut form = Form {
            table: table.to_string(),
            dialect: statement.info.dialect,
            kind: statement.kind,
            keys: Vec::new(),
            insert: Vec::new(),
            insert_head: String::new(),
            insert_tail: String::new(),
            limit: toks.iter().any(|t| {
                t.text.eq_ignore_ascii_case("LIMIT") || t.text.eq_ignore_ascii_case("FETCH")
            }),
            text: String::new(),
        };
        form.keys = keys(&toks);
        if statement.kind == StatementKind::Insert {
            read_insert(&text, &toks, &mut form);
        }
        form.text = text;
        form
    }

    /// The first key column.
    pub(crate) fn key(&self) -> Option<&Column> {
        self.keys.first().map(|k| &k.column)
    }

    /// The batched read, for sqlx, in the statement's dialect.
    pub(crate) fn sqlx_read(&self) -> String {
        let Some(key) = self.keys.first() else {
            return format!(
                "Collect the keys of all the items and read `{}` once for all of them (`= ANY($1)` on PostgreSQL, an \
                 `IN (…)` list built with `sqlx::QueryBuilder` on SQLite and MySQL).",
                self.table
            );
        };
        let mut out = match self.dialect {
            Dialect::PostgreSql => self.pg_read(key),
            Dialect::Sqlite => format!("{} {}", self.builder_read(key), self.json_each_read(key)),
            Dialect::MySql | Dialect::TSql => self.builder_read(key),
            Dialect::Generic => format!(
                "On PostgreSQL: {} On SQLite or MySQL: {}",
                self.pg_read(key),
                self.builder_read(key)
            ),
        };
        if self.keys.len() > 1 {
            let others: Vec<String> = self
                .keys
                .iter()
                .skip(1)
                .map(|k| format!("`{}`", k.column.name))
                .collect();
            out.push_str(&format!(
                " The other conditions ({}) stay as they are when they are the same for every item; when they vary \
                 too, match the pairs instead (`({}, …) IN (SELECT * FROM UNNEST($1, $2))` on PostgreSQL).",
                others.join(", "),
                key.column.name
            ));
        }
        if self.limit {
            out.push_str(
                " Its `LIMIT` applied to each item; over all the items at once it must go (or become a window \
                 function, `ROW_NUMBER() OVER (PARTITION BY …)`).",
            );
        }
        out
    }

    fn pg_read(&self, key: &Key) -> String {
        let n = param_number(&self.text, key).unwrap_or(1);
        let batched = self.splice(
            key,
            &format!("{} = ANY({})", key.column.name, key.column.pg_array(n)),
        );
        format!(
            "Collect {} of all the items and run one `{batched}`, binding them as one array (`&values[..]`).",
            key.column.values(&self.table)
        )
    }

    fn builder_read(&self, key: &Key) -> String {
        let before = self.text.get(..key.start).unwrap_or("").trim_end();
        let after = self.text.get(key.end..).unwrap_or("").trim();
        let rest = if after.is_empty() {
            String::new()
        } else {
            format!(" then `q.push(\" {after}\")`, binding its own values with `push_bind`;")
        };
        format!(
            "Collect {values} of all the items and build one `{before} {col} IN (…)` with `sqlx::QueryBuilder`: \
             `let mut q = QueryBuilder::new(\"{before} {col} IN (\"); let mut list = q.separated(\", \"); for v in &values \
             {{ list.push_bind(v); }} list.push_unseparated(\")\");`{rest} then `q.build().fetch_all(&pool)`.",
            values = key.column.values(&self.table),
            col = key.column.name,
        )
    }

    fn json_each_read(&self, key: &Key) -> String {
        let batched = self.splice(
            key,
            &format!("{} IN (SELECT value FROM json_each(?))", key.column.name),
        );
        format!(
            "Or, with one parameter whatever the count: `{batched}`, binding the values as one JSON array text."
        )
    }

    /// The text with a key predicate replaced.
    fn splice(&self, key: &Key, with: &str) -> String {
        format!(
            "{}{}{}",
            self.text.get(..key.start).unwrap_or(""),
            with,
            self.text.get(key.end..).unwrap_or("")
        )
    }

    /// The batched insert, for sqlx.
    pub(crate) fn sqlx_insert(&self) -> String {
        if self.insert.is_empty() {
            return format!(
                "Insert all the rows in one statement: `sqlx::QueryBuilder::push_values` for a multi-row `VALUES` \
                 (list the columns of `{}` in the statement), or on PostgreSQL `INSERT … SELECT * FROM UNNEST(…)` with \
                 one array per column.",
                self.table
            );
        }
        let bound: Vec<&Column> = self
            .insert
            .iter()
            .filter(|(_, v)| matches!(v, Value::Bound(_)))
            .map(|(c, _)| c)
            .collect();
        let arrays = bound
            .iter()
            .map(|c| format!("{} ({})", c.name, c.vec()))
            .collect::<Vec<_>>()
            .join(", ");
        let pg = || {
            let params: Vec<String> = bound
                .iter()
                .enumerate()
                .map(|(i, c)| c.pg_array(i + 1))
                .collect();
            let all_bound = bound.len() == self.insert.len();
            let select = if all_bound {
                format!("SELECT * FROM UNNEST({})", params.join(", "))
            } else {
                let exprs: Vec<String> = self
                    .insert
                    .iter()
                    .map(|(c, v)| match v {
                        Value::Bound(_) => format!("v.{}", c.name),
                        Value::Expr(e) => e.clone(),
                    })
                    .collect();
                let names: Vec<&str> = bound.iter().map(|c| c.name.as_str()).collect();
                format!(
                    "SELECT {} FROM UNNEST({}) AS v({})",
                    exprs.join(", "),
                    params.join(", "),
                    names.join(", ")
                )
            };
            format!(
                "One `{head} {select}{tail}`, binding one array per column: {arrays}.",
                head = self.insert_head,
                tail = spaced(&self.insert_tail),
            )
        };
        let builder = || {
            let pushes: String = self
                .insert
                .iter()
                .map(|(c, v)| match v {
                    Value::Bound(_) => format!(".push_bind(row.{})", c.name),
                    Value::Expr(e) => format!(".push(\"{e}\")"),
                })
                .collect();
            let tail = if self.insert_tail.is_empty() {
                String::new()
            } else {
                format!(" q.push(\" {}\");", self.insert_tail)
            };
            format!(
                "One statement for all rows with `sqlx::QueryBuilder`: `let mut q = QueryBuilder::new(\"{head} \"); \
                 q.push_values(&rows, |mut b, row| {{ b{pushes}; }});{tail}` (keep each statement under the database's \
                 limit on bound parameters, {per} per row here).",
                head = self.insert_head,
                per = bound.len(),
            )
        };
        let copy = format!(
            " For thousands of rows, `COPY {} FROM STDIN` (`copy_in_raw`).",
            self.table
        );
        match self.dialect {
            Dialect::PostgreSql => format!("{} Or {}{copy}", pg(), lower_first(&builder())),
            Dialect::Sqlite | Dialect::MySql | Dialect::TSql => builder(),
            Dialect::Generic => {
                format!("On PostgreSQL: {} On SQLite or MySQL: {}", pg(), builder())
            }
        }
    }

    /// The batched delete or update by key, for sqlx.
    pub(crate) fn sqlx_write_by_key(&self) -> String {
        let Some(key) = self.keys.first() else {
            return format!(
                "One statement for all the rows of `{}`: `UPDATE … FROM UNNEST(…)` on PostgreSQL, or the keys in one \
                 `IN (…)` list built with `sqlx::QueryBuilder`.",
                self.table
            );
        };
        if self.kind == StatementKind::Delete
            || self.keys.len() == 1 && self.kind != StatementKind::Update
        {
            return match self.dialect {
                Dialect::PostgreSql => self.pg_read(key),
                Dialect::Sqlite | Dialect::MySql | Dialect::TSql => self.builder_read(key),
                Dialect::Generic => format!(
                    "On PostgreSQL: {} On SQLite or MySQL: {}",
                    self.pg_read(key),
                    self.builder_read(key)
                ),
            };
        }
        let col = &key.column.name;
        let table = &self.table;
        let pg = format!(
            "One `UPDATE {table} SET … FROM UNNEST($1, …) AS v({col}, …) WHERE {table}.{col} = v.{col}`, binding \
             {values} and one array per assigned column (when every row gets the same values, \
             `WHERE {col} = ANY($1)` is enough).",
            values = key.column.values(table),
        );
        let other = format!(
            "When every row gets the same values, one `UPDATE {table} SET … WHERE {col} IN (…)` built with \
             `sqlx::QueryBuilder` (`separated`, `push_bind`); otherwise run the updates in one transaction, or \
             `SET x = CASE {col} WHEN ? THEN ? … END`."
        );
        match self.dialect {
            Dialect::PostgreSql => pg,
            Dialect::Sqlite | Dialect::MySql | Dialect::TSql => other,
            Dialect::Generic => format!("On PostgreSQL: {pg} On SQLite or MySQL: {other}"),
        }
    }

    /// The batched insert, for diesel: the statement's columns as `eq` tuples.
    pub(crate) fn diesel_insert(&self) -> String {
        let table = &self.table;
        let values = if self.insert.is_empty() {
            "&rows".to_string()
        } else {
            let cols: Vec<String> = self
                .insert
                .iter()
                .filter(|(_, v)| matches!(v, Value::Bound(_)))
                .map(|(c, _)| format!("{table}::{0}.eq(&row.{0})", c.name))
                .collect();
            let one = if cols.len() == 1 {
                cols.concat()
            } else {
                format!("({})", cols.join(", "))
            };
            format!("rows.iter().map(|row| {one}).collect::<Vec<_>>()")
        };
        let conflict = if self
            .insert_tail
            .to_ascii_uppercase()
            .contains("ON CONFLICT DO NOTHING")
        {
            ".on_conflict_do_nothing()"
        } else {
            ""
        };
        let run = if self.insert_tail.to_ascii_uppercase().contains("RETURNING") {
            ".get_results(conn)?"
        } else {
            ".execute(conn)?"
        };
        format!(
            "`diesel::insert_into({table}::table).values({values}){conflict}{run}` writes all rows at once."
        )
    }

    /// The batched read, for diesel and SeaORM: `eq_any`/`is_in` on the key column.
    pub(crate) fn key_name(&self) -> String {
        self.key()
            .map_or_else(|| "id".to_string(), |k| k.name.clone())
    }
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_lowercase().chain(chars).collect())
}

fn spaced(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!(" {tail}")
    }
}

/// The number of a key's placeholder (`$3` → 3), when numbered.
fn param_number(text: &str, key: &Key) -> Option<usize> {
    let span = text.get(key.start..key.end)?;
    let at = span.find('$')?;
    let digits: String = span
        .get(at + 1..)?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The `column = ?` predicates of the top-level `WHERE` clause (outside parentheses and subqueries).
fn keys(toks: &[Tok<'_>]) -> Vec<Key> {
    let mut keys = Vec::new();
    let mut depth = 0usize;
    let mut in_where = false;
    let mut i = 0;
    while let Some(tok) = toks.get(i) {
        match tok.text {
            "(" => depth += 1,
            ")" => depth = depth.saturating_sub(1),
            w if depth == 0 && w.eq_ignore_ascii_case("WHERE") => in_where = true,
            w if depth == 0 && CLAUSE_END.iter().any(|k| w.eq_ignore_ascii_case(k)) => {
                in_where = false
            }
            _ => {}
        }
        if in_where
            && depth == 0
            && let Some(key) = key_at(toks, i)
        {
            i = toks
                .iter()
                .position(|t| t.end == key.end)
                .map_or(i + 1, |p| p + 1);
            keys.push(key);
            continue;
        }
        i += 1;
    }
    keys
}

/// A `column = value` predicate starting at token `i`, whose value is a bound parameter.
fn key_at(toks: &[Tok<'_>], i: usize) -> Option<Key> {
    let column = toks.get(i)?;
    let eq = toks.get(i + 1)?;
    if eq.text != "=" {
        return None;
    }
    let name = name(column.text)?;
    let rest = toks.get(i + 2..)?;
    // The value ends at the next top-level AND/OR or clause keyword.
    let mut depth = 0usize;
    let len = rest
        .iter()
        .position(|t| {
            match t.text {
                "(" => depth += 1,
                ")" if depth == 0 => return true,
                ")" => depth -= 1,
                w if depth == 0
                    && (w.eq_ignore_ascii_case("AND")
                        || w.eq_ignore_ascii_case("OR")
                        || CLAUSE_END.iter().any(|k| w.eq_ignore_ascii_case(k))) =>
                {
                    return true;
                }
                _ => {}
            }
            false
        })
        .unwrap_or(rest.len());
    let words = rest.get(..len)?;
    let Value::Bound(sql_type) = value(words, "") else {
        return None;
    };
    Some(Key {
        column: Column { name, sql_type },
        start: column.start,
        end: words.last()?.end,
    })
}

/// `INSERT INTO t(a, b) VALUES ($1, $2) tail`: the columns, their values, the head and the tail.
fn read_insert(text: &str, toks: &[Tok<'_>], form: &mut Form) {
    let Some(values_at) = toks
        .iter()
        .position(|t| t.text.eq_ignore_ascii_case("VALUES"))
    else {
        return;
    };
    let Some(open_cols) = toks.iter().take(values_at).position(|t| t.text == "(") else {
        return;
    };
    let columns = split_list(toks.get(open_cols + 1..values_at).unwrap_or_default());
    let Some(open_row) = toks.get(values_at + 1).filter(|t| t.text == "(") else {
        return;
    };
    let row_start = values_at + 2;
    let mut depth = 0usize;
    let Some(row_len) = toks
        .get(row_start..)
        .unwrap_or_default()
        .iter()
        .position(|t| {
            match t.text {
                "(" => depth += 1,
                ")" if depth == 0 => return true,
                ")" => depth -= 1,
                _ => {}
            }
            false
        })
    else {
        return;
    };
    let row = split_list(toks.get(row_start..row_start + row_len).unwrap_or_default());
    let Some(close_row) = toks.get(row_start + row_len) else {
        return;
    };
    // The column list ends with its `)`, the token before `VALUES`.
    let columns = match columns.split_last() {
        Some((last, init)) => {
            let mut all: Vec<&[Tok<'_>]> = init.to_vec();
            all.push(last.split_last().map_or(*last, |(_, l)| l));
            all
        }
        None => return,
    };
    if columns.len() != row.len() {
        return;
    }
    let mut pairs = Vec::new();
    for (column, expr) in columns.iter().zip(&row) {
        let [only] = column else { return };
        let Some(name) = name(only.text) else { return };
        let value = value(expr, text);
        let sql_type = match &value {
            Value::Bound(ty) => ty.clone(),
            Value::Expr(_) => None,
        };
        pairs.push((Column { name, sql_type }, value));
    }
    let _ = open_row;
    form.insert = pairs;
    form.insert_head = text
        .get(..toks.get(values_at).map_or(0, |t| t.start))
        .unwrap_or("")
        .trim_end()
        .to_string();
    form.insert_tail = text.get(close_row.end..).unwrap_or("").trim().to_string();
}

/// Splits tokens at top-level commas.
fn split_list<'t, 'a>(toks: &'t [Tok<'a>]) -> Vec<&'t [Tok<'a>]> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, t) in toks.iter().enumerate() {
        match t.text {
            "(" => depth += 1,
            ")" => depth = depth.saturating_sub(1),
            "," if depth == 0 => {
                out.push(toks.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(toks.get(start..).unwrap_or_default());
    out
}
