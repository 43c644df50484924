//! Issue 13: demand paging of anonymous memory under pressure, with
//! concurrent page-ins and page-outs (no global lock) against the same
//! paths serialised behind one mutex held across the I/O
//! (`Swap::set_serialized(true)`: the Zephyr seed's `z_mm_paging_lock`),
//! both in the same run, on the same machine.
//!
//! The rig: a `FramePool` of `FRAMES` frames (default policy, S3-FIFO), a
//! `Machine::with_swap` of two CPUs, and one private anonymous mapping of
//! `PAGES` pages (4x the pool, 16 MiB), every page written in full before
//! timing (so three quarters of it starts in swap). A touch reads or writes
//! (even odds) the 8 bytes of one word of a uniformly random page; a write
//! stores the word's own value again, so every read can check its bytes.
//! A touch of a paged-out page faults and pages it in; its frame comes from
//! direct reclaim, which pages victims out in the faulting thread.
//!
//! Both threads touch the same address space (thread `t` through CPU `t`):
//! the case of one process whose threads fault at once, and the
//! harder one, since the faults share the space's page table and locks.
//! (One space each would share only the pool, the policy and the swap.)
//!
//! Stores: `mem50us`, a `MemSwap` sleeping 50 us per page I/O (outside its
//! locks, as a device with a queue; the bench's threads set their timer
//! slack to 1 ns, else Linux's default 50 us slack made each sleep about
//! 120 us; about 67 us remain, the VM's wake-up); `file`, a real `FileSwap`
//! in `$VMR_BENCH_DIR` (default: the temp dir): `pread`/`pwrite` through
//! the kernel's page cache, so an I/O is a copy and a system call, not a
//! disk access, and the case is bound by CPU.
//!
//! * `paging/<store>_<n>t/{ours,serialized}`: criterion, one iteration =
//!   one touch of the machine (`n` threads share each batch evenly).
//! * After criterion, `ROUNDS` rounds in which the eight cases take turns
//!   (a burst of outside load hits one round of each alike): the table
//!   gives the median throughput of the rounds, ours / serialized, and
//!   page-in latency: the store's read (`Swap::histograms().page_in_ns`,
//!   the `read_in` I/O alone) and end-to-end (a touch whose page table
//!   entry was a swap entry just before it, timed around the touch: the
//!   fault, any reclaim it did, the page-in, the map and a second fault
//!   for a write), the faulting threads' direct-reclaim rounds, and the
//!   process's CPU time per touch. Each round also times pure CPU work on
//!   one and two threads: what the machine, shared with other builds, gives
//!   a perfectly parallel load at that moment (the `file` case needs two
//!   free CPUs to scale). Printed and written to `benches/results/paging.md`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use benches::removal::median_ns;
use benches::SplitMix64;
use criterion::{Criterion, SamplingMode};
use hdrhistogram::Histogram;
use pagemap::swap::{FileSwap, MemSwap, Swap, SwapStats, SwapStore};
use pagemap::{FramePool, PAGE_SIZE};
use vmr::{pte, AddressSpace, Machine, MapFlags, Prot};

const PAGE: u64 = PAGE_SIZE as u64;
/// Frames of the pool (4 MiB).
const FRAMES: usize = 1024;
/// Pages of the mapping: 4x the pool.
const PAGES: u64 = 4 * FRAMES as u64;
/// Swap slots: every page, and slack for the clean copies kept in swap.
const SLOTS: u32 = 2 * PAGES as u32;
/// The latency store's time per page I/O.
const LATENCY: Duration = Duration::from_micros(50);
/// 8-byte words of a page.
const WORDS: u64 = PAGE / 8;
/// Criterion samples per case (flat sampling).
const SAMPLES: usize = 10;
/// Rounds of the interleaved comparison.
const ROUNDS: usize = 7;
/// The thread counts measured.
const THREADS: [usize; 2] = [1, 2];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Mem,
    File,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Mem => "mem50us",
            Kind::File => "file",
        }
    }

    /// Touches of one interleaved run: about a second of the slowest case.
    fn touches(self) -> u64 {
        match self {
            Kind::Mem => 8 << 10,
            Kind::File => 256 << 10,
        }
    }
}

const KINDS: [Kind; 2] = [Kind::Mem, Kind::File];
const MODES: [(&str, bool); 2] = [("ours", false), ("serialized", true)];

