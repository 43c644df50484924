//! Raw locks on one atomic word that sleep through a [`Park`]: without the
//! `std` feature they are the crate's [`Mutex`](super::Mutex) and
//! [`RwLock`](super::RwLock) (through `lock_api`, over the installed
//! [`Platform`](crate::platform::Platform)'s park). They are compiled in
//! every build, generic over the park, so that the std unit tests run them
//! over [`StdPark`] (parking_lot_core) and the loom models over a loom park:
//! the code a kernel runs is the code that is tested.
//!
//! Both locks keep a PARKED bit in their word: an unlocker that finds it
//! wakes every thread parked on the word's address, and a thread parks only
//! after [`Park::park`] re-checked, with the wait queue ordered against the
//! unlocker's wake-up, that the bit is still set and the lock still taken.
//! Every waiter is woken at once (and the ones that lose re-park): simple,
//! and the locks that use them (remover, writer, reverse-map, invalidate,
//! free list) are rarely contended by more than a few threads.

use core::marker::PhantomData;

use super::{AtomicUsize, Ordering};

/// Keyed sleep and wake-up: the shape of parking_lot_core's
/// `park`/`unpark_all` and of Linux's `wait_var_event`/`wake_up_var`.
///
/// The contract is the absence of lost wake-ups: if `should_park` returns
/// `true`, then any [`unpark_all`](Self::unpark_all) of the same key that
/// starts after `should_park`'s atomic accesses wakes this park. Either
/// evaluate `should_park` with the key's wait queue locked and take that lock
/// in `unpark_all` too (parking_lot_core), or enqueue the caller first, then
/// issue a full fence and evaluate it (Linux's `prepare_to_wait`), with a
/// full fence before any lockless "are there waiters?" check in
/// `unpark_all`.
pub trait Park {
    /// Sleeps on `key` if `should_park()` says so; may return spuriously
    /// (callers re-check). `should_park` only touches atomics and is called
    /// at most once.
    fn park(key: usize, should_park: &dyn Fn() -> bool);

    /// Wakes every thread parked on `key`.
    fn unpark_all(key: usize);
}

/// [`Park`] over parking_lot_core's global hashed queues (what parking_lot's
/// own locks use): the park of the raw locks' std unit tests.
#[cfg(all(feature = "std", not(pagemap_loom)))]
#[derive(Debug)]
pub struct StdPark;

#[cfg(all(feature = "std", not(pagemap_loom)))]
impl Park for StdPark {
    fn park(key: usize, should_park: &dyn Fn() -> bool) {
        // SAFETY: the keys are addresses of this crate's lock and flag words,
        // which no parking_lot lock shares; the validate callback only loads
        // or updates an atomic (it neither panics nor calls parking_lot).
        unsafe {
            parking_lot_core::park(
                key,
                should_park,
                || {},
                |_, _| {},
                parking_lot_core::DEFAULT_PARK_TOKEN,
                None,
            );
        }
    }

    fn unpark_all(key: usize) {
        // SAFETY: as in `park`: a key of ours.
        unsafe {
            parking_lot_core::unpark_all(key, parking_lot_core::DEFAULT_UNPARK_TOKEN);
        }
    }
}

/// Tries before parking on a contended lock: a short critical section (the
/// writer lock, the free list) usually ends within them. None under loom,
/// where each try would be another interleaving to explore.
const SPINS: u32 = if cfg!(pagemap_loom) { 0 } else { 40 };

// ---- mutex -------------------------------------------------------------------

const LOCKED: usize = 1;
/// Someone is (about to be) parked: the unlocker must wake.
const PARKED: usize = 2;

/// A mutex in one word (LOCKED, PARKED) that parks through `P`.
pub struct RawMutex<P> {
    state: AtomicUsize,
    _park: PhantomData<fn() -> P>,
}

impl<P> core::fmt::Debug for RawMutex<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RawMutex")
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish()
    }
}

impl<P: Park> Default for RawMutex<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Park> RawMutex<P> {
    /// An unlocked mutex.
    #[cfg(not(pagemap_loom))]
    pub const fn new() -> Self {
        Self {
            state: AtomicUsize::new(0),
            _park: PhantomData,
        }
    }

    /// An unlocked mutex (loom's atomics have no const constructor).
    #[cfg(pagemap_loom)]
    pub fn new() -> Self {
        Self {
            state: AtomicUsize::new(0),
            _park: PhantomData,
        }
    }

    fn key(&self) -> usize {
        &self.state as *const AtomicUsize as usize
    }

