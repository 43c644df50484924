//! Page frames: a fixed pool standing for physical memory.
//!
//! A frame has a non-zero [`FrameId`], an atomic flags word, its owner
//! (page map id and page index) while it belongs to a page map, and 4 KiB of
//! contents. Contents are an array of `AtomicU64` accessed with relaxed
//! atomics, so concurrent readers and writers never form a Rust data race
//! (they can tear at word granularity, exactly like real memory; the page
//! lock and the removal protocol decide who may rely on what).
//!
//! Free frames are kept on an intrusive list threaded through their `index`
//! field, so the pool spends 16 bytes of metadata per frame and nothing else.

use std::fmt;
use std::num::NonZeroU32;

use crate::error::{code_to_kind, kind_to_code, Error};
use crate::sync::{data, AtomicU32, AtomicU64, AtomicUsize, Condvar, Mutex, Ordering};
use crate::PAGE_SIZE;

/// Words of page contents.
const PAGE_WORDS: usize = PAGE_SIZE / 8;

/// The identity of a frame: its position in the pool plus one (0 means "no
/// page", which is what makes an all-zero slot word empty).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrameId(NonZeroU32);

impl FrameId {
    /// Wraps a raw id; `None` for 0.
    pub fn new(raw: u32) -> Option<Self> {
        NonZeroU32::new(raw).map(Self)
    }

    /// The raw id (never 0).
    pub fn get(self) -> u32 {
        self.0.get()
    }

    fn slot(self) -> usize {
        self.0.get() as usize - 1
    }
}

impl fmt::Debug for FrameId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "f{}", self.0)
    }
}

/// Frame flag bits (one atomic word per frame).
pub mod flags {
    /// I/O in flight or contents being changed; others wait.
    pub const LOCKED: u32 = 1 << 0;
    /// Contents are valid.
    pub const UPTODATE: u32 = 1 << 1;
    /// Contents differ from the backing store.
    pub const DIRTY: u32 = 1 << 2;
    /// The frame belongs to a page map.
    pub const PAGEMAP: u32 = 1 << 3;
    /// A write-back of this page is in progress.
    pub const WRITEBACK: u32 = 1 << 4;
    /// The last read failed (the error kind is in the high byte).
    pub const ERROR: u32 = 1 << 5;
    /// Demand paging: the frame is being paged in or out.
    pub const BUSY: u32 = 1 << 6;
    /// Demand paging: a clean copy exists in the backing store.
    pub const BACKED: u32 = 1 << 7;
    /// Demand paging: never evict.
    pub const PINNED: u32 = 1 << 8;
    /// Mapped by at least one page table entry.
    pub const MAPPED: u32 = 1 << 9;
    /// Someone sleeps on LOCKED (internal: lets unlock skip the wake-up).
    pub(crate) const WAITERS: u32 = 1 << 15;
    /// Shift of the 8-bit I/O error kind code.
    pub(crate) const ERRKIND_SHIFT: u32 = 24;
    /// Mask of the error kind code.
    pub(crate) const ERRKIND_MASK: u32 = 0xff << ERRKIND_SHIFT;
}

/// One frame's metadata: 16 bytes.
#[derive(Debug)]
pub(crate) struct Frame {
    flags: AtomicU32,
    /// Id of the owning page map (0 when free).
    owner: AtomicU32,
    /// Page index while owned; next free frame id while free.
    index: AtomicU64,
}

#[cfg(not(loom))]
const WAIT_BUCKETS: usize = 64;
#[cfg(loom)]
const WAIT_BUCKETS: usize = 1;

/// A fixed pool of 4 KiB page frames.
///
/// ```
/// use pagemap::FramePool;
/// let pool = FramePool::new(2).unwrap();
/// let a = pool.alloc().unwrap();
/// let b = pool.alloc().unwrap();
/// assert!(pool.alloc().is_err()); // exhausted: an error, not a panic
/// pool.free(a);
/// pool.free(b);
/// assert_eq!(pool.free_frames(), 2);
/// ```
pub struct FramePool {
    frames: Box<[Frame]>,
    data: Box<[data::AtomicU64]>,
    /// Head of the free list (a frame id, 0 = empty). The lock is only taken
    /// on a miss (allocation) or a free, never on a lookup.
    free_head: Mutex<u32>,
    nr_free: AtomicUsize,
    /// Hashed wait queues for LOCKED, as Linux's page wait table.
    waitq: Box<[(Mutex<()>, Condvar)]>,
}

