//! HTTPS and WSS: TLS listeners (feature `tls`, rustls with the `ring`
//! provider).
//!
//! - [`TlsConfig`] (public): certificates from PEM files, several chosen by
//!   server name (SNI), or a ready `rustls::ServerConfig`.
//! - `stream.rs`: a TLS connection driven on the event loop (rustls'
//!   unbuffered API, buffers only while in use), behind the connection's
//!   transport seam.
//! - `certs.rs`: the certificate resolver, reloadable while workers run.
//! - `tickets.rs`: session-ticket keys made and rotated by the master, so
//!   a session made on one worker resumes on any other.
//!
//! # The provider: ring
//!
//! Both rustls providers compile C. `ring` needs only a C compiler (it
//! ships its assembly pre-generated), which a Rust install on Debian has
//! anyway (`cc` is the linker). `aws-lc-rs` builds AWS-LC with CMake (or a
//! longer cc-based build), which a fresh machine does not have. Neither
//! cross-compiles for the macOS/FreeBSD type checks without that target's
//! C toolchain, hence the `tls` cargo feature.
//!
//! # The master's part
//!
//! Certificates, ticket keys and their rotation schedule live in process
//! globals here, made before the first fork, so every worker inherits
//! them. The master changes them in its own memory and tells the running
//! workers over the control channel ([`control::TLS`]):
//!
//! - every ticket-rotation period it draws a new ticket key
//!   ([`rotate_due`]);
//! - on `SIGHUP` (before the rolling restart) and `SIGUSR1` (without one)
//!   it re-reads every certificate and key file ([`reload`]); a file that
//!   does not load, or a key that does not match its certificate, is
//!   logged and the old certificates stay.
//!
//! A worker forked later inherits the master's current keys and
//! certificates.
//!
//! [`control::TLS`]: crate::server::control::TLS

mod certs;
#[doc(hidden)]
pub mod fuzz;
mod stream;
mod tickets;

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub(crate) use stream::TlsStream;

use self::certs::{CertStore, Loaded, Pem, Source};
use self::tickets::TicketKeys;

/// TLS settings for an HTTPS listener: the certificate (and key) files,
/// more certificates chosen by server name, or a whole
/// [`rustls::ServerConfig`].
///
/// With files, tine offers TLS 1.2 and 1.3 with rustls' default cipher
/// suites, ALPN `http/1.1`, session tickets that resume on any worker
/// (see [`ticket_rotation`](Self::ticket_rotation)), and reloads the files
/// on `SIGHUP` and `SIGUSR1`.
///
/// ```no_run
/// let tls = tine::TlsConfig::from_pem_files("cert.pem", "key.pem")?
///     .sni_cert("api.example.com", "api-cert.pem", "api-key.pem")?;
/// # Ok::<(), tine::TlsError>(())
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    kind: Kind,
    rotation: Duration,
    /// The rustls configuration, made once (before any fork).
    built: Arc<OnceLock<Arc<rustls::ServerConfig>>>,
}

#[derive(Clone)]
enum Kind {
    Files {
        sources: Vec<Source>,
        /// Parsed with the files, so a bad file fails at start-up.
        pems: Vec<Pem>,
        reject_unknown: bool,
    },
    Rustls(Arc<rustls::ServerConfig>),
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Files {
                sources,
                reject_unknown,
                ..
            } => f
                .debug_struct("TlsConfig")
                .field("certificates", sources)
                .field("reject_unknown_names", reject_unknown)
                .finish(),
            Kind::Rustls(_) => f.write_str("TlsConfig(rustls::ServerConfig)"),
        }
    }
}

/// A certificate or key that could not be used, or a TLS setting that
/// cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    message: String,
}

impl TlsError {
    pub(crate) fn new(message: String) -> Self {
        TlsError { message }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tls: {}", self.message)
    }
}

impl std::error::Error for TlsError {}

impl From<TlsError> for std::io::Error {
    fn from(e: TlsError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    }
}

