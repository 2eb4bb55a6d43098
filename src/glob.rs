//! Glob matching shared by cache-key patterns and the query analyzer's route allowlists: `*` matches any run of
//! characters (separators included), `?` one character, everything else itself.

/// Whether `text` matches `pattern`. Backtracks only to the last `*`, so no pattern makes it slow (linear in
/// practice, at worst the product of the lengths), and it allocates nothing.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: the pattern after it, and the text it has swallowed up to.
    let mut star: Option<(usize, usize)> = None;
    while let Some(tc) = text.get(t..).and_then(|rest| rest.chars().next()) {
        match pattern.get(p..).and_then(|rest| rest.chars().next()) {
            Some('*') => {
                p += 1;
                star = Some((p, t));
            }
            Some(pc) if pc == '?' || pc == tc => {
                p += pc.len_utf8();
                t += tc.len_utf8();
            }
            _ => match star {
                Some((after_star, swallowed)) => {
                    let next = swallowed
                        + text
                            .get(swallowed..)
                            .and_then(|rest| rest.chars().next())
                            .map_or(1, char::len_utf8);
                    p = after_star;
                    t = next;
                    star = Some((after_star, next));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_none_or(|rest| rest.chars().all(|c| c == '*'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stars_and_question_marks() {
        assert!(glob_match("product:*:details", "product:42:details"));
        assert!(glob_match("product:*:details", "product:4:2:details"));
        assert!(!glob_match("product:*:details", "product:42:price"));
        assert!(glob_match("*", ""));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "/x"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*é*", "café"));
        assert!(glob_match("caf?", "café"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
        assert!(glob_match("/admin/*", "/admin/users/{id}"));
        assert!(!glob_match("/health", "/healthz"));
        assert!(glob_match("*/export", "/reports/{id}/export"));
    }

    /// A reference matcher: the obvious recursive definition.
    fn reference(pattern: &[char], text: &[char]) -> bool {
        match (pattern.first(), text.first()) {
            (None, None) => true,
            (Some('*'), _) => {
                reference(&pattern[1..], text)
                    || (!text.is_empty() && reference(pattern, &text[1..]))
            }
            (Some(&p), Some(&t)) if p == '?' || p == t => reference(&pattern[1..], &text[1..]),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference(pattern in "[ab*?é]{0,8}", text in "[abé]{0,10}") {
            let p: Vec<char> = pattern.chars().collect();
            let t: Vec<char> = text.chars().collect();
            prop_assert_eq!(glob_match(&pattern, &text), reference(&p, &t));
        }
    }
}