impl fmt::Debug for FramePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramePool")
            .field("capacity", &self.capacity())
            .field("free", &self.free_frames())
            .finish()
    }
}

impl FramePool {
    /// The largest pool: frame ids must fit the slot word's frame field.
    pub const MAX_CAPACITY: usize = crate::slot::FRAME_MASK as usize - 1;

    /// A pool of `capacity` zeroed frames. Memory for contents is reserved
    /// zeroed, so untouched frames cost no resident memory on most systems.
    pub fn new(capacity: usize) -> Result<Self, Error> {
        if capacity == 0 || capacity > Self::MAX_CAPACITY {
            return Err(Error::InvalidCapacity {
                requested: capacity,
                max: Self::MAX_CAPACITY,
            });
        }
        // Free list: 1 -> 2 -> ... -> capacity -> 0.
        let frames: Box<[Frame]> = (0..capacity)
            .map(|i| Frame {
                flags: AtomicU32::new(0),
                owner: AtomicU32::new(0),
                index: AtomicU64::new(if i + 1 < capacity { i as u64 + 2 } else { 0 }),
            })
            .collect();
        let words = capacity
            .checked_mul(PAGE_WORDS)
            .ok_or(Error::InvalidCapacity {
                requested: capacity,
                max: Self::MAX_CAPACITY,
            })?;
        let data = Box::<[data::AtomicU64]>::new_zeroed_slice(words);
        // SAFETY: an all-zero bit pattern is a valid AtomicU64 (it is a u64).
        let data = unsafe { data.assume_init() };
        let waitq = (0..WAIT_BUCKETS)
            .map(|_| (Mutex::new(()), Condvar::new()))
            .collect();
        Ok(Self {
            frames,
            data,
            free_head: Mutex::new(1),
            nr_free: AtomicUsize::new(capacity),
            waitq,
        })
    }

    /// Frames in the pool.
    pub fn capacity(&self) -> usize {
        self.frames.len()
    }

    /// Frames currently free (a snapshot).
    pub fn free_frames(&self) -> usize {
        self.nr_free.load(Ordering::Relaxed)
    }

    /// Bytes of metadata the pool spends per frame (contents excluded).
    pub const fn metadata_bytes_per_frame() -> usize {
        std::mem::size_of::<Frame>()
    }

    /// Takes a free frame; its flags are 0 and its contents whatever the last
    /// owner left (callers fill it before publishing it).
    pub fn alloc(&self) -> Result<FrameId, Error> {
        let mut head = self.free_head.lock();
        let id = FrameId::new(*head).ok_or(Error::PoolExhausted {
            capacity: self.capacity(),
        })?;
        let frame = self.frame(id);
        *head = frame.index.load(Ordering::Relaxed) as u32;
        self.nr_free.fetch_sub(1, Ordering::Relaxed);
        drop(head);
        debug_assert_eq!(
            frame.flags.load(Ordering::Relaxed),
            0,
            "free frame has flags"
        );
        frame.index.store(0, Ordering::Relaxed);
        Ok(id)
    }

