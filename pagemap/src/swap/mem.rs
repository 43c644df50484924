//! [`MemSwap`]: swap slots in memory, with injectable errors and (with
//! `std`) an artificial device latency.

use alloc::boxed::Box;
use alloc::vec::Vec;
// Plain core atomics, not `crate::sync`'s: under loom those are model
// objects, and a store's statistics are not part of any model (as
// `PlainMutex`, which loom never sees either).
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

use super::{Location, SwapStore};
use crate::error::StoreError;
use crate::sync::PlainMutex;
use crate::PAGE_SIZE;

/// One slot: its page, allocated at its first write, and its injected
/// failures (beside the page, under the same lock: no second array).
#[derive(Debug, Default)]
struct Slot {
    page: Option<Box<[u8; PAGE_SIZE]>>,
    fail_reads: bool,
    fail_writes: bool,
}

/// Swap slots in memory, with injectable errors for tests and fuzzers.
///
/// A slot holds a page only from its first [`page_out`](SwapStore::page_out)
/// until its [`discard`](SwapStore::discard): a slot never written (or
/// discarded) reads as zeroes, and costs 16 bytes (its lock and flags),
/// allocated up front by [`MemSwap::new`]; a written one 4 KiB more. Each
/// slot has its own lock, held only for the copy, so calls on different
/// slots do not wait for each other.
///
/// Injected failures ([`fail_reads`](Self::fail_reads),
/// [`fail_writes`](Self::fail_writes) and the `fail_all_*` switches) return
/// [`StoreError::EIO`] and change nothing: a failed `page_out` leaves the
/// slot's old contents intact, a failed `page_in` leaves its buffer
/// untouched. An out-of-range location fails with [`StoreError::EINVAL`]
/// before any injected failure is looked at.
///
/// ```
/// use pagemap::swap::{Location, MemSwap, SwapStore};
/// use pagemap::{StoreError, PAGE_SIZE};
///
/// let swap = MemSwap::new(8); // 8 slots, 32 KiB of swap
/// let loc = Location::new(5);
/// swap.page_out(loc, &[7; PAGE_SIZE])?;
/// assert_eq!(swap.resident_slots(), 1);
///
/// let mut page = [0; PAGE_SIZE];
/// swap.fail_reads(loc, true);
/// assert_eq!(swap.page_in(loc, &mut page).unwrap_err().code(), StoreError::EIO);
/// assert_eq!(page, [0; PAGE_SIZE]); // untouched
/// swap.fail_reads(loc, false);
/// swap.page_in(loc, &mut page)?;
/// assert_eq!(page, [7; PAGE_SIZE]);
///
/// swap.discard(loc); // its page is freed
/// assert_eq!((swap.resident_slots(), swap.reads(), swap.writes()), (0, 1, 1));
/// # Ok::<(), StoreError>(())
/// ```
#[derive(Debug)]
pub struct MemSwap {
    slots: Box<[PlainMutex<Slot>]>,
    all_reads_fail: AtomicBool,
    all_writes_fail: AtomicBool,
    reads: AtomicU64,
    writes: AtomicU64,
    discards: AtomicU64,
    resident: AtomicU32,
    /// Slept by each `page_in` and `page_out`, outside any lock.
    #[cfg(feature = "std")]
    latency: core::time::Duration,
}

impl MemSwap {
    /// A store of `slots` slots (pages), every one reading as zeroes. Its
    /// per-slot bookkeeping, 16 bytes a slot, is allocated now (pages only
    /// when written).
    pub fn new(slots: u32) -> Self {
        let slots: Vec<PlainMutex<Slot>> = (0..slots).map(|_| PlainMutex::default()).collect();
        Self {
            slots: slots.into_boxed_slice(),
            all_reads_fail: AtomicBool::new(false),
            all_writes_fail: AtomicBool::new(false),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            discards: AtomicU64::new(0),
            resident: AtomicU32::new(0),
            #[cfg(feature = "std")]
            latency: core::time::Duration::ZERO,
        }
    }

