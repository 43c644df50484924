//! Issue 4: removal of mapped pages, writeback, lookups during removal.
//! See `benches/src/removal.rs` for the fixtures.
//!
//! * `remove_{K}p_{M}vmr_{P}as`: remove K cached pages mapped by M regions
//!   spread over P address spaces (every PTE present, faulted in by CPUs):
//!   `pagemap` is `PageMap::remove` (one shootdown per address space),
//!   `per_page_shootdowns` the same protocol with one shootdown per page per
//!   mapping (`Batching::PerPage`). Shootdown counts are checked every run.
//! * `writeback_{N}p`: write back N dirty pages of a page map over a real
//!   file (`pagemap`; `pagemap_mapped`: dirtied by CPU writes through a
//!   shared mapping, so writeback first harvests and cleans the PTEs and
//!   shoots down) against N 4 KiB `pwrite`s to another file (`raw_pwrite`).
//!   No fsync in any.
//! * `lookup_during_remove`: find+put of random resident pages of a 64K-page
//!   map on one thread, `alone`, with a second thread removing and
//!   reloading 512-page slices of the same map (`remover_same_map`), or of
//!   another map (`remover_other_map`, a control for sharing 2 cores).
//!
//! The state is rebuilt outside the timed part of every iteration. At the
//! end the bench prints its own ratio tables (medians of criterion's
//! samples, recorded here).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use benches::removal::{
    bench_dir, median_ns, Background, LookupBench, LookupTally, MappedFile, RawWriter,
    WritebackFile, LOOKUP_PAGES, PAGE, REMOVE_SLICE,
};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use pagemap::Batching;

/// Pages removed per removal.
const KS: [u64; 4] = [1, 32, 512, 4096];
/// (regions, address spaces).
const GRID: [(usize, usize); 3] = [(1, 1), (4, 2), (8, 8)];
/// Dirty pages per writeback.
const NS: [u64; 2] = [256, 4096];
/// Criterion samples per benchmark (the last calls of `iter_custom`).
const SAMPLES: usize = 10;
/// Samples of the lookup benchmarks (cheap, noisier: more of them).
const LOOKUP_SAMPLES: usize = 20;

/// Everything measured, for the tables at the end: (group, function) ->
/// `(iterations, time)` of each `iter_custom` call, and notes.
#[derive(Default)]
struct Log {
    runs: BTreeMap<(String, String), Vec<(u64, Duration)>>,
    notes: BTreeMap<(String, String), String>,
}

static LOG: Mutex<Option<Log>> = Mutex::new(None);

fn record(group: &str, name: &str, iters: u64, d: Duration) {
    let mut log = LOG.lock().expect("log");
    log.get_or_insert_with(Log::default)
        .runs
        .entry((group.into(), name.into()))
        .or_default()
        .push((iters, d));
}

fn note(group: &str, name: &str, s: String) {
    eprintln!("  {group}/{name}: {s}");
    let mut log = LOG.lock().expect("log");
    log.get_or_insert_with(Log::default)
        .notes
        .insert((group.into(), name.into()), s);
}

fn median(group: &str, name: &str) -> Option<f64> {
    let log = LOG.lock().expect("log");
    let runs = log.as_ref()?.runs.get(&(group.into(), name.into()))?;
    let samples = if group.starts_with("lookup") {
        LOOKUP_SAMPLES
    } else {
        SAMPLES
    };
    median_ns(runs, samples)
}

fn note_of(group: &str, name: &str) -> String {
    let log = LOG.lock().expect("log");
    log.as_ref()
        .and_then(|l| l.notes.get(&(group.into(), name.into())).cloned())
        .unwrap_or_default()
}

fn configure(g: &mut BenchmarkGroup<'_, WallTime>, measure: Duration) {
    g.sample_size(SAMPLES);
    g.warm_up_time(Duration::from_millis(300));
    g.measurement_time(measure);
}

fn removal_group(k: u64, m: usize, p: usize) -> String {
    format!("remove_{k}p_{m}vmr_{p}as")
}

