//! Cursor pagination: [`PageLimit`] parsed at the edge, [`Page`] built by over-fetching one.
//!
//! Lists are newest (or oldest) first by a UUID v7 id; a query asks for `limit + 1` rows
//! ([`PageLimit::fetch`]) and [`Page::cut`] keeps `limit` of them: the extra row only says that
//! there is a next page, whose cursor is the last kept item's id.

use uuid::Uuid;

use super::InvalidInput;

/// Page size of list routes: 1 to 100, 20 when not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(u8);

impl PageLimit {
    pub const MAX: u8 = 100;
    pub const DEFAULT: PageLimit = PageLimit(20);

    pub fn parse(limit: Option<i64>) -> Result<PageLimit, InvalidInput> {
        match limit {
            None => Ok(Self::DEFAULT),
            Some(n) => match u8::try_from(n) {
                Ok(v) if (1..=Self::MAX).contains(&v) => Ok(PageLimit(v)),
                _ => Err(InvalidInput {
                    field: "limit",
                    reason: "must be between 1 and 100",
                }),
            },
        }
    }
    pub fn get(self) -> usize {
        self.0.into()
    }
    /// How many rows to ask the database for: one more than the page, to know if one follows.
    pub fn fetch(self) -> i64 {
        i64::from(self.0) + 1
    }
}

impl Default for PageLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One page of a list and the cursor of the next (the last item's id), if there is one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<Uuid>,
}

impl<T> Page<T> {
    /// The page out of up to `limit + 1` rows fetched ([`PageLimit::fetch`]): the first `limit`,
    /// and the cursor of the last of them when there were more.
    pub fn cut(mut items: Vec<T>, limit: PageLimit, id: impl Fn(&T) -> Uuid) -> Page<T> {
        let next_cursor = if items.len() > limit.get() {
            items.truncate(limit.get());
            items.last().map(id)
        } else {
            None
        };
        Page { items, next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_limits_default_to_20_and_stop_at_100() {
        assert_eq!(PageLimit::parse(None).unwrap().get(), 20);
        assert_eq!(PageLimit::parse(Some(100)).unwrap().get(), 100);
        for bad in [0, 101, -5, 1 << 40] {
            assert_eq!(PageLimit::parse(Some(bad)).unwrap_err().field, "limit");
        }
    }

    #[test]
    fn a_page_over_fetched_by_one_has_a_next_cursor() {
        let limit = PageLimit::parse(Some(2)).unwrap();
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let page = Page::cut(ids.clone(), limit, |u| *u);
        assert_eq!(page.items, ids[..2]);
        assert_eq!(page.next_cursor, Some(ids[1]));
        let page = Page::cut(ids[..2].to_vec(), limit, |u| *u);
        assert_eq!(page.next_cursor, None);
    }
}
