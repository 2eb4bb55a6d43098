//! Enrichment: what the SQL parser finds in a normalized statement (tables, `SELECT *`, writes without
//! `WHERE`, limits, joins). Runs once per fingerprint, off the request path.
//!
//! The parser is bounded three ways: the input length ([`MAX_PARSE_LEN`] bytes and a token budget), the
//! parser's own recursion counter ([`RECURSION_LIMIT`]), and the walk over the tree, which stops descending
//! at depth 64. The tree is never printed or cloned (the known stack-overflow sites in sqlparser).

use sqlparser::ast::{
    BinaryOperator, Delete, Expr, FromTable, InTarget, Insert, LimitClause, ObjectName, Query,
    Select, SelectItem, SetExpr, Statement, TableFactor, TableObject, TableWithJoins, Update,
    UpdateTableFromKind,
};
use sqlparser::dialect::{
    GenericDialect, MsSqlDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect,
};
use sqlparser::parser::{Parser, ParserError};

use super::model::{Dialect, Enrichment, FingerprintInfo, StatementKind};

/// The parser's recursion limit (nesting of expressions and subqueries).
pub const RECURSION_LIMIT: usize = 50;

/// Longest statement handed to the parser, in bytes; longer ones are `skipped: too_large`.
pub const MAX_PARSE_LEN: usize = 32 * 1024;

/// Most tokens handed to the parser: a flat `1 + 1 + …` chain parses without recursion into a tree as deep as
/// it is long, and dropping that tree recurses.
const MAX_PARSE_TOKENS: usize = 4096;

/// Deepest level of the tree the walk visits.
const MAX_WALK_DEPTH: usize = 64;

/// Most table names reported.
const MAX_TABLES: usize = 16;

/// Parses `normalized` (a [`normalize`](super::normalize)d statement) in `dialect` and reports what it finds.
/// A statement the parser rejects gives `parsed: false` and the reason in `skipped`; this is not an error.
///
/// ```
/// use perfscope::query::{Dialect, StatementKind, enrich};
///
/// let e = enrich("SELECT * FROM orders o JOIN users u ON u.id = o.user_id LIMIT $1", Dialect::PostgreSql);
/// assert!(e.parsed && e.select_star && e.limit_without_order);
/// assert_eq!(e.tables, ["orders", "users"]);
/// assert_eq!((e.kind, e.joins), (Some(StatementKind::Select), 1));
/// ```
pub fn enrich(normalized: &str, dialect: Dialect) -> Enrichment {
    if normalized.len() > MAX_PARSE_LEN || rough_tokens(normalized) > MAX_PARSE_TOKENS {
        return skipped("too_large");
    }
    let parsed = Parser::new(parser_dialect(dialect))
        .with_recursion_limit(RECURSION_LIMIT)
        .try_with_sql(normalized)
        .and_then(|mut parser| parser.parse_statements());
    match parsed {
        Ok(statements) => match statements.as_slice() {
            [statement] => analyze(statement),
            [] => skipped("syntax"),
            _ => skipped("multiple_statements"),
        },
        Err(ParserError::RecursionLimitExceeded) => skipped("too_deep"),
        Err(_) => skipped("syntax"),
    }
}

impl FingerprintInfo {
    /// The parser's findings for this fingerprint, computed on first use (then kept).
    pub fn enrichment(&self) -> &Enrichment {
        self.enrichment
            .get_or_init(|| enrich(&self.text, self.dialect))
    }
}

fn parser_dialect(dialect: Dialect) -> &'static dyn sqlparser::dialect::Dialect {
    match dialect {
        Dialect::PostgreSql => &PostgreSqlDialect {},
        Dialect::MySql => &MySqlDialect {},
        Dialect::Sqlite => &SQLiteDialect {},
        Dialect::Generic => &GenericDialect {},
        Dialect::TSql => &MsSqlDialect {},
    }
}

fn skipped(reason: &'static str) -> Enrichment {
    Enrichment {
        skipped: Some(reason),
        ..Enrichment::default()
    }
}

/// An upper bound on the parser's token count: blanks and punctuation each may end a token.
fn rough_tokens(s: &str) -> usize {
    s.bytes()
        .filter(|b| b.is_ascii_whitespace() || b.is_ascii_punctuation())
        .count()
        + 1
}

