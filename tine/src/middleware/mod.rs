//! Built-in middleware: CORS and response compression. (Request logging
//! is [`App::log_requests`](crate::App::log_requests).)

mod compression;
mod cors;

pub(crate) use compression::compressible_type;
pub use compression::Compression;
pub use cors::Cors;

use http::header::{self, HeaderMap, HeaderValue};

/// Adds `names` to the answer's `Vary`, after the names already there (a
/// handler's `Vary: Accept-Encoding` must stay: a cache keys on every name
/// listed), each once, in one field line; `Vary: *` is left alone.
pub(crate) fn add_vary(headers: &mut HeaderMap, names: &[&'static str]) {
    // The common case, no `Vary` yet and one name: no allocation.
    if let [name] = names {
        if !headers.contains_key(header::VARY) {
            headers.insert(header::VARY, HeaderValue::from_static(name));
            return;
        }
    }
    let values = headers.get_all(header::VARY);
    let text: Vec<&str> = values.iter().filter_map(|v| v.to_str().ok()).collect();
    let all_text = text.len() == values.iter().count();
    let listed: Vec<&str> = text
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .collect();
    if listed.contains(&"*") {
        return;
    }
    let missing = names
        .iter()
        .filter(|name| !listed.iter().any(|l| l.eq_ignore_ascii_case(name)));
    let mut line: Vec<&str> = if all_text { listed.clone() } else { Vec::new() };
    let before = line.len();
    line.extend(missing);
    if line.len() == before {
        return;
    }
    let Ok(value) = HeaderValue::from_str(&line.join(", ")) else {
        return;
    };
    if all_text {
        headers.insert(header::VARY, value);
    } else {
        // A value that is not text is kept as it is; ours go on a line of
        // their own.
        headers.append(header::VARY, value);
    }
}
