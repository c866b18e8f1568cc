//! Route patterns and matching. Knows paths and methods, nothing of sockets
//! or bodies.
//!
//! Patterns: `/users/:id` captures one segment, a trailing `*` captures the
//! rest of the path under the key `*`, and the bare pattern `*` matches any
//! path. Request paths are matched segment by segment on their
//! percent-decoded form, so `%2F` inside a segment never creates a new
//! segment.
//!
//! **Which route answers.** axum's most-specific-path rule, in two tiers.
//! Routes whose pattern has no `*` (*exact* patterns, captures allowed)
//! come first: if one matches the path, the path is theirs (here tine
//! differs from axum, which ranks by segment across both: an app's
//! `/:section/:page` takes `/files/x` and `/admin/nothing` before
//! `/files/*` or the fallback of a group nested at `/admin` could, so a
//! group's hooks do not see such paths; register the group's paths as
//! exact routes, or keep capture-only patterns of that depth out of the
//! app), and among
//! those that match, the **most specific pattern** owns it: at the first
//! segment where two patterns differ, a literal beats a capture (and a
//! capture beats a `*`), whatever order they were registered in. So
//! `/users/new` owns `GET /users/new` beside `/users/:id` (which gets the
//! other ids), and if only a `POST /users/new` route exists, `GET
//! /users/new` is a `405`, not `/users/:id`'s, as in axum. Of the routes
//! on the owning pattern, the one whose method matches answers (`HEAD`
//! falls back to a `GET` route; `any` takes the rest); if none does, the
//! answer is `405` with `Allow` listing their methods (`204` with it for
//! `OPTIONS`), whatever less specific patterns, wildcard routes or static
//! mounts also match the path. Only a path that no exact pattern matches
//! goes to the wildcard routes (`/files/*`, `*`) and static mounts, by the
//! same rule among themselves (`/files/special/*` before `/files/:x/*`
//! before `/files/*`), with one difference: a static mount does not make a
//! path exist for other methods: for a method other than `GET` or `HEAD`
//! a mount owns no path, and a less specific route (`any("*")`, say)
//! answers it. When only mounts match the path and the method is not
//! theirs, the most specific mount answers anyway: `405` (or `204` for
//! `OPTIONS`) if it has the file, `404` if not. For `GET`, a mount is a
//! pattern like any other: a more specific `POST /upload/*` beside a
//! mount at `/` owns `/upload/...`, and `GET /upload/x` is its `405`.
//! So with a static directory at `/`, `DELETE /api/nothing` is a `404`,
//! `DELETE /index.html` a `405`, and `DELETE /api/todos` the `405` of the
//! `/api/todos` routes.
//!
//! **Fallbacks** (a route group's, or the app's: `prefix/*` patterns, any
//! method) come after both tiers' routes that are at least as deep: the
//! deepest fallback matching a path no exact route matches answers it
//! (the most specific of the deepest),
//! unless a wildcard route or mount with as many segments before its `*`
//! matches too. So `/api`'s fallback answers `/api/nothing` although a
//! static directory is mounted at `/`, and `/api/files/*` still answers
//! its own paths. A mount that has no file for a path lets the fallback
//! that matches it answer, if that fallback is as deep as the mount or
//! deeper (the service asks [`Router::fallback_for`]): the app's fallback
//! beside a static directory at `/` is a single-page app.
//!
//! Registering the same method (or `any`) twice on the same pattern (same
//! segments; capture names do not count) is a conflict: the second route
//! could never answer. [`Router::add`] refuses it, and the builder panics
//! at the caller's line.
//!
//! Matching allocates nothing for static segments: exact routes are indexed
//! by their first static segment, and only the candidate routes for a
//! request's first segment (plus those starting with a capture) are tried,
//! most specific first: the routes are kept in that order (see
//! [`Pattern::specificity`]), so the first pattern that matches is the one
//! that owns the path. The index is not a hash map: the path's first
//! byte picks the app's segments that begin with it (see `FirstSegments`).

use std::borrow::Cow;
use std::rc::Rc;

use http::Method;
use percent_encoding::percent_decode_str;

use crate::http::{Capture, Captures};

#[doc(hidden)]
pub(crate) mod fuzz;

/// A capture of `part`, a slice of `path`: its position when it needs no
/// decoding, else its decoded text.
fn capture(path: &str, part: &str) -> Capture {
    match decode(part) {
        Cow::Borrowed(_) => {
            let start = part.as_ptr() as usize - path.as_ptr() as usize;
            Capture::Raw(start as u32, (start + part.len()) as u32)
        }
        Cow::Owned(s) => Capture::Owned(s.into_boxed_str()),
    }
}

#[derive(Debug, Clone)]
enum Segment {
    /// A literal segment; whether it has no `%` (so that the raw path
    /// matches it byte for byte, without decoding).
    Static(Box<str>, bool),
    Param(Rc<str>),
    /// Trailing `*`: zero or more remaining segments.
    Rest,
}

/// A compiled route pattern.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    /// `None` for the bare `*` pattern.
    segments: Option<Vec<Segment>>,
    /// One static segment without `%` (`/plaintext`): a path the router's
    /// index found to be exactly `/` and that segment needs no matching.
    single: bool,
    /// As registered, for messages.
    source: Box<str>,
}