fn analyze(statement: &Statement) -> Enrichment {
    let mut walk = Walk::default();
    let mut e = Enrichment {
        parsed: true,
        kind: Some(kind_of(statement)),
        ..Enrichment::default()
    };
    match statement {
        Statement::Query(query) => {
            walk.query(query, 0);
            outer_query(query, &mut e);
        }
        Statement::Insert(insert) => walk.insert(insert),
        Statement::Update(update) => {
            walk.update(update);
            e.write_without_where = update.selection.is_none();
            e.has_limit = update.limit.is_some();
            e.limit_without_order = e.has_limit && update.order_by.is_empty();
            e.single_key_predicate = update.selection.as_ref().is_some_and(is_key_lookup);
            e.joins = count_joins(std::slice::from_ref(&update.table));
        }
        Statement::Delete(delete) => {
            walk.delete(delete);
            e.write_without_where = delete.selection.is_none();
            e.has_limit = delete.limit.is_some();
            e.limit_without_order = e.has_limit && delete.order_by.is_empty();
            e.single_key_predicate = delete.selection.as_ref().is_some_and(is_key_lookup);
            e.joins = count_joins(delete_from(delete));
        }
        _ => {}
    }
    e.tables = walk.finish();
    e
}

/// Findings about the outermost query: its projection, limit, predicate and joins.
fn outer_query(query: &Query, e: &mut Enrichment) {
    e.has_limit = match &query.limit_clause {
        Some(LimitClause::LimitOffset { limit, .. }) => limit.is_some(),
        Some(LimitClause::OffsetCommaLimit { .. }) => true,
        None => false,
    } || query.fetch.is_some();
    let Some(select) = outer_select(query) else {
        e.limit_without_order = e.has_limit && query.order_by.is_none();
        return;
    };
    e.has_limit |= select.top.is_some();
    e.limit_without_order = e.has_limit && query.order_by.is_none();
    e.select_star = select.projection.iter().any(|item| {
        matches!(
            item,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
        )
    });
    e.single_key_predicate = select.selection.as_ref().is_some_and(is_key_lookup);
    e.joins = count_joins(&select.from);
}

/// The leftmost `SELECT` of a query body (through parentheses and set operations), a few levels deep at most.
fn outer_select(query: &Query) -> Option<&Select> {
    let mut body: &SetExpr = &query.body;
    for _ in 0..MAX_WALK_DEPTH {
        body = match body {
            SetExpr::Select(select) => return Some(select),
            SetExpr::Query(inner) => &inner.body,
            SetExpr::SetOperation { left, .. } => left,
            _ => return None,
        };
    }
    None
}

/// `col = ?` (either way round, parentheses and casts allowed around the value).
fn is_key_lookup(expr: &Expr) -> bool {
    let Expr::BinaryOp {
        left,
        op: BinaryOperator::Eq,
        right,
    } = strip_nested(expr)
    else {
        return false;
    };
    let (left, right) = (strip_nested(left), strip_nested(right));
    (is_column(left) && is_value(right)) || (is_value(left) && is_column(right))
}

fn strip_nested(mut expr: &Expr) -> &Expr {
    for _ in 0..MAX_WALK_DEPTH {
        match expr {
            Expr::Nested(inner) => expr = inner,
            _ => break,
        }
    }
    expr
}

fn is_column(expr: &Expr) -> bool {
    matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
}

fn is_value(expr: &Expr) -> bool {
    match expr {
        Expr::Value(_) => true,
        Expr::Cast { expr, .. } => matches!(strip_nested(expr), Expr::Value(_)),
        _ => false,
    }
}

/// Explicit joins plus comma-separated tables beyond the first.
fn count_joins(from: &[TableWithJoins]) -> u32 {
    let explicit: usize = from.iter().map(|t| t.joins.len()).sum();
    u32::try_from(explicit + from.len().saturating_sub(1)).unwrap_or(u32::MAX)
}

fn delete_from(delete: &Delete) -> &[TableWithJoins] {
    match &delete.from {
        FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from) => from,
    }
}

