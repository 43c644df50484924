//! The reverse map: which mappings (VM regions) map a page map, indexed by
//! file-page range so that "who maps page i" and "who maps [a, b]" cost
//! O(log n + k), not a scan of every mapping.
//!
//! The page map reaches its mappers only through the [`Mapper`] trait it
//! defines here; the `vmr` crate implements it for its VM regions, and a
//! kernel linking `pagemap` alone implements it over its real page tables.
//!
//! A mapper is added fully initialised (it is an immutable object behind an
//! `Arc`), and stays until removed: a VM region that is split is replaced by
//! adding both halves before removing the whole, so no page is ever left
//! uncovered in between (Akaros shrank first: defect 4).

use std::fmt;
use std::sync::Arc;

use crate::frame::FrameId;
use crate::shootdown::ShootdownBatch;

/// What the page map needs from something that maps its pages.
///
/// The page map calls the unmapping methods from its removal, writeback and
/// truncate protocols (`docs/design.md`, section 5), with no page-map lock held. Page
/// table entries are weak references: an implementation never holds a page
/// count for an entry, but whoever takes a dirty bit out of an entry of a
/// cached page must either hold a reference to that page while it does so
/// and mark the page dirty before letting go (munmap, `clean`), or be the
/// remover that owns the page (`reap`). Otherwise a remover could free the
/// page between the two steps and the write would be lost.
pub trait Mapper: Send + Sync {
    /// The file pages it covers, `(first, last)` inclusive (so a mapping can
    /// reach index `u64::MAX`). Must not change while it is in a reverse map.
    fn file_pages(&self) -> (u64, u64);

    /// Whether its pages are pinned (MAP_LOCKED): removal skips them.
    fn is_pinned(&self) -> bool;

    /// Removal pass 2: makes every page table entry of this mapping that
    /// maps one of `victims` (that frame, at that file page) not present,
    /// keeping its frame and dirty bit, and adds its address space to
    /// `batch` if it changed any entry. A concurrent fault that finds such
    /// an entry rebuilds it, keeping the dirty bit.
    fn revoke(&self, victims: &Victims, batch: &mut ShootdownBatch);

    /// Removal pass 4, after the batch has flushed: clears every entry that
    /// is still not present and maps a victim's frame, calling `dirty(index)`
    /// for each whose dirty bit was set. An entry a fault made present again
    /// meanwhile is left alone (that fault took a reference, so the page
    /// stays); an entry a copy-on-write fault holds locked is left to it.
    fn reap(&self, victims: &Victims, dirty: &mut dyn FnMut(u64));

    /// Writeback: write-protects and cleans the entries of file pages
    /// `[first, last]` that allow writing, and adds its address space to
    /// `batch` if it changed any entry. For each entry that was dirty it
    /// calls `dirty(index, frame)` while holding a reference to the page
    /// (the callback takes its own); the caller marks those pages dirty only
    /// after the batch has flushed, since until then a CPU may still write
    /// through a stale translation, and a writeback that snapshot the page
    /// in between would clean it without those writes. After the flush, a
    /// write faults or sets a dirty bit again.
    fn clean(
        &self,
        first: u64,
        last: u64,
        batch: &mut ShootdownBatch,
        dirty: &mut dyn FnMut(u64, FrameId),
    );

    /// Truncate: clears every entry of file pages `[first, last]`, private
    /// copy-on-write copies included (their frames are freed through
    /// `batch`, after the flush), and adds its address space to `batch` if
    /// it changed any. Dirty bits are dropped: the data is being discarded.
    fn zap(&self, first: u64, last: u64, batch: &mut ShootdownBatch);
}

/// The pages a removal is taking away: `(file page, frame)` pairs in page
/// order, as the removal's first pass marked them.
#[derive(Clone, Debug, Default)]
pub struct Victims {
    pages: Vec<(u64, FrameId)>,
}

impl Victims {
    /// Victims from pairs sorted by page, each page once.
    ///
    /// # Panics
    /// If the pages are not strictly increasing.
    pub fn new(pages: Vec<(u64, FrameId)>) -> Self {
        assert!(
            pages.windows(2).all(|w| w[0].0 < w[1].0),
            "victims must be sorted by page, each page once"
        );
        Self { pages }
    }

    /// Number of pages.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// All of them, in page order.
    pub fn pages(&self) -> &[(u64, FrameId)] {
        &self.pages
    }

    /// The frame being removed at `index`, if that page is a victim.
    pub fn frame_at(&self, index: u64) -> Option<FrameId> {
        self.pages
            .binary_search_by_key(&index, |&(i, _)| i)
            .ok()
            .map(|at| self.pages[at].1)
    }

    /// The victims among file pages `[first, last]`, in page order.
    pub fn within(&self, first: u64, last: u64) -> &[(u64, FrameId)] {
        let lo = self.pages.partition_point(|&(i, _)| i < first);
        let hi = self.pages.partition_point(|&(i, _)| i <= last);
        &self.pages[lo..hi.max(lo)]
    }
}

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

    #[test]
    fn victims_lookup() {
        let f = |n| FrameId::new(n).unwrap();
        let v = Victims::new(vec![(2, f(7)), (5, f(8)), (9, f(9))]);
        assert_eq!(v.frame_at(5), Some(f(8)));
        assert_eq!(v.frame_at(4), None);
        assert_eq!(v.within(3, 9).len(), 2);
        assert_eq!(v.within(10, 20).len(), 0);
        assert_eq!(v.within(0, u64::MAX).len(), 3);
    }

    #[test]
    #[should_panic(expected = "sorted")]
    fn victims_must_be_sorted() {
        let f = |n| FrameId::new(n).unwrap();
        Victims::new(vec![(5, f(1)), (2, f(2))]);
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
