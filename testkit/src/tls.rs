//! TLS test helpers (feature `tls`): certificates made at test time (no
//! private key lives in the repository), and a blocking rustls client that
//! speaks HTTP/1.1 through [`read_response`](crate::read_response).

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use rustls;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::{Resp, TIMEOUT};

/// A self-signed certificate and its key, written as PEM files.
#[derive(Debug, Clone)]
pub struct TestCert {
    /// The PEM certificate file.
    pub cert: PathBuf,
    /// The PEM private key file.
    pub key: PathBuf,
    /// The certificate (a client's trust anchor).
    pub der: CertificateDer<'static>,
}

/// Makes a self-signed certificate for `names` (DNS names, or IP
/// addresses) and writes `DIR/STEM.pem` and `DIR/STEM-key.pem`
/// (replacing files already there: a renewal).
pub fn make_cert(dir: &Path, stem: &str, names: &[&str]) -> TestCert {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(names).expect("make a certificate");
    let cert_path = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}-key.pem"));
    // Written beside and renamed into place, like a deploy hook should, so
    // a reader never sees half a file.
    for (path, text) in [
        (&cert_path, cert.pem()),
        (&key_path, signing_key.serialize_pem()),
    ] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write PEM");
        std::fs::rename(&tmp, path).expect("rename PEM");
    }
    TestCert {
        cert: cert_path,
        key: key_path,
        der: cert.der().clone(),
    }
}

/// A client configuration trusting `roots` (TLS 1.2 and 1.3, ALPN
/// `http/1.1`, session resumption on).
pub fn client_config(roots: &[&CertificateDer<'static>]) -> Arc<ClientConfig> {
    client_config_versions(roots, rustls::ALL_VERSIONS)
}

/// Like [`client_config`], with only the given protocol versions.
pub fn client_config_versions(
    roots: &[&CertificateDer<'static>],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add((*r).clone()).expect("trust anchor");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// An HTTPS connection (blocking, [`TIMEOUT`] on reads and writes).
#[derive(Debug)]
pub struct TlsClient {
    /// The TLS stream.
    pub stream: StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl TlsClient {
    /// Connects to `addr` asking for `name` (SNI; an IP address sends
    /// none) and completes the handshake.
    pub fn connect(addr: SocketAddr, name: &str, config: &Arc<ClientConfig>) -> TlsClient {
        Self::try_connect(addr, name, config).expect("TLS handshake")
    }

    /// [`connect`](Self::connect), or the handshake's error.
    pub fn try_connect(
        addr: SocketAddr,
        name: &str,
        config: &Arc<ClientConfig>,
    ) -> io::Result<TlsClient> {
        let tcp = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        tcp.set_read_timeout(Some(TIMEOUT))?;
        tcp.set_write_timeout(Some(TIMEOUT))?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(name.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let conn = ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(TlsClient {
            stream,
            buf: Vec::new(),
        })
    }

    /// Sends raw bytes (encrypted).
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
        self.stream.flush().expect("flush");
    }

    /// Sends a GET with `Host` and returns the response.
    pub fn get(&mut self, path: &str) -> Resp {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        self.read_response()
    }

    /// A GET, or the I/O error on the way.
    pub fn try_get(&mut self, path: &str) -> io::Result<Resp> {
        self.stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())?;
        self.stream.flush()?;
        self.try_read_response()
    }

    /// Reads one response.
    pub fn read_response(&mut self) -> Resp {
        self.try_read_response().expect("read response")
    }

    /// Reads one response, or the I/O error.
    pub fn try_read_response(&mut self) -> io::Result<Resp> {
        crate::read_response(&mut self.stream, &mut self.buf, false)
    }

    /// Whether this connection resumed an earlier session.
    pub fn resumed(&self) -> bool {
        matches!(
            self.stream.conn.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        )
    }

    /// The server's certificate.
    pub fn peer_cert(&self) -> Option<CertificateDer<'static>> {
        self.stream
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.clone().into_owned())
    }
}

/// One GET over a fresh HTTPS connection.
pub fn get(addr: SocketAddr, name: &str, config: &Arc<ClientConfig>, path: &str) -> Resp {
    TlsClient::connect(addr, name, config).get(path)
}
