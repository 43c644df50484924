//! Periodic writeback: a background thread that writes back a set of page
//! maps every period, as a kernel's flusher threads do, so dirty data does
//! not wait for an msync or a removal to reach the store.
//!
//! Each round is an ordinary [`PageMap::writeback`] of every page: mapped
//! pages are cleaned and shot down first, dirty pages are tagged before any
//! is written (a steady writer cannot keep a round going), and a page whose
//! write fails stays dirty. Such a page is not retried every round: it
//! waits out a backoff, the period at first, doubled at each failure up to
//! a cap, so a failing device is not hammered (Linux's writeback retries a
//! failed page at its next periodic pass; a storage engine's flusher backs
//! off). The error is also kept by the page map for its next
//! [`PageMap::fsync`], which reports it. With [`FlusherBuilder::fsync`] a
//! round ends by syncing each map's store, so data reaches stable storage
//! within about a period; a failed sync is kept for the map's next fsync
//! too (a sync that fails may have lost what it failed to write, so a later
//! one that succeeds does not cover it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::map::{PageMap, WbPolicy, Wrote};

/// What a [`Flusher`] did over its life.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlusherReport {
    /// Rounds run (one write-back of every map per round).
    pub rounds: u64,
    /// Pages written.
    pub written: u64,
    /// Shootdowns issued to clean mapped pages.
    pub shootdowns: u64,
    /// Store syncs done (with [`FlusherBuilder::fsync`]; failed ones
    /// included).
    pub syncs: u64,
    /// Errors met: failed page writes (each page stays dirty and is retried
    /// after its backoff) and failed store syncs.
    pub errors: u64,
    /// The last error ([`Error::Write`] for a page, [`Error::Sync`] for a
    /// store's sync).
    pub last_error: Option<Error>,
    /// Pages whose last write failed, now waiting out their backoff: the
    /// data stuck in the cache. Zero once every one has been written.
    pub stuck_pages: u64,
    /// Writes of pages that had failed before (successful or not).
    pub retries: u64,
}

/// How a [`Flusher`] runs: [`Flusher::builder`], then
/// [`spawn`](Self::spawn).
#[derive(Clone, Debug)]
pub struct FlusherBuilder {
    period: Duration,
    fsync: bool,
    max_backoff: Duration,
}

