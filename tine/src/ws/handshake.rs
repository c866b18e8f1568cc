//! The opening handshake, server side (RFC 6455 §4.2): validate the
//! client's upgrade request and build the `101 Switching Protocols`.

use base64::Engine as _;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode, Version};

use crate::http::{Request, Response};

/// Whether a request asks to switch to WebSocket (`Upgrade: websocket`).
/// Such a request is routed to WebSocket routes; everything else is plain
/// HTTP. An HTTP/1.0 request's `Upgrade` is ignored (RFC 9110 §7.8): it is
/// plain HTTP too.
pub(crate) fn is_upgrade(req: &Request) -> bool {
    // The parser noted whether an `Upgrade` field came at all: most
    // requests are answered without looking at their headers again.
    req.has_upgrade_header()
        && req.version() != Version::HTTP_10
        && has_token(req, header::UPGRADE, "websocket")
}

/// Validates the handshake and returns the `101` response, selecting the
/// first subprotocol the client offers that the server supports.
/// Failures carry their status: 426 (with `Sec-WebSocket-Version: 13`,
/// and the `Upgrade: websocket` every 426 must name, RFC 9110 §15.5.22)
/// for a missing or unsupported version, 400 for anything else.
pub(crate) fn accept(req: &Request, protocols: &[String]) -> Result<Response, Box<Response>> {
    let bad = || Box::new(Response::error(StatusCode::BAD_REQUEST));
    if req.method() != Method::GET || req.version() != Version::HTTP_11 {
        return Err(bad());
    }
    if !has_token(req, header::CONNECTION, "upgrade") {
        return Err(bad());
    }
    if req.header(header::SEC_WEBSOCKET_VERSION).map(str::trim) != Some("13") {
        return Err(Box::new(
            Response::error(StatusCode::UPGRADE_REQUIRED)
                .with_header(header::UPGRADE, "websocket")
                .with_header(header::SEC_WEBSOCKET_VERSION, "13"),
        ));
    }
    // One key (RFC 6455 §11.3.1: the field must not appear more than
    // once): with two, which one an intermediary checked is unknown.
    if req
        .header_all(header::SEC_WEBSOCKET_KEY.as_str())
        .nth(1)
        .is_some()
    {
        return Err(bad());
    }
    let key = req
        .header(header::SEC_WEBSOCKET_KEY)
        .map(str::trim)
        .ok_or_else(bad)?;
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(raw) if raw.len() == 16 => {}
        _ => return Err(bad()),
    }
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut res = Response::empty(StatusCode::SWITCHING_PROTOCOLS)
        .with_header(header::UPGRADE, "websocket")
        .with_header(header::SEC_WEBSOCKET_ACCEPT, accept);
    let offered = req
        .header_all(header::SEC_WEBSOCKET_PROTOCOL.as_str())
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .map(str::trim);
    for p in offered {
        if protocols.iter().any(|s| s == p) {
            if let Ok(v) = HeaderValue::from_str(p) {
                res.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, v);
            }
            break;
        }
    }
    Ok(res)
}

fn has_token(req: &Request, name: header::HeaderName, token: &str) -> bool {
    req.header_all(name.as_str())
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade(extra: &[(&str, &str)]) -> Request {
        let mut b = Request::builder(Method::GET, "/ws")
            .header("upgrade", "websocket")
            .header("connection", "keep-alive, Upgrade");
        for (k, v) in extra {
            b = b.header(k, v);
        }
        b.finish()
    }

    #[test]
    fn rfc_example_accept_key() {
        // RFC 6455 §1.3.
        let req = upgrade(&[
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
            ("sec-websocket-protocol", "superchat, chat"),
        ]);
        assert!(is_upgrade(&req));
        let res = accept(&req, &["chat".to_string()]).unwrap();
        assert_eq!(res.status(), 101);
        assert_eq!(
            res.headers()["sec-websocket-accept"],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(res.headers()["sec-websocket-protocol"], "chat");
    }

    #[test]
    fn bad_handshakes() {
        let no_version = upgrade(&[("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")]);
        let res = accept(&no_version, &[]).unwrap_err();
        assert_eq!(res.status(), 426);
        assert_eq!(res.headers()["sec-websocket-version"], "13");
        assert_eq!(res.headers()["upgrade"], "websocket");
        let old = upgrade(&[
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "8"),
        ]);
        assert_eq!(accept(&old, &[]).unwrap_err().status(), 426);
        let short_key = upgrade(&[
            ("sec-websocket-key", "c2hvcnQ="),
            ("sec-websocket-version", "13"),
        ]);
        assert_eq!(accept(&short_key, &[]).unwrap_err().status(), 400);
        let two_keys = upgrade(&[
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
        ]);
        assert_eq!(accept(&two_keys, &[]).unwrap_err().status(), 400);
        let no_key = upgrade(&[("sec-websocket-version", "13")]);
        assert_eq!(accept(&no_key, &[]).unwrap_err().status(), 400);
        let post = Request::builder(Method::POST, "/ws")
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-version", "13")
            .finish();
        assert_eq!(accept(&post, &[]).unwrap_err().status(), 400);
    }
}
