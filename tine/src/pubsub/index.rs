//! The topic index: which of this process's WebSocket connections are
//! subscribed to which topic.
//!
//! The event loop owns one [`Topics`]. Handlers change subscriptions through
//! [`WebSocket::subscribe`](crate::WebSocket::subscribe) and `unsubscribe`,
//! which only record the change on the connection; the loop applies the
//! recorded changes after every drive of that connection ([`Topics::apply`]),
//! whatever state the connection is in, and removes a closed connection from
//! every topic it was in ([`Topics::remove_connection`]).
//!
//! The index holds only topics that have subscribers: the last unsubscribe
//! of a topic removes its entry, so a server that sees many short-lived
//! topic names (one room per visitor, say) does not keep them all.

use std::collections::HashMap;

/// A subscribed connection: its slab key and generation (a key is reused
/// after a close; the generation tells the connections apart). The key in
/// a `u32` (see [`key32`]): eight bytes a subscription, not sixteen.
pub(crate) type Subscriber = (u32, u32);

/// A slab key as a [`Subscriber`] holds it. Keys count open connections,
/// one socket each, and a process holds fewer than 2^31 descriptors: a key
/// always fits.
#[inline]
pub(crate) fn key32(key: usize) -> u32 {
    debug_assert!(u32::try_from(key).is_ok());
    key as u32
}

/// Topic name to subscribers.
#[derive(Debug, Default)]
pub(crate) struct Topics {
    map: HashMap<String, Vec<Subscriber>>,
    /// Total entries over all topics.
    subscriptions: usize,
}

impl Topics {
    /// An empty index.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds `sub` to `topic` (once, however often it is called).
    pub(crate) fn subscribe(&mut self, topic: &str, sub: Subscriber) {
        let subscribers = match self.map.get_mut(topic) {
            Some(s) => s,
            None => self.map.entry(topic.to_string()).or_default(),
        };
        if !subscribers.contains(&sub) {
            subscribers.push(sub);
            self.subscriptions += 1;
        }
        self.note();
    }

    /// Removes connection `key` from `topic`; the topic's entry goes when
    /// its last subscriber does.
    pub(crate) fn unsubscribe(&mut self, topic: &str, key: usize) {
        let Some(subscribers) = self.map.get_mut(topic) else {
            return;
        };
        let key = key32(key);
        let before = subscribers.len();
        subscribers.retain(|&(k, _)| k != key);
        self.subscriptions -= before - subscribers.len();
        if subscribers.is_empty() {
            self.map.remove(topic);
            // A map emptied after a burst of topics gives its table back.
            if self.map.capacity() > 64 && self.map.len() * 4 < self.map.capacity() {
                self.map.shrink_to(self.map.len() * 2);
            }
        }
        self.note();
    }

    /// Applies the subscription changes a connection's handler recorded,
    /// in order: `(true, topic)` subscribes, `(false, topic)` unsubscribes.
    pub(crate) fn apply(
        &mut self,
        sub: Subscriber,
        changes: impl IntoIterator<Item = (bool, String)>,
    ) {
        for (subscribed, topic) in changes {
            if subscribed {
                self.subscribe(&topic, sub);
            } else {
                self.unsubscribe(&topic, sub.0 as usize);
            }
        }
    }

    /// Removes connection `key` from each of `topics` (the topics it was
    /// subscribed to, and any it changed since the last [`apply`](Self::apply)).
    pub(crate) fn remove_connection<'a>(
        &mut self,
        key: usize,
        topics: impl IntoIterator<Item = &'a str>,
    ) {
        for topic in topics {
            self.unsubscribe(topic, key);
        }
    }

    /// The subscribers of `topic`, in subscription order.
    pub(crate) fn subscribers(&self, topic: &str) -> &[Subscriber] {
        self.map.get(topic).map_or(&[], Vec::as_slice)
    }

    /// Topics with at least one subscriber.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Subscriptions over all topics.
    pub(crate) fn subscriptions(&self) -> usize {
        self.subscriptions
    }

    /// Publishes the index's size to [`stats`](super::stats).
    fn note(&self) {
        super::stats::set_index(self.len(), self.subscriptions());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_only_topics_with_subscribers() {
        let mut t = Topics::new();
        t.subscribe("a", (1, 10));
        t.subscribe("a", (1, 10));
        t.subscribe("a", (2, 20));
        t.subscribe("b", (1, 10));
        assert_eq!((t.len(), t.subscriptions()), (2, 3));
        assert_eq!(t.subscribers("a"), &[(1, 10), (2, 20)]);
        t.unsubscribe("a", 1);
        assert_eq!(t.subscribers("a"), &[(2, 20)]);
        t.unsubscribe("a", 2);
        assert_eq!(t.subscribers("a"), &[]);
        assert_eq!((t.len(), t.subscriptions()), (1, 1));
        // Unknown topics and keys change nothing (and create no entry).
        t.unsubscribe("nope", 1);
        t.unsubscribe("b", 7);
        assert_eq!((t.len(), t.subscriptions()), (1, 1));
        t.remove_connection(1, ["b", "a", "b"]);
        assert_eq!((t.len(), t.subscriptions()), (0, 0));
    }

    #[test]
    fn apply_keeps_the_handlers_order() {
        let mut t = Topics::new();
        let changes = vec![
            (true, "x".to_string()),
            (false, "x".to_string()),
            (true, "y".to_string()),
            (false, "never".to_string()),
            (true, "x".to_string()),
        ];
        t.apply((3, 1), changes);
        assert_eq!(t.subscribers("x"), &[(3, 1)]);
        assert_eq!(t.subscribers("y"), &[(3, 1)]);
        assert_eq!((t.len(), t.subscriptions()), (2, 2));
        t.apply((3, 1), [(false, "x".into()), (false, "y".into())]);
        assert_eq!((t.len(), t.subscriptions()), (0, 0));
    }

    #[test]
    fn many_short_lived_topics_leave_nothing_behind() {
        let mut t = Topics::new();
        for key in 0..10_000usize {
            let room = format!("{key:08}{}", "r".repeat(100));
            t.subscribe(&room, (key32(key), 0));
            t.subscribe("lobby", (key32(key), 0));
            t.unsubscribe(&room, key);
        }
        assert_eq!((t.len(), t.subscriptions()), (1, 10_000));
        assert!(t.map.capacity() < 64, "capacity {}", t.map.capacity());
        for key in 0..10_000 {
            t.remove_connection(key, ["lobby"]);
        }
        assert_eq!((t.len(), t.subscriptions()), (0, 0));
        assert_eq!(super::super::stats().topics, 0);
    }
}
