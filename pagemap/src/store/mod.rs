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

/// The storage behind a page map, synchronous: each call returns when its
/// I/O is done (for completion-based I/O see [`SubmitStore`]).
///
/// Implementations must be callable from many threads at once. The page map
/// holds none of its locks across these calls but a page's own bit locks
/// (LOCKED across a read, WRITEBACK across a write) and, for a removal's
/// write-back (remove, truncate, invalidate, destroy), the map's remover
/// lock: a store must not call those on the same map from `write_page`
/// (it would wait for itself).
pub trait BackingStore: Send + Sync {
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

    /// The store's length in bytes, read once when a page map is created
    /// over it (the page map owns the size from then on): `None` for a
    /// store without an end (a device: every page exists), the default.
    fn size(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// Makes the store `bytes` long (a truncate or an extension, Linux's
    /// `ftruncate`): bytes from `bytes` on are gone, and an extension reads
    /// as zeroes. The page map calls it after the cache's half of a size
    /// change (a shrink: once in-flight writes of the cut pages are done).
    /// The default does nothing, for stores that cannot change their size.
    fn set_size(&self, bytes: u64) -> Result<(), StoreError> {
        let _ = bytes;
        Ok(())
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
}
