//! The credentials a WebSocket upgrade may present **(safer)**: the reference has neither.
//!
//! - `AUTH_TOKEN`, which every peer of a deployment holds: `Authorization: Bearer <token>` or
//!   `?token=<token>`.
//! - `HUB_TOKEN`, which only the hubs of a mesh hold: the `X-PeerPigeon-Hub-Token` header,
//!   `?hubToken=<token>`, or any one segment of the URL path (`ws://hub:3000/mesh/<token>`). The path
//!   is there for the JavaScript hub, which appends `?peerId=` to its bootstrap URL as given and so
//!   cannot carry a header or a second query parameter.
//!
//! Tokens are compared in constant time, and never logged.

use std::net::SocketAddr;

use crate::accept::request_head::RequestHead;

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

/// Whether a connection to a hub may become a hub link (docs/protocol.md §5, "Who is a hub"): it
/// presented `hub_token`, or none is set and it comes from this machine. A reverse proxy on this
/// machine connects from loopback too, on behalf of anyone: a request a proxy forwarded (it carries
/// one of [`FORWARDING_HEADERS`], which the proxy adds and its client cannot remove) is not local.
pub fn holds_hub_credential(head: &RequestHead, hub_token: Option<&str>, from: Option<SocketAddr>) -> bool {
    match hub_token {
        Some(token) => presents_hub_token(head, token),
        None => {
            let forwarded = FORWARDING_HEADERS.iter().any(|name| head.header(name).is_some());
            !forwarded && from.is_some_and(|addr| addr.ip().is_loopback())
        }
    }
}

/// Headers by which reverse proxies (nginx, Caddy, HAProxy, Apache, Traefik) say whom they forward.
pub const FORWARDING_HEADERS: [&str; 4] = ["Forwarded", "X-Forwarded-For", "X-Real-IP", "X-Forwarded-Host"];

/// The header a hub link presents `HUB_TOKEN` in.
pub const HUB_TOKEN_HEADER: &str = "X-PeerPigeon-Hub-Token";

/// Whether `head` presents the hub credential `expected`, by header, query parameter or path segment.
pub fn presents_hub_token(head: &RequestHead, expected: &str) -> bool {
    let matches = |given: &str| constant_time_eq(given.as_bytes(), expected.as_bytes());
    let by_header = head.header(HUB_TOKEN_HEADER).is_some_and(|token| matches(token.trim()));
    let by_query = head.query_param("hubToken").is_some_and(|token| matches(&token));
    // Every segment is compared, so that timing does not tell where the token was.
    let by_path = head.path_segments().fold(false, |found, segment| found | matches(&segment));
    by_header | by_query | by_path
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
    fn the_hub_token_comes_by_header_query_or_path_segment() {
        let with_header = |value: &str| {
            RequestHead::parse(format!("GET / HTTP/1.1\r\n{HUB_TOKEN_HEADER}: {value}\r\n\r\n").as_bytes()).unwrap()
        };
        assert!(presents_hub_token(&with_header("mesh key"), "mesh key"));
        assert!(!presents_hub_token(&with_header("mesh"), "mesh key"));
        assert!(presents_hub_token(&head("/?peerId=x&hubToken=mesh%20key", None), "mesh key"));
        assert!(presents_hub_token(&head("/mesh/mesh%20key?peerId=x", None), "mesh key"));
        assert!(presents_hub_token(&head("/k3y", None), "k3y"));
        assert!(!presents_hub_token(&head("/mesh/k3y2?peerId=x", None), "k3y"));
        assert!(!presents_hub_token(&head("/?token=k3y", Some("Bearer k3y")), "k3y"));
    }

    #[test]
    fn without_a_hub_token_only_loopback_may_link() {
        let local: SocketAddr = "127.0.0.7:5000".parse().unwrap();
        let remote: SocketAddr = "203.0.113.9:5000".parse().unwrap();
        let plain = head("/?peerId=x", None);
        assert!(holds_hub_credential(&plain, None, Some(local)));
        assert!(!holds_hub_credential(&plain, None, Some(remote)));
        assert!(!holds_hub_credential(&plain, None, None));
        // A proxy on this machine forwarding someone else is not this machine.
        for name in FORWARDING_HEADERS {
            let proxied =
                RequestHead::parse(format!("GET /?peerId=x HTTP/1.1\r\n{name}: 203.0.113.9\r\n\r\n").as_bytes());
            assert!(!holds_hub_credential(&proxied.unwrap(), None, Some(local)), "{name}");
        }
        // With a token set, the address does not matter: only the token does.
        assert!(!holds_hub_credential(&plain, Some("k"), Some(local)));
        assert!(holds_hub_credential(&head("/mesh/k", None), Some("k"), Some(remote)));
    }

    #[test]
    fn constant_time_eq_is_plain_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abd", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
        assert!(!constant_time_eq(b"abc\0", b"abc"));
    }
}
