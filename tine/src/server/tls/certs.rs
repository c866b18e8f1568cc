//! Certificates: loading PEM files, choosing one per handshake by server
//! name (SNI), and swapping them while workers run (reload).
//!
//! A [`CertStore`] is rustls' certificate resolver for one TLS listener. It
//! holds the files it was made from and the keys loaded from them behind a
//! lock that handshakes only read (one `Arc` clone per handshake). A reload
//! reads every file again, checks each chain parses and matches its key,
//! and replaces the whole set at once, or nothing: a bad file leaves the
//! old certificates in place.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::TlsError;

/// Where one certificate comes from.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub(crate) chain: PathBuf,
    pub(crate) key: PathBuf,
    /// The server name it answers (lower case); `None`: the default.
    pub(crate) name: Option<String>,
}

/// The PEM text of one certificate chain and its key, as read from disk
/// (the master sends these bytes to the workers on a reload).
#[derive(Clone)]
pub(crate) struct Pem {
    pub(crate) chain: Vec<u8>,
    pub(crate) key: Vec<u8>,
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print a private key.
        write!(f, "Pem({} bytes of chain)", self.chain.len())
    }
}

/// The most a certificate or key file is read of: far more than any
/// usable one (see [`MAX_CHAIN`]).
const MAX_FILE: u64 = 1 << 20;

/// The largest chain served, in DER bytes. Clients refuse a certificate
/// message past about 100 KiB (OpenSSL's default `max_cert_list`); a
/// chain is a few KiB. A larger one is a mistake (a whole CA bundle, say),
/// refused at start-up or reload rather than served to clients that would
/// all fail the handshake while the log said all was well.
const MAX_CHAIN: usize = 100 * 1024;

