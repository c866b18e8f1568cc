//! Route patterns and matching. Knows paths and methods, nothing of sockets
//! or bodies.
//!
//! Patterns: `/users/:id` captures one segment, a trailing `*` captures the
//! rest of the path under the key `*`, and the bare pattern `*` matches any
//! path. The first registered route whose pattern and method match wins.
//! Request paths are matched segment by segment on their percent-decoded
//! form, so `%2F` inside a segment never creates a new segment.
//!
//! Matching allocates nothing for static segments: routes are indexed by
//! their first static segment, and only the candidate routes for a request's
//! first segment (plus those starting with a capture) are tried, in
//! registration order.

use std::borrow::Cow;
use std::collections::HashMap;
use std::rc::Rc;

use http::Method;
use percent_encoding::percent_decode_str;

use crate::http::Params;

/// Captures collected while matching: `(name, decoded value)`.
type Captures = Vec<(Rc<str>, String)>;

#[derive(Debug, Clone)]
enum Segment {
    Static(Box<str>),
    Param(Rc<str>),
    /// Trailing `*`: zero or more remaining segments.
    Rest,
}

/// A compiled route pattern.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    /// `None` for the bare `*` pattern.
    segments: Option<Vec<Segment>>,
}

impl Pattern {
    /// Compiles a pattern, or says what is wrong with it.
    pub(crate) fn parse(source: &str) -> Result<Pattern, String> {
        if source == "*" {
            return Ok(Pattern { segments: None });
        }
        let Some(rest) = source.strip_prefix('/') else {
            return Err(format!(
                "route pattern {source:?} must start with '/' (or be \"*\")"
            ));
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        let mut names: Vec<&str> = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            if *part == "*" {
                if i + 1 != parts.len() {
                    return Err(format!(
                        "route pattern {source:?}: '*' is only allowed as the last segment"
                    ));
                }
                segments.push(Segment::Rest);
            } else if let Some(name) = part.strip_prefix(':') {
                if name.is_empty() {
                    return Err(format!("route pattern {source:?}: ':' needs a name"));
                }
                if names.contains(&name) {
                    return Err(format!(
                        "route pattern {source:?}: capture ':{name}' appears twice"
                    ));
                }
                names.push(name);
                segments.push(Segment::Param(Rc::from(name)));
            } else {
                segments.push(Segment::Static((*part).into()));
            }
        }
        Ok(Pattern {
            segments: Some(segments),
        })
    }

    fn first_static(&self) -> Option<&str> {
        match self.segments.as_deref()?.first()? {
            Segment::Static(s) => Some(s),
            _ => None,
        }
    }

    /// Matches a raw (still percent-encoded) path, pushing captures into
    /// `params`. On a failed match `params` may hold garbage.
    fn matches(&self, raw_path: &str, params: &mut Vec<(Rc<str>, String)>) -> bool {
        let Some(segments) = &self.segments else {
            return true;
        };
        // `None` once every segment of the path has been consumed.
        let mut rest = Some(raw_path.strip_prefix('/').unwrap_or(raw_path));
        for (i, seg) in segments.iter().enumerate() {
            let Some(remaining) = rest else {
                // The path is shorter than the pattern: `/a/*` still matches `/a`.
                if matches!(segments[i..], [Segment::Rest]) {
                    params.push((Rc::from("*"), String::new()));
                    return true;
                }
                return false;
            };
            if let Segment::Rest = seg {
                params.push((Rc::from("*"), decode(remaining).into_owned()));
                return true;
            }
            let part = match remaining.split_once('/') {
                Some((part, after)) => {
                    rest = Some(after);
                    part
                }
                None => {
                    rest = None;
                    remaining
                }
            };
            match seg {
                Segment::Static(s) => {
                    if decode(part) != **s {
                        return false;
                    }
                }
                Segment::Param(name) => {
                    if part.is_empty() {
                        return false;
                    }
                    params.push((name.clone(), decode(part).into_owned()));
                }
                Segment::Rest => unreachable!("handled above"),
            }
        }
        rest.is_none()
    }
}

fn decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    percent_decode_str(s).decode_utf8_lossy()
}

/// Up to this many routes, matching tries each route in order instead of
/// looking the first segment up in the index.
const SCAN_ALL: usize = 16;

