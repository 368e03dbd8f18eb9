//! The bounded table every stage keeps its state in: a map with a capacity whose entries carry
//! a deadline (an idle timeout or an expiry). A full table evicts the entry with the earliest
//! deadline to make room and counts it; `first_due` hands out entries whose deadline passed.
//!
//! Contract: every operation is O(log n); memory is bounded by the capacity; no clock (deadlines
//! are packet times the caller computes).

use crate::model::Timestamp;
use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::hash::Hash;

/// A map with a capacity whose entries carry a deadline. `insert` into a full table evicts the
/// entry with the earliest deadline (for idle timeouts that is the least recently seen).
#[derive(Debug)]
pub struct TimedTable<K, V> {
    map: crate::model::FastMap<K, (V, (i64, u64))>,
    order: BTreeMap<(i64, u64), K>,
    next: u64,
    cap: usize,
    /// Entries evicted by `insert` into a full table (the eviction counter of the table).
    evictions: u64,
}

impl<K: Hash + Eq + Clone, V> TimedTable<K, V> {
    /// An empty table holding at most `cap` entries (at least 1).
    pub fn new(cap: usize) -> Self {
        TimedTable {
            map: crate::model::FastMap::default(),
            order: BTreeMap::new(),
            next: 0,
            cap: cap.max(1),
            evictions: 0,
        }
    }
    /// Entries held.
    pub fn len(&self) -> usize {
        self.map.len()
    }
    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    /// Most entries held (the `cap` given to `new`, at least 1).
    pub fn capacity(&self) -> usize {
        self.cap
    }
    /// Entries evicted so far to make room (not counting `remove`, `pop_first` or expiry).
    pub fn evictions(&self) -> u64 {
        self.evictions
    }
    /// Whether `k` has an entry.
    pub fn contains<Q: Hash + Eq + ?Sized>(&self, k: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.map.contains_key(k)
    }
    /// The value of `k`.
    pub fn get<Q: Hash + Eq + ?Sized>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.map.get(k).map(|e| &e.0)
    }
    /// The value of `k`, mutable (its deadline unchanged).
    pub fn get_mut<Q: Hash + Eq + ?Sized>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.map.get_mut(k).map(|e| &mut e.0)
    }
    /// The value and its deadline in one lookup.
    pub(crate) fn get_mut_with_deadline<Q: Hash + Eq + ?Sized>(
        &mut self,
        k: &Q,
    ) -> Option<(&mut V, Timestamp)>
    where
        K: Borrow<Q>,
    {
        self.map.get_mut(k).map(|e| (&mut e.0, Timestamp((e.1).0)))
    }
    /// Current deadline of `k`.
    pub(crate) fn deadline<Q: Hash + Eq + ?Sized>(&self, k: &Q) -> Option<Timestamp>
    where
        K: Borrow<Q>,
    {
        self.map.get(k).map(|e| Timestamp((e.1).0))
    }
    /// Inserts (or replaces) `k`; returns the entry evicted to make room, if any.
    pub(crate) fn insert(&mut self, k: K, v: V, deadline: Timestamp) -> Option<(K, V)> {
        let mut evicted = None;
        if let Some(old) = self.map.remove(&k) {
            self.order.remove(&old.1);
        } else if self.map.len() >= self.cap {
            evicted = self.pop_first();
            self.evictions += u64::from(evicted.is_some());
        }
        let slot = (deadline.micros(), self.next);
        self.next += 1;
        self.order.insert(slot, k.clone());
        self.map.insert(k, (v, slot));
        evicted
    }
    /// The value of `k` with its deadline moved to `deadline`, made by `make` when absent (a
    /// full table evicts the entry with the earliest deadline, counted).
    pub fn touch_or_insert(
        &mut self,
        k: K,
        deadline: Timestamp,
        make: impl FnOnce() -> V,
    ) -> Option<&mut V> {
        if self.map.contains_key(&k) {
            self.set_deadline(&k, deadline);
            return self.map.get_mut(&k).map(|e| &mut e.0);
        }
        self.insert(k.clone(), make(), deadline);
        self.map.get_mut(&k).map(|e| &mut e.0)
    }
    /// Moves `k`'s deadline.
    pub(crate) fn set_deadline<Q: Hash + Eq + ?Sized>(&mut self, k: &Q, deadline: Timestamp)
    where
        K: Borrow<Q>,
    {
        if let Some(e) = self.map.get_mut(k) {
            if (e.1).0 == deadline.micros() {
                return;
            }
            if let Some(key) = self.order.remove(&e.1) {
                let slot = (deadline.micros(), self.next);
                self.next += 1;
                e.1 = slot;
                self.order.insert(slot, key);
            }
        }
    }
    /// Removes `k`'s entry and returns its value.
    pub(crate) fn remove<Q: Hash + Eq + ?Sized>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let (v, slot) = self.map.remove(k)?;
        self.order.remove(&slot);
        Some(v)
    }
    /// Removes the entry with the earliest deadline.
    pub fn pop_first(&mut self) -> Option<(K, V)> {
        let (_, k) = self.order.pop_first()?;
        let (v, _) = self.map.remove(&k)?;
        Some((k, v))
    }
    /// The key with the earliest deadline other than `keep`.
    pub(crate) fn first_except<Q: Hash + Eq + ?Sized>(&self, keep: Option<&Q>) -> Option<K>
    where
        K: Borrow<Q>,
    {
        self.order
            .values()
            .find(|k| keep.is_none_or(|x| (*k).borrow() != x))
            .cloned()
    }
    /// The key with the earliest deadline if that deadline is at or before `now`.
    pub(crate) fn first_due(&self, now: Timestamp) -> Option<K> {
        let (slot, k) = self.order.first_key_value()?;
        (slot.0 <= now.micros()).then(|| k.clone())
    }
    /// Every value, in no particular order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values().map(|e| &e.0)
    }
    /// Removes everything, in deadline order.
    pub(crate) fn drain_ordered(&mut self) -> Vec<(K, V)> {
        let mut out = Vec::with_capacity(self.map.len());
        while let Some(e) = self.pop_first() {
            out.push(e);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timed_table_evicts_earliest_deadline() {
        let mut t: TimedTable<u32, &str> = TimedTable::new(2);
        assert!(t.insert(1, "a", Timestamp(10)).is_none());
        assert!(t.insert(2, "b", Timestamp(5)).is_none());
        t.set_deadline(&2, Timestamp(20));
        assert_eq!(t.insert(3, "c", Timestamp(30)), Some((1, "a")));
        assert_eq!(t.evictions(), 1);
        assert_eq!(t.first_due(Timestamp(19)), None);
        assert_eq!(t.first_due(Timestamp(20)), Some(2));
        assert_eq!(t.first_except(Some(&2)), Some(3));
        assert_eq!(t.remove(&2), Some("b"));
        assert_eq!(t.drain_ordered(), vec![(3, "c")]);
        assert!(t.is_empty());
    }

    #[test]
    fn touch_or_insert_makes_once_and_moves_the_deadline() {
        let mut t: TimedTable<u32, Vec<u8>> = TimedTable::new(2);
        t.touch_or_insert(1, Timestamp(10), Vec::new)
            .unwrap()
            .push(1);
        t.touch_or_insert(2, Timestamp(20), Vec::new)
            .unwrap()
            .push(2);
        // Touching 1 makes it the newest: a third key evicts 2, not 1.
        t.touch_or_insert(1, Timestamp(30), Vec::new)
            .unwrap()
            .push(3);
        t.touch_or_insert(3, Timestamp(40), Vec::new);
        assert_eq!(t.get(&1), Some(&vec![1, 3]));
        assert!(!t.contains(&2));
        assert_eq!(t.evictions(), 1);
    }
}
