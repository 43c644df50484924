//! The vmr comparisons of `benches/benches/vmr.rs`, round-robin: each round
//! runs every implementation briefly, in rotated order, and takes the ratio
//! to the reference within the round; the table gives the median and range
//! over rounds. Less sensitive than criterion's one-after-the-other groups
//! to bursts of outside load on a shared machine.
//!
//! `cargo run --release -p benches --bin fault_interleaved [ROUNDS]` (default 9)

use std::time::Instant;

use benches::fault::{
    run_faults, FaultTally, Faulter, KernelFaults, SimFaults, TlbBench, STRIDE, TLB_PAGES,
};

/// Faults per run of the simulation and of the kernel (~50–150 ms each here).
const SIM_FAULTS: u64 = 1 << 17;
const KERNEL_FAULTS: u64 = 1 << 15;
/// Reads per run of the TLB cases.
const READS: u64 = 1 << 20;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

fn fault_ns<F: Faulter>(f: &F, threads: usize, n: u64, tally: &FaultTally) -> f64 {
    run_faults(f, threads, n, tally).as_nanos() as f64 / n as f64
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ROUNDS"))
        .unwrap_or(9);
    let sim = SimFaults::new(STRIDE);
    let dense = SimFaults::new(1);
    let dir = std::env::var_os("VMR_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let kernel = KernelFaults::new(&dir).expect("kernel fault file");
    let tallies: Vec<FaultTally> = (0..6).map(|_| FaultTally::default()).collect();

    let tlb = TlbBench::new();
    let frames = tlb.frames(vmr::TLB_ENTRIES as u64);
    let hit_pages = vmr::TLB_ENTRIES as u64;

    // [threads-1][impl] ns per fault, per round; impl: vmr, vmr_dense, kernel.
    let mut fault: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); 3]; 2];
    // tlb_hit, page_table_walk, frame_read_floor.
    let mut tlb_ns: Vec<Vec<f64>> = vec![Vec::new(); 3];
    for r in 0..rounds {
        for k in 0..3 {
            let which = (r + k) % 3;
            for threads in [1, 2] {
                let t = &tallies[(threads - 1) * 3 + which];
                let ns = match which {
                    0 => fault_ns(&sim, threads, SIM_FAULTS, t),
                    1 => fault_ns(&dense, threads, SIM_FAULTS, t),
                    _ => fault_ns(&kernel, threads, KERNEL_FAULTS, t),
                };
                fault[threads - 1][which].push(ns);
            }
        }
        for k in 0..3 {
            let which = (r + k) % 3;
            let ns = match which {
                0 => {
                    tlb.reads(hit_pages, hit_pages, &mut 0);
                    let s = Instant::now();
                    std::hint::black_box(tlb.reads(hit_pages, READS, &mut 0));
                    s.elapsed()
                }
                1 => {
                    let mut c = 0;
                    tlb.reads(TLB_PAGES, TLB_PAGES, &mut c);
                    let s = Instant::now();
                    std::hint::black_box(tlb.reads(TLB_PAGES, READS, &mut c));
                    s.elapsed()
                }
                _ => {
                    let s = Instant::now();
                    std::hint::black_box(tlb.frame_reads(&frames, READS));
                    s.elapsed()
                }
            };
            tlb_ns[which].push(ns.as_nanos() as f64 / READS as f64);
        }
    }
    for (i, t) in tallies.iter().enumerate() {
        t.check(i % 3 != 2);
    }

    println!(
        "vmr round-robin, {rounds} rounds: ratio within each round, median (range) over rounds"
    );
    println!();
    println!("| case | implementation | median ns/op | ratio to reference | ratio range |");
    println!("| --- | --- | ---: | ---: | --- |");
    let names = ["vmr", "vmr_dense", "linux_kernel"];
    for threads in [1, 2] {
        let f = &fault[threads - 1];
        for (i, name) in names.iter().enumerate() {
            let mut ns = f[i].clone();
            let mut ratios: Vec<f64> = f[i].iter().zip(&f[2]).map(|(a, k)| a / k).collect();
            let (lo, hi) = ratios
                .iter()
                .fold((f64::MAX, 0f64), |(l, h), &x| (l.min(x), h.max(x)));
            let shown = if i == 2 {
                "— (reference)".to_string()
            } else {
                format!("{:.3}x the kernel's", median(&mut ratios))
            };
            println!(
                "| minor_fault_{threads}t | {name} | {:.1} | {shown} | {lo:.3}–{hi:.3} |",
                median(&mut ns)
            );
        }
    }
    let names = ["tlb_hit", "page_table_walk", "frame_read_floor"];
    for (i, name) in names.iter().enumerate() {
        let mut ns = tlb_ns[i].clone();
        let mut ratios: Vec<f64> = tlb_ns[i]
            .iter()
            .zip(&tlb_ns[0])
            .map(|(a, h)| a / h)
            .collect();
        let (lo, hi) = ratios
            .iter()
            .fold((f64::MAX, 0f64), |(l, h), &x| (l.min(x), h.max(x)));
        let shown = if i == 0 {
            "— (reference)".to_string()
        } else {
            format!("{:.2}x a TLB hit", median(&mut ratios))
        };
        println!(
            "| tlb_read_8b | {name} | {:.1} | {shown} | {lo:.2}–{hi:.2} |",
            median(&mut ns)
        );
    }
    println!();
    for (i, t) in tallies.iter().enumerate() {
        println!(
            "{} {}t: {}",
            ["vmr", "vmr_dense", "linux_kernel"][i % 3],
            i / 3 + 1,
            t.summary()
        );
    }
    for threads in [1, 2] {
        let f = &fault[threads - 1];
        let mut ratios: Vec<f64> = f[0].iter().zip(&f[2]).map(|(a, k)| a / k).collect();
        let m = median(&mut ratios);
        println!(
            "target minor_fault_{threads}t: vmr <= 0.1x the kernel's: {m:.3}x -> {}",
            if m <= 0.1 { "met" } else { "MISSED" }
        );
    }
}
