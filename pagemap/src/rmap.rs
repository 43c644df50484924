//! The reverse map: which mappings (VM regions) map a page map, indexed by
//! file-page range so that "who maps page i" and "who maps [a, b]" cost
//! O(log n + k), not a scan of every mapping.
//!
//! The mappers themselves are `crate::mapper`'s [`Mapper`] trait objects.
//!
//! A mapper is added fully initialised (it is an immutable object behind an
//! `Arc`), and stays until removed: a VM region that is split is replaced by
//! adding both halves before removing the whole, so no page is ever left
//! uncovered in between (Akaros shrank first: defect 4).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use crate::mapper::Mapper;

/// Names one entry of a reverse map (returned by `add_mapping`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MappingId(u64);

struct Entry {
    first: u64,
    last: u64,
    id: MappingId,
    mapper: Arc<dyn Mapper>,
}

/// Interval index: entries sorted by `first`, with an implicit segment tree
/// of the largest `last` over each run of entries for pruning. Queries are
/// O(log n + k); changes rebuild the tree in O(n) (mmap and munmap are rare
/// next to the lookups removal and writeback make).
#[derive(Default)]
pub(crate) struct ReverseMap {
    entries: Vec<Entry>,
    /// `max_last[size + i]` = entry i's last; inner nodes the max of children.
    max_last: Vec<u64>,
    size: usize,
    next_id: u64,
    pinned: usize,
}

impl ReverseMap {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn add(&mut self, mapper: Arc<dyn Mapper>) -> MappingId {
        let (first, last) = mapper.file_pages();
        assert!(first <= last, "mapper covers no page: {first}..={last}");
        self.next_id += 1;
        let id = MappingId(self.next_id);
        let pos = self
            .entries
            .partition_point(|e| (e.first, e.id) < (first, id));
        if mapper.is_pinned() {
            self.pinned += 1;
        }
        self.entries.insert(
            pos,
            Entry {
                first,
                last,
                id,
                mapper,
            },
        );
        self.rebuild();
        id
    }

    pub(crate) fn remove(&mut self, id: MappingId) -> Option<Arc<dyn Mapper>> {
        let pos = self.entries.iter().position(|e| e.id == id)?;
        let e = self.entries.remove(pos);
        if e.mapper.is_pinned() {
            self.pinned -= 1;
        }
        self.rebuild();
        Some(e.mapper)
    }

    fn rebuild(&mut self) {
        let n = self.entries.len();
        self.size = n.next_power_of_two().max(1);
        self.max_last.clear();
        self.max_last.resize(2 * self.size, 0);
        for (i, e) in self.entries.iter().enumerate() {
            self.max_last[self.size + i] = e.last;
        }
        for i in (1..self.size).rev() {
            self.max_last[i] = self.max_last[2 * i].max(self.max_last[2 * i + 1]);
        }
    }

    /// Calls `f` on every mapper overlapping `[first, last]`, in order of
    /// their first page; stops early if `f` returns false.
    pub(crate) fn for_each_overlapping(
        &self,
        first: u64,
        last: u64,
        f: &mut dyn FnMut(MappingId, &Arc<dyn Mapper>) -> bool,
    ) {
        // Only entries starting at or before `last` can overlap.
        let end = self.entries.partition_point(|e| e.first <= last);
        if end > 0 {
            self.visit(1, 0, self.size, end, first, f);
        }
    }

    /// Depth-first over tree node `node` covering entries `[lo, hi)`.
    fn visit(
        &self,
        node: usize,
        lo: usize,
        hi: usize,
        end: usize,
        first: u64,
        f: &mut dyn FnMut(MappingId, &Arc<dyn Mapper>) -> bool,
    ) -> bool {
        if lo >= end || self.max_last[node] < first {
            return true;
        }
        if hi - lo == 1 {
            let e = &self.entries[lo];
            return f(e.id, &e.mapper);
        }
        let mid = (lo + hi) / 2;
        self.visit(2 * node, lo, mid, end, first, f)
            && self.visit(2 * node + 1, mid, hi, end, first, f)
    }

    /// Whether any mapper covers `index`.
    pub(crate) fn covers(&self, index: u64) -> bool {
        let mut hit = false;
        self.for_each_overlapping(index, index, &mut |_, _| {
            hit = true;
            false
        });
        hit
    }

