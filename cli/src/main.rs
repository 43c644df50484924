//! `pagecache`: the project's main job. It runs one workload through the
//! page cache (a `PageMap` over a `FileStore`, with a frame pool smaller
//! than the file) and then through plain `pread`/`pwrite` on a second
//! file, prints a report side by side (throughput, hit ratio, evictions,
//! store I/O, read and write latency percentiles), and verifies both
//! files byte for byte against an independent model of the writes issued.
//!
//! # Usage
//!
//! ```text
//! cargo run --release -p pagecache-cli                  # the defaults: 256 MiB file, 10% pool, 2 threads, 5 s per engine
//! cargo run --release -p pagecache-cli -- --help        # every option
//! pagecache --file-size 64M --pool 1000 --ops 200000 --dist zipf --theta 1.2 --json
//! pagecache --dist hotscan --hot 5% --scan-every 20000 --scan-len 30% --read-ratio 95%
//! ```
//!
//! Sizes take K, M, G, T suffixes (powers of 1024); `--pool`, `--hot` and
//! `--scan-len` are pages without a suffix, bytes with one, or a percentage
//! of the file. Every operation is one read or write of `--op-size` bytes
//! at the start of a page; writes of a page come from one thread only
//! (page % threads), so the file's final content is known exactly.
//!
//! `--anon` runs the anonymous-memory workload instead: the working set is
//! an anonymous mapping of `--file-size` bytes on vmr's simulated machine
//! (one address space, a CPU per thread), over the same pool, paged to a
//! swap file in `--dir`; the run is made with this library's paging (only
//! the moving page BUSY) and again with all paging behind one mutex (the
//! Zephyr seed's), and both are verified byte for byte (every read as it
//! returns, then every page read back through a CPU).
//!
//! # Verification and exit status
//!
//! Every read is checked as it returns (its bytes must be the page's last
//! completed write, or, if a write of the page overlapped it, each byte
//! must come from a version written meanwhile). At the end the map is
//! closed (every dirty page written, the file synced) and each file read
//! back with plain reads and compared with the model. The exit status is
//! 0 only if no byte differs, no read was bad and no write failed or was
//! lost; 1 otherwise (or on an I/O error); 2 for bad arguments.

mod anon;
mod engine;
mod model;
mod workload;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{CommandFactory, Parser};
use indicatif::{ProgressBar, ProgressStyle};
use pagemap::{FileStore, PageMap, PAGE_SIZE};
use serde::Serialize;

use engine::{
    cache_counters, make_pool, CacheEngine, Counters, Engine, Limit, PreadEngine, RunStats,
};
use model::{verify_file, write_initial, Model, Verified, HEADER};
use workload::{Dist, Shape};

/// A count of pages, given as pages, bytes (with a suffix) or a
/// percentage of the file.
#[derive(Clone, Copy, Debug)]
enum Pages {
    /// This many pages (frames).
    Count(u64),
    /// This many bytes (rounded down to whole pages).
    Bytes(u64),
    /// This percentage of the file's pages (rounded down).
    Percent(f64),
}

impl std::fmt::Display for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pages::Count(n) => write!(f, "{n}"),
            Pages::Bytes(b) => write!(f, "{b} bytes"),
            Pages::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Pages {
    fn resolve(self, file_pages: u64) -> u64 {
        match self {
            Pages::Count(n) => n,
            Pages::Bytes(b) => b / PAGE_SIZE as u64,
            Pages::Percent(p) => (file_pages as f64 * p / 100.0) as u64,
        }
    }
}

