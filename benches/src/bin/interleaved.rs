//! Find+put ratios measured round-robin, for a noisy shared machine.
//!
//! Criterion measures one implementation for seconds before the next, so a
//! burst of outside load lands on one of them and skews its ratio. Here each
//! round runs every implementation briefly (about 100 ms each, order rotated
//! every round), and the ratio "baseline / pagemap" is taken within a round,
//! then the median over rounds is reported. Same structures, streams and
//! thread driver as the criterion benches.
//!
//! `cargo run --release -p benches --bin interleaved [ROUNDS]`

use std::time::Duration;

use benches::{
    dash, flat, mutex_hash, ours, papaya_map, run_threads, rw_trie, scc_index, uniform, zipf,
    FindPut, RESIDENT,
};

type Runner = Box<dyn Fn(&[u32], usize, u64) -> Duration>;

fn runner<T: FindPut>(s: &'static T) -> Runner {
    Box::new(move |stream, threads, iters| run_threads(s, stream, threads, iters))
}

/// ns per operation (aggregate over threads, as in the criterion benches).
fn ns_per_op(r: &Runner, stream: &[u32], threads: usize, iters: u64) -> f64 {
    r(stream, threads, iters).as_nanos() as f64 / (iters * threads as u64) as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(9, |a| a.parse().expect("ROUNDS"));
    let impls: Vec<(&str, Runner)> = vec![
        ("pagemap", runner(ours())),
        ("flat_floor", runner(flat())),
        ("mutex_hashmap", runner(mutex_hash())),
        ("rwlock_radix_trie", runner(rw_trie())),
        ("dashmap", runner(dash())),
        ("papaya", runner(papaya_map())),
        ("scc_hashindex", runner(scc_index())),
    ];
    let hot = [(RESIDENT / 2 + 7) as u32];
    let cases: [(&str, &[u32], usize); 5] = [
        ("find_put_1t_uniform", uniform(), 1),
        ("find_put_2t_uniform", uniform(), 2),
        ("find_put_1t_zipf", zipf(), 1),
        ("find_put_2t_zipf", zipf(), 2),
        ("hot_slot_2t", &hot, 2),
    ];
    let target = Duration::from_millis(100).as_nanos() as f64;
    let mut checks = Vec::new();
    println!("Interleaved find+put: median of {rounds} rounds; ratio = baseline / pagemap in the same round");
    println!();
    println!("| case | implementation | median ns/op | ratio (median of rounds) | ratio range |");
    println!("| --- | --- | ---: | ---: | --- |");
    for (case, stream, threads) in cases {
        // Calibrate: about `target` per run for each implementation.
        let iters: Vec<u64> = impls
            .iter()
            .map(|(_, r)| {
                let _ = ns_per_op(r, stream, threads, 20_000); // warm
                let ns = ns_per_op(r, stream, threads, 200_000);
                ((target / ns / threads as f64) as u64).clamp(10_000, 20_000_000)
            })
            .collect();
        let mut times = vec![Vec::with_capacity(rounds); impls.len()];
        for round in 0..rounds {
            for k in 0..impls.len() {
                let j = (k + round) % impls.len();
                times[j].push(ns_per_op(&impls[j].1, stream, threads, iters[j]));
            }
        }
        for (j, (name, _)) in impls.iter().enumerate() {
            let mut ratios: Vec<f64> = times[j]
                .iter()
                .zip(&times[0])
                .map(|(t, ours)| t / ours)
                .collect();
            let med = median(&mut ratios);
            let (lo, hi) = (ratios[0], ratios[ratios.len() - 1]);
            let ns = median(&mut times[j].clone());
            let shown = if j == 0 {
                "—".to_string()
            } else {
                format!("{med:.2}")
            };
            println!("| {case} | {name} | {ns:.1} | {shown} | {lo:.2}–{hi:.2} |");
            let goal = match *name {
                "flat_floor" if case.starts_with("find_put") => {
                    Some(("pagemap within 2.5x of", 1.0 / med, 2.5, false))
                }
                "papaya" | "scc_hashindex" | "dashmap" if case.starts_with("find_put") => {
                    Some((">= 5x faster than", med, 5.0, true))
                }
                "mutex_hashmap" | "rwlock_radix_trie" if case.starts_with("find_put") => {
                    Some((">= 20x faster than", med, 20.0, true))
                }
                "scc_hashindex" if case.starts_with("hot_slot") => {
                    Some(("at least as fast as", med, 1.0, true))
                }
                _ => None,
            };
            if let Some((what, v, lim, at_least)) = goal {
                let ok = if at_least { v >= lim } else { v <= lim };
                checks.push(format!(
                    "| {case} | {what} {name} | {v:.2}x | {} |",
                    if ok { "met" } else { "MISSED" }
                ));
            }
        }
    }
    println!();
    println!("| case | target | measured | met? |");
    println!("| --- | --- | ---: | --- |");
    for c in checks {
        println!("{c}");
    }
}
