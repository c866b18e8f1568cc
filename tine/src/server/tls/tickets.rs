//! Session tickets that resume on any worker.
//!
//! A TLS session ticket is the server's own state, encrypted under a key
//! only the server knows, handed to the client to bring back. With one
//! process per core, a ticket made by one worker must open on all of them:
//! rustls' own ticketer draws its keys inside each process, so workers
//! would disagree from the first rotation on. Here the master draws the
//! keys (before the first fork, so every worker starts with them) and
//! rotates them on its schedule, sending each new set over the control
//! channel; a worker forked later (a restart, a respawn) inherits the
//! master's current set.
//!
//! Rotation: every `period` (default 6 hours) a new key starts encrypting
//! tickets; the previous one still opens the tickets it made for one more
//! period, then it is gone. A ticket thus resumes for at least `period`
//! and at most two periods after it was issued; clients are told
//! `period` as the ticket lifetime. The master keeps its keys across
//! `SIGHUP` (the workers it forks inherit them), so a rolling restart does
//! not invalidate a single ticket.
//!
//! Format: `[key id: 4 bytes][nonce: 12 bytes][ChaCha20-Poly1305
//! ciphertext and tag]`, the id naming the key among the two kept.

use std::fmt;
use std::sync::RwLock;
use std::time::Duration;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// The default rotation period (also the lifetime told to clients).
pub(crate) const DEFAULT_PERIOD: Duration = Duration::from_secs(6 * 3600);

const KEY_LEN: usize = 32;
const ID_LEN: usize = 4;

/// One ticket key.
struct Key {
    id: u32,
    raw: [u8; KEY_LEN],
    aead: LessSafeKey,
}

impl Key {
    fn new(id: u32, raw: [u8; KEY_LEN]) -> Key {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &raw).expect("a 32-byte key");
        Key {
            id,
            raw,
            aead: LessSafeKey::new(unbound),
        }
    }

    fn random(rng: &SystemRandom) -> Option<Key> {
        let mut raw = [0u8; KEY_LEN];
        let mut id = [0u8; ID_LEN];
        rng.fill(&mut raw).ok()?;
        rng.fill(&mut id).ok()?;
        Some(Key::new(u32::from_le_bytes(id), raw))
    }
}

/// The current key and the one before it.
struct Keys {
    current: Key,
    previous: Option<Key>,
}

/// tine's ticket producer: the same keys in every worker (see the module
/// docs).
pub(crate) struct TicketKeys {
    keys: RwLock<Keys>,
    period: RwLock<Duration>,
    rng: SystemRandom,
}

impl fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketKeys").finish_non_exhaustive()
    }
}

impl TicketKeys {
    /// A fresh random key (in the master, before the first fork).
    pub(crate) fn new() -> Option<TicketKeys> {
        let rng = SystemRandom::new();
        let current = Key::random(&rng)?;
        Some(TicketKeys {
            keys: RwLock::new(Keys {
                current,
                previous: None,
            }),
            period: RwLock::new(DEFAULT_PERIOD),
            rng,
        })
    }

