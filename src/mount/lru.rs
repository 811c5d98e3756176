//! A least-recently-used map bounded by the bytes of its values (decrypted blobs, decoded
//! trees). Values are `Arc`s: a reader keeps using a value the map has already evicted.
//!
//! Recency is a queue of (use stamp, key) with lazy deletion: a use pushes a new stamp and
//! leaves the old one behind; eviction pops from the front and skips stamps that are no longer
//! a key's latest. The queue is rebuilt when stale stamps outnumber live ones, so every
//! operation is O(1) amortized (a `BTreeMap` of stamps cost ~3 % of a mount's CPU).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Arc;

/// An LRU map holding at most `capacity` bytes of values (each value's weight is given on
/// insertion). One value heavier than the capacity is not kept at all.
#[derive(Debug)]
pub struct Lru<K, V> {
    capacity: u64,
    used: u64,
    tick: u64,
    /// key → (value, weight, last use)
    map: HashMap<K, (Arc<V>, u64, u64)>,
    /// (use stamp, key), oldest first; stale entries included.
    order: VecDeque<(u64, K)>,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    /// An empty map holding at most `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        Lru {
            capacity,
            used: 0,
            tick: 0,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn stamp(&mut self, key: K) -> u64 {
        self.tick += 1;
        self.order.push_back((self.tick, key));
        if self.order.len() > 2 * self.map.len() + 64 {
            // Drop the stale stamps: keep each key's latest, in order.
            let map = &self.map;
            self.order
                .retain(|(t, k)| map.get(k).is_some_and(|(_, _, last)| last == t));
        }
        self.tick
    }

    /// The value of `key`, now the most recently used.
    pub fn get(&mut self, key: &K) -> Option<Arc<V>> {
        if !self.map.contains_key(key) {
            return None;
        }
        // The new stamp is pushed before the entry learns it: a compaction inside `stamp`
        // must keep it, so set the entry's stamp to the coming value first.
        let next = self.tick + 1;
        let (v, _, last) = self.map.get_mut(key)?;
        *last = next;
        let v = v.clone();
        self.stamp(key.clone());
        Some(v)
    }

    /// Insert `value` of `weight` bytes under `key` (replacing any value there), evicting the
    /// least recently used entries until everything fits.
    pub fn insert(&mut self, key: K, value: Arc<V>, weight: u64) {
        self.remove(&key);
        if weight > self.capacity {
            return;
        }
        while self.used + weight > self.capacity {
            let Some((t, oldest)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&oldest).is_some_and(|(_, _, last)| *last == t) {
                if let Some((_, w, _)) = self.map.remove(&oldest) {
                    self.used -= w;
                }
            }
        }
        let next = self.tick + 1;
        self.map.insert(key.clone(), (value, weight, next));
        self.used += weight;
        self.stamp(key);
    }

    /// Whether `key` is held (its place in the order unchanged).
    pub fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    /// Remove everything.
    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
        self.used = 0;
    }

    /// Remove `key` (its stamp goes stale).
    pub fn remove(&mut self, key: &K) {
        if let Some((_, w, _)) = self.map.remove(key) {
            self.used -= w;
        }
    }

    /// Bytes held.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used_within_the_byte_bound() {
        let mut l = Lru::new(10);
        l.insert("a", Arc::new(1), 4);
        l.insert("b", Arc::new(2), 4);
        assert_eq!(l.get(&"a").as_deref(), Some(&1)); // a is now newer than b
        l.insert("c", Arc::new(3), 4); // 12 > 10: b goes
        assert_eq!(l.get(&"b"), None);
        assert_eq!(l.get(&"a").as_deref(), Some(&1));
        assert_eq!(l.get(&"c").as_deref(), Some(&3));
        assert_eq!(l.used(), 8);
        // Replacing a key does not count it twice.
        l.insert("c", Arc::new(4), 6);
        assert_eq!(l.used(), 10);
        assert_eq!(l.len(), 2);
        // Too heavy on its own: not kept, nothing else evicted for it.
        l.insert("d", Arc::new(5), 11);
        assert_eq!(l.get(&"d"), None);
        assert_eq!(l.len(), 2);
        // A value handed out stays usable after eviction.
        let held = l.get(&"a").unwrap();
        l.insert("e", Arc::new(6), 10);
        assert_eq!(*held, 1);
        assert_eq!(l.len(), 1);
        assert!(l.contains(&"e") && !l.contains(&"a"));
        l.remove(&"e");
        assert!(l.is_empty());
        assert_eq!(l.used(), 0);
        l.insert("f", Arc::new(7), 3);
        l.clear();
        assert!(l.is_empty() && l.used() == 0 && l.get(&"f").is_none());
    }

    #[test]
    fn many_uses_keep_the_order_and_the_queue_small() {
        let mut l = Lru::new(3);
        for k in 0..3 {
            l.insert(k, Arc::new(k), 1);
        }
        // Touch 0 and 2 many times: 1 stays the least recently used.
        for _ in 0..10_000 {
            l.get(&0);
            l.get(&2);
        }
        assert!(l.order.len() <= 2 * l.len() + 65, "{}", l.order.len());
        l.insert(3, Arc::new(3), 1);
        assert!(!l.contains(&1));
        assert!(l.contains(&0) && l.contains(&2) && l.contains(&3));
        // The same against a simple model, with removals and re-insertions.
        let mut model: Vec<u32> = Vec::new(); // most recent last
        let mut l = Lru::new(8);
        let mut x = 12345u32;
        for _ in 0..20_000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let k = (x >> 16) % 20;
            match x % 3 {
                0 => {
                    let got = l.get(&k).is_some();
                    assert_eq!(got, model.contains(&k));
                    if got {
                        model.retain(|m| *m != k);
                        model.push(k);
                    }
                }
                1 => {
                    l.insert(k, Arc::new(k), 1);
                    model.retain(|m| *m != k);
                    model.push(k);
                    if model.len() > 8 {
                        model.remove(0);
                    }
                }
                _ => {
                    l.remove(&k);
                    model.retain(|m| *m != k);
                }
            }
            assert_eq!(l.len(), model.len());
        }
    }
}