/// The value of word `w` of page `p`: every word differs, so a wrong page
/// or a lost write is seen.
fn word(p: u64, w: u64) -> u64 {
    (p * WORDS + w + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Makes the calling thread's sleeps end when asked: Linux's default timer
/// slack (50 us) turned `MemSwap`'s 50 us sleep into about 120 us.
fn precise_sleeps() {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and affects only the
    // calling thread.
    let r = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
    assert_eq!(r, 0, "prctl(PR_SET_TIMERSLACK)");
}

/// User + system CPU time of the whole process so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    let r = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    assert_eq!(r, 0, "getrusage");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn swap_dir() -> PathBuf {
    std::env::var_os("VMR_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from)
}

/// A machine with swap and one space whose mapping was written in full.
struct Rig {
    kind: Kind,
    machine: Arc<Machine>,
    space: Arc<AddressSpace>,
    va: u64,
}

/// What one run did: its wall time, its touches, and the end-to-end time
/// of each touch that found a swap entry.
struct Run {
    wall: Duration,
    touches: u64,
    page_in_e2e: Histogram<u64>,
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

impl Rig {
    fn new(kind: Kind) -> Self {
        let pool = Arc::new(FramePool::new(FRAMES).expect("pool"));
        let store: Arc<dyn SwapStore> = match kind {
            Kind::Mem => Arc::new(MemSwap::new(SLOTS).with_latency(LATENCY)),
            Kind::File => Arc::new(FileSwap::temp(swap_dir(), SLOTS).expect("swap file")),
        };
        let machine = Machine::with_swap(pool, THREADS[1], store).expect("machine");
        let space = AddressSpace::new(machine.clone());
        let va = space
            .mmap_anonymous(None, PAGES * PAGE, Prot::RW, MapFlags::PRIVATE)
            .expect("mmap_anonymous");
        let mut page = [0u8; PAGE_SIZE];
        for p in 0..PAGES {
            for (w, b) in page.chunks_exact_mut(8).enumerate() {
                b.copy_from_slice(&word(p, w as u64).to_le_bytes());
            }
            machine
                .cpu(0)
                .write(&space, va + p * PAGE, &page)
                .expect("pre-touch");
        }
        let rig = Self {
            kind,
            machine,
            space,
            va,
        };
        assert!(rig.swap().stats().page_outs >= PAGES - FRAMES as u64);
        rig
    }

    fn swap(&self) -> &Arc<Swap> {
        self.machine.swap().expect("swap")
    }

    /// `touches` touches split evenly over `threads` threads (CPU `t` each),
    /// released together; the draws of thread `t` come from `seed + t`.
    fn run(&self, threads: usize, touches: u64, seed: u64) -> Run {
        let barrier = Barrier::new(threads);
        let per = touches / threads as u64;
        let spans: Vec<(Instant, Instant, Histogram<u64>)> = std::thread::scope(|sc| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let barrier = &barrier;
                    sc.spawn(move || {
                        precise_sleeps();
                        let mut h = hist();
                        let mut rng = SplitMix64(seed.wrapping_add(t as u64));
                        barrier.wait();
                        let start = Instant::now();
                        for _ in 0..per {
                            self.touch(t, &mut rng, &mut h);
                        }
                        (start, Instant::now(), h)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("touch thread"))
                .collect()
        });
        let start = spans.iter().map(|s| s.0).min().expect("threads");
        let end = spans.iter().map(|s| s.1).max().expect("threads");
        let mut page_in_e2e = hist();
        for s in &spans {
            page_in_e2e.add(&s.2).expect("same bounds");
        }
        Run {
            wall: end - start,
            touches: per * threads as u64,
            page_in_e2e,
        }
    }

    /// One touch by CPU `cpu`; a touch of a swapped-out page is timed into
    /// `h`.
    #[inline]
    fn touch(&self, cpu: usize, rng: &mut SplitMix64, h: &mut Histogram<u64>) {
        let r = rng.next_u64();
        let (p, w, write) = (r % PAGES, (r >> 32) % WORDS, r >> 63 == 1);
        let va = self.va + p * PAGE + w * 8;
        let want = word(p, w).to_le_bytes();
        let cpu = self.machine.cpu(cpu);
        let swapped = pte::swap_location(self.space.pte(va)).is_some();
        let t = swapped.then(Instant::now);
        if write {
            cpu.write(&self.space, va, &want).expect("write touch");
        } else {
            let mut got = [0u8; 8];
            cpu.read(&self.space, va, &mut got).expect("read touch");
            assert_eq!(got, want, "page {p} word {w}");
        }
        if let Some(t) = t {
            h.saturating_record(t.elapsed().as_nanos() as u64);
        }
    }
}

/// One case's results in one round: throughput (touches/s), the store's
/// page-in histogram and the end-to-end one, the swap counters' change.
struct Measured {
    rate: f64,
    /// CPU time of the process over wall time: how many CPUs were busy.
    busy: f64,
    /// CPU time of the process per touch.
    cpu_per_touch: Duration,
    touches: u64,
    store_in: Histogram<u64>,
    e2e: Histogram<u64>,
    /// Direct-reclaim rounds of faulting threads (`PoolStats::reclaim_ns`).
    reclaim: Histogram<u64>,
    stats: SwapStats,
}

/// Runs `touches` touches on `rig` in `serialized` mode and measures them.
fn measure(rig: &Rig, threads: usize, serialized: bool, touches: u64, seed: u64) -> Measured {
    let swap = rig.swap();
    swap.set_serialized(serialized);
    let pool = rig.machine.pool();
    let (h0, r0, s0) = (
        swap.histograms().page_in_ns,
        pool.stats().reclaim_ns,
        swap.stats(),
    );
    let cpu0 = cpu_time();
    let run = rig.run(threads, touches, seed);
    let cpu = cpu_time() - cpu0;
    let (mut store_in, mut reclaim, s1) = (
        swap.histograms().page_in_ns,
        pool.stats().reclaim_ns,
        swap.stats(),
    );
    store_in.subtract(&h0).expect("a later snapshot");
    reclaim.subtract(&r0).expect("a later snapshot");
    Measured {
        rate: run.touches as f64 / run.wall.as_secs_f64(),
        busy: cpu.as_secs_f64() / run.wall.as_secs_f64(),
        cpu_per_touch: cpu / run.touches.max(1) as u32,
        touches: run.touches,
        store_in,
        e2e: run.page_in_e2e,
        reclaim,
        stats: SwapStats {
            page_ins: s1.page_ins - s0.page_ins,
            page_outs: s1.page_outs - s0.page_outs,
            ..s1
        },
    }
}

/// (case) -> `(iterations, time)` of each `iter_custom` call.
type Log = Vec<(String, Vec<(u64, Duration)>)>;

static LOG: Mutex<Log> = Mutex::new(Vec::new());

fn log(key: &str, iters: u64, d: Duration) {
    let mut all = LOG.lock().unwrap_or_else(|e| e.into_inner());
    match all.iter_mut().find(|(k, _)| k == key) {
        Some((_, runs)) => runs.push((iters, d)),
        None => all.push((key.to_string(), vec![(iters, d)])),
    }
}

fn case_key(kind: Kind, threads: usize, mode: &str) -> String {
    format!("{}_{threads}t/{mode}", kind.name())
}

fn bench(c: &mut Criterion, rigs: &[Rig]) {
    for rig in rigs {
        for threads in THREADS {
            let mut g = c.benchmark_group(format!("paging/{}_{threads}t", rig.kind.name()));
            // A touch that faults takes tens of microseconds: flat sampling
            // keeps every sample the same size.
            g.sampling_mode(SamplingMode::Flat);
            g.sample_size(SAMPLES);
            g.warm_up_time(Duration::from_millis(500));
            g.measurement_time(Duration::from_secs(2));
            for (mode, serialized) in MODES {
                let key = case_key(rig.kind, threads, mode);
                // Not the draws of the other mode (see `interleaved`).
                let mut seed = 0x5eed_0013 + (u64::from(serialized) << 32);
                g.bench_function(mode, |b| {
                    b.iter_custom(|iters| {
                        rig.swap().set_serialized(serialized);
                        // Whole touches on every thread.
                        let iters = iters.max(threads as u64);
                        seed += 101;
                        let r = rig.run(threads, iters, seed);
                        // Per touch of the machine: wall time over all of
                        // the threads' touches.
                        let d = r.wall.mul_f64(iters as f64 / r.touches as f64);
                        log(&key, iters, d);
                        d
                    })
                });
            }
            g.finish();
        }
    }
    for rig in rigs {
        rig.swap().set_serialized(false);
    }
}

/// Pure CPU work on `threads` threads at once (no memory, no locks): the
/// wall time of `SPIN` steps each. Its 2-thread / 1-thread speed-up is what
/// the machine gives a perfectly parallel load now (other builds share it).
fn spin(threads: usize) -> Duration {
    const SPIN: u64 = 20_000_000;
    let barrier = Barrier::new(threads);
    let start = Instant::now();
    std::thread::scope(|sc| {
        for t in 0..threads {
            let barrier = &barrier;
            sc.spawn(move || {
                barrier.wait();
                let mut r = SplitMix64(t as u64);
                let mut x = 0u64;
                for _ in 0..SPIN {
                    x ^= r.next_u64();
                }
                std::hint::black_box(x);
            });
        }
    });
    start.elapsed()
}

/// The interleaved measurements: per case in report order, each round's;
/// and each round's speed-up of pure CPU work at 2 threads.
struct Rounds {
    cases: Vec<(String, Vec<Measured>)>,
    spin_speedup: Vec<f64>,
}

/// After criterion: `ROUNDS` rounds in which the eight cases (and the CPU
/// control) take turns.
fn interleaved(rigs: &[Rig], rounds: usize) -> Rounds {
    let mut out: Vec<(String, Vec<Measured>)> = Vec::new();
    let mut spin_speedup = Vec::new();
    for round in 0..rounds {
        // Twice the work on two threads: the speed-up is 2 when both CPUs
        // are ours.
        let one = spin(1);
        spin_speedup.push(2.0 * one.as_secs_f64() / spin(2).as_secs_f64());
        for rig in rigs {
            for threads in THREADS {
                for (mode, serialized) in MODES {
                    // Each case its own draws: a case repeating the pages
                    // the previous one just touched would find them resident.
                    let seed = 0xface_0000
                        + 1000 * round as u64
                        + 10 * threads as u64
                        + u64::from(serialized);
                    // The smoke test (a debug build) only checks the path.
                    let n = rig.kind.touches() / if measuring() { 1 } else { 64 };
                    let m = measure(rig, threads, serialized, n, seed);
                    let key = case_key(rig.kind, threads, mode);
                    match out.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, v)) => v.push(m),
                        None => out.push((key, vec![m])),
                    }
                }
            }
        }
    }
    for rig in rigs {
        rig.swap().set_serialized(false);
    }
    Rounds {
        cases: out,
        spin_speedup,
    }
}

