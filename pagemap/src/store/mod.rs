//! Backing stores: where pages come from and go to.
//!
//! Two interfaces: [`BackingStore`], synchronous (the call returns when the
//! I/O is done: a file, memory), and [`SubmitStore`], completion-based
//! (submit now, complete later from any thread: a block device's queue, as
//! Linux's `bio` and its `bi_end_io`, or Asterinas's `BioWaiter`). Either
//! way the I/O goes straight to the frame's memory, with no bounce buffer:
//! a read fills the frame it loads into, a write-back reads the frame it
//! writes (`crate::frame`'s contents module argues why each is sound).
//!
//! One file per concept: this one the traits and the page map's handle on
//! either; `submit` the completion-based requests ([`ReadIo`], [`WriteIo`]);
//! `mem` [`MemStore`]; `file` [`FileStore`] (`std` only).

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::error::StoreError;
use crate::frame::{FrameId, FramePool, PageSrc};
use crate::PAGE_SIZE;

#[cfg(feature = "std")]
mod file;
mod mem;
mod submit;

#[cfg(feature = "std")]
pub use file::FileStore;
pub use mem::MemStore;
pub use submit::{ReadIo, SubmitStore, WriteIo};

/// One page of bytes.
pub type PageBuf = [u8; PAGE_SIZE];

/// The most pages one [`BackingStore::write_pages`] or
/// [`BackingStore::read_pages`] call from the page map carries (256 KiB):
/// enough that a sequential run costs one system call per 64 pages, few
/// enough that the extent's bookkeeping lives on the stack.
pub const MAX_EXTENT: usize = 64;

/// The storage behind a page map, synchronous: each call returns when its
/// I/O is done (for completion-based I/O see [`SubmitStore`]).
///
/// Implementations must be callable from many threads at once. The page map
/// holds none of its locks across these calls but a page's own bit locks
/// (LOCKED across a read, WRITEBACK across a write) and, for a removal's
/// write-back (remove, truncate, invalidate, destroy), the map's remover
/// lock: a store must not call those on the same map from `write_page`
/// (it would wait for itself).
pub trait BackingStore: StoreControl {
    /// Fills `buf`, which *is* the frame the page is loading into, with page
    /// `index`, every byte of it (the frame holds an earlier page's bytes,
    /// not zeroes). Bytes past the end of the store read as zero. On error
    /// the frame's contents do not matter: the page stays not up to date.
    fn read_page(&self, index: u64, buf: &mut PageBuf) -> Result<(), StoreError>;

