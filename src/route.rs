//! Bounded labels for the method and route of a request.
//!
//! Metric labels must stay few whatever clients send: the method label is one of the nine standard methods or
//! `_OTHER` (as OpenTelemetry's HTTP conventions say), and the route label is a route template, never a raw path.

use http::Method;

/// Route label of requests that matched no route (404s, scanners).
pub const UNMATCHED_ROUTE: &str = "<unmatched>";

/// Route label of requests on new routes after `max_routes` templates were registered.
pub const OVERFLOW_ROUTE: &str = "<overflow>";

/// The route template of a request, from axum's `MatchedPath` when the `axum` feature is on.
#[cfg_attr(
    not(any(feature = "monitor", feature = "cache", feature = "query")),
    allow(dead_code)
)]
pub(crate) fn matched_path<B>(request: &http::Request<B>) -> Option<&str> {
    #[cfg(feature = "axum")]
    {
        request
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map(|path| path.as_str())
    }
    #[cfg(not(feature = "axum"))]
    {
        let _ = request;
        None
    }
}

/// An HTTP method reduced to a bounded label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum MethodLabel {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `CONNECT`
    Connect,
    /// `OPTIONS`
    Options,
    /// `TRACE`
    Trace,
    /// `PATCH`
    Patch,
    /// Any extension method.
    Other,
}

impl MethodLabel {
    /// Every label, in index order.
    pub const ALL: [MethodLabel; 10] = [
        MethodLabel::Get,
        MethodLabel::Head,
        MethodLabel::Post,
        MethodLabel::Put,
        MethodLabel::Delete,
        MethodLabel::Connect,
        MethodLabel::Options,
        MethodLabel::Trace,
        MethodLabel::Patch,
        MethodLabel::Other,
    ];

    /// The label of `method`.
    pub fn of(method: &Method) -> Self {
        match *method {
            Method::GET => MethodLabel::Get,
            Method::HEAD => MethodLabel::Head,
            Method::POST => MethodLabel::Post,
            Method::PUT => MethodLabel::Put,
            Method::DELETE => MethodLabel::Delete,
            Method::CONNECT => MethodLabel::Connect,
            Method::OPTIONS => MethodLabel::Options,
            Method::TRACE => MethodLabel::Trace,
            Method::PATCH => MethodLabel::Patch,
            _ => MethodLabel::Other,
        }
    }

    /// The label text: the method name, or `_OTHER`.
    pub fn as_str(self) -> &'static str {
        match self {
            MethodLabel::Get => "GET",
            MethodLabel::Head => "HEAD",
            MethodLabel::Post => "POST",
            MethodLabel::Put => "PUT",
            MethodLabel::Delete => "DELETE",
            MethodLabel::Connect => "CONNECT",
            MethodLabel::Options => "OPTIONS",
            MethodLabel::Trace => "TRACE",
            MethodLabel::Patch => "PATCH",
            MethodLabel::Other => "_OTHER",
        }
    }

    /// Position in [`MethodLabel::ALL`].
    #[cfg_attr(not(feature = "monitor"), allow(dead_code))]
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for MethodLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn indices_follow_all() {
        for (index, label) in MethodLabel::ALL.iter().enumerate() {
            assert_eq!(label.index(), index);
        }
    }

    proptest! {
        #[test]
        fn extension_methods_map_to_other(name in "[A-Z]{3,12}") {
            let method = Method::from_bytes(name.as_bytes()).unwrap();
            let label = MethodLabel::of(&method);
            if label != MethodLabel::Other {
                prop_assert_eq!(label.as_str(), name.as_str());
            }
        }
    }
}