    /// Returns a frame to the pool. The caller guarantees nothing can reach it
    /// any more: no slot word, no page table entry, no TLB entry.
    pub fn free(&self, id: FrameId) {
        let frame = self.frame(id);
        let old = frame.flags.swap(0, Ordering::Relaxed);
        assert!(
            old & flags::LOCKED == 0,
            "freeing a locked frame {id:?} ({old:#x})"
        );
        frame.owner.store(0, Ordering::Relaxed);
        let mut head = self.free_head.lock();
        frame.index.store(*head as u64, Ordering::Relaxed);
        *head = id.get();
        self.nr_free.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn frame(&self, id: FrameId) -> &Frame {
        &self.frames[id.slot()]
    }

    fn words(&self, id: FrameId) -> &[data::AtomicU64] {
        let start = id.slot() * PAGE_WORDS;
        &self.data[start..start + PAGE_WORDS]
    }

    // ---- metadata -------------------------------------------------------

    /// Sets owner and index (before the frame is published in a slot).
    pub(crate) fn set_owner(&self, id: FrameId, owner: u32, index: u64, initial_flags: u32) {
        let f = self.frame(id);
        f.owner.store(owner, Ordering::Relaxed);
        f.index.store(index, Ordering::Relaxed);
        // Relaxed: the slot word's Release publish orders all three.
        f.flags.store(initial_flags, Ordering::Relaxed);
    }

    /// The (owner, index) of an owned frame.
    pub(crate) fn owner(&self, id: FrameId) -> (u32, u64) {
        let f = self.frame(id);
        (
            f.owner.load(Ordering::Relaxed),
            f.index.load(Ordering::Relaxed),
        )
    }

    /// Current flags. Acquire: pairs with the Release of whoever set them
    /// (UPTODATE after a read, DIRTY after a copy).
    pub fn flags(&self, id: FrameId) -> u32 {
        self.frame(id).flags.load(Ordering::Acquire)
    }

    /// Sets bits, returning the old flags. AcqRel: a flag change orders the
    /// contents written before it (Release) and sees the previous setter's (Acquire).
    pub fn set_flags(&self, id: FrameId, bits: u32) -> u32 {
        self.frame(id).flags.fetch_or(bits, Ordering::AcqRel)
    }

    /// Clears bits, returning the old flags (orderings as [`set_flags`](Self::set_flags)).
    pub fn clear_flags(&self, id: FrameId, bits: u32) -> u32 {
        self.frame(id).flags.fetch_and(!bits, Ordering::AcqRel)
    }

    /// Records a read error kind with ERROR, in one step.
    pub(crate) fn set_error(&self, id: FrameId, kind: std::io::ErrorKind) {
        let code = kind_to_code(kind) << flags::ERRKIND_SHIFT;
        let f = self.frame(id);
        let mut old = f.flags.load(Ordering::Relaxed);
        loop {
            let new = (old & !flags::ERRKIND_MASK) | flags::ERROR | code;
            match f
                .flags
                .compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(seen) => old = seen,
            }
        }
    }

    /// The error kind recorded with ERROR.
    pub(crate) fn error_kind(&self, id: FrameId) -> std::io::ErrorKind {
        code_to_kind((self.flags(id) & flags::ERRKIND_MASK) >> flags::ERRKIND_SHIFT)
    }

    // ---- bit locks: LOCKED (the page lock) and WRITEBACK ---------------

    /// Tries to take LOCKED. Acquire on success: pairs with the unlocker's Release.
    pub fn try_lock(&self, id: FrameId) -> bool {
        self.try_lock_bit(id, flags::LOCKED)
    }

    /// Takes LOCKED, sleeping while someone else has it.
    pub fn lock(&self, id: FrameId) {
        self.lock_bit(id, flags::LOCKED)
    }

    /// Drops LOCKED and wakes sleepers.
    pub fn unlock(&self, id: FrameId) {
        self.unlock_bit(id, flags::LOCKED)
    }

    /// Sleeps until LOCKED is clear (it may be taken again right after).
    pub fn wait_unlocked(&self, id: FrameId) {
        self.wait_bit_clear(id, flags::LOCKED)
    }

    /// Tries to take a lock bit (LOCKED or WRITEBACK). Acquire on success:
    /// pairs with the Release of the previous holder's unlock.
    pub(crate) fn try_lock_bit(&self, id: FrameId, bit: u32) -> bool {
        self.frame(id).flags.fetch_or(bit, Ordering::Acquire) & bit == 0
    }

    /// Takes a lock bit, sleeping while someone else has it.
    pub(crate) fn lock_bit(&self, id: FrameId, bit: u32) {
        while !self.try_lock_bit(id, bit) {
            self.wait_bit_clear(id, bit);
        }
    }

    /// Drops a lock bit and wakes sleepers. Release: what was done under the
    /// bit is visible to the next holder and to waiters.
    pub(crate) fn unlock_bit(&self, id: FrameId, bit: u32) {
        let old = self
            .frame(id)
            .flags
            .fetch_and(!(bit | flags::WAITERS), Ordering::Release);
        assert!(
            old & bit != 0,
            "unlocking a clear bit {bit:#x} of frame {id:?}"
        );
        if old & flags::WAITERS != 0 {
            let (m, cv) = self.bucket(id);
            // Taking the bucket lock orders this wake-up after any waiter
            // that saw the bit set under it is asleep: no lost wake-up.
            drop(m.lock());
            cv.notify_all();
        }
    }

    /// Sleeps until `bit` is clear.
    pub(crate) fn wait_bit_clear(&self, id: FrameId, bit: u32) {
        let (m, cv) = self.bucket(id);
        let mut guard = m.lock();
        loop {
            // Announce the sleeper before the re-check, both under the
            // bucket lock: an unlocker either sees WAITERS or we see it clear.
            // One WAITERS bit serves both lock bits: a wake-up wakes all.
            let now = self
                .frame(id)
                .flags
                .fetch_or(flags::WAITERS, Ordering::Acquire);
            if now & bit == 0 {
                return;
            }
            guard = cv.wait(guard);
        }
    }