fn removal(c: &mut Criterion) {
    for k in KS {
        for (m, p) in GRID {
            let group = removal_group(k, m, p);
            let f = MappedFile::new(k, m, p);
            let mut g = c.benchmark_group(&group);
            // The untimed refault of K*M pages dominates large cases: keep
            // the measured time short there.
            configure(
                &mut g,
                Duration::from_millis(if k >= 512 { 500 } else { 1000 }),
            );
            g.throughput(Throughput::Elements(k));
            for (name, batching) in [
                ("pagemap", Batching::PerSpace),
                ("per_page_shootdowns", Batching::PerPage),
            ] {
                let shootdowns = AtomicU64::new(0);
                let removals = AtomicU64::new(0);
                g.bench_function(name, |b| {
                    b.iter_custom(|iters| {
                        let d = f.time_removals(batching, iters, &shootdowns);
                        removals.fetch_add(iters, Ordering::Relaxed);
                        record(&group, name, iters, d);
                        d
                    })
                });
                let n = removals.load(Ordering::Relaxed);
                if n > 0 {
                    let per = shootdowns.load(Ordering::Relaxed) as f64 / n as f64;
                    note(
                        &group,
                        name,
                        format!("{n} removals checked, {per} shootdowns each"),
                    );
                }
            }
            g.finish();
        }
    }
}

fn writeback(c: &mut Criterion) {
    let dir = bench_dir();
    for n in NS {
        let group = format!("writeback_{n}p");
        let mut g = c.benchmark_group(&group);
        configure(&mut g, Duration::from_secs(1));
        g.throughput(Throughput::Bytes(n * PAGE));
        for mapped in [false, true] {
            let f = WritebackFile::new(&dir, n, mapped);
            let name = if mapped { "pagemap_mapped" } else { "pagemap" };
            let mut gen = 0u8;
            let (mut harvested, mut shootdowns, mut calls) = (0, 0, 0);
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        gen = gen.wrapping_add(1).max(1);
                        f.dirty(gen);
                        let t = Instant::now();
                        let r = f.map.writeback(0..n);
                        total += t.elapsed();
                        f.check(&r);
                        harvested += r.harvested;
                        shootdowns += r.shootdowns;
                        calls += 1;
                    }
                    record(&group, name, iters, total);
                    total
                })
            });
            if calls > 0 {
                note(
                    &group,
                    name,
                    format!(
                        "{calls} writebacks of {n} pages checked; per writeback: {} pages harvested from PTEs, {} shootdowns",
                        harvested as f64 / calls as f64,
                        shootdowns as f64 / calls as f64
                    ),
                );
            }
        }
        let mut raw = RawWriter::new(&dir, n);
        let mut gen = 0u8;
        g.bench_function("raw_pwrite", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    gen = gen.wrapping_add(1).max(1);
                    raw.dirty(gen);
                    let t = Instant::now();
                    raw.write();
                    total += t.elapsed();
                }
                record(&group, "raw_pwrite", iters, total);
                total
            })
        });
        g.finish();
    }
}

fn lookups(c: &mut Criterion) {
    let group = "lookup_during_remove";
    let mut g = c.benchmark_group(group);
    configure(&mut g, Duration::from_secs(3));
    g.sample_size(LOOKUP_SAMPLES);
    g.throughput(Throughput::Elements(1));
    let bench = LookupBench::new();
    let mut offset = 0usize;
    for (name, bg) in [
        ("alone", Background::None),
        ("remover_same_map", Background::RemoverSameMap),
        ("remover_other_map", Background::RemoverOtherMap),
    ] {
        let tally = LookupTally::default();
        bench.with_background(bg, &tally, || {
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let d = bench.lookups(iters, offset, &tally);
                    offset = offset.wrapping_add(iters as usize);
                    record(group, name, iters, d);
                    d
                })
            });
        });
        if tally.lookups.load(Ordering::Relaxed) > 0 {
            note(group, name, tally.summary());
        }
    }
    g.finish();
}

fn fmt_rate(per_s: f64) -> String {
    if per_s >= 1e9 {
        format!("{:.2} G", per_s / 1e9)
    } else if per_s >= 1e6 {
        format!("{:.2} M", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.1} K", per_s / 1e3)
    } else {
        format!("{per_s:.0} ")
    }
}

