//! Signed and private cookies over real TCP: the round trip through a
//! client, tampered and forged cookies refused, and a key rotation where
//! cookies made with the previous key keep working until it is retired.

mod support;

use std::net::SocketAddr;

use support::{Client, Resp};
use tine::cookie::{Cookie, Key};
use tine::{App, Cors, Request, Response};

/// An app whose `/login` sets a signed `user` and a private `sid`, and
/// whose `/me` shows what verifies (`-` for what does not).
fn app(key: Key, old: Option<Key>) -> App {
    routes(key, old).cors(Cors::new().expose_headers(&["X-Total-Count"]))
}

/// The routes of [`app`], without CORS.
fn routes(key: Key, old: Option<Key>) -> App {
    let mut app = App::new()
        .cookie_key(key)
        .get("/login", |req: &Request| {
            let user = Cookie::build(("user", "ada"))
                .path("/")
                .http_only(true)
                .build();
            Response::text("welcome")
                .set_signed_cookie(req, user)
                .set_private_cookie(req, Cookie::new("sid", "s3cret/+="))
        })
        .get("/me", |req: &Request| {
            let show =
                |c: Option<Cookie<'static>>| c.map_or("-".to_string(), |c| c.value().to_string());
            format!(
                "user={} sid={}",
                show(req.signed_cookie("user")),
                show(req.private_cookie("sid"))
            )
        })
        .get("/logout", |_: &Request| {
            Response::text("bye").remove_cookie("user")
        })
        .get("/theme", |req: &Request| {
            // Attributes set on the cookie are kept as they are.
            let theme = Cookie::build(("theme", "dark"))
                .path("/app")
                .http_only(false)
                .same_site(tine::cookie::SameSite::Strict)
                .build();
            Response::text("ok").set_signed_cookie(req, theme)
        });
    if let Some(old) = old {
        app = app.old_cookie_key(old);
    }
    app
}

fn start(key: &Key, old: Option<&Key>) -> SocketAddr {
    let (key, old) = (key.clone(), old.cloned());
    support::serve(move || app(key, old))
}

/// `name=value` of each `Set-Cookie`, as a browser would send them back.
fn cookie_pairs(r: &Resp) -> Vec<String> {
    r.headers_all("set-cookie")
        .iter()
        .map(|v| v.split(';').next().unwrap().to_string())
        .collect()
}