    fn bucket(&self, id: FrameId) -> &(Mutex<()>, Condvar) {
        &self.waitq[id.get() as usize % self.waitq.len()]
    }

    // ---- contents ---------------------------------------------------------

    /// Copies `buf.len()` bytes at `offset` out of the frame.
    pub fn read(&self, id: FrameId, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
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
    pub fn write(&self, id: FrameId, offset: usize, data: &[u8]) -> Result<(), Error> {
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
                let _ = words[w].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                    Some((old & !mask) | val)
                });
            }
            pos += n;
            inp += n;
        }
        Ok(())
    }

    /// Copies the whole page out.
    pub fn read_page(&self, id: FrameId, buf: &mut [u8; PAGE_SIZE]) {
        for (chunk, w) in buf.chunks_exact_mut(8).zip(self.words(id)) {
            chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
    }

    /// Overwrites the whole page.
    pub fn write_page(&self, id: FrameId, buf: &[u8; PAGE_SIZE]) {
        for (chunk, w) in buf.chunks_exact(8).zip(self.words(id)) {
            w.store(
                u64::from_le_bytes(chunk.try_into().expect("8 bytes")),
                Ordering::Relaxed,
            );
        }
    }

    /// Zeroes the whole page.
    pub fn zero_page(&self, id: FrameId) {
        for w in self.words(id) {
            w.store(0, Ordering::Relaxed);
        }
    }
}

fn check_range(offset: usize, len: usize) -> Result<(), Error> {
    match offset.checked_add(len) {
        Some(end) if end <= PAGE_SIZE => Ok(()),
        _ => Err(Error::OutOfBounds { offset, len }),
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_16_bytes() {
        assert_eq!(FramePool::metadata_bytes_per_frame(), 16);
    }

    #[test]
    fn exhaustion_is_an_error_and_free_refills() {
        let pool = FramePool::new(3).unwrap();
        let ids: Vec<_> = (0..3).map(|_| pool.alloc().unwrap()).collect();
        assert!(ids.iter().all(|id| id.get() != 0));
        assert!(matches!(
            pool.alloc(),
            Err(Error::PoolExhausted { capacity: 3 })
        ));
        pool.free(ids[1]);
        assert_eq!(pool.alloc().unwrap(), ids[1]);
    }

    #[test]
    fn bad_capacity_is_an_error() {
        assert!(matches!(
            FramePool::new(0),
            Err(Error::InvalidCapacity { .. })
        ));
        assert!(matches!(
            FramePool::new(FramePool::MAX_CAPACITY + 1),
            Err(Error::InvalidCapacity { .. })
        ));
    }

    #[test]
    fn unaligned_contents_round_trip() {
        let pool = FramePool::new(1).unwrap();
        let id = pool.alloc().unwrap();
        let msg: Vec<u8> = (0..100u8).collect();
        pool.write(id, 4093 - 100, &msg).unwrap();
        let mut back = vec![0; 100];
        pool.read(id, 4093 - 100, &mut back).unwrap();
        assert_eq!(back, msg);
        let mut one = [0u8; 1];
        pool.read(id, 4093 - 101, &mut one).unwrap();
        assert_eq!(one[0], 0, "neighbouring byte untouched");
        assert!(matches!(
            pool.write(id, 4090, &[0; 7]),
            Err(Error::OutOfBounds { .. })
        ));
        assert!(matches!(
            pool.read(id, usize::MAX, &mut one),
            Err(Error::OutOfBounds { .. })
        ));
    }

    #[test]
    fn page_lock_wakes_waiter() {
        let pool = std::sync::Arc::new(FramePool::new(1).unwrap());
        let id = pool.alloc().unwrap();
        pool.lock(id);
        let p2 = pool.clone();
        let t = std::thread::spawn(move || {
            p2.lock(id);
            p2.unlock(id);
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        pool.unlock(id);
        t.join().unwrap();
        assert_eq!(pool.flags(id) & flags::LOCKED, 0);
    }

    #[test]
    fn error_kind_is_kept() {
        let pool = FramePool::new(1).unwrap();
        let id = pool.alloc().unwrap();
        pool.set_error(id, std::io::ErrorKind::PermissionDenied);
        assert_ne!(pool.flags(id) & flags::ERROR, 0);
        assert_eq!(pool.error_kind(id), std::io::ErrorKind::PermissionDenied);
    }
}
