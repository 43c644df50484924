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
use pagemap_fuzz_harness::{vmr_run, Stats};

fn main() {
    let mut verbose = false;
    let mut random = 0usize;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-v" => verbose = true,
            "-r" => random = args.next().and_then(|n| n.parse().ok()).expect("-r N"),
            _ => {
                let p = PathBuf::from(a);
                if p.is_dir() {
                    let mut v: Vec<_> = std::fs::read_dir(&p)
                        .unwrap()
                        .map(|e| e.unwrap().path())
                        .collect();
                    v.sort();
                    files.extend(v);
                } else {
                    files.push(p);
                }
            }
        }
    }
    let mut inputs: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|f| (f.display().to_string(), std::fs::read(f).unwrap()))
        .collect();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for n in 0..random {
        let len = 2 + (n * 7) % 600;
        let data = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
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
