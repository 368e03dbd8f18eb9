//! The bounded table every stage keeps its state in: a map with a capacity whose entries carry
//! a deadline (an idle timeout or an expiry). A full table evicts the entry with the earliest
//! deadline to make room and counts it; `first_due` hands out entries whose deadline passed.
//!
//! Contract: every operation is O(log n) amortised; memory is bounded by the capacity; no clock
//! (deadlines are packet times the caller computes).
//!
//! The deadline order is a binary heap with lazy deletion: moving a deadline later (the common
//! touch) only rewrites the entry's slot; its heap item, which is never later than the slot, is
//! requeued when it reaches the top. Items of removed keys are dropped when they surface, and the
//! heap is rebuilt when such stale items outnumber the live ones. Slots are (deadline, sequence)
//! pairs, unique, so the order is total and the same as sorting every live entry by its slot.

use crate::model::Timestamp;
use std::borrow::Borrow;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::hash::Hash;

/// Where an entry sits in the deadline order: its deadline (microseconds), then the sequence
/// number of the change that set it (earlier changes first among equal deadlines).
type Slot = (i64, u64);

/// One entry of a `TimedTable`: the value, its slot and the slot of its heap item.
#[derive(Debug)]
struct Entry<V> {
    value: V,
    slot: Slot,
    /// The slot of this key's live heap item: never later than `slot`.
    queued: Slot,
}

impl<V> Entry<V> {
    /// Moves the entry to `deadline` (a new slot, numbered from `next`, unless it is already
    /// there). Returns the slot to queue anew when it is now earlier than its heap item (that
    /// item goes stale); a later slot is requeued when the item reaches the top.
    fn move_to(&mut self, deadline: Timestamp, next: &mut u64) -> Option<Slot> {
        if self.slot.0 == deadline.micros() {
            return None;
        }
        self.slot = (deadline.micros(), *next);
        *next += 1;
        if self.slot > self.queued {
            return None;
        }
        self.queued = self.slot;
        Some(self.slot)
    }
}

/// A heap item: a key and the slot it was queued at. Ordered by the slot alone.
#[derive(Debug)]
struct Due<K> {
    slot: Slot,
    key: K,
}

impl<K> PartialEq for Due<K> {
    fn eq(&self, other: &Self) -> bool {
        self.slot == other.slot
    }
}
impl<K> Eq for Due<K> {}
impl<K> PartialOrd for Due<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K> Ord for Due<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.slot.cmp(&other.slot)
    }
}

/// A map with a capacity whose entries carry a deadline. `insert` into a full table evicts the
/// entry with the earliest deadline (for idle timeouts that is the least recently seen).
#[derive(Debug)]
pub struct TimedTable<K, V> {
    map: crate::model::FastMap<K, Entry<V>>,
    order: BinaryHeap<Reverse<Due<K>>>,
    next: u64,
    cap: usize,
    /// Entries evicted by `insert` into a full table (the eviction counter of the table).
    evictions: u64,
}

/// What `settle` found at the top of the heap.
enum Top {
    /// A live key queued at its current slot.
    Live,
    /// A live key whose deadline moved later: requeue it at this slot.
    Later(Slot),
    /// A removed key, or a key queued again since.
    Stale,
}