impl Pattern {
    /// Compiles a pattern, or says what is wrong with it.
    pub(crate) fn parse(source: &str) -> Result<Pattern, String> {
        if source == "*" {
            return Ok(Pattern {
                segments: None,
                single: false,
                source: source.into(),
            });
        }
        let Some(rest) = source.strip_prefix('/') else {
            return Err(format!(
                "route pattern {source:?} must start with '/' (or be \"*\")"
            ));
        };
        // A pattern matches the path: a `?` or `#` in it would only ever
        // match a path that has it percent-encoded, which is not what its
        // writer meant (the query is read with `Request::query`).
        if let Some(c) = source.chars().find(|&c| c == '?' || c == '#') {
            return Err(format!(
                "route pattern {source:?}: '{c}' is not part of a path (a pattern matches the \
                 path only; read the query with Request::query)"
            ));
        }
        let parts: Vec<&str> = rest.split('/').collect();
        // An empty segment (`//a`, `/a//b`) matches only a path with the
        // same doubled slash: a typo, most likely (a trailing `/` is a
        // route of its own and stays allowed).
        if parts[..parts.len() - 1].iter().any(|p| p.is_empty()) {
            return Err(format!(
                "route pattern {source:?}: an empty segment ('//') matches only a path with \
                 the same doubled slash"
            ));
        }
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
                segments.push(Segment::Static((*part).into(), !part.contains('%')));
            }
        }
        Ok(Pattern {
            single: matches!(segments[..], [Segment::Static(_, true)]),
            segments: Some(segments),
            source: source.into(),
        })
    }

    /// The pattern as registered.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// How deep a route on it goes: [`depth`](Self::depth) for a wildcard
    /// pattern, every depth for an exact one (it names its paths whole).
    pub(crate) fn reach(&self) -> usize {
        if self.is_wild() {
            self.depth()
        } else {
            usize::MAX
        }
    }

    /// Whether it has a `*` (the bare one or a trailing one).
    fn is_wild(&self) -> bool {
        match &self.segments {
            None => true,
            Some(segments) => matches!(segments.last(), Some(Segment::Rest)),
        }
    }

    /// How many segments come before a trailing `*` (0 for the bare `*`):
    /// how specific a wildcard pattern is.
    pub(crate) fn depth(&self) -> usize {
        match &self.segments {
            None => 0,
            Some(segments) => segments
                .iter()
                .filter(|s| !matches!(s, Segment::Rest))
                .count(),
        }
    }

    /// The kinds of its segments, in order: a literal `0`, a capture `1`,
    /// a `*` `2`; the bare `*` pattern, which also takes `OPTIONS *`, is
    /// `[3]`, after `/*`. Of two patterns that match the same path, the
    /// one with the smaller kinds (compared as sequences) is the more
    /// specific: the first segment where they differ is a literal in it,
    /// or a capture where the other has a `*`. (Two exact patterns that
    /// match one path have as many segments; of wildcard patterns the
    /// deeper is the more specific, which the comparison gives too:
    /// `/a/b/*` before `/a/*`.) Two patterns of the same kinds that match
    /// one path are the same pattern: their literals are the path's.
    fn specificity(&self) -> Vec<u8> {
        match &self.segments {
            None => vec![3],
            Some(segments) => segments
                .iter()
                .map(|s| match s {
                    Segment::Static(..) => 0,
                    Segment::Param(_) => 1,
                    Segment::Rest => 2,
                })
                .collect(),
        }
    }

    /// Whether both match exactly the same paths (capture names aside).
    fn same_shape(&self, other: &Pattern) -> bool {
        match (&self.segments, &other.segments) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                a.len() == b.len()
                    && a.iter().zip(b).all(|pair| match pair {
                        (Segment::Static(x, _), Segment::Static(y, _)) => x == y,
                        (Segment::Param(_), Segment::Param(_)) => true,
                        (Segment::Rest, Segment::Rest) => true,
                        _ => false,
                    })
            }
            _ => false,
        }
    }

    fn first_static(&self) -> Option<&str> {
        match self.segments.as_deref()?.first()? {
            Segment::Static(s, _) => Some(s),
            _ => None,
        }
    }

    /// Matches a raw (still percent-encoded) path, pushing captures into
    /// `params`. On a failed match `params` may hold garbage.
    fn matches(&self, raw_path: &str, params: &mut Captures) -> bool {
        let Some(segments) = &self.segments else {
            return true;
        };
        if raw_path == "*" {
            // `OPTIONS *` asks about the server, not a path: only the
            // pattern `*` takes it, not a wildcard path like `/*` (a
            // static mount at `/`, whose file `*` is never there).
            return false;
        }
        // `None` once every segment of the path has been consumed.
        let mut rest = Some(raw_path.strip_prefix('/').unwrap_or(raw_path));
        for (i, seg) in segments.iter().enumerate() {
            let Some(remaining) = rest else {
                // The path is shorter than the pattern: `/a/*` still matches `/a`.
                if matches!(segments[i..], [Segment::Rest]) {
                    params.push((None, Capture::Raw(0, 0)));
                    return true;
                }
                return false;
            };
            if let Segment::Rest = seg {
                params.push((None, capture(raw_path, remaining)));
                return true;
            }
            if let Segment::Static(s, true) = seg {
                // The common case without splitting or decoding: the path
                // has the segment's very bytes, then `/` or its end (a
                // segment without `%` is its own decoding).
                if let Some(after) = remaining.strip_prefix(&**s) {
                    let next = match after.as_bytes().first() {
                        None => Some(None),
                        Some(b'/') => Some(Some(&after[1..])),
                        Some(_) => None,
                    };
                    if let Some(next) = next {
                        rest = next;
                        continue;
                    }
                }
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
                // Without a `%` the part is its own decoding, and the
                // bytes did not match above.
                Segment::Static(_, true) if !part.contains('%') => return false,
                Segment::Static(s, _) => {
                    if decode(part) != **s {
                        return false;
                    }
                }
                Segment::Param(name) => {
                    if part.is_empty() {
                        return false;
                    }
                    params.push((Some(name.clone()), capture(raw_path, part)));
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

/// Whether two slices of the same length are equal, compared a word at a
/// time without calling `memcmp` (whose call and dispatch cost more than
/// the compare for a path segment's few bytes). Always inlined: into the
/// index's look-up, which is inlined into every request's routing.
#[inline(always)]
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    debug_assert_eq!(n, b.len());
    let word = |s: &[u8], i: usize| u64::from_ne_bytes(s[i..i + 8].try_into().unwrap_or([0; 8]));
    let half = |s: &[u8], i: usize| u32::from_ne_bytes(s[i..i + 4].try_into().unwrap_or([0; 4]));
    if n >= 8 {
        let mut i = 0;
        while i + 8 < n {
            if word(a, i) != word(b, i) {
                return false;
            }
            i += 8;
        }
        // The last word, overlapping the one before when `n` is not a
        // multiple of 8.
        word(a, n - 8) == word(b, n - 8)
    } else if n >= 4 {
        half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4)
    } else {
        a == b
    }
}

/// Exact routes whose first segment is static, by that segment: the
/// index that spares a large router from trying every route.
///
/// Not a hash map: what is looked up is the request path, which the client
/// chooses, so a hash map would need a keyed hash (SipHash, which cost 15 %
/// of a whole request here) to keep clients from aiming at one bucket.
/// Instead the keys are grouped by their first byte, and the path's first
/// byte picks the group; the group's keys are compared with the start of
/// the path, each first by where it would end (one load: the path must
/// have a `/` or its end there) and only then byte for byte. No segment
/// split, no decoding, no hashing. The work is bounded by the app's own
/// keys (how many share a first byte), whatever the path is.
#[derive(Debug)]
struct FirstSegments {
    /// Sorted by first byte; each with the ascending indices of its
    /// routes. Keys never contain `/`; keys with `%` are not here (their
    /// routes are with the dynamic ones: see [`Router::insert`]).
    keys: Vec<(Box<str>, Vec<usize>)>,
    /// `keys[starts[b]..starts[b + 1]]` begin with the byte `b`. A fixed
    /// array, all zeros while there are no keys: a lookup indexes it with
    /// no bounds check and no emptiness test.
    starts: Box<[u32; 257]>,
    /// The routes whose first segment is empty (`/`, `//x`).
    empty: Vec<usize>,
}

impl Default for FirstSegments {
    fn default() -> Self {
        FirstSegments {
            keys: Vec::new(),
            starts: Box::new([0; 257]),
            empty: Vec::new(),
        }
    }
}

impl FirstSegments {
    /// Adds route `index` under `segment`, its routes kept in ascending
    /// order.
    fn insert(&mut self, segment: &str, index: usize) {
        let ordered = |list: &mut Vec<usize>| {
            list.insert(list.partition_point(|&i| i < index), index);
        };
        if segment.is_empty() {
            ordered(&mut self.empty);
            return;
        }
        if segment.contains('%') {
            return;
        }
        match self.keys.iter_mut().find(|(key, _)| **key == *segment) {
            Some((_, routes)) => ordered(routes),
            None => {
                self.keys.push((segment.into(), vec![index]));
                // Stable: keys with the same first byte stay in the order
                // they came.
                self.keys.sort_by_key(|(key, _)| key.as_bytes()[0]);
                let mut starts = Box::new([0u32; 257]);
                for (key, _) in &self.keys {
                    starts[usize::from(key.as_bytes()[0]) + 1] += 1;
                }
                for b in 1..starts.len() {
                    starts[b] += starts[b - 1];
                }
                self.starts = starts;
            }
        }
    }

    /// Calls `f` with every list of route indices.
    fn each_list(&mut self, mut f: impl FnMut(&mut Vec<usize>)) {
        f(&mut self.empty);
        for (_, routes) in &mut self.keys {
            f(routes);
        }
    }

    /// The routes whose first static segment is the first segment of
    /// `rest` (a raw path without its leading `/`), and whether that
    /// segment is all of `rest`.
    // Always inlined: as a call, its prologue and epilogue were a
    // quarter of its cost.
    #[inline(always)]
    fn get<'a>(&'a self, rest: &str) -> (&'a [usize], bool) {
        let bytes = rest.as_bytes();
        let Some(&first) = bytes.first() else {
            return (&self.empty, true);
        };
        if first == b'/' {
            return (&self.empty, false);
        }
        let group =
            self.starts[usize::from(first)] as usize..self.starts[usize::from(first) + 1] as usize;
        for (key, routes) in &self.keys[group] {
            let key = key.as_bytes();
            let ends = match bytes.get(key.len()) {
                None => bytes.len() == key.len(),
                Some(&b) => b == b'/',
            };
            if ends && same(&bytes[..key.len()], key) {
                return (routes, bytes.len() == key.len());
            }
        }
        (self.escaped(rest), false)
    }

    /// After a miss: the first segment may be escaped (`%70laintext`);
    /// then it is decoded and looked up whole.
    #[cold]
    fn escaped<'a>(&'a self, rest: &str) -> &'a [usize] {
        let segment = rest.split('/').next().unwrap_or("");
        if !segment.contains('%') {
            return &[];
        }
        let decoded = decode(segment);
        if decoded.is_empty() {
            return &self.empty;
        }
        self.keys
            .iter()
            .find(|(key, _)| **key == *decoded)
            .map_or(&[], |(_, routes)| routes.as_slice())
    }
}

