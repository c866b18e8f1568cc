//! The router: for any routes and any path, it answers what a plain
//! reference router (below, written from the rules in `router/mod.rs`'s
//! docs) answers, with the same captures, and never panics.
//!
//! The input is read (by `arbitrary`) as up to eight routes (a pattern
//! built from a few segments, most from a small vocabulary of literals,
//! escapes, captures and `*`; a method, `any`, a static mount or a
//! fallback), whether to surround them with twenty filler routes (so that
//! the router uses its first-segment index instead of trying every
//! route), a method and a path (built the same way, or any string). Both
//! routers refuse the same routes (malformed patterns, conflicts).
//!
//! The reference tries every route, in order, on the percent-decoded
//! segments of the path: no index, no byte-level shortcut.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use tine::__fuzz::{RouteKind, Routed};
use tine::Method;

const PATTERN_SEGMENTS: &[&str] = &[
    "a", "b", "ab", "A", "%61", "a%2Fb", "a%2fb", "%25", "%2561", "", ":x", ":y", "*", "filler1",
    "é", "%C3%A9", "a.b", "%",
];
const PATH_SEGMENTS: &[&str] = &[
    "a", "b", "ab", "A", "%61", "%41", "a%2Fb", "%2F", "%25", "%2561", "", "x", "%", "%zz",
    "%C3%A9", "é", "%C3", "filler1", "filler10", "a.b", "*",
];
const METHODS: &[&str] = &["GET", "HEAD", "POST", "DELETE", "OPTIONS"];

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Static(String),
    Param(String),
    Rest,
}

/// A parsed pattern: `None` segments for the bare `*`.
#[derive(Debug, Clone)]
struct Pat(Option<Vec<Seg>>);

fn parse_pattern(source: &str) -> Option<Pat> {
    if source == "*" {
        return Some(Pat(None));
    }
    let rest = source.strip_prefix('/')?;
    let parts: Vec<&str> = rest.split('/').collect();
    let mut segs = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if *part == "*" {
            if i + 1 != parts.len() {
                return None;
            }
            segs.push(Seg::Rest);
        } else if let Some(name) = part.strip_prefix(':') {
            if name.is_empty() || segs.contains(&Seg::Param(name.to_owned())) {
                return None;
            }
            segs.push(Seg::Param(name.to_owned()));
        } else {
            segs.push(Seg::Static((*part).to_owned()));
        }
    }
    Some(Pat(Some(segs)))
}

impl Pat {
    fn is_wild(&self) -> bool {
        self.0.as_ref().is_none_or(|s| s.last() == Some(&Seg::Rest))
    }

    fn depth(&self) -> usize {
        self.0
            .as_ref()
            .map_or(0, |s| s.iter().filter(|s| **s != Seg::Rest).count())
    }

    /// Literal 0, capture 1, `*` 2, segment by segment (the bare `*`, which
    /// takes more than `/*`, 3): the smaller sequence is the more specific
    /// pattern.
    fn kinds(&self) -> Vec<u8> {
        match &self.0 {
            None => vec![3],
            Some(segs) => segs
                .iter()
                .map(|s| match s {
                    Seg::Static(_) => 0,
                    Seg::Param(_) => 1,
                    Seg::Rest => 2,
                })
                .collect(),
        }
    }

    fn same_shape(&self, other: &Pat) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                a.len() == b.len()
                    && a.iter().zip(b).all(|pair| match pair {
                        (Seg::Static(x), Seg::Static(y)) => x == y,
                        (Seg::Param(_), Seg::Param(_)) | (Seg::Rest, Seg::Rest) => true,
                        _ => false,
                    })
            }
            _ => false,
        }
    }

    /// The captures if the pattern matches `path`.
    fn matches(&self, path: &str) -> Option<Vec<(Option<String>, String)>> {
        let Some(segs) = &self.0 else {
            return Some(Vec::new());
        };
        if path == "*" {
            return None;
        }
        let path = path.strip_prefix('/').unwrap_or(path);
        let parts: Vec<&str> = path.split('/').collect();
        let mut captures = Vec::new();
        for (i, seg) in segs.iter().enumerate() {
            if *seg == Seg::Rest {
                // What is left of the path, `/`s and all (nothing when the
                // path ended before the `*`).
                let consumed: usize = parts[..i.min(parts.len())]
                    .iter()
                    .map(|p| p.len() + 1)
                    .sum();
                captures.push((None, decode(path.get(consumed..).unwrap_or(""))));
                return Some(captures);
            }
            let part = parts.get(i)?;
            match seg {
                Seg::Static(s) => {
                    if decode(part) != *s {
                        return None;
                    }
                }
                Seg::Param(name) => {
                    if part.is_empty() {
                        return None;
                    }
                    captures.push((Some(name.clone()), decode(part)));
                }
                Seg::Rest => unreachable!(),
            }
        }
        (parts.len() == segs.len()).then_some(captures)
    }
}

