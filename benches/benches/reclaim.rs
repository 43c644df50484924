//! Issue 12: throughput of the page cache under memory pressure, where
//! every miss reclaims through the pool's eviction policy, against what else
//! could serve the same reads from the same real file (a temp file of
//! `FILE_PAGES` 4 KiB pages, 64 MiB, written before timing, so the kernel's
//! page cache holds it: a miss costs a `pread` copy, never a disk read).
//!
//! * `zipf_{1,2}t/<engine>`: each thread reads whole pages in a Zipf(0.99)
//!   order (ranks scattered over the file; one pre-generated trace per
//!   thread, fixed seeds), into its own 4 KiB buffer, folding a byte of each
//!   into a checksum. Every engine holds `POOL_PAGES` pages (10% of the
//!   file) and is warmed by one untimed pass over a trace first:
//!   - `pagemap-<policy>`: `PageMap::read_at` over a `FramePool` of that
//!     many frames with the policy (`s3fifo` is the default), reclaiming
//!     directly in the allocating thread; `pagemap-s3fifo+kswapd` also runs
//!     the background `Reclaimer` (default watermarks).
//!   - `global-lock`: the same (default policy) behind one
//!     `parking_lot::Mutex<()>` held around every `read_at`: one lock around
//!     all paging, the design of the Zephyr seed.
//!   - `moka`: a `moka::sync::Cache<u64, Arc<[u8; 4096]>>` with
//!     `max_capacity` = the pages; a miss `pread`s the page and inserts it.
//!   - `foyer`: foyer's in-memory cache (`foyer_memory::Cache`, its
//!     defaults: 8 shards, LRU) of the same capacity in entries, likewise.
//!
//!   Targets: the default policy at least 1.7x the global lock at 2 threads,
//!   and at least 2x moka and foyer.
//! * `bytes_uniform_{1,2}t/{read_at,pread}`: uniform random 4 KiB reads with
//!   a pool of 1/8 of the file (so most reads miss and reclaim) against
//!   `pread(2)` of the same file. Target: at least 1.0x.
//!
//! The table at the end (stderr and `benches/results/reclaim.md`) gives each
//! engine's throughput as total reads over the summed wall time of every
//! timed batch criterion ran (its warm-up included: the caches are already
//! in steady state), and hit ratios over the same reads.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use benches::policy_sim::Zipf;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};
use pagemap::{FileStore, FramePool, PageMap, Reclaimer, Watermarks, PAGE_SIZE};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Pages of the file (64 MiB; a power of two, for the rank scatter).
const FILE_PAGES: usize = 1 << 14;
/// Capacity of every engine in the Zipf runs, in pages: 10% of the file.
const POOL_PAGES: usize = FILE_PAGES / 10;
/// Pool of the byte API run, in pages: 1/8 of the file.
const BYTES_POOL_PAGES: usize = FILE_PAGES / 8;
/// Reads in each thread's trace (replayed from where the last batch
/// stopped).
const TRACE_LEN: usize = 1 << 18;
/// The Zipf exponent the issue names.
const ALPHA: f64 = 0.99;
/// Seed of thread 0's trace; thread `t` uses `SEED + t`.
const SEED: u64 = 0x5eed_0012;
/// The thread counts measured.
const THREADS: [usize; 2] = [1, 2];

/// The byte at `at` of page `page` of the file: every page differs, so a
/// wrong page is seen.
fn page_byte(page: u64, at: usize) -> u8 {
    (page as usize * 31 + at * 7) as u8
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pagemap-bench-{}-{name}", std::process::id()))
}

/// Writes the file (each page its own bytes) and returns it open for reads.
fn make_file(path: &PathBuf) -> File {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .expect("create the benchmark file");
    let mut page = vec![0u8; PAGE_SIZE];
    for p in 0..FILE_PAGES as u64 {
        for (i, b) in page.iter_mut().enumerate() {
            *b = page_byte(p, i);
        }
        file.write_all_at(&page, p * PAGE_SIZE as u64)
            .expect("write the benchmark file");
    }
    file
}

/// Zipf ranks scattered over the file (an odd multiplier modulo a power of
/// two is a bijection), so that popular pages are not neighbours.
fn scatter(rank: u64) -> u64 {
    rank.wrapping_mul(0x9e37_79b9) & (FILE_PAGES as u64 - 1)
}

/// One Zipf(`ALPHA`) page trace per thread.
fn zipf_traces(threads: usize) -> Vec<Vec<u64>> {
    let z = Zipf::new(FILE_PAGES, ALPHA);
    (0..threads)
        .map(|t| {
            let mut rng = StdRng::seed_from_u64(SEED + t as u64);
            (0..TRACE_LEN)
                .map(|_| scatter(z.sample(&mut rng)))
                .collect()
        })
        .collect()
}

