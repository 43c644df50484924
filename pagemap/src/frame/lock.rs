//! The bit locks of a frame's flags word (LOCKED, the page lock, and
//! WRITEBACK) and the wait buckets their waiters sleep in.

use super::{flags, FrameId, FramePool};
use crate::sync::raw::Park;
use crate::sync::Ordering;
#[cfg(any(feature = "std", pagemap_loom))]
use crate::sync::{Condvar, Mutex};

impl FramePool {
    // ---- bit locks: LOCKED (the page lock) and WRITEBACK ---------------

    /// Tries to take LOCKED. Acquire on success: pairs with the unlocker's Release.
    pub(crate) fn try_lock(&self, id: FrameId) -> bool {
        self.try_lock_bit(id, flags::LOCKED)
    }

    /// Takes LOCKED, sleeping while someone else has it.
    pub(crate) fn lock(&self, id: FrameId) {
        self.lock_bit(id, flags::LOCKED)
    }

    /// Drops LOCKED and wakes sleepers.
    pub(crate) fn unlock(&self, id: FrameId) {
        self.unlock_bit(id, flags::LOCKED)
    }

    /// Sleeps until LOCKED is clear (it may be taken again right after).
    pub(crate) fn wait_unlocked(&self, id: FrameId) {
        self.wait_bit_clear(id, flags::LOCKED)
    }

    /// Tries to take BUSY (a private frame's page-in or page-out). SeqCst,
    /// not just Acquire: it pairs with the SeqCst state-word CAS of a fault
    /// that takes a reference from the swap cache and then reads BUSY
    /// ([`busy`](Self::busy)): a store-buffering pair (see `swap::state`).
    pub(crate) fn try_lock_busy(&self, id: FrameId) -> bool {
        crate::sync::sb::fetch_or32(&self.frame(id).flags, flags::BUSY, Ordering::SeqCst)
            & flags::BUSY
            == 0
    }

    /// Whether BUSY is set (SeqCst: see [`try_lock_busy`](Self::try_lock_busy)).
    pub(crate) fn busy(&self, id: FrameId) -> bool {
        crate::sync::sb::load32(&self.frame(id).flags, Ordering::SeqCst) & flags::BUSY != 0
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
        if self.clear_lock_bit(id, bit) {
            self.wake_bit_waiters(id);
        }
    }

    /// Clears a lock bit and WAITERS; whether there were waiters to wake.
    fn clear_lock_bit(&self, id: FrameId, bit: u32) -> bool {
        let old = self
            .frame(id)
            .flags
            .fetch_and(!(bit | flags::WAITERS), Ordering::Release);
        assert!(
            old & bit != 0,
            "unlocking a clear bit {bit:#x} of frame {id:?}"
        );
        old & flags::WAITERS != 0
    }

    /// Sleeps until `bit` is clear.
    pub(crate) fn wait_bit_clear(&self, id: FrameId, bit: u32) {
        #[cfg(any(feature = "std", pagemap_loom))]
        self.wait_bit_clear_bucket(id, bit);
        #[cfg(not(any(feature = "std", pagemap_loom)))]
        self.wait_bit_clear_parked::<crate::platform::PlatformPark>(id, bit);
    }

    /// Wakes every sleeper on a bit of `id` (they re-check).
    fn wake_bit_waiters(&self, id: FrameId) {
        #[cfg(any(feature = "std", pagemap_loom))]
        {
            let (m, cv) = self.bucket(id);
            // Taking the bucket lock orders this wake-up after any waiter
            // that saw the bit set under it is asleep: no lost wake-up.
            drop(m.lock());
            cv.notify_all();
        }
        #[cfg(not(any(feature = "std", pagemap_loom)))]
        self.wake_bit_parked::<crate::platform::PlatformPark>(id);
    }

