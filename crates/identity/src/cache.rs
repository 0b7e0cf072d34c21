//! A bounded map whose entries expire: DID documents and failures by DID,
//! and the API's verified tokens.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Entry<V> {
    value: V,
    stored: Instant,
    expires: Instant,
}

pub struct TtlCache<V> {
    entries: Mutex<HashMap<String, Entry<V>>>,
    max_entries: usize,
}

impl<V: Clone> TtlCache<V> {
    pub fn new(max_entries: usize) -> Self {
        TtlCache {
            entries: Mutex::new(HashMap::new()),
            max_entries: max_entries.max(1),
        }
    }

    /// The live value for `key` and how long ago it was stored.
    pub fn get(&self, key: &str) -> Option<(V, Duration)> {
        let now = Instant::now();
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.get(key).filter(|e| e.expires > now)?;
        Some((entry.value.clone(), now.duration_since(entry.stored)))
    }

    pub fn insert(&self, key: String, value: V, ttl: Duration) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.max_entries && !entries.contains_key(&key) {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= self.max_entries {
                // Full of live entries: drop an eighth. HashMap order is
                // randomly seeded, so this is random eviction, which costs no
                // bookkeeping on the hot read path.
                let drop: Vec<String> = entries
                    .keys()
                    .take(self.max_entries.div_ceil(8))
                    .cloned()
                    .collect();
                for k in drop {
                    entries.remove(&k);
                }
            }
        }
        entries.insert(
            key,
            Entry {
                value,
                stored: now,
                expires: now + ttl,
            },
        );
    }

    pub fn remove(&self, key: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(key);
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_and_stays_bounded() {
        let cache = TtlCache::new(16);
        cache.insert("a".into(), 1, Duration::from_secs(60));
        cache.insert("gone".into(), 2, Duration::ZERO);
        assert_eq!(cache.get("a").map(|(v, _)| v), Some(1));
        assert_eq!(cache.get("gone"), None);
        for i in 0..100 {
            cache.insert(format!("k{i}"), i, Duration::from_secs(60));
            assert!(cache.len() <= 16);
        }
        assert_eq!(cache.get("k99").map(|(v, _)| v), Some(99));
        cache.remove("k99");
        assert_eq!(cache.get("k99"), None);
    }
}