fn kind_of(statement: &Statement) -> StatementKind {
    match statement {
        Statement::Query(query) => match &*query.body {
            SetExpr::Insert(_) => StatementKind::Insert,
            SetExpr::Update(_) => StatementKind::Update,
            SetExpr::Delete(_) => StatementKind::Delete,
            _ => StatementKind::Select,
        },
        Statement::Insert(_) => StatementKind::Insert,
        Statement::Update(_) => StatementKind::Update,
        Statement::Delete(_) => StatementKind::Delete,
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => StatementKind::Transaction,
        Statement::Set(_)
        | Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::Reset(_) => StatementKind::Session,
        _ => StatementKind::Other,
    }
}

/// Collects table names, depth-bounded; names of CTEs are not tables.
#[derive(Debug, Default)]
struct Walk {
    tables: Vec<String>,
    ctes: Vec<String>,
}

impl Walk {
    fn finish(self) -> Vec<String> {
        let ctes = self.ctes;
        self.tables
            .into_iter()
            .filter(|t| !ctes.contains(t))
            .take(MAX_TABLES)
            .collect()
    }

    fn name(&mut self, name: &ObjectName) {
        let Some(last) = name.0.last().and_then(|part| part.as_ident()) else {
            return;
        };
        let lower = last.value.to_lowercase();
        // A bound on the list before CTE names are filtered out, so a statement cannot grow it without end.
        if !self.tables.contains(&lower) && self.tables.len() < MAX_TABLES * 4 {
            self.tables.push(lower);
        }
    }

