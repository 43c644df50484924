//! The file size's changes that every size changer shares: keeping faults
//! off the pages an extension is about to make file data, zeroing the old
//! partial last page's tail behind a write-protect (Linux's
//! `pagecache_isize_extended` and the zeroing of the range), and zeroing
//! the tail of a new partial last page on a shrink. The entry points are
//! [`PageMap::set_size`] and [`PageMap::truncate`] (`crate::remove`) and
//! [`PageMap::write_at`] (`bytes`).
//!
//! Every size change holds `invalidate_lock` exclusively, so size changes
//! never overlap (lock order: invalidate lock -> remover lock -> writer
//! lock; an extending `write_at` takes no remover lock).
//!
//! **Why an extension keeps faults off.** Bytes a CPU writes through a
//! shared mapping into the old last page past the old size are not file
//! data (a write-back leaves them out); an extension must not make them
//! file data. So it zeroes that tail, but a CPU writing between the zeroing
//! and the raise of the size would put such bytes back. Write faults do not
//! take the page lock ([`PageMap::page_mkwrite`] installs under the
//! handler's own lock), so the page lock cannot keep them out; instead:
//!
//! 1. `extending := first page` (SeqCst): a fault on a page from there on
//!    counts itself on the slot word (SeqCst RMW), then reads `extending`
//!    (SeqCst) and backs off ([`Error::WouldBlock`](crate::Error::WouldBlock), the handler retries),
//!    the store-buffering pair truncate uses with `end`;
//! 2. wait until no fault is between its count and its install on the old
//!    last page (its mapping count, SeqCst): either a fault saw `extending`,
//!    or we see its count and wait for its entry to be installed;
//! 3. write-protect every mapping of the page and shoot down
//!    ([`Mapper::clean`](crate::Mapper::clean)), handing the dirty bits
//!    taken to the page (none is lost): no CPU writes it from now on, and
//!    none can get a writable entry until `extending` is cleared;
//! 4. zero the tail under the page lock (a [`PageRef::write`](crate::PageRef::write) past the old
//!    size is refused under the same lock, and the size still is the old
//!    one);
//! 5. raise the size and the end, then clear `extending`.
//!
//! A write-back of the page in flight meanwhile writes the bytes below the
//! old size (its length was read under the page lock): never a byte past
//! it. One after the raise writes the zeroed tail.

use crate::mapper::Harvest;
use crate::shootdown::ShootdownBatch;
use crate::slot;
use crate::sync::{sb, Ordering};
use crate::PAGE_SIZE;

use super::PageMap;

/// A page of zeroes to copy from.
static ZEROES: [u8; PAGE_SIZE] = [0; PAGE_SIZE];

/// An extension in progress (see the module docs): faults on pages from
/// its first page on back off until it is dropped.
pub(crate) struct Extending<'a> {
    map: &'a PageMap,
}

impl Drop for Extending<'_> {
    fn drop(&mut self) {
        // SeqCst: after the raise of the size and the end, so a fault that
        // sees `extending` cleared sees the new end too.
        self.map.extending.store(u64::MAX, Ordering::SeqCst);
    }
}

