//! Choosing a content coding from `Accept-Encoding` (RFC 9110 §12.5.3).

use crate::static_files::encoding::parse_qvalue;

/// A content coding tine can apply on the fly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    /// Zstandard (RFC 8878), `zstd`.
    #[cfg(feature = "zstd")]
    Zstd,
    /// Brotli (RFC 7932), `br`.
    Br,
    /// Gzip (RFC 1952), `gzip` (alias `x-gzip`).
    Gzip,
}

impl Coding {
    /// The `Content-Encoding` token.
    pub(crate) fn token(self) -> &'static str {
        match self {
            #[cfg(feature = "zstd")]
            Coding::Zstd => "zstd",
            Coding::Br => "br",
            Coding::Gzip => "gzip",
        }
    }

    /// Whether `name` (a member of `Accept-Encoding`) names this coding.
    fn is(self, name: &[u8]) -> bool {
        name.eq_ignore_ascii_case(self.token().as_bytes())
            || (self == Coding::Gzip && name.eq_ignore_ascii_case(b"x-gzip"))
    }
}

/// What a request's `Accept-Encoding` allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Negotiated {
    /// The coding to apply, if any is acceptable and preferred over none.
    pub(crate) coding: Option<Coding>,
    /// The client refused the uncompressed form (`identity;q=0`, or
    /// `*;q=0` without an entry for `identity`): compress even a body
    /// below the size threshold.
    pub(crate) identity_refused: bool,
}

