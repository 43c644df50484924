//! The two engines the workload runs through (the page cache, and plain
//! `pread`/`pwrite`), and the timed run of one of them.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use pagemap::{FramePool, PageMap, PAGE_SIZE};

use crate::model::{pattern, Model, ReadCheck};
use crate::workload::{OpGen, Shape};

/// Byte-granular positional I/O, as `pread`/`pwrite`.
pub trait Engine: Sync {
    /// Reads all of `buf` from byte `offset`.
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), String>;
    /// Writes all of `data` at byte `offset`.
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), String>;
}

/// The pool's built-in eviction policies.
pub const POLICIES: [&str; 3] = pagemap::policy::NAMES;

/// Pools of at most this many frames wait longer for a holder to let go.
const TINY_POOL: usize = 8;

/// The frame pool of the page-cache engine: `frames` frames of 4 KiB,
/// replaced by `policy`.
///
/// # Errors
/// An unknown policy, or a capacity the pool refuses.
pub fn make_pool(frames: usize, policy: &str) -> Result<Arc<FramePool>, String> {
    if !POLICIES.contains(&policy) {
        return Err(format!(
            "unknown policy {policy:?} (expected one of {})",
            POLICIES.join(", ")
        ));
    }
    let chosen = pagemap::policy::by_name(policy, frames)
        .ok_or_else(|| format!("policy {policy}: a pool of {frames} frames is too large for it"))?;
    let pool = FramePool::with_policy(frames, chosen)
        .map(Arc::new)
        .map_err(|e| format!("a pool of {frames} frames: {e}"))?;
    if frames <= TINY_POOL {
        // A pool of a frame or two is held by another thread almost all the
        // time: on a loaded machine a holder descheduled for more than the
        // default 20 ms made a load fail (CI, cli/tests/break12.rs with one
        // frame and two threads). Waiting longer is the right trade here.
        pool.set_held_grace(std::time::Duration::from_secs(2));
    }
    Ok(pool)
}

/// The cache's statistics over a run (counts).
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Counters {
    /// Lookups that found the page cached.
    pub hits: u64,
    /// Lookups that had to read the page from the store.
    pub misses: u64,
    /// Clean pages evicted.
    pub evictions_clean: u64,
    /// Dirty pages evicted (written back first).
    pub evictions_dirty: u64,
    /// Read requests to the store (a readahead window is one).
    pub store_reads: u64,
    /// Write requests to the store (a write-back extent is one).
    pub store_writes: u64,
    /// Allocations that found the pool empty and reclaimed in the caller's
    /// thread (direct-reclaim stalls).
    pub direct_reclaims: u64,
    /// Frames the background reclaimer and direct reclaim freed.
    pub reclaimed: u64,
}

/// The page cache's counters now.
pub fn cache_counters(map: &PageMap, pool: &FramePool) -> Counters {
    let m = map.stats();
    let p = pool.stats();
    Counters {
        hits: m.hits,
        misses: m.misses,
        evictions_clean: m.evicted - m.evicted_dirty,
        evictions_dirty: m.evicted_dirty,
        store_reads: m.reads,
        store_writes: m.writes,
        direct_reclaims: p.direct_reclaims,
        reclaimed: p.reclaimed,
    }
}

/// The page-cache engine: `read_at`/`write_at` on a [`PageMap`] over a
/// `FileStore`; a full pool reclaims by itself.
pub struct CacheEngine {
    /// The map.
    pub map: Arc<PageMap>,
}

impl Engine for CacheEngine {
    fn read(&self, mut offset: u64, mut buf: &mut [u8]) -> Result<(), String> {
        while !buf.is_empty() {
            match self.map.read_at(offset, buf) {
                Ok(0) => return Err(format!("read_at({offset}): unexpected end of file")),
                Ok(n) => {
                    offset += n as u64;
                    buf = &mut buf[n..];
                }
                Err(e) => return Err(format!("read_at({offset}): {e}")),
            }
        }
        Ok(())
    }

    fn write(&self, mut offset: u64, mut data: &[u8]) -> Result<(), String> {
        while !data.is_empty() {
            match self.map.write_at(offset, data) {
                Ok(0) => return Err(format!("write_at({offset}): wrote nothing")),
                Ok(n) => {
                    offset += n as u64;
                    data = &data[n..];
                }
                Err(e) => return Err(format!("write_at({offset}): {e}")),
            }
        }
        Ok(())
    }
}

/// The baseline: `pread`/`pwrite` (std's `FileExt`) on the file.
pub struct PreadEngine {
    /// The file, open for reading and writing.
    pub file: File,
}

impl Engine for PreadEngine {
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| format!("pread({offset}): {e}"))
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), String> {
        self.file
            .write_all_at(data, offset)
            .map_err(|e| format!("pwrite({offset}): {e}"))
    }
}

/// How long a run lasts.
#[derive(Clone, Copy, Debug)]
pub enum Limit {
    /// Each engine runs this long.
    Time(Duration),
    /// This many operations in all, split among the threads.
    Ops(u64),
}

