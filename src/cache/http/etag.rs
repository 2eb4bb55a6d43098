//! Entity tags: a strong `ETag` made from the stored body, and `If-None-Match` matching (RFC 9110 §8.8.3,
//! §13.1.2).

use std::hash::Hasher;

use http::header::IF_NONE_MATCH;
use http::{HeaderMap, HeaderValue};

/// A strong entity tag for `body`: 64 bits of SipHash-1-3 (std's fixed-key `DefaultHasher`) and the length.
///
/// Computed once, when a response is stored. The tag is stable for one build of the program; a new Rust
/// release may change it, which costs one full response per client and cached entry, nothing more.
pub(crate) fn body_etag(body: &[u8]) -> HeaderValue {
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(body);
    let text = format!("\"{:016x}-{:x}\"", hasher.finish(), body.len());
    // Hex digits, '-' and quotes are always valid header bytes: the fallback is never taken.
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// The opaque part of an entity tag (`W/"x"` and `"x"` both give `x`), or `None` when it is not one.
fn opaque(tag: &[u8]) -> Option<&[u8]> {
    let tag = tag.trim_ascii();
    let tag = tag.strip_prefix(b"W/").unwrap_or(tag);
    match tag {
        [b'"', inner @ .., b'"'] if !inner.contains(&b'"') => Some(inner),
        _ => None,
    }
}

/// Whether the request's `If-None-Match` matches `etag` with the weak comparison (RFC 9110 §13.1.2), which is
/// what `If-None-Match` uses; `*` matches any stored response.
///
/// The list is read with a single pass: entity tags may contain commas, so it is scanned tag by tag rather than
/// split on commas. Malformed input matches nothing.
pub(crate) fn none_match(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let Some(stored) = opaque(etag.as_bytes()) else {
        return false;
    };
    request
        .get_all(IF_NONE_MATCH)
        .iter()
        .any(|line| line_matches(line.as_bytes(), stored))
}

fn line_matches(mut line: &[u8], stored: &[u8]) -> bool {
    loop {
        line = line.trim_ascii_start();
        match line {
            [] => return false,
            [b',', rest @ ..] => line = rest,
            [b'*', rest @ ..] if next_is_separator(rest) => return true,
            _ => {
                let body = line.strip_prefix(b"W/").unwrap_or(line);
                let Some(inner) = body.strip_prefix(b"\"") else {
                    return false;
                };
                let Some(end) = inner.iter().position(|&b| b == b'"') else {
                    return false;
                };
                if &inner[..end] == stored {
                    return true;
                }
                line = &inner[end + 1..];
                if !next_is_separator(line) {
                    return false;
                }
            }
        }
    }
}

fn next_is_separator(rest: &[u8]) -> bool {
    matches!(rest.trim_ascii_start().first(), None | Some(b','))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(lines: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(IF_NONE_MATCH, HeaderValue::from_bytes(line).unwrap());
        }
        headers
    }

    #[test]
    fn body_etags_are_strong_stable_and_distinct() {
        let a = body_etag(b"hello");
        assert_eq!(a, body_etag(b"hello"));
        assert_ne!(a, body_etag(b"hello!"));
        assert_ne!(body_etag(b""), body_etag(b"\0"));
        let text = a.to_str().unwrap();
        assert!(text.starts_with('"') && text.ends_with('"') && !text.starts_with("W/"));
    }

    #[test]
    fn weak_comparison() {
        let etag = HeaderValue::from_static("\"abc\"");
        let weak = HeaderValue::from_static("W/\"abc\"");
        for line in [
            &b"\"abc\""[..],
            b"W/\"abc\"",
            b" \"x\" , W/\"abc\" ",
            b"*",
            b" * ",
            b"\"x\",\"abc\"",
        ] {
            assert!(
                none_match(&request(&[line]), &etag),
                "{:?}",
                String::from_utf8_lossy(line)
            );
            assert!(none_match(&request(&[line]), &weak));
        }
        for line in [
            &b"\"abcd\""[..],
            b"abc",
            b"\"ab\"c\"",
            b"",
            b"W/abc",
            b"*x",
            b"\"x\" \"abc\"",
            b"\"abc",
        ] {
            assert!(
                !none_match(&request(&[line]), &etag),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        assert!(none_match(&request(&[b"\"x\"", b"\"abc\""]), &etag));
        assert!(!none_match(&HeaderMap::new(), &etag));
    }

    #[test]
    fn tags_may_contain_commas() {
        let etag = HeaderValue::from_static("\"a,b\"");
        assert!(none_match(&request(&[b"\"x\", \"a,b\""]), &etag));
        assert!(!none_match(&request(&[b"\"a\", \"b\""]), &etag));
    }

    proptest! {
        #[test]
        fn never_panics_and_finds_listed_tags(
            junk in proptest::collection::vec(any::<u8>(), 0..512),
            tags in proptest::collection::vec("[!#-~]{0,12}", 0..5),
            weak in any::<bool>(),
        ) {
            if let Ok(value) = HeaderValue::from_bytes(&junk) {
                let _ = none_match(&request(&[value.as_bytes()]), &body_etag(&junk));
            }
            let list: Vec<String> = tags.iter().map(|t| format!("{}\"{t}\"", if weak { "W/" } else { "" })).collect();
            let line = list.join(", ");
            for tag in &tags {
                let etag = HeaderValue::from_str(&format!("\"{tag}\"")).unwrap();
                prop_assert!(none_match(&request(&[line.as_bytes()]), &etag));
            }
        }
    }
}
