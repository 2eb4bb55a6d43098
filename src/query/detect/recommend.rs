//! Fix texts for each finding, for sqlx, diesel and SeaORM.
//!
//! Texts name tables and columns taken from the normalized statement (identifiers only, checked character by
//! character), never values: the normalized text has none, and nothing else goes in.

use super::batch::Form;
use super::context::Statement;
use super::{FindingKind, Recommendation};
use crate::query::model::{Dialect, StatementKind};

/// Longest identifier used in a text; longer ones are replaced by a generic word.
const MAX_IDENT: usize = 64;

/// An identifier as it can appear in a fix text, or `None`.
fn ident(word: &str) -> Option<String> {
    let word = word.trim_matches(|c| matches!(c, '"' | '`' | '[' | ']'));
    let word = word.rsplit('.').next().unwrap_or(word);
    let word = word.trim_matches(|c| matches!(c, '"' | '`' | '[' | ']'));
    let valid = !word.is_empty()
        && word.len() <= MAX_IDENT
        && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && word.chars().next().is_some_and(|c| !c.is_ascii_digit());
    valid.then(|| word.to_ascii_lowercase())
}

/// The first table named after `FROM`, `INTO` or `UPDATE` in a normalized text.
pub(crate) fn table_from_text(text: &str) -> Option<String> {
    let mut words = text.split_whitespace();
    while let Some(word) = words.next() {
        if ["from", "into", "update"]
            .iter()
            .any(|k| word.eq_ignore_ascii_case(k))
        {
            let next = words.next()?;
            let name = next.split('(').next().unwrap_or(next);
            if let Some(table) = ident(name) {
                return Some(table);
            }
        }
    }
    None
}

/// Whether the `WHERE` clause is one `column = ?` and nothing else (optionally followed by `LIMIT ?`): the
/// text-only stand-in for the parser's `single_key_predicate`.
pub(crate) fn single_key_in_text(text: &str) -> bool {
    let upper = text.to_ascii_uppercase();
    let Some(where_at) = upper.rfind(" WHERE ") else {
        return false;
    };
    let Some(rest) = upper.get(where_at + " WHERE ".len()..) else {
        return false;
    };
    let words: Vec<&str> = rest.split_whitespace().collect();
    match words.as_slice() {
        [column, "=", "?"] | [column, "=", "?", "LIMIT", "?"] => ident(column).is_some(),
        _ => false,
    }
}

/// A table name as a Rust type: `quotation_lines` → `QuotationLine` (a naive singular).
fn type_name(table: &str) -> String {
    let singular = singular(table);
    singular
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// A table name as a SeaORM entity module: `quotation_lines` → `quotation_line`.
fn singular(table: &str) -> String {
    if let Some(stem) = table.strip_suffix("ies") {
        return format!("{stem}y");
    }
    for suffix in ["sses", "xes", "ches", "shes"] {
        if table.ends_with(suffix) {
            return table.get(..table.len() - 2).unwrap_or(table).to_string();
        }
    }
    match table.strip_suffix('s') {
        Some(stem) if !stem.ends_with('s') && !stem.ends_with('u') && !stem.is_empty() => {
            stem.to_string()
        }
        _ => table.to_string(),
    }
}

fn ms(value: f64) -> String {
    format!("{value:.1} ms")
}

/// What an N+1 recommendation is written from.
pub(crate) struct NPlusOne<'a> {
    pub(crate) statement: &'a Statement,
    pub(crate) source: Option<&'a Statement>,
    pub(crate) count: u64,
    pub(crate) saving_ms: f64,
}