#[derive(Debug)]
struct Route<T> {
    /// `None` matches every method.
    method: Option<Method>,
    pattern: Pattern,
    value: T,
}

/// The result of routing one request.
#[derive(Debug)]
pub(crate) enum Match<'a, T> {
    /// A route matched path and method.
    Found(&'a T, Params),
    /// Routes matched the path, none the method; these methods would.
    MethodNotAllowed(Vec<Method>),
    /// No route matched the path.
    NotFound,
}

/// An ordered list of routes.
#[derive(Debug)]
pub(crate) struct Router<T> {
    routes: Vec<Route<T>>,
    /// Indices of routes whose first segment is static, by that segment.
    by_first: HashMap<Box<str>, Vec<usize>>,
    /// Indices of routes whose first segment is dynamic.
    dynamic: Vec<usize>,
    /// Every index, in order (for small routers, scanned whole).
    every: Vec<usize>,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Router {
            routes: Vec::new(),
            by_first: HashMap::new(),
            dynamic: Vec::new(),
            every: Vec::new(),
        }
    }
}

impl<T> Router<T> {
    /// Adds a route; `method: None` matches every method.
    pub(crate) fn add(&mut self, method: Option<Method>, pattern: Pattern, value: T) {
        let index = self.routes.len();
        self.every.push(index);
        match pattern.first_static() {
            Some(first) => self.by_first.entry(first.into()).or_default().push(index),
            None => self.dynamic.push(index),
        }
        self.routes.push(Route {
            method,
            pattern,
            value,
        });
    }

    /// Whether no route was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Routes `method` and the raw (percent-encoded) `raw_path`. `HEAD` falls
    /// back to a `GET` route.
    pub(crate) fn find(&self, method: &Method, raw_path: &str) -> Match<'_, T> {
        let first = raw_path
            .strip_prefix('/')
            .unwrap_or(raw_path)
            .split('/')
            .next()
            .unwrap_or("");
        // Few routes: trying each is cheaper than hashing the segment.
        let (statics, dynamic): (&[usize], &[usize]) = if self.routes.len() <= SCAN_ALL {
            (&[], &self.every)
        } else {
            (
                self.by_first
                    .get(&*decode(first))
                    .map_or(&[], Vec::as_slice),
                &self.dynamic,
            )
        };
        let mut params = Vec::new();
        let mut head_fallback: Option<(usize, Captures)> = None;
        let mut path_matched = false;
        for index in merged(statics, dynamic) {
            let route = &self.routes[index];
            params.clear();
            if !route.pattern.matches(raw_path, &mut params) {
                continue;
            }
            path_matched = true;
            match &route.method {
                None => return Match::Found(&route.value, Params(params)),
                Some(m) if m == method => return Match::Found(&route.value, Params(params)),
                Some(m) if *m == Method::GET && *method == Method::HEAD => {
                    if head_fallback.is_none() {
                        head_fallback = Some((index, std::mem::take(&mut params)));
                    }
                }
                Some(_) => {}
            }
        }
        if let Some((index, params)) = head_fallback {
            return Match::Found(&self.routes[index].value, Params(params));
        }
        if !path_matched {
            return Match::NotFound;
        }
        let mut allowed: Vec<Method> = Vec::new();
        for index in merged(statics, dynamic) {
            let route = &self.routes[index];
            params.clear();
            if let Some(m) = &route.method {
                if !allowed.contains(m) && route.pattern.matches(raw_path, &mut params) {
                    allowed.push(m.clone());
                    if *m == Method::GET && !allowed.contains(&Method::HEAD) {
                        allowed.push(Method::HEAD);
                    }
                }
            }
        }
        Match::MethodNotAllowed(allowed)
    }
}

