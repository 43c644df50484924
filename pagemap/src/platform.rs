//! What a kernel supplies when `pagemap` is built without the `std`
//! feature: sleeping and waking by key, and epoch pinning. It implements
//! [`Platform`] once and installs it with [`set_platform`] (as `log`'s
//! `set_logger`) before the first page map is used.
//!
//! With `std` (the default) nothing here is called: the locks are
//! parking_lot's, page waiters sleep in hashed mutex + condvar buckets and
//! pins come from crossbeam-epoch's global collector, as they always did; an
//! installed platform is ignored. The module is compiled in every build so
//! that its documentation and its tests are.
//!
//! # What uses it
//!
//! * [`park`](Platform::park) / [`unpark_all`](Platform::unpark_all): the
//!   crate's mutexes and reader-writer locks (the remover, writer,
//!   reverse-map and invalidate locks, the free list), which are
//!   `lock_api` locks over the raw locks of [`crate::sync::raw`] (one atomic
//!   word each; they park on its address), and the page bits LOCKED and
//!   WRITEBACK (a waiter parks on the address of the frame's flags word,
//!   as Linux's `wait_on_page_bit` waits on the page).
//! * [`pin`](Platform::pin): every lock-free walk of a radix tree pins an
//!   epoch; nodes unlinked from a tree are freed through the guard's
//!   `defer`, once every thread pinned at the time has unpinned.
//!
//! # Parking
//!
//! The contract (no lost wake-ups) is [`Park`](crate::sync::raw::Park)'s.
//! In Linux terms `park(key, should_park)` is `wait_var_event((void
//! *)key, !should_park())` in `TASK_UNINTERRUPTIBLE`, and `unpark_all(key)`
//! is `wake_up_var((void *)key)`; as with those, the waker's preceding
//! atomic update must be ordered before its check for waiters (Linux asks
//! for an `smp_mb()` before `wake_up_var`): either take the hashed queue's
//! lock in `unpark_all` unconditionally, or issue a full fence first.
//! A platform may return from `park` spuriously; every caller re-checks.
//! Parks can be long (a page lock is held across the store's read), so a
//! kernel sleeps rather than spins.
//!
//! # Epochs, and a kernel with RCU
//!
//! crossbeam-epoch without `std` has no global collector and no `pin()`,
//! but has [`Collector`](crossbeam_epoch::Collector) and
//! [`LocalHandle`](crossbeam_epoch::LocalHandle) (re-exported here as
//! [`epoch`]). A kernel keeps one `Collector` (a `static` or in its memory
//! manager) and registers a `LocalHandle` per task (in its task struct, at
//! task creation); [`pin`](Platform::pin) pins the current task's handle.
//! A handle per CPU also works only if preemption stays disabled for a
//! guard's whole life (a `Guard` is `!Send` and its handle's pin count is
//! not atomic); pagemap's pinned sections are short (a walk and slot-word
//! CAS loops; no I/O, no page wait), but a few take the frame free list's
//! lock and free retired nodes, which must then not sleep.
//!
//! A kernel with RCU maps the same protocol onto it, because the tree uses
//! the epoch only as a read-side critical section plus deferred free:
//! `pin` is `rcu_read_lock()` (the guard's drop `rcu_read_unlock()`), and
//! the tree's retire of an unlinked node (`Tree::retire` in `radix.rs`, the
//! only `defer` in the crate) is `call_rcu`/`kfree_rcu`. What would change
//! to plug RCU in instead of crossbeam-epoch: `sync::epoch::Guard` would
//! become a crate type wrapping the platform's read-side token instead of
//! re-exporting crossbeam's, [`Platform`] would gain `read_lock`,
//! `read_unlock` and `defer_free(ptr, drop_fn)` in place of `pin`, and
//! `Tree::retire` would call `defer_free`; every other use of the guard is
//! as a token proving a read-side section, which stays. (Under loom the
//! tree poisons and leaks nodes instead, which does not change.) A
//! crossbeam pin is also a SeqCst fence, an RCU read lock is not; pagemap
//! does not lean on that: the one store-buffering pair (truncate's end
//! against a fault's count, `sync::sb`) has SeqCst accesses of its own.
//!
//! # Example
//!
//! A platform over std stand-ins for a kernel's parts (hashed wait queues
//! of a mutex and a condition variable; a thread-local `LocalHandle` for a
//! task's); the crate documentation has the kernel-shaped skeleton.
//!
//! ```
//! use std::sync::{Condvar, Mutex};
//! use pagemap::platform::{epoch, set_platform, Platform};
//!
//! struct Stand;
//! static QUEUES: [(Mutex<()>, Condvar); 16] = [const { (Mutex::new(()), Condvar::new()) }; 16];
//! static COLLECTOR: std::sync::LazyLock<epoch::Collector> = std::sync::LazyLock::new(epoch::Collector::new);
//! thread_local! {
//!     static HANDLE: epoch::LocalHandle = COLLECTOR.register();
//! }
//!
//! impl Platform for Stand {
//!     fn park(&self, key: usize, should_park: &dyn Fn() -> bool) {
//!         let (m, cv) = &QUEUES[key / 8 % 16];
//!         let g = m.lock().unwrap();
//!         if should_park() {
//!             drop(cv.wait(g).unwrap()); // the queue lock orders the check before a wake-up
//!         }
//!     }
//!     fn unpark_all(&self, key: usize) {
//!         let (m, cv) = &QUEUES[key / 8 % 16];
//!         drop(m.lock().unwrap());
//!         cv.notify_all();
//!     }
//!     fn pin(&self) -> epoch::Guard {
//!         HANDLE.with(|h| h.pin())
//!     }
//! }
//!
//! static STAND: Stand = Stand;
//! set_platform(&STAND).unwrap();
//! assert!(set_platform(&STAND).is_err(), "installed once");
//! ```

