//! The one place `pagemap` (and `vmr`, which re-exports it) gets its
//! atomics and locks from. Ordinary users never need it.
//!
//! Under `cfg(pagemap_loom)` everything here is loom's model-checked type, so
//! the models in `loom-tests/` (another crate) really check this crate's
//! code. Build them with `RUSTFLAGS="--cfg pagemap_loom --cfg crossbeam_loom
//! -C debug-assertions"` (what `scripts/loom.sh` does):
//! the second cfg switches crossbeam-epoch to loom too. The cfg is the
//! crate's own (`pagemap_loom`, as crossbeam has `crossbeam_loom`), so a
//! dependent built with `--cfg loom` for its own models does not silently
//! get this crate's loom build (4-bit refcounts and all).
//!
//! Without the `std` feature the locks are `lock_api` locks over
//! [`raw`]'s raw locks, which park through the installed
//! [`Platform`](crate::platform::Platform); with it they are parking_lot's,
//! as before (the std hot paths are unchanged).
//!
//! Page *contents* use `data`, a private module that stays on `std` atomics even under
//! loom: the models check the control words (slot word, frame flags, locks),
//! and tracking 512 data words per frame would blow up the state space.

#[cfg(not(pagemap_loom))]
pub use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize};
#[cfg(pagemap_loom)]
pub use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize};

pub use core::sync::atomic::Ordering;

pub mod raw;

/// The accesses of a store-buffering pair (a SeqCst store or RMW, then a
/// SeqCst load of another location, on each of two threads: one of the two
/// loads sees the other thread's store). The Rust (C++20) memory model
/// guarantees that for SeqCst accesses, so outside loom these are the plain
/// accesses with the ordering the caller passes. Loom does not model SeqCst
/// loads and stores (it treats them as AcqRel; it does model SeqCst
/// fences), so under loom a SeqCst store or successful RMW here marks the
/// thread, and a later SeqCst load here issues a SeqCst fence first if the
/// thread is marked: the fence stands for the pair's SeqCst ordering,
/// exactly when both halves ask for it. Weakening either access's ordering
/// argument therefore loses the fence too, and the models see it.
pub mod sb {
    use super::{AtomicU64, Ordering};

    #[cfg(pagemap_loom)]
    loom::thread_local! {
        /// A SeqCst store of a pair was made and no SeqCst load followed yet.
        static STORED: core::cell::Cell<bool> = core::cell::Cell::new(false);
    }

    /// After a store or RMW with `order`.
    #[inline(always)]
    fn stored(order: Ordering) {
        #[cfg(pagemap_loom)]
        if order == Ordering::SeqCst {
            STORED.with(|s| s.set(true));
        }
        #[cfg(not(pagemap_loom))]
        let _ = order;
    }

    /// Before a load with `order`.
    #[inline(always)]
    fn loading(order: Ordering) {
        #[cfg(pagemap_loom)]
        if order == Ordering::SeqCst && STORED.with(|s| s.replace(false)) {
            loom::sync::atomic::fence(Ordering::SeqCst);
        }
        #[cfg(not(pagemap_loom))]
        let _ = order;
    }

    /// `a.store(v, order)`, the store half of a pair.
    #[inline(always)]
    pub fn store(a: &AtomicU64, v: u64, order: Ordering) {
        a.store(v, order);
        stored(order);
    }

    /// `a.load(order)`, the load half of a pair.
    #[inline(always)]
    pub fn load(a: &AtomicU64, order: Ordering) -> u64 {
        loading(order);
        a.load(order)
    }

    /// `a.fetch_or(v, order)` on a 32-bit word (a lock bit), the RMW half
    /// of a pair.
    #[inline(always)]
    pub fn fetch_or32(a: &super::AtomicU32, v: u32, order: Ordering) -> u32 {
        let old = a.fetch_or(v, order);
        stored(order);
        old
    }

    /// `a.load(order)` of a 32-bit word, the load half of a pair.
    #[inline(always)]
    pub fn load32(a: &super::AtomicU32, order: Ordering) -> u32 {
        loading(order);
        a.load(order)
    }

