//! The optional `AUTH_TOKEN` check on WebSocket upgrades **(safer)**: the reference has no auth.
//!
//! A client presents the token as `Authorization: Bearer <token>` or as `?token=<token>`. Tokens
//! are compared in constant time, and never logged.

use crate::request_head::RequestHead;

/// Whether `head` presents `expected`, by header or by query parameter.
pub fn is_authorized(head: &RequestHead, expected: &str) -> bool {
    let bearer = head.header("Authorization").and_then(|value| {
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("Bearer").then(|| token.trim().to_string())
    });
    // Check both candidates, so that timing does not tell which one was tried.
    let by_header = bearer.is_some_and(|token| constant_time_eq(token.as_bytes(), expected.as_bytes()));
    let by_query =
        head.query_param("token").is_some_and(|token| constant_time_eq(token.as_bytes(), expected.as_bytes()));
    by_header | by_query
}

/// Compares `given` with `expected` in time that depends only on `expected`'s length.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = given.len() ^ expected.len();
    for (i, &byte) in expected.iter().enumerate() {
        difference |= usize::from(byte ^ given.get(i).copied().unwrap_or(0));
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(target: &str, authorization: Option<&str>) -> RequestHead {
        let header = authorization.map(|v| format!("Authorization: {v}\r\n")).unwrap_or_default();
        RequestHead::parse(format!("GET {target} HTTP/1.1\r\n{header}\r\n").as_bytes()).unwrap()
    }

    #[test]
    fn accepts_the_token_by_header_or_query() {
        assert!(is_authorized(&head("/", Some("Bearer s3cret")), "s3cret"));
        assert!(is_authorized(&head("/", Some("bearer s3cret")), "s3cret"));
        assert!(is_authorized(&head("/?peerId=x&token=s3cret", None), "s3cret"));
    }

    #[test]
    fn refuses_missing_wrong_and_prefix_tokens() {
        assert!(!is_authorized(&head("/", None), "s3cret"));
        assert!(!is_authorized(&head("/", Some("Bearer s3cre")), "s3cret"));
        assert!(!is_authorized(&head("/", Some("Bearer s3cret2")), "s3cret"));
        assert!(!is_authorized(&head("/", Some("Basic s3cret")), "s3cret"));
        assert!(!is_authorized(&head("/?token=", None), "s3cret"));
    }

    #[test]
    fn constant_time_eq_is_plain_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abd", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
        assert!(!constant_time_eq(b"abc\0", b"abc"));
    }
}
