//! Things held at once, counted by key (connections by client address, live streams by session): a key's count
//! goes up when one is taken and down when its [`Held`] is dropped, so nothing is counted that is not held.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// The counts, cheap to clone.
#[derive(Clone)]
pub struct Tally<K: Eq + Hash + Clone>(Arc<Mutex<HashMap<K, usize>>>);

impl<K: Eq + Hash + Clone> Default for Tally<K> {
    fn default() -> Self {
        Tally(Arc::default())
    }
}

/// One counted thing; its key's count goes down when it is dropped.
pub struct Held<K: Eq + Hash + Clone> {
    tally: Tally<K>,
    key: K,
}

impl<K: Eq + Hash + Clone> Tally<K> {
    /// Counts one more for `key` if `allow` (given this key's count and the total) agrees.
    pub fn take<E>(&self, key: K, allow: impl FnOnce(usize, usize) -> Result<(), E>) -> Result<Held<K>, E> {
        let mut counts = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let total = counts.values().sum();
        allow(counts.get(&key).copied().unwrap_or(0), total)?;
        *counts.entry(key.clone()).or_default() += 1;
        Ok(Held { tally: self.clone(), key })
    }
}

impl<K: Eq + Hash + Clone> Drop for Held<K> {
    fn drop(&mut self) {
        let mut counts = self.tally.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}
