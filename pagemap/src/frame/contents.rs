//! A frame's 4 KiB of contents: reads, writes, whole pages, the simulated
//! MMU's write, and the store's direct access ([`PageSrc`] for a write-back,
//! an exclusive `&mut` for a read), with the argument for each.
//!
//! Why direct access is sound:
//!
//! * **A read fills a frame its loader owns.** A loading frame was just
//!   taken from the source (or kept after a failed read) and published with
//!   LOCKED and the slot word's LOADING state: lookups that find it either
//!   refuse it ([`find`](crate::PageMap::find), faults: not up to date) or
//!   sleep on LOCKED without touching the contents ([`load`](crate::PageMap::load)'s
//!   waiters); no page table entry maps it (entries are installed only for
//!   up-to-date pages) and no TLB caches it (a frame is freed only after
//!   its shootdown); truncate's zeroing takes LOCKED first. So for the
//!   read's duration the loader's `&mut PageBuf` is the only access: a
//!   reference the store (or a device, through the frame's physical
//!   address) may fill as it likes.
//! * **A write-back reads a frame others may still write.** The page is
//!   cleaned under the page lock and the lock dropped before the I/O, so a
//!   [`PageRef::write`](crate::PageRef::write), or a CPU through a writable
//!   entry, may store into the frame while the store reads it. Those
//!   stores set DIRTY (or the entry's dirty bit) after their copy, so the
//!   page is written again and the torn image the store may have taken
//!   never stays the last one (Linux writes back without "stable pages" the
//!   same way). The store therefore gets no `&[u8]`, which would promise
//!   the bytes do not change, but a [`PageSrc`]: word copies that are
//!   atomic, or the raw address for a device or a system call, which read
//!   memory outside Rust's model as a DMA engine does.

use core::marker::PhantomData;
use core::ptr::NonNull;

use super::{FrameId, FramePool};
use crate::error::Error;
use crate::store::PageBuf;
use crate::sync::Ordering;
use crate::PAGE_SIZE;

impl FramePool {
    // ---- contents ---------------------------------------------------------

    /// Copies `buf.len()` bytes at `offset` out of frame `id`, as a CPU
    /// does through a translation to it (the simulated MMU's read; pages
    /// are read through [`PageRef::read`](crate::PageRef::read) and
    /// [`PrivateFrame::read_page`](crate::PrivateFrame::read_page)).
    ///
    /// # Safety
    /// The caller must hold a readable translation of `id` that the frame's
    /// owner handed out (a page table entry and TLB entry of a page map's
    /// up-to-date page, or of a private frame), or otherwise a right to read
    /// it that excludes a store filling it: a frame being loaded is lent to
    /// the store as `&mut [u8; PAGE_SIZE]`, and a read of it meanwhile is
    /// undefined behaviour. So safe code cannot read a frame by id:
    ///
    /// ```compile_fail
    /// let pool = pagemap::FramePool::new(1).unwrap();
    /// let mut b = [0u8; 1];
    /// pool.read(pagemap::FrameId::new(1).unwrap(), 0, &mut b); // needs `unsafe`
    /// ```
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] if the range leaves the page.
    pub unsafe fn read(&self, id: FrameId, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.read_bytes(id, offset, buf)
    }

    /// [`read`](Self::read) for the crate's own callers, which hold the page
    /// (a page reference, a private frame, a write-back's hold).
    pub(crate) fn read_bytes(
        &self,
        id: FrameId,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<(), Error> {
        check_range(offset, buf.len())?;
        let words = self.words(id);
        let mut pos = offset;
        let mut out = 0;
        while out < buf.len() {
            let w = pos / 8;
            let b = pos % 8;
            let n = (8 - b).min(buf.len() - out);
            // Relaxed: contents are ordered by the slot word, the flags or the page lock.
            let bytes = words[w].load(Ordering::Relaxed).to_le_bytes();
            buf[out..out + n].copy_from_slice(&bytes[b..b + n]);
            pos += n;
            out += n;
        }
        Ok(())
    }

    /// Copies `data` into the frame at `offset`. Partial words are merged by
    /// CAS, so concurrent writers to other bytes of a word are not lost.
    pub(crate) fn write(&self, id: FrameId, offset: usize, data: &[u8]) -> Result<(), Error> {
        check_range(offset, data.len())?;
        let words = self.words(id);
        let mut pos = offset;
        let mut inp = 0;
        while inp < data.len() {
            let w = pos / 8;
            let b = pos % 8;
            let n = (8 - b).min(data.len() - inp);
            if n == 8 {
                let v = u64::from_le_bytes(data[inp..inp + 8].try_into().expect("8 bytes"));
                words[w].store(v, Ordering::Relaxed);
            } else {
                let mut mask_bytes = [0u8; 8];
                let mut val_bytes = [0u8; 8];
                mask_bytes[b..b + n].fill(0xff);
                val_bytes[b..b + n].copy_from_slice(&data[inp..inp + n]);
                let mask = u64::from_le_bytes(mask_bytes);
                let val = u64::from_le_bytes(val_bytes);
                // Merge into the word (a CAS loop: `fetch_update` is
                // deprecated on nightly). Relaxed: as the other content
                // accesses, ordered by the page lock, flags or slot word.
                let mut old = words[w].load(Ordering::Relaxed);
                while let Err(seen) = words[w].compare_exchange_weak(
                    old,
                    (old & !mask) | val,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    old = seen;
                }
            }
            pos += n;
            inp += n;
        }
        Ok(())
    }

    /// Copies the whole page out of frame `id`.
    ///
    /// # Safety
    /// As [`read`](Self::read): a translation or another right to read the
    /// frame that excludes a store filling it.
    pub unsafe fn read_page(&self, id: FrameId, buf: &mut [u8; PAGE_SIZE]) {
        self.copy_page(id, buf)
    }

    /// [`read_page`](Self::read_page) for the crate's own callers, which
    /// hold the page.
    pub(crate) fn copy_page(&self, id: FrameId, buf: &mut [u8; PAGE_SIZE]) {
        for (chunk, w) in buf.chunks_exact_mut(8).zip(self.words(id)) {
            chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
    }

    /// Overwrites the whole page.
    pub(crate) fn write_page(&self, id: FrameId, buf: &[u8; PAGE_SIZE]) {
        for (chunk, w) in buf.chunks_exact(8).zip(self.words(id)) {
            w.store(
                u64::from_le_bytes(chunk.try_into().expect("8 bytes")),
                Ordering::Relaxed,
            );
        }
    }
}

impl FramePool {
    /// The frame's memory as a store's read destination.
    ///
    /// # Safety
    /// The caller has the frame to itself for the borrow's lifetime: a
    /// loader holding LOCKED on a frame in the LOADING state (see the module
    /// docs for why nothing else reaches it then).
    #[allow(clippy::mut_from_ref)] // exclusivity is the caller's promise
    pub(crate) unsafe fn page_mut(&self, id: FrameId) -> &mut PageBuf {
        self.track_access(id);
        let p = self.frame_ptr(id).cast::<PageBuf>();
        // SAFETY: PAGE_SIZE valid bytes at an 8-aligned address (the
        // source's contract; a byte array needs no alignment anyway), which
        // the caller has to itself for the borrow (this fn's contract).
        unsafe { &mut *p.as_ptr() }
    }

    /// The frame's memory as a write-back's source (see [`PageSrc`]), all
    /// of it (the page map's write-backs use `page_src_len`).
    #[cfg(all(test, not(pagemap_loom)))]
    pub(crate) fn page_src(&self, id: FrameId) -> PageSrc<'_> {
        self.page_src_len(id, PAGE_SIZE)
    }

    /// `page_src` of which only the first `len` bytes
    /// (`len <= PAGE_SIZE`) are to be written: the part of a file's last
    /// page below its size.
    pub(crate) fn page_src_len(&self, id: FrameId, len: usize) -> PageSrc<'_> {
        debug_assert!(len <= PAGE_SIZE);
        PageSrc {
            pool: self,
            id,
            len,
            _not_send: PhantomData,
        }
    }

    /// Stores `data` at `offset` in frame `id` as a CPU does through a
    /// writable translation (the simulated MMU's write).
    ///
    /// # Safety
    /// Not memory safety (contents are atomics) but the page cache's
    /// invariants: the caller must hold a writable translation of `id` that
    /// the owner of the frame handed out (a page table entry and TLB entry
    /// of the page map's page or of a [`PrivateFrame`](crate::PrivateFrame) turned into an
    /// entry), so that the owner knows the frame may change (the entry's
    /// dirty bit says so). Writing any other frame corrupts another page.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] if the range leaves the page.
    pub unsafe fn mmu_write(&self, id: FrameId, offset: usize, data: &[u8]) -> Result<(), Error> {
        self.write(id, offset, data)
    }
}