impl<K: Hash + Eq + Clone, V> TimedTable<K, V> {
    /// An empty table holding at most `cap` entries (at least 1).
    pub fn new(cap: usize) -> Self {
        TimedTable {
            map: crate::model::FastMap::default(),
            order: BinaryHeap::new(),
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
        self.map.get(k).map(|e| &e.value)
    }
    /// The value of `k`, mutable (its deadline unchanged).
    pub fn get_mut<Q: Hash + Eq + ?Sized>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.map.get_mut(k).map(|e| &mut e.value)
    }
    /// The value and its deadline in one lookup.
    pub(crate) fn get_mut_with_deadline<Q: Hash + Eq + ?Sized>(
        &mut self,
        k: &Q,
    ) -> Option<(&mut V, Timestamp)>
    where
        K: Borrow<Q>,
    {
        self.map
            .get_mut(k)
            .map(|e| (&mut e.value, Timestamp(e.slot.0)))
    }
    /// Current deadline of `k`.
    pub(crate) fn deadline<Q: Hash + Eq + ?Sized>(&self, k: &Q) -> Option<Timestamp>
    where
        K: Borrow<Q>,
    {
        self.map.get(k).map(|e| Timestamp(e.slot.0))
    }
    /// The next slot at `deadline`.
    fn slot(&mut self, deadline: Timestamp) -> Slot {
        let slot = (deadline.micros(), self.next);
        self.next += 1;
        slot
    }
    /// Inserts (or replaces) `k`; returns the entry evicted to make room, if any.
    pub(crate) fn insert(&mut self, k: K, v: V, deadline: Timestamp) -> Option<(K, V)> {
        let mut evicted = None;
        // Only a full table looks the key up before the insert (a table with room: one probe).
        if self.map.len() >= self.cap && !self.map.contains_key(&k) {
            evicted = self.pop_first();
            self.evictions += u64::from(evicted.is_some());
        }
        let slot = self.slot(deadline);
        self.order.push(Reverse(Due {
            slot,
            key: k.clone(),
        }));
        // A replaced entry's heap item goes stale: the new one is queued at a newer slot.
        self.map.insert(
            k,
            Entry {
                value: v,
                slot,
                queued: slot,
            },
        );
        self.compact();
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
        // Present: the deadline moved in the lookup that finds it (`Entry::move_to`), then
        // one more lookup for the reference; the owned key requeues without a third.
        let next = &mut self.next;
        let requeue = self.map.get_mut(&k).map(|e| e.move_to(deadline, next));
        match requeue {
            Some(Some(slot)) => {
                self.order.push(Reverse(Due {
                    slot,
                    key: k.clone(),
                }));
                self.compact();
            }
            Some(None) => {}
            None => {
                self.insert(k.clone(), make(), deadline);
            }
        }
        self.map.get_mut(&k).map(|e| &mut e.value)
    }
    /// Moves `k`'s deadline.
    pub(crate) fn set_deadline<Q: Hash + Eq + ?Sized>(&mut self, k: &Q, deadline: Timestamp)
    where
        K: Borrow<Q>,
    {
        let next = &mut self.next;
        let Some(slot) = self.map.get_mut(k).and_then(|e| e.move_to(deadline, next)) else {
            return;
        };
        if let Some((key, _)) = self.map.get_key_value(k) {
            let key = key.clone();
            self.order.push(Reverse(Due { slot, key }));
            self.compact();
        }
    }
    /// Removes `k`'s entry and returns its value.
    pub(crate) fn remove<Q: Hash + Eq + ?Sized>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let e = self.map.remove(k)?;
        self.compact();
        Some(e.value)
    }
    /// Brings the live entry with the earliest slot to the top of the heap (dropping stale items
    /// and requeueing entries whose deadline moved later); `None` when the table is empty.
    fn settle(&mut self) -> Option<&Due<K>> {
        loop {
            let Reverse(due) = self.order.peek()?;
            let top = match self.map.get_mut(&due.key) {
                Some(e) if e.queued == due.slot && e.slot == due.slot => Top::Live,
                Some(e) if e.queued == due.slot => {
                    e.queued = e.slot;
                    Top::Later(e.slot)
                }
                _ => Top::Stale,
            };
            match top {
                Top::Live => break,
                Top::Later(slot) => {
                    if let Some(mut item) = self.order.peek_mut() {
                        item.0.slot = slot;
                    }
                }
                Top::Stale => {
                    self.order.pop();
                }
            }
        }
        self.order.peek().map(|Reverse(due)| due)
    }
    /// Rebuilds the heap from the live entries once stale items outnumber them (keeps the heap
    /// within twice the table's size, plus a little).
    fn compact(&mut self) {
        if self.order.len() <= 2 * self.map.len() + 32 {
            return;
        }
        let mut items = std::mem::take(&mut self.order).into_vec();
        items.clear();
        items.extend(self.map.iter_mut().map(|(k, e)| {
            e.queued = e.slot;
            Reverse(Due {
                slot: e.slot,
                key: k.clone(),
            })
        }));
        self.order = BinaryHeap::from(items);
    }
    /// Removes the entry with the earliest deadline.
    pub fn pop_first(&mut self) -> Option<(K, V)> {
        self.settle()?;
        let Reverse(due) = self.order.pop()?;
        let e = self.map.remove(&due.key)?;
        // Each pop takes one live entry and maybe only one item: keep the bound.
        self.compact();
        Some((due.key, e.value))
    }
    /// The key with the earliest deadline other than `keep`.
    pub(crate) fn first_except<Q: Hash + Eq + ?Sized>(&mut self, keep: Option<&Q>) -> Option<K>
    where
        K: Borrow<Q>,
    {
        let first = self.settle()?;
        if keep.is_none_or(|x| first.key.borrow() != x) {
            return Some(first.key.clone());
        }
        // `keep` is first: set it aside while the next one surfaces.
        let kept = self.order.pop()?;
        let next = self.settle().map(|due| due.key.clone());
        self.order.push(kept);
        next
    }
    /// The key with the earliest deadline if that deadline is at or before `now`.
    pub(crate) fn first_due(&mut self, now: Timestamp) -> Option<K> {
        let first = self.settle()?;
        (first.slot.0 <= now.micros()).then(|| first.key.clone())
    }
    /// Every value, in no particular order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values().map(|e| &e.value)
    }
    /// Removes everything, in deadline order.
    pub(crate) fn drain_ordered(&mut self) -> Vec<(K, V)> {
        let mut out = Vec::with_capacity(self.map.len());
        while let Some(e) = self.pop_first() {
            out.push(e);
        }
        self.order.clear();
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

    /// The same operations on a plain list sorted by slot: the order the heap must reproduce.
    #[derive(Default)]
    struct Model {
        entries: Vec<(u8, u32, (i64, u64))>,
        next: u64,
        cap: usize,
        evictions: u64,
    }

    impl Model {
        fn pos(&self, k: u8) -> Option<usize> {
            self.entries.iter().position(|e| e.0 == k)
        }
        fn first(&self) -> Option<usize> {
            (0..self.entries.len()).min_by_key(|&i| self.entries[i].2)
        }
        fn slot(&mut self, d: i64) -> (i64, u64) {
            self.next += 1;
            (d, self.next)
        }
        fn insert(&mut self, k: u8, v: u32, d: i64) -> Option<(u8, u32)> {
            let mut evicted = None;
            if let Some(i) = self.pos(k) {
                self.entries.remove(i);
            } else if self.entries.len() >= self.cap {
                evicted = self.pop_first();
                self.evictions += 1;
            }
            let s = self.slot(d);
            self.entries.push((k, v, s));
            evicted
        }
        fn set_deadline(&mut self, k: u8, d: i64) {
            if let Some(i) = self.pos(k) {
                if self.entries[i].2 .0 != d {
                    self.entries[i].2 = self.slot(d);
                }
            }
        }
        fn pop_first(&mut self) -> Option<(u8, u32)> {
            let i = self.first()?;
            let e = self.entries.remove(i);
            Some((e.0, e.1))
        }
    }

    proptest::proptest! {
        #[test]
        fn heap_order_matches_a_sorted_list(
            cap in 1usize..12,
            ops in proptest::collection::vec((0u8..6, 0u8..16, 0i64..40), 0..300),
        ) {
            let mut t: TimedTable<u8, u32> = TimedTable::new(cap);
            let mut m = Model { cap, ..Model::default() };
            for (n, (op, k, d)) in ops.into_iter().enumerate() {
                let v = n as u32;
                match op {
                    0 | 1 => proptest::prop_assert_eq!(
                        t.insert(k, v, Timestamp(d)),
                        m.insert(k, v, d)
                    ),
                    2 => {
                        t.set_deadline(&k, Timestamp(d));
                        m.set_deadline(k, d);
                    }
                    3 => {
                        let r = m.pos(k).map(|i| m.entries.remove(i).1);
                        proptest::prop_assert_eq!(t.remove(&k), r);
                    }
                    4 => {
                        let due = m.first().filter(|&i| m.entries[i].2 .0 <= d);
                        proptest::prop_assert_eq!(t.first_due(Timestamp(d)), due.map(|i| m.entries[i].0));
                        let mut rest: Vec<_> = m.entries.iter().filter(|e| e.0 != k).collect();
                        rest.sort_by_key(|e| e.2);
                        proptest::prop_assert_eq!(t.first_except(Some(&k)), rest.first().map(|e| e.0));
                    }
                    _ => proptest::prop_assert_eq!(t.pop_first(), m.pop_first()),
                }
                proptest::prop_assert_eq!(t.len(), m.entries.len());
                proptest::prop_assert!(t.order.len() <= 2 * t.len() + 33);
                proptest::prop_assert_eq!(t.evictions(), m.evictions);
            }
            let mut rest = m.entries.clone();
            rest.sort_by_key(|e| e.2);
            let want: Vec<_> = rest.iter().map(|e| (e.0, e.1)).collect();
            proptest::prop_assert_eq!(t.drain_ordered(), want);
        }
    }
}