impl TlsConfig {
    /// The default certificate: a PEM file with the certificate chain (the
    /// server's certificate first, then intermediates) and a PEM file with
    /// its private key (PKCS#8, PKCS#1 or SEC1). Both are read and checked
    /// (they parse, the key matches the certificate) now.
    ///
    /// The default certificate answers clients that send no server name,
    /// and names no other certificate claims (unless
    /// [`reject_unknown_names`](Self::reject_unknown_names)).
    ///
    /// ```no_run
    /// let tls = tine::TlsConfig::from_pem_files("/etc/tine/fullchain.pem", "/etc/tine/privkey.pem")?;
    /// # Ok::<(), tine::TlsError>(())
    /// ```
    pub fn from_pem_files(
        chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsConfig, TlsError> {
        let source = Source {
            chain: chain.as_ref().to_path_buf(),
            key: key.as_ref().to_path_buf(),
            name: None,
        };
        let pem = source.read()?;
        source.parse(&pem)?;
        Ok(TlsConfig {
            kind: Kind::Files {
                sources: vec![source],
                pems: vec![pem],
                reject_unknown: false,
            },
            rotation: tickets::DEFAULT_PERIOD,
            built: Arc::default(),
        })
    }

    /// One more certificate, for clients asking for `server_name` (SNI;
    /// `*.example.com` answers any one-label subdomain). Checked now, like
    /// the default one, and so is the name (a DNS name, or `*.` and one). Ignored on a configuration made with
    /// [`from_rustls`](Self::from_rustls).
    ///
    /// ```no_run
    /// let tls = tine::TlsConfig::from_pem_files("default.pem", "default-key.pem")?
    ///     .sni_cert("*.example.org", "org.pem", "org-key.pem")?;
    /// # Ok::<(), tine::TlsError>(())
    /// ```
    pub fn sni_cert(
        mut self,
        server_name: &str,
        chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsConfig, TlsError> {
        // A name no client can send would never be chosen: refused here,
        // as a bad file is. `*.` may lead (a wildcard); the rest must be
        // a DNS name.
        let bare = server_name.trim_end_matches('.');
        let host = bare.strip_prefix("*.").unwrap_or(bare);
        if rustls::pki_types::DnsName::try_from(host).is_err() || host.contains('*') {
            return Err(TlsError::new(format!(
                "sni_cert: {server_name:?} is not a DNS name (or `*.` and one)"
            )));
        }
        if let Kind::Files { sources, pems, .. } = &mut self.kind {
            let source = Source {
                chain: chain.as_ref().to_path_buf(),
                key: key.as_ref().to_path_buf(),
                name: Some(server_name.trim_end_matches('.').to_ascii_lowercase()),
            };
            let pem = source.read()?;
            source.parse(&pem)?;
            sources.push(source);
            pems.push(pem);
        }
        self.built = Arc::default();
        Ok(self)
    }

    /// A client asking for a server name that no certificate is for (not
    /// an SNI certificate's name, not in the default certificate) gets a
    /// handshake alert (`access_denied`, rustls' answer when no certificate
    /// is found) instead of the default
    /// certificate. Clients sending no name still get the default.
    ///
    /// ```no_run
    /// let tls = tine::TlsConfig::from_pem_files("cert.pem", "key.pem")?.reject_unknown_names();
    /// # Ok::<(), tine::TlsError>(())
    /// ```
    #[must_use]
    pub fn reject_unknown_names(mut self) -> TlsConfig {
        if let Kind::Files { reject_unknown, .. } = &mut self.kind {
            *reject_unknown = true;
        }
        self.built = Arc::default();
        self
    }

    /// How often the master draws a new session-ticket key (default 6
    /// hours). A ticket resumes for at least this long and at most twice
    /// as long after it was issued; clients are told this as its lifetime.
    /// Ticket keys are shared by all TLS listeners: the shortest period
    /// given applies.
    ///
    /// ```no_run
    /// let tls = tine::TlsConfig::from_pem_files("cert.pem", "key.pem")?
    ///     .ticket_rotation(std::time::Duration::from_secs(3600));
    /// # Ok::<(), tine::TlsError>(())
    /// ```
    #[must_use]
    pub fn ticket_rotation(mut self, every: Duration) -> TlsConfig {
        self.rotation = every.max(Duration::from_secs(1));
        self.built = Arc::default();
        self
    }

    /// Uses a ready rustls configuration as it is (client certificates,
    /// other cipher suites, a resolver of your own, ...). tine's
    /// cross-worker session tickets ([`session_tickets`](Self::session_tickets))
    /// and certificate reload apply only if you use them yourself.
    ///
    /// ```no_run
    /// # fn config() -> tine::rustls::ServerConfig { unimplemented!() }
    /// let mut config: tine::rustls::ServerConfig = config();
    /// config.ticketer = tine::TlsConfig::session_tickets();
    /// let tls = tine::TlsConfig::from_rustls(std::sync::Arc::new(config));
    /// ```
    pub fn from_rustls(config: Arc<rustls::ServerConfig>) -> TlsConfig {
        TlsConfig {
            kind: Kind::Rustls(config),
            rotation: tickets::DEFAULT_PERIOD,
            built: Arc::default(),
        }
    }

    /// tine's session-ticket producer (keys made and rotated by the master,
    /// the same in every worker), for a `rustls::ServerConfig` of your own.
    /// Make the configuration before the server starts (before the fork).
    ///
    /// ```
    /// let tickets = tine::TlsConfig::session_tickets();
    /// assert!(tickets.enabled());
    /// ```
    pub fn session_tickets() -> Arc<dyn rustls::server::ProducesTickets> {
        ticket_keys(None)
    }

    /// The rustls configuration (made on first use, which the server does
    /// at start-up, before forking).
    pub(crate) fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.built
            .get_or_init(|| match &self.kind {
                Kind::Rustls(config) => config.clone(),
                Kind::Files {
                    sources,
                    pems,
                    reject_unknown,
                } => {
                    // Checked when the files were read; parsing again cannot
                    // fail, but an empty set would simply refuse handshakes.
                    let loaded = Loaded::parse(sources, pems).unwrap_or_default();
                    let store = Arc::new(CertStore::new(sources.clone(), loaded, *reject_unknown));
                    lock(&STORES).push(store.clone());
                    let provider = Arc::new(rustls::crypto::ring::default_provider());
                    let mut config = rustls::ServerConfig::builder_with_provider(provider)
                        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                        .expect("ring supports TLS 1.2 and 1.3")
                        .with_no_client_auth()
                        .with_cert_resolver(store);
                    config.alpn_protocols = vec![b"http/1.1".to_vec()];
                    config.ticketer = ticket_keys(Some(self.rotation));
                    // Tickets only: a server-side session cache would be per
                    // worker, and a session id resumes only where it was made.
                    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
                    Arc::new(config)
                }
            })
            .clone()
    }
}

/// The certificate stores of this process's TLS listeners (in the order
/// they were made: the same in the master and in every worker).
static STORES: Mutex<Vec<Arc<CertStore>>> = Mutex::new(Vec::new());
/// The ticket keys every TLS listener uses.
static TICKETS: OnceLock<Arc<TicketKeys>> = OnceLock::new();
/// When the master draws the next ticket key.
static NEXT_ROTATION: Mutex<Option<Instant>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The process's ticket keys, made on first use; `period`: a listener's
/// rotation period (the shortest wins).
fn ticket_keys(period: Option<Duration>) -> Arc<TicketKeys> {
    let keys = TICKETS
        .get_or_init(|| Arc::new(TicketKeys::new().expect("the system's random source works")))
        .clone();
    if let Some(p) = period {
        let mut next = lock(&NEXT_ROTATION);
        if next.is_none() || p < keys.period() {
            keys.set_period(p);
            *next = Some(Instant::now() + keys.period());
        }
    }
    keys
}

/// The current ticket keys in their wire form, for a new master started
/// by a binary upgrade (`None` when no TLS listener made them).
pub(crate) fn ticket_keys_for_upgrade() -> Option<Vec<u8>> {
    TICKETS.get().map(|keys| keys.wire())
}

/// A new master started by a binary upgrade takes its predecessor's
/// ticket keys before any TLS listener is set up, so tickets issued before
/// the upgrade resume after it. Malformed keys are logged and fresh ones
/// made.
pub(crate) fn adopt_ticket_keys(wire: &[u8]) {
    let keys = TicketKeys::new().expect("the system's random source works");
    if !keys.install(wire) {
        log::warn!("the old master's TLS ticket keys are malformed: making new ones");
    }
    let _ = TICKETS.set(Arc::new(keys));
}

/// Control payload kinds (the first byte of a [`control::TLS`] message).
///
/// [`control::TLS`]: crate::server::control::TLS
const TICKET_KEYS: u8 = 1;
const CERTIFICATES: u8 = 2;

/// Master: when the next ticket key is due, if tickets are in use.
pub(crate) fn next_rotation() -> Option<Instant> {
    *lock(&NEXT_ROTATION)
}

/// Master: if a rotation is due at `now`, draws the new key and returns
/// the control payload for every worker.
pub(crate) fn rotate_due(now: Instant) -> Option<Vec<u8>> {
    let keys = TICKETS.get()?;
    {
        let mut next = lock(&NEXT_ROTATION);
        match *next {
            Some(at) if at <= now => *next = Some(now + keys.period()),
            _ => return None,
        }
    }
    let wire = keys.rotate()?;
    log::info!(
        "tls: new session-ticket key (rotation every {:?})",
        keys.period()
    );
    let mut payload = vec![TICKET_KEYS];
    payload.extend_from_slice(&wire);
    Some(payload)
}

/// Master: re-reads every certificate and key file. Each listener whose
/// files all load and match is switched here, and its control payload
/// returned for the workers; a failure is logged and that listener keeps
/// its certificates.
pub(crate) fn reload() -> Vec<Vec<u8>> {
    let stores = lock(&STORES).clone();
    let mut payloads = Vec::new();
    for (index, store) in stores.iter().enumerate() {
        match store.reread() {
            Ok((pems, loaded)) => {
                store.install(loaded);
                log::info!(
                    "tls: certificates reloaded ({})",
                    store.sources[0].chain.display()
                );
                payloads.push(encode_certs(index as u32, &pems));
            }
            Err(e) => log::error!("{e}; keeping the certificates in use"),
        }
    }
    payloads
}

/// `[CERTIFICATES][store index u32][count u32]([chain len u32][chain]
/// [key len u32][key])*`
fn encode_certs(index: u32, pems: &[Pem]) -> Vec<u8> {
    let mut out = vec![CERTIFICATES];
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&(pems.len() as u32).to_le_bytes());
    for pem in pems {
        for part in [&pem.chain, &pem.key] {
            out.extend_from_slice(&(part.len() as u32).to_le_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

fn decode_certs(mut wire: &[u8]) -> Option<(usize, Vec<Pem>)> {
    let u32_at = |w: &mut &[u8]| -> Option<u32> {
        let (head, rest) = w.split_first_chunk::<4>()?;
        *w = rest;
        Some(u32::from_le_bytes(*head))
    };
    let index = u32_at(&mut wire)? as usize;
    let count = u32_at(&mut wire)? as usize;
    let mut pems = Vec::new();
    for _ in 0..count.min(1024) {
        let part = |w: &mut &[u8]| -> Option<Vec<u8>> {
            let len = u32_at(w)? as usize;
            let bytes = w.get(..len)?.to_vec();
            *w = &w[len..];
            Some(bytes)
        };
        let chain = part(&mut wire)?;
        let key = part(&mut wire)?;
        pems.push(Pem { chain, key });
    }
    (wire.is_empty() && pems.len() == count).then_some((index, pems))
}

/// Worker: applies a TLS control message from the master.
pub(crate) fn on_control(payload: &[u8]) {
    match payload.split_first() {
        Some((&TICKET_KEYS, wire)) => match TICKETS.get() {
            Some(keys) if keys.install(wire) => log::debug!("tls: new session-ticket key"),
            _ => log::warn!("tls: ignoring malformed ticket keys"),
        },
        Some((&CERTIFICATES, wire)) => {
            let Some((index, pems)) = decode_certs(wire) else {
                log::warn!("tls: ignoring a malformed certificate message");
                return;
            };
            let store = lock(&STORES).get(index).cloned();
            let Some(store) = store else {
                log::warn!("tls: certificates for an unknown listener {index}");
                return;
            };
            match Loaded::parse(&store.sources, &pems) {
                Ok(loaded) => {
                    store.install(loaded);
                    log::debug!("tls: certificates switched");
                }
                Err(e) => log::error!("{e}; keeping the certificates in use"),
            }
        }
        _ => log::warn!("tls: ignoring an unknown control message"),
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests;