/// The first line of `cmd`'s output starting with `key`, after the colon.
fn command_field(cmd: &str, key: &str) -> Option<String> {
    let out = std::process::Command::new(cmd).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.trim_start().starts_with(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
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

fn fs_type(dir: &std::path::Path) -> String {
    std::process::Command::new("df")
        .args(["--output=fstype"])
        .arg(dir)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .nth(1)
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn us(h: &Histogram<u64>, q: f64) -> String {
    if h.is_empty() {
        "-".into()
    } else {
        format!("{:.0}", h.value_at_quantile(q) as f64 / 1e3)
    }
}

fn report(load_before: &str, all: &Rounds) -> String {
    let rounds = &all.cases;
    let log = LOG.lock().unwrap_or_else(|e| e.into_inner());
    // Criterion's median time per touch, as touches/s.
    let crit = |key: &str| {
        log.iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, r)| median_ns(r, SAMPLES))
            .map(|ns| 1e9 / ns)
    };
    let inter = |key: &str| {
        rounds
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| median(v.iter().map(|m| m.rate).collect()))
    };
    let rate = |x: Option<f64>| x.map_or("-".into(), |r| format!("{r:.0}"));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x", a / b),
        _ => "-".into(),
    };
    let dir = swap_dir();
    let mut s = String::new();
    let _ = writeln!(s, "# demand paging under pressure (issue 13)\n");
    let _ = writeln!(
        s,
        "CPU: {} ({} CPUs online); date: {}; load average (1, 5, 15 min) before: {}, after: {} \
         (other builds may share the machine). Swap file in {} ({}).\n",
        command_field("lscpu", "Model name").unwrap_or_else(|| "unknown".into()),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        today(),
        load_before,
        loadavg(),
        dir.display(),
        fs_type(&dir),
    );
    let _ = writeln!(
        s,
        "Pool of {FRAMES} frames (S3-FIFO), one private anonymous mapping of {PAGES} pages \
         (4x the pool, 16 MiB) in one address space, written in full first. A touch reads or \
         writes (even odds) 8 bytes at a uniformly random page; 1 or 2 threads, each its own \
         CPU, same space. `ours`: concurrent paging; `serialized`: the same with \
         `Swap::set_serialized(true)` (one mutex across every page-in and page-out, I/O \
         included: the Zephyr seed's `z_mm_paging_lock`). Stores: `mem50us` = `MemSwap` \
         sleeping {} us per page I/O (threads' timer slack 1 ns; what a sleep really took is the \
         `store` column below); `file` = `FileSwap` (pread/pwrite, kernel page cache). \
         Throughput in touches/s: criterion's median of {SAMPLES} samples, and the median of \
         {ROUNDS} interleaved rounds ({} touches per run on mem50us, {} on file).\n",
        LATENCY.as_micros(),
        Kind::Mem.touches(),
        Kind::File.touches(),
    );
    let _ = writeln!(
        s,
        "| store | threads | ours (crit) | serialized (crit) | ours / serialized (crit) \
         | ours (interleaved) | serialized (interleaved) | ours / serialized (interleaved) |"
    );
    let _ = writeln!(
        s,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for kind in KINDS {
        for threads in THREADS {
            let (o, z) = (
                case_key(kind, threads, "ours"),
                case_key(kind, threads, "serialized"),
            );
            let _ = writeln!(
                s,
                "| {} | {threads} | {} | {} | {} | {} | {} | {} |",
                kind.name(),
                rate(crit(&o)),
                rate(crit(&z)),
                ratio(crit(&o), crit(&z)),
                rate(inter(&o)),
                rate(inter(&z)),
                ratio(inter(&o), inter(&z)),
            );
        }
    }
    if !all.spin_speedup.is_empty() {
        let _ = writeln!(
            s,
            "\nControl: pure CPU work (no memory, no locks) on 2 threads ran {:.2}x as fast as \
             on 1 (median of the rounds, each run beside them; 2.00 = both CPUs ours). Ours, 2 \
             threads / 1 (interleaved): mem50us {}, file {}.",
            median(all.spin_speedup.clone()),
            ratio(
                inter(&case_key(Kind::Mem, 2, "ours")),
                inter(&case_key(Kind::Mem, 1, "ours"))
            ),
            ratio(
                inter(&case_key(Kind::File, 2, "ours")),
                inter(&case_key(Kind::File, 1, "ours"))
            ),
        );
    }
    let _ = writeln!(
        s,
        "\nPage-in latency over all interleaved rounds, in us: `store` = the store's read \
         (`Swap::histograms().page_in_ns`), `end-to-end` = a touch whose entry was a swap \
         entry just before it (fault, reclaim it did, page-in, map, a write's second fault); \
         `reclaim round` = one direct-reclaim round of a faulting thread \
         (`PoolStats::reclaim_ns`: up to 32 victims, the dirty ones written to swap one after \
         another). Per touch: page-ins, and page-outs (writes of dirty victims). `CPUs busy`: the \
         process's user + system CPU time over the wall time, and per touch (medians of \
         the rounds).\n"
    );
    let _ = writeln!(
        s,
        "| case | store p50 | store p99 | end-to-end p50 | end-to-end p99 | reclaim round p50 \
         | reclaim round p99 | page-ins / touch | page-outs / touch | CPUs busy \
         | CPU us / touch |"
    );
    let _ = writeln!(s, "| --- |{}", " ---: |".repeat(10));
    for (key, runs) in rounds {
        let (mut store_in, mut e2e, mut reclaim) = (hist(), hist(), hist());
        let (mut ins, mut outs, mut touches) = (0, 0, 0);
        for m in runs {
            store_in.add(&m.store_in).expect("same bounds");
            e2e.add(&m.e2e).expect("same bounds");
            reclaim.add(&m.reclaim).expect("same bounds");
            ins += m.stats.page_ins;
            outs += m.stats.page_outs;
            touches += m.touches;
        }
        let n = touches.max(1) as f64;
        let _ = writeln!(
            s,
            "| {key} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            us(&store_in, 0.5),
            us(&store_in, 0.99),
            us(&e2e, 0.5),
            us(&e2e, 0.99),
            us(&reclaim, 0.5),
            us(&reclaim, 0.99),
            ins as f64 / n,
            outs as f64 / n,
            median(runs.iter().map(|m| m.busy).collect()),
            median(
                runs.iter()
                    .map(|m| m.cpu_per_touch.as_secs_f64() * 1e6)
                    .collect()
            ),
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
    let load_before = loadavg();
    // The pre-touch pages out on this thread.
    precise_sleeps();
    let rigs: Vec<Rig> = KINDS.into_iter().map(Rig::new).collect();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &rigs);
    c.final_summary();
    // A filtered run (profiling one case) skips the rounds, which would
    // run every case; the smoke test runs one round.
    let filtered = std::env::args().skip(1).any(|a| !a.starts_with('-'));
    let rounds = match (measuring(), filtered) {
        (true, false) => ROUNDS,
        (true, true) => 0,
        (false, _) => 1,
    };
    let rounds = interleaved(&rigs, rounds);
    let table = report(&load_before, &rounds);
    eprintln!("\n{table}");
    if measuring() && !filtered {
        let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results/paging.md");
        std::fs::write(&out, &table).expect("write results/paging.md");
        eprintln!("written to {}", out.display());
    }
}
