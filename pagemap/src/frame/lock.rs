//! The bit locks of a frame's flags word (LOCKED, the page lock, and
//! WRITEBACK) and the wait buckets their waiters sleep in.

use super::{flags, FrameId, FramePool};
use crate::sync::{Condvar, Mutex, Ordering};

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
}