    /// Writes page `index`, read straight from its frame (see [`PageSrc`]:
    /// its bytes may change meanwhile, which leaves the page dirty for a
    /// later write-back): exactly its first [`src.len()`](PageSrc::len)
    /// bytes at byte `index * PAGE_SIZE`, extending the store if they reach
    /// past its end (the page map's size says what is file data). On error the store may hold part of it; the page
    /// map keeps the page dirty and retries later.
    fn write_page(&self, index: u64, src: PageSrc<'_>) -> Result<(), StoreError>;

    /// Writes the contiguous pages `first_index ..` from `srcs` (one per
    /// page, in order), as [`write_page`](Self::write_page) does each
    /// (exactly [`len`](PageSrc::len) bytes of each: only the last source
    /// can be short, the file's last page, so the bytes form one contiguous
    /// range): the
    /// page map's write-back joins contiguous dirty pages into such an
    /// extent (at most [`MAX_EXTENT`] pages) so a store can write it with
    /// one vectored I/O. On error the store may hold any part of it; the
    /// page map keeps every page of the extent dirty and retries it. The
    /// default writes them one by one.
    fn write_pages(&self, first_index: u64, srcs: &[PageSrc<'_>]) -> Result<(), StoreError> {
        for (index, src) in (first_index..=u64::MAX).zip(srcs) {
            self.write_page(index, *src)?;
        }
        Ok(())
    }

    /// Fills `bufs` (one frame per page, in order, each lent as
    /// [`read_page`](Self::read_page) lends one) with the contiguous pages
    /// `first_index ..`: readahead's one I/O for a window of missing pages
    /// (at most [`MAX_EXTENT`]). On error none of them counts as read. The
    /// default reads them one by one.
    fn read_pages(&self, first_index: u64, bufs: &mut [&mut PageBuf]) -> Result<(), StoreError> {
        for (index, buf) in (first_index..=u64::MAX).zip(bufs.iter_mut()) {
            self.read_page(index, buf)?;
        }
        Ok(())
    }
}

/// The control half of a store, shared by both I/O interfaces
/// ([`BackingStore`], [`SubmitStore`]): its length and limit, size
/// changes, durability and hole punching, all synchronous (as Linux's
/// `inode_operations.setattr`, `file_operations.fsync` and `fallocate`
/// beside the page I/O of `address_space_operations`). Every method has a
/// default, so a store with nothing to say writes `impl StoreControl for
/// MyStore {}`: no end (a device), no size limit, size changes refused,
/// nothing to sync, hole punching refused.
pub trait StoreControl: Send + Sync {
    /// The largest length in bytes the store can address: the page map
    /// refuses pages that end beyond it ([`Error::BeyondMaxSize`](crate::Error::BeyondMaxSize))
    /// instead of caching data no write-back could ever store. Read once,
    /// when a page map is created over the store. The default, `u64::MAX`,
    /// means no limit: every page index, `u64::MAX` included, is allowed.
    fn max_size(&self) -> u64 {
        u64::MAX
    }

    /// The store's length in bytes, read once when a page map is created
    /// over it (the page map owns the size from then on): `None` for a
    /// store without an end (a device: every page exists), the default.
    fn size(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// Makes the store `bytes` long (a truncate or an extension, Linux's
    /// `ftruncate`): bytes from `bytes` on are gone, and an extension reads
    /// as zeroes. The page map calls it before the cache's half of a size
    /// change, so that a refusal changes nothing, and for a shrink once
    /// more after it (a write-back of a cut page in flight may have
    /// extended the store again meanwhile); also to make the store as long
    /// as the map's size when pages that would have extended it left the
    /// cache unwritten (see [`PageMap::fsync`](crate::PageMap::fsync)).
    ///
    /// The default fails with [`StoreError::EOPNOTSUPP`], for stores that
    /// cannot change their size: the page map's size changes are then
    /// refused (had it cut its cache alone, a later extension would read
    /// the cut bytes back from the store).
    fn set_size(&self, bytes: u64) -> Result<(), StoreError> {
        let _ = bytes;
        Err(StoreError::new(StoreError::EOPNOTSUPP))
    }

    /// Makes every write that returned before this call durable: on stable
    /// storage, along with the store's length if a write or a truncate
    /// changed it (`fdatasync`; [`PageMap::fsync`](crate::PageMap::fsync)
    /// calls it after writing back every dirty page). An error means some
    /// of those writes may not survive a crash. The default does nothing,
    /// for stores with nothing to flush (memory, a device without a
    /// volatile cache).
    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Makes the `len` bytes from byte `offset` read as zeroes, keeping the
    /// store's size (`fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)`
    /// semantics; bytes past the end stay absent). The page map calls it for
    /// [`PageMap::punch_hole`](crate::PageMap::punch_hole) after the cache's
    /// half, with loads of the range kept out and its write-backs drained.
    ///
    /// The default fails with [`StoreError::EOPNOTSUPP`]: a store sees only
    /// frames through [`write_page`](BackingStore::write_page), so it has no zero
    /// page of its own to write. A store that cannot free space should
    /// write zeroes here instead.
    fn punch_hole(&self, offset: u64, len: u64) -> Result<(), StoreError> {
        let _ = (offset, len);
        Err(StoreError::new(StoreError::EOPNOTSUPP))
    }
}

/// The page map's store: one of the two interfaces.
pub(crate) enum Store {
    Sync(Arc<dyn BackingStore>),
    Submit(Arc<dyn SubmitStore>),
}

impl Store {
    /// Reads page `index` into `frame`; waits for a submitted read.
    ///
    /// The caller is a loader holding LOCKED on `frame` in the LOADING
    /// state, so the frame's memory is its own (see `crate::frame`'s
    /// contents module).
    pub(crate) fn read(
        &self,
        pool: &Arc<FramePool>,
        frame: FrameId,
        index: u64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sync(s) => {
                // SAFETY: the caller holds LOCKED on a frame in the LOADING
                // state: nothing else reaches its memory until it unlocks.
                let buf = unsafe { pool.page_mut(frame) };
                s.read_page(index, buf)
            }
            Store::Submit(s) => {
                // SAFETY: as above; the request is the frame's only user
                // until it completes, and `wait` returns only then.
                let io = unsafe { ReadIo::new(pool.clone(), frame, index) };
                s.submit_read(io);
                submit::wait(pool, frame)
            }
        }
    }

    /// Writes the first `len` bytes of page `index` from `frame`, which
    /// the caller holds (a page reference) with WRITEBACK set; waits for a
    /// submitted write.
    pub(crate) fn write(
        &self,
        pool: &Arc<FramePool>,
        frame: FrameId,
        index: u64,
        len: usize,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sync(s) => s.write_page(index, pool.page_src_len(frame, len)),
            Store::Submit(s) => {
                s.submit_write(WriteIo::new(pool.clone(), frame, index, len));
                submit::wait(pool, frame)
            }
        }
    }

    /// Writes the contiguous pages `first ..` from `frames` (at most
    /// [`MAX_EXTENT`]; with the bytes of each to write, all [`PAGE_SIZE`]
    /// but the last's), each held by the caller with WRITEBACK set, in one
    /// [`BackingStore::write_pages`]; a [`SubmitStore`] gets one request per
    /// page, all submitted before the first is waited for. The first error
    /// is returned (every request is waited for all the same).
    pub(crate) fn write_extent(
        &self,
        pool: &Arc<FramePool>,
        first: u64,
        frames: &[(FrameId, usize)],
    ) -> Result<(), StoreError> {
        debug_assert!(!frames.is_empty() && frames.len() <= MAX_EXTENT);
        debug_assert!(frames[..frames.len() - 1]
            .iter()
            .all(|&(_, len)| len == PAGE_SIZE));
        match self {
            Store::Sync(s) => {
                // On the stack, nothing allocated: the slots past the
                // extent repeat its last frame and are not passed on.
                let last = frames.len() - 1;
                let srcs: [PageSrc<'_>; MAX_EXTENT] = core::array::from_fn(|i| {
                    let (frame, len) = frames[i.min(last)];
                    pool.page_src_len(frame, len)
                });
                s.write_pages(first, &srcs[..frames.len()])
            }
            Store::Submit(s) => {
                for (index, &(frame, len)) in (first..=u64::MAX).zip(frames) {
                    s.submit_write(WriteIo::new(pool.clone(), frame, index, len));
                }
                let mut result = Ok(());
                for &(frame, _) in frames {
                    let r = submit::wait(pool, frame);
                    if result.is_ok() {
                        result = r;
                    }
                }
                result
            }
        }
    }

