//! The external services some tests need (PostgreSQL, Redis), found through environment variables.

/// The URL in `var` when it starts with one of `schemes`. Otherwise the test is skipped with a printed reason,
/// or fails when `PERFSCOPE_REQUIRE_SERVICES` is set (as `scripts/test` does, after starting the services).
pub fn service_url(var: &str, schemes: &[&str], what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if schemes.iter().any(|scheme| url.starts_with(scheme)) => Some(url),
        _ => {
            assert!(
                std::env::var_os("PERFSCOPE_REQUIRE_SERVICES").is_none(),
                "{var} must point at {what} when PERFSCOPE_REQUIRE_SERVICES is set"
            );
            eprintln!(
                "SKIPPED: set {var}={}//… to run the {what} tests",
                schemes.first().copied().unwrap_or("")
            );
            None
        }
    }
}