fn check_range(offset: usize, len: usize) -> Result<(), Error> {
    match offset.checked_add(len) {
        Some(end) if end <= PAGE_SIZE => Ok(()),
        _ => Err(Error::OutOfBounds { offset, len }),
    }
}

/// A page being written back, read straight from its frame: what
/// [`BackingStore::write_page`](crate::BackingStore::write_page) gets
/// instead of a copy.
///
/// The bytes may change while the store reads them (a mapped page keeps
/// being writable during its write-back; see the module docs of the
/// frame contents): a store either copies them with
/// [`copy_to`](Self::copy_to) (atomic word loads) or hands
/// [`as_ptr`](Self::as_ptr) or [`phys_addr`](Self::phys_addr) to a device
/// or a system call. A change made meanwhile leaves the page dirty, so a
/// later write-back stores it.
#[derive(Clone, Copy)]
pub struct PageSrc<'a> {
    pool: &'a FramePool,
    id: FrameId,
    /// Bytes to write, from the start of the page (the rest is past the
    /// file's size).
    len: usize,
    /// Tied to the write-back's thread and call (a completion-based store
    /// gets an owned request instead).
    _not_send: PhantomData<*const ()>,
}

impl PageSrc<'_> {
    /// The frame the page is in.
    pub fn frame(&self) -> FrameId {
        self.id
    }

    /// The frame's physical address (for a DMA descriptor).
    pub fn phys_addr(&self) -> u64 {
        self.pool.phys_addr(self.id)
    }

    /// How many bytes, from the start of the page, the store must write:
    /// [`PAGE_SIZE`] for a page wholly below the file's size, fewer for its
    /// partial last page (the bytes past the size are not file data: a
    /// mapping may have written them, and they are discarded, as on Linux).
    /// A store writes exactly these and never the rest.
    // A page source is never empty (a page wholly past the size is not
    // written back at all), so no `is_empty`.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// The frame's [`PAGE_SIZE`] bytes, for a device or a system call that
    /// reads them outside Rust (a `pwrite`). Valid for the borrow; the
    /// bytes may change meanwhile (see the type's docs), so do not make a
    /// `&[u8]` of them.
    pub fn as_ptr(&self) -> NonNull<u8> {
        self.pool.frame_ptr(self.id)
    }

    /// Copies the page out, one atomic 8-byte load per word.
    pub fn copy_to(&self, buf: &mut PageBuf) {
        self.pool.copy_page(self.id, buf);
    }
}

impl core::fmt::Debug for PageSrc<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("PageSrc").field(&self.id).finish()
    }
}