    /// Reads the contiguous pages `first ..` into `frames` (at most
    /// [`MAX_EXTENT`]) and calls `done(i, outcome)` for each frame `i`:
    /// one [`BackingStore::read_pages`] (whose outcome is every page's),
    /// or for a [`SubmitStore`] one request per page, all submitted before
    /// the first is waited for (each page its own outcome).
    ///
    /// # Safety
    /// The caller holds LOCKED on every frame, each in the LOADING state
    /// and each named once, so their memory is its own until `done` is
    /// called for them (see `crate::frame`'s contents module).
    pub(crate) unsafe fn read_extent(
        &self,
        pool: &Arc<FramePool>,
        first: u64,
        frames: &[FrameId],
        mut done: impl FnMut(usize, Result<(), StoreError>),
    ) {
        match self {
            Store::Sync(s) => {
                let mut bufs: Vec<&mut PageBuf> = frames
                    .iter()
                    // SAFETY: distinct frames, each LOCKED and LOADING by
                    // the caller (this fn's contract): each `&mut` is the
                    // only access to its frame until `done`.
                    .map(|&f| unsafe { pool.page_mut(f) })
                    .collect();
                let r = s.read_pages(first, &mut bufs);
                drop(bufs);
                for i in 0..frames.len() {
                    done(i, r);
                }
            }
            Store::Submit(s) => {
                for (index, &frame) in (first..=u64::MAX).zip(frames) {
                    // SAFETY: as above; the request is the frame's only
                    // user until it completes, and `wait` returns only then.
                    let io = unsafe { ReadIo::new(pool.clone(), frame, index) };
                    s.submit_read(io);
                }
                for (i, &frame) in frames.iter().enumerate() {
                    done(i, submit::wait(pool, frame));
                }
            }
        }
    }

    /// The store's [`max_size`](StoreControl::max_size).
    pub(crate) fn max_size(&self) -> u64 {
        match self {
            Store::Sync(s) => s.max_size(),
            Store::Submit(s) => s.max_size(),
        }
    }

    /// The store's length in bytes (`None`: no end).
    pub(crate) fn size(&self) -> Result<Option<u64>, StoreError> {
        match self {
            Store::Sync(s) => s.size(),
            Store::Submit(s) => s.size(),
        }
    }

    /// The store's size change, in bytes.
    pub(crate) fn set_size(&self, bytes: u64) -> Result<(), StoreError> {
        match self {
            Store::Sync(s) => s.set_size(bytes),
            Store::Submit(s) => s.set_size(bytes),
        }
    }

    /// The store's sync (both interfaces: synchronous).
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        match self {
            Store::Sync(s) => s.sync(),
            Store::Submit(s) => s.sync(),
        }
    }

    /// The store's hole punch (bytes).
    pub(crate) fn punch_hole(&self, offset: u64, len: u64) -> Result<(), StoreError> {
        match self {
            Store::Sync(s) => s.punch_hole(offset, len),
            Store::Submit(s) => s.punch_hole(offset, len),
        }
    }
}