#[derive(Debug)]
struct Route<T> {
    /// `None` matches every method.
    method: Option<Method>,
    pattern: Pattern,
    value: T,
    /// A static mount: it answers other methods itself (404 or 405), and
    /// does not make a path exist for them (see the module docs).
    mount: bool,
    /// A fallback: see [`Router::add_fallback`].
    fallback: bool,
    /// Its pattern's [`specificity`](Pattern::specificity): the routes
    /// are kept in its order.
    rank: Vec<u8>,
}

/// The result of routing one request.
#[derive(Debug)]
pub(crate) enum Match<'a, T> {
    /// A route matched path and method.
    Found(&'a T, Captures),
    /// Routes matched the path, none the method; these methods would.
    MethodNotAllowed(Vec<Method>),
    /// No route matched the path.
    NotFound,
}

/// A list of routes, most specific first (see the module docs), and its
/// indices.
#[derive(Debug)]
pub(crate) struct Router<T> {
    /// Sorted by their patterns' [`specificity`](Pattern::specificity),
    /// then in the order they were added.
    routes: Vec<Route<T>>,
    /// Indices of exact routes whose first segment is static, by that
    /// segment.
    by_first: FirstSegments,
    /// Indices of exact routes whose first segment is dynamic.
    dynamic: Vec<usize>,
    /// Every exact route's index, in order (small routers scan it whole).
    every: Vec<usize>,
    /// Indices of wildcard routes and mounts, in order: tried only for
    /// paths no exact route matches.
    wild: Vec<usize>,
    /// Indices of fallbacks (`prefix/*` patterns, any method): see
    /// [`add_fallback`](Router::add_fallback).
    fallbacks: Vec<usize>,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Router {
            routes: Vec::new(),
            by_first: FirstSegments::default(),
            dynamic: Vec::new(),
            every: Vec::new(),
            wild: Vec::new(),
            fallbacks: Vec::new(),
        }
    }
}

impl<T> Router<T> {
    /// Adds a route; `method: None` matches every method. Refuses (with
    /// what to say) a route that an earlier one would always take first:
    /// the same pattern with the same method, or after `any`.
    pub(crate) fn add(
        &mut self,
        method: Option<Method>,
        pattern: Pattern,
        value: T,
    ) -> Result<(), String> {
        self.insert(method, pattern, value, false)
    }

    /// Adds a static mount: a `GET` route on a wildcard pattern that also
    /// answers the other methods of the paths only mounts match (see the
    /// module docs).
    pub(crate) fn add_mount(&mut self, pattern: Pattern, value: T) -> Result<(), String> {
        self.insert(Some(Method::GET), pattern, value, true)
    }

    /// Adds a fallback: it answers every method on the paths its wildcard
    /// pattern (`/api/*`, or `*` for the whole app) matches that no exact
    /// route matches, unless a wildcard route or mount at least as deep
    /// (as many segments before its `*`) matches them too. So a group's
    /// fallback wins over a static mount at `/`, and loses to the group's
    /// own `/api/files/*`. Among fallbacks the deepest matching one
    /// answers. Two fallbacks on the same pattern conflict.
    pub(crate) fn add_fallback(&mut self, pattern: Pattern, value: T) -> Result<(), String> {
        if !pattern.is_wild() {
            return Err(format!(
                "fallback pattern {:?} must end with '*'",
                pattern.source()
            ));
        }
        if let Some(&earlier) = self
            .fallbacks
            .iter()
            .find(|&&i| self.routes[i].pattern.same_shape(&pattern))
        {
            return Err(format!(
                "conflicting fallback: {:?} already has one ({:?})",
                pattern.source(),
                self.routes[earlier].pattern.source()
            ));
        }
        self.place(Route {
            method: None,
            rank: pattern.specificity(),
            pattern,
            value,
            mount: false,
            fallback: true,
        });
        Ok(())
    }

