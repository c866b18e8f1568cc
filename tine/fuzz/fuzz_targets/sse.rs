//! Server-sent events: what tine writes on an SSE stream is read back by a
//! browser as exactly the events meant, whatever the texts hold (no
//! injected field or event).
//!
//! The input is read (by `arbitrary`) as up to three events (data, and
//! optionally an id, a type and a retry delay), then a text published with
//! `publish`, then a text published by some other program (on Redis, say),
//! and all are parsed back by the event-stream parser of the WHATWG HTML
//! standard (§9.2.6), written out below. Checked:
//!
//! - the events, written one after the other, give the same events back:
//!   the data with its line breaks as `\n`, the type (`message` when none
//!   or empty), the id without line breaks or NUL, the retry delay;
//! - each event published with `publish_event` reaches an SSE stream as
//!   those same bytes, and a WebSocket subscriber as its data;
//! - a text published with `publish` reaches an SSE stream as one event
//!   with that text as its data, with no id, type or retry, and a
//!   WebSocket subscriber as the text itself;
//! - any other published text makes at most one event and leaves the
//!   stream at an event boundary (the next event is read unchanged).
#![no_main]

use std::time::Duration;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use tine::SseEvent;

/// One event as the browser dispatches it.
#[derive(Debug, PartialEq, Eq)]
struct Received {
    kind: String,
    data: String,
    last_event_id: String,
    /// The last `retry` field read before it.
    retry: Option<u64>,
}

/// The WHATWG event-stream interpretation of `stream`, which must be
/// UTF-8. A last event without its blank line is not dispatched.
fn parse(stream: &[u8]) -> Vec<Received> {
    let text = std::str::from_utf8(stream).expect("an SSE stream is UTF-8");
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (mut data, mut kind, mut last_id, mut retry) =
        (String::new(), String::new(), String::new(), None);
    let mut events = Vec::new();
    let mut rest = text;
    // A line ends at CRLF, LF or CR; what follows the last end is not a line.
    while let Some(i) = rest.find(['\r', '\n']) {
        let line = &rest[..i];
        let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
        rest = &rest[i + skip..];
        if line.is_empty() {
            if data.is_empty() {
                kind.clear();
                continue;
            }
            data.pop();
            events.push(Received {
                kind: if kind.is_empty() {
                    "message".into()
                } else {
                    std::mem::take(&mut kind)
                },
                data: std::mem::take(&mut data),
                last_event_id: last_id.clone(),
                retry,
            });
            kind.clear();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => kind = value.to_owned(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "id" if !value.contains('\0') => last_id = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                retry = value.parse().ok();
            }
            _ => {}
        }
    }
    events
}

/// `s` with each CRLF, CR and LF as LF.
fn lines_as_lf(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\r', "\n")
}

struct Planned {
    event: SseEvent,
    data: String,
    id: Option<String>,
    kind: Option<String>,
    retry: Option<u64>,
}

fn planned(u: &mut Unstructured<'_>) -> Result<Planned> {
    let data: String = u.arbitrary()?;
    let id: Option<String> = u.arbitrary()?;
    let kind: Option<String> = u.arbitrary()?;
    let retry: Option<u64> = u.arbitrary()?;
    let mut event = SseEvent::new(data.clone());
    if let Some(id) = &id {
        event = event.id(id.clone());
    }
    if let Some(kind) = &kind {
        event = event.event(kind.clone());
    }
    if let Some(ms) = retry {
        event = event.retry(Duration::from_millis(ms));
    }
    Ok(Planned {
        event,
        data,
        id,
        kind,
        retry,
    })
}

fn check(u: &mut Unstructured<'_>) -> Result<()> {
    let count = u.int_in_range(1..=3)?;
    let mut events = Vec::new();
    for _ in 0..count {
        events.push(planned(u)?);
    }
    let plain: String = u.arbitrary()?;
    let foreign: String = u.arbitrary()?;

    // The events on one stream.
    let mut stream = Vec::new();
    let (mut last_id, mut retry) = (String::new(), None);
    let mut expected = Vec::new();
    for p in &events {
        let wire = p.event.to_string();
        stream.extend_from_slice(wire.as_bytes());
        if let Some(id) = &p.id {
            last_id = id.replace(['\r', '\n', '\0'], "");
        }
        retry = p.retry.or(retry);
        let kind = p.kind.as_deref().map(|k| k.replace(['\r', '\n', '\0'], ""));
        expected.push(Received {
            kind: kind
                .filter(|k| !k.is_empty())
                .unwrap_or_else(|| "message".into()),
            data: lines_as_lf(&p.data),
            last_event_id: last_id.clone(),
            retry,
        });

        // Published with `publish_event`.
        let published = tine::__fuzz::sse_event_text(&p.event);
        assert_eq!(tine::__fuzz::sse_stream_bytes(&published), wire.as_bytes());
        assert_eq!(
            tine::__fuzz::sse_websocket_text(&published),
            lines_as_lf(&p.data)
        );
    }
    assert_eq!(
        parse(&stream),
        expected,
        "stream {:?}",
        String::from_utf8_lossy(&stream)
    );

    // Published with `publish`.
    let published = tine::__fuzz::sse_plain(&plain);
    let wire = tine::__fuzz::sse_stream_bytes(&published);
    let got = parse(&wire);
    let want = vec![Received {
        kind: "message".into(),
        data: lines_as_lf(&plain),
        last_event_id: String::new(),
        retry: None,
    }];
    assert_eq!(
        got,
        want,
        "publish({plain:?}) wrote {:?}",
        String::from_utf8_lossy(&wire)
    );
    assert_eq!(tine::__fuzz::sse_websocket_text(&published), plain);

    // Published by another program: at most one event, and the next one
    // is read as it was written.
    let mut wire = tine::__fuzz::sse_stream_bytes(&foreign);
    let got = parse(&wire);
    assert!(
        got.len() <= 1,
        "{foreign:?} wrote {:?}: {got:?}",
        String::from_utf8_lossy(&wire)
    );
    wire.extend_from_slice(b"data: next\n\n");
    let got = parse(&wire);
    let next = got.last().expect("the next event");
    assert_eq!(
        (next.kind.as_str(), next.data.as_str()),
        ("message", "next"),
        "after {foreign:?}"
    );
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = check(&mut Unstructured::new(data));
});
