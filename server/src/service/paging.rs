//! Page tokens: opaque to clients, a keyset position inside.

use crate::core::chunks::PageRequest;
use crate::core::limits::Limits;
use crate::core::{Error, Result};

const PREFIX: &str = "after:";

pub fn page_request(
    limits: &Limits,
    size: u32,
    default_size: u32,
    token: &str,
) -> Result<PageRequest> {
    let size = limits.page_size(size, default_size)?;
    let after = if token.is_empty() {
        None
    } else {
        let position = token
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.parse::<i64>().ok())
            .ok_or_else(|| Error::invalid("page_token", "not a token this server returned"))?;
        Some(position)
    };
    Ok(PageRequest { size, after })
}

pub fn next_page_token(next_after: Option<i64>) -> String {
    next_after
        .map(|after| format!("{PREFIX}{after}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let limits = Limits::default();
        let token = next_page_token(Some(42));
        assert_eq!(
            page_request(&limits, 0, 50, &token).unwrap().after,
            Some(42)
        );
        assert_eq!(next_page_token(None), "");
        assert!(page_request(&limits, 0, 50, "garbage").is_err());
        assert!(page_request(&limits, 5000, 50, "").is_err());
    }
}