/// `4096`, `64K`, `256M`, `1G`, `2T` (also `KiB`, `MB`, ...: all powers of 1024).
fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (expected e.g. 4096, 64K, 256M, 1G)"))?;
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("{s:?}: unknown size suffix (use K, M, G or T)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

fn has_suffix(s: &str) -> bool {
    s.trim().ends_with(|c: char| c.is_ascii_alphabetic())
}

/// `--pool`, `--hot`, `--scan-len`: `1000` (pages), `64M` (bytes), `10%`.
fn parse_pages(s: &str) -> Result<Pages, String> {
    if let Some(p) = s.trim().strip_suffix('%') {
        let p: f64 = p
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a percentage"))?;
        if !(p > 0.0 && p <= 100.0) {
            return Err(format!(
                "{s:?}: a percentage must be above 0 and at most 100"
            ));
        }
        return Ok(Pages::Percent(p));
    }
    if has_suffix(s) {
        return parse_bytes(s).map(Pages::Bytes);
    }
    s.trim()
        .parse()
        .map(Pages::Count)
        .map_err(|_| format!("{s:?}: expected pages (1000), bytes (64M) or a percentage (10%)"))
}

/// `--file-size`: at least one page, a whole number of pages.
fn parse_file_size(s: &str) -> Result<u64, String> {
    let b = parse_bytes(s)?;
    if b < PAGE_SIZE as u64 || b % PAGE_SIZE as u64 != 0 {
        return Err(format!(
            "{s:?} = {b} bytes: the file must be a whole number of {PAGE_SIZE}-byte pages, at least one"
        ));
    }
    Ok(b)
}

/// `--op-size`: the header's 16 bytes to one page.
fn parse_op_size(s: &str) -> Result<usize, String> {
    let b = parse_bytes(s)?;
    if b < HEADER as u64 || b > PAGE_SIZE as u64 {
        return Err(format!(
            "{s:?} = {b} bytes: an operation must fit in a page ({HEADER} to {PAGE_SIZE} bytes)"
        ));
    }
    Ok(b as usize)
}

/// `--duration`: `5s`, `500ms`, `2m`, `1.5` (seconds); above zero.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (expected e.g. 5s, 500ms, 2m)"))?;
    let secs = v * scale;
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err(format!(
            "{s:?}: a duration must be above zero and at most a day"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `--read-ratio`: `0.8` or `80%`.
fn parse_ratio(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, scale) = match t.strip_suffix('%') {
        Some(n) => (n.trim(), 100.0),
        None => (t, 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a ratio (expected e.g. 0.8 or 80%)"))?;
    let r = v / scale;
    if !(0.0..=1.0).contains(&r) {
        return Err(format!(
            "{s:?}: the read ratio must be between 0 and 1 (0% and 100%)"
        ));
    }
    Ok(r)
}

/// `--theta`: a finite skew, at least 0.
fn parse_theta(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("{s:?}: theta must be a finite number, at least 0"));
    }
    Ok(v)
}

/// Examples shown at the end of `--help`.
const EXAMPLES: &str = "Examples:
  pagecache                                   256 MiB file, 10% pool, 2 threads, 5 s per engine
  pagecache --file-size 64M --pool 1000 --ops 200000 --dist zipf --theta 1.2 --json
  pagecache --dist hotscan --hot 5% --scan-every 20000 --scan-len 30% --read-ratio 95%

Sizes take K, M, G, T suffixes (powers of 1024). Each operation reads or writes --op-size
bytes at the start of a page; a page is written by one thread only (page % threads).";

/// The project's main job: one workload through the page cache and through
/// pread/pwrite, a report side by side, and both files verified byte for
/// byte. Exit status: 0 verified, 1 a difference, bad read, failed or lost
/// write, or an I/O error; 2 bad arguments.
#[derive(Parser, Debug)]
#[command(name = "pagecache", version, after_help = EXAMPLES)]
struct Cli {
    /// File size in bytes (K, M, G, T suffixes): a whole number of 4 KiB pages.
    #[arg(long, default_value = "256M", value_parser = parse_file_size)]
    file_size: u64,

    /// Frame pool size: frames (1000), bytes (64M) or a percentage of the file (10%).
    #[arg(long, default_value = "10%", value_parser = parse_pages)]
    pool: Pages,

    /// Worker threads (each engine).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: u16,

    /// How long each engine runs (5s, 500ms, 2m).
    #[arg(long, default_value = "5s", value_parser = parse_duration, conflicts_with = "ops")]
    duration: Duration,

    /// Run this many operations per engine instead of a duration.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    ops: Option<u64>,

    /// Fraction of operations that are reads: 0.8 or 80%.
    #[arg(long, visible_alias = "mix", default_value = "80%", value_parser = parse_ratio)]
    read_ratio: f64,

    /// Page access distribution (default: Zipf with --theta, the skew of a
    /// real cache's working set).
    #[arg(long, value_enum, default_value_t = Dist::Zipf)]
    dist: Dist,

    /// Zipf skew (--dist zipf).
    #[arg(long, default_value = "0.99", value_parser = parse_theta)]
    theta: f64,

    /// Hot set (--dist hotscan): pages, bytes or a percentage of the file.
    #[arg(long, default_value = "5%", value_parser = parse_pages)]
    hot: Pages,

    /// Operations between two scans, per thread (--dist hotscan).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    scan_every: u64,

    /// Pages read by one scan (--dist hotscan): pages, bytes or a percentage.
    #[arg(long, default_value = "20%", value_parser = parse_pages)]
    scan_len: Pages,

    /// Page replacement policy of the pool.
    #[arg(long, default_value = "s3fifo", value_parser = engine::POLICIES)]
    policy: String,

    /// Run no background reclaimer (kswapd): every reclaim then happens in
    /// the thread whose load found the pool empty.
    #[arg(long)]
    no_background_reclaim: bool,

    /// Seed of the workload and of the data: the same seed, the same operations.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Directory of the two files (default: the system's temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,

    /// Bytes per read or write (K suffix allowed): 16 to 4096, at the start of a page.
    #[arg(long, default_value = "4096", value_parser = parse_op_size)]
    op_size: usize,

    /// Print the report as one JSON object (and no table).
    #[arg(long)]
    json: bool,

    /// Keep the two files (their paths are in the report).
    #[arg(long)]
    keep: bool,

    /// Testing: flip one byte of the page cache's file after the run, before
    /// verifying it (the run must then fail).
    #[arg(long, hide = true)]
    inject_corruption: bool,

    /// Run the anonymous-memory workload instead: a --file-size anonymous
    /// mapping (the working set) over the pool, paged to a swap file in
    /// --dir, with this library's paging and with one global paging mutex.
    #[arg(long)]
    anon: bool,
}

/// The options after validation against each other.
struct Config {
    cli: Cli,
    pages: u64,
    pool_frames: usize,
    shape: Shape,
    dir: PathBuf,
}

fn validate(cli: Cli) -> Result<Config, String> {
    let pages = cli.file_size / PAGE_SIZE as u64;
    let pool = cli.pool.resolve(pages);
    if pool == 0 {
        return Err(format!(
            "--pool {} comes to 0 frames for a {pages}-page file: the pool needs at least one",
            cli.pool
        ));
    }
    let pool_frames =
        usize::try_from(pool).map_err(|_| format!("--pool: {pool} frames is too many"))?;
    if u64::from(cli.threads) > pages {
        return Err(format!(
            "--threads {}: more threads than the file's {pages} pages (writes are partitioned by page)",
            cli.threads
        ));
    }
    let hot_pages = cli.hot.resolve(pages);
    if cli.dist == Dist::Hotscan && !(1..=pages).contains(&hot_pages) {
        return Err(format!(
            "--hot comes to {hot_pages} pages: it must be 1 to the file's {pages} pages"
        ));
    }
    let scan_len = cli.scan_len.resolve(pages);
    let dir = cli.dir.clone().unwrap_or_else(std::env::temp_dir);
    if !dir.is_dir() {
        return Err(format!("--dir {}: not a directory", dir.display()));
    }
    let shape = Shape {
        pages,
        threads: usize::from(cli.threads),
        read_ratio: cli.read_ratio,
        dist: cli.dist,
        theta: cli.theta,
        hot_pages,
        scan_every: cli.scan_every,
        scan_len,
        seed: cli.seed,
    };
    Ok(Config {
        cli,
        pages,
        pool_frames,
        shape,
        dir,
    })
}

/// Latency percentiles, microseconds.
#[derive(Serialize, Default)]
struct Latency {
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
}

impl Latency {
    fn of(h: &hdrhistogram::Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Self {
            p50_us: us(h.value_at_quantile(0.50)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

/// What one engine did, and its verification.
#[derive(Serialize)]
struct EngineReport {
    engine: &'static str,
    path: String,
    ops: u64,
    reads: u64,
    writes: u64,
    seconds: f64,
    ops_per_sec: f64,
    /// Bytes read and written per second, in MB (10^6 bytes).
    mb_per_sec: f64,
    /// Cache hits / lookups (none for pread: the kernel's cache is not ours).
    hit_ratio: Option<f64>,
    /// The cache's counters (none for pread).
    cache: Option<Counters>,

    read_latency: Latency,
    write_latency: Latency,
    /// Seconds to close the map (write back, sync) or sync the file.
    close_seconds: f64,
    /// Reads that overlapped a write of their page (checked byte by byte).
    overlapped_reads: u64,
    bad_reads: u64,
    failed_reads: u64,
    failed_writes: u64,
    /// Pages `close` could not write (their data lost).
    lost_writes: u64,
    verify: Verified,
    first_error: Option<String>,
    passed: bool,
}

/// The whole report (`--json` prints it).
#[derive(Serialize)]
struct Report {
    /// "file" (page cache vs pread) or "anonymous" (--anon: paging vs one
    /// global paging mutex).
    workload: &'static str,
    file_size_bytes: u64,
    pages: u64,
    pool_frames: usize,
    policy: String,
    threads: u16,
    op_size_bytes: usize,
    read_ratio: f64,
    dist: Dist,
    theta: Option<f64>,
    seed: u64,
    limit: String,
    engines: Vec<EngineReport>,
    /// Page cache ops/s over pread ops/s (--anon: paging ops/s over the
    /// global paging mutex's).
    throughput_ratio: f64,
    wall_seconds: f64,
    passed: bool,
}

/// The two files, removed on drop unless kept.
struct Files {
    cache: PathBuf,
    pread: PathBuf,
    keep: bool,
}

impl Drop for Files {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.cache);
            let _ = std::fs::remove_file(&self.pread);
        }
    }
}

/// A progress bar on a terminal; hidden when stderr is not one.
fn bar(limit: Limit, name: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (len, template) = match limit {
        Limit::Time(d) => (
            d.as_millis() as u64,
            "{msg:>10} [{bar:40}] {elapsed:>4} / {prefix} s",
        ),
        Limit::Ops(n) => (n, "{msg:>10} [{bar:40}] {pos}/{len} ops ({per_sec})"),
    };
    let pb = ProgressBar::new(len).with_message(name.to_string());
    if let Limit::Time(d) = limit {
        pb.set_prefix(format!("{:.0}", d.as_secs_f64()));
    }
    pb.set_style(
        ProgressStyle::with_template(template)
            .expect("a valid template")
            .progress_chars("=> "),
    );
    pb
}

/// Runs the workload through `engine`, showing progress.
fn run_engine(
    cfg: &Config,
    engine: &dyn Engine,
    model: &Model,
    name: &str,
) -> Result<RunStats, String> {
    let limit = limit(&cfg.cli);
    let pb = bar(limit, name);
    let stats = engine::run(
        engine,
        model,
        &cfg.shape,
        cfg.cli.op_size,
        limit,
        &mut |ops, t| {
            pb.set_position(match limit {
                Limit::Time(_) => t.as_millis() as u64,
                Limit::Ops(_) => ops,
            });
        },
    )?;
    pb.finish_and_clear();
    Ok(stats)
}

fn limit(cli: &Cli) -> Limit {
    match cli.ops {
        Some(n) => Limit::Ops(n),
        None => Limit::Time(cli.duration),
    }
}

/// Flips one byte in the middle of the file at `path`.
fn corrupt(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let at = f.metadata().map_err(|e| e.to_string())?.len() / 2;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).map_err(|e| e.to_string())?;
    b[0] ^= 0xff;
    f.write_all_at(&b, at).map_err(|e| e.to_string())?;
    f.sync_all().map_err(|e| e.to_string())
}

/// How the close (or the baseline's sync) went.
struct Closed {
    /// Its time, seconds.
    seconds: f64,
    /// Pages it could not write.
    lost_writes: u64,
    /// Its error.
    error: Option<String>,
}

fn engine_report(
    name: &'static str,
    path: &Path,
    op_size: usize,
    st: RunStats,
    cache: Option<Counters>,
    closed: Closed,
    verify: Verified,
) -> EngineReport {
    let Closed {
        seconds: close_seconds,
        lost_writes,
        error: close_error,
    } = closed;
    let secs = st.elapsed.as_secs_f64().max(1e-9);
    let ops = st.reads + st.writes;
    let hit_ratio = cache.and_then(|c| {
        let lookups = c.hits + c.misses;
        (lookups > 0).then(|| c.hits as f64 / lookups as f64)
    });
    let first_error = st.first_error.or(close_error);
    let passed = first_error.is_none()
        && st.bad_reads == 0
        && st.failed_reads == 0
        && st.failed_writes == 0
        && lost_writes == 0
        && verify.bytes_differing == 0;
    EngineReport {
        engine: name,
        path: path.display().to_string(),
        ops,
        reads: st.reads,
        writes: st.writes,
        seconds: secs,
        ops_per_sec: ops as f64 / secs,
        mb_per_sec: (ops * op_size as u64) as f64 / secs / 1e6,
        hit_ratio,
        cache,
        read_latency: Latency::of(&st.read_ns),
        write_latency: Latency::of(&st.write_ns),
        close_seconds,
        overlapped_reads: st.overlapped_reads,
        bad_reads: st.bad_reads,
        failed_reads: st.failed_reads,
        failed_writes: st.failed_writes,
        lost_writes,
        verify,
        first_error,
        passed,
    }
}

/// The page cache engine: open, run, close, verify.
fn run_cache(cfg: &Config, path: &Path) -> Result<EngineReport, String> {
    let pool = make_pool(cfg.pool_frames, &cfg.cli.policy)?;
    let store = FileStore::open_or_create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let map = PageMap::try_new(Arc::clone(&pool), Arc::new(store))
        .map_err(|e| format!("opening the page map over {}: {e}", path.display()))?;
    // A one-frame pool has no watermarks 0 < low < high <= 1: it runs on
    // direct reclaim alone (break12: `--pool 1` died with exit 1).
    let kswapd = (!cfg.cli.no_background_reclaim && pool.capacity() >= 2)
        .then(|| {
            let marks = pagemap::Watermarks::for_capacity(pool.capacity());
            pagemap::Reclaimer::start(Arc::clone(&pool), marks)
        })
        .transpose()
        .map_err(|e| format!("starting the background reclaimer: {e}"))?;
    let engine = CacheEngine { map };
    let model = Model::new(cfg.pages);
    let c0 = cache_counters(&engine.map, &pool);
    let st = run_engine(cfg, &engine, &model, "pagecache")?;
    let c1 = cache_counters(&engine.map, &pool);
    let counters = Counters {
        hits: c1.hits - c0.hits,
        misses: c1.misses - c0.misses,
        evictions_clean: c1.evictions_clean - c0.evictions_clean,
        evictions_dirty: c1.evictions_dirty - c0.evictions_dirty,
        store_reads: c1.store_reads - c0.store_reads,
        store_writes: c1.store_writes - c0.store_writes,
        direct_reclaims: c1.direct_reclaims - c0.direct_reclaims,
        reclaimed: c1.reclaimed - c0.reclaimed,
    };
    drop(kswapd);
    let map = engine.map;
    let t = Instant::now();
    let (lost, close_error) = match map.close() {
        Ok(()) => (0, None),
        Err(e) => (e.lost.len() as u64, Some(e.to_string())),
    };
    let close_seconds = t.elapsed().as_secs_f64();
    if cfg.cli.inject_corruption {
        corrupt(path)?;
    }
    let verify = verify_file(path, cfg.cli.seed, &model.final_versions(), cfg.cli.op_size)
        .map_err(|e| format!("verifying {}: {e}", path.display()))?;
    Ok(engine_report(
        "pagecache",
        path,
        cfg.cli.op_size,
        st,
        Some(counters),
        Closed {
            seconds: close_seconds,
            lost_writes: lost,
            error: close_error,
        },
        verify,
    ))
}

/// The anonymous-memory workload once: fill, run, read every page back.
fn run_anon(cfg: &Config, serialized: bool) -> Result<EngineReport, String> {
    let name = if serialized {
        "paging, one mutex"
    } else {
        "paging"
    };
    let cli = &cfg.cli;
    let engine = anon::AnonEngine::new(
        &cfg.dir,
        cli.file_size,
        cfg.pool_frames,
        &cli.policy,
        usize::from(cli.threads),
        serialized,
    )?;
    status(&format!(
        "{name}: filling {} MiB of anonymous memory over {} frames ...",
        cli.file_size >> 20,
        cfg.pool_frames
    ));
    engine.fill(cli.seed, cfg.pages)?;
    let model = Model::new(cfg.pages);
    let c0 = engine.counters();
    let st = run_engine(cfg, &engine, &model, name)?;
    let counters = anon::delta(c0, engine.counters());
    let t = Instant::now();
    let mut read = |page: u64, buf: &mut [u8; PAGE_SIZE]| engine.read(page * PAGE_SIZE as u64, buf);
    let versions = model.final_versions();
    let verify = model::verify_pages(cli.seed, &versions, cli.op_size, &mut read)?;
    let path = format!("anonymous memory, swap file in {}", cfg.dir.display());
    Ok(engine_report(
        name,
        Path::new(&path),
        cli.op_size,
        st,
        Some(counters),
        Closed {
            seconds: anon::since(t),
            lost_writes: 0,
            error: None,
        },
        verify,
    ))
}

/// The baseline engine: the same workload through pread/pwrite.
fn run_pread(cfg: &Config, path: &Path) -> Result<EngineReport, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let engine = PreadEngine { file };
    let model = Model::new(cfg.pages);
    let st = run_engine(cfg, &engine, &model, "pread")?;
    let t = Instant::now();
    let close_error = engine
        .file
        .sync_data()
        .err()
        .map(|e| format!("fdatasync {}: {e}", path.display()));
    drop(engine);
    let close_seconds = t.elapsed().as_secs_f64();
    let verify = verify_file(path, cfg.cli.seed, &model.final_versions(), cfg.cli.op_size)
        .map_err(|e| format!("verifying {}: {e}", path.display()))?;
    Ok(engine_report(
        "pread/pwrite",
        path,
        cfg.cli.op_size,
        st,
        None,
        Closed {
            seconds: close_seconds,
            lost_writes: 0,
            error: close_error,
        },
        verify,
    ))
}

fn status(msg: &str) {
    if std::io::stderr().is_terminal() {
        eprintln!("{msg}");
    }
}

fn run(cfg: &Config) -> Result<Report, String> {
    let wall = Instant::now();
    if cfg.cli.anon {
        let ours = run_anon(cfg, false)?;
        let mutex = run_anon(cfg, true)?;
        return Ok(report(cfg, wall, ours, mutex));
    }
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let base = format!("pagecache-{}-{stamp}", std::process::id());
    let files = Files {
        cache: cfg.dir.join(format!("{base}.cache.db")),
        pread: cfg.dir.join(format!("{base}.pread.db")),
        keep: cfg.cli.keep,
    };
    status(&format!(
        "writing two {} MiB files in {} ...",
        cfg.cli.file_size >> 20,
        cfg.dir.display()
    ));
    write_initial(&files.cache, cfg.cli.seed, cfg.pages)
        .map_err(|e| format!("writing {}: {e}", files.cache.display()))?;
    std::fs::copy(&files.cache, &files.pread)
        .map_err(|e| format!("copying to {}: {e}", files.pread.display()))?;
    let cache = run_cache(cfg, &files.cache)?;
    let pread = run_pread(cfg, &files.pread)?;
    Ok(report(cfg, wall, cache, pread))
}

/// The report of two engines' runs (ours first, the baseline second).
fn report(cfg: &Config, wall: Instant, cache: EngineReport, pread: EngineReport) -> Report {
    let cli = &cfg.cli;
    let throughput_ratio = cache.ops_per_sec / pread.ops_per_sec.max(1e-9);
    let passed = cache.passed && pread.passed;
    Report {
        workload: if cli.anon { "anonymous" } else { "file" },
        file_size_bytes: cli.file_size,
        pages: cfg.pages,
        pool_frames: cfg.pool_frames,
        policy: cli.policy.clone(),
        threads: cli.threads,
        op_size_bytes: cli.op_size,
        read_ratio: cli.read_ratio,
        dist: cli.dist,
        theta: (cli.dist == Dist::Zipf).then_some(cli.theta),
        seed: cli.seed,
        limit: match limit(cli) {
            Limit::Ops(n) => format!("{n} ops"),
            Limit::Time(d) => format!("{:.1} s", d.as_secs_f64()),
        },
        engines: vec![cache, pread],
        throughput_ratio,
        wall_seconds: wall.elapsed().as_secs_f64(),
        passed,
    }
}

/// The report as a table, one column per engine.
fn table(r: &Report) -> String {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |label: &str, f: &dyn Fn(&EngineReport) -> String| {
        rows.push((label.to_string(), r.engines.iter().map(f).collect()));
    };
    row("ops/s", &|e| format!("{:.0}", e.ops_per_sec));
    row("MB/s", &|e| format!("{:.1}", e.mb_per_sec));
    row("ops (reads / writes)", &|e| {
        format!("{} ({} / {})", e.ops, e.reads, e.writes)
    });
    let anon = r.workload == "anonymous";
    row(
        if anon {
            "faults without I/O"
        } else {
            "hit ratio"
        },
        &|e| {
            e.hit_ratio
                .map_or("-".into(), |h| format!("{:.2}%", h * 100.0))
        },
    );
    row(
        if anon {
            "page-outs clean / dirty"
        } else {
            "evictions clean / dirty"
        },
        &|e| {
            e.cache.map_or("-".into(), |c| {
                format!("{} / {}", c.evictions_clean, c.evictions_dirty)
            })
        },
    );
    row(
        if anon {
            "swap reads / writes"
        } else {
            "store reads / writes"
        },
        &|e| {
            e.cache.map_or("-".into(), |c| {
                format!("{} / {}", c.store_reads, c.store_writes)
            })
        },
    );
    row("direct reclaims / frames reclaimed", &|e| {
        e.cache.map_or("-".into(), |c| {
            format!("{} / {}", c.direct_reclaims, c.reclaimed)
        })
    });
    let lat = |l: &Latency| format!("{:.1} / {:.1} / {:.1}", l.p50_us, l.p99_us, l.p999_us);
    row("read p50/p99/p999 us", &|e| lat(&e.read_latency));
    row("write p50/p99/p999 us", &|e| lat(&e.write_latency));
    row(
        if anon {
            "read-back s"
        } else {
            "close (writeback, sync) s"
        },
        &|e| format!("{:.2}", e.close_seconds),
    );
    row("bytes checked", &|e| e.verify.bytes_checked.to_string());
    row("bytes differing", &|e| e.verify.bytes_differing.to_string());
    row("reads checked (overlapped)", &|e| {
        format!("{} ({})", e.reads, e.overlapped_reads)
    });
    row("bad / failed reads", &|e| {
        format!("{} / {}", e.bad_reads, e.failed_reads)
    });
    row("failed / lost writes", &|e| {
        format!("{} / {}", e.failed_writes, e.lost_writes)
    });
    row("verification", &|e| {
        if e.passed { "ok" } else { "FAILED" }.into()
    });

    let w0 = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..r.engines.len())
        .map(|i| {
            rows.iter()
                .map(|(_, v)| v[i].len())
                .chain([r.engines[i].engine.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |out: &mut String, label: &str, cells: &[String]| {
        out.push_str(&format!("{label:<w0$}"));
        for (c, w) in cells.iter().zip(&widths) {
            out.push_str(&format!(" | {c:>w$}"));
        }
        out.push('\n');
    };
    let names: Vec<String> = r.engines.iter().map(|e| e.engine.to_string()).collect();
    line(&mut out, "", &names);
    out.push_str(&"-".repeat(w0 + widths.iter().map(|w| w + 3).sum::<usize>()));
    out.push('\n');
    for (l, v) in &rows {
        line(&mut out, l, v);
    }
    out
}

fn print_report(r: &Report) {
    println!(
        "pagecache: {} MiB {} ({} pages), pool {} frames ({:.1}%), policy {}, {} threads, {} B ops, {:.0}% reads, {:?}{}, seed {}, {} per engine",
        r.file_size_bytes >> 20,
        if r.workload == "file" { "file" } else { "of anonymous memory, swapped to a file" },
        r.pages,
        r.pool_frames,
        r.pool_frames as f64 * 100.0 / r.pages as f64,
        r.policy,
        r.threads,
        r.op_size_bytes,
        r.read_ratio * 100.0,
        r.dist,
        r.theta.map_or(String::new(), |t| format!(" theta {t}")),
        r.seed,
        r.limit,
    );
    println!();
    print!("{}", table(r));
    println!();
    println!(
        "throughput {} / {}: {:.2}x; wall time {:.1} s",
        r.engines[0].engine, r.engines[1].engine, r.throughput_ratio, r.wall_seconds
    );
    for e in &r.engines {
        if let Some(err) = &e.first_error {
            println!("{}: first error: {err}", e.engine);
        }
        if let Some(at) = e.verify.first_difference {
            println!(
                "{}: {} bytes differ in {} pages, the first at byte {at}",
                e.engine, e.verify.bytes_differing, e.verify.pages_differing
            );
        }
    }
    println!("{}", if r.passed { "PASSED" } else { "FAILED" });
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match validate(cli) {
        Ok(c) => c,
        Err(msg) => Cli::command()
            .error(clap::error::ErrorKind::ValueValidation, msg)
            .exit(),
    };
    match run(&cfg) {
        Ok(report) => {
            if cfg.cli.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("pagecache: error: the JSON report: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print_report(&report);
            }
            if report.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("pagecache: error: {e}");
            ExitCode::FAILURE
        }
    }
}
