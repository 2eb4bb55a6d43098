//! Identifier normalization: digit runs (partitions, shards, generated names) and quoting.

use super::keywords::is_reserved;
use super::lexer::is_ident_start;

/// Appends `name` with the digit runs that make names unique removed: runs of two or more digits
/// (`orders_2024_01` → `orders__`, `shard_17` → `shard_`) and runs of eight or more hex characters holding a
/// digit (`tmp_5f3a9c2e` → `tmp_`). Single digits stay (`t1`, `t2`, `int4`). A name that would vanish or no
/// longer start like a name is kept.
pub(super) fn push_scrubbed(out: &mut String, name: &str) {
    if !name.bytes().any(|b| b.is_ascii_digit()) {
        out.push_str(name);
        return;
    }
    let start = out.len();
    let bytes = name.as_bytes();
    let mut i = 0;
    let mut kept_from = 0;
    while i < bytes.len() {
        if !bytes.get(i).is_some_and(u8::is_ascii_hexdigit) {
            i += 1;
            continue;
        }
        let run_start = i;
        while bytes.get(i).is_some_and(u8::is_ascii_hexdigit) {
            i += 1;
        }
        let run = name.get(run_start..i).unwrap_or("");
        out.push_str(name.get(kept_from..run_start).unwrap_or(""));
        if run.len() < 8 || !run.bytes().any(|b| b.is_ascii_digit()) {
            push_without_digit_runs(out, run);
        }
        kept_from = i;
    }
    out.push_str(name.get(kept_from..).unwrap_or(""));
    // A name that would vanish, or would no longer start like a name (`a1b2c3d4$1` would read back as the
    // placeholder `$1`), is kept as it is, so that normalizing again changes nothing.
    let starts_a_name = out
        .as_bytes()
        .get(start)
        .is_some_and(|&b| is_ident_start(b));
    if !starts_a_name {
        out.truncate(start);
        out.push_str(name);
    }
}

fn push_without_digit_runs(out: &mut String, run: &str) {
    let bytes = run.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let digits = bytes.get(i..).map_or(0, |rest| {
            rest.iter().take_while(|b| b.is_ascii_digit()).count()
        });
        if digits >= 2 {
            i += digits;
        } else {
            let step = digits.max(1);
            out.push_str(run.get(i..i + step).unwrap_or(""));
            i += step;
        }
    }
}

/// Whether a quoted name reads the same unquoted: lower case ASCII, a plain name, not a keyword.
pub(super) fn can_unquote(name: &str) -> bool {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
    first_ok
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !is_reserved(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrub(name: &str) -> String {
        let mut out = String::new();
        push_scrubbed(&mut out, name);
        out
    }

    #[test]
    fn digit_runs_go_single_digits_stay() {
        assert_eq!(scrub("orders_2024_01"), "orders__");
        assert_eq!(scrub("shard_17"), "shard_");
        assert_eq!(scrub("t1"), "t1");
        assert_eq!(scrub("int4"), "int4");
        assert_eq!(scrub("utf8mb4"), "utf8mb4");
        assert_eq!(scrub("tmp_123456"), "tmp_");
        assert_eq!(scrub("tmp_5f3a9c2e1b"), "tmp_");
        assert_eq!(scrub("accessed_at"), "accessed_at");
        assert_eq!(scrub("Ünïcode_12"), "Ünïcode_");
        assert_eq!(scrub("12"), "12");
    }

    #[test]
    fn scrubbing_is_idempotent() {
        for name in [
            "a1b23c4",
            "ab12cd",
            "x_1_22_333",
            "deadbeef1",
            "feedface_0a1b2c3d4e",
        ] {
            let once = scrub(name);
            assert_eq!(scrub(&once), once, "{name}");
        }
    }

    #[test]
    fn unquoting_keeps_case_and_keywords_quoted() {
        assert!(can_unquote("users"));
        assert!(!can_unquote("User"));
        assert!(!can_unquote("select"));
        assert!(!can_unquote("user"));
        assert!(!can_unquote("1a"));
        assert!(!can_unquote("my col"));
    }
}
