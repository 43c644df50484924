//! A concurrent radix tree from `u64` page indices to [`Slot`] words.
//!
//! * 64-way nodes (6 index bits a level; 4-way under loom so models stay
//!   small), height grown on demand and shrunk when the top becomes a chain,
//!   covering the full 64-bit index space (index `u64::MAX` included).
//! * Lookups take no lock: they run pinned in a crossbeam epoch and follow
//!   `Acquire` loads of child pointers published with `Release`.
//! * Writers (insert, delete, height changes, marks) hold the page map's
//!   writer lock; the tree trusts its callers for that (the `&Locked` token).
//! * A node is unlinked only when it has no entry, so a leaf slot with a
//!   non-zero refcount (a live page reference) keeps its node alive without
//!   any epoch guard. Unlinked nodes are freed through the epoch, after every
//!   reader that could be inside them has unpinned.
//! * Each node has per-mark bitmaps (DIRTY, TOWRITE): bit i set means slot i
//!   (leaf) or some slot under child i (interior) carries the mark, so
//!   "next marked" skips clean subtrees.

use crate::frame::FrameId;
use crate::slot::{Slot, SlotWord};
use crate::sync::{epoch, AtomicU32, AtomicU64, AtomicUsize, Mutex, MutexGuard, Ordering};
use alloc::boxed::Box;

/// Index bits per level.
#[cfg(not(pagemap_loom))]
pub const BITS: u32 = 6;
/// Index bits per level (loom: fan-out 4).
#[cfg(pagemap_loom)]
pub const BITS: u32 = 2;
/// Children per node.
pub const FANOUT: usize = 1 << BITS;
const MASK: u64 = FANOUT as u64 - 1;
// Marks are one u64 bitmap per node.
const _: () = assert!(FANOUT <= 64);

/// The per-node marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// The page is dirty.
    Dirty = 0,
    /// The page is tagged for the writeback in progress.
    ToWrite = 1,
}
const NR_MARKS: usize = 2;

/// The page map's writer lock (tree shape, slot publication and yank,
/// marks, the end of file). Locking it is the only way to get a [`Locked`].
#[derive(Debug, Default)]
pub(crate) struct WriterLock(Mutex<()>);

impl WriterLock {
    /// An unlocked writer lock.
    pub(crate) fn new() -> Self {
        Self(Mutex::new(()))
    }

    /// Takes the lock; the guard is the proof the tree's writers ask for.
    pub(crate) fn lock(&self) -> Locked<'_> {
        Locked {
            lock: self,
            _guard: self.0.lock(),
        }
    }
}

/// Proof that the caller holds the page map's writer lock: the guard of
/// [`WriterLock::lock`] (it cannot be built otherwise). Dropping it unlocks.
/// It names its lock, so a tree refuses the proof of another map's lock.
pub(crate) struct Locked<'a> {
    lock: &'a WriterLock,
    _guard: MutexGuard<'a, ()>,
}

struct Node {
    /// 0 for a leaf; a node at level l covers `BITS * (l + 1)` index bits.
    level: u32,
    /// Non-empty entries (writer lock only; an atomic so the node is `Sync`).
    count: AtomicU32,
    marks: [AtomicU64; NR_MARKS],
    /// Leaf: slot words. Interior: child pointers (0 = none).
    slots: [Slot; FANOUT],
    /// Set instead of freeing under loom, so a model catches a reader that
    /// reaches a reclaimed node without actually touching freed memory.
    #[cfg(pagemap_loom)]
    reclaimed: crate::sync::AtomicBool,
}

impl Node {
    fn alloc(level: u32) -> *mut Node {
        #[cfg(not(pagemap_loom))]
        {
            // SAFETY: all fields are atomics or integers, for which zero is valid.
            let mut b = unsafe { Box::<Node>::new_zeroed().assume_init() };
            b.level = level;
            Box::into_raw(b)
        }
        #[cfg(pagemap_loom)]
        {
            Box::into_raw(Box::new(Node {
                level,
                count: AtomicU32::new(0),
                marks: core::array::from_fn(|_| AtomicU64::new(0)),
                slots: core::array::from_fn(|_| Slot::new()),
                reclaimed: crate::sync::AtomicBool::new(false),
            }))
        }
    }

