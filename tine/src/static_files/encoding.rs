//! `Accept-Encoding` negotiation (RFC 9110 §12.5.3) for precompressed
//! siblings (`file.br`, `file.gz`).

use http::header::ACCEPT_ENCODING;
use http::HeaderMap;

use super::range::trim_ows;

/// A content coding we can serve from a precompressed sibling file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Coding {
    /// Brotli, sibling `<file>.br`.
    Br,
    /// Gzip, sibling `<file>.gz`.
    Gzip,
}

impl Coding {
    /// File-name suffix of the sibling.
    pub(super) fn suffix(self) -> &'static [u8] {
        match self {
            Coding::Br => b".br",
            Coding::Gzip => b".gz",
        }
    }

    /// `Content-Encoding` token.
    pub(super) fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Gzip => "gzip",
        }
    }
}

/// Codings the client accepts with q > 0, best first: higher q-value wins,
/// ties go to Brotli. Codings not listed take the q-value of `*` if present,
/// else are not acceptable. `x-gzip` is an alias of `gzip`. Members with a
/// malformed q-value are ignored. Several header fields are combined.
pub(super) fn preferred(headers: &HeaderMap) -> impl Iterator<Item = Coding> {
    // q-values in thousandths; None = not mentioned.
    let (mut br, mut gzip, mut star) = (None::<u16>, None::<u16>, None::<u16>);
    for value in headers.get_all(ACCEPT_ENCODING) {
        for member in value.as_bytes().split(|&b| b == b',') {
            let mut parts = member.split(|&b| b == b';');
            let name = trim_ows(parts.next().unwrap_or_default());
            let mut q = Some(1000);
            for param in parts {
                let param = trim_ows(param);
                if param.len() >= 2 && param[0].eq_ignore_ascii_case(&b'q') && param[1] == b'=' {
                    q = parse_qvalue(&param[2..]);
                }
            }
            let Some(q) = q else { continue };
            let slot = if name.eq_ignore_ascii_case(b"br") {
                &mut br
            } else if name.eq_ignore_ascii_case(b"gzip") || name.eq_ignore_ascii_case(b"x-gzip") {
                &mut gzip
            } else if name == b"*" {
                &mut star
            } else {
                continue;
            };
            // If a coding is repeated, its most favourable entry counts.
            *slot = Some(slot.map_or(q, |old| old.max(q)));
        }
    }
    let q_br = br.or(star).unwrap_or(0);
    let q_gz = gzip.or(star).unwrap_or(0);
    let order = if q_gz > q_br {
        [(Coding::Gzip, q_gz), (Coding::Br, q_br)]
    } else {
        [(Coding::Br, q_br), (Coding::Gzip, q_gz)]
    };
    order.into_iter().filter(|&(_, q)| q > 0).map(|(c, _)| c)
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in
/// thousandths.
pub(crate) fn parse_qvalue(s: &[u8]) -> Option<u16> {
    let (int, frac) = match s.iter().position(|&b| b == b'.') {
        Some(dot) => (&s[..dot], &s[dot + 1..]),
        None => (s, &[][..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::Coding::{Br, Gzip};
    use super::*;
    use http::HeaderValue;

    fn pref(values: &[&str]) -> Vec<Coding> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        preferred(&h).collect()
    }

    #[test]
    fn qvalues() {
        assert_eq!(parse_qvalue(b"1"), Some(1000));
        assert_eq!(parse_qvalue(b"1."), Some(1000));
        assert_eq!(parse_qvalue(b"1.000"), Some(1000));
        assert_eq!(parse_qvalue(b"0"), Some(0));
        assert_eq!(parse_qvalue(b"0.0"), Some(0));
        assert_eq!(parse_qvalue(b"0.5"), Some(500));
        assert_eq!(parse_qvalue(b"0.05"), Some(50));
        assert_eq!(parse_qvalue(b"0.001"), Some(1));
        for bad in [
            &b""[..],
            b"1.001",
            b"2",
            b"0.0001",
            b"-1",
            b"0.a",
            b".5",
            b"01",
            b"1.5",
        ] {
            assert_eq!(
                parse_qvalue(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn typical_browsers() {
        assert_eq!(pref(&["gzip, deflate, br, zstd"]), [Br, Gzip]);
        assert_eq!(pref(&["gzip, deflate"]), [Gzip]);
        assert_eq!(pref(&["br"]), [Br]);
        assert_eq!(pref(&[]), []);
        assert_eq!(pref(&["identity"]), []);
        assert_eq!(pref(&[""]), []);
    }

    #[test]
    fn q_zero_excludes() {
        assert_eq!(pref(&["br;q=0, gzip"]), [Gzip]);
        assert_eq!(pref(&["br;q=0.000, gzip;q=0"]), []);
        assert_eq!(pref(&["gzip;q=0, br; q=0.1"]), [Br]);
    }

    #[test]
    fn q_order_respected() {
        assert_eq!(pref(&["br;q=0.5, gzip;q=0.9"]), [Gzip, Br]);
        assert_eq!(pref(&["gzip;q=0.9, br;q=0.9"]), [Br, Gzip]);
        assert_eq!(pref(&["gzip, br;q=0.999"]), [Gzip, Br]);
    }

    #[test]
    fn star() {
        assert_eq!(pref(&["*"]), [Br, Gzip]);
        assert_eq!(pref(&["*;q=0"]), []);
        assert_eq!(pref(&["*;q=0, gzip"]), [Gzip]);
        assert_eq!(pref(&["br;q=0, *"]), [Gzip]);
        assert_eq!(pref(&["*;q=0.5, gzip;q=0.8"]), [Gzip, Br]);
    }

    #[test]
    fn syntax_variants() {
        assert_eq!(pref(&["GZIP, BR"]), [Br, Gzip]);
        assert_eq!(pref(&["x-gzip"]), [Gzip]);
        assert_eq!(pref(&["gzip;Q=0"]), []);
        assert_eq!(pref(&[" br ; q=1 ,, gzip ;q=0.2 "]), [Br, Gzip]);
        assert_eq!(pref(&["gzip", "br"]), [Br, Gzip]);
        // Malformed q-value: member ignored.
        assert_eq!(pref(&["br;q=2, gzip"]), [Gzip]);
        assert_eq!(pref(&["br;q=abc"]), []);
        // Prefix of a token is not the token.
        assert_eq!(pref(&["brotli, gzipx"]), []);
        // Repeated coding: most favourable entry counts.
        assert_eq!(pref(&["br;q=0, br;q=0.5"]), [Br]);
    }
}
