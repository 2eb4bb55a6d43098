//! The fingerprint normalizer: one pass over the bytes of a statement, literals out, canonical text in.
//!
//! # The canonical text
//! - Every literal and bind parameter becomes a placeholder: strings in all their forms (`'…'`, `E'…'`,
//!   `N'…'`, `U&'…'`, `X'…'`, `B'…'`, `$$…$$`, `$tag$…$tag$`, MySQL `"…"`), numbers (with a
//!   sign where an operand is expected, blanks between sign and digits or not, exponents, `.5`, `5.`, `0x1F`,
//!   `1_000`), and the parameter styles `$1`, `?`, `?1`, `:name`, `:1`, `@name`, `@p1`, `%s`, `%(name)s`.
//! - `NULL`, `TRUE`, `FALSE` and `DEFAULT` are keywords, not values: `SET notes = NULL` and
//!   `SET notes = ?` are two statements.
//! - An ODBC escape keeps its type keyword: `{ts '2024-01-01 00:00'}` → `{ts ?}`.
//! - **Placeholders** print as `$1`, `$2`, … (numbered in order) for [`Dialect::PostgreSql`], because its
//!   parser rejects `?`, and as `?` for the other dialects: the text parses wherever the input did.
//! - `::type` casts, PostgreSQL's JSON operators (`?`, `?|`, `?&`, `@?`, `#>>`, `->>`) and array slices
//!   (`a[1:2]`) stay; so do `IS [NOT] NULL` and `IS [NOT] TRUE`.
//! - A typed literal keeps its type as a cast: `DATE '2024-01-01'` → `CAST($1 AS date)`.
//! - **Lists collapse** to their first element when every element equals it up to placeholder numbers:
//!   `IN (1)`, `IN (1, 2, 3)` and `IN ($1, $2)` all read `IN ($1)` (one element or a thousand: one
//!   fingerprint); `ARRAY[1, 2]` → `ARRAY[$1]`; multi-row `VALUES (…), (…)` → one row. `IN (a, b)` (columns)
//!   and `IN (SELECT …)` stay as written. `= ANY($1)`, `= ANY(ARRAY[…])` and `IN (…)` stay three distinct
//!   shapes (each site of a program uses one of them).
//! - Comments go; the allowlisted pairs of sqlcommenter comments (`/*route='…'*/`) become
//!   [`Normalized::tags`].
//! - Keywords (a small structural list) are upper case; unquoted identifiers are lower case (PostgreSQL
//!   folds them so); quoted identifiers keep their case and quotes unless they read the same unquoted
//!   (`"users"` → `users`, `"User"` stays).
//! - Identifiers lose runs of two or more digits and runs of eight or more hex characters holding a digit:
//!   `orders_2024_01` → `orders__`, `tmp_5f3a9c2e` → `tmp_`, while `t1` and `int4` stay. Function names
//!   (a name followed by `(`) keep their digits (`sha256(…)`).
//! - Savepoint and cursor names become `?` (`SAVEPOINT ?`, `FETCH $1 FROM ?`).
//! - Whitespace is canonical; trailing and empty statements (`;;`) go; statements stay joined by `; `.
//!
//! # Bounds
//! Only the first [`MAX_SCAN_LEN`] bytes are read, the text is capped at [`MAX_NORMALIZED_LEN`] bytes on a
//! character boundary, and both set [`Normalized::truncated`]. Reading stops earlier once the text is past
//! twice the cap with no list open (what follows could only be cut off); tags come from the part read. The pass is linear, keeps no recursion (a
//! bracket stack lives on the heap), and ends on any input, unterminated strings and comments included.

mod comment;
mod ident;
mod keywords;
mod lexer;
mod writer;

use xxhash_rust::xxh3::xxh3_64;

use crate::query::model::{Dialect, FingerprintId, MAX_NORMALIZED_LEN, StatementKind};

pub(crate) use comment::TagKeys;
pub use comment::{DEFAULT_TAG_KEYS, MAX_TAG_LEN, MAX_TAGS};

/// Longest prefix of a statement the normalizer reads, in bytes.
pub const MAX_SCAN_LEN: usize = 64 * 1024;

/// A statement's normalized form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    /// The canonical text: no literal of the input survives in it.
    pub text: String,
    /// xxh3 of `text`.
    pub id: FingerprintId,
    /// The kind, from the first keyword.
    pub kind: StatementKind,
    /// sqlcommenter key/values whose key is on the allowlist ([`DEFAULT_TAG_KEYS`] unless configured); the
    /// pairs of other keys are dropped, key and value, since a caller may put anything there (a user name, an
    /// order number). At most [`MAX_TAGS`] pairs, each side at most [`MAX_TAG_LEN`] bytes.
    pub tags: Vec<(String, String)>,
    /// The input was longer than [`MAX_SCAN_LEN`] or the text longer than [`MAX_NORMALIZED_LEN`].
    pub truncated: bool,
    /// The input has a bind parameter (`$1`, `?`, `?1`, `:name`, `@name`, `%s`): its values are not in the text,
    /// so two byte-identical statements may have run with different values. Without one, the text holds every
    /// value, and byte-identical statements ran with the same values.
    pub bound: bool,
}

