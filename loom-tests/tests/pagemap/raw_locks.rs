//! The raw locks of a `no_std` build (`pagemap::sync::raw`): mutual
//! exclusion and no lost wake-up, over a loom park.
//!
//! Without `std` the crate's mutexes and reader-writer locks are these raw
//! locks over the kernel's park; here the park is one loom mutex and
//! condition variable (every key shares it: extra wake-ups are allowed, a
//! missing one is not), with `should_park` checked under the mutex as the
//! `Park` contract asks. The protected data is a loom `UnsafeCell`, so two
//! holders at once, or a hand-off without Release/Acquire, fail the
//! execution ("Causality violation"); a lost wake-up leaves a thread parked
//! for ever, which loom reports as a deadlock. Under loom the locks do not
//! spin before parking, so every contended acquisition parks.

use loom::cell::UnsafeCell;
use loom::sync::{Arc, Condvar, Mutex};
use loom_tests::{explore, Bound};
use pagemap::sync::raw::{Park, RawMutex, RawRwLock};

loom::lazy_static! {
    /// The park's one queue (per execution: loom resets its statics).
    static ref QUEUE: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());
}

struct LoomPark;

impl Park for LoomPark {
    fn park(_key: usize, should_park: &dyn Fn() -> bool) {
        let (m, cv) = &*QUEUE;
        let g = m.lock().unwrap();
        if should_park() {
            drop(cv.wait(g).unwrap());
        }
    }

    fn unpark_all(_key: usize) {
        let (m, cv) = &*QUEUE;
        drop(m.lock().unwrap());
        cv.notify_all();
    }
}

/// A raw mutex and the data it guards.
struct Guarded {
    lock: RawMutex<LoomPark>,
    data: UnsafeCell<u32>,
}

// SAFETY: `data` is accessed only with `lock` held (what the model checks).
unsafe impl Sync for Guarded {}

impl Guarded {
    fn add(&self) {
        self.lock.lock();
        // SAFETY: the lock is held; loom checks that no other access overlaps.
        self.data.with_mut(|v| unsafe { *v += 1 });
        // SAFETY: taken just above.
        unsafe { self.lock.unlock() };
    }
}

/// Two threads, the main one taking the lock twice (so a waiter can find
/// the lock taken again after a wake-up and must park once more, with a
/// fresh PARKED): no overlap, no lost wake-up, no lost update.
#[test]
fn mutex_excludes_and_wakes() {
    let seen = explore(Bound::Env, || {
        let g = Arc::new(Guarded {
            lock: RawMutex::new(),
            data: UnsafeCell::new(0),
        });
        let t = {
            let g = g.clone();
            loom::thread::spawn(move || g.add())
        };
        g.add();
        g.add();
        t.join().unwrap();
        assert!(g.lock.try_lock());
        // SAFETY: the lock is held and every other thread has finished.
        assert_eq!(g.data.with(|v| unsafe { *v }), 3);
        // SAFETY: taken by the try_lock above.
        unsafe { g.lock.unlock() };
        "done"
    });
    seen.assert_seen(&["done"]);
}

/// A reader-writer lock and the pair it guards (always equal when read).
struct Shared {
    lock: RawRwLock<LoomPark>,
    data: UnsafeCell<(u32, u32)>,
}

// SAFETY: `data` is written only with `lock` exclusive, read only with it
// held (what the model checks).
unsafe impl Sync for Shared {}

impl Shared {
    fn write(&self) {
        self.lock.lock_exclusive();
        // SAFETY: exclusive; loom checks that no other access overlaps.
        self.data.with_mut(|v| unsafe {
            (*v).0 += 1;
            (*v).1 += 1;
        });
        // SAFETY: taken just above.
        unsafe { self.lock.unlock_exclusive() };
    }

    fn read(&self) -> u32 {
        self.lock.lock_shared();
        // SAFETY: shared; loom checks that no write overlaps.
        let (a, b) = self.data.with(|v| unsafe { *v });
        assert_eq!(a, b, "a reader saw half a write");
        // SAFETY: taken just above.
        unsafe { self.lock.unlock_shared() };
        a
    }
}

fn shared() -> Arc<Shared> {
    Arc::new(Shared {
        lock: RawRwLock::new(),
        data: UnsafeCell::new((0, 0)),
    })
}

/// A writer against a reader: exclusion both ways; the writer parked behind
/// the reader is woken by the last reader's unlock, the reader parked
/// behind the writer by the writer's. Outcomes: what the reader saw.
#[test]
fn rwlock_writer_vs_reader() {
    let seen = explore(Bound::Env, || {
        let s = shared();
        let w = {
            let s = s.clone();
            loom::thread::spawn(move || s.write())
        };
        let r = s.read();
        w.join().unwrap();
        assert_eq!(s.read(), 1);
        if r == 0 {
            "read_before_write"
        } else {
            "read_after_write"
        }
    });
    seen.assert_seen(&["read_before_write", "read_after_write"]);
}

/// Two readers and a writer: a reader that arrives while the writer waits
/// for the other reader parks (WAITING holds it off), and everyone is woken
/// in turn. Three threads: preemptions capped at 1.
#[test]
fn rwlock_two_readers_and_a_writer() {
    let seen = explore(Bound::Cap(1), || {
        let s = shared();
        let w = {
            let s = s.clone();
            loom::thread::spawn(move || s.write())
        };
        let r2 = {
            let s = s.clone();
            loom::thread::spawn(move || s.read())
        };
        let r1 = s.read();
        let r2 = r2.join().unwrap();
        w.join().unwrap();
        assert_eq!(s.read(), 1);
        match (r1, r2) {
            (0, 0) => "both_before",
            (1, 1) => "both_after",
            _ => "split",
        }
    });
    seen.assert_seen(&["both_before", "both_after", "split"]);
}
