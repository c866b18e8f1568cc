//! hello's HTTPS flags: `--tls-bind ADDR --tls-cert FILE --tls-key FILE`
//! add an HTTPS (and WSS) listener beside `--bind` serving the same routes;
//! `--redirect-https` answers every plain request with a `308` to it.
//! `SIGHUP` (with a rolling restart) and `SIGUSR1` (without) re-read the
//! two files. Needs the `tls` feature (on by default).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tine::App;

/// The TLS flags, as parsed.
#[derive(Debug, Default)]
pub(crate) struct TlsArgs {
    pub(crate) bind: Option<SocketAddr>,
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
    pub(crate) redirect: bool,
    /// Testing aid: session-ticket key rotation period.
    pub(crate) ticket_rotation_ms: Option<u64>,
}

/// Adds the HTTPS listener (and the redirect) to `app`. Returns the app
/// and whether an HTTPS listener was added (it is the last address).
pub(crate) fn configure(app: App, args: TlsArgs) -> Result<(App, bool), String> {
    let Some(bind) = args.bind else {
        if args.redirect || args.cert.is_some() || args.key.is_some() {
            return Err("--tls-cert, --tls-key and --redirect-https need --tls-bind".into());
        }
        return Ok((app, false));
    };
    let (Some(cert), Some(key)) = (args.cert, args.key) else {
        return Err("--tls-bind needs --tls-cert FILE and --tls-key FILE".into());
    };
    listen(app, bind, cert, key, args.redirect, args.ticket_rotation_ms)
}

#[cfg(feature = "tls")]
fn listen(
    mut app: App,
    bind: SocketAddr,
    cert: PathBuf,
    key: PathBuf,
    redirect: bool,
    rotation_ms: Option<u64>,
) -> Result<(App, bool), String> {
    let mut config = tine::TlsConfig::from_pem_files(cert, key).map_err(|e| e.to_string())?;
    if let Some(ms) = rotation_ms {
        config = config.ticket_rotation(Duration::from_millis(ms));
    }
    if redirect {
        // The HTTPS port the redirect names: the one asked for (a port 0
        // redirect could not name the port the system picks).
        app = app.redirect_https(bind.port());
    }
    Ok((app.listen(tine::Listen::tls(bind, config)), true))
}

#[cfg(not(feature = "tls"))]
fn listen(
    _: App,
    _: SocketAddr,
    _: PathBuf,
    _: PathBuf,
    _: bool,
    _: Option<u64>,
) -> Result<(App, bool), String> {
    let _ = Duration::ZERO;
    Err("this hello was built without the `tls` feature".into())
}
