//! The byte API, like `pread`/`pwrite`: [`PageMap::read_at`] and
//! [`PageMap::write_at`] at any byte offset, across any number of pages,
//! loading them as needed; a write past the size extends the file.

use crate::error::Error;
use crate::frame::flags;
use crate::sync::Ordering;
use crate::PAGE_SIZE;

use super::size::Extending;
use super::{end_of, PageMap};

/// Pages a sequential [`PageMap::read_at`] reads ahead on a miss (128 KiB,
/// Linux's default `read_ahead_kb`).
pub const READAHEAD_WINDOW: u64 = 32;

impl PageMap {
    /// Reads up to `buf.len()` bytes at byte `offset` of the file into
    /// `buf`, loading the pages as needed; returns how many were read: fewer
    /// at the end of the file ([`size`](Self::size)), 0 at or past it (as
    /// `pread`). Lock-free on cached pages; a concurrent writer's bytes may
    /// be seen partly, as with [`PageRef::read`](crate::PageRef::read).
    ///
    /// # Errors
    /// A load's error ([`Error::Read`], [`Error::PoolExhausted`], ...) if
    /// it happens before any byte was read; after, the read is short. A
    /// shrink racing the read is not an error: the read ends at the new end
    /// (0 bytes if it starts past it). The pool is not reclaimed here: with
    /// a pool smaller than the file, call
    /// [`free_unused`](Self::free_unused) on [`Error::PoolExhausted`] (or a
    /// short read) and read the rest.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pagemap::{FramePool, MemStore, PageMap};
    /// let map = PageMap::new(Arc::new(FramePool::new(4).unwrap()), Arc::new(MemStore::with_size(0)));
    /// assert_eq!(map.write_at(4090, b"hello, world").unwrap(), 12); // two pages
    /// assert_eq!(map.size(), 4102);
    /// let mut buf = [1u8; 20];
    /// assert_eq!(map.read_at(4095, &mut buf).unwrap(), 7); // short at the end
    /// assert_eq!(&buf[..7], b", world");
    /// assert_eq!(map.read_at(4102, &mut buf).unwrap(), 0);
    /// assert_eq!(map.read_at(0, &mut buf[..4]).unwrap(), 4);
    /// assert_eq!(&buf[..4], &[0; 4], "a hole reads as zeroes");
    /// ```
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
        let size = self.size();
        if offset >= size {
            return Ok(0);
        }
        let len = (buf.len() as u64).min(size - offset) as usize;
        let mut done = 0;
        // Whether the readahead state is this read's business (see below).
        let mut missed = false;
        while done < len {
            let pos = offset + done as u64;
            let index = pos / PAGE_SIZE as u64;
            let off = (pos % PAGE_SIZE as u64) as usize;
            let n = (PAGE_SIZE - off).min(len - done);
            let page = match self.find(index) {
                Ok(Some(page)) => Ok(page), // the hit: lock-free
                _ => {
                    missed = true;
                    let last = (offset + len as u64 - 1) / PAGE_SIZE as u64;
                    self.read_ahead_for(index, last);
                    self.load(index)
                }
            };
            let page = match page {
                Ok(page) => page,
                // A shrink meanwhile: the rest is past the end now, so the
                // read ends here (0 bytes if it is the first page), as a
                // `pread` after the truncate would; not an error.
                Err(Error::BeyondEof { .. }) => break,
                // A failed load: short.
                Err(_) if done > 0 => break,
                Err(e) => return Err(e),
            };
            page.read(off, &mut buf[done..done + n])?;
            done += n;
        }
        if done > 0 {
            // Only a read that missed or continues the stream moves it: the
            // next miss of a sequential reader must find it, but random hits
            // on many threads would otherwise all write one shared cache
            // line on every read.
            // Relaxed: a hint for the next read's readahead, nothing else.
            let first = offset / PAGE_SIZE as u64;
            if missed || first == self.ra_next.load(Ordering::Relaxed) {
                let next = (offset + done as u64).div_ceil(PAGE_SIZE as u64);
                self.ra_next.store(next, Ordering::Relaxed);
            }
        }
        Ok(done)
    }

    /// On a `read_at` miss at page `index` of a read ending at page `last`:
    /// reads the missing pages ahead with one vectored read per extent
    /// ([`readahead`](Self::readahead)): the rest of the request, and if
    /// the read is sequential (it starts where the last one ended, or at
    /// page 0) a window of [`READAHEAD_WINDOW`] pages, at most a quarter of
    /// the pool. Errors are left to the load that follows, which reads the
    /// page alone and reports its own.
    fn read_ahead_for(&self, index: u64, last: u64) {
        // Relaxed: a hint (see `ra_next`).
        let sequential = index == 0 || index == self.ra_next.load(Ordering::Relaxed);
        let request = last - index + 1;
        let window = if sequential {
            request.max(READAHEAD_WINDOW)
        } else {
            request
        };
        let window = window.min((self.pool.capacity() / 4).max(1) as u64);
        if window > 1 {
            let _ = self.readahead(index, window);
        }
    }

    /// Writes `data` at byte `offset` of the file, across as many pages as
    /// it spans, loading them as needed; returns how many bytes were
    /// written (all, unless a page could not be loaded after the first: a
    /// short write, as `pwrite`'s). Each page's copy is made under its page
    /// lock, as [`PageRef::write`](crate::PageRef::write)'s, and marks the
    /// page dirty: a write-back writes it later.
    ///
    /// A write reaching past the [`size`](Self::size) extends the file to
    /// its end (a gap between the old size and `offset` is a hole and reads
    /// as zeroes), with the extension protocol of
    /// [`set_size`](Self::set_size): bytes a mapping wrote into the old
    /// last page past the old size are zeroed first, never made file data.
    /// The size is raised page by page as the bytes land, under each page's
    /// lock, so a write-back of that page (which reads the size under the
    /// same lock) never writes fewer bytes than were copied and dirtied;
    /// the store grows when the pages are written back. Such a write holds
    /// the invalidate lock exclusively (do not call it while holding
    /// [`invalidate_lock_shared`](Self::invalidate_lock_shared)). On a map
    /// without an end it never changes the size.
    ///
    /// # Errors
    /// [`Error::FileTooLarge`] if the range ends past the largest size
    /// (2^64 - 2 bytes; the range changes nothing); a load's error if it
    /// happens before any byte was written (after, the write is short). A
    /// shrink racing a write that does not extend the file may cut it short
    /// too (or refuse it: [`Error::BeyondSize`], or [`Error::BeyondEof`]
    /// if the shrink took the whole page; retry: the write then extends).
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<usize, Error> {
        if data.is_empty() {
            return Ok(0);
        }
        let too_large = Error::FileTooLarge {
            offset,
            len: data.len() as u64,
        };
        let Some(end) = offset.checked_add(data.len() as u64) else {
            return Err(too_large);
        };
        let size = self.size();
        if size == u64::MAX || end <= size {
            return self.copy_in(offset, data, None, u64::MAX);
        }
        if end == u64::MAX {
            // It would read as "no end".
            return Err(too_large);
        }
        // A size change: no other runs meanwhile, so the size read under
        // the lock stays until we change it.
        let invalidate = self.invalidate_lock.write();
        let size = self.size();
        if end <= size {
            // Another writer extended it first: a plain write, whose misses
            // take the invalidate lock shared, so ours must go first (it is
            // not recursive: the thread would wait for itself).
            drop(invalidate);
            return self.copy_in(offset, data, None, u64::MAX);
        }
        let ext = self.begin_extend(size);
        // The end first, so that the pages can be loaded; the size follows
        // the bytes (`copy_in`). Faults on the new pages are kept off by
        // `ext` until both are final.
        self.raise_size(&ext, size, end_of(end));
        let r = self.copy_in(offset, data, Some(&ext), size);
        let reached = self.size();
        if reached < end {
            // Short or failed: the end comes back to the size reached (a
            // lowering, under the writer lock as a shrink's; the pages past
            // it that we loaded hold zeroes only: nothing to discard).
            self.lower_size(reached, end_of(reached));
        }
        r
    }

    /// Copies `data` into the pages from byte `offset` on, each under its
    /// page lock, marking them dirty. Without `ext`, the bytes must be
    /// below the size (checked under the page lock: a shrink may have come
    /// first); with it (an extension in progress), the size is raised past
    /// each page's bytes before its lock is dropped.
    fn copy_in(
        &self,
        offset: u64,
        data: &[u8],
        ext: Option<&Extending<'_>>,
        fresh_from: u64,
    ) -> Result<usize, Error> {
        let mut done = 0;
        while done < data.len() {
            let pos = offset + done as u64;
            let index = pos / PAGE_SIZE as u64;
            let off = (pos % PAGE_SIZE as u64) as usize;
            let n = (PAGE_SIZE - off).min(data.len() - done);
            // With `ext` this thread holds the invalidate lock (exclusive):
            // the miss must not take it again.
            // A page wholly past the size the extension started from holds
            // no byte of the file: no read (the store may even hold stale
            // bytes there, from a size change it failed).
            let fresh = ext.is_some() && index * PAGE_SIZE as u64 >= fresh_from;
            let page = match self.find(index) {
                Ok(Some(page)) => Ok(page), // the hit: lock-free
                _ if n == PAGE_SIZE => {
                    // A miss the write covers whole: no read of old bytes.
                    let whole = data[done..done + n].try_into().expect("a page");
                    let extending = ext.map(|_| pos + n as u64);
                    match self.overwrite_miss(index, whole, extending) {
                        Ok(true) => {
                            done += n;
                            continue;
                        }
                        Ok(false) => self.load_with(index, ext.is_some(), fresh),
                        Err(e) => Err(e),
                    }
                }
                _ => self.load_with(index, ext.is_some(), fresh),
            };
            let page = match page {
                Ok(page) => page,
                Err(_) if done > 0 => break,
                Err(e) => return Err(e),
            };
            let frame = page.frame;
            self.pool.lock(frame);
            if ext.is_none() {
                if let Err(e) = self.check_size(index, off, n) {
                    self.pool.unlock(frame);
                    if done > 0 {
                        break;
                    }
                    return Err(e);
                }
            }
            let r = self.pool.write(frame, off, &data[done..done + n]);
            debug_assert!(r.is_ok(), "a range inside the page");
            if ext.is_some() {
                let reached = pos + n as u64;
                if reached > self.size() {
                    // Before the unlock: a write-back of this page takes the
                    // lock after us and so reads a size that covers these
                    // bytes. Without the writer lock (it is never taken under
                    // a page bit): the end, which inserts check under it, was
                    // raised past this page already, and no other size change
                    // runs (we hold the invalidate lock). SeqCst: as every
                    // store of `size`.
                    self.size.store(reached, Ordering::SeqCst);
                }
            }
            // DIRTY after the copy, as `PageRef::write`.
            let old = self.pool.set_flags(frame, flags::DIRTY);
            self.pool.unlock(frame);
            if old & flags::DIRTY == 0 {
                self.sync_dirty_mark(index, frame);
            }
            done += n;
        }
        Ok(done)
    }
}
