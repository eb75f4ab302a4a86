//! Keyset pages: a list query loads one row more than the page holds, to learn whether more
//! follow without counting.

use crate::core::chunks::Page;
use crate::core::Result;

/// Turns up to `size + 1` loaded rows into a page: the extra row is dropped and the last kept
/// row's `position` becomes where the next page starts.
pub fn keyset_page<R, T>(
    mut rows: Vec<R>,
    size: u32,
    position: impl Fn(&R) -> i64,
    convert: impl FnMut(R) -> Result<T>,
) -> Result<Page<T>> {
    let next_after = if rows.len() > size as usize {
        rows.truncate(size as usize);
        rows.last().map(position)
    } else {
        None
    };
    let items = rows.into_iter().map(convert).collect::<Result<_>>()?;
    Ok(Page { items, next_after })
}