    #[inline]
    fn shift(&self) -> u32 {
        self.level * BITS
    }

    #[inline]
    fn offset(&self, index: u64) -> usize {
        ((index >> self.shift()) & MASK) as usize
    }

    /// Whether this node, as a root, covers `index`.
    #[inline]
    fn covers(&self, index: u64) -> bool {
        let bits = BITS * (self.level + 1);
        bits >= 64 || index >> bits == 0
    }

    #[inline]
    fn child(&self, i: usize) -> *const Node {
        // Acquire: pairs with the Release store that linked the child, so
        // its initialised contents are visible.
        self.slots[i].raw().load(Ordering::Acquire) as usize as *const Node
    }

    fn count(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }

    fn add_count(&self, d: i32) {
        let c = self.count();
        let n = c.checked_add_signed(d).expect("node count out of range");
        assert!(n as usize <= FANOUT);
        self.count.store(n, Ordering::Relaxed);
    }

    #[cfg(pagemap_loom)]
    #[inline]
    fn check_live(&self) {
        assert!(
            !self.reclaimed.load(Ordering::Relaxed),
            "a reader reached a reclaimed radix node"
        );
    }
    #[cfg(not(pagemap_loom))]
    #[inline]
    fn check_live(&self) {}
}

/// The tree. See the module docs for the concurrency rules.
pub(crate) struct RadixTree {
    /// Root node pointer (0 = empty tree). Its level gives the height.
    root: AtomicU64,
    nodes: AtomicUsize,
    /// The page map's writer lock, here so that a writer's proof can be
    /// checked against the tree it writes (see [`Locked`]).
    writer: WriterLock,
}

/// Node pointer as stored in a slot word.
fn to_word(p: *const Node) -> u64 {
    p as usize as u64
}

impl RadixTree {
    pub(crate) fn new() -> Self {
        Self {
            root: AtomicU64::new(0),
            nodes: AtomicUsize::new(0),
            writer: WriterLock::new(),
        }
    }