/// Prints the ratio tables (markdown) of whatever ran.
fn summary(_: &mut Criterion) {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    let mut any = false;
    for k in KS {
        for (m, p) in GRID {
            let group = removal_group(k, m, p);
            let (Some(ours), Some(base)) = (
                median(&group, "pagemap"),
                median(&group, "per_page_shootdowns"),
            ) else {
                continue;
            };
            if !any {
                line(String::new());
                line(format!("Removal: K pages mapped by M regions in P address spaces ({} simulated CPUs), whole range removed; medians of {SAMPLES} samples", benches::removal::CPUS));
                line("| K pages | M regions / P spaces | per-space batch: time, pages/s | per-page shootdowns: time, pages/s | speed-up | shootdowns per removal (batched / per-page) | time per extra shootdown |".into());
                line("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |".into());
                any = true;
            }
            let sd = |name| {
                note_of(&group, name)
                    .split(", ")
                    .nth(1)
                    .and_then(|s| s.split(' ').next())
                    .unwrap_or("?")
                    .to_string()
            };
            let (ps, pp) = (sd("pagemap"), sd("per_page_shootdowns"));
            let extra = match (ps.parse::<f64>(), pp.parse::<f64>()) {
                (Ok(a), Ok(b)) if b > a => format!("{:.0} ns", (base - ours) / (b - a)),
                _ => "—".into(),
            };
            line(format!(
                "| {k} | {m} / {p} | {:.1} µs, {}pages/s | {:.1} µs, {}pages/s | **{:.2}x** | {ps} / {pp} | {extra} |",
                ours / 1e3,
                fmt_rate(k as f64 * 1e9 / ours),
                base / 1e3,
                fmt_rate(k as f64 * 1e9 / base),
                base / ours,
            ));
        }
    }
    let mut any = false;
    for n in NS {
        let group = format!("writeback_{n}p");
        let (Some(ours), Some(raw)) = (median(&group, "pagemap"), median(&group, "raw_pwrite"))
        else {
            continue;
        };
        let mapped = median(&group, "pagemap_mapped");
        if !any {
            line(String::new());
            line("Writeback of N dirty pages (FileStore on a real file, no fsync) vs N 4 KiB pwrites; throughput ratio = raw time / writeback time (target >= 0.80)".into());
            line("| N pages | writeback | raw pwrite | writeback / raw throughput | target | mapped writeback (harvest + shootdown) | mapped / unmapped throughput |".into());
            line("| ---: | ---: | ---: | ---: | --- | ---: | ---: |".into());
            any = true;
        }
        let mb = |ns: f64| n as f64 * PAGE as f64 / ns * 1e9 / (1 << 20) as f64;
        let ratio = raw / ours;
        line(format!(
            "| {n} | {:.2} ms, {:.0} MiB/s | {:.2} ms, {:.0} MiB/s | **{ratio:.2}** | {} | {} | {} |",
            ours / 1e6,
            mb(ours),
            raw / 1e6,
            mb(raw),
            if ratio >= 0.8 { "met" } else { "MISSED" },
            mapped.map_or("—".into(), |t| format!("{:.2} ms, {:.0} MiB/s", t / 1e6, mb(t))),
            mapped.map_or("—".into(), |t| format!("{:.2}", ours / t)),
        ));
    }
    let group = "lookup_during_remove";
    if let Some(alone) = median(group, "alone") {
        line(String::new());
        line(format!("Lookups (find+put, uniform over {LOOKUP_PAGES} resident pages, 1 thread) while a second thread removes and reloads {REMOVE_SLICE}-page slices; medians of {LOOKUP_SAMPLES} samples; 2 cores: each thread has one (shared with whatever else runs)"));
        line("| case | ns/lookup | lookups/s | vs alone (throughput) | notes |".into());
        line("| --- | ---: | ---: | ---: | --- |".into());
        for name in ["alone", "remover_same_map", "remover_other_map"] {
            let Some(t) = median(group, name) else {
                continue;
            };
            line(format!(
                "| {name} | {t:.1} | {}/s | {:.2} | {} |",
                fmt_rate(1e9 / t),
                alone / t,
                note_of(group, name)
            ));
        }
    }
    if !out.is_empty() {
        println!("{out}");
    }
}

criterion_group!(benches, removal, writeback, lookups, summary);
criterion_main!(benches);