    /// Puts `route` after the routes at least as specific, and indexes
    /// them all again (routes are added once, at start-up).
    ///
    /// Every index at or after the new route's place moves up by one in
    /// the lists, and the new one goes into its lists in order: linear in
    /// the routes, so an app of thousands of routes starts at once.
    fn place(&mut self, route: Route<T>) {
        let at = self
            .routes
            .iter()
            .position(|r| r.rank > route.rank)
            .unwrap_or(self.routes.len());
        let moved = |list: &mut Vec<usize>| {
            for i in list.iter_mut().filter(|i| **i >= at) {
                *i += 1;
            }
        };
        moved(&mut self.every);
        moved(&mut self.dynamic);
        moved(&mut self.wild);
        moved(&mut self.fallbacks);
        self.by_first.each_list(moved);
        let ordered = |list: &mut Vec<usize>| list.insert(list.partition_point(|&i| i < at), at);
        let pattern = &route.pattern;
        if route.fallback {
            ordered(&mut self.fallbacks);
        } else if pattern.is_wild() {
            ordered(&mut self.wild);
        } else {
            ordered(&mut self.every);
            match pattern.first_static() {
                // A literal with `%` is compared with the path's decoded
                // segment, which the index cannot look up: its routes are
                // matched whole, as those starting with a capture are.
                Some(first) if !first.contains('%') => self.by_first.insert(first, at),
                _ => ordered(&mut self.dynamic),
            }
        }
        self.routes.insert(at, route);
    }

    fn insert(
        &mut self,
        method: Option<Method>,
        pattern: Pattern,
        value: T,
        mount: bool,
    ) -> Result<(), String> {
        let taken = self.routes.iter().find(|r| {
            !r.fallback
                && r.pattern.same_shape(&pattern)
                && (r.method.is_none() || r.method == method)
        });
        if let Some(earlier) = taken {
            let name =
                |m: &Option<Method>| m.as_ref().map_or("any method", Method::as_str).to_string();
            return Err(format!(
                "conflicting route: {} {:?} is already routed ({} {:?}), so this one could never answer",
                name(&method),
                pattern.source(),
                name(&earlier.method),
                earlier.pattern.source(),
            ));
        }
        self.place(Route {
            method,
            rank: pattern.specificity(),
            pattern,
            value,
            mount,
            fallback: false,
        });
        Ok(())
    }

    /// Whether no route was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Routes `method` and the raw (percent-encoded) `raw_path`: exact
    /// routes first, then wildcard routes and mounts (see the module docs).
    /// `HEAD` falls back to a `GET` route.
    ///
    /// Inlined, the index's look-up and [`literal`](Self::literal) only:
    /// a one-literal path costs no call, and no entry into the general
    /// matching's large frame ([`find_tiers`](Self::find_tiers)).
    #[inline]
    pub(crate) fn find(&self, method: &Method, raw_path: &str) -> Match<'_, T> {
        // Few routes: trying each is cheaper than hashing the segment.
        if self.routes.len() <= SCAN_ALL {
            return self.find_tiers(Tier::scan(&self.every), method, raw_path);
        }
        let rest = raw_path.strip_prefix('/').unwrap_or(raw_path);
        let (statics, whole) = self.by_first.get(rest);
        if whole {
            if let Some(found) = self.literal(statics, method) {
                return found;
            }
        }
        let tier = Tier {
            statics,
            whole,
            dynamic: &self.dynamic,
        };
        self.find_tiers(tier, method, raw_path)
    }

    /// [`find`](Self::find) from the exact tier's routes on.
    #[inline(never)]
    fn find_tiers(&self, tier: Tier<'_>, method: &Method, raw_path: &str) -> Match<'_, T> {
        let mut params = Captures::new();
        if let Some(found) = self.find_in(tier, method, raw_path, &mut params) {
            return found;
        }
        if self.fallbacks.is_empty() {
            if self.wild.is_empty() {
                return Match::NotFound;
            }
            return self
                .find_in(Tier::scan(&self.wild), method, raw_path, &mut params)
                .unwrap_or(Match::NotFound);
        }
        self.find_with_fallback(method, raw_path, &mut params)
    }

    /// The common answer for a path that is `/` and one literal segment,
    /// which the index found whole (`statics` are its routes): the route
    /// on exactly that literal pattern that takes `method`, with no
    /// captures and no matching. Such routes come first in `statics`
    /// and before every dynamic route (a one-literal pattern is the most
    /// specific of all that can match a one-segment path, and the routes
    /// are in that order), so the first of them owns the path, as in
    /// [`find_in`](Self::find_in), and the first of them that takes the
    /// method is the one `find_in` would return. Anything else (no such
    /// route, a `405`, `HEAD` answered by a `GET` route) is `None`: the
    /// general way decides it.
    #[inline]
    fn literal(&self, statics: &[usize], method: &Method) -> Option<Match<'_, T>> {
        for &index in statics {
            let route = &self.routes[index];
            if !route.pattern.single {
                break;
            }
            match &route.method {
                Some(m) if m != method => {}
                _ => return Some(Match::Found(&route.value, Captures::new())),
            }
        }
        None
    }

    /// The wildcard tier when fallbacks exist: the deepest fallback
    /// matching the path answers, unless a wildcard route or mount at
    /// least as deep matches it.
    #[cold]
    fn find_with_fallback(
        &self,
        method: &Method,
        raw_path: &str,
        params: &mut Captures,
    ) -> Match<'_, T> {
        let Some((index, depth, captures)) = self.deepest_fallback(raw_path, params) else {
            return self
                .find_in(Tier::scan(&self.wild), method, raw_path, params)
                .unwrap_or(Match::NotFound);
        };
        let deep: Vec<usize> = self
            .wild
            .iter()
            .copied()
            .filter(|&i| self.routes[i].pattern.depth() >= depth)
            .collect();
        self.find_in(Tier::scan(&deep), method, raw_path, params)
            .unwrap_or_else(|| Match::Found(&self.routes[index].value, captures))
    }

    /// The deepest fallback matching `raw_path`, with its captures, if it
    /// is at least `depth` deep: what answers a path a static mount that
    /// deep has no file for.
    #[cold]
    pub(crate) fn fallback_for(&self, raw_path: &str, depth: usize) -> Option<(&T, Captures)> {
        self.deepest_fallback(raw_path, &mut Captures::new())
            .filter(|&(_, found, _)| found >= depth)
            .map(|(index, _, captures)| (&self.routes[index].value, captures))
    }

    /// The deepest fallback matching `raw_path`: its index, depth and
    /// captures.
    fn deepest_fallback(
        &self,
        raw_path: &str,
        params: &mut Captures,
    ) -> Option<(usize, usize, Captures)> {
        let mut best: Option<(usize, usize, Captures)> = None;
        for &index in &self.fallbacks {
            let pattern = &self.routes[index].pattern;
            params.clear();
            let deeper = best.as_ref().is_none_or(|b| pattern.depth() > b.1);
            if deeper && pattern.matches(raw_path, params) {
                best = Some((index, pattern.depth(), std::mem::take(params)));
            }
        }
        best
    }

    /// Whether any fallback was added.
    pub(crate) fn has_fallbacks(&self) -> bool {
        !self.fallbacks.is_empty()
    }

    /// The route `index`, known to match `raw_path`, with its captures.
    #[cold]
    fn found_again(&self, index: usize, raw_path: &str, params: &mut Captures) -> Match<'_, T> {
        let route = &self.routes[index];
        params.clear();
        route.pattern.matches(raw_path, params);
        Match::Found(&route.value, std::mem::take(params))
    }

    /// One tier of [`find`](Self::find): `None` if no route of it
    /// matches the path.
    fn find_in(
        &self,
        tier: Tier<'_>,
        method: &Method,
        raw_path: &str,
        params: &mut Captures,
    ) -> Option<Match<'_, T>> {
        // Indices only: the captures of these rarer answers are matched
        // again at the end, so the common path moves no captures around.
        let mut head_fallback: Option<usize> = None;
        let mut path_matched = false;
        // The first mount matching the path, while only mounts did.
        let mut only_mounts: Option<usize> = None;
        let mut routes_matched = false;
        // The first route that matched: its pattern owns the path.
        let mut owner: Option<&Pattern> = None;
        for index in merged(tier.statics, tier.dynamic) {
            let route = &self.routes[index];
            params.clear();
            // The index compared the path with the route's one segment
            // already (only `statics` routes can be `single`).
            let known = tier.whole && route.pattern.single;
            if !known && !route.pattern.matches(raw_path, params) {
                continue;
            }
            if route.mount && *method != Method::GET && *method != Method::HEAD {
                // A mount does not make a path exist for other methods:
                // it owns nothing for them, and answers them (404 or
                // 405) only where no other route matches.
                path_matched = true;
                if only_mounts.is_none() {
                    only_mounts = Some(index);
                }
                continue;
            }
            match owner {
                None => owner = Some(&route.pattern),
                // A less specific pattern (the routes are in that order):
                // the path is not its.
                Some(owner) if !owner.same_shape(&route.pattern) => continue,
                Some(_) => {}
            }
            path_matched = true;
            match &route.method {
                None => return Some(Match::Found(&route.value, std::mem::take(params))),
                Some(m) if m == method => {
                    return Some(Match::Found(&route.value, std::mem::take(params)))
                }
                Some(m) if *m == Method::GET && *method == Method::HEAD => {
                    if head_fallback.is_none() {
                        head_fallback = Some(index);
                    }
                }
                Some(_) if route.mount => {
                    if only_mounts.is_none() {
                        only_mounts = Some(index);
                    }
                }
                Some(_) => routes_matched = true,
            }
        }
        if let Some(index) = head_fallback {
            return Some(self.found_again(index, raw_path, params));
        }
        if !path_matched {
            return None;
        }
        if let (Some(index), false) = (only_mounts, routes_matched) {
            // The mount says whether it has the path (405) or not (404).
            return Some(self.found_again(index, raw_path, params));
        }
        let mut allowed: Vec<Method> = Vec::new();
        let owner = owner?;
        for index in merged(tier.statics, tier.dynamic) {
            let route = &self.routes[index];
            params.clear();
            if let Some(m) = &route.method {
                if !allowed.contains(m)
                    && route.pattern.same_shape(owner)
                    && route.pattern.matches(raw_path, params)
                {
                    allowed.push(m.clone());
                    if *m == Method::GET && !allowed.contains(&Method::HEAD) {
                        allowed.push(Method::HEAD);
                    }
                }
            }
        }
        Some(Match::MethodNotAllowed(allowed))
    }
}

