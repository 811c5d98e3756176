//! A least-recently-used map bounded by the bytes of its values (decrypted blobs, decoded
//! trees). Values are `Arc`s: a reader keeps using a value the map has already evicted.

use std::collections::{BTreeMap, HashMap};
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
    /// last use → key: the oldest entry first.
    order: BTreeMap<u64, K>,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    /// An empty map holding at most `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        Lru {
            capacity,
            used: 0,
            tick: 0,
            map: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    /// The value of `key`, now the most recently used.
    pub fn get(&mut self, key: &K) -> Option<Arc<V>> {
        self.tick += 1;
        let tick = self.tick;
        let (v, _, last) = self.map.get_mut(key)?;
        let old = std::mem::replace(last, tick);
        let v = v.clone();
        if let Some(k) = self.order.remove(&old) {
            self.order.insert(tick, k);
        }
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
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((_, w, _)) = self.map.remove(&oldest) {
                self.used -= w;
            }
        }
        self.tick += 1;
        self.order.insert(self.tick, key.clone());
        self.map.insert(key, (value, weight, self.tick));
        self.used += weight;
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

    /// Remove `key`.
    pub fn remove(&mut self, key: &K) {
        if let Some((_, w, last)) = self.map.remove(key) {
            self.used -= w;
            self.order.remove(&last);
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
}