    fn query(&mut self, query: &Query, depth: usize) {
        if depth > MAX_WALK_DEPTH {
            return;
        }
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.push(cte.alias.name.value.to_lowercase());
                self.query(&cte.query, depth + 1);
            }
        }
        self.set_expr(&query.body, depth + 1);
    }

    fn set_expr(&mut self, body: &SetExpr, depth: usize) {
        if depth > MAX_WALK_DEPTH {
            return;
        }
        match body {
            SetExpr::Select(select) => self.select(select, depth + 1),
            SetExpr::Query(query) => self.query(query, depth + 1),
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left, depth + 1);
                self.set_expr(right, depth + 1);
            }
            SetExpr::Insert(statement)
            | SetExpr::Update(statement)
            | SetExpr::Delete(statement) => self.statement(statement),
            SetExpr::Table(table) => {
                if let Some(name) = &table.table_name {
                    let lower = name.value.to_lowercase();
                    if !self.tables.contains(&lower) {
                        self.tables.push(lower);
                    }
                }
            }
            _ => {}
        }
    }

    fn statement(&mut self, statement: &Statement) {
        match statement {
            Statement::Insert(insert) => self.insert(insert),
            Statement::Update(update) => self.update(update),
            Statement::Delete(delete) => self.delete(delete),
            _ => {}
        }
    }

    fn insert(&mut self, insert: &Insert) {
        if let TableObject::TableName(name) = &insert.table {
            self.name(name);
        }
        if let Some(source) = &insert.source {
            self.query(source, 1);
        }
    }

    fn update(&mut self, update: &Update) {
        self.table_with_joins(&update.table, 1);
        if let Some(UpdateTableFromKind::BeforeSet(from) | UpdateTableFromKind::AfterSet(from)) =
            &update.from
        {
            from.iter().for_each(|t| self.table_with_joins(t, 1));
        }
        if let Some(selection) = &update.selection {
            self.expr(selection, 1);
        }
    }

    fn delete(&mut self, delete: &Delete) {
        delete.tables.iter().for_each(|name| self.name(name));
        delete_from(delete)
            .iter()
            .for_each(|t| self.table_with_joins(t, 1));
        if let Some(using) = &delete.using {
            using.iter().for_each(|t| self.table_with_joins(t, 1));
        }
        if let Some(selection) = &delete.selection {
            self.expr(selection, 1);
        }
    }

    fn select(&mut self, select: &Select, depth: usize) {
        if depth > MAX_WALK_DEPTH {
            return;
        }
        select
            .from
            .iter()
            .for_each(|t| self.table_with_joins(t, depth + 1));
        for item in &select.projection {
            if let SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } = item {
                self.expr(expr, depth + 1);
            }
        }
        if let Some(selection) = &select.selection {
            self.expr(selection, depth + 1);
        }
        if let Some(having) = &select.having {
            self.expr(having, depth + 1);
        }
    }

    fn table_with_joins(&mut self, table: &TableWithJoins, depth: usize) {
        if depth > MAX_WALK_DEPTH {
            return;
        }
        self.table_factor(&table.relation, depth + 1);
        table
            .joins
            .iter()
            .for_each(|join| self.table_factor(&join.relation, depth + 1));
    }

    fn table_factor(&mut self, factor: &TableFactor, depth: usize) {
        if depth > MAX_WALK_DEPTH {
            return;
        }
        match factor {
            TableFactor::Table { name, .. } => self.name(name),
            TableFactor::Derived { subquery, .. } => self.query(subquery, depth + 1),
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.table_with_joins(table_with_joins, depth + 1),
            _ => {}
        }
    }

    /// Expressions matter only for the subqueries in them.
    fn expr(&mut self, expr: &Expr, depth: usize) {
        if depth > MAX_WALK_DEPTH {
            return;
        }
        let next = depth + 1;
        match expr {
            Expr::Subquery(query)
            | Expr::Exists {
                subquery: query, ..
            } => self.query(query, next),
            Expr::In { expr, target, .. } => {
                self.expr(expr, next);
                match target {
                    InTarget::Subquery(query) => self.query(query, next),
                    InTarget::List(list) => list.iter().for_each(|e| self.expr(e, next)),
                    _ => {}
                }
            }
            Expr::BinaryOp { left, right, .. }
            | Expr::AnyOp { left, right, .. }
            | Expr::AllOp { left, right, .. } => {
                self.expr(left, next);
                self.expr(right, next);
            }
            Expr::UnaryOp { expr, .. } | Expr::Nested(expr) | Expr::Cast { expr, .. } => {
                self.expr(expr, next)
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                self.expr(expr, next);
                self.expr(low, next);
                self.expr(high, next);
            }
            Expr::Tuple(items) => items.iter().for_each(|e| self.expr(e, next)),
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                if let Some(operand) = operand {
                    self.expr(operand, next);
                }
                for when in conditions {
                    self.expr(&when.condition, next);
                    self.expr(&when.result, next);
                }
                if let Some(else_result) = else_result {
                    self.expr(else_result, next);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::normalize;

    fn pg(sql: &str) -> Enrichment {
        enrich(
            &normalize(sql, Dialect::PostgreSql).text,
            Dialect::PostgreSql,
        )
    }

    #[test]
    fn select_findings() {
        let e = pg("SELECT o.* FROM public.orders o, items i WHERE o.id = 5 LIMIT 10");
        assert!(e.parsed);
        assert_eq!(e.tables, ["orders", "items"]);
        assert!(e.select_star && e.has_limit && e.limit_without_order && e.single_key_predicate);
        assert_eq!(e.joins, 1);
        let e = pg("SELECT count(*) FROM t WHERE EXISTS (SELECT * FROM u) ORDER BY 1 LIMIT 1");
        assert!(!e.select_star && e.has_limit && !e.limit_without_order && !e.single_key_predicate);
        assert_eq!(e.tables, ["t", "u"]);
    }

    #[test]
    fn write_findings() {
        let e = pg("UPDATE accounts SET balance = 0");
        assert!(e.write_without_where);
        assert_eq!(e.kind, Some(StatementKind::Update));
        let e = pg("DELETE FROM sessions WHERE id = $1");
        assert!(!e.write_without_where && e.single_key_predicate);
        let e = pg("INSERT INTO audit (a) SELECT * FROM log");
        assert_eq!(e.tables, ["audit", "log"]);
        assert!(!e.select_star);
    }

    #[test]
    fn ctes_are_not_tables() {
        let e = pg(
            "WITH recent AS (SELECT * FROM orders WHERE created_at > now()) SELECT id FROM recent",
        );
        assert_eq!(e.kind, Some(StatementKind::Select));
        assert_eq!(e.tables, ["orders"]);
    }

    #[test]
    fn failures_are_reasons() {
        assert_eq!(enrich("SELEC 1", Dialect::Generic).skipped, Some("syntax"));
        assert_eq!(
            enrich("SELECT 1; SELECT 2", Dialect::Generic).skipped,
            Some("multiple_statements")
        );
        assert_eq!(
            enrich(&"(".repeat(1000), Dialect::PostgreSql).skipped,
            Some("too_deep")
        );
        assert_eq!(
            enrich(&"x ".repeat(MAX_PARSE_LEN), Dialect::Generic).skipped,
            Some("too_large")
        );
    }
}