/// One query per key instead of one per row: the statement's own text with its key predicate batched
/// (`= ANY($1)` on PostgreSQL, an `IN (…)` list elsewhere), `belonging_to`/`eq_any`, the SeaORM loaders.
pub(crate) fn n_plus_one(input: &NPlusOne<'_>) -> Recommendation {
    let table = main_table(input.statement);
    let form = Form::of(input.statement, &table);
    let parent = input.source.and_then(|s| s.tables().into_iter().next());
    let from = parent.as_deref().map_or_else(String::new, |p| {
        format!(", once per row of `{p}` returned by an earlier query")
    });
    let summary = format!(
        "`{table}` is read one key at a time: {count} queries{from}. Fetch all the keys in one query (or JOIN it \
         into the first one); saves about {saving}.",
        count = input.count,
        saving = ms(input.saving_ms),
    );
    let join = parent.as_deref().map_or_else(String::new, |p| {
        format!(" Or JOIN `{table}` into the query on `{p}` and read both in one round trip.")
    });
    let (diesel, sea_orm) = read_fixes(&form, parent.as_deref());
    Recommendation {
        summary,
        sqlx: format!(
            "{batched} Then match the rows back to their items with a `HashMap` keyed by `{key}`.{join}",
            batched = form.sqlx_read(),
            key = form.key_name(),
        ),
        diesel,
        sea_orm,
        estimated_saving_ms: input.saving_ms,
    }
}

/// The diesel and SeaORM forms of a batched read: by a foreign key, the association loaders; by another key,
/// `eq_any`/`is_in` on that column.
fn read_fixes(form: &Form, parent: Option<&str>) -> (String, String) {
    let table = &form.table;
    let key = form.key_name();
    let parents = parent.unwrap_or("parents");
    let child = type_name(table);
    let module = singular(table);
    let by_foreign_key = key != "id" && key.ends_with("_id");
    let diesel = if by_foreign_key {
        format!(
            "Load the children of all the parents at once: `{child}::belonging_to(&{parents}).load::<{child}>(conn)?`, \
             then `.grouped_by(&{parents})` to pair each parent with its rows (`#[derive(Associations)]` on `{child}`)."
        )
    } else {
        format!(
            "Collect the `{key}` values, then one query: `{table}::table.filter({table}::{key}.eq_any(&values)).load::<{child}>(conn)?`, \
             and look the rows up by `{key}`."
        )
    };
    let sea_orm = if by_foreign_key {
        format!(
            "With the parents loaded, `{parents}.load_many({module}::Entity, db).await?` (`LoaderTrait`) returns each \
             parent's rows in one query; or query them together with `find_with_related({module}::Entity)`."
        )
    } else if key == "id" {
        format!(
            "With the parents loaded, `{parents}.load_one({module}::Entity, db).await?` (`LoaderTrait`) fetches all the \
             related rows in one query; or `{module}::Entity::find().filter({module}::Column::Id.is_in(values))`."
        )
    } else {
        format!(
            "Collect the `{key}` values, then `{module}::Entity::find().filter({module}::Column::{column}.is_in(values)).all(db).await?`.",
            column = type_name(&key),
        )
    };
    (diesel, sea_orm)
}

/// The first table of a statement, or a generic word.
fn main_table(statement: &Statement) -> String {
    statement
        .tables()
        .into_iter()
        .next()
        .unwrap_or_else(|| "the table".to_string())
}

/// The same query with the same parameters: run it once.
pub(crate) fn duplicate(statement: &Statement, count: u64, saving_ms: f64) -> Recommendation {
    let table = main_table(statement);
    Recommendation {
        summary: format!(
            "The same query on `{table}` ran {count} times with the same parameters: run it once and reuse the \
             result; saves about {saving}.",
            saving = ms(saving_ms),
        ),
        sqlx: "Hoist the `fetch_*` call out of the loop, or keep its result in a per-request `HashMap` keyed by the \
               bound values and look it up before querying."
            .to_string(),
        diesel: "Hoist the `.load`/`.first` call out of the loop, or memoise its result per request (a `HashMap` \
                 keyed by the filter values)."
            .to_string(),
        sea_orm: "Hoist the `find…().one(db)`/`.all(db)` call out of the loop, or memoise its result per request \
                  (a `HashMap` keyed by the filter values)."
            .to_string(),
        estimated_saving_ms: saving_ms,
    }
}

/// The same write statement many times: one multi-row statement, written from the statement's own columns.
pub(crate) fn batchable_writes(
    statement: &Statement,
    count: u64,
    saving_ms: f64,
) -> Recommendation {
    let table = main_table(statement);
    let (sqlx, diesel, sea_orm) = write_fixes(statement, &table);
    Recommendation {
        summary: format!(
            "The same write on `{table}` ran {count} times: batch it into one statement; saves about {saving}.",
            saving = ms(saving_ms),
        ),
        sqlx,
        diesel,
        sea_orm,
        estimated_saving_ms: saving_ms,
    }
}