/// Merges two ascending index lists into one ascending sequence.
fn merged<'a>(a: &'a [usize], b: &'a [usize]) -> impl Iterator<Item = usize> + 'a {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || match (a.get(i), b.get(j)) {
        (Some(&x), Some(&y)) if x < y => {
            i += 1;
            Some(x)
        }
        (_, Some(&y)) => {
            j += 1;
            Some(y)
        }
        (Some(&x), None) => {
            i += 1;
            Some(x)
        }
        (None, None) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router<usize> {
        let mut r = Router::default();
        for (i, (m, p)) in routes.iter().enumerate() {
            let method = if *m == "ANY" {
                None
            } else {
                Some(Method::from_bytes(m.as_bytes()).unwrap())
            };
            r.add(method, Pattern::parse(p).unwrap(), i);
        }
        r
    }

    fn found(r: &Router<usize>, m: Method, path: &str) -> Option<(usize, Vec<(String, String)>)> {
        match r.find(&m, path) {
            Match::Found(v, p) => Some((
                *v,
                p.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )),
            _ => None,
        }
    }

    #[test]
    fn static_and_params() {
        let r = router(&[
            ("GET", "/"),
            ("GET", "/users/:id"),
            ("GET", "/users/:id/posts/:post"),
        ]);
        assert_eq!(found(&r, Method::GET, "/").unwrap().0, 0);
        let (i, p) = found(&r, Method::GET, "/users/42").unwrap();
        assert_eq!(i, 1);
        assert_eq!(p, [("id".to_string(), "42".to_string())]);
        let (i, p) = found(&r, Method::GET, "/users/a%20b/posts/7").unwrap();
        assert_eq!(i, 2);
        assert_eq!(p[0].1, "a b");
        assert!(found(&r, Method::GET, "/users/").is_none());
        assert!(found(&r, Method::GET, "/users/1/").is_none());
        assert!(found(&r, Method::GET, "/nope").is_none());
    }

    #[test]
    fn encoded_slash_stays_in_its_segment() {
        let r = router(&[("GET", "/files/:name")]);
        let (_, p) = found(&r, Method::GET, "/files/a%2Fb").unwrap();
        assert_eq!(p[0].1, "a/b");
        let r = router(&[("GET", "/a/b")]);
        assert!(found(&r, Method::GET, "/a%2Fb").is_none());
        assert!(found(&r, Method::GET, "/%61/b").is_some());
    }

    #[test]
    fn wildcards() {
        let r = router(&[("GET", "/static/*"), ("ANY", "*")]);
        let (i, p) = found(&r, Method::GET, "/static/css/site.css").unwrap();
        assert_eq!(i, 0);
        assert_eq!(p, [("*".to_string(), "css/site.css".to_string())]);
        let (i, p) = found(&r, Method::GET, "/static").unwrap();
        assert_eq!((i, p[0].1.as_str()), (0, ""));
        assert_eq!(found(&r, Method::POST, "/anything/at/all").unwrap().0, 1);
    }

    #[test]
    fn first_registered_wins() {
        let r = router(&[("GET", "/a/:x"), ("GET", "/a/b")]);
        assert_eq!(found(&r, Method::GET, "/a/b").unwrap().0, 0);
        let r = router(&[("GET", "/:x/b"), ("GET", "/a/b")]);
        assert_eq!(found(&r, Method::GET, "/a/b").unwrap().0, 0);
        let r = router(&[("GET", "/a/b"), ("GET", "/:x/b")]);
        assert_eq!(found(&r, Method::GET, "/a/b").unwrap().0, 0);
    }

    #[test]
    fn methods_head_and_405() {
        let r = router(&[("GET", "/x"), ("POST", "/x"), ("DELETE", "/y")]);
        assert_eq!(found(&r, Method::HEAD, "/x").unwrap().0, 0);
        match r.find(&Method::PUT, "/x") {
            Match::MethodNotAllowed(m) => assert_eq!(m, [Method::GET, Method::HEAD, Method::POST]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(r.find(&Method::GET, "/z"), Match::NotFound));
    }

    #[test]
    fn bad_patterns() {
        assert!(Pattern::parse("x").is_err());
        assert!(Pattern::parse("/a/*/b").is_err());
        assert!(Pattern::parse("/a/:").is_err());
        assert!(Pattern::parse("/:a/:a").is_err());
    }

    #[test]
    fn many_routes() {
        let mut r = Router::default();
        for i in 0..500 {
            r.add(
                Some(Method::GET),
                Pattern::parse(&format!("/r{i}/:id")).unwrap(),
                i,
            );
        }
        assert_eq!(found(&r, Method::GET, "/r499/1").unwrap().0, 499);
    }
}