impl PageMap {
    /// Steps 1 to 4 of an extension past `old` bytes (module docs): from
    /// here until the returned guard is dropped, faults on pages from the
    /// one holding byte `old` on back off, and the old partial last page's
    /// tail `[old, page end)` reads as zeroes in the cache. The caller
    /// holds `invalidate_lock` exclusively and raises the size (and the
    /// end) before dropping the guard.
    pub(crate) fn begin_extend(&self, old: u64) -> Extending<'_> {
        debug_assert_ne!(old, u64::MAX, "a map without an end cannot grow");
        let index = old / PAGE_SIZE as u64;
        // SeqCst, through `sb`: the first half of the store-buffering pair
        // with the faults' counts (then our read of the slot's mapping
        // count in `wait_for_mappers`).
        sb::store(&self.extending, index, Ordering::SeqCst);
        let guard = Extending { map: self };
        let tail = (old % PAGE_SIZE as u64) as usize;
        if tail == 0 {
            // No partial page: pages from `index` on were beyond the end,
            // so nothing maps them.
            return guard;
        }
        // From the reserve: a user at the refcount limit must not stop a
        // size change. Not cached: the store holds no byte past the size
        // (write-backs write none), so a later load reads zeroes there.
        let Ok(Some(page)) = self.get(index, slot::get_reserved) else {
            return guard;
        };
        self.wait_for_mappers(index);
        self.write_protect(index);
        self.zero_tail(page.frame, tail);
        guard
    }

    /// Step 5: raises the size to `bytes` and the end to `end` pages under
    /// the writer lock (the caller holds an [`Extending`]).
    pub(crate) fn raise_size(&self, _ext: &Extending<'_>, bytes: u64, end: u64) {
        let _g = self.tree.lock();
        // SeqCst: ordered with `end` (see `size`).
        self.size.store(bytes, Ordering::SeqCst);
        // SeqCst, through `sb`: as truncate's store of the end.
        sb::store(&self.end, end, Ordering::SeqCst);
    }

    /// Sets the size to `bytes` and the end to `end` pages under the
    /// writer lock, for a shrink (the caller holds the invalidate and
    /// remover locks, and runs the cache's half of the cut after this).
    pub(crate) fn lower_size(&self, bytes: u64, end: u64) {
        let _g = self.tree.lock();
        // SeqCst: ordered with `end` (see `size`).
        self.size.store(bytes, Ordering::SeqCst);
        // SeqCst, through `sb`: the first half of the store-buffering pair
        // with the faults (see `crate::fault`).
        sb::store(&self.end, end, Ordering::SeqCst);
    }

    /// After a shrink to `bytes`: zeroes the tail of the new partial last
    /// page in the cache, once a write-back of it in flight (with the old
    /// length) has reached the store, so that the store's cut comes after
    /// it. The caller holds the remover lock.
    pub(crate) fn zero_tail_after_shrink(&self, bytes: u64) {
        let tail = (bytes % PAGE_SIZE as u64) as usize;
        if tail == 0 || bytes == u64::MAX {
            return;
        }
        let index = bytes / PAGE_SIZE as u64;
        let Ok(Some(page)) = self.get(index, slot::get_reserved) else {
            return;
        };
        let frame = page.frame;
        // WRITEBACK first, as truncate's zeroing: a write of the old bytes
        // in flight reaches the store before the caller cuts it.
        self.pool.lock_bit(frame, crate::frame::flags::WRITEBACK);
        self.zero_tail(frame, tail);
        self.pool.unlock_bit(frame, crate::frame::flags::WRITEBACK);
    }

    /// Zeroes bytes `[from, PAGE_SIZE)` of `frame` under its page lock (a
    /// page the caller holds). The page's dirtiness does not change: those
    /// bytes are past the size, and the store holds zeroes there.
    fn zero_tail(&self, frame: crate::frame::FrameId, from: usize) {
        self.pool.lock(frame);
        let r = self.pool.write(frame, from, &ZEROES[from..]);
        self.pool.unlock(frame);
        debug_assert!(r.is_ok(), "a tail inside the page");
    }

    /// Write-protects and cleans every mapping's entry of page `index`,
    /// with one shootdown per address space, then hands the dirty bits
    /// taken to the page (after the shootdown: see `Harvest`), as a
    /// writeback's first step does.
    fn write_protect(&self, index: u64) {
        let mut mappers = alloc::vec::Vec::new();
        self.rmap
            .read()
            .for_each_overlapping(index, index, &mut |_, m| {
                mappers.push(m.clone());
                true
            });
        if mappers.is_empty() {
            return;
        }
        let mut batch = ShootdownBatch::new();
        let mut harvest = Harvest::new(self);
        for m in &mappers {
            m.clean(index, index, &mut batch, &mut harvest);
        }
        batch.flush();
        harvest.settle();
    }
}