/// Normalizes one statement (or a `;`-separated batch) read in `dialect`.
///
/// ```
/// use perfscope::query::{Dialect, normalize};
///
/// let a = normalize("select * from Orders where id in (1, 2, 3) -- by id", Dialect::PostgreSql);
/// let b = normalize("SELECT * FROM orders WHERE id IN ($1)", Dialect::PostgreSql);
/// assert_eq!(a.text, "SELECT * FROM orders WHERE id IN ($1)");
/// assert_eq!(a.id, b.id);
/// assert_eq!(normalize("UPDATE t SET a = 'x' WHERE id = ?", Dialect::MySql).text, "UPDATE t SET a = ? WHERE id = ?");
/// ```
pub fn normalize(sql: &str, dialect: Dialect) -> Normalized {
    normalize_keeping(sql, dialect, TagKeys::default())
}

/// [`normalize`], keeping the sqlcommenter pairs of the keys in `tag_keys` (ASCII case ignored) instead of
/// [`DEFAULT_TAG_KEYS`].
///
/// ```
/// use perfscope::query::{Dialect, normalize, normalize_with_tag_keys};
///
/// let sql = "SELECT 1 /*route='%2Forders',user='alice',tenant='acme'*/";
/// assert_eq!(normalize(sql, Dialect::Generic).tags, [("route".to_owned(), "/orders".to_owned())]);
/// let tagged = normalize_with_tag_keys(sql, Dialect::Generic, &["tenant"]);
/// assert_eq!(tagged.tags, [("tenant".to_owned(), "acme".to_owned())]);
/// ```
pub fn normalize_with_tag_keys(sql: &str, dialect: Dialect, tag_keys: &[&str]) -> Normalized {
    normalize_keeping(sql, dialect, TagKeys::Borrowed(tag_keys))
}

/// [`normalize`] with an allowlist of sqlcommenter keys.
pub(crate) fn normalize_keeping(sql: &str, dialect: Dialect, keys: TagKeys<'_>) -> Normalized {
    let (input, cut_input) = prefix(sql, MAX_SCAN_LEN);
    let output = writer::Writer::new(input, dialect, keys).run();
    let mut text = output.text;
    let cut_text = cap(&mut text, MAX_NORMALIZED_LEN);
    Normalized {
        id: FingerprintId(xxh3_64(text.as_bytes())),
        text,
        kind: output.kind,
        tags: output.tags,
        truncated: cut_input || cut_text || output.stopped,
        bound: output.bound,
    }
}

/// The longest prefix of `s` of at most `max` bytes ending on a character boundary, and whether it is shorter.
fn prefix(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (s.get(..end).unwrap_or(""), true)
}

/// Cuts `text` to at most `max` bytes, at the last token boundary before the cap when there is one in its
/// second half (so the kept text ends with whole tokens), else on a character boundary.
fn cap(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let (head, _) = prefix(text, max);
    let end = match head.rfind(' ') {
        Some(space) if space >= max / 2 => space,
        _ => head.len(),
    };
    text.truncate(end);
    let trimmed = text.trim_end_matches([' ', ',']).len();
    text.truncate(trimmed);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(sql: &str) -> String {
        normalize(sql, Dialect::PostgreSql).text
    }

    fn my(sql: &str) -> String {
        normalize(sql, Dialect::MySql).text
    }

    #[test]
    fn literals_become_placeholders() {
        assert_eq!(
            pg("SELECT * FROM t WHERE a = 'x' AND b = 42 AND c = -1.5e3"),
            "SELECT * FROM t WHERE a = $1 AND b = $2 AND c = $3"
        );
        assert_eq!(
            my("SELECT * FROM t WHERE a = \"x\" AND b = 'it\\'s'"),
            "SELECT * FROM t WHERE a = ? AND b = ?"
        );
        assert_eq!(
            pg("SELECT $$ a;b'c $$, $fn$ x $$ y $fn$, $1"),
            "SELECT $1, $2, $3"
        );
    }

    #[test]
    fn collapses_lists_and_rows() {
        assert_eq!(
            pg("SELECT 1 FROM t WHERE id IN (1, 2, 3)"),
            "SELECT $1 FROM t WHERE id IN ($2)"
        );
        assert_eq!(
            pg("INSERT INTO t (a, b) VALUES (1, 'a'), (2, 'b') RETURNING id"),
            "INSERT INTO t(a, b) VALUES ($1, $2) RETURNING id"
        );
        assert_eq!(
            pg("SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE x = 1)"),
            "SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE x = $1)"
        );
        assert_eq!(
            pg("SELECT * FROM t WHERE (a, b) IN ((1, 2), (3, 4))"),
            "SELECT * FROM t WHERE (a, b) IN (($1, $2))"
        );
    }

    #[test]
    fn typed_literals_become_casts() {
        assert_eq!(pg("SELECT DATE '2024-01-01'"), "SELECT CAST($1 AS date)");
        assert_eq!(
            pg("SELECT TIMESTAMP WITH TIME ZONE '2024-01-01 00:00'"),
            "SELECT CAST($1 AS timestamp WITH time zone)"
        );
        assert_eq!(
            pg("SELECT x FROM t WHERE d > now() - interval '1 day'"),
            "SELECT x FROM t WHERE d > now() - CAST($1 AS interval)"
        );
    }

    #[test]
    fn caps_the_text() {
        let sql = format!(
            "SELECT {} FROM t",
            (0..2000)
                .map(|i| format!("c{i}x"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let n = normalize(&sql, Dialect::Generic);
        assert!(n.truncated);
        assert!(n.text.len() <= MAX_NORMALIZED_LEN);
    }

    #[test]
    fn reads_only_a_bounded_prefix() {
        let sql = format!("SELECT '{}'", "é".repeat(MAX_SCAN_LEN));
        let n = normalize(&sql, Dialect::Generic);
        assert!(n.truncated);
        assert_eq!(n.text, "SELECT ?");
    }
}