    /// `a.compare_exchange_weak(..)`, the RMW half of a pair when it succeeds.
    #[inline(always)]
    pub fn compare_exchange_weak(
        a: &AtomicU64,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u64, u64> {
        let r = a.compare_exchange_weak(current, new, success, failure);
        if r.is_ok() {
            stored(success);
        }
        r
    }
}

/// Per-thread state: loom's under `cfg(pagemap_loom)`, where every model thread
/// runs on one OS thread and a std thread-local would be shared by all.
#[cfg(pagemap_loom)]
pub use loom::thread_local;
/// Per-thread state: loom's under `cfg(pagemap_loom)`, where every model thread
/// runs on one OS thread and a std thread-local would be shared by all.
/// (Not without `std`: the crate itself keeps no per-thread state.)
#[cfg(all(feature = "std", not(pagemap_loom)))]
pub use std::thread_local;

/// Epoch pinning for the lock-free tree walks: crossbeam-epoch's global
/// collector with `std` (and under loom), the installed platform's
/// [`pin`](crate::platform::Platform::pin) without it.
pub(crate) mod epoch {
    pub(crate) use crossbeam_epoch::Guard;

    /// Pins the current thread.
    #[inline]
    pub(crate) fn pin() -> Guard {
        #[cfg(feature = "std")]
        return crossbeam_epoch::pin();
        #[cfg(not(feature = "std"))]
        return crate::platform::get().pin();
    }
}

/// Spins politely while another thread finishes a short step; under loom,
/// yields so that the model schedules that thread.
#[inline]
pub fn spin_hint() {
    #[cfg(pagemap_loom)]
    loom::thread::yield_now();
    #[cfg(not(pagemap_loom))]
    core::hint::spin_loop();
}

/// Atomics for page contents: never loom's (see the module docs).
pub(crate) mod data {
    pub(crate) use core::sync::atomic::AtomicU64;
}

/// The raw mutex behind [`Mutex`]: parking_lot's with `std` (so std builds
/// run exactly parking_lot's lock), else [`raw::RawMutex`] over the
/// installed platform's park.
#[cfg(all(feature = "std", not(pagemap_loom)))]
type RawMutexImpl = parking_lot::RawMutex;
#[cfg(all(not(feature = "std"), not(pagemap_loom)))]
type RawMutexImpl = raw::RawMutex<crate::platform::PlatformPark>;
/// The raw lock behind [`RwLock`] (as [`RawMutexImpl`]).
#[cfg(all(feature = "std", not(pagemap_loom)))]
type RawRwLockImpl = parking_lot::RawRwLock;
#[cfg(all(not(feature = "std"), not(pagemap_loom)))]
type RawRwLockImpl = raw::RawRwLock<crate::platform::PlatformPark>;

/// A mutex loom never sees, for a store's own bookkeeping ([`MemStore`]'s
/// pages: the models treat the store as outside the page cache, and a loom
/// mutex there would only multiply their interleavings). parking_lot's with
/// `std` (loom builds included), the raw lock over the platform's park
/// without.
///
/// [`MemStore`]: crate::MemStore
#[cfg(feature = "std")]
pub(crate) type PlainMutex<T> = parking_lot::Mutex<T>;
/// A mutex loom never sees (see the `std` form).
#[cfg(not(feature = "std"))]
pub(crate) type PlainMutex<T> = lock_api::Mutex<raw::RawMutex<crate::platform::PlatformPark>, T>;

/// A mutex with one API over parking_lot (std builds), the raw locks over
/// the platform's park (no_std builds) and loom.
#[derive(Debug, Default)]
pub struct Mutex<T> {
    #[cfg(not(pagemap_loom))]
    inner: lock_api::Mutex<RawMutexImpl, T>,
    #[cfg(pagemap_loom)]
    inner: loom::sync::Mutex<T>,
}

/// Guard of [`Mutex`].
#[cfg(not(pagemap_loom))]
pub type MutexGuard<'a, T> = lock_api::MutexGuard<'a, RawMutexImpl, T>;
/// Guard of [`Mutex`] (loom).
#[cfg(pagemap_loom)]
pub type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    /// A new lock holding `value`.
    pub fn new(value: T) -> Self {
        Self {
            #[cfg(not(pagemap_loom))]
            inner: lock_api::Mutex::new(value),
            #[cfg(pagemap_loom)]
            inner: loom::sync::Mutex::new(value),
        }
    }

