//! Periodic writeback: a background thread that calls
//! [`PageMap::sync`] on a set of page maps every period, as a kernel's
//! flusher threads do, so dirty data does not wait for an msync or a
//! removal to reach the store.
//!
//! Each round is an ordinary [`PageMap::writeback`]: mapped pages are
//! cleaned and shot down first, dirty pages are tagged before any is
//! written (a steady writer cannot keep a round going), and a page whose
//! write fails stays dirty, to be retried next round.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::map::PageMap;

/// What a [`Flusher`] did over its life.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlusherReport {
    /// Rounds run (one `sync` of every map per round).
    pub rounds: u64,
    /// Pages written.
    pub written: u64,
    /// Shootdowns issued to clean mapped pages.
    pub shootdowns: u64,
    /// Write errors met (each page stays dirty and is retried next round).
    pub errors: u64,
    /// The last error, as text.
    pub last_error: Option<String>,
}

struct Shared {
    stop: AtomicBool,
    wake: Mutex<bool>,
    cv: Condvar,
    report: Mutex<FlusherReport>,
}

/// A background writeback thread; stops (after a last round) on
/// [`stop`](Self::stop) or drop.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use pagemap::{Flusher, FramePool, MemStore, PageMap};
///
/// let store = Arc::new(MemStore::new());
/// let map = Arc::new(PageMap::new(Arc::new(FramePool::new(8).unwrap()), store.clone()));
/// let flusher = Flusher::spawn(vec![map.clone()], Duration::from_millis(5));
/// map.load(3).unwrap().write(0, b"later").unwrap();
/// let report = flusher.stop();
/// assert!(report.written >= 1);
/// assert_eq!(&store.page(3).unwrap()[..5], b"later");
/// ```
pub struct Flusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Starts a thread that writes back every map in `maps` each `period`.
    pub fn spawn(maps: Vec<Arc<PageMap>>, period: Duration) -> Flusher {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            wake: Mutex::new(false),
            cv: Condvar::new(),
            report: Mutex::new(FlusherReport::default()),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("pagemap-flusher".into())
            .spawn(move || loop {
                // Relaxed: the flag only ends the loop; the join orders the rest.
                let last = s.stop.load(Ordering::Relaxed);
                for map in &maps {
                    let r = map.sync();
                    let mut rep = s.report.lock().unwrap_or_else(|e| e.into_inner());
                    rep.written += r.written;
                    rep.shootdowns += r.shootdowns;
                    rep.errors += r.errors.len() as u64;
                    if let Some(e) = r.errors.last() {
                        rep.last_error = Some(e.to_string());
                    }
                }
                s.report.lock().unwrap_or_else(|e| e.into_inner()).rounds += 1;
                if last {
                    return;
                }
                let woken = s.wake.lock().unwrap_or_else(|e| e.into_inner());
                let (mut woken, _) =
                    s.cv.wait_timeout_while(woken, period, |w| !*w)
                        .unwrap_or_else(|e| e.into_inner());
                *woken = false;
            })
            .expect("spawn the flusher thread");
        Flusher {
            shared,
            thread: Some(thread),
        }
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

    /// Runs a last round, stops the thread and returns the totals.
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