    /// The rotation period (also the lifetime told to clients).
    pub(crate) fn period(&self) -> Duration {
        *self.period.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the period, at least a second and at most a century: the
    /// master adds it to `Instant`s, which `Duration::MAX` would overflow.
    pub(crate) fn set_period(&self, period: Duration) {
        *self.period.write().unwrap_or_else(|e| e.into_inner()) =
            period.clamp(Duration::from_secs(1), crate::server::timer::FOREVER);
    }

    /// The master's rotation: a new current key, the old one kept for
    /// decryption. Returns the new set in wire form for the workers.
    pub(crate) fn rotate(&self) -> Option<Vec<u8>> {
        let fresh = Key::random(&self.rng)?;
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        let old = std::mem::replace(&mut keys.current, fresh);
        keys.previous = Some(old);
        Some(encode(&keys))
    }

    /// The current set in wire form (a binary upgrade hands it over).
    pub(crate) fn wire(&self) -> Vec<u8> {
        encode(&self.keys.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// A worker installs the set its master sent. `false`: malformed.
    pub(crate) fn install(&self, wire: &[u8]) -> bool {
        let Some(keys) = decode(wire) else {
            return false;
        };
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        true
    }

    /// The current key's id (for tests and logs: the key is never shown).
    #[cfg(test)]
    fn current_id(&self) -> u32 {
        self.keys.read().unwrap().current.id
    }
}

/// `[current id u32][current key 32][has previous u8]
/// [previous id u32][previous key 32]`
fn encode(keys: &Keys) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 2 * (ID_LEN + KEY_LEN));
    out.extend_from_slice(&keys.current.id.to_le_bytes());
    out.extend_from_slice(&keys.current.raw);
    match &keys.previous {
        Some(p) => {
            out.push(1);
            out.extend_from_slice(&p.id.to_le_bytes());
            out.extend_from_slice(&p.raw);
        }
        None => out.push(0),
    }
    out
}

fn decode(wire: &[u8]) -> Option<Keys> {
    let key_at = |at: usize| -> Option<Key> {
        let id = u32::from_le_bytes(wire.get(at..at + ID_LEN)?.try_into().ok()?);
        let raw: [u8; KEY_LEN] = wire
            .get(at + ID_LEN..at + ID_LEN + KEY_LEN)?
            .try_into()
            .ok()?;
        Some(Key::new(id, raw))
    };
    let current = key_at(0)?;
    let flag = *wire.get(ID_LEN + KEY_LEN)?;
    let previous = match flag {
        0 if wire.len() == ID_LEN + KEY_LEN + 1 => None,
        1 if wire.len() == 2 * (ID_LEN + KEY_LEN) + 1 => Some(key_at(ID_LEN + KEY_LEN + 1)?),
        _ => return None,
    };
    Some(Keys { current, previous })
}

impl rustls::server::ProducesTickets for TicketKeys {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        u32::try_from(self.period().as_secs()).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let key = &keys.current;
        let mut out = Vec::with_capacity(ID_LEN + NONCE_LEN + plain.len() + 16);
        out.extend_from_slice(&key.id.to_le_bytes());
        out.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key.id.to_le_bytes()),
                &mut sealed,
            )
            .ok()?;
        out.extend_from_slice(&sealed);
        Some(out)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let id = u32::from_le_bytes(cipher.get(..ID_LEN)?.try_into().ok()?);
        let nonce: [u8; NONCE_LEN] = cipher.get(ID_LEN..ID_LEN + NONCE_LEN)?.try_into().ok()?;
        let sealed = cipher.get(ID_LEN + NONCE_LEN..)?;
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let key = std::iter::once(&keys.current)
            .chain(keys.previous.as_ref())
            .find(|k| k.id == id)?;
        let mut buf = sealed.to_vec();
        let plain = key
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(id.to_le_bytes()),
                &mut buf,
            )
            .ok()?;
        let n = plain.len();
        buf.truncate(n);
        Some(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::server::ProducesTickets;

    /// `TlsConfig::ticket_rotation(Duration::MAX)` (never rotate) gives a
    /// period the master can add to an `Instant` (it overflowed, at
    /// start-up, in the master), and a lifetime that fits the ticket.
    #[test]
    fn a_period_of_duration_max_is_a_century() {
        let keys = TicketKeys::new().unwrap();
        keys.set_period(Duration::MAX);
        let now = std::time::Instant::now();
        assert!(now + keys.period() > now);
        assert!(keys.lifetime() > 365 * 24 * 3600);
    }

    #[test]
    fn a_ticket_opens_after_one_rotation_not_two() {
        let master = TicketKeys::new().unwrap();
        let worker = TicketKeys::new().unwrap();
        // A worker with other keys cannot open the master's tickets ...
        let t = master.encrypt(b"session state").unwrap();
        assert_eq!(worker.decrypt(&t), None);
        // ... until it installs the master's set.
        let wire = master.rotate().unwrap();
        assert!(worker.install(&wire));
        assert_eq!(worker.current_id(), master.current_id());
        // The ticket made before the rotation still opens (previous key).
        assert_eq!(worker.decrypt(&t).as_deref(), Some(&b"session state"[..]));
        let t2 = worker.encrypt(b"newer").unwrap();
        assert_eq!(master.decrypt(&t2).as_deref(), Some(&b"newer"[..]));
        // Two rotations later the first key is gone.
        let wire = master.rotate().unwrap();
        assert!(worker.install(&wire));
        assert_eq!(worker.decrypt(&t), None);
        assert_eq!(worker.decrypt(&t2).as_deref(), Some(&b"newer"[..]));
    }

    #[test]
    fn tampered_and_short_tickets_are_refused() {
        let keys = TicketKeys::new().unwrap();
        let mut t = keys.encrypt(b"abc").unwrap();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert_eq!(keys.decrypt(&t), None);
        for n in 0..20 {
            assert_eq!(keys.decrypt(&t[..n.min(t.len())]), None);
        }
        assert!(!keys.install(b"short"));
        // A set without a previous key is 37 bytes; 38 is neither form.
        assert!(keys.install(&[0u8; 37]));
        assert!(!keys.install(&[0u8; 38]));
    }
}