    /// Takes the page map's writer lock (see [`WriterLock`]).
    pub(crate) fn lock(&self) -> Locked<'_> {
        self.writer.lock()
    }

    /// The writers' check of their proof: a guard of another map's lock
    /// would let two writers change this tree at once (a data race on its
    /// shape), so this is an `assert!`, one pointer compare.
    #[inline]
    fn check_locked(&self, lock: &Locked<'_>) {
        assert!(
            core::ptr::eq(lock.lock, &self.writer),
            "the writer lock of another page map"
        );
    }

    /// Bytes of one node.
    pub(crate) const NODE_BYTES: usize = core::mem::size_of::<Node>();

    /// Nodes currently linked.
    pub(crate) fn nodes(&self) -> usize {
        self.nodes.load(Ordering::Relaxed)
    }

    /// Levels from root to leaf (0 when empty).
    pub(crate) fn height(&self, _g: &epoch::Guard) -> u32 {
        let r = self.root_ptr();
        // SAFETY: pinned by `_g`; nodes are freed only through the epoch.
        if r.is_null() {
            0
        } else {
            unsafe { (*r).level + 1 }
        }
    }

    #[inline]
    fn root_ptr(&self) -> *const Node {
        // Acquire: pairs with the Release that published a new root.
        self.root.load(Ordering::Acquire) as usize as *const Node
    }

    /// Finds the leaf slot of `index`, if its leaf exists. Lock-free.
    ///
    /// The slot may be empty. It stays valid while `guard` is pinned, and
    /// beyond that for as long as it is non-empty.
    #[inline]
    pub(crate) fn lookup<'g>(&self, index: u64, _guard: &'g epoch::Guard) -> Option<&'g Slot> {
        let mut n = self.root_ptr();
        if n.is_null() {
            return None;
        }
        // SAFETY: `n` was reachable while we are pinned, so it is not freed
        // before `_guard` unpins (unlinked nodes are freed through the epoch).
        let mut node = unsafe { &*n };
        node.check_live();
        if !node.covers(index) {
            return None;
        }
        // A child is always one level below its parent, so the level comes
        // from the root: reading each node's `level` would cost a second
        // cache line per node (about a third of a cold lookup).
        let mut level = node.level;
        loop {
            let i = ((index >> (level * BITS)) & MASK) as usize;
            if level == 0 {
                return Some(&node.slots[i]);
            }
            n = node.child(i);
            if n.is_null() {
                return None;
            }
            // SAFETY: as above; `n` was linked when loaded while pinned.
            node = unsafe { &*n };
            node.check_live();
            debug_assert_eq!(node.level, level - 1);
            level -= 1;
        }
    }

    /// Finds or creates the leaf slot for `index`, growing the tree.
    /// Returns the slot (maybe non-empty: the caller checks).
    pub(crate) fn slot_for_insert<'a>(&'a self, index: u64, lock: &Locked<'_>) -> InsertSlot<'a> {
        self.check_locked(lock);
        let mut r = self.root_ptr();
        if r.is_null() {
            let mut level = 0;
            while BITS * (level + 1) < 64 && index >> (BITS * (level + 1)) != 0 {
                level += 1;
            }
            r = self.new_node(level);
            // Release: the node's initialised contents before its pointer.
            self.root.store(to_word(r), Ordering::Release);
        }
        // SAFETY: writer lock held, so no node is unlinked or freed under us.
        let mut root = unsafe { &*r };
        while !root.covers(index) {
            let up = self.new_node(root.level + 1);
            // SAFETY: `up` is ours until published below.
            let upn = unsafe { &*up };
            upn.slots[0].raw().store(to_word(r), Ordering::Relaxed);
            upn.count.store(1, Ordering::Relaxed);
            for m in 0..NR_MARKS {
                if root.marks[m].load(Ordering::Relaxed) != 0 {
                    upn.marks[m].store(1, Ordering::Relaxed);
                }
            }
            // Release: publishes the new root with its child link.
            self.root.store(to_word(up), Ordering::Release);
            r = up;
            root = upn;
        }
        let mut node = root;
        while node.level > 0 {
            let i = node.offset(index);
            let mut c = node.child(i);
            if c.is_null() {
                c = self.new_node(node.level - 1);
                // Release: readers that see the link see an initialised node.
                node.slots[i].raw().store(to_word(c), Ordering::Release);
                node.add_count(1);
            }
            // SAFETY: linked under the writer lock we hold.
            node = unsafe { &*c };
        }
        InsertSlot {
            slot: &node.slots[node.offset(index)],
            leaf: node,
        }
    }

    fn new_node(&self, level: u32) -> *mut Node {
        self.nodes.fetch_add(1, Ordering::Relaxed);
        Node::alloc(level)
    }

    /// Nodes from the root down to the leaf holding `index` (writer lock
    /// held). A fixed array: marking a page dirty allocates nothing.
    fn path<'a>(&'a self, index: u64, lock: &Locked<'_>) -> Path<'a> {
        self.check_locked(lock);
        let mut out = Path {
            nodes: [None; MAX_HEIGHT],
            len: 0,
        };
        let mut n = self.root_ptr();
        // SAFETY (loop): writer lock held: nothing is unlinked while we walk.
        if n.is_null() || !unsafe { &*n }.covers(index) {
            return out;
        }
        while !n.is_null() {
            let node = unsafe { &*n };
            out.nodes[out.len] = Some(node);
            out.len += 1;
            if node.level == 0 {
                break;
            }
            n = node.child(node.offset(index));
        }
        out
    }

    /// Empties the yanked slot of `index`, clears its marks, and (if
    /// `unlink`) unlinks and retires nodes that became empty; without it
    /// they stay linked, empty, until a later removal in them or the drop.
    /// Returns the frame it held.
    pub(crate) fn remove_yanked(
        &self,
        index: u64,
        unlink: bool,
        lock: &Locked<'_>,
    ) -> Option<FrameId> {
        let path = self.path(index, lock);
        let path = path.as_slice();
        let leaf = *path.last().expect("yanked slot has a leaf");
        assert_eq!(leaf.level, 0, "yanked slot has a leaf");
        let frame = leaf.slots[leaf.offset(index)].clear_yanked();
        leaf.add_count(-1);
        for m in [Mark::Dirty, Mark::ToWrite] {
            self.clear_mark_on_path(path, index, m);
        }
        if !unlink {
            return frame;
        }
        let guard = epoch::pin();
        // Unlink empty nodes bottom-up.
        for depth in (0..path.len()).rev() {
            let node = path[depth];
            if node.count() != 0 {
                break;
            }
            if depth == 0 {
                // The root itself is empty.
                self.root.store(0, Ordering::Release);
            } else {
                let parent = path[depth - 1];
                parent.slots[parent.offset(index)]
                    .raw()
                    .store(0, Ordering::Release);
                parent.add_count(-1);
            }
            self.retire(node, &guard);
        }
        self.shrink(&guard);
        frame
    }

    /// While the root is an interior node whose only child is child 0, make
    /// that child the root (lookups get shorter; index space is unchanged).
    fn shrink(&self, guard: &epoch::Guard) {
        loop {
            let r = self.root_ptr();
            if r.is_null() {
                return;
            }
            // SAFETY: writer lock held by our caller.
            let root = unsafe { &*r };
            if root.level == 0 || root.count() != 1 {
                return;
            }
            let c = root.child(0);
            if c.is_null() {
                return;
            }
            self.root.store(to_word(c), Ordering::Release);
            self.retire(root, guard);
        }
    }

    fn retire(&self, node: &Node, guard: &epoch::Guard) {
        self.nodes.fetch_sub(1, Ordering::Relaxed);
        let p = node as *const Node as usize;
        // SAFETY: the node is unlinked (no new reader can reach it); readers
        // already inside are pinned, and the epoch runs this after they unpin.
        unsafe {
            guard.defer_unchecked(move || reclaim(p as *mut Node));
        }
    }

    /// Sets `mark` on the (present) slot of `index` and its ancestors.
    pub(crate) fn set_mark(&self, index: u64, mark: Mark, lock: &Locked<'_>) {
        let path = self.path(index, lock);
        let path = path.as_slice();
        assert!(
            path.last().is_some_and(|l| l.level == 0),
            "marking an absent index"
        );
        for node in path {
            node.marks[mark as usize].fetch_or(1 << node.offset(index), Ordering::Relaxed);
        }
    }

    /// Clears `mark` on the slot of `index`, and on ancestors left unmarked.
    pub(crate) fn clear_mark(&self, index: u64, mark: Mark, lock: &Locked<'_>) {
        let path = self.path(index, lock);
        self.clear_mark_on_path(path.as_slice(), index, mark);
    }

    fn clear_mark_on_path(&self, path: &[&Node], index: u64, mark: Mark) {
        for node in path.iter().rev() {
            let left = node.marks[mark as usize]
                .fetch_and(!(1 << node.offset(index)), Ordering::Relaxed)
                & !(1 << node.offset(index));
            if left != 0 {
                break;
            }
        }
    }

    /// Whether the slot of `index` carries `mark`.
    pub(crate) fn has_mark(&self, index: u64, mark: Mark, guard: &epoch::Guard) -> bool {
        let Some(_) = self.lookup(index, guard) else {
            return false;
        };
        let mut n = self.root_ptr();
        loop {
            // SAFETY: pinned by `guard`.
            let node = unsafe { &*n };
            let i = node.offset(index);
            if node.marks[mark as usize].load(Ordering::Relaxed) & (1 << i) == 0 {
                return false;
            }
            if node.level == 0 {
                return true;
            }
            n = node.child(i);
            if n.is_null() {
                return false;
            }
        }
    }

    /// The first index `>= from` whose slot holds a page (present or loading,
    /// not yanked), with its slot. Lock-free; a concurrent change may or may
    /// not be seen.
    pub(crate) fn next_present<'g>(
        &self,
        from: u64,
        guard: &'g epoch::Guard,
    ) -> Option<(u64, &'g Slot)> {
        self.next_where(from, None, guard)
    }

    /// The first index `>= from` carrying `mark`.
    pub(crate) fn next_marked<'g>(
        &self,
        from: u64,
        mark: Mark,
        guard: &'g epoch::Guard,
    ) -> Option<(u64, &'g Slot)> {
        self.next_where(from, Some(mark), guard)
    }

    fn next_where<'g>(
        &self,
        from: u64,
        mark: Option<Mark>,
        _guard: &'g epoch::Guard,
    ) -> Option<(u64, &'g Slot)> {
        let r = self.root_ptr();
        if r.is_null() {
            return None;
        }
        // SAFETY: pinned by `_guard`.
        let root = unsafe { &*r };
        if !root.covers(from) {
            return None;
        }
        Self::scan(root, 0, from, mark)
    }

    /// Depth-first scan of `node` (covering indices from `base`) for the
    /// first match at or after `from`.
    fn scan(node: &Node, base: u64, from: u64, mark: Option<Mark>) -> Option<(u64, &Slot)> {
        node.check_live();
        let shift = node.shift();
        let first = if from > base {
            ((from - base) >> shift) as usize
        } else {
            0
        };
        let mut bits: u64 = if FANOUT == 64 { !0 } else { (1 << FANOUT) - 1 };
        if let Some(m) = mark {
            bits &= node.marks[m as usize].load(Ordering::Relaxed);
        }
        bits &= !0u64 << first;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let start = base + ((i as u64) << shift);
            if node.level == 0 {
                let w = node.slots[i].load();
                if w.is_present() {
                    return Some((start, &node.slots[i]));
                }
                continue;
            }
            let c = node.child(i);
            if c.is_null() {
                continue;
            }
            // SAFETY: linked while we are pinned (see `lookup`).
            let child = unsafe { &*c };
            if let Some(hit) = Self::scan(child, start, from.max(start), mark) {
                return Some(hit);
            }
        }
        None
    }
}

