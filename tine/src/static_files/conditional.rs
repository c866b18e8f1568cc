//! Conditional requests (RFC 9110 §13): `If-Match`, `If-Unmodified-Since`,
//! `If-None-Match`, `If-Modified-Since` and `If-Range`, evaluated against a
//! strong ETag and a Last-Modified time in whole seconds.

use std::time::UNIX_EPOCH;

use http::header::{
    HeaderName, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE,
};
use http::{HeaderMap, HeaderValue};

/// Result of evaluating the preconditions of a GET/HEAD request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Precondition {
    /// No precondition stops the request: continue with range handling.
    Proceed,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed (`If-Match` / `If-Unmodified-Since`).
    Failed,
}

/// Evaluates preconditions in the order of RFC 9110 §13.2.2 for a GET or
/// HEAD request. `etag` is our (strong) entity tag including its quotes;
/// `last_modified` is the modification time in Unix seconds, `None` when the
/// file has no usable one (date conditions are then ignored).
pub(super) fn evaluate(
    headers: &HeaderMap,
    etag: &[u8],
    last_modified: Option<u64>,
) -> Precondition {
    // Step 1 / 2: If-Match, else If-Unmodified-Since.
    if headers.contains_key(IF_MATCH) {
        let matched = headers
            .get_all(IF_MATCH)
            .iter()
            .any(|v| list_matches(v.as_bytes(), etag, true));
        if !matched {
            return Precondition::Failed;
        }
    } else if let (Some(since), Some(lm)) =
        (single_date(headers, &IF_UNMODIFIED_SINCE), last_modified)
    {
        if lm > since {
            return Precondition::Failed;
        }
    }
    // Step 3 / 4: If-None-Match, else If-Modified-Since.
    if headers.contains_key(IF_NONE_MATCH) {
        let matched = headers
            .get_all(IF_NONE_MATCH)
            .iter()
            .any(|v| list_matches(v.as_bytes(), etag, false));
        if matched {
            return Precondition::NotModified;
        }
    } else if let (Some(since), Some(lm)) =
        (single_date(headers, &IF_MODIFIED_SINCE), last_modified)
    {
        if lm <= since {
            return Precondition::NotModified;
        }
    }
    Precondition::Proceed
}

/// `If-Range` (RFC 9110 §13.1.5): true when a `Range` header may be honoured.
///
/// Absent → true. An entity tag must match ours with the *strong*
/// comparison (a weak tag never matches); an HTTP-date must equal our
/// Last-Modified exactly. Anything else (invalid, several fields) → false,
/// meaning "send the whole representation".
pub(super) fn if_range_allows(
    headers: &HeaderMap,
    etag: &[u8],
    last_modified: Option<u64>,
) -> bool {
    let mut all = headers.get_all(IF_RANGE).iter();
    let value = match (all.next(), all.next()) {
        (None, _) => return true,
        (Some(v), None) => v,
        (Some(_), Some(_)) => return false,
    };
    let v = super::range::trim_ows(value.as_bytes());
    if v.first() == Some(&b'"') {
        return v == etag;
    }
    if v.starts_with(b"W/") {
        return false;
    }
    match (parse_date(value), last_modified) {
        (Some(date), Some(lm)) => date == lm,
        _ => false,
    }
}

/// The field's value as Unix seconds, if present exactly once and a valid
/// HTTP-date (otherwise the field is ignored, RFC 9110 §13.1.3–13.1.4).
fn single_date(headers: &HeaderMap, name: &HeaderName) -> Option<u64> {
    let mut all = headers.get_all(name).iter();
    match (all.next(), all.next()) {
        (Some(v), None) => parse_date(v),
        _ => None,
    }
}

pub(super) fn parse_date(v: &HeaderValue) -> Option<u64> {
    let t = httpdate::parse_http_date(v.to_str().ok()?).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_secs())
}

/// Does the entity-tag list `field` (`*` or `#entity-tag`) match `etag`?
/// `strong` selects the strong comparison (If-Match), otherwise the weak one
/// (If-None-Match). A malformed list matches only up to the first error.
fn list_matches(field: &[u8], etag: &[u8], strong: bool) -> bool {
    TagList { rest: field }.any(|m| match m {
        Member::Star => true,
        Member::Tag { weak, opaque } => opaque == etag && !(strong && weak),
    })
}

