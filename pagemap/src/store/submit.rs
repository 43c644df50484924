//! Completion-based stores: [`SubmitStore`] and its requests, [`ReadIo`]
//! and [`WriteIo`].
//!
//! The page map submits a request and sleeps; the store (a device queue,
//! an interrupt handler, another thread) completes it later. A request owns
//! a count of the frame pool, so the memory it names outlives it, and its
//! frame carries [`INFLIGHT`](crate::flags::INFLIGHT) from submission to
//! completion: the submitter sleeps on that bit (the pool's wait queues, as
//! a page lock's waiters do), and the completion records any error in the
//! frame's flags before it clears the bit with Release, so the submitter
//! reads the outcome with no allocation and no lock. Dropping a request
//! without completing it completes it with [`StoreError::ECANCELED`], so a
//! submitter never sleeps forever on a lost request.

use alloc::sync::Arc;
use core::fmt;
use core::ptr::NonNull;

use super::{PageBuf, StoreControl};
use crate::error::StoreError;
use crate::frame::{flags, FrameId, FramePool, PageSrc};

/// A store whose I/O completes later: submit now, complete from anywhere
/// (Linux's `submit_bio` and `bi_end_io`; Asterinas's `BioWaiter`).
///
/// The page map calls `submit_*` with no lock held but the page's bit locks
/// (LOCKED for a read, WRITEBACK for a write-back) and, for a removal's
/// write-back, the map's remover lock (as [`BackingStore`](crate::BackingStore)
/// says), and then sleeps until
/// the request is completed, so a store may complete it inline (before
/// `submit_*` returns), on another thread, or from an interrupt. A
/// submission must not wait for another request of the same page map to
/// complete first, unless something else completes that one.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use pagemap::{FramePool, PageMap, ReadIo, StoreControl, SubmitStore, WriteIo};
///
/// /// Completes every request on a thread of its own.
/// struct Device(Mutex<Vec<std::thread::JoinHandle<()>>>);
/// impl SubmitStore for Device {
///     fn submit_read(&self, mut io: ReadIo) {
///         let t = std::thread::spawn(move || {
///             let byte = io.index() as u8;
///             io.buf().fill(byte); // "DMA" into the frame
///             io.complete(Ok(()));
///         });
///         self.0.lock().unwrap().push(t);
///     }
///     fn submit_write(&self, io: WriteIo) {
///         io.complete(Ok(())) // inline completion is allowed too
///     }
/// }
/// impl StoreControl for Device {} // no end, no sync: every default
///
/// let map = PageMap::with_submit_store(
///     Arc::new(FramePool::new(4).unwrap()),
///     Arc::new(Device(Mutex::default())),
/// );
/// let page = map.load(7).unwrap(); // submits, sleeps until completed
/// let mut b = [0u8; 1];
/// page.read(100, &mut b).unwrap();
/// assert_eq!(b[0], 7);
/// ```
pub trait SubmitStore: StoreControl {
    /// Starts reading page `io.index()` into [`io.buf()`](ReadIo::buf)
    /// (the frame itself); [`complete`](ReadIo::complete) it when done.
    /// Every byte must be filled (bytes past the end of the store as zero).
    fn submit_read(&self, io: ReadIo);

    /// Starts writing page `io.index()` from the frame
    /// ([`WriteIo::src`], or its address for a device);
    /// [`complete`](WriteIo::complete) it when done. On error the page
    /// stays dirty and is written again later.
    fn submit_write(&self, io: WriteIo);
}

/// What a read and a write request share: the frame under I/O, marked
/// INFLIGHT from creation until the request completes (or is dropped,
/// which completes it with `ECANCELED`), and the submitter asleep on it.
struct Request {
    pool: Arc<FramePool>,
    frame: FrameId,
    index: u64,
    /// Whether it is a write (its error goes to the write-error slot, which
    /// the write-back takes; a read's stays for every waiter of the load).
    write: bool,
    done: bool,
}

impl Request {
    fn new(pool: Arc<FramePool>, frame: FrameId, index: u64, write: bool) -> Self {
        let old = pool.set_flags(frame, flags::INFLIGHT);
        debug_assert_eq!(old & flags::INFLIGHT, 0, "two requests on one frame");
        Self {
            pool,
            frame,
            index,
            write,
            done: false,
        }
    }

    fn finish(&mut self, result: Result<(), StoreError>) {
        if core::mem::replace(&mut self.done, true) {
            return;
        }
        if let Err(e) = result {
            if self.write {
                self.pool.set_write_error(self.frame, e);
            } else {
                self.pool.set_error(self.frame, e);
            }
        }
        // Release (inside): the frame's bytes and the error are visible to
        // the submitter, whose wait acquires the cleared bit.
        self.pool.unlock_bit(self.frame, flags::INFLIGHT);
    }