fn me(addr: SocketAddr, cookies: &[String]) -> String {
    let mut c = Client::connect(addr);
    c.send(
        format!(
            "GET /me HTTP/1.1\r\nHost: t\r\nCookie: {}\r\n\r\n",
            cookies.join("; ")
        )
        .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

#[test]
fn round_trip_and_tampering() {
    let key = Key::generate();
    let addr = start(&key, None);
    let login = testkit::get(addr, "/login");
    let cookies = cookie_pairs(&login);
    assert_eq!(cookies.len(), 2, "{login:?}");
    assert!(cookies[0].starts_with("user=") && cookies[0].ends_with("ada"));
    assert!(
        !cookies[1].contains("s3cret"),
        "private values are not readable"
    );
    assert!(login.headers_all("set-cookie")[0].contains("HttpOnly"));
    // `sid` was made with no attributes: it gets a session cookie's, so
    // that every path sees it and `remove_cookie` (at `/`) removes it.
    let sid = &login.headers_all("set-cookie")[1];
    for attribute in ["Path=/", "HttpOnly", "SameSite=Lax"] {
        assert!(
            sid.split("; ").any(|a| a == attribute),
            "{attribute}: {sid}"
        );
    }
    assert_eq!(me(addr, &cookies), "user=ada sid=s3cret/+=");
    let theme = testkit::get(addr, "/theme");
    let theme = theme.header("set-cookie").unwrap();
    for attribute in ["Path=/app", "SameSite=Strict"] {
        assert!(
            theme.split("; ").any(|a| a == attribute),
            "{attribute}: {theme}"
        );
    }
    assert!(!theme.contains("HttpOnly"), "{theme}");

    // The signed value changed by the client: refused. The private one
    // with a byte flipped: refused. Plain values: refused.
    let forged_user = cookies[0].replace("ada", "bob");
    assert_eq!(
        me(addr, &[forged_user, cookies[1].clone()]),
        "user=- sid=s3cret/+="
    );
    let mut sid = cookies[1].clone();
    let flipped = if sid.ends_with('A') { 'B' } else { 'A' };
    sid.pop();
    sid.push(flipped);
    assert_eq!(me(addr, &[cookies[0].clone(), sid]), "user=ada sid=-");
    assert_eq!(
        me(addr, &["user=ada".into(), "sid=s3cret".into()]),
        "user=- sid=-"
    );
    // The private value under another name is refused (the name is bound).
    let moved = cookies[1].replacen("sid=", "user=", 1);
    assert_eq!(me(addr, &[moved]), "user=- sid=-");

    // Log-out: an expired, empty cookie.
    let out = testkit::get(addr, "/logout");
    let set = out.header("set-cookie").unwrap();
    assert!(
        set.starts_with("user=;") && set.contains("Max-Age=0"),
        "{set}"
    );
}

#[test]
fn rotation_accepts_the_old_key_until_it_is_retired() {
    let (old, new) = (Key::generate(), Key::generate());
    let before = start(&old, None);
    let old_cookies = cookie_pairs(&testkit::get(before, "/login"));

    // Rolled: the new key signs, the old one is still accepted.
    let during = start(&new, Some(&old));
    assert_eq!(me(during, &old_cookies), "user=ada sid=s3cret/+=");
    let new_cookies = cookie_pairs(&testkit::get(during, "/login"));
    assert_ne!(new_cookies, old_cookies, "signed with the new key");
    assert_eq!(me(during, &new_cookies), "user=ada sid=s3cret/+=");

    // Retired: the old key's cookies are refused, the new ones work.
    let after = start(&new, None);
    assert_eq!(me(after, &old_cookies), "user=- sid=-");
    assert_eq!(me(after, &new_cookies), "user=ada sid=s3cret/+=");
}

#[test]
fn cors_exposes_headers_to_scripts() {
    let addr = start(&Key::generate(), None);
    let mut c = Client::connect(addr);
    c.send(b"GET /me HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example\r\n\r\n");
    let r = c.read_response();
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("X-Total-Count")
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    // The same `*` without `Origin` (one answer for all: no `Vary`).
    c.send(b"GET /me HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("X-Total-Count")
    );
    assert_eq!(r.header("vary"), None);
    // Not on a preflight, which only says what may be sent.
    c.send(
        b"OPTIONS /me HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example\r\n\
          Access-Control-Request-Method: GET\r\n\r\n",
    );
    let r = c.read_response();
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-expose-headers"), None);
}

/// Credentials were allowed to every origin (`null` included): any site
/// could read `/me` with the user's cookies. Now only listed origins are.
#[test]
fn credentials_are_allowed_only_to_listed_origins() {
    let key = Key::generate();
    let k = key.clone();
    let addr = support::serve(move || {
        routes(k, None).cors(
            Cors::new()
                .allow_origin("https://app.example")
                .allow_credentials(true),
        )
    });
    let cookies = cookie_pairs(&testkit::get(addr, "/login"));
    let ask = |raw: String| {
        let mut c = Client::connect(addr);
        c.send(raw.as_bytes());
        c.read_response()
    };
    let me = |origin: &str| {
        ask(format!(
            "GET /me HTTP/1.1\r\nHost: t\r\nOrigin: {origin}\r\nCookie: {}\r\n\r\n",
            cookies.join("; ")
        ))
    };
    let preflight = |origin: &str| {
        ask(format!(
            "OPTIONS /me HTTP/1.1\r\nHost: t\r\nOrigin: {origin}\r\n\
             Access-Control-Request-Method: DELETE\r\n\r\n"
        ))
    };

    let r = me("https://app.example");
    assert_eq!(r.text(), "user=ada sid=s3cret/+=");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let r = preflight("https://app.example");
    assert_eq!(r.status, 204);
    assert!(r.header("access-control-allow-methods").is_some(), "{r:?}");

    for origin in ["https://evil.example", "null"] {
        for r in [me(origin), preflight(origin)] {
            assert_eq!(r.header("access-control-allow-origin"), None, "{r:?}");
            assert_eq!(r.header("access-control-allow-credentials"), None);
            assert_eq!(r.header("access-control-allow-methods"), None);
        }
    }
}

/// `allow_credentials(true)` without an origin list is a configuration
/// mistake, reported at the app's `.cors(..)` line.
#[test]
fn credentials_without_listed_origins_are_refused_at_the_cors_line() {
    let line = line!() + 1;
    let panic = std::panic::catch_unwind(|| App::new().cors(Cors::new().allow_credentials(true)))
        .expect_err("credentials with any origin must be refused");
    let msg = panic.downcast_ref::<String>().expect("a formatted message");
    assert!(msg.contains("Cors::allow_origin"), "{msg}");
    assert!(msg.contains(&format!("cookies.rs:{line}:")), "{msg}");
}
