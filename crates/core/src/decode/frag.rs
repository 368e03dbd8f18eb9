//! IPv4/IPv6 fragment reassembly with caps on reassemblies in progress, buffered bytes and age.
//!
//! Contract: `add` takes one fragment and returns the reassembled transport payload once every
//! byte of it has arrived. Overlapping or inconsistent fragments drop the whole datagram (RFC 5722
//! for IPv6; the same rule for IPv4, since overlaps are an evasion trick); an exact duplicate is
//! ignored. A full table evicts the oldest reassembly. Fragments are held as received (charged
//! to the byte cap by their length) and copied into one buffer only when the datagram is complete,
//! so a fragment far into a datagram that never completes costs its own bytes, not its offset (a
//! flood of them used to allocate and zero up to 64 KiB each). Finished buffers are recycled
//! through a small pool.

use crate::model::{Counters, Timestamp};
use crate::table::TimedTable;
use std::net::IpAddr;

/// Largest reassembled payload: the IP length fields cannot describe more.
const MAX_DATAGRAM: usize = 65535;
/// Most fragments accepted into one datagram (a 64 KiB datagram over a 1280-byte MTU needs 52).
const MAX_PIECES: usize = 64;
/// Buffers kept for reuse, and the largest capacity kept (a pooled buffer is charged to the
/// byte cap by its capacity, so a few huge ones must not come back for small datagrams).
const POOL: usize = 16;
const POOL_BUF_MAX: usize = 2048;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FragKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub id: u32,
    /// IPv4: the protocol (part of the RFC 791 key). IPv6: 0 (the next header may differ
    /// between fragments; the first fragment's is used).
    pub proto: u8,
}

/// One fragment as cut out of its packet.
pub(crate) struct Fragment<'a> {
    /// Byte offset of `data` in the fragmentable part.
    pub offset: usize,
    pub more: bool,
    pub data: &'a [u8],
    /// From the first fragment (offset 0): the protocol of the reassembled payload and the
    /// length of the IP headers in front of it (for `Datagram::ip_len`).
    pub first: Option<(u8, usize)>,
}

/// A completed datagram: return `buf` with `FragTable::recycle` when done.
pub(crate) struct Reassembled {
    pub buf: Vec<u8>,
    pub proto: u8,
    pub hdr_len: usize,
}

struct Entry {
    first_ts: Timestamp,
    /// The fragments received: (offset, bytes), in arrival order; never overlapping.
    pieces: Vec<(usize, Box<[u8]>)>,
    /// Bytes in `pieces`.
    held: usize,
    /// Received byte ranges, sorted and coalesced.
    have: Vec<(usize, usize)>,
    total: Option<usize>,
    first: Option<(u8, usize)>,
}

pub(crate) struct FragTable {
    /// Reassemblies by key; the deadline is the first fragment's time plus the timeout, so the
    /// earliest deadline is also the oldest reassembly.
    map: TimedTable<FragKey, Entry>,
    bytes: usize,
    cap_bytes: usize,
    timeout_us: i64,
    pool: Vec<Vec<u8>>,
}

/// Error/eviction keys.
pub(crate) const ERR_FRAGMENT: &str = "fragment";
pub(crate) const ERR_FRAGMENT_TIMEOUT: &str = "fragment_timeout";
pub(crate) const EVICT_FRAGMENTS: &str = "fragments";

impl FragTable {
    pub fn new(cap: usize, cap_bytes: usize, timeout_secs: u32) -> Self {
        FragTable {
            map: TimedTable::new(cap.max(1)),
            bytes: 0,
            cap_bytes,
            timeout_us: i64::from(timeout_secs).saturating_mul(1_000_000),
            pool: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn remove(&mut self, key: &FragKey) -> Option<Entry> {
        let e = self.map.remove(key)?;
        self.bytes = self.bytes.saturating_sub(e.held);
        Some(e)
    }

    fn discard(&mut self, key: &FragKey) {
        self.remove(key);
    }

    /// Returns a finished buffer to the pool.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.pool.len() < POOL && buf.capacity() <= POOL_BUF_MAX {
            buf.clear();
            self.pool.push(buf);
        }
    }