    /// The std and loom wait: in a hashed bucket's condition variable.
    #[cfg(any(feature = "std", pagemap_loom))]
    fn wait_bit_clear_bucket(&self, id: FrameId, bit: u32) {
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

    /// The park key of `id`'s bits: its flags word's address (Linux waits
    /// on the page itself).
    fn bit_key(&self, id: FrameId) -> usize {
        &self.frame(id).flags as *const _ as usize
    }

    /// The no_std wait: parked on the flags word's address through `P` (the
    /// platform's park; generic so the std tests run it over `StdPark`).
    #[cfg_attr(any(feature = "std", pagemap_loom), allow(dead_code))]
    pub(crate) fn wait_bit_clear_parked<P: Park>(&self, id: FrameId, bit: u32) {
        let flags = &self.frame(id).flags;
        // Acquire: pairs with the unlocker's Release (what was done under
        // the bit is visible once we see it clear).
        while flags.load(Ordering::Acquire) & bit != 0 {
            // Announce the sleeper in the park's check, ordered with the
            // unlocker's wake-up by the park's contract: an unlocker either
            // sees WAITERS (and its unpark_all wakes us) or we see it clear.
            P::park(self.bit_key(id), &|| {
                flags.fetch_or(flags::WAITERS, Ordering::Acquire) & bit != 0
            });
        }
    }

    /// The no_std wake-up of [`wait_bit_clear_parked`](Self::wait_bit_clear_parked).
    #[cfg_attr(any(feature = "std", pagemap_loom), allow(dead_code))]
    pub(crate) fn wake_bit_parked<P: Park>(&self, id: FrameId) {
        P::unpark_all(self.bit_key(id));
    }

    #[cfg(any(feature = "std", pagemap_loom))]
    fn bucket(&self, id: FrameId) -> &(Mutex<()>, Condvar) {
        &self.waitq[id.get() as usize % self.waitq.len()]
    }
}

#[cfg(all(test, feature = "std", not(pagemap_loom)))]
mod tests {
    use super::*;
    use crate::sync::raw::StdPark;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    /// The no_std build's page lock, over parking_lot_core instead of a
    /// platform: `lock_bit` and `unlock_bit` with the parked wait.
    fn lock(pool: &FramePool, id: FrameId) {
        while !pool.try_lock_bit(id, flags::LOCKED) {
            pool.wait_bit_clear_parked::<StdPark>(id, flags::LOCKED);
        }
    }

    fn unlock(pool: &FramePool, id: FrameId) {
        if pool.clear_lock_bit(id, flags::LOCKED) {
            pool.wake_bit_parked::<StdPark>(id);
        }
    }

    #[test]
    // Parks through parking_lot_core, whose futex call miri rejects (the
    // argument type of its variadic syscall, not this code).
    #[cfg_attr(miri, ignore)]
    fn parked_page_lock_excludes() {
        let pool = Arc::new(FramePool::new(1).unwrap());
        let id = pool.alloc().unwrap();
        let count = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (pool, count) = (pool.clone(), count.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        lock(&pool, id);
                        // Load then store: an update is lost if two hold it.
                        let v = count.load(Ordering::Relaxed);
                        count.store(v + 1, Ordering::Relaxed);
                        unlock(&pool, id);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(count.load(Ordering::Relaxed), 40_000);
        assert_eq!(pool.flags(id) & (flags::LOCKED | flags::WAITERS), 0);
    }

    #[test]
    // Parks through parking_lot_core, whose futex call miri rejects (the
    // argument type of its variadic syscall, not this code).
    #[cfg_attr(miri, ignore)]
    fn parked_page_waiter_is_woken() {
        let pool = Arc::new(FramePool::new(1).unwrap());
        let id = pool.alloc().unwrap();
        lock(&pool, id);
        let t = {
            let pool = pool.clone();
            std::thread::spawn(move || pool.wait_bit_clear_parked::<StdPark>(id, flags::LOCKED))
        };
        while pool.flags(id) & flags::WAITERS == 0 {
            std::thread::yield_now();
        }
        unlock(&pool, id);
        t.join().unwrap();
    }
}