    /// The same store, made to take `per_page` longer for each
    /// [`page_in`](SwapStore::page_in) and [`page_out`](SwapStore::page_out)
    /// (an in-range one, failing or not): a device's latency, for
    /// benchmarks of paging. The call sleeps ([`std::thread::sleep`]) before
    /// its copy, holding no lock, so concurrent I/Os overlap as on a real
    /// device with a queue. Zero (the default) sleeps not at all.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use pagemap::swap::{Location, MemSwap, SwapStore};
    /// let swap = MemSwap::new(1).with_latency(Duration::from_millis(1));
    /// let start = Instant::now();
    /// swap.page_out(Location::new(0), &[1; pagemap::PAGE_SIZE]).unwrap();
    /// assert!(start.elapsed() >= Duration::from_millis(1));
    /// ```
    #[cfg(feature = "std")]
    pub fn with_latency(mut self, per_page: core::time::Duration) -> Self {
        self.latency = per_page;
        self
    }

    /// Makes [`page_in`](SwapStore::page_in) of `loc` fail with
    /// [`StoreError::EIO`] (or succeed again). A location out of range is
    /// ignored: its reads fail with [`StoreError::EINVAL`] anyway.
    pub fn fail_reads(&self, loc: Location, fail: bool) {
        if let Some(slot) = self.slot(loc) {
            slot.lock().fail_reads = fail;
        }
    }

    /// Makes [`page_out`](SwapStore::page_out) to `loc` fail with
    /// [`StoreError::EIO`] (or succeed again). A location out of range is
    /// ignored: its writes fail with [`StoreError::EINVAL`] anyway.
    pub fn fail_writes(&self, loc: Location, fail: bool) {
        if let Some(slot) = self.slot(loc) {
            slot.lock().fail_writes = fail;
        }
    }

    /// Makes every [`page_in`](SwapStore::page_in) fail with
    /// [`StoreError::EIO`] (or, with `false`, only those of the locations
    /// given to [`fail_reads`](Self::fail_reads)).
    pub fn fail_all_reads(&self, fail: bool) {
        self.all_reads_fail.store(fail, Relaxed);
    }

    /// Makes every [`page_out`](SwapStore::page_out) fail with
    /// [`StoreError::EIO`] (or, with `false`, only those to the locations
    /// given to [`fail_writes`](Self::fail_writes)).
    pub fn fail_all_writes(&self, fail: bool) {
        self.all_writes_fail.store(fail, Relaxed);
    }

    /// Successful [`page_in`](SwapStore::page_in)s so far (pages).
    pub fn reads(&self) -> u64 {
        self.reads.load(Relaxed)
    }

    /// Successful [`page_out`](SwapStore::page_out)s so far (pages).
    pub fn writes(&self) -> u64 {
        self.writes.load(Relaxed)
    }

    /// [`discard`](SwapStore::discard)s of in-range locations so far,
    /// whether or not the slot held a page.
    pub fn discards(&self) -> u64 {
        self.discards.load(Relaxed)
    }

    /// Slots holding a page now: written and not discarded since (each
    /// 4 KiB of memory).
    pub fn resident_slots(&self) -> u32 {
        self.resident.load(Relaxed)
    }

    fn slot(&self, loc: Location) -> Option<&PlainMutex<Slot>> {
        self.slots.get(loc.get() as usize)
    }

    /// The device's latency: a sleep, holding no lock.
    fn delay(&self) {
        #[cfg(feature = "std")]
        if !self.latency.is_zero() {
            std::thread::sleep(self.latency);
        }
    }
}

fn einval() -> StoreError {
    StoreError::new(StoreError::EINVAL)
}

fn eio() -> StoreError {
    StoreError::new(StoreError::EIO)
}

impl SwapStore for MemSwap {
    fn slots(&self) -> u32 {
        // `new` took a u32 count.
        self.slots.len() as u32
    }

    fn page_out(&self, loc: Location, src: &[u8; PAGE_SIZE]) -> Result<(), StoreError> {
        let slot = self.slot(loc).ok_or_else(einval)?;
        self.delay();
        let mut g = slot.lock();
        if g.fail_writes || self.all_writes_fail.load(Relaxed) {
            return Err(eio());
        }
        match &mut g.page {
            Some(page) => page.copy_from_slice(src),
            None => {
                // Allocated under the slot's lock: only this slot waits.
                g.page = Some(Box::new(*src));
                self.resident.fetch_add(1, Relaxed);
            }
        }
        self.writes.fetch_add(1, Relaxed);
        Ok(())
    }