/// One uniform page trace per thread.
fn uniform_traces(threads: usize) -> Vec<Vec<u64>> {
    (0..threads)
        .map(|t| {
            let mut r = benches::SplitMix64(SEED ^ 0xb17e5 ^ t as u64);
            (0..TRACE_LEN)
                .map(|_| r.next_u64() % FILE_PAGES as u64)
                .collect()
        })
        .collect()
}

/// A cache serving whole pages of the file.
trait Engine: Sync {
    /// Reads page `page` into `buf`; returns whether it was a hit (engines
    /// that count their own hits may return anything).
    fn read(&self, page: u64, buf: &mut [u8; PAGE_SIZE]) -> bool;
    /// (hits, misses) so far: `None` if the bench counts them from `read`.
    fn counted(&self) -> Option<(u64, u64)> {
        None
    }
}

/// Our page map, optionally behind one global lock.
struct Ours {
    map: Arc<PageMap>,
    global: Option<parking_lot::Mutex<()>>,
}

impl Ours {
    fn new(path: &PathBuf, pool: Arc<FramePool>, global: bool) -> Self {
        let store = FileStore::open(path).expect("file store");
        Self {
            map: PageMap::new(pool, Arc::new(store)),
            global: global.then(|| parking_lot::Mutex::new(())),
        }
    }
}

impl Engine for Ours {
    #[inline]
    fn read(&self, page: u64, buf: &mut [u8; PAGE_SIZE]) -> bool {
        let _g = self.global.as_ref().map(|m| m.lock());
        let n = self
            .map
            .read_at(page * PAGE_SIZE as u64, buf)
            .expect("read_at");
        debug_assert_eq!(n, PAGE_SIZE);
        true
    }
    fn counted(&self) -> Option<(u64, u64)> {
        let s = self.map.stats();
        Some((s.hits, s.misses))
    }
}

struct Moka {
    cache: moka::sync::Cache<u64, Arc<[u8; PAGE_SIZE]>>,
    file: File,
}

impl Engine for Moka {
    #[inline]
    fn read(&self, page: u64, buf: &mut [u8; PAGE_SIZE]) -> bool {
        if let Some(v) = self.cache.get(&page) {
            buf.copy_from_slice(&v[..]);
            return true;
        }
        let mut v = Arc::new([0u8; PAGE_SIZE]);
        let fresh = Arc::get_mut(&mut v).expect("a new Arc is unique");
        self.file
            .read_exact_at(fresh, page * PAGE_SIZE as u64)
            .expect("pread");
        buf.copy_from_slice(&v[..]);
        self.cache.insert(page, v);
        false
    }
}

struct Foyer {
    cache: foyer_memory::Cache<u64, Box<[u8; PAGE_SIZE]>>,
    file: File,
}

impl Engine for Foyer {
    #[inline]
    fn read(&self, page: u64, buf: &mut [u8; PAGE_SIZE]) -> bool {
        if let Some(e) = self.cache.get(&page) {
            buf.copy_from_slice(&e.value()[..]);
            return true;
        }
        let mut v = Box::new([0u8; PAGE_SIZE]);
        self.file
            .read_exact_at(&mut v[..], page * PAGE_SIZE as u64)
            .expect("pread");
        buf.copy_from_slice(&v[..]);
        self.cache.insert(page, v);
        false
    }
}

/// Plain `pread(2)` of the file (the byte API's baseline).
struct Pread(File);

impl Engine for Pread {
    #[inline]
    fn read(&self, page: u64, buf: &mut [u8; PAGE_SIZE]) -> bool {
        self.0
            .read_exact_at(buf, page * PAGE_SIZE as u64)
            .expect("pread");
        false
    }
}

/// What the summary table needs of one (group, engine) run.
#[derive(Default)]
struct Tally {
    ops: u64,
    time: Duration,
    hits: u64,
    misses: u64,
}

/// Median reads/s of the interleaved rounds, per (group, engine).
static MEDIANS: Mutex<Vec<(String, String, f64)>> = Mutex::new(Vec::new());

/// Rounds of the interleaved comparison.
const ROUNDS: usize = 5;

