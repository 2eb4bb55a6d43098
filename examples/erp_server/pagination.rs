//! Validated `page` / `per_page` query parameters, shared by the list endpoints so they agree on defaults and limits.

use crate::error::AppError;

/// Page size when the client does not ask for one.
pub(crate) const DEFAULT_PER_PAGE: u32 = 20;
/// Largest page a client may ask for: bounds the work one request can cause.
pub(crate) const MAX_PER_PAGE: u32 = 100;

/// A validated page request: `page >= 1`, `1 <= per_page <= MAX_PER_PAGE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Page {
    /// 1-based page number.
    pub(crate) page: u32,
    /// Rows per page.
    pub(crate) per_page: u32,
}

impl Page {
    /// Applies the defaults (page 1, [`DEFAULT_PER_PAGE`]) and rejects out-of-range values with a 400.
    pub(crate) fn new(page: Option<u32>, per_page: Option<u32>) -> Result<Self, AppError> {
        let page = page.unwrap_or(1);
        let per_page = per_page.unwrap_or(DEFAULT_PER_PAGE);
        if page == 0 {
            return Err(AppError::BadRequest("page must be 1 or more".to_owned()));
        }
        if per_page == 0 || per_page > MAX_PER_PAGE {
            return Err(AppError::BadRequest(format!(
                "per_page must be between 1 and {MAX_PER_PAGE}"
            )));
        }
        Ok(Self { page, per_page })
    }

    /// The SQL `LIMIT`.
    pub(crate) fn limit(self) -> i64 {
        i64::from(self.per_page)
    }

    /// The SQL `OFFSET`; cannot overflow since both factors fit in `u32`.
    pub(crate) fn offset(self) -> i64 {
        (i64::from(self.page) - 1) * i64::from(self.per_page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_offsets() {
        let page = Page::new(None, None).unwrap();
        assert_eq!(
            (page.page, page.per_page, page.offset()),
            (1, DEFAULT_PER_PAGE, 0)
        );
        assert_eq!(Page::new(Some(3), Some(10)).unwrap().offset(), 20);
        assert_eq!(
            Page::new(Some(u32::MAX), Some(MAX_PER_PAGE))
                .unwrap()
                .offset(),
            (i64::from(u32::MAX) - 1) * 100
        );
    }

    #[test]
    fn rejects_out_of_range() {
        assert!(Page::new(Some(0), None).is_err());
        assert!(Page::new(None, Some(0)).is_err());
        assert!(Page::new(None, Some(MAX_PER_PAGE + 1)).is_err());
    }
}
