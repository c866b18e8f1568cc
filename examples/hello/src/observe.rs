//! hello's observability routes and flags: `/metrics`, `/status`,
//! `/healthz` (and the shutdown delay that goes with it), `/whoami`
//! (behind trusted proxies).

use std::time::Duration;

use tine::{App, Request, Response};

/// The observability flags (the `--- observability ---` part of `Args`).
pub(crate) struct Observe {
    /// `--shutdown-delay-ms`: how long a `SIGTERM` keeps serving with
    /// `/healthz` at 503 before the drain (hello's default is 0, unlike
    /// tine's 5 s, so that its tests stop quickly).
    pub(crate) shutdown_delay_ms: Option<u64>,
    /// `--admin-bind`: serve the three routes from the admin process on
    /// this address instead (the master logs the address it bound).
    pub(crate) admin_bind: Option<std::net::SocketAddr>,
    /// `--trusted-proxy`: peers whose `X-Forwarded-For`/`-Proto` are
    /// believed (addresses or CIDR ranges).
    pub(crate) trusted_proxies: Vec<String>,
}

/// `GET /whoami`: the client's address and scheme as tine sees them.
fn whoami(req: &Request) -> Response {
    Response::text(format!("{} {}", req.client_addr(), req.scheme()))
}

/// Adds hello's observability routes.
pub(crate) fn routes(app: App, o: &Observe) -> App {
    let app = app
        .get("/whoami", whoami)
        .trusted_proxies(&o.trusted_proxies)
        .metrics("/metrics")
        .status("/status")
        .health("/healthz")
        .shutdown_delay(Duration::from_millis(o.shutdown_delay_ms.unwrap_or(0)));
    match o.admin_bind {
        Some(addr) => app.admin_bind(addr),
        None => app,
    }
}