    /// Takes the lock if it is free. Acquire on success: pairs with the
    /// Release of the previous holder's [`unlock`](Self::unlock).
    #[inline]
    pub fn try_lock(&self) -> bool {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & LOCKED != 0 {
                return false;
            }
            match self.state.compare_exchange_weak(
                s,
                s | LOCKED,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
    }

    /// Takes the lock, parking while it is held.
    #[inline]
    pub fn lock(&self) {
        // Acquire: pairs with the previous holder's Release in `unlock`.
        if self
            .state
            .compare_exchange(0, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow();
        }
    }

    #[cold]
    fn lock_slow(&self) {
        let mut spins = SPINS;
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & LOCKED == 0 {
                // Keep PARKED: threads still parked need the next unlock's
                // wake-up. Acquire: pairs with the unlocker's Release.
                match self.state.compare_exchange_weak(
                    s,
                    s | LOCKED,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return,
                    Err(now) => s = now,
                }
                continue;
            }
            if s & PARKED == 0 {
                if spins > 0 {
                    spins -= 1;
                    core::hint::spin_loop();
                    s = self.state.load(Ordering::Relaxed);
                    continue;
                }
                // Relaxed: one RMW order on the word is all the hand-off
                // needs (an unlock's swap either precedes this CAS, which
                // then fails, or sees PARKED); the park orders the rest.
                if let Err(now) = self.state.compare_exchange_weak(
                    s,
                    s | PARKED,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    s = now;
                    continue;
                }
            }
            // Sleep only if still locked with PARKED set: an unlock after
            // this check finds PARKED and wakes us (the park's contract).
            P::park(self.key(), &|| {
                self.state.load(Ordering::Relaxed) == LOCKED | PARKED
            });
            s = self.state.load(Ordering::Relaxed);
        }
    }

    /// Drops the lock and wakes every parked thread.
    ///
    /// # Safety
    ///
    /// The caller holds the lock (took it with [`lock`](Self::lock) or a
    /// successful [`try_lock`](Self::try_lock) and has not unlocked it).
    #[inline]
    pub unsafe fn unlock(&self) {
        // Release: what the holder did is visible to the next one (pairs
        // with the Acquire of `lock`/`try_lock`).
        let old = self.state.swap(0, Ordering::Release);
        debug_assert!(old & LOCKED != 0, "unlocking a free mutex");
        if old & PARKED != 0 {
            P::unpark_all(self.key());
        }
    }

    /// Whether the lock is held (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) & LOCKED != 0
    }
}

#[cfg(not(pagemap_loom))]
// SAFETY: `lock`/`try_lock` hand the lock to one thread at a time (a CAS
// from a word without LOCKED to one with it), with Acquire on success and
// Release on unlock, as lock_api requires.
unsafe impl<P: Park> lock_api::RawMutex for RawMutex<P> {
    #[allow(clippy::declare_interior_mutable_const)] // lock_api's way to build a lock
    const INIT: Self = Self::new();
    // Not Send: the same API as parking_lot's guards, which the std build uses.
    type GuardMarker = lock_api::GuardNoSend;

    #[inline]
    fn lock(&self) {
        RawMutex::lock(self)
    }

    #[inline]
    fn try_lock(&self) -> bool {
        RawMutex::try_lock(self)
    }

    #[inline]
    unsafe fn unlock(&self) {
        // SAFETY: lock_api's caller holds the lock.
        unsafe { RawMutex::unlock(self) }
    }

    #[inline]
    fn is_locked(&self) -> bool {
        RawMutex::is_locked(self)
    }
}

// ---- reader-writer lock ------------------------------------------------------

const WRITER: usize = 1;
/// A writer waits: new readers hold off, so a stream of readers cannot
/// starve it (parking_lot's RwLock, which the std build uses, is fair too).
const WAITING: usize = 2;
const RW_PARKED: usize = 4;
/// The readers' count is the rest of the word, in units of this.
const READER: usize = 8;

/// A reader-writer lock in one word (WRITER, WAITING, PARKED, a reader
/// count) that parks through `P`. Writers are preferred once waiting, so a
/// thread must not take it shared twice (a writer between the two would
/// deadlock it; the crate never does, as its lock order says).
pub struct RawRwLock<P> {
    state: AtomicUsize,
    _park: PhantomData<fn() -> P>,
}

impl<P> core::fmt::Debug for RawRwLock<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RawRwLock")
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish()
    }
}

impl<P: Park> Default for RawRwLock<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Park> RawRwLock<P> {
    /// An unlocked lock.
    #[cfg(not(pagemap_loom))]
    pub const fn new() -> Self {
        Self {
            state: AtomicUsize::new(0),
            _park: PhantomData,
        }
    }