/// Levels in the tallest tree (the full 64-bit index space).
const MAX_HEIGHT: usize = 64usize.div_ceil(BITS as usize);

/// Root-to-leaf nodes of one index, without allocating.
struct Path<'a> {
    nodes: [Option<&'a Node>; MAX_HEIGHT],
    len: usize,
}

impl<'a> Path<'a> {
    fn as_slice(&self) -> &[&'a Node] {
        let filled = &self.nodes[..self.len];
        // SAFETY: `Option<&Node>` has the layout of `&Node` (null-pointer
        // optimisation) and the first `len` entries are all `Some`.
        unsafe { core::slice::from_raw_parts(filled.as_ptr().cast::<&'a Node>(), filled.len()) }
    }
}

/// A leaf slot found (or made) for an insert, with its leaf.
pub(crate) struct InsertSlot<'a> {
    /// The slot.
    pub(crate) slot: &'a Slot,
    leaf: &'a Node,
}

impl InsertSlot<'_> {
    /// Publishes `word` into the (empty) slot and counts it in the leaf.
    pub(crate) fn fill(&self, word: SlotWord) {
        self.slot.publish(word);
        self.leaf.add_count(1);
    }
}

/// Frees (or, under loom, poisons and leaks) an unlinked node.
///
/// # Safety
/// `p` came from `Node::alloc`, is unlinked, and no reader can be inside it.
unsafe fn reclaim(p: *mut Node) {
    #[cfg(not(pagemap_loom))]
    // SAFETY: per the contract, we own the last reference to a boxed node.
    drop(unsafe { Box::from_raw(p) });
    #[cfg(pagemap_loom)]
    // SAFETY: per the contract the node is still allocated; it is leaked.
    unsafe {
        (*p).reclaimed.store(true, Ordering::Relaxed)
    };
}

impl Drop for RadixTree {
    fn drop(&mut self) {
        fn free(p: *const Node) {
            if p.is_null() {
                return;
            }
            // SAFETY: `&mut self`: no reader or writer remains; each node is
            // reachable once and freed once.
            let node = unsafe { Box::from_raw(p as *mut Node) };
            if node.level > 0 {
                for s in node.slots.iter() {
                    free(s.raw().load(Ordering::Relaxed) as usize as *const Node);
                }
            }
        }
        free(self.root_ptr());
    }
}

#[cfg(all(test, not(pagemap_loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_tree_takes_the_proof_of_its_own_lock() {
        let tree = RadixTree::new();
        let g = tree.lock();
        let _slot = tree.slot_for_insert(3, &g);
    }

    #[test]
    #[should_panic(expected = "the writer lock of another page map")]
    fn a_tree_refuses_the_proof_of_another_maps_lock() {
        let (a, b) = (RadixTree::new(), RadixTree::new());
        let g = a.lock();
        let _slot = b.slot_for_insert(3, &g);
    }
}