/// The sqlx, diesel and SeaORM forms of one batched write.
fn write_fixes(statement: &Statement, table: &str) -> (String, String, String) {
    let form = Form::of(statement, table);
    let key = form.key_name();
    let entity = singular(table);
    let column = type_name(&key);
    match statement.kind {
        StatementKind::Insert => (
            form.sqlx_insert(),
            form.diesel_insert(),
            format!(
                "`{entity}::Entity::insert_many(models).exec(db).await?` writes all rows at once (one `ActiveModel` \
                 per row)."
            ),
        ),
        StatementKind::Delete => (
            form.sqlx_write_by_key(),
            format!(
                "`diesel::delete({table}::table.filter({table}::{key}.eq_any(&values))).execute(conn)?`."
            ),
            format!(
                "`{entity}::Entity::delete_many().filter({entity}::Column::{column}.is_in(values)).exec(db).await?`."
            ),
        ),
        _ => (
            form.sqlx_write_by_key(),
            format!(
                "When every row gets the same values, `diesel::update({table}::table.filter({table}::{key}.eq_any(&values)))`; \
                 otherwise run the updates in one transaction."
            ),
            format!(
                "When every row gets the same values, `{entity}::Entity::update_many().filter({entity}::Column::{column}.is_in(values))`; \
                 otherwise run the updates in one transaction."
            ),
        ),
    }
}

/// One step of a loop, as its combined fix lists it.
pub(crate) struct LoopStep<'a> {
    pub(crate) statement: &'a Statement,
    pub(crate) kind: FindingKind,
    pub(crate) count: u64,
}

