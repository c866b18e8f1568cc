//! `multipart/form-data` bodies: a body built from parts parses back into
//! those parts, and arbitrary bytes are refused or parsed, never a panic
//! or a hang.
//!
//! The first input byte picks the mode. Odd: the rest of the input is a
//! body under `boundary=XX`, parsed with whatever outcome. Even: the rest
//! is read (by `arbitrary`) as a boundary (1 to 70 of RFC 2046's
//! `bchars`, quoted in the header when it is not a token) and up to six
//! parts (a name; a file name or not; a `Content-Type` or not; text for a
//! field, bytes for a file), written as RFC 7578 says (quoted-string
//! parameters with `\` escapes), and the limit under which a file is
//! kept in memory (files over it go to a temporary file). The body must
//! parse into the same parts, in order, with the same content. Inputs
//! whose content holds `--` and the boundary are skipped: a sender must
//! choose a boundary that is not in the content (RFC 2046 §5.1.1).
#![no_main]

use std::io::Read;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use tine::{Method, MultipartLimits, Request};

const BCHARS: &[u8] =
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ";
const TOKEN_SPECIALS: &[u8] = b"()<>@,;:\\\"/[]?= ";
const CONTENT_TYPES: &[&str] = &[
    "text/plain",
    "application/octet-stream",
    "image/png",
    "text/plain; charset=utf-8",
    "application/x-custom+json",
];

#[derive(Debug)]
struct Built {
    name: String,
    file_name: Option<String>,
    content_type: Option<&'static str>,
    data: Vec<u8>,
}

/// A parameter value as a sender writes it: printable characters, tab and
/// UTF-8 kept, `"` and `\` escaped, other control characters left out.
fn quoted(s: &str) -> (String, String) {
    let kept: String = s
        .chars()
        .filter(|&c| c == '\t' || !(c.is_ascii_control()))
        .collect();
    let mut out = String::from("\"");
    for c in kept.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    (kept, out)
}

fn boundary(u: &mut Unstructured<'_>) -> Result<String> {
    let len = u.int_in_range(1..=70)?;
    let mut b = String::new();
    for i in 0..len {
        let mut c = *u.choose(BCHARS)?;
        // The last character may not be a space.
        if i + 1 == len && c == b' ' {
            c = b'x';
        }
        b.push(char::from(c));
    }
    Ok(b)
}

fn round_trip(u: &mut Unstructured<'_>) -> Result<()> {
    let boundary = boundary(u)?;
    let memory: usize = u.int_in_range(0..=64)?;
    let count = u.int_in_range(0..=6)?;
    let mut parts = Vec::new();
    for _ in 0..count {
        let name: String = u.arbitrary()?;
        let file_name: Option<String> = u.arbitrary()?;
        let content_type = if u.arbitrary()? {
            Some(*u.choose(CONTENT_TYPES)?)
        } else {
            None
        };
        let data = if file_name.is_some() {
            u.arbitrary::<Vec<u8>>()?
        } else {
            u.arbitrary::<String>()?.into_bytes()
        };
        parts.push(Built {
            name,
            file_name,
            content_type,
            data,
        });
    }

    let dash_boundary = format!("--{boundary}");
    let mut body = Vec::new();
    let mut expected = Vec::new();
    for part in &parts {
        let (name, name_param) = quoted(&part.name);
        let file = part.file_name.as_deref().map(quoted);
        let mut head =
            format!("{dash_boundary}\r\nContent-Disposition: form-data; name={name_param}");
        if let Some((_, param)) = &file {
            head.push_str("; filename=");
            head.push_str(param);
        }
        head.push_str("\r\n");
        if let Some(ct) = part.content_type {
            head.push_str("Content-Type: ");
            head.push_str(ct);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        if contains(&part.data, dash_boundary.as_bytes()) || head[2..].contains(&dash_boundary) {
            return Ok(());
        }
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(&part.data);
        body.extend_from_slice(b"\r\n");
        expected.push(Built {
            name,
            file_name: file.map(|(kept, _)| kept),
            content_type: part.content_type,
            data: part.data.clone(),
        });
    }
    body.extend_from_slice(format!("{dash_boundary}--\r\n").as_bytes());

    let param = if boundary.bytes().any(|b| TOKEN_SPECIALS.contains(&b)) {
        format!("\"{boundary}\"")
    } else {
        boundary.clone()
    };
    let req = Request::builder(Method::POST, "/upload")
        .header(
            "content-type",
            &format!("multipart/form-data; boundary={param}"),
        )
        .body(body.clone())
        .finish();
    let limits = MultipartLimits::default().file_memory(memory);
    let form = match req.multipart_with(&limits) {
        Ok(form) => form,
        Err(e) => panic!(
            "{e:?} for {:?} (boundary {boundary:?})",
            String::from_utf8_lossy(&body)
        ),
    };
    let got = form.parts();
    assert_eq!(
        got.len(),
        expected.len(),
        "{:?}",
        String::from_utf8_lossy(&body)
    );
    for (got, want) in got.iter().zip(&expected) {
        assert_eq!(got.name(), want.name);
        assert_eq!(got.file_name(), want.file_name.as_deref());
        assert_eq!(got.content_type(), want.content_type);
        let mut content = Vec::new();
        got.reader().read_to_end(&mut content).expect("read part");
        assert_eq!(content, want.data, "part {:?}", want.name);
        assert_eq!(got.len(), want.data.len() as u64);
        match &want.file_name {
            None => assert_eq!(got.text().map(str::as_bytes), Some(&want.data[..])),
            Some(_) => {
                assert!(got.text().is_none());
                assert_eq!(got.is_spilled(), want.data.len() > memory);
            }
        }
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 1 {
        let req = Request::builder(Method::POST, "/upload")
            .header("content-type", "multipart/form-data; boundary=XX")
            .body(rest.to_vec())
            .finish();
        if let Ok(form) = req.multipart_with(&MultipartLimits::default().file_memory(16)) {
            for part in form.parts() {
                let mut content = Vec::new();
                part.reader().read_to_end(&mut content).expect("read part");
                assert_eq!(content.len() as u64, part.len());
            }
        }
        return;
    }
    let _ = round_trip(&mut Unstructured::new(rest));
});