    #[inline]
    /// Locks, blocking until free.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        #[cfg(not(pagemap_loom))]
        return self.inner.lock();
        #[cfg(pagemap_loom)]
        return self.inner.lock().unwrap();
    }

    #[inline]
    /// Locks if free.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        #[cfg(not(pagemap_loom))]
        return self.inner.try_lock();
        #[cfg(pagemap_loom)]
        return self.inner.try_lock().ok();
    }
}

/// A condition variable with one API over parking_lot and loom (the page
/// bits' wait buckets; without `std` page waiters park on the flags word).
#[cfg(any(feature = "std", pagemap_loom))]
#[derive(Debug, Default)]
pub struct Condvar {
    #[cfg(not(pagemap_loom))]
    inner: parking_lot::Condvar,
    #[cfg(pagemap_loom)]
    inner: loom::sync::Condvar,
}

#[cfg(any(feature = "std", pagemap_loom))]
impl Condvar {
    /// A new condition variable.
    pub fn new() -> Self {
        Self::default()
    }

    /// Blocks until notified (spurious wake-ups allowed: callers re-check).
    #[inline]
    pub fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        #[cfg(not(pagemap_loom))]
        {
            let mut guard = guard;
            self.inner.wait(&mut guard);
            guard
        }
        #[cfg(pagemap_loom)]
        {
            self.inner.wait(guard).unwrap()
        }
    }

    #[inline]
    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.inner.notify_all();
    }
}

/// A reader-writer lock with one API over parking_lot (std builds), the raw
/// locks over the platform's park (no_std builds) and loom.
#[derive(Debug, Default)]
pub struct RwLock<T> {
    #[cfg(not(pagemap_loom))]
    inner: lock_api::RwLock<RawRwLockImpl, T>,
    #[cfg(pagemap_loom)]
    inner: loom::sync::RwLock<T>,
}

/// Read guard of [`RwLock`].
#[cfg(not(pagemap_loom))]
pub type RwLockReadGuard<'a, T> = lock_api::RwLockReadGuard<'a, RawRwLockImpl, T>;
/// Read guard of [`RwLock`] (loom).
#[cfg(pagemap_loom)]
pub type RwLockReadGuard<'a, T> = loom::sync::RwLockReadGuard<'a, T>;
/// Write guard of [`RwLock`].
#[cfg(not(pagemap_loom))]
pub type RwLockWriteGuard<'a, T> = lock_api::RwLockWriteGuard<'a, RawRwLockImpl, T>;
/// Write guard of [`RwLock`] (loom).
#[cfg(pagemap_loom)]
pub type RwLockWriteGuard<'a, T> = loom::sync::RwLockWriteGuard<'a, T>;

impl<T> RwLock<T> {
    /// A new lock holding `value`.
    pub fn new(value: T) -> Self {
        Self {
            #[cfg(not(pagemap_loom))]
            inner: lock_api::RwLock::new(value),
            #[cfg(pagemap_loom)]
            inner: loom::sync::RwLock::new(value),
        }
    }

    #[inline]
    /// Locks for reading.
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        #[cfg(not(pagemap_loom))]
        return self.inner.read();
        #[cfg(pagemap_loom)]
        return self.inner.read().unwrap();
    }

    #[inline]
    /// Locks for writing.
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        #[cfg(not(pagemap_loom))]
        return self.inner.write();
        #[cfg(pagemap_loom)]
        return self.inner.write().unwrap();
    }
}
