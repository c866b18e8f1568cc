//! hello's observability routes and flags: `/metrics`, `/status`,
//! `/healthz` (and the shutdown delay that goes with it), `/whoami`
//! (behind trusted proxies).

use std::time::Duration;

use tine::{AccessLog, App, Request, Response};

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
    /// `--access-log`: `common`, `combined` or `json` (request ids too).
    pub(crate) access_log: Option<String>,
    /// `--access-log-file`: where (default stdout); reopened on SIGUSR1.
    pub(crate) access_log_file: Option<std::path::PathBuf>,
    /// `--proxy-protocol-listen`: more addresses whose connections start
    /// with a PROXY protocol header (listed right after --bind's).
    pub(crate) proxy_listen: Vec<tine::Listen>,
}

/// The access log the flags ask for (an error names the formats).
fn access_log(o: &Observe) -> Result<Option<AccessLog>, String> {
    let log = match o.access_log.as_deref() {
        None => return Ok(None),
        Some("common") => AccessLog::common(),
        Some("combined") => AccessLog::combined(),
        Some("json") => AccessLog::json(),
        Some(other) => {
            return Err(format!(
                "--access-log {other:?}: use common, combined or json"
            ))
        }
    };
    Ok(Some(match &o.access_log_file {
        Some(path) => log.to_file(path),
        None => log,
    }))
}

/// `GET /whoami`: the client's address and scheme as tine sees them.
fn whoami(req: &Request) -> Response {
    Response::text(format!("{} {}", req.client_addr(), req.scheme()))
}

/// Adds hello's observability routes (unless `with_routes` is false, a
/// benchmark aid) and settings.
pub(crate) fn routes(app: App, with_routes: bool, o: &Observe) -> Result<App, String> {
    let mut app = app;
    for l in &o.proxy_listen {
        app = app.listen(l.clone().proxy_protocol(true));
    }
    if let Some(log) = access_log(o)? {
        app = app.access_log(log);
    }
    // `try_`: a bad flag is bad input, refused with one line (the plain
    // builder panics, as for a mistake in the program).
    for entry in &o.trusted_proxies {
        app = app.try_trusted_proxies([entry]).map_err(|_| {
            format!("--trusted-proxy {entry}: not an address, a CIDR range or unix:")
        })?;
    }
    let mut app = app.shutdown_delay(Duration::from_millis(o.shutdown_delay_ms.unwrap_or(0)));
    if with_routes {
        app = app
            .get("/whoami", whoami)
            .metrics("/metrics")
            .status("/status")
            .health("/healthz");
    }
    Ok(match o.admin_bind {
        Some(addr) => app.admin_bind(addr),
        None => app,
    })
}