    /// An unlocked lock (loom's atomics have no const constructor).
    #[cfg(pagemap_loom)]
    pub fn new() -> Self {
        Self {
            state: AtomicUsize::new(0),
            _park: PhantomData,
        }
    }

    fn key(&self) -> usize {
        &self.state as *const AtomicUsize as usize
    }

    /// Takes the lock shared if no writer holds it or waits for it.
    /// Acquire on success: pairs with the last writer's Release.
    #[inline]
    pub fn try_lock_shared(&self) -> bool {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & (WRITER | WAITING) != 0 {
                return false;
            }
            debug_assert!(s <= usize::MAX - READER, "reader count overflow");
            match self.state.compare_exchange_weak(
                s,
                s + READER,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
    }

    /// Takes the lock shared, parking while a writer holds it or waits.
    pub fn lock_shared(&self) {
        let mut spins = SPINS;
        loop {
            if self.try_lock_shared() {
                return;
            }
            let s = self.state.load(Ordering::Relaxed);
            if s & (WRITER | WAITING) == 0 {
                continue; // changed meanwhile: try again
            }
            if spins > 0 {
                spins -= 1;
                core::hint::spin_loop();
                continue;
            }
            // Relaxed: ordered by the word's RMW order and the park (as
            // the mutex's PARKED).
            if s & RW_PARKED == 0
                && self
                    .state
                    .compare_exchange_weak(s, s | RW_PARKED, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            P::park(self.key(), &|| {
                let s = self.state.load(Ordering::Relaxed);
                s & RW_PARKED != 0 && s & (WRITER | WAITING) != 0
            });
        }
    }

    /// Drops a shared hold; the last reader wakes the parked threads.
    ///
    /// # Safety
    ///
    /// The caller holds the lock shared.
    #[inline]
    pub unsafe fn unlock_shared(&self) {
        // Release: the reader's accesses come before a writer's (pairs with
        // the Acquire of the writer's CAS, which reads this count).
        let old = self.state.fetch_sub(READER, Ordering::Release);
        debug_assert!(old >= READER, "unlocking a lock not held shared");
        if old & !(WAITING | RW_PARKED) == READER && old & RW_PARKED != 0 {
            self.wake();
        }
    }

    /// Takes the lock exclusive if it is free. Acquire on success: pairs
    /// with the Release of the last unlock (shared or exclusive).
    #[inline]
    pub fn try_lock_exclusive(&self) -> bool {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & WRITER != 0 || s >= READER {
                return false;
            }
            match self.state.compare_exchange_weak(
                s,
                s | WRITER,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
    }

    /// Takes the lock exclusive, parking while it is held; new readers hold
    /// off meanwhile.
    pub fn lock_exclusive(&self) {
        let mut spins = SPINS;
        loop {
            if self.try_lock_exclusive() {
                return;
            }
            let s = self.state.load(Ordering::Relaxed);
            if s & WRITER == 0 && s < READER {
                continue;
            }
            if spins > 0 {
                spins -= 1;
                core::hint::spin_loop();
                continue;
            }
            // Relaxed: as in `lock_shared`.
            if s & (WAITING | RW_PARKED) != WAITING | RW_PARKED
                && self
                    .state
                    .compare_exchange_weak(
                        s,
                        s | WAITING | RW_PARKED,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    )
                    .is_err()
            {
                continue;
            }
            P::park(self.key(), &|| {
                let s = self.state.load(Ordering::Relaxed);
                s & RW_PARKED != 0 && (s & WRITER != 0 || s >= READER)
            });
        }
    }

    /// Drops the exclusive hold and wakes every parked thread (WAITING is
    /// cleared too: a writer still waiting sets it again).
    ///
    /// # Safety
    ///
    /// The caller holds the lock exclusive.
    #[inline]
    pub unsafe fn unlock_exclusive(&self) {
        // Release: pairs with the next holder's Acquire.
        let old = self.state.swap(0, Ordering::Release);
        debug_assert!(old & WRITER != 0, "unlocking a lock not held exclusive");
        if old & RW_PARKED != 0 {
            P::unpark_all(self.key());
        }
    }

    /// The last reader left with threads parked: clear PARKED, wake them
    /// (a writer takes the lock; readers held off by WAITING park again).
    #[cold]
    fn wake(&self) {
        // Relaxed: an RMW on the word, ordered by its RMW order; the park
        // orders the wake-up after any parker's check.
        if self.state.fetch_and(!RW_PARKED, Ordering::Relaxed) & RW_PARKED != 0 {
            P::unpark_all(self.key());
        }
    }

    /// Whether the lock is held, shared or exclusive (a snapshot).
    pub fn is_locked(&self) -> bool {
        let s = self.state.load(Ordering::Relaxed);
        s & WRITER != 0 || s >= READER
    }
}

#[cfg(not(pagemap_loom))]
// SAFETY: exclusive holds exclude every other hold (a CAS that sets WRITER
// only on a word with no WRITER and no readers; readers add themselves only
// to a word without WRITER); Acquire on every acquisition, Release on every
// release, as lock_api requires.
unsafe impl<P: Park> lock_api::RawRwLock for RawRwLock<P> {
    #[allow(clippy::declare_interior_mutable_const)] // lock_api's way to build a lock
    const INIT: Self = Self::new();
    // Not Send: the same API as parking_lot's guards, which the std build uses.
    type GuardMarker = lock_api::GuardNoSend;

    #[inline]
    fn lock_shared(&self) {
        RawRwLock::lock_shared(self)
    }

    #[inline]
    fn try_lock_shared(&self) -> bool {
        RawRwLock::try_lock_shared(self)
    }

    #[inline]
    unsafe fn unlock_shared(&self) {
        // SAFETY: lock_api's caller holds the lock shared.
        unsafe { RawRwLock::unlock_shared(self) }
    }

    #[inline]
    fn lock_exclusive(&self) {
        RawRwLock::lock_exclusive(self)
    }

    #[inline]
    fn try_lock_exclusive(&self) -> bool {
        RawRwLock::try_lock_exclusive(self)
    }

    #[inline]
    unsafe fn unlock_exclusive(&self) {
        // SAFETY: lock_api's caller holds the lock exclusive.
        unsafe { RawRwLock::unlock_exclusive(self) }
    }

    #[inline]
    fn is_locked(&self) -> bool {
        RawRwLock::is_locked(self)
    }
}

#[cfg(all(test, feature = "std", not(pagemap_loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    type Mutex<T> = lock_api::Mutex<RawMutex<StdPark>, T>;
    type RwLock<T> = lock_api::RwLock<RawRwLock<StdPark>, T>;

    #[test]
    fn mutex_excludes_and_hands_over() {
        let m = Arc::new(Mutex::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        // A non-atomic read-modify-write: a lost update if
                        // two threads were inside at once.
                        let mut g = m.lock();
                        let v = *g;
                        std::hint::black_box(&v);
                        *g = v + 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*m.lock(), 80_000);
        assert!(!m.is_locked());
    }

    #[test]
    fn mutex_sleeper_is_woken() {
        let m = Arc::new(RawMutex::<StdPark>::new());
        m.lock();
        let t = {
            let m = m.clone();
            std::thread::spawn(move || {
                m.lock();
                // SAFETY: taken just above.
                unsafe { m.unlock() };
            })
        };
        // Past the spins: the waiter parks (PARKED set) and must be woken.
        while m.state.load(Ordering::Relaxed) & PARKED == 0 {
            std::thread::yield_now();
        }
        // SAFETY: taken above, by this thread.
        unsafe { m.unlock() };
        t.join().unwrap();
        assert!(m.try_lock());
    }

    #[test]
    fn rwlock_readers_share_and_writers_exclude() {
        let l = Arc::new(RwLock::new((0u64, 0u64)));
        let reads = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let l = l.clone();
                let reads = reads.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if i % 2 == 0 {
                            let mut g = l.write();
                            g.0 += 1;
                            g.1 += 1;
                        } else {
                            let g = l.read();
                            assert_eq!(g.0, g.1, "a reader saw half a write");
                            reads.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*l.read(), (20_000, 20_000));
        assert_eq!(reads.load(Ordering::Relaxed), 20_000);
        assert!(!l.is_locked());
    }

    #[test]
    fn rwlock_two_readers_at_once_and_a_waiting_writer_holds_off_readers() {
        let l = Arc::new(RawRwLock::<StdPark>::new());
        l.lock_shared();
        assert!(l.try_lock_shared(), "readers share");
        assert!(!l.try_lock_exclusive());
        let w = {
            let l = l.clone();
            std::thread::spawn(move || {
                l.lock_exclusive();
                // SAFETY: taken just above.
                unsafe { l.unlock_exclusive() };
            })
        };
        while l.state.load(Ordering::Relaxed) & WAITING == 0 {
            std::thread::yield_now();
        }
        assert!(!l.try_lock_shared(), "a waiting writer holds off readers");
        // SAFETY: the two shared holds taken above.
        unsafe {
            l.unlock_shared();
            l.unlock_shared();
        }
        w.join().unwrap();
        assert!(l.try_lock_shared());
    }
}