/// After criterion: `ROUNDS` rounds in which every engine in turn runs
/// `ops` reads per thread, continuing its traces; the median round of each
/// engine is recorded. A burst of outside load then hits one round of every
/// engine alike, not one engine's whole measurement.
fn interleaved(prefix: &str, engines: &[(&str, &dyn Engine)], traces: &[Vec<u64>], ops: u64) {
    if !measuring() {
        return;
    }
    for threads in THREADS {
        let group = format!("{prefix}_{threads}t");
        let cursors: Vec<Vec<AtomicUsize>> = engines
            .iter()
            .map(|_| (0..threads).map(|_| AtomicUsize::new(0)).collect())
            .collect();
        let mut rates = vec![Vec::with_capacity(ROUNDS); engines.len()];
        for _ in 0..ROUNDS {
            for (i, (_, e)) in engines.iter().enumerate() {
                let (took, _) = run_threads(*e, &traces[..threads], &cursors[i], ops);
                rates[i].push((ops * threads as u64) as f64 / took.as_secs_f64());
            }
        }
        let mut all = MEDIANS.lock().unwrap_or_else(|e| e.into_inner());
        for ((name, _), mut r) in engines.iter().zip(rates) {
            r.sort_by(f64::total_cmp);
            all.push((group.clone(), (*name).to_string(), r[r.len() / 2]));
        }
    }
}

/// One row per (group, engine), in run order.
static TALLIES: Mutex<Vec<(String, String, Tally)>> = Mutex::new(Vec::new());

fn tally(group: &str, engine: &str, f: impl FnOnce(&mut Tally)) {
    let mut all = TALLIES.lock().unwrap_or_else(|e| e.into_inner());
    let i = match all.iter().position(|(g, e, _)| g == group && e == engine) {
        Some(i) => i,
        None => {
            all.push((group.into(), engine.into(), Tally::default()));
            all.len() - 1
        }
    };
    f(&mut all[i].2);
}

/// Runs `iters` reads on each of `traces.len()` threads, each continuing
/// its trace at its cursor; returns the slowest thread's time and the hits
/// the engine reported from `read`.
fn run_threads(
    engine: &dyn Engine,
    traces: &[Vec<u64>],
    cursors: &[AtomicUsize],
    iters: u64,
) -> (Duration, u64) {
    let threads = traces.len();
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, trace, cursor) = (&barrier, &traces[t], &cursors[t]);
                s.spawn(move || {
                    let mut buf = Box::new([0u8; PAGE_SIZE]);
                    let mut at = cursor.load(Ordering::Relaxed);
                    let mut sum = 0u64;
                    let mut hits = 0u64;
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        let page = trace[at];
                        at += 1;
                        if at == trace.len() {
                            at = 0;
                        }
                        hits += u64::from(engine.read(page, &mut buf));
                        sum = sum.wrapping_add(u64::from(buf[(page as usize) & (PAGE_SIZE - 1)]));
                    }
                    let took = start.elapsed();
                    black_box(sum);
                    cursor.store(at, Ordering::Relaxed);
                    (took, hits)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("reader"))
            .fold((Duration::ZERO, 0), |(t, h), (t2, h2)| (t.max(t2), h + h2))
    })
}

/// One untimed pass over trace 0 (checking the bytes), so that the measured
/// phase starts in steady state.
fn warm(engine: &dyn Engine, trace: &[u64]) {
    let mut buf = Box::new([0u8; PAGE_SIZE]);
    // A smoke test (`cargo test --benches`) only checks the bytes.
    let len = if measuring() { trace.len() } else { 1000 };
    for &page in &trace[..len] {
        engine.read(page, &mut buf);
        assert_eq!(
            buf[PAGE_SIZE - 1],
            page_byte(page, PAGE_SIZE - 1),
            "page {page}"
        );
        assert_eq!(buf[0], page_byte(page, 0), "page {page}");
    }
}

fn configure(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(300));
    g.measurement_time(Duration::from_millis(1500));
}

/// Benches `engine` in `group` with `traces.len()` threads.
fn bench_engine(
    g: &mut BenchmarkGroup<'_, WallTime>,
    group: &str,
    name: &str,
    engine: &dyn Engine,
    traces: &[Vec<u64>],
) {
    let cursors: Vec<AtomicUsize> = traces.iter().map(|_| AtomicUsize::new(0)).collect();
    let before = engine.counted();
    let counted_hits = AtomicUsize::new(0);
    let ops = AtomicUsize::new(0);
    let time = Mutex::new(Duration::ZERO);
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let (took, hits) = run_threads(engine, traces, &cursors, iters);
            counted_hits.fetch_add(hits as usize, Ordering::Relaxed);
            ops.fetch_add(iters as usize * traces.len(), Ordering::Relaxed);
            *time.lock().expect("time") += took;
            took
        })
    });
    let ops = ops.into_inner() as u64;
    let (hits, misses) = match (before, engine.counted()) {
        (Some((h0, m0)), Some((h1, m1))) => (h1 - h0, m1 - m0),
        _ => {
            let h = counted_hits.into_inner() as u64;
            (h, ops - h)
        }
    };
    let time = time.into_inner().expect("time");
    tally(group, name, |t| {
        t.ops += ops;
        t.time += time;
        t.hits += hits;
        t.misses += misses;
    });
}

