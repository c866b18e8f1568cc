//! A static file's negotiation headers: `Accept-Encoding` and the
//! conditional-request headers, with any values.
//!
//! The input is read (by `arbitrary`) as up to three `Accept-Encoding`
//! fields and up to four conditional fields (`If-Match`, `If-None-Match`,
//! `If-Modified-Since`, `If-Unmodified-Since`, `If-Range`) with any value
//! a header may hold, and a file's modification time. Checked:
//!
//! - the codings tried are the reference's below (RFC 9110 §12.5.3: a
//!   coding's q-value, else `*`'s; q = 0 refuses; ties go to Brotli;
//!   `x-gzip` is gzip; a member with a bad q-value is ignored; a repeated
//!   coding's best entry counts), each once;
//! - the preconditions (RFC 9110 §13.2.2) answer 412 only with `If-Match`
//!   or `If-Unmodified-Since`, 304 only with `If-None-Match` or
//!   `If-Modified-Since`, and refuse a range only with `If-Range`; the
//!   file's own tag in `If-Match` never fails, in `If-None-Match` (without
//!   a failing `If-Match`) always answers 304, and `If-Range` with the
//!   file's own tag allows the range.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use tine::header::{self, HeaderName};
use tine::{HeaderMap, HeaderValue};

const ETAG: &str = "\"5f-1a2b\"";
const CONDITIONAL: [HeaderName; 5] = [
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
];
const PIECES: &[&str] = &[
    "br",
    "gzip",
    "x-gzip",
    "*",
    "identity",
    "BR",
    "GZip",
    ";q=",
    ";q=0",
    ";q=1",
    ";q=0.5",
    ";q=1.000",
    ";q=0.001",
    ";q=1.5",
    " ; q=0.8",
    ",",
    ", ",
    ETAG,
    "W/",
    "\"other\"",
    "Sun, 06 Nov 1994 08:49:37 GMT",
    "\t",
];

fn qvalue(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths: u16 = format!("{frac:0<3}").parse().ok()?;
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn reference(values: &[String]) -> Vec<&'static str> {
    let ows = |s: &str| s.trim_matches([' ', '\t']).to_owned();
    let (mut br, mut gzip, mut star): (Option<u16>, Option<u16>, Option<u16>) = (None, None, None);
    for value in values {
        for member in value.split(',') {
            let mut params = member.split(';');
            let name = ows(params.next().unwrap_or("")).to_ascii_lowercase();
            let mut q = Some(1000);
            for p in params {
                let p = ows(p);
                if let Some(v) = p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")) {
                    q = qvalue(v);
                }
            }
            let Some(q) = q else { continue };
            let slot = match name.as_str() {
                "br" => &mut br,
                "gzip" | "x-gzip" => &mut gzip,
                "*" => &mut star,
                _ => continue,
            };
            *slot = Some(slot.map_or(q, |o: u16| o.max(q)));
        }
    }
    let (qb, qg) = (br.or(star).unwrap_or(0), gzip.or(star).unwrap_or(0));
    let mut out = if qg > qb {
        vec![("gzip", qg), ("br", qb)]
    } else {
        vec![("br", qb), ("gzip", qg)]
    };
    out.retain(|&(_, q)| q > 0);
    out.into_iter().map(|(c, _)| c).collect()
}

fn text(u: &mut Unstructured<'_>) -> Result<String> {
    let mut s = String::new();
    for _ in 0..u.int_in_range(0..=6)? {
        if u.ratio(1, 6)? {
            let own: String = u.arbitrary()?;
            s.push_str(&own);
        } else {
            s.push_str(u.choose(PIECES)?);
        }
    }
    Ok(s)
}

fn check(u: &mut Unstructured<'_>) -> Result<()> {
    let mut headers = HeaderMap::new();
    let mut accepted = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let v = text(u)?;
        if let Ok(value) = HeaderValue::from_str(&v) {
            // What the reference reads is what the header holds.
            accepted.push(String::from_utf8_lossy(value.as_bytes()).into_owned());
            headers.append(header::ACCEPT_ENCODING, value);
        }
    }
    let got = tine::__fuzz::accept_encoding(&headers);
    assert_eq!(got, reference(&accepted), "Accept-Encoding: {accepted:?}");

    let mut conditional = HeaderMap::new();
    for _ in 0..u.int_in_range(0..=4)? {
        let name = u.choose(&CONDITIONAL)?.clone();
        let v = text(u)?;
        if let Ok(value) = HeaderValue::from_str(&v) {
            conditional.append(name, value);
        }
    }
    let last_modified: Option<u64> = u.arbitrary::<Option<u32>>()?.map(u64::from);
    let (status, range_ok) =
        tine::__fuzz::preconditions(&conditional, ETAG.as_bytes(), last_modified);
    let has = |n: &HeaderName| conditional.contains_key(n);
    if status == "412" {
        assert!(
            has(&header::IF_MATCH) || has(&header::IF_UNMODIFIED_SINCE),
            "{conditional:?}"
        );
    }
    if status == "304" {
        assert!(
            has(&header::IF_NONE_MATCH) || has(&header::IF_MODIFIED_SINCE),
            "{conditional:?}"
        );
    }
    if !range_ok {
        assert!(has(&header::IF_RANGE), "{conditional:?}");
    }
    let only = |name: &HeaderName, value: &str| {
        let mut h = HeaderMap::new();
        h.insert(name.clone(), HeaderValue::from_str(value).unwrap());
        tine::__fuzz::preconditions(&h, ETAG.as_bytes(), last_modified)
    };
    assert_eq!(only(&header::IF_MATCH, ETAG).0, "proceed");
    assert_eq!(only(&header::IF_NONE_MATCH, ETAG).0, "304");
    assert!(only(&header::IF_RANGE, ETAG).1);
    // The file's tag added to a list that is otherwise whatever the input
    // made: a member before it that is malformed may hide it, so only
    // appended as its own field.
    let mut with_tag = conditional.clone();
    with_tag.remove(header::IF_MATCH);
    with_tag.append(header::IF_MATCH, HeaderValue::from_static(ETAG));
    let status = tine::__fuzz::preconditions(&with_tag, ETAG.as_bytes(), last_modified).0;
    assert_ne!(status, "412", "{with_tag:?}");
    let mut with_tag = conditional.clone();
    with_tag.remove(header::IF_MATCH);
    with_tag.remove(header::IF_UNMODIFIED_SINCE);
    with_tag.append(header::IF_NONE_MATCH, HeaderValue::from_static(ETAG));
    let status = tine::__fuzz::preconditions(&with_tag, ETAG.as_bytes(), last_modified).0;
    assert_eq!(status, "304", "{with_tag:?}");
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = check(&mut Unstructured::new(data));
});
