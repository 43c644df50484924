//! [`MemStore`]: pages in memory, with injectable errors.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};

use super::{BackingStore, PageBuf, StoreControl};
use crate::error::StoreError;
use crate::frame::PageSrc;
use crate::sync::PlainMutex;
use crate::PAGE_SIZE;

/// An in-memory store, with injectable errors for tests and fuzzers.
///
/// [`MemStore::new`] has no end (a device: every page exists and reads as
/// zeroes until written; [`size`](StoreControl::size) is `None`).
/// [`MemStore::with_size`] is a file: it reports a length in bytes, keeps
/// it (a write past it extends it, as `pwrite` does), reads zeroes past it,
/// and [`set_size`](StoreControl::set_size) cuts or extends it, zeroing the
/// bytes it cuts. A [`set_size`](StoreControl::set_size) gives a store
/// without an end that length too.
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
    /// Length in bytes (`None`: no end). Invariant: every stored byte at or
    /// past it is zero, so a read needs no clipping.
    size: Option<u64>,
    reads: u64,
    writes: u64,
}

impl MemStore {
    /// An empty store (every page reads as zeroes).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty file-like store `bytes` long (all zeroes).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pagemap::{Error, FramePool, MemStore, PageMap, StoreControl};
    /// let store = Arc::new(MemStore::with_size(100));
    /// assert_eq!(store.size().unwrap(), Some(100));
    /// let map = PageMap::new(Arc::new(FramePool::new(4).unwrap()), store.clone());
    /// assert_eq!((map.size(), map.end()), (100, 1));
    /// assert!(matches!(map.load(1), Err(Error::BeyondEof { index: 1, end: 1 })));
    /// ```
    pub fn with_size(bytes: u64) -> Self {
        let s = Self::default();
        s.inner.lock().size = Some(bytes);
        s
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
    /// As page by page, but an extent with a page whose writes fail
    /// fails whole, before writing any (so a write-back's retry of its
    /// pages one by one counts each successful write once).
    fn write_pages(&self, first_index: u64, srcs: &[PageSrc<'_>]) -> Result<(), StoreError> {
        {
            let g = self.inner.lock();
            if (first_index..=u64::MAX)
                .take(srcs.len())
                .any(|i| g.bad_writes.contains(&i))
            {
                return Err(StoreError::new(StoreError::EIO));
            }
        }
        for (index, src) in (first_index..=u64::MAX).zip(srcs) {
            self.write_page(index, *src)?;
        }
        Ok(())
    }

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

    fn write_page(&self, index: u64, src: PageSrc<'_>) -> Result<(), StoreError> {
        let mut g = self.inner.lock();
        if g.bad_writes.contains(&index) {
            return Err(StoreError::new(StoreError::EIO));
        }
        let len = src.len();
        // Only a file-like store has a byte length to keep (a store without
        // an end holds any page, u64::MAX included).
        let end = match g.size {
            Some(_) => Some(
                index
                    .checked_mul(PAGE_SIZE as u64)
                    .and_then(|off| off.checked_add(len as u64))
                    .ok_or(StoreError::new(StoreError::EINVAL))?,
            ),
            None => None,
        };
        g.writes += 1;
        // The copy into the store's own memory is the store's I/O, done
        // with atomic word loads (the page may be written meanwhile). Only
        // the first `len` bytes are the file's; the rest stay as they are
        // (zeroes past the size: the invariant on `size`).
        let mut copy = [0u8; PAGE_SIZE];
        src.copy_to(&mut copy);
        let page = g
            .pages
            .entry(index)
            .or_insert_with(|| Box::new([0; PAGE_SIZE]));
        page[..len].copy_from_slice(&copy[..len]);
        // A write past the length extends it, as `pwrite` does.
        if let (Some(size), Some(end)) = (g.size.as_mut(), end) {
            *size = (*size).max(end);
        }
        Ok(())
    }
}

impl StoreControl for MemStore {
    fn size(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.inner.lock().size)
    }

    fn set_size(&self, bytes: u64) -> Result<(), StoreError> {
        let mut g = self.inner.lock();
        if bytes == u64::MAX {
            // "No end": nothing to cut (every page, u64::MAX's included,
            // stays).
            g.size = None;
            return Ok(());
        }
        let page = PAGE_SIZE as u64;
        // Pages wholly at or past the new length go; the kept part of a
        // partial last page keeps its bytes, the rest is zeroed (the
        // invariant on `size`).
        let keep = bytes.div_ceil(page);
        g.pages.retain(|&i, _| i < keep);
        let tail = (bytes % page) as usize;
        if tail != 0 {
            if let Some(p) = g.pages.get_mut(&(bytes / page)) {
                p[tail..].fill(0);
            }
        }
        g.size = Some(bytes);
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

    /// Nothing to flush: what is written is as durable as memory gets.
    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(all(test, not(pagemap_loom)))]
mod tests {
    use super::*;
    use crate::frame::FramePool;

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