    /// The last page of the pinned mappers covering `index` (the furthest
    /// one), or `None` if no pinned mapper covers it.
    pub(crate) fn pinned_until(&self, index: u64) -> Option<u64> {
        if self.pinned == 0 {
            return None;
        }
        let mut until = None;
        self.for_each_overlapping(index, index, &mut |_, m| {
            if m.is_pinned() {
                let (_, last) = m.file_pages();
                until = Some(until.map_or(last, |u: u64| u.max(last)));
            }
            true
        });
        until
    }

    /// The mappers overlapping `[first, last]` (a snapshot).
    pub(crate) fn overlapping(&self, first: u64, last: u64) -> Vec<Arc<dyn Mapper>> {
        let mut out = Vec::new();
        self.for_each_overlapping(first, last, &mut |_, m| {
            out.push(m.clone());
            true
        });
        out
    }

    /// Whether any pinned mapper covers `index`.
    pub(crate) fn pinned_covers(&self, index: u64) -> bool {
        if self.pinned == 0 {
            return false;
        }
        let mut hit = false;
        self.for_each_overlapping(index, index, &mut |_, m| {
            hit = m.is_pinned();
            !hit
        });
        hit
    }
}

impl fmt::Debug for ReverseMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.entries
                    .iter()
                    .map(|e| (e.id, e.first, e.last, e.mapper.is_pinned())),
            )
            .finish()
    }
}

#[cfg(all(test, not(pagemap_loom)))]
mod tests {
    use super::*;
    use crate::frame::FrameId;
    use crate::mapper::Victims;
    use crate::shootdown::ShootdownBatch;

    struct R(u64, u64, bool);
    impl Mapper for R {
        fn file_pages(&self) -> (u64, u64) {
            (self.0, self.1)
        }
        fn is_pinned(&self) -> bool {
            self.2
        }
        fn revoke(&self, _: &Victims, _: &mut ShootdownBatch) {}
        fn reap(&self, _: &Victims, _: &mut dyn FnMut(u64)) {}
        fn clean(&self, _: u64, _: u64, _: &mut ShootdownBatch, _: &mut dyn FnMut(u64, FrameId)) {}
        fn zap(&self, _: u64, _: u64, _: &mut ShootdownBatch) {}
    }

    fn ids(r: &ReverseMap, a: u64, b: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        r.for_each_overlapping(a, b, &mut |_, m| {
            out.push(m.file_pages());
            true
        });
        out
    }

    #[test]
    fn overlap_queries_match_a_scan() {
        let mut r = ReverseMap::new();
        let mut all = Vec::new();
        let mut x = 12345u64;
        for _ in 0..200 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let first = (x >> 33) % 1000;
            let len = (x >> 13) % 50;
            all.push((
                first,
                first + len,
                r.add(Arc::new(R(first, first + len, false))),
            ));
        }
        for (i, &(_, _, id)) in all.iter().enumerate() {
            if i % 3 == 0 {
                assert!(r.remove(id).is_some());
            }
        }
        let live: Vec<_> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 0)
            .map(|(_, e)| *e)
            .collect();
        for a in (0..1100).step_by(7) {
            let b = a + (a % 30);
            let mut want: Vec<_> = live
                .iter()
                .filter(|e| e.0 <= b && e.1 >= a)
                .map(|e| (e.0, e.1))
                .collect();
            let mut got = ids(&r, a, b);
            want.sort();
            got.sort();
            assert_eq!(got, want, "query {a}..={b}");
            assert_eq!(r.covers(a), live.iter().any(|e| e.0 <= a && e.1 >= a));
        }
    }

    #[test]
    fn top_of_index_space_and_pinned() {
        let mut r = ReverseMap::new();
        let id = r.add(Arc::new(R(u64::MAX - 3, u64::MAX, true)));
        r.add(Arc::new(R(0, 0, false)));
        assert!(r.covers(u64::MAX));
        assert!(r.pinned_covers(u64::MAX - 1));
        assert!(!r.pinned_covers(0));
        assert!(r.covers(0));
        r.remove(id);
        assert!(!r.covers(u64::MAX));
        assert!(r.remove(id).is_none());
        assert_eq!(r.len(), 1);
    }
}