/// A loop running several statements per item: one statement per step for all the items, before the loop.
pub(crate) fn mn_plus_one(
    steps: &[LoopStep<'_>],
    parent: Option<&Statement>,
    iterations: u64,
    saving_ms: f64,
) -> Recommendation {
    let parent_table = parent.and_then(|p| p.tables().into_iter().next());
    let mut tables: Vec<String> = Vec::new();
    let (mut sqlx, mut diesel, mut sea_orm) = (Vec::new(), Vec::new(), Vec::new());
    for (i, step) in steps.iter().enumerate() {
        let table = main_table(step.statement);
        if !tables.contains(&table) {
            tables.push(table.clone());
        }
        let what = match step.kind {
            FindingKind::Duplicate => "the same query each time",
            _ if step.statement.is_write() => "a write per item",
            _ => "a read per item",
        };
        let head = format!(
            "({n}) `{table}`, {what}, {count}×:",
            n = i + 1,
            count = step.count
        );
        if step.kind == FindingKind::Duplicate {
            let reuse = "run it once before the loop and reuse its result.";
            sqlx.push(format!("{head} {reuse}"));
            diesel.push(format!("{head} {reuse}"));
            sea_orm.push(format!("{head} {reuse}"));
        } else if step.statement.is_write() {
            let (s, d, o) = write_fixes(step.statement, &table);
            sqlx.push(format!("{head} {s}"));
            diesel.push(format!("{head} {d}"));
            sea_orm.push(format!("{head} {o}"));
        } else {
            let form = Form::of(step.statement, &table);
            let (d, o) = read_fixes(&form, parent_table.as_deref());
            sqlx.push(format!("{head} {}", form.sqlx_read()));
            diesel.push(format!("{head} {d}"));
            sea_orm.push(format!("{head} {o}"));
        }
    }
    let list = tables
        .iter()
        .map(|t| format!("`{t}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let over = parent_table
        .as_deref()
        .map_or_else(String::new, |p| format!(" over the rows of `{p}`"));
    let summary = format!(
        "One loop{over} ran {n} statements per item, {iterations} times (on {list}): run each once for all the \
         items before the loop, then pair the results in memory; saves about {saving}.",
        n = steps.len(),
        saving = ms(saving_ms),
    );
    let reads_only = steps.iter().all(|s| !s.statement.is_write());
    let join = match (&parent_table, reads_only) {
        (Some(p), true) => {
            format!(" Or JOIN {list} into the query on `{p}` and read them in one round trip.")
        }
        _ => String::new(),
    };
    let outro = format!(
        " Then pair the rows with their items in memory (a `HashMap` by key), in one transaction when the writes \
         must stay together.{join}"
    );
    Recommendation {
        summary,
        sqlx: format!(
            "Before the loop, one statement per step: {}{outro}",
            sqlx.join(" ")
        ),
        diesel: format!(
            "Before the loop, one statement per step: {}{outro}",
            diesel.join(" ")
        ),
        sea_orm: format!(
            "Before the loop, one statement per step: {}{outro}",
            sea_orm.join(" ")
        ),
        estimated_saving_ms: saving_ms,
    }
}

/// A slow execution: look at its plan.
pub(crate) fn slow_query(statement: &Statement, max_ms: f64, threshold_ms: f64) -> Recommendation {
    let table = main_table(statement);
    let explain = match statement.info.dialect {
        Dialect::MySql => "EXPLAIN ANALYZE",
        Dialect::Sqlite => "EXPLAIN QUERY PLAN",
        Dialect::TSql => "SET STATISTICS PROFILE ON",
        _ => "EXPLAIN (ANALYZE, BUFFERS)",
    };
    let note = "Check the plan for a sequential scan on the filtered or joined columns, add the missing index in a \
                migration, and page large results.";
    Recommendation {
        summary: format!(
            "A query on `{table}` took {max} (threshold {threshold}): run `{explain}` on it. {note}",
            max = ms(max_ms),
            threshold = ms(threshold_ms),
        ),
        sqlx: format!(
            "Run `{explain}` on the statement, add the index with a `sqlx migrate` migration (`CREATE INDEX \
             CONCURRENTLY` on PostgreSQL), and stream big results with `fetch` instead of `fetch_all`."
        ),
        diesel: format!(
            "Run `{explain}` on the statement (`diesel::debug_query` prints it), add the index in a migration, and \
             page with `.limit()` and a keyset filter."
        ),
        sea_orm: format!(
            "Run `{explain}` on the statement (`build(DbBackend::…)` prints it), add the index in a migration, and \
             page with `.paginate(db, n)` or `cursor_by`."
        ),
        estimated_saving_ms: 0.0,
    }
}

/// A `SELECT *`: name the columns.
pub(crate) fn select_star(statement: &Statement) -> Recommendation {
    let table = main_table(statement);
    let model = type_name(&table);
    let entity = singular(&table);
    Recommendation {
        summary: format!(
            "`SELECT *` on `{table}` reads every column, also new ones nobody uses: select only the columns you need."
        ),
        sqlx: "List the columns in the query (`query_as!` checks them against the struct at compile time).".to_string(),
        diesel: format!(
            "Derive `Selectable` on `{model}` and query with `.select({model}::as_select())`, or select a tuple of \
             columns."
        ),
        sea_orm: format!(
            "`{entity}::Entity::find().select_only().columns([…])`, or `into_partial_model` with a smaller struct."
        ),
        estimated_saving_ms: 0.0,
    }
}

/// Many rows with no `LIMIT`: paginate.
pub(crate) fn large_result(statement: &Statement, rows: u64) -> Recommendation {
    let table = main_table(statement);
    let entity = singular(&table);
    Recommendation {
        summary: format!(
            "A query on `{table}` returned {rows} rows without `LIMIT`: paginate it (keyset pagination keeps deep \
             pages fast), or aggregate in SQL."
        ),
        sqlx: format!(
            "Add `ORDER BY id LIMIT $1` and page with `WHERE id > $2` (keyset); when all rows are really needed, \
             stream them with `fetch` instead of collecting with `fetch_all`. Table: `{table}`."
        ),
        diesel: format!(
            "`{table}::table.order({table}::id).filter({table}::id.gt(last)).limit(n)` (keyset pages)."
        ),
        sea_orm: format!(
            "`{entity}::Entity::find().paginate(db, n)` or `.cursor_by({entity}::Column::Id)` for keyset pages."
        ),
        estimated_saving_ms: 0.0,
    }
}

/// Independent reads one after the other: run them together.
pub(crate) fn parallelizable(queries: u64, saving_ms: f64) -> Recommendation {
    Recommendation {
        summary: format!(
            "{queries} independent queries ran one after the other: run them concurrently on separate pool \
             connections; saves about {saving}.",
            saving = ms(saving_ms),
        ),
        sqlx: "`tokio::try_join!(a.fetch_all(&pool), b.fetch_all(&pool))` (pass the pool, not one connection or \
               transaction, so each query gets its own connection)."
            .to_string(),
        diesel: "With diesel-async and a pool, run the loads on separate connections under `tokio::try_join!`; \
                 with sync diesel, `spawn_blocking` each on its own pooled connection."
            .to_string(),
        sea_orm: "`futures::try_join!(a.all(db), b.all(db))` on a pooled `DatabaseConnection`.".to_string(),
        estimated_saving_ms: saving_ms,
    }
}

/// More queries than the route's budget or its usual count.
pub(crate) fn budget(
    queries: u64,
    limit: f64,
    top: Option<(&Statement, u64)>,
    regression: bool,
) -> Recommendation {
    let top = top.map_or_else(String::new, |(statement, count)| {
        format!(
            " The most frequent statement (on `{table}`) ran {count} times.",
            table = main_table(statement)
        )
    });
    let what = if regression {
        format!("{queries} queries, far more than its usual count (limit {limit:.0})")
    } else {
        format!("{queries} queries, over the route's budget of {limit:.0}")
    };
    Recommendation {
        summary: format!("This request ran {what}.{top} Look for loops that query, and batch them."),
        sqlx: "Batch lookups with `= ANY($1)` or `IN (…)` lists, JOIN related tables, and cache reference data.".to_string(),
        diesel: "Batch with `eq_any`, load children with `belonging_to` + `grouped_by`, and JOIN with `inner_join`."
            .to_string(),
        sea_orm: "Batch with `is_in`, load relations with `LoaderTrait` or `find_with_related`.".to_string(),
        estimated_saving_ms: 0.0,
    }
}

/// Time spent waiting for a pool connection.
pub(crate) fn pool_wait(waits: u64, wait_ms: f64) -> Recommendation {
    Recommendation {
        summary: format!(
            "The request waited {wait} for pool connections ({waits} slow acquisitions): the pool is saturated. This \
             time is not query time.",
            wait = ms(wait_ms),
        ),
        sqlx: "Raise `PoolOptions::max_connections` within the server's limit, keep transactions short, and do not \
               hold a `PoolConnection` across slow awaits (HTTP calls); check for long-running queries holding \
               connections."
            .to_string(),
        diesel: "Raise the pool's `max_size` (r2d2/deadpool/bb8), keep transactions short, and return connections \
                 before slow work."
            .to_string(),
        sea_orm: "Raise `ConnectOptions::max_connections`, keep transactions short, and do not hold a transaction \
                  across slow awaits."
            .to_string(),
        estimated_saving_ms: wait_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_only() {
        assert_eq!(
            ident("\"public\".\"Customers\""),
            Some("customers".to_string())
        );
        assert_eq!(ident("q.customer_id"), Some("customer_id".to_string()));
        assert_eq!(ident("?"), None);
        assert_eq!(ident("'x'"), None);
        assert_eq!(ident("1abc"), None);
    }

    #[test]
    fn tables_and_keys_from_text() {
        let text = "SELECT id, name FROM public.customers WHERE id = ?";
        assert_eq!(table_from_text(text), Some("customers".to_string()));
        assert!(single_key_in_text(text));
        let text = "SELECT * FROM lines l WHERE l.quotation_id = $1 AND l.deleted = ?";
        assert!(!single_key_in_text(text));
        assert_eq!(
            table_from_text("INSERT INTO audit (a) VALUES (?)"),
            Some("audit".to_string())
        );
        assert_eq!(table_from_text("SELECT ?"), None);
    }

    #[test]
    fn names() {
        assert_eq!(type_name("quotation_lines"), "QuotationLine");
        assert_eq!(type_name("categories"), "Category");
        assert_eq!(type_name("addresses"), "Address");
        assert_eq!(type_name("status"), "Status");
        assert_eq!(singular("glass"), "glass");
        assert_eq!(type_name(""), "");
    }
}
