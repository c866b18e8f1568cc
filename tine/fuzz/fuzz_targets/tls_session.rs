//! Drives tine's TLS transport (rustls' unbuffered API on tine's buffers)
//! over a loopback TCP connection.
//!
//! The first input byte picks the mode and the piece size: bit 7 set, raw
//! mode: the rest is sent as is, as a client would write it (ClientHello,
//! records, junk), in pieces of `1 + byte % 64` bytes; the server must
//! fail cleanly or serve, never panic or hang. Bit 7 clear, echo mode: a
//! real rustls client completes the handshake and sends the rest as
//! application data in writes of `1 + (byte % 64) * 257` bytes; the server
//! echoes it, and both directions must arrive whole and in order (record
//! boundaries, partial records, plaintext larger than one read).
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;

struct Configs {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

fn configs() -> &'static Configs {
    static CONFIGS: OnceLock<Configs> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let dir = std::env::temp_dir().join(format!("tine-fuzz-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, signing_key.serialize_pem()).unwrap();
        let server = tine::__fuzz::tls::server_config(&c, &k);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        Configs {
            server,
            client: Arc::new(client),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let c = configs();
    if first & 0x80 != 0 {
        tine::__fuzz::tls::raw(&c.server, rest, 1 + (first as usize % 64));
    } else {
        tine::__fuzz::tls::echo(&c.server, &c.client, rest, 1 + (first as usize % 64) * 257);
    }
});
