//! Entry points for the fuzz targets in `tine/fuzz`, reached through
//! `crate::__fuzz`; not part of the API.

use http::Method;

use super::{Match, Pattern, Router};
use crate::http::Capture;

/// How a route is added to the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteKind {
    /// `Router::add`: `None` is any method.
    Route(Option<Method>),
    /// `Router::add_mount`: a static mount (`GET`).
    Mount,
    /// `Router::add_fallback`.
    Fallback,
}

/// What the router answers, captures resolved to their text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    /// The route at this index in the list given, with its captures (name,
    /// value; `None` for the `*` rest).
    Found(usize, Vec<(Option<String>, String)>),
    /// 405 with these methods allowed.
    MethodNotAllowed(Vec<Method>),
    /// 404.
    NotFound,
}

/// Builds a router from `routes` (their values are their indices) and
/// routes `method` and `raw_path` with it. A route the router refuses (a
/// malformed pattern, a conflict) is left out; the indices of those are
/// returned with the answer.
pub fn route(
    routes: &[(RouteKind, &str)],
    method: &Method,
    raw_path: &str,
) -> (Routed, Vec<usize>) {
    let mut router = Router::default();
    let mut refused = Vec::new();
    for (i, (kind, pattern)) in routes.iter().enumerate() {
        let added = Pattern::parse(pattern).and_then(|p| match kind {
            RouteKind::Route(m) => router.add(m.clone(), p, i),
            RouteKind::Mount => router.add_mount(p, i),
            RouteKind::Fallback => router.add_fallback(p, i),
        });
        if added.is_err() {
            refused.push(i);
        }
    }
    let routed = match router.find(method, raw_path) {
        Match::Found(&i, captures) => Routed::Found(
            i,
            captures
                .into_iter()
                .map(|(name, capture)| {
                    let value = match capture {
                        Capture::Raw(start, end) => {
                            raw_path[start as usize..end as usize].to_owned()
                        }
                        Capture::Owned(s) => s.into(),
                    };
                    (name.map(|n| n.to_string()), value)
                })
                .collect(),
        ),
        Match::MethodNotAllowed(methods) => Routed::MethodNotAllowed(methods),
        Match::NotFound => Routed::NotFound,
    };
    (routed, refused)
}