/// What the threads of one run did.
pub struct RunStats {
    /// Reads done.
    pub reads: u64,
    /// Writes done.
    pub writes: u64,
    /// Wall time of the operations, threads started to threads joined.
    pub elapsed: Duration,
    /// Read latency, ns.
    pub read_ns: Histogram<u64>,
    /// Write latency, ns.
    pub write_ns: Histogram<u64>,
    /// Reads that returned bytes no write put there.
    pub bad_reads: u64,
    /// Reads that overlapped a write of their page (checked byte by byte
    /// against the versions written meanwhile).
    pub overlapped_reads: u64,
    /// Reads that failed.
    pub failed_reads: u64,
    /// Writes that failed.
    pub failed_writes: u64,
    /// The first failure's message.
    pub first_error: Option<String>,
}

fn histogram() -> Histogram<u64> {
    // 1 ns to 100 s, 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

impl RunStats {
    fn new() -> Self {
        Self {
            reads: 0,
            writes: 0,
            elapsed: Duration::ZERO,
            read_ns: histogram(),
            write_ns: histogram(),
            bad_reads: 0,
            overlapped_reads: 0,
            failed_reads: 0,
            failed_writes: 0,
            first_error: None,
        }
    }

    fn merge(&mut self, o: RunStats) {
        self.reads += o.reads;
        self.writes += o.writes;
        self.read_ns.add(&o.read_ns).expect("same bounds");
        self.write_ns.add(&o.write_ns).expect("same bounds");
        self.bad_reads += o.bad_reads;
        self.overlapped_reads += o.overlapped_reads;
        self.failed_reads += o.failed_reads;
        self.failed_writes += o.failed_writes;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }

    fn fail(&mut self, e: String) {
        self.first_error.get_or_insert(e);
    }
}

/// What the threads of a run share with the thread that watches them.
struct Control {
    /// Set when the time is up.
    stop: AtomicBool,
    /// Operations done, roughly (added in batches of 64).
    progress: AtomicU64,
}

/// One thread's share of the run.
fn worker(
    engine: &dyn Engine,
    model: &Model,
    mut gen: OpGen,
    seed: u64,
    op_size: usize,
    ops: Option<u64>,
    control: &Control,
) -> RunStats {
    let Control { stop, progress } = control;
    let mut st = RunStats::new();
    let mut buf = vec![0u8; op_size];
    let mut scratch = vec![0u8; op_size];
    let mut n = 0u64;
    loop {
        if ops.map_or(stop.load(Ordering::Relaxed), |max| n >= max) {
            break;
        }
        n += 1;
        let op = gen.next_op();
        let offset = op.page * PAGE_SIZE as u64;
        if op.write {
            let v = model.begin_write(op.page);
            pattern(seed, op.page, v, &mut buf);
            let t = Instant::now();
            let r = engine.write(offset, &buf);
            st.write_ns.saturating_record(t.elapsed().as_nanos() as u64);
            model.end_write(op.page, v);
            st.writes += 1;
            if let Err(e) = r {
                st.failed_writes += 1;
                st.fail(e);
            }
        } else {
            let before = model.before_read(op.page);
            let t = Instant::now();
            let r = engine.read(offset, &mut buf);
            st.read_ns.saturating_record(t.elapsed().as_nanos() as u64);
            st.reads += 1;
            match r {
                Ok(()) => match model.check_read(seed, op.page, before, &buf, &mut scratch) {
                    ReadCheck::Exact => {}
                    ReadCheck::Overlapped => st.overlapped_reads += 1,
                    ReadCheck::Bad => {
                        st.bad_reads += 1;
                        st.fail(format!("bad read of page {}", op.page));
                    }
                },
                Err(e) => {
                    st.failed_reads += 1;
                    st.fail(e);
                }
            }
        }
        if n.is_multiple_of(64) {
            progress.fetch_add(64, Ordering::Relaxed);
        }
    }
    progress.fetch_add(n % 64, Ordering::Relaxed);
    st
}

/// Runs the workload through `engine` on `shape.threads` threads until
/// `limit`; `tick` is called about every 20 ms with the operations done
/// and the time elapsed (for a progress bar).
pub fn run(
    engine: &dyn Engine,
    model: &Model,
    shape: &Shape,
    op_size: usize,
    limit: Limit,
    tick: &mut dyn FnMut(u64, Duration),
) -> Result<RunStats, String> {
    let control = Control {
        stop: AtomicBool::new(false),
        progress: AtomicU64::new(0),
    };
    let (stop, progress) = (&control.stop, &control.progress);
    let threads = shape.threads as u64;
    let gens = (0..shape.threads)
        .map(|t| OpGen::new(shape, t))
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    let mut total = RunStats::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = gens
            .into_iter()
            .enumerate()
            .map(|(t, gen)| {
                let ops = match limit {
                    Limit::Ops(n) => Some(n / threads + u64::from((t as u64) < n % threads)),
                    Limit::Time(_) => None,
                };
                let control = &control;
                s.spawn(move || worker(engine, model, gen, shape.seed, op_size, ops, control))
            })
            .collect();
        while !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
            let elapsed = start.elapsed();
            if let Limit::Time(d) = limit {
                if elapsed >= d {
                    stop.store(true, Ordering::Relaxed);
                }
            }
            tick(progress.load(Ordering::Relaxed), elapsed);
        }
        for h in handles {
            match h.join() {
                Ok(st) => total.merge(st),
                Err(_) => total.fail("a worker thread panicked".into()),
            }
        }
    });
    total.elapsed = start.elapsed();
    tick(progress.load(Ordering::Relaxed), total.elapsed);
    Ok(total)
}
