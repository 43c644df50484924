//! BASELINE, not library code: the reverse map as it was before issue 10
//! (`git show 5f12c8e:pagemap/src/rmap.rs`), kept here only so that the
//! `rmap` benchmark can measure the new augmented tree against it in the
//! same run. Entries sorted by first page in a `Vec` with an implicit
//! segment tree of the maximum last page, rebuilt in O(n) on every add and
//! remove; remove finds its entry by a linear scan. Only the names, the
//! visibility and the doc comments changed; `MappingId` is its own here.

use std::sync::Arc;

use pagemap::{FrameId, Mapper, ShootdownBatch, Victims};

/// Names one entry of a [`RebuildMap`].
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
pub struct RebuildMap {
    entries: Vec<Entry>,
    /// `max_last[size + i]` = entry i's last; inner nodes the max of children.
    max_last: Vec<u64>,
    size: usize,
    next_id: u64,
    pinned: usize,
}

impl RebuildMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds `mapper`: a sorted insert, then the O(n) rebuild.
    pub fn add(&mut self, mapper: Arc<dyn Mapper>) -> MappingId {
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

    /// Removes entry `id`: a linear scan, a shift, then the O(n) rebuild.
    pub fn remove(&mut self, id: MappingId) -> Option<Arc<dyn Mapper>> {
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
    pub fn for_each_overlapping(
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
    pub fn covers(&self, index: u64) -> bool {
        let mut hit = false;
        self.for_each_overlapping(index, index, &mut |_, _| {
            hit = true;
            false
        });
        hit
    }

    /// The last page of the pinned mappers covering `index` (the furthest
    /// one), or `None` if no pinned mapper covers it.
    pub fn pinned_until(&self, index: u64) -> Option<u64> {
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
    pub fn overlapping(&self, first: u64, last: u64) -> Vec<Arc<dyn Mapper>> {
        let mut out = Vec::new();
        self.for_each_overlapping(first, last, &mut |_, m| {
            out.push(m.clone());
            true
        });
        out
    }

    /// Whether any pinned mapper covers `index`.
    pub fn pinned_covers(&self, index: u64) -> bool {
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

/// The trivial mapper the `rmap` benchmark registers: a page range that
/// maps nothing (the index's cost alone is measured).
#[derive(Debug)]
pub struct Span(pub u64, pub u64);

impl Mapper for Span {
    fn file_pages(&self) -> (u64, u64) {
        (self.0, self.1)
    }
    fn is_pinned(&self) -> bool {
        false
    }
    fn revoke(&self, _: &Victims, _: &mut ShootdownBatch) {}
    fn reap(&self, _: &Victims, _: &mut dyn FnMut(u64)) {}
    fn clean(&self, _: u64, _: u64, _: &mut ShootdownBatch, _: &mut dyn FnMut(u64, FrameId)) {}
    fn zap(&self, _: u64, _: u64, _: &mut ShootdownBatch) {}
}