    fn page_in(&self, loc: Location, dst: &mut [u8; PAGE_SIZE]) -> Result<(), StoreError> {
        let slot = self.slot(loc).ok_or_else(einval)?;
        self.delay();
        let g = slot.lock();
        if g.fail_reads || self.all_reads_fail.load(Relaxed) {
            return Err(eio());
        }
        match &g.page {
            Some(page) => dst.copy_from_slice(&page[..]),
            None => dst.fill(0),
        }
        self.reads.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Frees the slot's page (it reads as zeroes from now on); its injected
    /// failures stay.
    fn discard(&self, loc: Location) {
        let Some(slot) = self.slot(loc) else {
            return;
        };
        let page = slot.lock().page.take();
        if page.is_some() {
            self.resident.fetch_sub(1, Relaxed);
        }
        self.discards.fetch_add(1, Relaxed);
        // `page` is freed here, after the unlock.
    }
}

#[cfg(all(test, not(pagemap_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn loc(n: u32) -> Location {
        Location::new(n)
    }

    fn read(s: &MemSwap, n: u32) -> [u8; PAGE_SIZE] {
        let mut b = [0xEE; PAGE_SIZE];
        s.page_in(loc(n), &mut b).unwrap();
        b
    }

    #[test]
    fn swap_mem_round_trip_and_zeroes() {
        let s = MemSwap::new(4);
        assert_eq!(s.slots(), 4);
        assert_eq!(read(&s, 2), [0; PAGE_SIZE], "never written: zeroes");
        assert_eq!(s.resident_slots(), 0, "a read allocates nothing");
        let mut page = [0u8; PAGE_SIZE];
        for (i, b) in page.iter_mut().enumerate() {
            *b = i as u8;
        }
        s.page_out(loc(3), &page).unwrap();
        s.page_out(loc(0), &[9; PAGE_SIZE]).unwrap();
        assert_eq!(read(&s, 3), page);
        assert_eq!(read(&s, 0), [9; PAGE_SIZE]);
        s.page_out(loc(3), &[1; PAGE_SIZE]).unwrap();
        assert_eq!(read(&s, 3), [1; PAGE_SIZE], "overwritten in place");
        assert_eq!((s.reads(), s.writes(), s.resident_slots()), (4, 3, 2));
    }

    #[test]
    fn swap_mem_out_of_range_is_einval_and_changes_nothing() {
        let s = MemSwap::new(2);
        s.page_out(loc(1), &[5; PAGE_SIZE]).unwrap();
        for bad in [2, 3, u32::MAX] {
            let e = s.page_out(loc(bad), &[6; PAGE_SIZE]).unwrap_err();
            assert_eq!(e.code(), StoreError::EINVAL);
            let mut b = [0xAB; PAGE_SIZE];
            let e = s.page_in(loc(bad), &mut b).unwrap_err();
            assert_eq!(e.code(), StoreError::EINVAL);
            assert_eq!(b, [0xAB; PAGE_SIZE], "dst untouched");
            s.discard(loc(bad));
            s.fail_reads(loc(bad), true);
            s.fail_writes(loc(bad), true);
        }
        // The range check comes before injected failures.
        s.fail_all_writes(true);
        let e = s.page_out(loc(2), &[6; PAGE_SIZE]).unwrap_err();
        assert_eq!(e.code(), StoreError::EINVAL);
        s.fail_all_writes(false);
        assert_eq!((s.reads(), s.writes(), s.discards()), (0, 1, 0));
        assert_eq!(s.resident_slots(), 1);
        assert_eq!(read(&s, 1), [5; PAGE_SIZE]);
        assert_eq!(read(&s, 0), [0; PAGE_SIZE]);
    }

    #[test]
    fn swap_mem_injected_errors_change_nothing() {
        let s = MemSwap::new(3);
        s.page_out(loc(1), &[1; PAGE_SIZE]).unwrap();

        s.fail_writes(loc(1), true);
        let e = s.page_out(loc(1), &[2; PAGE_SIZE]).unwrap_err();
        assert_eq!(e.code(), StoreError::EIO);
        s.page_out(loc(2), &[2; PAGE_SIZE]).unwrap(); // other slots work
        s.fail_writes(loc(1), false);
        assert_eq!(read(&s, 1), [1; PAGE_SIZE], "old contents kept");

        s.fail_reads(loc(1), true);
        let mut b = [0xCD; PAGE_SIZE];
        let e = s.page_in(loc(1), &mut b).unwrap_err();
        assert_eq!(e.code(), StoreError::EIO);
        assert_eq!(b, [0xCD; PAGE_SIZE], "dst untouched");
        assert_eq!(read(&s, 2), [2; PAGE_SIZE]);
        s.fail_reads(loc(1), false);

        s.fail_all_writes(true);
        for n in 0..3 {
            let e = s.page_out(loc(n), &[3; PAGE_SIZE]).unwrap_err();
            assert_eq!(e.code(), StoreError::EIO);
        }
        s.fail_all_writes(false);
        assert_eq!(
            s.resident_slots(),
            2,
            "a failed first write allocates nothing"
        );

        s.fail_all_reads(true);
        let e = s.page_in(loc(0), &mut b).unwrap_err();
        assert_eq!(e.code(), StoreError::EIO);
        assert_eq!(b, [0xCD; PAGE_SIZE]);
        s.fail_all_reads(false);

        assert_eq!(read(&s, 0), [0; PAGE_SIZE]);
        assert_eq!(read(&s, 1), [1; PAGE_SIZE]);
        assert_eq!(read(&s, 2), [2; PAGE_SIZE]);
        // Only successes count.
        assert_eq!((s.reads(), s.writes()), (5, 2));
    }

    #[test]
    fn swap_mem_discard_frees_the_page() {
        let s = MemSwap::new(2);
        s.page_out(loc(0), &[4; PAGE_SIZE]).unwrap();
        s.page_out(loc(1), &[5; PAGE_SIZE]).unwrap();
        assert_eq!(s.resident_slots(), 2);
        s.discard(loc(0));
        s.discard(loc(0)); // twice: nothing more to free
        assert_eq!((s.resident_slots(), s.discards()), (1, 2));
        assert_eq!(read(&s, 0), [0; PAGE_SIZE]);
        assert_eq!(read(&s, 1), [5; PAGE_SIZE]);
        s.page_out(loc(0), &[6; PAGE_SIZE]).unwrap();
        assert_eq!(read(&s, 0), [6; PAGE_SIZE]);
        assert_eq!(s.resident_slots(), 2);
    }

    #[test]
    fn swap_mem_concurrent_threads_on_own_slots() {
        const THREADS: u32 = 4;
        const PER: u32 = 16;
        const ROUNDS: u32 = 20;
        let s = Arc::new(MemSwap::new(THREADS * PER));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut b = [0u8; PAGE_SIZE];
                    for r in 0..ROUNDS {
                        for i in 0..PER {
                            let n = t * PER + i;
                            let byte = (n + r) as u8;
                            s.page_out(loc(n), &[byte; PAGE_SIZE]).unwrap();
                            s.page_in(loc(n), &mut b).unwrap();
                            assert_eq!(b, [byte; PAGE_SIZE]);
                            if r % 5 == 4 {
                                s.discard(loc(n));
                            }
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let ops = u64::from(THREADS * PER * ROUNDS);
        assert_eq!((s.reads(), s.writes(), s.discards()), (ops, ops, ops / 5));
        // The last round (19) discarded every slot.
        assert_eq!(s.resident_slots(), 0);
    }

    /// Wall time of `threads` threads each doing `per` page_outs to
    /// location 0 of `s`.
    fn timed(s: &Arc<MemSwap>, threads: usize, per: usize) -> Duration {
        let start = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..per {
                        s.page_out(loc(0), &[1; PAGE_SIZE]).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        start.elapsed()
    }

    #[test]
    fn swap_mem_latency_overlaps_two_threads() {
        // Both threads write one location, which the contract never asks
        // for, on purpose: with a lock per slot, threads on different slots
        // would overlap even if the sleep were under the lock. Compared
        // with the same 40 writes by one thread, timed just before, so
        // that a loaded machine's late wake-ups inflate both; a serialized
        // sleep would take as long as that. Three tries, for the noise.
        let s = Arc::new(MemSwap::new(1).with_latency(Duration::from_millis(2)));
        let mut seen = Vec::new();
        for _ in 0..3 {
            let serial = timed(&s, 1, 40);
            let parallel = timed(&s, 2, 20);
            assert!(serial >= Duration::from_millis(80), "{serial:?}");
            if parallel.as_secs_f64() < 0.8 * serial.as_secs_f64() {
                return;
            }
            seen.push((serial, parallel));
        }
        panic!("two threads' I/Os did not overlap (serial, parallel): {seen:?}");
    }
}
