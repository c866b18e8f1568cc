//! `redis://` URLs: the parts that matter for pub/sub (host, port, user,
//! password), and a redacted form for messages.

use std::fmt;
use std::io;

/// The port of a URL without one.
const DEFAULT_PORT: u16 = 6379;

/// The parts of a `redis://` URL that matter here.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RedisUrl {
    /// Host name or IP address (without IPv6 brackets).
    pub(crate) host: String,
    /// TCP port, 6379 unless given.
    pub(crate) port: u16,
    /// ACL user name, for `AUTH user password` (Redis 6+).
    pub(crate) username: Option<String>,
    /// Password, for `AUTH`.
    pub(crate) password: Option<String>,
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `url` with any user and password replaced by `***`, for messages.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_string(),
    }
}

/// Parses `redis://[[user]:password@]host[:port][/db][?query]`. The
/// database and query are ignored (pub/sub spans databases); user and
/// password may be percent-encoded.
pub(crate) fn parse_url(url: &str) -> io::Result<RedisUrl> {
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("tine: bad Redis URL {:?}: {why}", redacted(url)),
        )
    };
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("redis") => rest,
        Some((scheme, _)) => {
            return Err(bad(&format!(
                "scheme {scheme:?} is not supported (only redis://)"
            )))
        }
        None => return Err(bad("expected redis://host:port")),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let decode = |s: &str| -> io::Result<String> {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| bad("user or password is not UTF-8"))
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(info) => match info.split_once(':') {
            Some((user, pass)) => {
                let user = (!user.is_empty()).then(|| decode(user)).transpose()?;
                (user, Some(decode(pass)?))
            }
            // `redis://secret@host`: a lone userinfo is taken as the
            // password, as redis-cli and most clients do.
            None => (None, Some(decode(info)?)),
        },
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        match after {
            "" => (host, None),
            p => (
                host,
                Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
            ),
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => return Err(bad("bad port")),
        },
    };
    Ok(RedisUrl {
        host: host.to_string(),
        port,
        username,
        password,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("redis://127.0.0.1:6380").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 6380));
        assert_eq!((u.username, u.password), (None, None));
        let u = parse_url("redis://localhost").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("localhost", 6379));
        let u = parse_url("redis://:s3cret@h:1/3").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("h", 1));
        assert_eq!((u.username, u.password.as_deref()), (None, Some("s3cret")));
        let u = parse_url("REDIS://bob:p%40ss:w@h:2/0?x=1").unwrap();
        assert_eq!(u.username.as_deref(), Some("bob"));
        assert_eq!(u.password.as_deref(), Some("p@ss:w"));
        assert_eq!((u.host.as_str(), u.port), ("h", 2));
        let u = parse_url("redis://onlypw@h").unwrap();
        assert_eq!((u.username, u.password.as_deref()), (None, Some("onlypw")));
        let u = parse_url("redis://[::1]:7000/0").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 7000));
        let u = parse_url("redis://[::1]").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 6379));
        assert!(!format!("{:?}", parse_url("redis://:pw@h").unwrap()).contains("pw"));
        let err = parse_url("redis://u:hunter2@h:x/0")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("redis://***@h:x/0") && !err.contains("hunter2"),
            "{err}"
        );
        assert_eq!(redacted("redis://h:1/a@b"), "redis://h:1/a@b");
        for bad in [
            "http://h:1",
            "rediss://h:1",
            "unix:///tmp/redis.sock",
            "h:6379",
            "redis://",
            "redis://:6379",
            "redis://h:",
            "redis://h:0",
            "redis://h:65536",
            "redis://h:x",
            "redis://[::1",
            "redis://[::1]x",
        ] {
            let err = parse_url(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
    }
}