fn zipf_pressure(c: &mut Criterion, path: &PathBuf, file: &File) {
    let traces = zipf_traces(*THREADS.iter().max().expect("thread counts"));
    let mut engines: Vec<(String, Box<dyn Engine>, Option<Reclaimer>)> = Vec::new();
    for policy in ["s3fifo", "clock", "lru"] {
        let pool = FramePool::with_policy(
            POOL_PAGES,
            pagemap::policy::by_name(policy, POOL_PAGES).expect("policy"),
        )
        .expect("frame pool");
        let ours = Ours::new(path, Arc::new(pool), false);
        engines.push((format!("pagemap-{policy}"), Box::new(ours), None));
    }
    {
        let pool = Arc::new(FramePool::new(POOL_PAGES).expect("frame pool"));
        let kswapd = Reclaimer::start(pool.clone(), Watermarks::for_capacity(POOL_PAGES))
            .expect("reclaimer");
        let ours = Ours::new(path, pool, false);
        engines.push(("pagemap-s3fifo+kswapd".into(), Box::new(ours), Some(kswapd)));
    }
    {
        let pool = Arc::new(FramePool::new(POOL_PAGES).expect("frame pool"));
        engines.push((
            "global-lock".into(),
            Box::new(Ours::new(path, pool, true)),
            None,
        ));
    }
    engines.push((
        "moka".into(),
        Box::new(Moka {
            cache: moka::sync::Cache::new(POOL_PAGES as u64),
            file: file.try_clone().expect("dup"),
        }),
        None,
    ));
    engines.push((
        "foyer".into(),
        Box::new(Foyer {
            cache: foyer_memory::CacheBuilder::new(POOL_PAGES).build(),
            file: file.try_clone().expect("dup"),
        }),
        None,
    ));
    // `ENGINES=a,b` keeps only those (for profiling one engine).
    if let Ok(keep) = std::env::var("ENGINES") {
        engines.retain(|(name, _, _)| keep.split(',').any(|k| k == name));
    }
    for (_, e, _) in &engines {
        warm(&**e, &traces[0]);
    }
    for threads in THREADS {
        let group = format!("zipf_{threads}t");
        let mut g = c.benchmark_group(&group);
        configure(&mut g);
        g.throughput(Throughput::Elements(threads as u64));
        for (name, e, _) in &engines {
            bench_engine(&mut g, &group, name, &**e, &traces[..threads]);
        }
        g.finish();
    }
    let list: Vec<(&str, &dyn Engine)> =
        engines.iter().map(|(n, e, _)| (n.as_str(), &**e)).collect();
    interleaved("zipf", &list, &traces, 150_000);
    for (_, _, kswapd) in engines {
        if let Some(k) = kswapd {
            k.stop();
        }
    }
}

fn bytes_pressure(c: &mut Criterion, path: &PathBuf, file: &File) {
    let traces = uniform_traces(*THREADS.iter().max().expect("thread counts"));
    let pool = Arc::new(FramePool::new(BYTES_POOL_PAGES).expect("frame pool"));
    let ours = Ours::new(path, pool, false);
    let pread = Pread(file.try_clone().expect("dup"));
    warm(&ours, &traces[0]);
    warm(&pread, &traces[0]);
    for threads in THREADS {
        let group = format!("bytes_uniform_{threads}t");
        let mut g = c.benchmark_group(&group);
        configure(&mut g);
        g.throughput(Throughput::Elements(threads as u64));
        bench_engine(&mut g, &group, "read_at", &ours, &traces[..threads]);
        bench_engine(&mut g, &group, "pread", &pread, &traces[..threads]);
        g.finish();
    }
    interleaved(
        "bytes_uniform",
        &[("read_at", &ours), ("pread", &pread)],
        &traces,
        50_000,
    );
}