    fn evict_oldest_except(&mut self, keep: Option<&FragKey>, evictions: &mut Counters) -> bool {
        match self.map.first_except(keep) {
            Some(k) => {
                self.discard(&k);
                evictions.add(EVICT_FRAGMENTS, 1);
                true
            }
            None => false,
        }
    }

    /// Drops reassemblies older than the timeout at `now`.
    pub fn expire(&mut self, now: Timestamp, errors: &mut Counters) {
        while let Some(key) = self.map.first_due(now) {
            self.remove(&key);
            errors.add(ERR_FRAGMENT_TIMEOUT, 1);
        }
    }

    /// Adds one fragment; returns the whole payload when this fragment completed it.
    pub fn add(
        &mut self,
        key: FragKey,
        ts: Timestamp,
        frag: &Fragment<'_>,
        errors: &mut Counters,
        evictions: &mut Counters,
    ) -> Option<Reassembled> {
        let start = frag.offset;
        let Some(end) = start
            .checked_add(frag.data.len())
            .filter(|&e| e <= MAX_DATAGRAM)
        else {
            errors.add(ERR_FRAGMENT, 1);
            self.discard(&key);
            return None;
        };
        // Every fragment but the last carries a multiple of 8 bytes (RFC 791, RFC 8200).
        if frag.more && (frag.data.len() % 8 != 0 || frag.data.is_empty()) {
            errors.add(ERR_FRAGMENT, 1);
            self.discard(&key);
            return None;
        }
        // A reassembly older than the timeout is stale: start over.
        if let Some(e) = self.map.get(&key) {
            if ts.micros().saturating_sub(e.first_ts.micros()) >= self.timeout_us {
                self.discard(&key);
                errors.add(ERR_FRAGMENT_TIMEOUT, 1);
            }
        }
        if !self.map.contains(&key) {
            if self.map.len() >= self.map.capacity() {
                self.evict_oldest_except(None, evictions);
            }
            let deadline = Timestamp(ts.micros().saturating_add(self.timeout_us));
            self.map.insert(
                key,
                Entry {
                    first_ts: ts,
                    pieces: Vec::new(),
                    held: 0,
                    have: Vec::new(),
                    total: None,
                    first: None,
                },
                deadline,
            );
        }
        // Check consistency before touching the buffer.
        let verdict = {
            let e = self.map.get(&key)?;
            check(e, start, end, frag)
        };
        match verdict {
            Check::Duplicate => return None,
            Check::Bad => {
                errors.add(ERR_FRAGMENT, 1);
                self.discard(&key);
                return None;
            }
            Check::Ok => {}
        }
        // Make room for the fragment's bytes.
        let grow = frag.data.len();
        while grow > 0 && self.bytes.saturating_add(grow) > self.cap_bytes {
            if !self.evict_oldest_except(Some(&key), evictions) {
                // This datagram alone exceeds the byte cap.
                errors.add(ERR_FRAGMENT, 1);
                self.discard(&key);
                return None;
            }
        }
        let e = self.map.get_mut(&key)?;
        e.pieces.push((start, frag.data.into()));
        e.held += grow;
        self.bytes = self.bytes.saturating_add(grow);
        insert_range(&mut e.have, start, end);
        if !frag.more {
            e.total = Some(end);
        }
        if frag.first.is_some() {
            e.first = frag.first;
        }
        let complete = match (e.total, e.first, e.have.as_slice()) {
            (Some(t), Some(_), [(0, hi)]) => *hi == t,
            _ => false,
        };
        if !complete {
            return None;
        }
        let mut e = self.remove(&key)?;
        let (proto, hdr_len) = e.first?;
        // The pieces cover [0, total) without overlap: in offset order they are the datagram.
        e.pieces.sort_unstable_by_key(|p| p.0);
        let mut buf = self.pool.pop().unwrap_or_default();
        buf.clear();
        buf.reserve_exact(e.total.unwrap_or(0));
        for (_, data) in &e.pieces {
            buf.extend_from_slice(data);
        }
        buf.truncate(e.total.unwrap_or(0));
        Some(Reassembled {
            buf,
            proto,
            hdr_len,
        })
    }
}

enum Check {
    Ok,
    Duplicate,
    Bad,
}

