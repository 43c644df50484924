//! `vmr` fault path and TLB: simulated minor faults against real kernel minor
//! faults on this machine, and reads through a warm TLB against reads that
//! walk the page table. See `benches/src/fault.rs` for the fixtures.
//!
//! Every group holds ours and its baselines, measured in the same run: read
//! the ratios. Fault times are aggregate time per fault (wall time / faults).

use std::time::Duration;

use benches::fault::{
    run_faults, FaultTally, Faulter, KernelFaults, SimFaults, TlbBench, STRIDE, TLB_PAGES,
};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};

fn configure(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.sample_size(15);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
}

fn one<F: Faulter>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    f: &F,
    threads: usize,
    exact: bool,
) {
    let tally = FaultTally::default();
    g.bench_function(name, |b| {
        b.iter_custom(|iters| run_faults(f, threads, iters, &tally))
    });
    if tally.touched.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        return; // filtered out
    }
    eprintln!("  {name} ({threads} thread(s)): {}", tally.summary());
    tally.check(exact);
}

fn minor_fault(c: &mut Criterion) {
    let sim = SimFaults::new(STRIDE);
    let dense = SimFaults::new(1);
    let dir = std::env::var_os("VMR_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let kernel = KernelFaults::new(&dir).expect("kernel fault file");
    for threads in [1, 2] {
        let mut g = c.benchmark_group(format!("minor_fault_{threads}t"));
        configure(&mut g);
        one(&mut g, "vmr", &sim, threads, true);
        one(&mut g, "vmr_dense", &dense, threads, true);
        one(&mut g, "linux_kernel", &kernel, threads, false);
        g.finish();
    }
}

fn tlb(c: &mut Criterion) {
    let t = TlbBench::new();
    let frames = t.frames(vmr::TLB_ENTRIES as u64);
    // Warm the translations (the mapping is populated: no faults).
    t.reads(TLB_PAGES, 4 * TLB_PAGES, &mut 0);
    let mut g = c.benchmark_group("tlb_read_8b");
    configure(&mut g);
    let hit_pages = vmr::TLB_ENTRIES as u64;
    let before = t.cpu_counts();
    let mut n = 0;
    g.bench_function("tlb_hit", |b| {
        b.iter_custom(|iters| {
            // One untimed pass puts the 64 pages in the TLB (64 consecutive
            // pages take 64 different slots of the direct-mapped TLB).
            t.reads(hit_pages, hit_pages, &mut 0);
            n += hit_pages;
            let s = std::time::Instant::now();
            std::hint::black_box(t.reads(hit_pages, iters, &mut 0));
            n += iters;
            s.elapsed()
        })
    });
    let after = t.cpu_counts();
    let misses = after.1 - before.1;
    eprintln!(
        "  tlb_hit: {n} reads, {} TLB hits, {misses} misses, {} faults",
        after.0 - before.0,
        after.2 - before.2
    );
    assert!(misses <= hit_pages, "only the first warming pass misses");
    assert_eq!(after.2, before.2, "no faults");

    // One untimed cycle leaves pages 64..128 in the TLB, so the timed reads
    // (from page 0 on) all miss.
    let mut cursor = 0;
    t.reads(TLB_PAGES, TLB_PAGES, &mut cursor);
    let before = t.cpu_counts();
    let mut n = 0;
    g.bench_function("page_table_walk", |b| {
        // Cycling over 128 consecutive pages: page p and p + 64 share a TLB
        // slot, so each read finds the other's entry there and walks.
        b.iter_custom(|iters| {
            let s = std::time::Instant::now();
            std::hint::black_box(t.reads(TLB_PAGES, iters, &mut cursor));
            n += iters;
            s.elapsed()
        })
    });
    let after = t.cpu_counts();
    eprintln!(
        "  page_table_walk: {n} reads, {} TLB hits, {} misses, {} faults",
        after.0 - before.0,
        after.1 - before.1,
        after.2 - before.2
    );
    assert_eq!(after.1 - before.1, n, "every read walks");
    assert_eq!(after.2, before.2, "no faults");

    g.bench_function("frame_read_floor", |b| {
        b.iter_custom(|iters| {
            let s = std::time::Instant::now();
            std::hint::black_box(t.frame_reads(&frames, iters));
            s.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, minor_fault, tlb);
criterion_main!(benches);