/// Chooses among `enabled` (in order of preference on equal q-values) by
/// the request's `Accept-Encoding` values (read without a header map):
///
/// - no header: no coding (most clients that do not send one cannot
///   decode any);
/// - a coding not listed takes the q-value of `*` if present, else is not
///   acceptable; `q=0` is "not acceptable"; a member whose q-value is
///   malformed is ignored; a coding listed twice counts its best entry;
/// - the highest q-value wins; `identity` wins only with a q-value higher
///   than every acceptable coding (unlisted, it counts as the least
///   preferred acceptable choice).
pub(crate) fn negotiate<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
    enabled: &[Coding],
) -> Negotiated {
    // q-values in thousandths, by position in `enabled`; None: not listed.
    let mut listed = [None::<u16>; 3];
    let (mut star, mut identity) = (None::<u16>, None::<u16>);
    let mut any = false;
    for value in values {
        any = true;
        for member in value.split(|&b| b == b',') {
            let mut parts = member.split(|&b| b == b';');
            let name = parts.next().unwrap_or_default().trim_ascii();
            let mut q = Some(1000);
            for param in parts {
                let param = param.trim_ascii();
                if param.len() >= 2 && param[0].eq_ignore_ascii_case(&b'q') && param[1] == b'=' {
                    q = parse_qvalue(&param[2..]);
                }
            }
            let Some(q) = q else { continue };
            let slot = if name == b"*" {
                &mut star
            } else if name.eq_ignore_ascii_case(b"identity") {
                &mut identity
            } else if let Some(i) = enabled.iter().position(|c| c.is(name)) {
                match listed.get_mut(i) {
                    Some(slot) => slot,
                    None => continue,
                }
            } else {
                continue;
            };
            *slot = Some(slot.map_or(q, |old| old.max(q)));
        }
    }
    if !any {
        return Negotiated {
            coding: None,
            identity_refused: false,
        };
    }
    let mut best: Option<(Coding, u16)> = None;
    for (i, &coding) in enabled.iter().enumerate() {
        let q = listed.get(i).copied().flatten().or(star).unwrap_or(0);
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((coding, q));
        }
    }
    let identity_q = identity.or(star);
    let coding = match best {
        Some((coding, q)) if identity_q.is_none_or(|iq| q >= iq) => Some(coding),
        _ => None,
    };
    Negotiated {
        coding,
        identity_refused: identity_q == Some(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::ACCEPT_ENCODING;
    use http::{HeaderMap, HeaderValue};

    const ALL: &[Coding] = &[
        #[cfg(feature = "zstd")]
        Coding::Zstd,
        Coding::Gzip,
        Coding::Br,
    ];

    fn pick(enabled: &[Coding], values: &[&str]) -> (Option<&'static str>, bool) {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        let n = negotiate(
            h.get_all(ACCEPT_ENCODING).iter().map(|v| v.as_bytes()),
            enabled,
        );
        (n.coding.map(Coding::token), n.identity_refused)
    }

    const BR_GZ: &[Coding] = &[Coding::Br, Coding::Gzip];

    #[test]
    fn browsers_and_preference_on_ties() {
        assert_eq!(
            pick(BR_GZ, &["gzip, deflate, br, zstd"]),
            (Some("br"), false)
        );
        assert_eq!(pick(BR_GZ, &["gzip, deflate"]), (Some("gzip"), false));
        assert_eq!(pick(&[Coding::Gzip], &["br, gzip"]), (Some("gzip"), false));
        #[cfg(feature = "zstd")]
        assert_eq!(
            pick(ALL, &["gzip, deflate, br, zstd"]),
            (Some("zstd"), false)
        );
        assert_eq!(pick(ALL, &["deflate, compress"]), (None, false));
    }

    #[test]
    fn no_header_or_identity_only_means_none() {
        assert_eq!(pick(ALL, &[]), (None, false));
        assert_eq!(pick(ALL, &[""]), (None, false));
        assert_eq!(pick(ALL, &["identity"]), (None, false));
    }

    #[test]
    fn q_values_order_and_exclude() {
        assert_eq!(
            pick(BR_GZ, &["br;q=0.5, gzip;q=0.9"]),
            (Some("gzip"), false)
        );
        assert_eq!(pick(BR_GZ, &["br;q=0, gzip"]), (Some("gzip"), false));
        assert_eq!(pick(BR_GZ, &["br;q=0, gzip;q=0"]), (None, false));
        assert_eq!(pick(BR_GZ, &["gzip;q=0.001"]), (Some("gzip"), false));
        assert_eq!(
            pick(BR_GZ, &["GZIP;Q=0.5, Br;q=0.4"]),
            (Some("gzip"), false)
        );
        // Malformed q-values: the member is ignored.
        assert_eq!(pick(BR_GZ, &["br;q=2, gzip;q=0.5"]), (Some("gzip"), false));
        assert_eq!(pick(BR_GZ, &["br;q=abc"]), (None, false));
        // Best entry of a repeated coding; several header fields.
        assert_eq!(
            pick(BR_GZ, &["br;q=0, br;q=0.3", "gzip;q=0.2"]),
            (Some("br"), false)
        );
        assert_eq!(pick(BR_GZ, &["x-gzip"]), (Some("gzip"), false));
        assert_eq!(pick(BR_GZ, &["brotli, gzipx"]), (None, false));
    }

    #[test]
    fn star_covers_unlisted_codings() {
        assert_eq!(pick(BR_GZ, &["*"]), (Some("br"), false));
        assert_eq!(pick(BR_GZ, &["br;q=0, *"]), (Some("gzip"), false));
        assert_eq!(pick(BR_GZ, &["*;q=0"]), (None, true));
        assert_eq!(pick(BR_GZ, &["*;q=0, gzip"]), (Some("gzip"), true));
        assert_eq!(pick(BR_GZ, &["*;q=0, identity"]), (None, false));
        assert_eq!(pick(BR_GZ, &["*;q=0.5, gzip;q=0.8"]), (Some("gzip"), false));
    }

    #[test]
    fn identity_with_q_values() {
        // Refused: compress whatever the size.
        assert_eq!(pick(BR_GZ, &["gzip, identity;q=0"]), (Some("gzip"), true));
        assert_eq!(pick(BR_GZ, &["identity;q=0"]), (None, true));
        // Preferred over every coding: send it as it is.
        assert_eq!(pick(BR_GZ, &["gzip;q=0.5, identity"]), (None, false));
        assert_eq!(
            pick(BR_GZ, &["gzip;q=0.5, identity;q=0.5"]),
            (Some("gzip"), false)
        );
        // Not listed: the least preferred acceptable choice.
        assert_eq!(pick(BR_GZ, &["gzip;q=0.1"]), (Some("gzip"), false));
    }
}
