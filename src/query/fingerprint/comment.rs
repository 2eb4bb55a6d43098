//! sqlcommenter tags: `/*controller='orders',route='%2Fapi%2Forders'*/` → `[("controller", "orders"), …]`.
//!
//! Only the pairs whose key is on the allowlist are kept: a sqlcommenter comment can carry anything a caller
//! put there (a user name, an order number), and a tag is kept in memory and printed with its statement.

/// Most pairs kept per statement.
pub const MAX_TAGS: usize = 8;
/// Longest key or value kept, in bytes (cut on a character boundary).
pub const MAX_TAG_LEN: usize = 64;

/// The sqlcommenter keys whose pairs are kept by default: what the sqlcommenter libraries write about the
/// code that ran the statement, never about its data. The pairs of any other key are dropped, key and value.
pub const DEFAULT_TAG_KEYS: &[&str] = &[
    "route",
    "controller",
    "action",
    "framework",
    "application",
    "db_driver",
];

/// The allowlist of sqlcommenter keys, borrowed from wherever it is configured.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TagKeys<'a> {
    Borrowed(&'a [&'a str]),
    Owned(&'a [Box<str>]),
}

impl Default for TagKeys<'_> {
    fn default() -> Self {
        TagKeys::Borrowed(DEFAULT_TAG_KEYS)
    }
}

impl TagKeys<'_> {
    /// Whether pairs with `key` are kept (ASCII case ignored).
    fn keeps(&self, key: &str) -> bool {
        match self {
            TagKeys::Borrowed(keys) => keys.iter().any(|k| k.eq_ignore_ascii_case(key)),
            TagKeys::Owned(keys) => keys.iter().any(|k| k.eq_ignore_ascii_case(key)),
        }
    }
}

/// Adds the allowlisted pairs of `body` to `tags` when the whole comment is a sqlcommenter list; any other
/// comment (free text, hints, `/*!…*/`) adds nothing, so nothing of it can leak, and neither can the value of
/// a key off the list (it is never decoded).
pub(super) fn collect(body: &str, tags: &mut Vec<(String, String)>, keys: TagKeys<'_>) {
    if tags.len() >= MAX_TAGS {
        return;
    }
    let Some(pairs) = parse(body.trim(), keys) else {
        return;
    };
    for (key, value) in pairs.into_iter().take(MAX_TAGS - tags.len()) {
        tags.push((key, value));
    }
}

/// The allowlisted pairs, or `None` when any part does not have the `key='value'` form.
fn parse(body: &str, keys: TagKeys<'_>) -> Option<Vec<(String, String)>> {
    if body.is_empty() {
        return None;
    }
    let mut pairs = Vec::new();
    let mut rest = body;
    loop {
        let eq = rest.find('=')?;
        let key = rest.get(..eq)?.trim();
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.%".contains(&b))
        {
            return None;
        }
        let after = rest.get(eq + 1..)?.trim_start();
        let value_body = after.strip_prefix('\'')?;
        let close = closing_quote(value_body)?;
        if pairs.len() < MAX_TAGS {
            let key = decode(key);
            if keys.keeps(&key) {
                pairs.push((capped(&key), capped(&decode(value_body.get(..close)?))));
            }
        }
        rest = value_body.get(close + 1..)?.trim_start();
        if rest.is_empty() {
            return Some(pairs);
        }
        rest = rest.strip_prefix(',')?.trim_start();
    }
}

/// Index of the quote ending a value; `\'` is an escaped quote.
fn closing_quote(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => i += 2,
            b'\'' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Undoes the URL encoding and the `\'` escape; invalid sequences stay as written.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => match (
                bytes.get(i + 1).and_then(hex),
                bytes.get(i + 2).and_then(hex),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                }
                _ => {
                    out.push(b);
                    i += 1;
                }
            },
            b'\\' if bytes.get(i + 1) == Some(&b'\'') => {
                out.push(b'\'');
                i += 2;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: &u8) -> Option<u8> {
    (*b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

fn capped(s: &str) -> String {
    let mut end = s.len().min(MAX_TAG_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(body: &str) -> Vec<(String, String)> {
        let mut tags = Vec::new();
        let all: Vec<Box<str>> = (0..20)
            .map(|i| format!("k{i}"))
            .chain(["controller", "route", "traceparent", "k"].map(String::from))
            .map(String::into_boxed_str)
            .collect();
        collect(body, &mut tags, TagKeys::Owned(&all));
        tags
    }

    #[test]
    fn keeps_only_allowlisted_keys() {
        let mut tags = Vec::new();
        collect(
            "route='%2Forders',user='alice',order_no='4711',Controller='orders'",
            &mut tags,
            TagKeys::default(),
        );
        assert_eq!(
            tags,
            [
                ("route".into(), "/orders".into()),
                ("Controller".into(), "orders".into())
            ]
        );
    }

    #[test]
    fn reads_sqlcommenter_pairs() {
        assert_eq!(
            tags("controller='orders',route='%2Fapi%2Forders%2F%7Bid%7D'"),
            [
                ("controller".into(), "orders".into()),
                ("route".into(), "/api/orders/{id}".into())
            ]
        );
        assert_eq!(tags(" traceparent='00-abc-01' ").len(), 1);
        assert_eq!(tags("k='it\\'s'"), [("k".into(), "it's".into())]);
    }

    #[test]
    fn ignores_other_comments() {
        for body in [
            "controller:x",
            "+ INDEX(t)",
            "!40001 SQL_NO_CACHE",
            "note = 'a' and more",
            "",
            "k='unterminated",
        ] {
            assert!(tags(body).is_empty(), "{body:?}");
        }
    }

    #[test]
    fn caps_pairs_and_lengths() {
        let body: Vec<String> = (0..20)
            .map(|i| format!("k{i}='{}'", "é".repeat(100)))
            .collect();
        let tags = tags(&body.join(","));
        assert_eq!(tags.len(), MAX_TAGS);
        assert!(
            tags.iter()
                .all(|(k, v)| k.len() <= MAX_TAG_LEN && v.len() <= MAX_TAG_LEN)
        );
    }
}