/// The first line of `cmd`'s output matching `key` (after the colon).
fn command_field(cmd: &str, key: &str) -> Option<String> {
    let out = std::process::Command::new(cmd).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.trim_start().starts_with(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn cpu_name() -> String {
    command_field("lscpu", "Model name").unwrap_or_else(|| "unknown".into())
}

fn today() -> String {
    std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The summary: throughput and hit ratio per run, then the target ratios.
fn report() -> String {
    let all = TALLIES.lock().unwrap_or_else(|e| e.into_inner());
    let medians = MEDIANS.lock().unwrap_or_else(|e| e.into_inner());
    let ops_per_s = |group: &str, engine: &str| {
        medians
            .iter()
            .find(|(g, e, _)| g == group && e == engine)
            .map(|(_, _, r)| *r)
    };
    let mut s = String::new();
    let _ = writeln!(s, "# Reclaim throughput (issue 12)\n");
    let _ = writeln!(
        s,
        "CPU: {} ({} CPUs online); date: {}; load average at the end (1, 5, 15 min): {}.\n",
        cpu_name(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        today(),
        loadavg(),
    );
    let _ = writeln!(
        s,
        "File: {} MiB of 4 KiB pages, in the kernel's page cache (written just before). \
         Zipf({ALPHA}) runs: every engine holds {POOL_PAGES} pages (10% of the file). \
         Byte API runs: uniform random 4 KiB reads, pool of {BYTES_POOL_PAGES} pages (1/8). \
         `criterion`: reads over the summed wall time of all of criterion's timed batches \
         (the slowest thread's, per batch); hit ratio over the same reads (pagemap: \
         `PageMap::stats()`). `interleaved`: the median of {ROUNDS} rounds in which the \
         engines of a run take turns (less sensitive to bursts of outside load); the \
         ratios below use it.\n",
        (FILE_PAGES * PAGE_SIZE) >> 20,
    );
    let _ = writeln!(
        s,
        "| run | engine | reads/s (criterion) | reads/s (interleaved) | hit ratio |"
    );
    let _ = writeln!(s, "| --- | --- | ---: | ---: | ---: |");
    for (g, e, t) in all.iter() {
        let rate = t.ops as f64 / t.time.as_secs_f64().max(1e-9);
        let total = t.hits + t.misses;
        let hr = if total == 0 {
            "-".to_string()
        } else {
            format!("{:.1}%", 100.0 * t.hits as f64 / total as f64)
        };
        let median = ops_per_s(g, e).map_or("-".into(), |r| format!("{:.2} M", r / 1e6));
        let _ = writeln!(s, "| {g} | {e} | {:.2} M | {median} | {hr} |", rate / 1e6);
    }
    let _ = writeln!(s, "\n| ratio | threads | measured | target | result |");
    let _ = writeln!(s, "| --- | ---: | ---: | ---: | --- |");
    let mut ratio =
        |name: &str, group: &str, a: (&str, &str), b: (&str, &str), target: Option<f64>| {
            let (Some(x), Some(y)) = (ops_per_s(a.0, a.1), ops_per_s(b.0, b.1)) else {
                return;
            };
            let r = x / y;
            let (t, verdict) = match target {
                Some(t) if r >= t => (format!("{t:.1}x"), "PASS"),
                Some(t) => (format!("{t:.1}x"), "MISS"),
                None => ("-".into(), "-"),
            };
            let _ = writeln!(s, "| {name} | {group} | {r:.2}x | {t} | {verdict} |");
        };
    for threads in THREADS {
        let z = format!("zipf_{threads}t");
        let z = z.as_str();
        let two = (threads == 2).then_some(1.7);
        let ours = (z, "pagemap-s3fifo");
        ratio(
            "pagemap / global lock",
            &threads.to_string(),
            ours,
            (z, "global-lock"),
            two,
        );
        ratio(
            "pagemap / moka",
            &threads.to_string(),
            ours,
            (z, "moka"),
            Some(2.0),
        );
        ratio(
            "pagemap / foyer",
            &threads.to_string(),
            ours,
            (z, "foyer"),
            Some(2.0),
        );
    }
    for threads in THREADS {
        let b = format!("bytes_uniform_{threads}t");
        let b = b.as_str();
        ratio(
            "read_at / pread (uniform, pool 1/8)",
            &threads.to_string(),
            (b, "read_at"),
            (b, "pread"),
            Some(1.0),
        );
    }
    s
}

/// Whether this is a measurement (`cargo bench` passes `--bench`), not a
/// smoke test (`cargo test --benches`).
fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let path = temp_path("reclaim");
    let file = make_file(&path);
    zipf_pressure(&mut c, &path, &file);
    bytes_pressure(&mut c, &path, &file);
    c.final_summary();
    let _ = std::fs::remove_file(&path);
    let table = report();
    eprintln!("\n{table}");
    // Only a real measurement (`cargo bench`) replaces the recorded table;
    // `cargo test --benches` runs each bench once and must not.
    if measuring() {
        let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results/reclaim.md");
        std::fs::write(&out, &table).expect("write results/reclaim.md");
        eprintln!("written to {}", out.display());
    }
}