impl Default for FlusherBuilder {
    fn default() -> Self {
        Self {
            period: Duration::from_secs(5),
            fsync: false,
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl FlusherBuilder {
    /// Time between rounds (default 5 s, Linux's
    /// `dirty_writeback_centisecs`); also a failed page's first backoff.
    pub fn period(mut self, period: Duration) -> Self {
        self.period = period;
        self
    }

    /// Whether each round ends by syncing every map's store
    /// ([`StoreControl::sync`](crate::StoreControl::sync)), so the data it
    /// wrote is durable (default no: rounds only write back). Either way
    /// the round's write errors stay for the maps' next
    /// [`fsync`](PageMap::fsync) to report.
    pub fn fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    /// The longest a failing page waits before its next attempt (default
    /// 30 s): its backoff starts at the period and doubles at each failure
    /// up to this.
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = max;
        self
    }

    /// Starts the thread, writing back every map in `maps` each period.
    pub fn spawn(self, maps: Vec<Arc<PageMap>>) -> Flusher {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            wake: Mutex::new(false),
            cv: Condvar::new(),
            report: Mutex::new(FlusherReport::default()),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("pagemap-flusher".into())
            .spawn(move || self.run(&s, &maps))
            .expect("spawn the flusher thread");
        Flusher {
            shared,
            thread: Some(thread),
        }
    }

    fn run(&self, s: &Shared, maps: &[Arc<PageMap>]) {
        // The backoff table: the thread's own, no lock.
        let mut backoff = Backoff {
            pages: HashMap::new(),
            first: self.period,
            max: self.max_backoff,
            map: 0,
            now: Instant::now(),
            round: 0,
            all: false,
            tally: Tally::default(),
        };
        loop {
            // Relaxed: the flag only ends the loop; the join orders the rest.
            let last = s.stop.load(Ordering::Relaxed);
            backoff.round += 1;
            // The last round tries every dirty page, backoff or not: a
            // final flush before the maps are left to their users.
            backoff.all = last;
            for (i, map) in maps.iter().enumerate() {
                backoff.map = i;
                backoff.now = Instant::now();
                let r = map.writeback_with(.., &mut backoff);
                let sync = self.fsync.then(|| map.sync_store());
                let mut rep = s.report.lock().unwrap_or_else(|e| e.into_inner());
                rep.written += r.written;
                rep.shootdowns += r.shootdowns;
                rep.errors += r.errors.len() as u64 + r.errors_dropped;
                if let Some(e) = r.errors.last() {
                    rep.last_error = Some(e.clone());
                }
                if let Some(sync) = sync {
                    rep.syncs += 1;
                    if let Err(source) = sync {
                        rep.errors += 1;
                        rep.last_error = Some(Error::Sync { source });
                    }
                }
            }
            backoff.forget_settled();
            {
                let mut rep = s.report.lock().unwrap_or_else(|e| e.into_inner());
                rep.rounds += 1;
                rep.retries += core::mem::take(&mut backoff.tally.retries);
                rep.stuck_pages = backoff.pages.len() as u64;
            }
            if last {
                return;
            }
            let woken = s.wake.lock().unwrap_or_else(|e| e.into_inner());
            let (mut woken, _) =
                s.cv.wait_timeout_while(woken, self.period, |w| !*w)
                    .unwrap_or_else(|e| e.into_inner());
            *woken = false;
        }
    }
}

/// A page that failed: when to try it again, and its current delay.
struct Retry {
    next_try: Instant,
    delay: Duration,
    /// The last round that found the page dirty.
    round: u64,
}

#[derive(Default)]
struct Tally {
    retries: u64,
}

/// The flusher's write-back policy: pages in backoff are skipped, outcomes
/// move the backoff.
struct Backoff {
    /// (index of the map in the flusher's list, page index) -> its retry.
    pages: HashMap<(usize, u64), Retry>,
    first: Duration,
    max: Duration,
    /// The map being written back.
    map: usize,
    /// This map's round began (one clock read per map, not per page).
    now: Instant,
    round: u64,
    /// This round ignores the backoff (the last one).
    all: bool,
    tally: Tally,
}

impl Backoff {
    /// Drops the entries of pages this round did not find dirty: written by
    /// someone else (an msync, an fsync, a removal's write-back) or gone.
    fn forget_settled(&mut self) {
        let round = self.round;
        self.pages.retain(|_, r| r.round == round);
    }
}

impl WbPolicy for Backoff {
    fn want(&mut self, index: u64) -> bool {
        // Under the map's writer lock: a hash lookup, no lock.
        match self.pages.get_mut(&(self.map, index)) {
            Some(r) => {
                r.round = self.round; // still dirty: still stuck
                self.all || r.next_try <= self.now
            }
            None => true,
        }
    }

    fn done(&mut self, index: u64, result: &Result<Wrote, Error>) {
        let key = (self.map, index);
        let known = self.pages.get(&key).map(|r| r.delay);
        if known.is_some() {
            self.tally.retries += 1;
        }
        match result {
            Ok(_) => {
                self.pages.remove(&key);
            }
            Err(_) => {
                let delay = match known {
                    Some(d) => d.saturating_mul(2).min(self.max),
                    None => self.first.min(self.max),
                };
                self.pages.insert(
                    key,
                    Retry {
                        next_try: Instant::now() + delay,
                        delay,
                        round: self.round,
                    },
                );
            }
        }
    }
}

struct Shared {
    stop: AtomicBool,
    wake: Mutex<bool>,
    cv: Condvar,
    report: Mutex<FlusherReport>,
}

/// A background writeback thread; stops (after a last round) on
/// [`stop`](Self::stop) or drop. [`Flusher::spawn`] writes back only;
/// [`Flusher::builder`] sets a sync after each round and the backoff cap.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use pagemap::{Flusher, FramePool, MemStore, PageMap};
///
/// let store = Arc::new(MemStore::new());
/// let map = PageMap::new(Arc::new(FramePool::new(8).unwrap()), store.clone());
/// let flusher = Flusher::builder()
///     .period(Duration::from_millis(5))
///     .fsync(true) // each round ends with the store's sync
///     .max_backoff(Duration::from_secs(1))
///     .spawn(vec![map.clone()]);
/// map.load(3).unwrap().write(0, b"later").unwrap();
/// let report = flusher.stop();
/// assert!(report.written >= 1 && report.syncs >= 1);
/// assert_eq!(report.stuck_pages, 0);
/// assert_eq!(&store.page(3).unwrap()[..5], b"later");
/// // The flusher's Arc is gone: the map can be closed.
/// map.close().unwrap();
/// ```
pub struct Flusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    /// A builder: period 5 s, no sync, backoff up to 30 s.
    pub fn builder() -> FlusherBuilder {
        FlusherBuilder::default()
    }

    /// Starts a thread that writes back every map in `maps` each `period`
    /// (no sync; the default backoff): `Flusher::builder().period(period).spawn(maps)`.
    pub fn spawn(maps: Vec<Arc<PageMap>>, period: Duration) -> Flusher {
        Self::builder().period(period).spawn(maps)
    }

    /// Asks for a round now (without waiting for it).
    pub fn kick(&self) {
        *self.shared.wake.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.cv.notify_one();
    }

    /// What it has done so far.
    pub fn report(&self) -> FlusherReport {
        self.shared
            .report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs a last round, which tries every dirty page, backoff or not,
    /// then stops the thread (releasing its `Arc`s of the maps) and returns
    /// the totals. Pages that still fail stay dirty in their maps: a
    /// [`PageMap::fsync`] or [`PageMap::close`] after it reports them.
    pub fn stop(mut self) -> FlusherReport {
        self.halt();
        self.report()
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.kick();
        if let Some(t) = self.thread.take() {
            t.join().expect("flusher thread panicked");
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.halt();
    }
}

impl std::fmt::Debug for Flusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flusher")
            .field("report", &self.report())
            .finish()
    }
}
