//! The words the normalizer prints in upper case, and how each one shapes what follows it.
//!
//! The list is deliberately small: structural words only. Words that are often column names (`date`, `name`,
//! `type`, `key`, `status`, `user`) stay identifiers, so `date - 1` still reads as a subtraction.

/// How a keyword affects its neighbours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// An operand follows (`WHERE`, `=`-like words, `SELECT`).
    Lead,
    /// The keyword is a value (or ends one): an operator follows (`END`, `NULL` in `IS NULL`, `DESC`).
    Value,
    /// Called like a function: no space before its `(` (`ANY(`, `CAST(`).
    Call,
}

/// A keyword, upper case, with its shape.
pub(super) type Keyword = (&'static str, Shape);

use Shape::{Call, Lead, Value};

/// Sorted by name (checked by a test), searched by binary search.
const KEYWORDS: &[Keyword] = &[
    ("ABORT", Lead),
    ("ADD", Lead),
    ("ALL", Call),
    ("ALTER", Lead),
    ("ANALYZE", Lead),
    ("AND", Lead),
    ("ANY", Call),
    ("ARRAY", Call),
    ("AS", Lead),
    ("ASC", Value),
    ("BEGIN", Lead),
    ("BETWEEN", Lead),
    ("BY", Lead),
    ("CALL", Lead),
    ("CASCADE", Lead),
    ("CASE", Lead),
    ("CAST", Call),
    ("CHECK", Lead),
    ("CLOSE", Lead),
    ("COLLATE", Lead),
    ("COLUMN", Lead),
    ("COMMIT", Lead),
    ("CONFLICT", Lead),
    ("CONSTRAINT", Lead),
    ("COPY", Lead),
    ("CREATE", Lead),
    ("CROSS", Lead),
    ("CURRENT_DATE", Value),
    ("CURRENT_TIME", Value),
    ("CURRENT_TIMESTAMP", Value),
    ("CURRENT_USER", Value),
    ("CURSOR", Lead),
    ("DEALLOCATE", Lead),
    ("DECLARE", Lead),
    ("DEFAULT", Value),
    ("DELETE", Lead),
    ("DESC", Value),
    ("DISTINCT", Lead),
    ("DO", Lead),
    ("DROP", Lead),
    ("DUPLICATE", Lead),
    ("ELSE", Lead),
    ("END", Value),
    ("ESCAPE", Lead),
    ("EXCEPT", Lead),
    ("EXECUTE", Lead),
    ("EXISTS", Call),
    ("EXPLAIN", Lead),
    ("FALSE", Value),
    ("FETCH", Lead),
    ("FILTER", Call),
    ("FIRST", Lead),
    ("FOLLOWING", Value),
    ("FOR", Lead),
    ("FOREIGN", Lead),
    ("FROM", Lead),
    ("FULL", Lead),
    ("GROUP", Lead),
    ("HAVING", Lead),
    ("IF", Lead),
    ("IGNORE", Lead),
    ("ILIKE", Lead),
    ("IN", Lead),
    ("INDEX", Lead),
    ("INNER", Lead),
    ("INSERT", Lead),
    ("INTERSECT", Lead),
    ("INTO", Lead),
    ("IS", Lead),
    ("ISNULL", Value),
    ("JOIN", Lead),
    ("LAST", Value),
    ("LATERAL", Lead),
    ("LEFT", Lead),
    ("LIKE", Lead),
    ("LIMIT", Lead),
    ("LISTEN", Lead),
    ("LOCAL", Lead),
    ("LOCALTIME", Value),
    ("LOCALTIMESTAMP", Value),
    ("LOCK", Lead),
    ("LOCKED", Value),
    ("MATERIALIZED", Lead),
    ("MERGE", Lead),
    ("MOVE", Lead),
    ("NATURAL", Lead),
    ("NEXT", Lead),
    ("NOT", Lead),
    ("NOTHING", Value),
    ("NOTIFY", Lead),
    ("NOTNULL", Value),
    ("NOWAIT", Value),
    ("NULL", Value),
    ("NULLS", Lead),
    ("OF", Lead),
    ("OFFSET", Lead),
    ("ON", Lead),
    ("ONLY", Value),
    ("OR", Lead),
    ("ORDER", Lead),
    ("OUTER", Lead),
    ("OUTPUT", Lead),
    ("OVER", Lead),
    ("PARTITION", Lead),
    ("PRAGMA", Lead),
    ("PRECEDING", Value),
    ("PRIMARY", Lead),
    ("RANGE", Lead),
    ("RECURSIVE", Lead),
    ("REFERENCES", Lead),
    ("RELEASE", Lead),
    ("REPLACE", Call),
    ("RESET", Lead),
    ("RETURNING", Lead),
    ("RIGHT", Lead),
    ("ROLLBACK", Lead),
    ("ROW", Call),
    ("ROWS", Value),
    ("SAVEPOINT", Lead),
    ("SELECT", Lead),
    ("SET", Lead),
    ("SHARE", Value),
    ("SHOW", Lead),
    ("SIMILAR", Lead),
    ("SKIP", Lead),
    ("SOME", Call),
    ("START", Lead),
    ("STRAIGHT_JOIN", Lead),
    ("TABLE", Lead),
    ("THEN", Lead),
    ("TIES", Value),
    ("TO", Lead),
    ("TOP", Lead),
    ("TRANSACTION", Lead),
    ("TRUE", Value),
    ("TRUNCATE", Lead),
    ("UNBOUNDED", Lead),
    ("UNION", Lead),
    ("UNIQUE", Lead),
    ("UNLISTEN", Lead),
    ("UPDATE", Lead),
    ("USING", Lead),
    ("VACUUM", Lead),
    ("VALUES", Lead),
    ("VIEW", Lead),
    ("WHEN", Lead),
    ("WHERE", Lead),
    ("WINDOW", Lead),
    ("WITH", Lead),
    ("WITHOUT", Lead),
    ("WORK", Lead),
];

/// Longest keyword, in bytes: longer words are identifiers without a look-up.
const LONGEST: usize = 20;

/// For each initial letter, the range of [`KEYWORDS`] starting with it: a look-up compares a handful of
/// entries, by length first.
const BY_LETTER: [(usize, usize); 26] = by_letter();

const fn by_letter() -> [(usize, usize); 26] {
    let mut ranges = [(0, 0); 26];
    let mut i = 0;
    while i < KEYWORDS.len() {
        let letter = (KEYWORDS[i].0.as_bytes()[0] - b'A') as usize;
        if ranges[letter].1 == 0 {
            ranges[letter].0 = i;
        }
        ranges[letter].1 = i + 1;
        i += 1;
    }
    ranges
}

/// The keyword `word` spells, in any case.
pub(super) fn keyword(word: &str) -> Option<Keyword> {
    let bytes = word.as_bytes();
    let first = bytes.first()?.to_ascii_uppercase();
    if bytes.len() < 2 || bytes.len() > LONGEST || !first.is_ascii_uppercase() {
        return None;
    }
    let (start, end) = BY_LETTER.get(usize::from(first - b'A')).copied()?;
    KEYWORDS
        .get(start..end)?
        .iter()
        .find(|(name, _)| name.len() == bytes.len() && name.as_bytes().eq_ignore_ascii_case(bytes))
        .copied()
}

/// Words reserved in PostgreSQL, MySQL or SQLite that are not in [`KEYWORDS`], plus type names that start a
/// typed literal: unquoted, they would not read as identifiers. Sorted.
const RESERVED: &[&str] = &[
    "ANALYSE",
    "ASYMMETRIC",
    "BINARY",
    "BOTH",
    "CHAR",
    "CHARACTER",
    "CURRENT_CATALOG",
    "CURRENT_ROLE",
    "CURRENT_SCHEMA",
    "DATABASE",
    "DATE",
    "DEFERRABLE",
    "DIV",
    "ELSEIF",
    "FREEZE",
    "GLOB",
    "GRANT",
    "INITIALLY",
    "INTERVAL",
    "KEY",
    "KEYS",
    "LEADING",
    "MATCH",
    "MOD",
    "OVERLAPS",
    "PLACING",
    "PROCEDURE",
    "READ",
    "REGEXP",
    "RENAME",
    "REVOKE",
    "RLIKE",
    "SCHEMA",
    "SESSION_USER",
    "SYMMETRIC",
    "SYSTEM_USER",
    "TIME",
    "TIMESTAMP",
    "TRAILING",
    "USER",
    "VARIADIC",
    "VERBOSE",
    "WHILE",
    "XOR",
];

/// Whether `name` needs quoting to stay an identifier.
pub(super) fn is_reserved(name: &str) -> bool {
    let bytes = name.as_bytes();
    keyword(name).is_some()
        || RESERVED
            .iter()
            .any(|word| word.len() == bytes.len() && word.as_bytes().eq_ignore_ascii_case(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_short() {
        assert!(KEYWORDS.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(KEYWORDS.iter().all(|(name, _)| name.len() <= LONGEST));
    }

    #[test]
    fn every_keyword_is_found() {
        assert!(
            KEYWORDS
                .iter()
                .all(|(name, _)| keyword(name).map(|k| k.0) == Some(*name))
        );
        assert!(
            KEYWORDS
                .iter()
                .all(|(name, _)| keyword(&name.to_lowercase()).is_some())
        );
    }

    #[test]
    fn lookup_ignores_case() {
        assert_eq!(keyword("select").map(|k| k.0), Some("SELECT"));
        assert_eq!(keyword("SeLeCt").map(|k| k.0), Some("SELECT"));
        assert_eq!(keyword("users"), None);
        assert!(is_reserved("user"));
        assert!(is_reserved("order"));
        assert!(!is_reserved("users_"));
    }

    #[test]
    fn reserved_is_sorted_and_disjoint() {
        assert!(RESERVED.windows(2).all(|w| w[0] < w[1]));
        assert!(
            RESERVED
                .iter()
                .all(|name| keyword(name).is_none() && name.len() <= LONGEST)
        );
    }
}
