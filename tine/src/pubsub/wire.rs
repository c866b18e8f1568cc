//! The byte form of a published message, for the master relay and Redis:
//! `[kind: 0 text | 1 binary][topic length: u16 LE][topic][payload]`.

use bytes::Bytes;

use super::{Payload, Published};

/// Bytes [`encode`] adds around the topic and payload.
pub(crate) const OVERHEAD: usize = 3;

/// Appends `p`'s wire form to `out`. A topic longer than 65,535 bytes is
/// cut short (callers refuse such topics first).
pub(crate) fn encode(p: &Published, out: &mut Vec<u8>) {
    let (kind, data): (u8, &[u8]) = match &p.payload {
        Payload::Text(t) => (0, t.as_bytes()),
        Payload::Binary(b) => (1, b),
    };
    let topic = &p.topic.as_bytes()[..p.topic.len().min(u16::MAX as usize)];
    out.reserve(OVERHEAD + topic.len() + data.len());
    out.push(kind);
    out.extend_from_slice(&(topic.len() as u16).to_le_bytes());
    out.extend_from_slice(topic);
    out.extend_from_slice(data);
}

/// Decodes [`encode`]'s form; `None` for anything malformed.
pub(crate) fn decode(buf: &[u8]) -> Option<Published> {
    let (&kind, rest) = buf.split_first()?;
    let len = u16::from_le_bytes([*rest.first()?, *rest.get(1)?]) as usize;
    let topic = std::str::from_utf8(rest.get(2..2 + len)?).ok()?.to_string();
    let data = &rest[2 + len..];
    let payload = match kind {
        0 => Payload::Text(std::str::from_utf8(data).ok()?.to_string()),
        1 => Payload::Binary(Bytes::copy_from_slice(data)),
        _ => return None,
    };
    Some(Published { topic, payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_malformed_input() {
        let msgs = [
            Published {
                topic: "a".into(),
                payload: Payload::Text("hello".into()),
            },
            Published {
                topic: "ünï".into(),
                payload: Payload::Binary(vec![0u8, 255].into()),
            },
            Published {
                topic: String::new(),
                payload: Payload::Text(String::new()),
            },
        ];
        for p in &msgs {
            let mut wire = Vec::new();
            encode(p, &mut wire);
            assert_eq!(wire.len(), p.size());
            assert_eq!(decode(&wire).as_ref(), Some(p));
        }
        let mut wire = Vec::new();
        encode(&msgs[0], &mut wire);
        assert_eq!(wire, b"\x00\x01\x00ahello");
        assert_eq!(decode(&[9, 0, 0]), None);
        assert_eq!(decode(&[0, 5, 0, b'x']), None);
        assert_eq!(decode(&[0, 1]), None);
        assert_eq!(decode(&[0, 0, 0, 0xff]), None);
    }
}
