//! hello's observability routes and flags: `/metrics`, `/status`,
//! `/healthz` (and the shutdown delay that goes with it).

use std::time::Duration;

use tine::App;

/// The observability flags (the `--- observability ---` part of `Args`).
pub(crate) struct Observe {
    /// `--shutdown-delay-ms`: how long a `SIGTERM` keeps serving with
    /// `/healthz` at 503 before the drain (hello's default is 0, unlike
    /// tine's 5 s, so that its tests stop quickly).
    pub(crate) shutdown_delay_ms: Option<u64>,
    /// `--admin-bind`: serve the three routes from the admin process on
    /// this address instead (the master logs the address it bound).
    pub(crate) admin_bind: Option<std::net::SocketAddr>,
}

/// Adds hello's observability routes.
pub(crate) fn routes(app: App, o: &Observe) -> App {
    let app = app
        .metrics("/metrics")
        .status("/status")
        .health("/healthz")
        .shutdown_delay(Duration::from_millis(o.shutdown_delay_ms.unwrap_or(0)));
    match o.admin_bind {
        Some(addr) => app.admin_bind(addr),
        None => app,
    }
}