use alloc::boxed::Box;
use core::fmt;
use core::ptr;
// Not `crate::sync`'s: a static, installed once, outside what loom models.
use core::sync::atomic::{AtomicPtr, Ordering};

/// crossbeam-epoch, the version this crate links: build the `Collector` and
/// `LocalHandle`s that [`Platform::pin`] uses from it.
pub use crossbeam_epoch as epoch;

/// The services a kernel gives a `no_std` build of `pagemap`; see the
/// module docs.
pub trait Platform: Sync {
    /// Sleeps on `key` if `should_park()` (called once, under the ordering
    /// of [`Park`](crate::sync::raw::Park)'s contract) returns `true`, until
    /// an [`unpark_all`](Self::unpark_all) of `key`; may return spuriously.
    fn park(&self, key: usize, should_park: &dyn Fn() -> bool);

    /// Wakes every task parked on `key`.
    fn unpark_all(&self, key: usize);

    /// Pins the current task in the epoch: a `Guard` of the kernel's
    /// `Collector`, from the current task's `LocalHandle`.
    fn pin(&self) -> epoch::Guard;
}

/// The installed platform: a pointer to a leaked `&'static dyn Platform`
/// (a fat pointer does not fit an atomic word; one small allocation, once).
static PLATFORM: AtomicPtr<&'static dyn Platform> = AtomicPtr::new(ptr::null_mut());

/// [`set_platform`] was called before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetPlatformError(());

impl fmt::Display for SetPlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a pagemap platform is already installed")
    }
}

impl core::error::Error for SetPlatformError {}

/// Installs the platform, once. A `no_std` build panics at its first lock
/// wait, page wait or tree walk if none is installed.
pub fn set_platform(platform: &'static dyn Platform) -> Result<(), SetPlatformError> {
    let boxed = Box::into_raw(Box::new(platform));
    // Release: the boxed reference is written before it is published (pairs
    // with the Acquire in `get`).
    match PLATFORM.compare_exchange(ptr::null_mut(), boxed, Ordering::Release, Ordering::Relaxed) {
        Ok(_) => Ok(()),
        Err(_) => {
            // SAFETY: `boxed` came from `Box::into_raw` above and was not
            // published (the exchange failed).
            drop(unsafe { Box::from_raw(boxed) });
            Err(SetPlatformError(()))
        }
    }
}

/// The installed platform; panics if there is none.
#[cfg_attr(feature = "std", allow(dead_code))] // std builds never call it
#[inline]
pub(crate) fn get() -> &'static dyn Platform {
    // Acquire: pairs with the Release of `set_platform`.
    let p = PLATFORM.load(Ordering::Acquire);
    if p.is_null() {
        not_installed();
    }
    // SAFETY: a non-null pointer was published by `set_platform` from a
    // leaked box, never freed or changed again.
    unsafe { *p }
}

#[cold]
#[inline(never)]
fn not_installed() -> ! {
    panic!(
        "pagemap was built without its `std` feature and no platform is installed: \
         call pagemap::platform::set_platform before using a page map"
    )
}

/// The [`Park`](crate::sync::raw::Park) of the raw locks in a `no_std`
/// build: the installed platform's.
#[derive(Debug)]
pub struct PlatformPark;

impl crate::sync::raw::Park for PlatformPark {
    #[inline]
    fn park(key: usize, should_park: &dyn Fn() -> bool) {
        get().park(key, should_park)
    }

    #[inline]
    fn unpark_all(key: usize) {
        get().unpark_all(key)
    }
}

#[cfg(all(test, feature = "std", not(pagemap_loom)))]
mod tests {
    use super::*;
    use crate::sync::raw::{Park, RawMutex, StdPark};
    use std::sync::Arc;

    /// A platform over parking_lot_core and crossbeam's global collector:
    /// the std build never calls it, this test does (through
    /// `PlatformPark`, the no_std locks' park).
    struct Test;
    impl Platform for Test {
        fn park(&self, key: usize, should_park: &dyn Fn() -> bool) {
            StdPark::park(key, should_park)
        }
        fn unpark_all(&self, key: usize) {
            StdPark::unpark_all(key)
        }
        fn pin(&self) -> epoch::Guard {
            epoch::pin()
        }
    }
    static TEST: Test = Test;

    #[test]
    fn the_installed_platform_parks_the_raw_locks_and_pins() {
        // The only installer in this test binary.
        set_platform(&TEST).unwrap();
        assert_eq!(set_platform(&TEST), Err(SetPlatformError(())));
        let m = Arc::new(lock_api::Mutex::<RawMutex<PlatformPark>, u64>::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..5_000 {
                        let mut g = m.lock();
                        let v = *g;
                        *g = std::hint::black_box(v) + 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*m.lock(), 20_000);
        let _guard = get().pin();
        assert!(epoch::is_pinned());
    }
}