/// Reads one certificate or key file: a regular file of at most
/// [`MAX_FILE`] bytes. It is opened without waiting: the master reads these
/// files on every reload, and a path that is a FIFO (or anything else whose
/// open or read waits for a writer) would stop the master there, with its
/// supervision and signals, or a single-process server altogether.
fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |e: &dyn fmt::Display| TlsError::new(format!("{}: {e}", path.display()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| failed(&e))?;
    let meta = file.metadata().map_err(|e| failed(&e))?;
    if !meta.is_file() {
        return Err(failed(&"not a regular file"));
    }
    if meta.len() > MAX_FILE {
        return Err(failed(&format_args!(
            "{} bytes, far more than any certificate chain or key",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| failed(&e))?;
    Ok(bytes)
}

/// A PEM parse error in words (`rustls`' own text prints the expected
/// marker as a list of byte values). `bytes` is the file: one rustls
/// cannot read may hold what it expects in a form it does not take, an
/// encrypted key or DER, and the operator is told how to convert it.
fn pem_error(e: &rustls::pki_types::pem::Error, expected: &str, bytes: &[u8]) -> String {
    use rustls::pki_types::pem::Error;
    if let Some(why) = unusable_form(expected, bytes) {
        return why;
    }
    match e {
        Error::MissingSectionEnd { end_marker } => format!(
            "a PEM section does not end (no \"-----END {}-----\" line): the file is cut short",
            String::from_utf8_lossy(end_marker)
        ),
        Error::IllegalSectionStart { line } => format!(
            "a malformed PEM line: \"{}\"",
            String::from_utf8_lossy(&line[..line.len().min(80)])
        ),
        Error::NoItemsFound => format!("no {expected} in the file"),
        other => other.to_string(),
    }
}

/// Why a file has no usable `expected` (`CERTIFICATE` or `PRIVATE KEY`)
/// PEM section, when its bytes tell: a passphrase-protected key (PKCS #8
/// `ENCRYPTED PRIVATE KEY`, or OpenSSL's traditional `Proc-Type:
/// 4,ENCRYPTED`), or a DER (binary) file where PEM was expected.
fn unusable_form(expected: &str, bytes: &[u8]) -> Option<String> {
    let key = expected == "PRIVATE KEY";
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    if key && (has(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") || has(b"Proc-Type: 4,ENCRYPTED")) {
        return Some(
            "the private key is encrypted (protected by a passphrase, which a server cannot \
             type in): decrypt it once with `openssl pkey -in KEY -out KEY.plain` and keep \
             that file readable only by the server"
                .into(),
        );
    }
    // DER is binary ASN.1: a SEQUENCE (0x30) with a long length (0x81 to
    // 0x84), where PEM is text starting with "-----BEGIN" or a comment.
    if bytes.len() > 2 && bytes[0] == 0x30 && (0x81..=0x84).contains(&bytes[1]) {
        let (tool, file) = if key {
            ("pkey", "KEY")
        } else {
            ("x509", "CERT")
        };
        return Some(format!(
            "no {expected} in the file: it looks like DER (binary), not PEM; convert it with \
             `openssl {tool} -inform DER -in {file} -out {file}.pem`"
        ));
    }
    None
}

impl Source {
    /// Reads both files.
    pub(crate) fn read(&self) -> Result<Pem, TlsError> {
        Ok(Pem {
            chain: read_file(&self.chain)?,
            key: read_file(&self.key)?,
        })
    }

    /// Parses what [`read`](Self::read) returned: the chain, the key, and
    /// whether they belong together.
    pub(crate) fn parse(&self, pem: &Pem) -> Result<Arc<CertifiedKey>, TlsError> {
        let what =
            |e: &dyn fmt::Display, path: &Path| TlsError::new(format!("{}: {e}", path.display()));
        let chain = CertificateDer::pem_slice_iter(&pem.chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| what(&pem_error(&e, "CERTIFICATE", &pem.chain), &self.chain))?;
        if chain.is_empty() {
            let why = unusable_form("CERTIFICATE", &pem.chain)
                .unwrap_or_else(|| "no CERTIFICATE in the file".into());
            return Err(what(&why, &self.chain));
        }
        let size: usize = chain.iter().map(|c| c.len()).sum();
        if size > MAX_CHAIN {
            return Err(what(
                &format_args!(
                    "a chain of {} certificates and {size} bytes: clients refuse certificate \
                     messages over about 100 KiB (a chain is the server's certificate and its \
                     intermediates, a few KiB)",
                    chain.len()
                ),
                &self.chain,
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(&pem.key)
            .map_err(|e| what(&pem_error(&e, "PRIVATE KEY", &pem.key), &self.key))?;
        let provider = rustls::crypto::ring::default_provider();
        let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
            TlsError::new(format!(
                "{} and {}: {e}",
                self.chain.display(),
                self.key.display()
            ))
        })?;
        Ok(Arc::new(certified))
    }
}

/// The certificates in use: a default and some by server name.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    default: Option<Arc<CertifiedKey>>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl Loaded {
    /// Parses `pems` (one per source, in order); the first error wins.
    pub(crate) fn parse(sources: &[Source], pems: &[Pem]) -> Result<Loaded, TlsError> {
        if sources.len() != pems.len() {
            return Err(TlsError::new("certificate count changed".into()));
        }
        let mut loaded = Loaded::default();
        for (source, pem) in sources.iter().zip(pems) {
            let key = source.parse(pem)?;
            match &source.name {
                None => loaded.default = Some(key),
                Some(name) => {
                    loaded.by_name.insert(name.clone(), key);
                }
            }
        }
        Ok(loaded)
    }
}

/// rustls' certificate resolver for one TLS listener, reloadable.
pub(crate) struct CertStore {
    pub(crate) sources: Vec<Source>,
    /// An unknown server name gets a handshake alert instead of the
    /// default certificate.
    reject_unknown: bool,
    current: RwLock<Arc<Loaded>>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("sources", &self.sources)
            .field("reject_unknown", &self.reject_unknown)
            .finish()
    }
}

impl CertStore {
    pub(crate) fn new(sources: Vec<Source>, loaded: Loaded, reject_unknown: bool) -> Self {
        CertStore {
            sources,
            reject_unknown,
            current: RwLock::new(Arc::new(loaded)),
        }
    }

    /// Reads and checks every file again: the new PEM texts, ready to be
    /// installed here and sent to the workers, or the first problem.
    pub(crate) fn reread(&self) -> Result<(Vec<Pem>, Loaded), TlsError> {
        let pems = self
            .sources
            .iter()
            .map(Source::read)
            .collect::<Result<Vec<_>, _>>()?;
        let loaded = Loaded::parse(&self.sources, &pems)?;
        Ok((pems, loaded))
    }

    /// New handshakes use `loaded` from now on.
    pub(crate) fn install(&self, loaded: Loaded) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
    }

    fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let loaded = self.current();
        let Some(name) = hello.server_name() else {
            // No SNI (a client that connected by address): the default.
            return loaded.default.clone();
        };
        if !loaded.by_name.is_empty() {
            let name = name.to_ascii_lowercase();
            if let Some(key) = loaded.by_name.get(&name) {
                return Some(key.clone());
            }
            // `*.example.com` answers `a.example.com` (one label only).
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(key) = loaded.by_name.get(&format!("*.{parent}")) {
                    return Some(key.clone());
                }
            }
        }
        let default = loaded.default.clone()?;
        if self.reject_unknown && !valid_for(&default, name) {
            // rustls ends the handshake with an `access_denied` alert.
            return None;
        }
        Some(default)
    }
}

/// Whether `key`'s end-entity certificate names `name` (its subject
/// alternative names, wildcards included).
fn valid_for(key: &CertifiedKey, name: &str) -> bool {
    let Ok(name) = rustls::pki_types::ServerName::try_from(name) else {
        return false;
    };
    let Ok(cert) = key.end_entity_cert() else {
        return false;
    };
    webpki::EndEntityCert::try_from(cert)
        .and_then(|cert| cert.verify_is_valid_for_subject_name(&name))
        .is_ok()
}