fn check(e: &Entry, start: usize, end: usize, frag: &Fragment<'_>) -> Check {
    if e.pieces.len() >= MAX_PIECES {
        return Check::Bad;
    }
    // Beyond or disagreeing with a known end.
    if let Some(t) = e.total {
        if end > t || (!frag.more && end != t) {
            return Check::Bad;
        }
    } else if !frag.more && e.have.last().is_some_and(|&(_, hi)| hi > end) {
        return Check::Bad;
    }
    if frag.first.is_some() && e.first.is_some_and(|f| Some(f) != frag.first) {
        return Check::Bad;
    }
    for &(lo, hi) in &e.have {
        if lo < end && start < hi {
            // Overlap: an exact resend of bytes already held is a duplicate, anything else
            // is inconsistent.
            let same = start >= lo && end <= hi && held_equals(e, start, frag.data);
            return if same { Check::Duplicate } else { Check::Bad };
        }
    }
    Check::Ok
}

/// Whether the bytes held at `[start, start + data.len())` (known to be all held) are `data`.
fn held_equals(e: &Entry, start: usize, data: &[u8]) -> bool {
    let end = start + data.len();
    e.pieces.iter().all(|(off, bytes)| {
        let (lo, hi) = (*off, off + bytes.len());
        let (a, b) = (lo.max(start), hi.min(end));
        a >= b || bytes.get(a - lo..b - lo) == data.get(a - start..b - start)
    })
}

/// Inserts `[start, end)` (known not to overlap) into sorted coalesced ranges.
fn insert_range(have: &mut Vec<(usize, usize)>, start: usize, end: usize) {
    let pos = have.partition_point(|&(lo, _)| lo < start);
    have.insert(pos, (start, end));
    merge_with_next(have, pos);
    if let Some(prev) = pos.checked_sub(1) {
        merge_with_next(have, prev);
    }
}

