//! The reverse map: which mappings (VM regions) map a page map, indexed by
//! file-page range so that "who maps page i" and "who maps [a, b]" do not
//! scan every mapping, and adding or removing a mapping costs O(log n).
//!
//! The mappers themselves are `crate::mapper`'s [`Mapper`] trait objects.
//!
//! A mapper is added fully initialised (it is an immutable object behind an
//! `Arc`), and stays until removed: a VM region that is split is replaced by
//! adding both halves before removing the whole, so no page is ever left
//! uncovered in between (Akaros shrank first: defect 4).
//!
//! # Structure
//!
//! An interval tree in the manner of Linux's augmented-rbtree
//! `interval_tree`, balanced as an AVL tree instead: one node per mapping,
//! ordered by `(first page, add sequence number)` (unique, so several
//! mappers with identical ranges are distinct nodes, visited in the order
//! they were added), each node also holding the largest inclusive last page
//! in its subtree. A query for `[a, b]` descends only into subtrees whose
//! largest last page reaches `a`, and stops at the first node (in order)
//! that starts beyond `b`.
//!
//! Nodes live in an arena (a `Vec`) linked by `u32` slot numbers, with a
//! free list threaded through the freed slots. A [`MappingId`] carries its
//! node's slot and the mapping's sequence number, so `remove` finds the
//! node directly and rejects a stale id (its slot freed or reused) by the
//! sequence number, which is never reused.
//!
//! # Costs (n mappings, k of them reported)
//!
//! * `add`, `remove`: O(log n): one root-to-node path walked, rebalanced and
//!   its subtree maxima recomputed (AVL height is at most 1.44 log2(n + 2),
//!   so the recursion is at most ~46 frames deep even at 2^32 mappings).
//!   `add` pushes onto the arena only when no slot is free (the `Vec`'s
//!   doubling makes that amortised O(1); see Memory).
//! * `covers` stops at the first hit: O(log n). `for_each_overlapping`,
//!   `overlapping`, `pinned_until`, `pinned_covers` (which stops at the
//!   first pinned hit): the
//!   nodes visited are the search path of `b` plus the ancestors of the k
//!   reported nodes, O(log n + k log(n / k)) in the worst case, O(log n + k)
//!   when the hits are neighbours in page order (the common case of a page
//!   mapped by a few regions).
//!
//! # Memory
//!
//! The arena holds as many nodes as the most mappings ever present at once
//! (its high-water mark), 64 bytes each; a freed slot is reused by the next
//! `add`, so once the high-water mark is reached add and remove never
//! allocate. The arena is freed when the map is dropped.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cmp::Ordering;
use core::fmt;

use crate::mapper::Mapper;

/// Names one entry of a reverse map (returned by `add_mapping`), of that
/// page map only.
///
/// Ordered by when the entry was added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MappingId {
    /// The add sequence number: unique over the map's life (never 0).
    seq: u64,
    /// The arena slot of the entry's node.
    slot: u32,
    /// The reverse map's owner (its page map's id), so that an id of one
    /// map is unknown to every other (their sequence numbers coincide).
    owner: u32,
}

/// No node (a child link, or the end of the free list).
const NIL: u32 = u32::MAX;

/// One mapping, a node of the tree; or, while `mapper` is `None`, a free
/// arena slot whose `left` links the free list.
struct Node {
    first: u64,
    last: u64,
    /// The largest `last` in this node's subtree, itself included.
    max_last: u64,
    /// The add sequence number; the tie-break of the order and the check
    /// that a `MappingId` still names this node. 0 while free.
    seq: u64,
    mapper: Option<Arc<dyn Mapper>>,
    left: u32,
    right: u32,
    /// Of this node's subtree (a leaf is 1); at most ~46 for 2^32 nodes.
    height: u8,
}

/// Interval index: an augmented AVL tree in an arena (see the module docs).
pub(crate) struct ReverseMap {
    nodes: Vec<Node>,
    root: u32,
    /// Head of the free-slot list (through `Node::left`).
    free: u32,
    len: usize,
    next_seq: u64,
    pinned: usize,
    /// What every [`MappingId`] of this map carries (see there).
    owner: u32,
}

impl Default for ReverseMap {
    fn default() -> Self {
        Self {
            nodes: Vec::new(),
            root: NIL,
            free: NIL,
            len: 0,
            next_seq: 0,
            pinned: 0,
            owner: 0,
        }
    }
}

