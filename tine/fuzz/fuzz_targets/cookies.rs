//! Signed and private cookies: what a response sets, sent back by the
//! client, reads back as the same value; changed, it does not read.
//!
//! The input is read (by `arbitrary`) as a cookie name (an RFC 6265 token,
//! see `TCHAR`), a value (any text) and where to change the
//! sealed value. An app with a cookie key answers one request by setting
//! the cookie signed and private (`Response::set_signed_cookie`,
//! `set_private_cookie`), and a second request that sends back what the
//! `Set-Cookie` headers carried, as a browser does, and reads it with
//! `Request::signed_cookie` and `private_cookie`: both give the value back.
//! With one byte of what was sent changed, neither reads.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use tine::cookie::{Cookie, Key};
use tine::test::TestClient;
use tine::{App, Request, Response};

/// Token characters, less `#`, `%`, `^`, `` ` `` and `|`: `Set-Cookie`
/// carries a name percent-encoded (the `cookie` crate's `encoded()`), and
/// `Request::cookies` takes names as sent, so a cookie whose name holds one
/// of them is set under another name than it is read by (`a#b` is set as
/// `a%23b`) and never reads back.
const TCHAR: &[u8] = b"!$&'*+-._~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn app() -> App {
    // The request body is `name \0 value`.
    fn split(req: &Request) -> (String, String) {
        let body = String::from_utf8(req.body().to_vec()).expect("UTF-8 body");
        let (name, value) = body.split_once('\0').expect("name and value");
        (name.to_owned(), value.to_owned())
    }
    App::new()
        .cookie_key(Key::from(&[7u8; 64]))
        .post("/set", |req: &Request| {
            let (name, value) = split(req);
            Response::text("set")
                .set_signed_cookie(req, Cookie::new(format!("s{name}"), value.clone()))
                .set_private_cookie(req, Cookie::new(format!("p{name}"), value))
        })
        .post("/get", |req: &Request| {
            let (name, _) = split(req);
            let read = |c: Option<Cookie<'static>>| c.map(|c| c.value().to_owned());
            let signed = read(req.signed_cookie(&format!("s{name}")));
            let private = read(req.private_cookie(&format!("p{name}")));
            Response::json(&(signed, private))
        })
}

thread_local! {
    static CLIENT: TestClient = TestClient::new(app());
}

fn check(u: &mut Unstructured<'_>) -> Result<()> {
    let len = u.int_in_range(0..=12)?;
    let mut name = String::new();
    for _ in 0..len {
        name.push(char::from(*u.choose(TCHAR)?));
    }
    let value: String = u.arbitrary()?;
    let flip: usize = u.arbitrary()?;
    let bit = 1u8 << u.int_in_range(0..=6)?;
    if value.contains('\0') {
        return Ok(());
    }
    let body = format!("{name}\0{value}");
    CLIENT.with(|client| {
        client.clear_cookies();
        let set = client.post("/set").body(body.clone()).send();
        assert_eq!(set.status(), 200);
        // What a browser sends back: each `Set-Cookie`'s `name=value`.
        let pairs: Vec<String> = set
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| {
                let v = v.to_str().expect("a Set-Cookie header is visible ASCII");
                v.split(';').next().unwrap_or("").trim().to_owned()
            })
            .collect();
        assert_eq!(pairs.len(), 2, "{pairs:?}");
        client.clear_cookies();
        let get = |cookie: &str| {
            let res = client
                .post("/get")
                .header("cookie", cookie)
                .body(body.clone())
                .send();
            assert_eq!(res.status(), 200);
            res.json::<(Option<String>, Option<String>)>()
        };
        let sent = pairs.join("; ");
        assert_eq!(
            get(&sent),
            (Some(value.clone()), Some(value.clone())),
            "name {name:?}, sent {sent:?}"
        );
        // One byte of one value changed (a visible ASCII byte kept visible,
        // so the header stays valid), not `;`, `,`, `=`, `"`, `\` or `%`
        // (those make another cookie line rather than another value),
        // nor within a `%XX` escape (`%2a` is `%2A`).
        for (i, pair) in pairs.iter().enumerate() {
            let Some(eq) = pair.find('=') else { continue };
            let value_bytes = &pair.as_bytes()[eq + 1..];
            if value_bytes.is_empty() {
                continue;
            }
            let at = eq + 1 + flip % value_bytes.len();
            let mut changed = pair.clone().into_bytes();
            let b = changed[at] ^ bit;
            let in_escape = changed[at.saturating_sub(2)..at].contains(&b'%');
            if !(0x21..0x7f).contains(&b)
                || b";=%,\" \\".contains(&b)
                || changed[at] == b'%'
                || in_escape
            {
                continue;
            }
            changed[at] = b;
            let changed = String::from_utf8(changed).expect("ASCII");
            let (signed, private) = get(&changed);
            let read = if i == 0 { signed } else { private };
            assert_eq!(read, None, "{changed:?} (from {pair:?}) still reads");
        }
    });
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = check(&mut Unstructured::new(data));
});