fn merge_with_next(have: &mut Vec<(usize, usize)>, i: usize) {
    let next = have.get(i + 1).copied();
    if let (Some(cur), Some((lo, hi))) = (have.get_mut(i), next) {
        if cur.1 == lo {
            cur.1 = hi;
            have.remove(i + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32) -> FragKey {
        FragKey {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            id,
            proto: 17,
        }
    }

    fn frag(offset: usize, more: bool, data: &[u8]) -> Fragment<'_> {
        Fragment {
            offset,
            more,
            data,
            first: (offset == 0).then_some((17, 20)),
        }
    }

    fn table() -> (FragTable, Counters, Counters) {
        (
            FragTable::new(4, 1 << 20, 30),
            Counters::default(),
            Counters::default(),
        )
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_micros(s * 1_000_000)
    }

    #[test]
    fn in_order_and_reversed() {
        let data: Vec<u8> = (0..40u8).collect();
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
            let (mut ft, mut er, mut ev) = table();
            let pieces = [
                frag(0, true, &data[..16]),
                frag(16, true, &data[16..32]),
                frag(32, false, &data[32..]),
            ];
            let mut got = None;
            for (n, i) in order.iter().enumerate() {
                let r = ft.add(key(1), t(0), &pieces[*i], &mut er, &mut ev);
                assert_eq!(r.is_some(), n == 2);
                got = got.or(r);
            }
            let r = got.unwrap();
            assert_eq!(r.buf, data);
            assert_eq!((r.proto, r.hdr_len), (17, 20));
            assert_eq!(ft.len(), 0);
            assert_eq!(ft.bytes(), 0);
            assert_eq!(er, Counters::default());
        }
    }

    #[test]
    fn overlap_drops_datagram_duplicate_is_ignored() {
        let data = [7u8; 24];
        let (mut ft, mut er, mut ev) = table();
        assert!(ft
            .add(key(1), t(0), &frag(0, true, &data[..16]), &mut er, &mut ev)
            .is_none());
        // exact duplicate: ignored, reassembly goes on
        assert!(ft
            .add(key(1), t(0), &frag(0, true, &data[..16]), &mut er, &mut ev)
            .is_none());
        assert_eq!(er.get(ERR_FRAGMENT), 0);
        assert!(ft
            .add(
                key(1),
                t(0),
                &frag(16, false, &data[16..]),
                &mut er,
                &mut ev
            )
            .is_some());
        // overlapping different bytes: dropped and counted
        assert!(ft
            .add(key(2), t(0), &frag(0, true, &[1; 16]), &mut er, &mut ev)
            .is_none());
        assert!(ft
            .add(key(2), t(0), &frag(8, false, &[2; 16]), &mut er, &mut ev)
            .is_none());
        assert_eq!(er.get(ERR_FRAGMENT), 1);
        assert_eq!(ft.len(), 0);
        // a later fragment of the dropped datagram does not complete anything
        assert!(ft
            .add(key(2), t(0), &frag(16, false, &[2; 8]), &mut er, &mut ev)
            .is_none());
    }

    #[test]
    fn inconsistent_lengths_are_dropped() {
        let (mut ft, mut er, mut ev) = table();
        // non-final fragment not a multiple of 8
        assert!(ft
            .add(key(1), t(0), &frag(0, true, &[0; 10]), &mut er, &mut ev)
            .is_none());
        assert_eq!(er.get(ERR_FRAGMENT), 1);
        // two different ends
        ft.add(key(2), t(0), &frag(16, false, &[0; 8]), &mut er, &mut ev);
        ft.add(key(2), t(0), &frag(32, false, &[0; 8]), &mut er, &mut ev);
        assert_eq!(er.get(ERR_FRAGMENT), 2);
        // beyond 64 KiB
        ft.add(
            key(3),
            t(0),
            &frag(65528, false, &[0; 16]),
            &mut er,
            &mut ev,
        );
        assert_eq!(er.get(ERR_FRAGMENT), 3);
        assert_eq!(ft.len(), 0);
    }

    #[test]
    fn timeout_expires_and_restarts() {
        let (mut ft, mut er, mut ev) = table();
        ft.add(key(1), t(0), &frag(0, true, &[1; 8]), &mut er, &mut ev);
        ft.expire(t(29), &mut er);
        assert_eq!(ft.len(), 1);
        ft.expire(t(30), &mut er);
        assert_eq!(ft.len(), 0);
        assert_eq!(er.get(ERR_FRAGMENT_TIMEOUT), 1);
        // a stale entry met by a late fragment starts over instead of completing
        ft.add(key(2), t(0), &frag(0, true, &[1; 8]), &mut er, &mut ev);
        assert!(ft
            .add(key(2), t(100), &frag(8, false, &[1; 8]), &mut er, &mut ev)
            .is_none());
        assert_eq!(er.get(ERR_FRAGMENT_TIMEOUT), 2);
    }

    #[test]
    fn full_table_evicts_oldest() {
        let (mut ft, mut er, mut ev) = table();
        for id in 0..6 {
            ft.add(key(id), t(0), &frag(0, true, &[1; 8]), &mut er, &mut ev);
        }
        assert_eq!(ft.len(), 4);
        assert_eq!(ev.get(EVICT_FRAGMENTS), 2);
        // ids 0 and 1 were evicted: their tails complete nothing; id 5 completes.
        assert!(ft
            .add(key(0), t(0), &frag(8, false, &[1; 8]), &mut er, &mut ev)
            .is_none());
        assert!(ft
            .add(key(5), t(0), &frag(8, false, &[1; 8]), &mut er, &mut ev)
            .is_some());
    }

    #[test]
    fn byte_cap_evicts_then_refuses() {
        let mut ft = FragTable::new(100, 64, 30);
        let (mut er, mut ev) = (Counters::default(), Counters::default());
        ft.add(key(1), t(0), &frag(0, true, &[1; 40]), &mut er, &mut ev);
        ft.add(key(2), t(0), &frag(0, true, &[1; 40]), &mut er, &mut ev);
        assert_eq!(ev.get(EVICT_FRAGMENTS), 1);
        assert!(ft.bytes() <= 64);
        // alone larger than the cap
        ft.add(key(3), t(0), &frag(0, true, &[1; 80]), &mut er, &mut ev);
        assert_eq!(er.get(ERR_FRAGMENT), 1);
        assert!(ft.bytes() <= 64);
    }

    #[test]
    fn ranges_coalesce() {
        let mut h = Vec::new();
        insert_range(&mut h, 16, 24);
        insert_range(&mut h, 0, 8);
        insert_range(&mut h, 32, 40);
        insert_range(&mut h, 8, 16);
        assert_eq!(h, vec![(0, 24), (32, 40)]);
        insert_range(&mut h, 24, 32);
        assert_eq!(h, vec![(0, 40)]);
    }
}