/// The routes [`Router::find_in`] tries, most specific first.
#[derive(Clone, Copy)]
struct Tier<'a> {
    /// From the first-segment index: routes whose first segment is the
    /// path's.
    statics: &'a [usize],
    /// The path is `/` and that segment, nothing more.
    whole: bool,
    /// Routes to match whole.
    dynamic: &'a [usize],
}

impl<'a> Tier<'a> {
    /// Every route of `routes` matched whole.
    fn scan(routes: &'a [usize]) -> Self {
        Tier {
            statics: &[],
            whole: false,
            dynamic: routes,
        }
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

    /// Patterns that could never match what their writer meant are
    /// refused: a query or fragment, an empty segment.
    #[test]
    fn patterns_that_cannot_mean_what_they_say_are_refused() {
        for (pattern, says) in [
            ("/search?q=:q", "'?' is not part of a path"),
            ("/a#top", "'#' is not part of a path"),
            ("//a", "empty segment"),
            ("/a//b", "empty segment"),
        ] {
            let err = Pattern::parse(pattern).map(|_| ()).unwrap_err();
            assert!(err.contains(says), "{pattern}: {err}");
        }
        for fine in ["/", "/a/", "/a/b", "/a/:b/*"] {
            assert!(Pattern::parse(fine).is_ok(), "{fine}");
        }
    }

    fn router(routes: &[(&str, &str)]) -> Router<usize> {
        let mut r = Router::default();
        for (i, (m, p)) in routes.iter().enumerate() {
            let method = if *m == "ANY" {
                None
            } else {
                Some(Method::from_bytes(m.as_bytes()).unwrap())
            };
            r.add(method, Pattern::parse(p).unwrap(), i).unwrap();
        }
        r
    }

    fn found(r: &Router<usize>, m: Method, path: &str) -> Option<(usize, Vec<(String, String)>)> {
        match r.find(&m, path) {
            Match::Found(v, list) => Some((*v, {
                // As in a request: the captures point into its path.
                let p = crate::http::Params {
                    src: crate::http::HeadBytes::owned(path, b"").unwrap().0,
                    list: std::mem::ManuallyDrop::new(list),
                };
                p.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })),
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
    fn a_literal_with_a_percent_matches_past_the_index() {
        // The literal is compared with the decoded segment (`%25` is `%`),
        // in a router that uses its first-segment index as in one that
        // does not.
        for filler in [0, 40] {
            let r = with_filler(&[("GET", "/100%"), ("GET", "/100%/:x")], filler);
            assert_eq!(found(&r, Method::GET, "/100%25").map(|f| f.0), Some(0));
            assert_eq!(found(&r, Method::GET, "/100%25/y").map(|f| f.0), Some(1));
            assert!(found(&r, Method::GET, "/100").is_none());
        }
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
    fn the_most_specific_pattern_wins_in_any_order() {
        for r in [
            router(&[("GET", "/a/:x"), ("GET", "/a/b")]),
            router(&[("GET", "/:x/b"), ("GET", "/a/b")]),
        ] {
            assert_eq!(found(&r, Method::GET, "/a/b").unwrap().0, 1);
        }
        let r = router(&[("GET", "/a/b"), ("GET", "/:x/b")]);
        assert_eq!(found(&r, Method::GET, "/a/b").unwrap().0, 0);
        assert_eq!(found(&r, Method::GET, "/z/b").unwrap().0, 1);
        // The first segment that differs decides: `/a/:x/c` beats
        // `/:x/b/c` for `/a/b/c`.
        let r = router(&[("GET", "/:x/b/c"), ("GET", "/a/:y/c")]);
        assert_eq!(found(&r, Method::GET, "/a/b/c").unwrap().0, 1);
        assert_eq!(found(&r, Method::GET, "/z/b/c").unwrap().0, 0);
        // The owning pattern's methods decide: a `405` (axum's answer),
        // not the less specific route's `200`.
        let r = router(&[
            ("GET", "/users/:id"),
            ("POST", "/users/new"),
            ("ANY", "/:x"),
        ]);
        match r.find(&Method::GET, "/users/new") {
            Match::MethodNotAllowed(m) => assert_eq!(m, [Method::POST]),
            other => panic!("{other:?}"),
        }
        assert_eq!(found(&r, Method::GET, "/users/7").unwrap().0, 0);
        assert_eq!(found(&r, Method::HEAD, "/users/7").unwrap().0, 0);
        assert_eq!(found(&r, Method::DELETE, "/users").unwrap().0, 2);
        // Among wildcards too: the deeper, then literals before captures.
        let r = router(&[
            ("GET", "/files/*"),
            ("GET", "/files/:x/*"),
            ("GET", "/files/special/*"),
        ]);
        assert_eq!(found(&r, Method::GET, "/files/special/a").unwrap().0, 2);
        assert_eq!(found(&r, Method::GET, "/files/other/a").unwrap().0, 1);
        assert_eq!(found(&r, Method::GET, "/files").unwrap().0, 0);
        // `/*` is more specific than the bare `*` (which takes `OPTIONS *`
        // too), and the bare `*`'s routes are one pattern whatever else
        // lies between them (the fuzzer's case: a route for every method
        // after `DELETE *` and a mount at `/`).
        let r = router(&[("DELETE", "*"), ("GET", "/*"), ("ANY", "*")]);
        assert_eq!(found(&r, Method::GET, "").unwrap().0, 1);
        assert_eq!(found(&r, Method::GET, "/x").unwrap().0, 1);
        assert_eq!(found(&r, Method::DELETE, "*").unwrap().0, 0);
        assert_eq!(found(&r, Method::POST, "*").unwrap().0, 2);
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
    fn exact_patterns_own_their_paths_before_wildcards() {
        // A catch-all registered first does not take the exact routes'
        // paths, nor their HEAD, nor their other methods.
        let r = router(&[
            ("ANY", "/api/*"),
            ("GET", "/api/todos"),
            ("POST", "/api/todos"),
            ("GET", "/api/todos/:id"),
            ("DELETE", "/api/todos/:id"),
            ("GET", "/*"),
        ]);
        assert_eq!(found(&r, Method::GET, "/api/todos").unwrap().0, 1);
        assert_eq!(found(&r, Method::HEAD, "/api/todos").unwrap().0, 1);
        assert_eq!(found(&r, Method::POST, "/api/todos").unwrap().0, 2);
        assert_eq!(found(&r, Method::HEAD, "/api/todos/7").unwrap().0, 3);
        match r.find(&Method::DELETE, "/api/todos") {
            Match::MethodNotAllowed(m) => assert_eq!(m, [Method::GET, Method::HEAD, Method::POST]),
            other => panic!("{other:?}"),
        }
        match r.find(&Method::PUT, "/api/todos/7") {
            Match::MethodNotAllowed(m) => {
                assert_eq!(m, [Method::GET, Method::HEAD, Method::DELETE])
            }
            other => panic!("{other:?}"),
        }
        // Paths no exact pattern matches go to the wildcards, in order.
        assert_eq!(found(&r, Method::DELETE, "/api/nothing").unwrap().0, 0);
        assert_eq!(found(&r, Method::GET, "/api/todos/7/x").unwrap().0, 0);
        assert_eq!(found(&r, Method::GET, "/index.html").unwrap().0, 5);
        // A wildcard route's own methods still give 405 among wildcards.
        match r.find(&Method::POST, "/index.html") {
            Match::MethodNotAllowed(m) => assert_eq!(m, [Method::GET, Method::HEAD]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(r.find(&Method::GET, "/"), Match::Found(..)));
    }

    #[test]
    fn a_mount_answers_the_other_methods_of_paths_only_it_matches() {
        let mut r = Router::default();
        r.add(Some(Method::GET), Pattern::parse("/api/todos").unwrap(), 0)
            .unwrap();
        r.add_mount(Pattern::parse("/*").unwrap(), 1).unwrap();
        r.add(Some(Method::POST), Pattern::parse("/upload/*").unwrap(), 2)
            .unwrap();
        // Only the mount matches: it answers (404 or 405, its call).
        assert_eq!(found(&r, Method::DELETE, "/api/nothing").unwrap().0, 1);
        assert_eq!(found(&r, Method::OPTIONS, "/index.html").unwrap().0, 1);
        assert_eq!(found(&r, Method::GET, "/index.html").unwrap().0, 1);
        // An exact route's path is its own.
        match r.find(&Method::DELETE, "/api/todos") {
            Match::MethodNotAllowed(m) => assert_eq!(m, [Method::GET, Method::HEAD]),
            other => panic!("{other:?}"),
        }
        // A less specific route for other methods is not hidden by a
        // mount: `POST` to a mounted path goes to an `any("*")`.
        let mut r2 = Router::default();
        r2.add(None, Pattern::parse("*").unwrap(), 0).unwrap();
        r2.add_mount(Pattern::parse("/assets/*").unwrap(), 1)
            .unwrap();
        assert_eq!(found(&r2, Method::POST, "/assets/a.txt").unwrap().0, 0);
        assert_eq!(found(&r2, Method::DELETE, "/assets").unwrap().0, 0);
        assert_eq!(found(&r2, Method::GET, "/assets/a.txt").unwrap().0, 1);
        // A mount on the owning pattern answers no other method, but its
        // `GET` is in the `Allow` of that pattern's `405` (the fuzzer's
        // case: `POST /*` beside a mount at `/`).
        let mut r3 = Router::default();
        r3.add(Some(Method::POST), Pattern::parse("/*").unwrap(), 0)
            .unwrap();
        r3.add_mount(Pattern::parse("/*").unwrap(), 1).unwrap();
        match r3.find(&Method::PUT, "/x") {
            Match::MethodNotAllowed(m) => {
                assert_eq!(m, [Method::POST, Method::GET, Method::HEAD])
            }
            other => panic!("{other:?}"),
        }
        // A wildcard route more specific than the mount owns its paths:
        // 405 with its methods only, for GET too.
        assert_eq!(found(&r, Method::POST, "/upload/x").unwrap().0, 2);
        for method in [Method::PUT, Method::GET] {
            match r.find(&method, "/upload/x") {
                Match::MethodNotAllowed(m) => assert_eq!(m, [Method::POST]),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn conflicting_routes_are_refused() {
        let mut r = Router::default();
        let add = |r: &mut Router<usize>, m: Option<Method>, p: &str| {
            r.add(m, Pattern::parse(p).unwrap(), 0)
        };
        add(&mut r, Some(Method::GET), "/users/:id").unwrap();
        let err = add(&mut r, Some(Method::GET), "/users/:name").unwrap_err();
        assert_eq!(
            err,
            "conflicting route: GET \"/users/:name\" is already routed (GET \"/users/:id\"), \
             so this one could never answer"
        );
        // Other methods, other shapes, and `any` after a method are fine.
        add(&mut r, Some(Method::DELETE), "/users/:id").unwrap();
        add(&mut r, Some(Method::GET), "/users/new").unwrap();
        add(&mut r, Some(Method::GET), "/users/:id/*").unwrap();
        add(&mut r, None, "/users/:id").unwrap();
        // After `any`, nothing more on that pattern.
        assert!(add(&mut r, Some(Method::PUT), "/users/:x").is_err());
        assert!(add(&mut r, None, "/users/:x").is_err());
        add(&mut r, None, "*").unwrap();
        assert!(add(&mut r, Some(Method::GET), "*").is_err());
        assert!(r
            .add_mount(Pattern::parse("/users/:id/*").unwrap(), 1)
            .is_err());
    }

    #[test]
    fn fallbacks_answer_what_routes_as_deep_do_not() {
        let mut r = Router::default();
        r.add_mount(Pattern::parse("/*").unwrap(), 0).unwrap();
        r.add(Some(Method::GET), Pattern::parse("/api/todos").unwrap(), 1)
            .unwrap();
        r.add(
            Some(Method::GET),
            Pattern::parse("/api/files/*").unwrap(),
            2,
        )
        .unwrap();
        r.add_fallback(Pattern::parse("/api/*").unwrap(), 3)
            .unwrap();
        r.add_fallback(Pattern::parse("/api/v2/*").unwrap(), 4)
            .unwrap();
        assert_eq!(found(&r, Method::GET, "/api/nothing").unwrap().0, 3);
        assert_eq!(found(&r, Method::DELETE, "/api").unwrap().0, 3);
        assert_eq!(found(&r, Method::GET, "/api/v2/x").unwrap().0, 4);
        assert_eq!(found(&r, Method::GET, "/api/files/a").unwrap().0, 2);
        assert_eq!(found(&r, Method::GET, "/index.html").unwrap().0, 0);
        // A route's own path is still its own: 405, not the fallback.
        assert!(matches!(
            r.find(&Method::POST, "/api/todos"),
            Match::MethodNotAllowed(_)
        ));
        assert!(matches!(
            r.find(&Method::POST, "/api/files/a"),
            Match::MethodNotAllowed(_)
        ));
        assert!(r
            .add_fallback(Pattern::parse("/api/*").unwrap(), 5)
            .is_err());
        assert!(r.add_fallback(Pattern::parse("/api").unwrap(), 5).is_err());
    }

    #[test]
    fn bad_patterns() {
        assert!(Pattern::parse("x").is_err());
        assert!(Pattern::parse("/a/*/b").is_err());
        assert!(Pattern::parse("/a/:").is_err());
        assert!(Pattern::parse("/:a/:a").is_err());
    }

    /// The same routes among `filler` others (half registered before them,
    /// half after), so that routers past [`SCAN_ALL`] use the first-segment
    /// index; the values of the routes under test are 0, 1, ...
    fn with_filler(routes: &[(&str, &str)], filler: usize) -> Router<usize> {
        let mut r = Router::default();
        let add = |r: &mut Router<usize>, m: &str, p: &str, v: usize| {
            let method = (m != "ANY").then(|| Method::from_bytes(m.as_bytes()).unwrap());
            r.add(method, Pattern::parse(p).unwrap(), v).unwrap();
        };
        for i in 0..filler / 2 {
            add(&mut r, "GET", &format!("/filler{i}/:x"), 1000 + i);
        }
        for (i, (m, p)) in routes.iter().enumerate() {
            add(&mut r, m, p, i);
        }
        for i in filler / 2..filler {
            add(&mut r, "POST", &format!("/filler{i}"), 1000 + i);
        }
        r
    }

    /// A one-literal path's routes (the index's fast way in large
    /// routers): the method's route, else `any`, else `HEAD` by `GET`,
    /// else a `405`; a capture or a deeper pattern never takes it.
    #[test]
    fn one_literal_paths_answer_alike_in_large_routers() {
        let routes = [
            ("GET", "/:page"),
            ("POST", "/plain"),
            ("GET", "/plain/:x"),
            ("GET", "/plain"),
            ("ANY", "/plain"),
            ("PUT", "/only"),
            ("GET", "/head"),
            ("GET", "/:page/:x"),
        ];
        for filler in [0, 17] {
            let r = with_filler(&routes, filler);
            let get = |m: Method, path: &str| found(&r, m, path).map(|(i, p)| (i, p.len()));
            assert_eq!(get(Method::POST, "/plain"), Some((1, 0)), "{filler}");
            assert_eq!(get(Method::GET, "/plain"), Some((3, 0)), "{filler}");
            assert_eq!(get(Method::HEAD, "/plain"), Some((4, 0)), "{filler}");
            assert_eq!(get(Method::DELETE, "/plain"), Some((4, 0)), "{filler}");
            assert_eq!(get(Method::HEAD, "/head"), Some((6, 0)), "{filler}");
            assert_eq!(get(Method::GET, "/plain/x"), Some((2, 1)), "{filler}");
            assert_eq!(get(Method::GET, "/other"), Some((0, 1)), "{filler}");
            match r.find(&Method::GET, "/only") {
                Match::MethodNotAllowed(allowed) => assert_eq!(allowed, [Method::PUT]),
                other => panic!("GET /only with {filler}: {other:?}"),
            }
        }
    }

    #[test]
    fn large_routers_answer_like_small_ones() {
        let routes = [
            ("GET", "/"),
            ("GET", "/users/:id"),
            ("DELETE", "/users/:id"),
            ("GET", "/users/new"),
            ("POST", "/users"),
            ("GET", "/:lang/about"),
            ("GET", "/en/about"),
            ("GET", "/slash/"),
            ("GET", "/files/*"),
            ("GET", "/u"),
            ("GET", "/us"),
        ];
        for filler in [0, 17, 150] {
            let r = with_filler(&routes, filler);
            assert_eq!(r.routes.len() > SCAN_ALL, filler > 0);
            let get = |m: Method, path: &str| found(&r, m, path);
            let not_allowed = |m: Method, path: &str| match r.find(&m, path) {
                Match::MethodNotAllowed(allowed) => allowed,
                other => panic!("{m} {path} with {filler}: {other:?}"),
            };
            let missing = |m: Method, path: &str| {
                assert!(
                    matches!(r.find(&m, path), Match::NotFound),
                    "{m} {path} with {filler}"
                )
            };
            assert_eq!(get(Method::GET, "/"), Some((0, vec![])), "{filler}");
            let id = vec![("id".to_string(), "42".to_string())];
            assert_eq!(get(Method::GET, "/users/42"), Some((1, id.clone())));
            // HEAD falls back to GET; the first registered wins.
            assert_eq!(get(Method::HEAD, "/users/42"), Some((1, id.clone())));
            assert_eq!(get(Method::DELETE, "/users/42").unwrap().0, 2);
            // A literal beats a capture, in either order.
            assert_eq!(get(Method::GET, "/users/new").unwrap().0, 3);
            assert_eq!(get(Method::GET, "/en/about").unwrap().0, 6);
            assert_eq!(get(Method::GET, "/fr/about").unwrap().0, 5);
            // An escaped first segment is looked up decoded.
            assert_eq!(get(Method::GET, "/%75sers/42"), Some((1, id)));
            assert_eq!(get(Method::GET, "/%75").unwrap().0, 9);
            assert_eq!(get(Method::GET, "/us").unwrap().0, 10);
            // 405 lists the methods of every route matching the path.
            assert_eq!(
                not_allowed(Method::PUT, "/users/42"),
                [Method::GET, Method::HEAD, Method::DELETE]
            );
            assert_eq!(not_allowed(Method::GET, "/users"), [Method::POST]);
            // Trailing slashes are exact.
            missing(Method::GET, "/users/");
            missing(Method::GET, "/users/42/");
            assert_eq!(get(Method::GET, "/slash/").unwrap().0, 7);
            missing(Method::GET, "/slash");
            missing(Method::GET, "/u/");
            // Wildcards after the exact tier.
            assert_eq!(get(Method::GET, "/files").unwrap().0, 8);
            assert_eq!(get(Method::GET, "/files/a/b").unwrap().1[0].1, "a/b");
            missing(Method::GET, "/nope");
            missing(Method::GET, "/usersx/42");
            missing(Method::GET, "/user/42");
            if filler > 0 {
                let last = filler - 1;
                assert_eq!(get(Method::GET, "/filler0/x").unwrap().0, 1000);
                assert_eq!(
                    get(Method::POST, &format!("/filler{last}")).unwrap().0,
                    1000 + last
                );
                assert_eq!(
                    not_allowed(Method::GET, &format!("/filler{last}")),
                    [Method::POST]
                );
            }
        }
    }

    /// A one-segment static route the index found whole is not matched
    /// again, and specificity still decides, in either order.
    #[test]
    fn whole_segment_shortcut_keeps_specificity() {
        let capture_first = with_filler(
            &[
                ("GET", "/:x"),
                ("GET", "/plaintext"),
                ("POST", "/plaintext"),
            ],
            17,
        );
        let get = |m: Method, path: &str| found(&capture_first, m, path).map(|f| f.0);
        assert_eq!(get(Method::GET, "/plaintext"), Some(1));
        assert_eq!(get(Method::HEAD, "/plaintext"), Some(1));
        assert_eq!(get(Method::POST, "/plaintext"), Some(2));
        assert_eq!(get(Method::GET, "/other"), Some(0));
        let static_first = with_filler(&[("GET", "/plaintext"), ("GET", "/:x")], 17);
        let get = |m: Method, path: &str| found(&static_first, m, path).map(|f| f.0);
        assert_eq!(get(Method::GET, "/plaintext"), Some(0));
        assert_eq!(get(Method::GET, "/plain%74ext"), Some(0));
        assert_eq!(get(Method::GET, "/plaintexts"), Some(1));
        assert_eq!(get(Method::GET, "/plaintext/"), None);
        assert!(matches!(
            static_first.find(&Method::PUT, "/plaintext"),
            Match::MethodNotAllowed(_)
        ));
    }

    #[test]
    fn same_compares_every_byte() {
        let text = b"abcdefghijklmnopqrstuvwxyz";
        for n in 0..=text.len() {
            let a = &text[..n];
            assert!(same(a, a), "{n}");
            for i in 0..n {
                let mut b = a.to_vec();
                b[i] ^= 0x20;
                assert!(!same(a, &b), "{n} {i}");
            }
        }
    }

    #[test]
    fn first_segments() {
        let mut index = FirstSegments::default();
        for (i, key) in ["json", "b", "plaintext", "pid", "p", "", "json", "a%20b"]
            .iter()
            .enumerate()
        {
            index.insert(key, i);
        }
        let none: &[usize] = &[];
        assert_eq!(index.get("json"), (&[0, 6][..], true));
        assert_eq!(index.get("json/x/y"), (&[0, 6][..], false));
        assert_eq!(index.get(""), (&[5][..], true));
        assert_eq!(index.get("/x"), (&[5][..], false));
        assert_eq!(index.get("b"), (&[1][..], true));
        assert_eq!(index.get("plaintext"), (&[2][..], true));
        assert_eq!(index.get("pid/7"), (&[3][..], false));
        assert_eq!(index.get("p/7"), (&[4][..], false));
        assert_eq!(index.get("p"), (&[4][..], true));
        assert_eq!(index.get("plaintexts"), (none, false));
        assert_eq!(index.get("plain"), (none, false));
        assert_eq!(index.get("jsom"), (none, false));
        assert_eq!(index.get("z"), (none, false));
        // Escaped first segments are decoded; a literal with `%` is never
        // matched (paths are compared decoded). An escaped path is never
        // "whole": its routes are matched in full.
        assert_eq!(index.get("%70laintext"), (&[2][..], false));
        assert_eq!(index.get("%70id/x"), (&[3][..], false));
        assert_eq!(index.get("a%20b"), (none, false));
        assert_eq!(index.get("%2F"), (none, false));
        // Bytes past ASCII pick their own (empty) group.
        assert_eq!(index.get("\u{e9}t\u{e9}"), (none, false));
        assert_eq!(FirstSegments::default().get("x"), (none, false));
    }

    #[test]
    fn many_routes() {
        let mut r = Router::default();
        for i in 0..500 {
            r.add(
                Some(Method::GET),
                Pattern::parse(&format!("/r{i}/:id")).unwrap(),
                i,
            )
            .unwrap();
        }
        assert_eq!(found(&r, Method::GET, "/r499/1").unwrap().0, 499);
    }
}