/// Whether the entity-tag list `field` names `etag` (a strong tag, with
/// its quotes) in its weak form, `W/"..."`: the client holds a copy whose
/// tag was made weak (a compressed one, see `middleware::compression`).
pub(crate) fn names_weak(field: &[u8], etag: &[u8]) -> bool {
    TagList { rest: field }
        .any(|m| matches!(m, Member::Tag { weak: true, opaque } if opaque == etag))
}

enum Member<'a> {
    Star,
    /// `opaque` includes the surrounding double quotes.
    Tag {
        weak: bool,
        opaque: &'a [u8],
    },
}

/// Iterator over the members of an `If-Match` / `If-None-Match` value.
/// Entity tags may contain commas, so this scans quoted strings rather than
/// splitting on `,`.
struct TagList<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for TagList<'a> {
    type Item = Member<'a>;

    fn next(&mut self) -> Option<Member<'a>> {
        let s = self.rest;
        let start = s.iter().position(|&b| !matches!(b, b' ' | b'\t' | b','))?;
        let s = &s[start..];
        let (member, used) = if s[0] == b'*' {
            (Member::Star, 1)
        } else {
            let (weak, q) = match s.strip_prefix(b"W/") {
                Some(rest) => (true, rest),
                None => (false, s),
            };
            if q.first() != Some(&b'"') {
                self.rest = &[];
                return None;
            }
            let Some(close) = q[1..].iter().position(|&b| b == b'"') else {
                self.rest = &[];
                return None;
            };
            let close = close + 1;
            let opaque = &q[..=close];
            (
                Member::Tag { weak, opaque },
                s.len() - q.len() + opaque.len(),
            )
        };
        let after = &s[used..];
        // A member must be followed by OWS, a comma, or the end.
        let next_ok = after.iter().find(|&&b| b != b' ' && b != b'\t');
        if !matches!(next_ok, None | Some(b',')) {
            self.rest = &[];
            return None;
        }
        self.rest = after;
        Some(member)
    }
}

#[cfg(test)]
mod tests {
    use super::Precondition::{Failed, NotModified, Proceed};
    use super::*;

    const ETAG: &[u8] = b"\"a-1.0\"";
    // Sun, 06 Nov 1994 08:49:37 GMT
    const LM: u64 = 784_111_777;

