//! Signed and private (encrypted) cookies: the keys the app configured,
//! and signing, verifying, encrypting and decrypting with them.
//!
//! The cryptography is the `cookie` crate's (`signed`: HMAC-SHA256 of the
//! value, so the value is bound to the key but not to the cookie's name;
//! `private`: AES-256-GCM with the cookie's name as associated data, so a
//! value cannot be moved to another cookie). The format is the crate's
//! own, so cookies stay readable by other servers built on it (Rocket,
//! axum-extra) sharing the key. tine adds the key ring: one
//! key signs and encrypts, older keys are still accepted when verifying
//! and decrypting, so a key can be rolled without logging everyone out.
//!
//! The ring lives in the worker state every request carries (see
//! `Service`), so requests pay nothing for it until a handler asks.

use cookie::{Cookie, CookieJar, Key};

use super::Request;

/// The keys set with `App::cookie_key` and `App::old_cookie_key`.
#[derive(Default, Clone)]
pub(crate) struct CookieKeys {
    /// Signs and encrypts; tried first.
    pub(crate) current: Option<Key>,
    /// Still accepted, never used to sign or encrypt.
    pub(crate) old: Vec<Key>,
}

/// Signed or private.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Signed,
    Private,
}

impl CookieKeys {
    fn all(&self) -> impl Iterator<Item = &Key> {
        self.current.iter().chain(&self.old)
    }

    /// The cookie with its value verified (or decrypted), by any key of
    /// the ring; `None` when no key accepts it (tampered, forged, or made
    /// with a key no longer in the ring).
    pub(crate) fn open(&self, kind: Kind, cookie: &Cookie<'_>) -> Option<Cookie<'static>> {
        let original = cookie.clone().into_owned();
        self.all().find_map(|key| {
            let mut jar = CookieJar::new();
            jar.add_original(original.clone());
            match kind {
                Kind::Signed => jar.signed(key).get(original.name()),
                Kind::Private => jar.private(key).get(original.name()),
            }
        })
    }

    /// The cookie signed (or encrypted) with the current key.
    #[track_caller]
    pub(crate) fn seal(&self, kind: Kind, cookie: Cookie<'static>) -> Cookie<'static> {
        let key = self.current.as_ref().unwrap_or_else(|| missing_key());
        let mut jar = CookieJar::new();
        match kind {
            Kind::Signed => jar.signed_mut(key).add(cookie),
            Kind::Private => jar.private_mut(key).add(cookie),
        }
        jar.delta()
            .next()
            .cloned()
            .expect("the cookie just added is in the jar")
    }
}

/// The key ring of the app serving `req`. Panics without one: a handler
/// that uses signed or private cookies in an app with no key is a
/// configuration mistake, answered 500 and logged with this message.
#[track_caller]
pub(crate) fn keys(req: &Request) -> &CookieKeys {
    match req.state::<CookieKeys>() {
        Some(keys) if keys.current.is_some() => keys,
        _ => missing_key(),
    }
}

#[cold]
#[track_caller]
fn missing_key() -> ! {
    panic!(
        "signed and private cookies need a key: set one with App::cookie_key \
         (and make the request through the app, or tine::test::TestClient)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(current: &Key, old: &[&Key]) -> CookieKeys {
        CookieKeys {
            current: Some(current.clone()),
            old: old.iter().map(|k| (*k).clone()).collect(),
        }
    }

    #[test]
    fn seal_and_open_with_rotation() {
        let (k1, k2) = (Key::generate(), Key::generate());
        for kind in [Kind::Signed, Kind::Private] {
            let sealed = ring(&k1, &[]).seal(kind, Cookie::new("sid", "42"));
            assert_ne!(sealed.value(), "42");
            let open = |keys: &CookieKeys| keys.open(kind, &sealed).map(|c| c.value().to_string());
            assert_eq!(open(&ring(&k1, &[])).as_deref(), Some("42"));
            // Rolled: the new key signs, the old one still opens.
            assert_eq!(open(&ring(&k2, &[&k1])).as_deref(), Some("42"));
            // Retired: no longer accepted.
            assert_eq!(open(&ring(&k2, &[])), None);
            // Tampered: one character of the value changed.
            let mut value = sealed.value().to_string();
            let last = value.pop().unwrap();
            value.push(if last == 'A' { 'B' } else { 'A' });
            let tampered = Cookie::new("sid", value);
            assert_eq!(ring(&k1, &[]).open(kind, &tampered), None);
            // Moved to another name: a private value is bound to its name
            // (associated data); a signed one only to the key, as the
            // docs of `Request::signed_cookie` say.
            let renamed = Cookie::new("admin", sealed.value().to_string());
            let moved = ring(&k1, &[]).open(kind, &renamed).is_some();
            assert_eq!(moved, matches!(kind, Kind::Signed));
        }
    }
}