impl ReverseMap {
    /// An empty reverse map of owner 0 (the unit tests').
    #[cfg(all(test, not(pagemap_loom)))]
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// An empty reverse map whose ids name `owner` (its page map's id).
    pub(crate) fn for_owner(owner: u32) -> Self {
        Self {
            owner,
            ..Self::default()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn add(&mut self, mapper: Arc<dyn Mapper>) -> MappingId {
        let (first, last) = mapper.file_pages();
        assert!(first <= last, "mapper covers no page: {first}..={last}");
        self.next_seq += 1;
        let seq = self.next_seq;
        if mapper.is_pinned() {
            self.pinned += 1;
        }
        let node = Node {
            first,
            last,
            max_last: last,
            seq,
            mapper: Some(mapper),
            left: NIL,
            right: NIL,
            height: 1,
        };
        let slot = if self.free != NIL {
            let slot = self.free;
            self.free = self.nodes[slot as usize].left;
            self.nodes[slot as usize] = node;
            slot
        } else {
            // NIL itself is not a slot.
            let slot = u32::try_from(self.nodes.len())
                .ok()
                .filter(|&s| s != NIL)
                .expect("reverse map full (2^32 - 1 mappings)");
            self.nodes.push(node);
            slot
        };
        self.root = self.insert(self.root, slot);
        self.len += 1;
        MappingId {
            seq,
            slot,
            owner: self.owner,
        }
    }

    pub(crate) fn remove(&mut self, id: MappingId) -> Option<Arc<dyn Mapper>> {
        if id.owner != self.owner {
            return None; // another map's id
        }
        let node = self.nodes.get(id.slot as usize)?;
        // A freed slot has seq 0; a reused one a later seq.
        if node.seq != id.seq || node.mapper.is_none() {
            return None;
        }
        let key = (node.first, node.seq);
        self.root = self.delete(self.root, key);
        let node = &mut self.nodes[id.slot as usize];
        let mapper = node.mapper.take().expect("live node has a mapper");
        node.seq = 0;
        node.left = self.free;
        node.right = NIL;
        self.free = id.slot;
        self.len -= 1;
        if mapper.is_pinned() {
            self.pinned -= 1;
        }
        Some(mapper)
    }

    // ---- the AVL tree ----------------------------------------------------

    fn key(&self, n: u32) -> (u64, u64) {
        let n = &self.nodes[n as usize];
        (n.first, n.seq)
    }

    fn height(&self, n: u32) -> u8 {
        if n == NIL {
            0
        } else {
            self.nodes[n as usize].height
        }
    }

    /// Recomputes `n`'s height and subtree maximum from its children's.
    fn update(&mut self, n: u32) {
        let (l, r) = (self.nodes[n as usize].left, self.nodes[n as usize].right);
        let mut max_last = self.nodes[n as usize].last;
        for c in [l, r] {
            if c != NIL {
                max_last = max_last.max(self.nodes[c as usize].max_last);
            }
        }
        let height = 1 + self.height(l).max(self.height(r));
        let node = &mut self.nodes[n as usize];
        node.max_last = max_last;
        node.height = height;
    }

    fn rotate_right(&mut self, n: u32) -> u32 {
        let l = self.nodes[n as usize].left;
        self.nodes[n as usize].left = self.nodes[l as usize].right;
        self.nodes[l as usize].right = n;
        self.update(n);
        self.update(l);
        l
    }

    fn rotate_left(&mut self, n: u32) -> u32 {
        let r = self.nodes[n as usize].right;
        self.nodes[n as usize].right = self.nodes[r as usize].left;
        self.nodes[r as usize].left = n;
        self.update(n);
        self.update(r);
        r
    }

    /// Updates `n` after a change below it and restores the AVL balance
    /// (children's heights differ by at most 1); returns the subtree's root.
    fn rebalance(&mut self, n: u32) -> u32 {
        self.update(n);
        let (l, r) = (self.nodes[n as usize].left, self.nodes[n as usize].right);
        let (hl, hr) = (self.height(l), self.height(r));
        if hl > hr + 1 {
            let (ll, lr) = (self.nodes[l as usize].left, self.nodes[l as usize].right);
            if self.height(ll) < self.height(lr) {
                self.nodes[n as usize].left = self.rotate_left(l);
            }
            self.rotate_right(n)
        } else if hr > hl + 1 {
            let (rl, rr) = (self.nodes[r as usize].left, self.nodes[r as usize].right);
            if self.height(rr) < self.height(rl) {
                self.nodes[n as usize].right = self.rotate_right(r);
            }
            self.rotate_left(n)
        } else {
            n
        }
    }

    /// Links the detached node `new` into the subtree at `n`; returns the
    /// subtree's new root.
    fn insert(&mut self, n: u32, new: u32) -> u32 {
        if n == NIL {
            return new;
        }
        if self.key(new) < self.key(n) {
            let l = self.insert(self.nodes[n as usize].left, new);
            self.nodes[n as usize].left = l;
        } else {
            let r = self.insert(self.nodes[n as usize].right, new);
            self.nodes[n as usize].right = r;
        }
        self.rebalance(n)
    }

    /// Unlinks the node with `key` (present) from the subtree at `n`;
    /// returns the subtree's new root.
    fn delete(&mut self, n: u32, key: (u64, u64)) -> u32 {
        debug_assert_ne!(n, NIL, "reverse map node {key:?} not in the tree");
        match key.cmp(&self.key(n)) {
            Ordering::Less => {
                let l = self.delete(self.nodes[n as usize].left, key);
                self.nodes[n as usize].left = l;
            }
            Ordering::Greater => {
                let r = self.delete(self.nodes[n as usize].right, key);
                self.nodes[n as usize].right = r;
            }
            Ordering::Equal => {
                let (l, r) = (self.nodes[n as usize].left, self.nodes[n as usize].right);
                // A lone child is already a balanced, updated subtree.
                if l == NIL {
                    return r;
                }
                if r == NIL {
                    return l;
                }
                // Two children: n's in-order successor takes its place.
                let (r, succ) = self.take_min(r);
                self.nodes[succ as usize].left = l;
                self.nodes[succ as usize].right = r;
                return self.rebalance(succ);
            }
        }
        self.rebalance(n)
    }

    /// Unlinks the first node of the subtree at `n` (not NIL); returns the
    /// subtree's new root and that node.
    fn take_min(&mut self, n: u32) -> (u32, u32) {
        let l = self.nodes[n as usize].left;
        if l == NIL {
            return (self.nodes[n as usize].right, n);
        }
        let (l, min) = self.take_min(l);
        self.nodes[n as usize].left = l;
        (self.rebalance(n), min)
    }

    // ---- queries ---------------------------------------------------------

    /// Calls `f` on every mapper overlapping `[first, last]`, in order of
    /// their first page; stops early if `f` returns false.
    pub(crate) fn for_each_overlapping(
        &self,
        first: u64,
        last: u64,
        f: &mut dyn FnMut(MappingId, &Arc<dyn Mapper>) -> bool,
    ) {
        self.visit(self.root, first, last, f);
    }

    /// In-order over the subtree at `n`, skipping subtrees that end before
    /// `first`; false if `f` asked to stop.
    fn visit(
        &self,
        mut n: u32,
        first: u64,
        last: u64,
        f: &mut dyn FnMut(MappingId, &Arc<dyn Mapper>) -> bool,
    ) -> bool {
        // The right child is a loop, not a call: the recursion is only as
        // deep as the left turns.
        while n != NIL {
            let node = &self.nodes[n as usize];
            if node.max_last < first {
                return true;
            }
            if !self.visit(node.left, first, last, f) {
                return false;
            }
            if node.first > last {
                // So does everything after it in order.
                return true;
            }
            if node.last >= first {
                let id = MappingId {
                    seq: node.seq,
                    slot: n,
                    owner: self.owner,
                };
                if !f(id, node.mapper.as_ref().expect("live node has a mapper")) {
                    return false;
                }
            }
            n = node.right;
        }
        true
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
    #[cfg(all(test, not(pagemap_loom)))]
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
        let mut list = f.debug_list();
        self.for_each_overlapping(0, u64::MAX, &mut |id, m| {
            let (first, last) = m.file_pages();
            list.entry(&(id, first, last, m.is_pinned()));
            true
        });
        list.finish()
    }
}

#[cfg(all(test, not(pagemap_loom)))]
impl ReverseMap {
    /// Asserts the tree's invariants: keys in order, AVL balance, heights
    /// and subtree maxima right, counts and the free list consistent.
    fn check_invariants(&self) {
        let mut seen = 0;
        let mut prev = None;
        self.check_subtree(self.root, &mut prev, &mut seen);
        assert_eq!(seen, self.len, "reachable nodes");
        let mut free = 0;
        let mut s = self.free;
        while s != NIL {
            let n = &self.nodes[s as usize];
            assert!(n.mapper.is_none() && n.seq == 0, "free slot {s} in use");
            free += 1;
            assert!(free <= self.nodes.len(), "free list cycles");
            s = n.left;
        }
        assert_eq!(free + self.len, self.nodes.len(), "leaked slots");
        let pinned = self
            .nodes
            .iter()
            .filter(|n| n.mapper.as_ref().is_some_and(|m| m.is_pinned()))
            .count();
        assert_eq!(pinned, self.pinned, "pinned count");
    }

    /// Checks the subtree at `n` (keys after `prev`); returns its height
    /// and maximum last page.
    fn check_subtree(&self, n: u32, prev: &mut Option<(u64, u64)>, seen: &mut usize) -> (u8, u64) {
        if n == NIL {
            return (0, 0);
        }
        let node = &self.nodes[n as usize];
        assert!(
            node.mapper.is_some() && node.seq != 0,
            "free slot {n} linked"
        );
        assert!(node.seq <= self.next_seq);
        let (hl, ml) = self.check_subtree(node.left, prev, seen);
        let key = (node.first, node.seq);
        assert!(prev.is_none_or(|p| p < key), "order: {prev:?} then {key:?}");
        *prev = Some(key);
        *seen += 1;
        assert_eq!(
            node.mapper.as_ref().map(|m| m.file_pages()),
            Some((node.first, node.last))
        );
        let (hr, mr) = self.check_subtree(node.right, prev, seen);
        assert!(hl.abs_diff(hr) <= 1, "unbalanced at {n}: {hl} vs {hr}");
        assert_eq!(node.height, 1 + hl.max(hr), "height at {n}");
        let mut max = node.last;
        if node.left != NIL {
            max = max.max(ml);
        }
        if node.right != NIL {
            max = max.max(mr);
        }
        assert_eq!(node.max_last, max, "max_last at {n}");
        (node.height, max)
    }
}

#[cfg(all(test, not(pagemap_loom)))]
mod tests {
    use super::*;
    use crate::frame::FrameId;
    use crate::mapper::Victims;
    use crate::shootdown::ShootdownBatch;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    struct R(u64, u64, bool);
    impl Mapper for R {
        fn file_pages(&self) -> (u64, u64) {
            (self.0, self.1)
        }
        fn is_pinned(&self) -> bool {
            self.2
        }
        fn revoke(&self, _: &Victims, _: &mut ShootdownBatch) {}
        fn reap(&self, _: &Victims, _: &mut dyn FnMut(u64, FrameId)) {}
        fn clean(&self, _: u64, _: u64, _: &mut ShootdownBatch, _: &mut crate::Harvest<'_>) {}
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

    /// A random range: mostly small ones over a few hundred pages (so they
    /// overlap and repeat), some at the top of the index space, a few whole.
    fn random_range(rng: &mut StdRng) -> (u64, u64) {
        match rng.random_range(0..10) {
            0..=5 => {
                let first = rng.random_range(0..300);
                (first, first + rng.random_range(0..40))
            }
            6 | 7 => {
                let last = u64::MAX - rng.random_range(0..3);
                (last - rng.random_range(0..60), last)
            }
            8 => (rng.random_range(0..5), u64::MAX - rng.random_range(0..5)),
            _ => {
                let first = rng.random_range(0..=u64::MAX);
                (first, rng.random_range(first..=u64::MAX))
            }
        }
    }

    fn random_query(rng: &mut StdRng) -> (u64, u64) {
        if rng.random_bool(0.7) {
            random_range(rng)
        } else {
            // A single page, often the very top.
            let i = if rng.random_bool(0.3) {
                u64::MAX - rng.random_range(0..4)
            } else {
                rng.random_range(0..350)
            };
            (i, i)
        }
    }

    /// Thousands of interleaved adds, removes (live and stale ids) and
    /// queries against a Vec scanned naively, the tree's invariants checked
    /// after every operation.
    #[test]
    fn random_operations_match_a_naive_scan() {
        let mut rng = StdRng::seed_from_u64(0x5eed_0a1a);
        let mut r = ReverseMap::new();
        // (first, last, pinned, id), in the order added.
        let mut model: Vec<(u64, u64, bool, MappingId)> = Vec::new();
        let mut dead: Vec<MappingId> = Vec::new();
        for step in 0..12_000 {
            match rng.random_range(0..20) {
                // Add: a fresh range, or a copy of a live one.
                0..=6 => {
                    let (first, last) = match model.len() {
                        n if n > 0 && rng.random_bool(0.25) => {
                            let e = model[rng.random_range(0..n)];
                            (e.0, e.1)
                        }
                        _ => random_range(&mut rng),
                    };
                    let pinned = rng.random_bool(0.2);
                    let id = r.add(Arc::new(R(first, last, pinned)));
                    assert!(model.iter().all(|e| e.3 != id), "id reused");
                    model.push((first, last, pinned, id));
                }
                // Remove a live mapping.
                7..=12 if !model.is_empty() => {
                    let e = model.remove(rng.random_range(0..model.len()));
                    let m = r.remove(e.3).expect("live id removes");
                    assert_eq!(m.file_pages(), (e.0, e.1));
                    dead.push(e.3);
                }
                // A removed id names nothing, even once its slot is reused.
                13 if !dead.is_empty() => {
                    let id = dead[rng.random_range(0..dead.len())];
                    assert!(r.remove(id).is_none(), "stale {id:?} removed");
                }
                // Now and then empty the map (all slots go free).
                _ if step % 3000 == 2999 => {
                    for e in model.drain(..) {
                        assert!(r.remove(e.3).is_some());
                        dead.push(e.3);
                    }
                }
                _ => {
                    let (a, b) = random_query(&mut rng);
                    let mut want: Vec<_> = model
                        .iter()
                        .filter(|e| e.0 <= b && e.1 >= a)
                        .copied()
                        .collect();
                    // In order of first page, ties in order added.
                    want.sort_by_key(|e| (e.0, e.3));
                    let want_ids: Vec<_> = want.iter().map(|e| e.3).collect();
                    let mut got = Vec::new();
                    r.for_each_overlapping(a, b, &mut |id, m| {
                        got.push((id, m.file_pages()));
                        true
                    });
                    let got_ids: Vec<_> = got.iter().map(|g| g.0).collect();
                    assert_eq!(got_ids, want_ids, "query {a}..={b}");
                    assert!(got.iter().zip(&want).all(|(g, w)| g.1 == (w.0, w.1)));
                    let snap = r.overlapping(a, b);
                    assert_eq!(snap.len(), want.len());
                    // Stopping early yields a prefix.
                    if !want.is_empty() {
                        let stop = rng.random_range(1..=want.len());
                        let mut prefix = Vec::new();
                        r.for_each_overlapping(a, b, &mut |id, _| {
                            prefix.push(id);
                            prefix.len() < stop
                        });
                        assert_eq!(prefix, want_ids[..stop]);
                    }
                    let covering: Vec<_> = model.iter().filter(|e| e.0 <= a && e.1 >= a).collect();
                    assert_eq!(r.covers(a), !covering.is_empty(), "covers {a}");
                    assert_eq!(
                        r.pinned_covers(a),
                        covering.iter().any(|e| e.2),
                        "pinned_covers {a}"
                    );
                    assert_eq!(
                        r.pinned_until(a),
                        covering.iter().filter(|e| e.2).map(|e| e.1).max(),
                        "pinned_until {a}"
                    );
                }
            }
            assert_eq!(r.len(), model.len());
            r.check_invariants();
        }
    }

    /// Once the arena has reached the high-water mark, adding and removing
    /// reuses freed slots: the arena neither grows nor reallocates.
    #[test]
    fn steady_state_reuses_slots() {
        let mut r = ReverseMap::new();
        let mut live: Vec<_> = (0..100)
            .map(|i| r.add(Arc::new(R(i * 3, i * 3 + 10, false))))
            .collect();
        let (len, cap, ptr) = (r.nodes.len(), r.nodes.capacity(), r.nodes.as_ptr());
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..2000 {
            let id = live.swap_remove(rng.random_range(0..live.len()));
            assert!(r.remove(id).is_some());
            let first = rng.random_range(0..400);
            live.push(r.add(Arc::new(R(first, first + 5, false))));
        }
        r.check_invariants();
        assert_eq!(
            (r.nodes.len(), r.nodes.capacity(), r.nodes.as_ptr()),
            (len, cap, ptr)
        );
        assert!(
            std::mem::size_of::<Node>() <= 64,
            "a node fits a cache line"
        );
    }

    #[test]
    fn identical_ranges_in_order_added() {
        let mut r = ReverseMap::new();
        let ids: Vec<_> = (0..5)
            .map(|_| r.add(Arc::new(R(10, u64::MAX, false))))
            .collect();
        let early = r.add(Arc::new(R(3, 10, true)));
        let mut got = Vec::new();
        r.for_each_overlapping(10, 10, &mut |id, _| {
            got.push(id);
            true
        });
        let mut want = vec![early];
        want.extend(&ids);
        assert_eq!(got, want);
        assert!(r.remove(ids[2]).is_some());
        assert!(r.remove(ids[2]).is_none());
        assert_eq!(r.pinned_until(10), Some(10));
        assert_eq!(r.overlapping(11, u64::MAX).len(), 4);
        r.check_invariants();
    }
}