/// Lenient percent-decoding (a `%` without two hex digits stays), then
/// UTF-8 with replacement characters.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).and_then(|&c| hex(c)),
            b.get(i + 2).and_then(|&c| hex(c)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct RefRoute {
    index: usize,
    kind: RouteKind,
    pat: Pat,
}

/// The reference router: the routes kept, and the indices refused.
fn build(routes: &[(RouteKind, String)]) -> (Vec<RefRoute>, Vec<usize>) {
    let mut kept: Vec<RefRoute> = Vec::new();
    let mut refused = Vec::new();
    for (index, (kind, source)) in routes.iter().enumerate() {
        let Some(pat) = parse_pattern(source) else {
            refused.push(index);
            continue;
        };
        let method = match kind {
            RouteKind::Route(m) => m.clone(),
            RouteKind::Mount => Some(Method::GET),
            RouteKind::Fallback => None,
        };
        let conflict = match kind {
            RouteKind::Fallback => {
                !pat.is_wild()
                    || kept
                        .iter()
                        .any(|r| r.kind == RouteKind::Fallback && r.pat.same_shape(&pat))
            }
            _ => kept.iter().any(|r| {
                let earlier = match &r.kind {
                    RouteKind::Route(m) => m.clone(),
                    RouteKind::Mount => Some(Method::GET),
                    RouteKind::Fallback => return false,
                };
                r.pat.same_shape(&pat) && (earlier.is_none() || earlier == method)
            }),
        };
        if conflict {
            refused.push(index);
        } else {
            kept.push(RefRoute {
                index,
                kind: kind.clone(),
                pat,
            });
        }
    }
    (kept, refused)
}

/// One tier: of the routes of `tier` that match `path`, those of the
/// most specific pattern (the first added of the most specific), in order.
fn find_in(tier: &[&RefRoute], method: &Method, path: &str) -> Option<Routed> {
    let matching: Vec<(&RefRoute, Vec<(Option<String>, String)>)> = tier
        .iter()
        .filter_map(|r| Some((*r, r.pat.matches(path)?)))
        .collect();
    if matching.is_empty() {
        return None;
    }
    // A mount owns nothing for a method other than GET or HEAD; when
    // only mounts match, the most specific one answers.
    let mount_only_for = |r: &RefRoute| {
        r.kind == RouteKind::Mount && *method != Method::GET && *method != Method::HEAD
    };
    let Some(owner) = matching
        .iter()
        .map(|(r, _)| r)
        .filter(|r| !mount_only_for(r))
        .min_by_key(|r| r.pat.kinds())
    else {
        let (r, c) = matching.iter().min_by_key(|(r, _)| r.pat.kinds())?;
        return Some(Routed::Found(r.index, c.clone()));
    };
    // The owner's pattern's routes, a mount on it included: it answers
    // none of these methods, but `Allow` names its `GET`.
    let matching: Vec<_> = matching
        .iter()
        .filter(|(r, _)| r.pat.same_shape(&owner.pat))
        .cloned()
        .collect();
    let method_of = |r: &RefRoute| match &r.kind {
        RouteKind::Route(m) => m.clone(),
        _ => Some(Method::GET),
    };
    if let Some((r, c)) = matching
        .iter()
        .find(|(r, _)| method_of(r).is_none_or(|m| m == *method))
    {
        return Some(Routed::Found(r.index, c.clone()));
    }
    if *method == Method::HEAD {
        if let Some((r, c)) = matching
            .iter()
            .find(|(r, _)| method_of(r) == Some(Method::GET))
        {
            return Some(Routed::Found(r.index, c.clone()));
        }
    }
    if matching.iter().all(|(r, _)| r.kind == RouteKind::Mount) {
        let (r, c) = &matching[0];
        return Some(Routed::Found(r.index, c.clone()));
    }
    let mut allowed = Vec::new();
    for (r, _) in &matching {
        let m = method_of(r).expect("a route for any method would have matched");
        if !allowed.contains(&m) {
            allowed.push(m.clone());
            if m == Method::GET && !allowed.contains(&Method::HEAD) {
                allowed.push(Method::HEAD);
            }
        }
    }
    Some(Routed::MethodNotAllowed(allowed))
}

fn reference(kept: &[RefRoute], method: &Method, path: &str) -> Routed {
    let exact: Vec<&RefRoute> = kept
        .iter()
        .filter(|r| r.kind != RouteKind::Fallback && !r.pat.is_wild())
        .collect();
    if let Some(found) = find_in(&exact, method, path) {
        return found;
    }
    let wild: Vec<&RefRoute> = kept
        .iter()
        .filter(|r| r.kind != RouteKind::Fallback && r.pat.is_wild())
        .collect();
    // The deepest matching fallback; the most specific of the deepest,
    // then the first added.
    let mut best: Option<(&RefRoute, Vec<(Option<String>, String)>)> = None;
    for r in kept.iter().filter(|r| r.kind == RouteKind::Fallback) {
        if best.as_ref().is_none_or(|(b, _)| {
            r.pat.depth() > b.pat.depth()
                || (r.pat.depth() == b.pat.depth() && r.pat.kinds() < b.pat.kinds())
        }) {
            if let Some(c) = r.pat.matches(path) {
                best = Some((r, c));
            }
        }
    }
    match best {
        None => find_in(&wild, method, path).unwrap_or(Routed::NotFound),
        Some((fallback, captures)) => {
            let deep: Vec<&RefRoute> = wild
                .into_iter()
                .filter(|r| r.pat.depth() >= fallback.pat.depth())
                .collect();
            find_in(&deep, method, path).unwrap_or(Routed::Found(fallback.index, captures))
        }
    }
}

fn built_path(u: &mut Unstructured<'_>, vocabulary: &[&str]) -> Result<String> {
    let n = u.int_in_range(0..=4)?;
    let mut s = String::new();
    for _ in 0..n {
        s.push('/');
        if u.ratio(1, 8)? {
            let own: String = u.arbitrary()?;
            s.push_str(&own);
        } else {
            s.push_str(u.choose(vocabulary)?);
        }
    }
    if s.is_empty() {
        s.push('/');
    }
    Ok(s)
}

fn check(u: &mut Unstructured<'_>) -> Result<()> {
    let filler = u.arbitrary::<bool>()?;
    let count = u.int_in_range(1..=8)?;
    let mut routes: Vec<(RouteKind, String)> = Vec::new();
    if filler {
        for i in 0..10 {
            routes.push((
                RouteKind::Route(Some(Method::GET)),
                format!("/filler{i}/:x"),
            ));
        }
    }
    for _ in 0..count {
        let kind = match u.int_in_range(0..=6)? {
            0 => RouteKind::Route(None),
            1 => RouteKind::Mount,
            2 => RouteKind::Fallback,
            _ => RouteKind::Route(Some(
                Method::from_bytes(u.choose(METHODS)?.as_bytes()).unwrap(),
            )),
        };
        let pattern = if u.ratio(1, 16)? {
            "*".to_owned()
        } else {
            built_path(u, PATTERN_SEGMENTS)?
        };
        routes.push((kind, pattern));
    }
    if filler {
        for i in 10..20 {
            routes.push((RouteKind::Route(Some(Method::POST)), format!("/filler{i}")));
        }
    }
    let method = Method::from_bytes(u.choose(METHODS)?.as_bytes()).unwrap();
    let path = match u.int_in_range(0..=9)? {
        0 => u.arbitrary::<String>()?,
        1 => "*".to_owned(),
        _ => built_path(u, PATH_SEGMENTS)?,
    };

    let refs: Vec<(RouteKind, &str)> = routes
        .iter()
        .map(|(k, p)| (k.clone(), p.as_str()))
        .collect();
    let (got, refused) = tine::__fuzz::route(&refs, &method, &path);
    let (kept, want_refused) = build(&routes);
    assert_eq!(refused, want_refused, "refused routes of {routes:?}");
    let want = reference(&kept, &method, &path);
    assert_eq!(got, want, "{method} {path:?} with {routes:?}");
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = check(&mut Unstructured::new(data));
});
