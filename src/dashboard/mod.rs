//! The HTML dashboard: one static, self-contained page that reads the admin router's `GET /stats` and draws it.
//!
//! The page holds no data: it is the same bytes for every caller (`include_str!` of `dashboard.html`, inline CSS
//! and JavaScript, no CDN, no build step), and its script fetches the snapshot as JSON with the credentials the
//! page was opened with. Everything the snapshot carries that came from an application or a request (routes,
//! request and user IDs, phase names, SQL, cache and namespace names) is put in the page with `textContent`,
//! never parsed as markup; a strict `Content-Security-Policy` (scripts and styles allowed by their SHA-256 hash
//! only, no inline event handlers, `connect-src 'self'`) stops anything that would slip through anyway.
//!
//! Token mode: a browser cannot add `Authorization` to a navigation, so the page route (and only it) also takes
//! the token as `?token=…`. The page moves it to the tab's `sessionStorage`, removes it from the address bar and
//! the history entry, and sends it as `Authorization: Bearer …` on every fetch. Without a valid token the page
//! route answers 401 with a small token form (static as well), which reopens the dashboard after a reload.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The dashboard page.
pub(crate) const PAGE: &str = include_str!("dashboard.html");

/// The token form served with a 401 on the page route in token mode.
pub(crate) const TOKEN_PAGE: &str = include_str!("token.html");

/// Policy of [`PAGE`]: its one inline script and one inline style by hash, JSON from the same origin, SVG built
/// in the DOM; nothing else (no plugins, frames, forms, base URL changes, or framing by other sites).
const PAGE_CSP: &str = "default-src 'none'; \
     script-src 'sha256-9DhNBcqjvfUD8zLc5eFL4wBnFwSv1C3yWsaPVe4ZFNI='; \
     style-src 'sha256-JQcuCbHYKa+wpvCsV051aqXE9sAubcIt7lPwHuOjRBk='; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Policy of [`TOKEN_PAGE`]: as the page's, with its form allowed to submit to this origin.
const TOKEN_PAGE_CSP: &str = "default-src 'none'; \
     script-src 'sha256-2udtuVqw+2R5kEw2zmql+Yv4n2Dne2MmYea6FS6gSGM='; \
     style-src 'sha256-xeRA1+FdjSnen02hD682O7lZ0hAf7XjsC1hRA5FzmuQ='; \
     img-src data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The dashboard, `200 OK`.
pub(crate) fn page() -> Response {
    html(StatusCode::OK, PAGE, PAGE_CSP)
}

/// The token form, `401 Unauthorized` with `WWW-Authenticate: Bearer`.
pub(crate) fn token_form() -> Response {
    let mut response = html(StatusCode::UNAUTHORIZED, TOKEN_PAGE, TOKEN_PAGE_CSP);
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn html(status: StatusCode, body: &'static str, csp: &'static str) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// The value of the `token` query parameter, form-decoded (`+` is a space, `%XX` a byte); the last one wins.
pub(crate) fn query_token(query: Option<&str>) -> Option<Vec<u8>> {
    let value = query?
        .split('&')
        .filter_map(|pair| pair.strip_prefix("token="))
        .next_back()?;
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'+' => decoded.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(index + 1..index + 3)
                    .filter(|pair| pair.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|pair| std::str::from_utf8(pair).ok())
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok());
                match hex {
                    Some(value) => {
                        decoded.push(value);
                        index += 2;
                    }
                    None => decoded.push(b'%'),
                }
            }
            other => decoded.push(other),
        }
        index += 1;
    }
    Some(decoded)
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    fn base64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// The `'sha256-…'` source of the one inline `<tag>` element of `page`.
    fn inline_hash(page: &str, tag: &str) -> String {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        assert_eq!(page.matches(&open).count(), 1, "one inline <{tag}>");
        let start = page.find(&open).unwrap() + open.len();
        let end = page[start..].find(&close).unwrap() + start;
        format!(
            "'sha256-{}'",
            base64(&Sha256::digest(&page.as_bytes()[start..end]))
        )
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn policies_allow_exactly_the_inline_script_and_style() {
        for (name, page, csp) in [
            ("dashboard.html", PAGE, PAGE_CSP),
            ("token.html", TOKEN_PAGE, TOKEN_PAGE_CSP),
        ] {
            for (tag, directive) in [("script", "script-src"), ("style", "style-src")] {
                let expected = format!("{directive} {}", inline_hash(page, tag));
                assert!(
                    csp.contains(&expected),
                    "{name}: the {tag} changed; its policy needs `{expected}`"
                );
            }
            assert!(csp.starts_with("default-src 'none'; "), "{csp}");
            assert!(!csp.contains("unsafe"), "{csp}");
            // Inline handlers and style attributes would be blocked by the policy (and logged as violations).
            for forbidden in [
                " style=",
                " onclick=",
                " onload=",
                " onerror=",
                "javascript:",
            ] {
                assert!(!page.contains(forbidden), "{name} contains {forbidden:?}");
            }
        }
    }

    #[test]
    fn the_page_builds_no_markup_from_strings() {
        for forbidden in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!PAGE.contains(forbidden), "dashboard.html uses {forbidden}");
            assert!(
                !TOKEN_PAGE.contains(forbidden),
                "token.html uses {forbidden}"
            );
        }
    }

    #[test]
    fn the_token_is_read_from_the_query() {
        assert_eq!(query_token(None), None);
        assert_eq!(query_token(Some("a=1")), None);
        assert_eq!(query_token(Some("token=abc")).as_deref(), Some(&b"abc"[..]));
        assert_eq!(
            query_token(Some("x=1&token=a%2Bb+c%3d&y=2")).as_deref(),
            Some(&b"a+b c="[..])
        );
        assert_eq!(
            query_token(Some("token=1&token=2")).as_deref(),
            Some(&b"2"[..])
        );
        assert_eq!(
            query_token(Some("token=%zz%4")).as_deref(),
            Some(&b"%zz%4"[..])
        );
        assert_eq!(query_token(Some("token=%+1")).as_deref(), Some(&b"% 1"[..]));
        assert_eq!(query_token(Some("token=")).as_deref(), Some(&b""[..]));
    }
}
