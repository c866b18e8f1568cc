//! `POST /upload`: a `multipart/form-data` form, answered with what was
//! received: each text field, and each file's field name, file name, size
//! and SHA-256. Its body limit is `--max-upload BYTES` (a route group of
//! its own), so it can take far more than the other routes; large bodies
//! and files go to temporary files, never whole into memory.

use std::io::Read;

use sha2::{Digest, Sha256};
use tine::{Group, Request, Response};

#[derive(serde::Serialize)]
struct Field<'a> {
    name: &'a str,
    value: &'a str,
}

#[derive(serde::Serialize)]
struct File<'a> {
    field: &'a str,
    filename: &'a str,
    size: u64,
    sha256: String,
}

#[derive(serde::Serialize)]
struct Received<'a> {
    fields: Vec<Field<'a>>,
    files: Vec<File<'a>>,
}

/// The route, in a group carrying its own body limit when one is given.
pub(crate) fn routes(max_upload: Option<usize>) -> Group {
    let group = Group::new().post("/upload", upload);
    match max_upload {
        Some(bytes) => group.max_body(bytes),
        None => group,
    }
}

fn upload(req: &Request) -> Result<Response, tine::Error> {
    let form = req.multipart()?;
    let fields = form
        .fields()
        .map(|(name, value)| Field { name, value })
        .collect();
    let mut files = Vec::new();
    for part in form.files() {
        files.push(File {
            field: part.name(),
            filename: part.file_name().unwrap_or(""),
            size: part.len(),
            sha256: sha256_hex(part.reader()).map_err(|e| {
                tine::Error::new(tine::StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            })?,
        });
    }
    Ok(Response::json(&Received { fields, files }))
}

fn sha256_hex(mut reader: impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
