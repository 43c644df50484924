//! The background reclaimer (kswapd's role): a thread that keeps the pool's
//! free frames between a low and a high watermark, so that loads seldom
//! reclaim in their own thread. Allocations that leave fewer than `low`
//! frames free wake it; it reclaims batches until `high` are free, then
//! sleeps on a condition variable (no polling). Direct reclaim still works
//! without it, and beside it.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::frame::{FramePool, RECLAIM_BATCH};
use crate::sync::{AtomicUsize, Ordering};

/// Free-frame watermarks of a [`Reclaimer`], in frames (Linux's
/// `WMARK_LOW` / `WMARK_HIGH`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watermarks {
    /// Below this many free frames an allocation wakes the reclaimer.
    pub low: usize,
    /// The reclaimer reclaims until this many frames are free.
    pub high: usize,
}

impl Watermarks {
    /// Watermarks for a pool of `capacity` frames: low at 1/64 of it and
    /// high at 1/32 (at least 1 and 2 frames). A pool of fewer than 2
    /// frames has no valid watermarks: [`Reclaimer::start`] refuses these.
    pub fn for_capacity(capacity: usize) -> Self {
        let low = (capacity / 64).clamp(1, capacity.max(2) / 2);
        let high = (capacity / 32).clamp(low + 1, capacity.max(2));
        Self { low, high }
    }
}

/// The pool's side of the reclaimer: its watermarks and wake-up.
pub(crate) struct Wake {
    /// 0: no reclaimer runs.
    low: AtomicUsize,
    state: Mutex<State>,
    cv: Condvar,
}

#[derive(Default)]
struct State {
    /// Woken and not yet run.
    pending: bool,
    stop: bool,
}

impl Wake {
    pub(crate) fn new() -> Self {
        Self {
            low: AtomicUsize::new(0),
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
        }
    }

    /// After an allocation: wakes the reclaimer if free frames fell below
    /// its low watermark. Relaxed: a hint (the wake-up itself goes through
    /// the mutex).
    #[inline]
    pub(crate) fn allocated(&self, pool: &FramePool) {
        let low = self.low.load(Ordering::Relaxed);
        if low != 0 && pool.free_frames() < low {
            self.wake();
        }
    }

    /// Wakes the reclaimer (if one runs).
    pub(crate) fn wake(&self) {
        if self.low.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !s.pending {
            s.pending = true;
            self.cv.notify_one();
        }
    }
}

/// What a [`Reclaimer`] did, from its start to its stop.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReclaimerReport {
    /// Times it woke up to work.
    pub wakeups: u64,
    /// Reclaim batches it ran.
    pub batches: u64,
    /// Frames it freed.
    pub reclaimed: u64,
    /// Of those, pages it wrote back first.
    pub dirty: u64,
    /// Wake-ups that found nothing to evict (it then sleeps until the next).
    pub fruitless: u64,
}

/// A background reclaimer thread for one pool (one at a time per pool).
///
/// ```
/// use std::sync::Arc;
/// use pagemap::{FramePool, MemStore, PageMap, Reclaimer, Watermarks};
///
/// let pool = Arc::new(FramePool::new(64).unwrap());
/// let map = PageMap::new(pool.clone(), Arc::new(MemStore::new()));
/// let kswapd = Reclaimer::start(pool.clone(), Watermarks { low: 8, high: 16 }).unwrap();
/// for i in 0..1000 {
///     drop(map.load(i).unwrap()); // 16 times the pool: reclaim makes room
/// }
/// let report = kswapd.stop();
/// assert!(pool.stats().reclaimed >= 1000 - 64);
/// # let _ = report;
/// ```
pub struct Reclaimer {
    pool: Arc<FramePool>,
    thread: Option<JoinHandle<ReclaimerReport>>,
}

impl Reclaimer {
    /// Starts the reclaimer of `pool` with `marks`.
    ///
    /// # Errors
    /// [`crate::Error::Busy`] if one already runs for this pool, or
    /// [`crate::Error::InvalidWatermarks`] if the watermarks are not
    /// `0 < low < high <= capacity`.
    pub fn start(pool: Arc<FramePool>, marks: Watermarks) -> Result<Self, crate::Error> {
        let cap = pool.capacity();
        if marks.low == 0 || marks.low >= marks.high || marks.high > cap {
            return Err(crate::Error::InvalidWatermarks {
                low: marks.low,
                high: marks.high,
            });
        }
        let wake = &pool.kswapd;
        // Relaxed: the thread is started after this store (spawn orders it).
        if wake
            .low
            .compare_exchange(0, marks.low, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return Err(crate::Error::Busy);
        }
        *wake.state.lock().unwrap_or_else(|e| e.into_inner()) = State::default();
        let p = pool.clone();
        let thread = std::thread::Builder::new()
            .name("pagemap-reclaim".into())
            .spawn(move || run(&p, marks))
            .expect("spawning the reclaimer thread");
        Ok(Self {
            pool,
            thread: Some(thread),
        })
    }

    /// Stops the thread (after its current batch) and returns its report.
    pub fn stop(mut self) -> ReclaimerReport {
        self.halt()
    }

    fn halt(&mut self) -> ReclaimerReport {
        let Some(t) = self.thread.take() else {
            return ReclaimerReport::default();
        };
        let wake = &self.pool.kswapd;
        {
            let mut s = wake.state.lock().unwrap_or_else(|e| e.into_inner());
            s.stop = true;
            wake.cv.notify_one();
        }
        let report = t.join().unwrap_or_default();
        wake.low.store(0, Ordering::Relaxed);
        report
    }
}

impl Drop for Reclaimer {
    fn drop(&mut self) {
        self.halt();
    }
}

fn run(pool: &FramePool, marks: Watermarks) -> ReclaimerReport {
    let wake = &pool.kswapd;
    let mut report = ReclaimerReport::default();
    loop {
        {
            let mut s = wake.state.lock().unwrap_or_else(|e| e.into_inner());
            while !s.pending && !s.stop {
                s = wake.cv.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            if s.stop {
                return report;
            }
            s.pending = false;
        }
        report.wakeups += 1;
        let mut freed_any = false;
        while pool.free_frames() < marks.high {
            if wake.state.lock().map(|s| s.stop).unwrap_or(true) {
                return report;
            }
            let t = std::time::Instant::now();
            let r = pool.reclaim(RECLAIM_BATCH);
            pool.stats.reclaim.record(t.elapsed());
            report.batches += 1;
            report.reclaimed += r.freed;
            report.dirty += r.dirty;
            if r.freed == 0 {
                break;
            }
            freed_any = true;
        }
        if !freed_any {
            report.fruitless += 1;
        }
    }
}
