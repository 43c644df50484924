//! [`MemStore`]: pages in memory, with injectable errors.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};

use super::{BackingStore, PageBuf};
use crate::error::StoreError;
use crate::frame::PageSrc;
use crate::sync::PlainMutex;

/// An in-memory store, with injectable errors for tests and fuzzers.
///
/// ```
/// use pagemap::{BackingStore, MemStore, PAGE_SIZE};
/// let store = MemStore::new();
/// store.set_page(3, &[7u8; PAGE_SIZE]);
/// let mut buf = [0u8; PAGE_SIZE];
/// store.read_page(3, &mut buf).unwrap();
/// assert_eq!(buf[0], 7);
/// store.fail_reads(3, true);
/// assert!(store.read_page(3, &mut buf).is_err());
/// ```
#[derive(Debug, Default)]
pub struct MemStore {
    inner: PlainMutex<MemInner>,
}

#[derive(Debug, Default)]
struct MemInner {
    // Ordered maps: in `alloc` (no_std has no hasher to seed).
    pages: BTreeMap<u64, Box<PageBuf>>,
    bad_reads: BTreeSet<u64>,
    bad_writes: BTreeSet<u64>,
    reads: u64,
    writes: u64,
}

impl MemStore {
    /// An empty store (every page reads as zeroes).
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes reads of `index` fail (or succeed again).
    pub fn fail_reads(&self, index: u64, fail: bool) {
        let mut g = self.inner.lock();
        if fail {
            g.bad_reads.insert(index)
        } else {
            g.bad_reads.remove(&index)
        };
    }

    /// Makes writes of `index` fail (or succeed again).
    pub fn fail_writes(&self, index: u64, fail: bool) {
        let mut g = self.inner.lock();
        if fail {
            g.bad_writes.insert(index)
        } else {
            g.bad_writes.remove(&index)
        };
    }

    /// A copy of page `index` as stored (`None` if never written).
    pub fn page(&self, index: u64) -> Option<Box<PageBuf>> {
        self.inner.lock().pages.get(&index).cloned()
    }

    /// Stores page `index` directly (test set-up).
    pub fn set_page(&self, index: u64, buf: &PageBuf) {
        self.inner.lock().pages.insert(index, Box::new(*buf));
    }

    /// Successful reads and writes so far.
    pub fn io_counts(&self) -> (u64, u64) {
        let g = self.inner.lock();
        (g.reads, g.writes)
    }
}

impl BackingStore for MemStore {
    fn read_page(&self, index: u64, buf: &mut PageBuf) -> Result<(), StoreError> {
        let mut g = self.inner.lock();
        if g.bad_reads.contains(&index) {
            return Err(StoreError::new(StoreError::EIO));
        }
        g.reads += 1;
        match g.pages.get(&index) {
            Some(p) => buf.copy_from_slice(&p[..]),
            None => buf.fill(0),
        }
        Ok(())
    }

    fn truncate(&self, end: u64) -> Result<(), StoreError> {
        self.inner.lock().pages.retain(|&i, _| i < end);
        Ok(())
    }

    /// Zeroes the range: whole pages are dropped (they read as zeroes), the
    /// stored bytes of partial ones are zeroed. Only stored pages are
    /// visited, so a huge range costs what the store holds, not its length.
    fn punch_hole(&self, offset: u64, len: u64) -> Result<(), StoreError> {
        let end = offset.saturating_add(len);
        if len == 0 {
            return Ok(());
        }
        let ps = crate::PAGE_SIZE as u64;
        let mut g = self.inner.lock();
        let first = offset / ps;
        let last = (end - 1) / ps;
        let hit: alloc::vec::Vec<u64> = g.pages.range(first..=last).map(|(&i, _)| i).collect();
        for i in hit {
            // The part of the hole inside page `i`, in page offsets.
            let from = offset.max(i * ps) - i * ps;
            let to = end.min((i + 1).saturating_mul(ps)) - i * ps;
            if from == 0 && to == ps {
                g.pages.remove(&i);
            } else if let Some(page) = g.pages.get_mut(&i) {
                page[from as usize..to as usize].fill(0);
            }
        }
        Ok(())
    }

    fn write_page(&self, index: u64, src: PageSrc<'_>) -> Result<(), StoreError> {
        let mut g = self.inner.lock();
        if g.bad_writes.contains(&index) {
            return Err(StoreError::new(StoreError::EIO));
        }
        g.writes += 1;
        // The copy into the store's own memory is the store's I/O, done
        // with atomic word loads (the page may be written meanwhile).
        let page = g
            .pages
            .entry(index)
            .or_insert_with(|| Box::new([0; crate::PAGE_SIZE]));
        src.copy_to(page);
        Ok(())
    }
}

#[cfg(all(test, not(pagemap_loom)))]
mod tests {
    use super::*;
    use crate::frame::FramePool;
    use crate::PAGE_SIZE;

    #[test]
    fn mem_store_injection() {
        let pool = FramePool::new(2).unwrap();
        let zero = pool.alloc().unwrap();
        let three = pool.alloc().unwrap();
        pool.write_page(three, &[3; PAGE_SIZE]);
        let s = MemStore::new();
        s.fail_writes(1, true);
        assert!(s.write_page(1, pool.page_src(zero)).is_err());
        s.fail_writes(1, false);
        s.write_page(1, pool.page_src(three)).unwrap();
        assert_eq!(s.page(1).unwrap()[0], 3);
        assert_eq!(s.io_counts(), (0, 1));
    }
}
