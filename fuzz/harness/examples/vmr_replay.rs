//! Replays `vmr_ops` inputs on stable, without libFuzzer: files or directories.
//!
//!   cargo run --release --manifest-path fuzz/Cargo.toml -p pagemap-fuzz-harness \
//!       --example vmr_replay -- [-v] fuzz/artifacts/vmr_ops/crash-...
//!
//! `-v` prints each input's decoded ops first. `-r N` runs N pseudo-random
//! inputs instead (a smoke test without the fuzzer). Prints what the inputs
//! exercised; a divergence panics with its report.

use std::path::PathBuf;
use std::time::Instant;

use pagemap_fuzz_harness::vmr_ops::VmrInput;
use pagemap_fuzz_harness::{corpus, vmr_run, Stats};

fn main() {
    let mut verbose = false;
    let mut random = 0usize;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-v" => verbose = true,
            "-r" => random = args.next().and_then(|n| n.parse().ok()).expect("-r N"),
            _ => files.push(PathBuf::from(a)),
        }
    }
    let mut inputs = corpus::read_inputs(&files);
    let garbage = corpus::garbage(0x2545_f491_4f6c_dd1d, random, |n| 2 + (n * 7) % 600);
    for (n, data) in garbage.into_iter().enumerate() {
        inputs.push((format!("random #{n}"), data));
    }
    let mut total = Stats::default();
    let start = Instant::now();
    for (name, data) in &inputs {
        if verbose {
            let input = VmrInput::decode(data);
            eprintln!(
                "{name}: {} cpus, {} files, {} spaces, {} frames",
                input.cpus, input.files, input.spaces, input.frames
            );
            for (i, op) in input.ops.iter().enumerate() {
                eprintln!("  #{i}: {op:?}");
            }
        } else if random > 0 {
            eprintln!("{name}");
        }
        total.merge(&vmr_run::run(data));
    }
    let dt = start.elapsed();
    println!(
        "{} inputs in {:?} ({:?} each)",
        inputs.len(),
        dt,
        dt / inputs.len().max(1) as u32
    );
    for (k, v) in &total.0 {
        println!("{v:>10} {k}");
    }
}