    fn fmt(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("index", &self.index)
            .field("frame", &self.frame)
            .finish()
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        self.finish(Err(StoreError::new(StoreError::ECANCELED)));
    }
}

/// A submitted read of one page into its frame; see [`SubmitStore`].
pub struct ReadIo(Request);

impl ReadIo {
    /// A read request for `frame`; marks it INFLIGHT.
    ///
    /// # Safety
    /// The caller owns the frame's memory until the request completes (a
    /// loader holding LOCKED on a LOADING frame, which then sleeps on
    /// INFLIGHT), so [`buf`](Self::buf) may hand it out.
    pub(crate) unsafe fn new(pool: Arc<FramePool>, frame: FrameId, index: u64) -> Self {
        Self(Request::new(pool, frame, index, false))
    }

    /// The page to read.
    pub fn index(&self) -> u64 {
        self.0.index
    }

    /// The frame being filled.
    pub fn frame(&self) -> FrameId {
        self.0.frame
    }

    /// The frame's physical address, for a device that fills it by DMA.
    pub fn phys_addr(&self) -> u64 {
        self.0.pool.phys_addr(self.0.frame)
    }

    /// The frame's memory, to fill. It holds an earlier page's bytes.
    pub fn buf(&mut self) -> &mut PageBuf {
        // SAFETY: until this request completes, its submitter owns the
        // frame (`new`'s contract) and sleeps; `&mut self` makes this the
        // only borrow.
        unsafe { self.0.pool.page_mut(self.0.frame) }
    }

    /// Completes the read with its outcome, waking the loader.
    pub fn complete(mut self, result: Result<(), StoreError>) {
        self.0.finish(result);
    }
}

impl fmt::Debug for ReadIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt("ReadIo", f)
    }
}

/// A submitted write-back of one page from its frame; see [`SubmitStore`].
pub struct WriteIo {
    req: Request,
    /// Bytes to write from the start of the page (see [`PageSrc::len`]).
    len: usize,
}

impl WriteIo {
    /// A write request for the first `len` bytes of `frame`, which the
    /// caller holds with WRITEBACK set and sleeps on until completion;
    /// marks it INFLIGHT.
    pub(crate) fn new(pool: Arc<FramePool>, frame: FrameId, index: u64, len: usize) -> Self {
        Self {
            req: Request::new(pool, frame, index, true),
            len,
        }
    }

    /// How many bytes of the page, from its start, to write (the part
    /// below the file's size; [`PAGE_SIZE`](crate::PAGE_SIZE) but for a
    /// partial last page). The device writes exactly these.
    // Never empty: a page wholly past the size is not written back.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// The page to write.
    pub fn index(&self) -> u64 {
        self.req.index
    }

    /// The frame it is in.
    pub fn frame(&self) -> FrameId {
        self.req.frame
    }

    /// The frame's physical address, for a device that reads it by DMA.
    pub fn phys_addr(&self) -> u64 {
        self.req.pool.phys_addr(self.req.frame)
    }

    /// The frame's memory, for a device or a system call (it may change
    /// meanwhile: see [`PageSrc`]).
    pub fn as_ptr(&self) -> NonNull<u8> {
        self.req.pool.frame_ptr(self.req.frame)
    }

    /// The page's bytes, to copy ([`PageSrc::copy_to`]); its
    /// [`len`](PageSrc::len) is [`len`](Self::len).
    pub fn src(&self) -> PageSrc<'_> {
        self.req.pool.page_src_len(self.req.frame, self.len)
    }

    /// Completes the write with its outcome, waking the write-back.
    pub fn complete(mut self, result: Result<(), StoreError>) {
        self.req.finish(result);
    }
}

impl fmt::Debug for WriteIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.req.fmt("WriteIo", f)
    }
}

/// Sleeps until the request on `frame` completes, and returns its outcome
/// (taking a write error out of the flags; a read error stays, as the
/// read's waiters need it).
pub(super) fn wait(pool: &FramePool, frame: FrameId) -> Result<(), StoreError> {
    // Acquire inside (the wait's flag load): pairs with the completion's
    // Release clear of INFLIGHT.
    pool.wait_bit_clear(frame, flags::INFLIGHT);
    let f = pool.flags(frame);
    if f & flags::WRITE_ERROR != 0 {
        return Err(pool.take_write_error(frame));
    }
    if f & flags::ERROR != 0 {
        return Err(StoreError::new(pool.error_code(frame)));
    }
    Ok(())
}