    fn hm(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(n.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn eval(pairs: &[(HeaderName, &str)]) -> Precondition {
        evaluate(&hm(pairs), ETAG, Some(LM))
    }

    #[test]
    fn no_conditions() {
        assert_eq!(eval(&[]), Proceed);
    }

    #[test]
    fn weak_forms_are_found_in_a_list() {
        assert!(names_weak(b"\"x\", W/\"a-1.0\"", ETAG));
        assert!(names_weak(b"W/\"a,b\", W/\"a-1.0\"", ETAG));
        assert!(!names_weak(b"\"a-1.0\"", ETAG));
        assert!(!names_weak(b"*", ETAG));
    }

    #[test]
    fn if_none_match_forms() {
        let inm = IF_NONE_MATCH;
        assert_eq!(eval(&[(inm.clone(), "\"a-1.0\"")]), NotModified);
        assert_eq!(eval(&[(inm.clone(), "W/\"a-1.0\"")]), NotModified);
        assert_eq!(eval(&[(inm.clone(), "*")]), NotModified);
        assert_eq!(eval(&[(inm.clone(), "\"x\", \"a-1.0\"")]), NotModified);
        assert_eq!(
            eval(&[(inm.clone(), "\"x\",W/\"a-1.0\" , \"y\"")]),
            NotModified
        );
        assert_eq!(
            eval(&[(inm.clone(), "\"x\""), (inm.clone(), "\"a-1.0\"")]),
            NotModified
        );
        assert_eq!(eval(&[(inm.clone(), "\"x\"")]), Proceed);
        assert_eq!(eval(&[(inm.clone(), "\"a-1.0")]), Proceed);
        assert_eq!(eval(&[(inm.clone(), "a-1.0")]), Proceed);
        assert_eq!(eval(&[(inm.clone(), "\"a-1.0\"x")]), Proceed);
        // Commas inside an entity tag do not split it.
        assert_eq!(eval(&[(inm.clone(), "\"a-1.0,\"")]), Proceed);
        assert_eq!(eval(&[(inm.clone(), "\"x,\\\", \"a-1.0\"")]), NotModified);
    }

    #[test]
    fn if_none_match_beats_if_modified_since() {
        // A non-matching If-None-Match means If-Modified-Since is ignored.
        assert_eq!(
            eval(&[
                (IF_NONE_MATCH, "\"other\""),
                (IF_MODIFIED_SINCE, "Sun, 06 Nov 1994 08:49:37 GMT"),
            ]),
            Proceed
        );
    }

    #[test]
    fn if_modified_since() {
        let ims = IF_MODIFIED_SINCE;
        assert_eq!(
            eval(&[(ims.clone(), "Sun, 06 Nov 1994 08:49:37 GMT")]),
            NotModified
        );
        assert_eq!(
            eval(&[(ims.clone(), "Sun, 06 Nov 1994 08:49:38 GMT")]),
            NotModified
        );
        assert_eq!(
            eval(&[(ims.clone(), "Sun, 06 Nov 1994 08:49:36 GMT")]),
            Proceed
        );
        // Obsolete formats are accepted too.
        assert_eq!(
            eval(&[(ims.clone(), "Sunday, 06-Nov-94 08:49:37 GMT")]),
            NotModified
        );
        assert_eq!(
            eval(&[(ims.clone(), "Sun Nov  6 08:49:37 1994")]),
            NotModified
        );
        // Invalid or repeated → ignored.
        assert_eq!(eval(&[(ims.clone(), "yesterday")]), Proceed);
        assert_eq!(
            eval(&[
                (ims.clone(), "Sun, 06 Nov 1994 08:49:37 GMT"),
                (ims.clone(), "Sun, 06 Nov 1994 08:49:37 GMT"),
            ]),
            Proceed
        );
        // No usable Last-Modified → ignored.
        let h = hm(&[(ims, "Sun, 06 Nov 1994 08:49:37 GMT")]);
        assert_eq!(evaluate(&h, ETAG, None), Proceed);
    }

    #[test]
    fn if_match() {
        assert_eq!(eval(&[(IF_MATCH, "\"a-1.0\"")]), Proceed);
        assert_eq!(eval(&[(IF_MATCH, "*")]), Proceed);
        assert_eq!(eval(&[(IF_MATCH, "\"x\", \"a-1.0\"")]), Proceed);
        // Strong comparison: a weak tag never matches.
        assert_eq!(eval(&[(IF_MATCH, "W/\"a-1.0\"")]), Failed);
        assert_eq!(eval(&[(IF_MATCH, "\"x\"")]), Failed);
        // If-Match takes precedence over If-Unmodified-Since.
        assert_eq!(
            eval(&[
                (IF_MATCH, "\"a-1.0\""),
                (IF_UNMODIFIED_SINCE, "Thu, 01 Jan 1970 00:00:00 GMT")
            ]),
            Proceed
        );
        // Passing If-Match then If-None-Match still yields 304.
        assert_eq!(
            eval(&[(IF_MATCH, "*"), (IF_NONE_MATCH, "\"a-1.0\"")]),
            NotModified
        );
    }

    #[test]
    fn if_unmodified_since() {
        let ius = IF_UNMODIFIED_SINCE;
        assert_eq!(
            eval(&[(ius.clone(), "Sun, 06 Nov 1994 08:49:37 GMT")]),
            Proceed
        );
        assert_eq!(
            eval(&[(ius.clone(), "Sun, 06 Nov 1994 08:49:36 GMT")]),
            Failed
        );
        assert_eq!(eval(&[(ius.clone(), "garbage")]), Proceed);
    }

    #[test]
    fn if_range() {
        let allows = |v: Option<&str>, lm: Option<u64>| {
            let h = match v {
                Some(v) => hm(&[(IF_RANGE, v)]),
                None => HeaderMap::new(),
            };
            if_range_allows(&h, ETAG, lm)
        };
        assert!(allows(None, Some(LM)));
        assert!(allows(Some("\"a-1.0\""), Some(LM)));
        assert!(allows(Some(" \"a-1.0\" "), Some(LM)));
        assert!(!allows(Some("W/\"a-1.0\""), Some(LM)));
        assert!(!allows(Some("\"other\""), Some(LM)));
        assert!(allows(Some("Sun, 06 Nov 1994 08:49:37 GMT"), Some(LM)));
        // Dates must match exactly, not merely be later.
        assert!(!allows(Some("Sun, 06 Nov 1994 08:49:38 GMT"), Some(LM)));
        assert!(!allows(Some("Sun, 06 Nov 1994 08:49:37 GMT"), None));
        assert!(!allows(Some("nonsense"), Some(LM)));
        let two = hm(&[(IF_RANGE, "\"a-1.0\""), (IF_RANGE, "\"a-1.0\"")]);
        assert!(!if_range_allows(&two, ETAG, Some(LM)));
    }
}
