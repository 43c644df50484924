//! Readahead: a window of contiguous missing pages inserted LOADING and
//! read with one store I/O, with no map lock held across it (the miss path
//! of `lookup`, for many pages at once).

use alloc::vec::Vec;

use crate::error::{Error, StoreError};
use crate::frame::{flags, FrameId};
use crate::slot::{self, Slot};
use crate::store::MAX_EXTENT;
use crate::sync::{epoch, Ordering};

use super::{PageMap, PageRef};

impl PageMap {
    /// Reads ahead up to `nr_pages` pages from `first`: the missing pages
    /// of that contiguous run are inserted (not up to date, locked) and read
    /// with one [`read_pages`](crate::BackingStore::read_pages) per
    /// [`MAX_EXTENT`] pages (one `preadv` for a
    /// [`FileStore`](crate::FileStore)), with no map lock held across the
    /// I/O; then each is published up to date, or failed. Returns how many
    /// pages it read.
    ///
    /// The run stops at the first page already cached (or being loaded),
    /// at the end of the file ([`end`](Self::end)), or when the pool has no
    /// free frame: readahead only fills what is cheap to fill, and never
    /// evicts. A [`load`](Self::load) of a page being read ahead waits for
    /// that read and gets its outcome, as it waits for another loader.
    /// The pages are left unreferenced (a later [`free_unused`](Self::free_unused)
    /// may take them).
    ///
    /// # Errors
    /// [`Error::BeyondMaxSize`] if `first` ends beyond the store's
    /// [`max_size`](crate::StoreControl::max_size); [`Error::Read`] (the
    /// store's errno, for the first page that failed) if the read failed:
    /// those pages are left not up to date, as a failed [`load`](Self::load)
    /// leaves one, and their waiters see the same error.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pagemap::{FramePool, MemStore, PageMap};
    /// let map = PageMap::new(Arc::new(FramePool::new(8).unwrap()), Arc::new(MemStore::new()));
    /// drop(map.load(3).unwrap());
    /// assert_eq!(map.readahead(0, 8).unwrap(), 3); // 0, 1, 2: stops at the cached page 3
    /// assert!(map.find(1).unwrap().is_some()); // up to date
    /// ```
    pub fn readahead(&self, first: u64, nr_pages: u64) -> Result<usize, Error> {
        self.check_max(first)?;
        let mut read = 0;
        let mut index = first;
        let mut left = nr_pages;
        while left > 0 {
            let want = left.min(MAX_EXTENT as u64) as usize;
            let n = self.readahead_extent(index, want)?;
            read += n;
            if n < want {
                break; // stopped early: a cached page, the end, the pool
            }
            let Some(next) = index.checked_add(n as u64) else {
                break;
            };
            index = next;
            left -= n as u64;
        }
        Ok(read)
    }

    /// One window of at most [`MAX_EXTENT`] pages; returns the pages read.
    fn readahead_extent(&self, first: u64, want: usize) -> Result<usize, Error> {
        // As a load's miss: the invalidate lock, shared, from the inserts to
        // the end of the read, so a hole punch (exclusive) never sees a read
        // of the store's old bytes land in the cache between its halves.
        let _invalidate = self.invalidate_lock.read();
        // Both are u64::MAX when there is none: `min` keeps the other.
        let limit = self.end().min(self.max_pages);
        let want = (want as u64).min(limit.saturating_sub(first)) as usize;
        // Frames first, with no lock held, each set up as the miss path
        // sets up one: owned, LOCKED (the read's lock, which waiters sleep
        // on), not up to date.
        let mut frames: [Option<FrameId>; MAX_EXTENT] = [None; MAX_EXTENT];
        let mut n = 0;
        while n < want {
            let index = first + n as u64;
            if self.is_occupied(index) {
                break;
            }
            let Ok(frame) = self.pool.alloc() else {
                break;
            };
            self.pool
                .set_owner(frame, self.id, index, flags::LOCKED | flags::PAGEMAP);
            frames[n] = Some(frame);
            n += 1;
        }
        // Insert them LOADING under one writer lock, up to the first slot
        // someone filled meanwhile (or the end, if a truncate moved it).
        let mut pages: Vec<PageRef<'_>> = Vec::with_capacity(n);
        {
            let g = self.tree.lock();
            for (index, frame) in (first..=u64::MAX).zip(frames.iter().take(n).flatten()) {
                if self.check_end(index).is_err() {
                    break;
                }
                let at = self.tree.slot_for_insert(index, &g);
                let slot = at.slot;
                if !Slot::is_vacant(slot.load()) {
                    break;
                }
                let word = slot::inserted(frame.get(), true);
                // Release inside: owner, index and flags set above are
                // visible to any reader that sees this word (as `insert`).
                at.fill(word);
                self.nr_pages.fetch_add(1, Ordering::Relaxed);
                pages.push(self.page_ref(slot, word, index));
            }
        }
        for page in &pages {
            self.inserted(page.frame);
        }
        let inserted = pages.len();
        for frame in frames[inserted..n].iter().flatten() {
            self.pool.clear_flags(*frame, !0);
            self.pool.free(*frame);
        }
        if inserted == 0 {
            return Ok(0);
        }
        let ids: [FrameId; MAX_EXTENT] = core::array::from_fn(|i| pages[i.min(inserted - 1)].frame);
        let mut failed = 0u64; // bit i: page first + i failed
        let mut first_error: Option<(u64, StoreError)> = None;
        // SAFETY: every frame was inserted LOCKED and LOADING by us, each
        // once (distinct slots): nothing else reaches their memory until
        // we unlock them in `done`.
        self.stats.add(crate::frame::map_ctr::READS, 1);
        unsafe {
            self.store
                .read_extent(&self.pool, first, &ids[..inserted], |i, result| {
                    let page = &pages[i];
                    let frame = page.frame;
                    match result {
                        Ok(()) => {
                            self.pool
                                .clear_flags(frame, flags::ERROR | flags::ERRNO_MASK);
                            self.pool.set_flags(frame, flags::UPTODATE);
                            // Release: contents before the word that says
                            // "up to date" (as `fill`).
                            page.slot.set_loaded();
                        }
                        Err(source) => {
                            // Waiters read the errno after the unlock.
                            self.pool.set_error(frame, source);
                            failed |= 1 << i;
                            first_error.get_or_insert((page.index, source));
                        }
                    }
                    // Release (inside): waiters on the page lock see the
                    // outcome above.
                    self.pool.unlock(frame);
                });
        }
        drop(pages); // the puts
        for (i, frame) in ids[..inserted].iter().enumerate() {
            if failed & (1 << i) != 0 {
                self.discard_failed(first + i as u64, *frame);
            }
        }
        match first_error {
            None => Ok(inserted),
            Some((index, source)) => Err(Error::Read { index, source }),
        }
    }

    /// Whether page `index` has an entry (cached, loading, or being
    /// removed): readahead stops there. Lock-free.
    fn is_occupied(&self, index: u64) -> bool {
        let guard = epoch::pin();
        self.tree
            .lookup(index, &guard)
            .is_some_and(|slot| !Slot::is_vacant(slot.load()))
    }
}
