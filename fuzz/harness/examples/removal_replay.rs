//! Replays `removal` / `removal_interleaved` inputs on stable, without
//! libFuzzer: files or directories.
//!
//!   cargo run --release --manifest-path fuzz/Cargo.toml -p pagemap-fuzz-harness \
//!       --example removal_replay -- [-t] [-v] [-s] fuzz/artifacts/removal_interleaved/crash-...
//!
//! Default target `removal_interleaved`; `-t` the threaded `removal`. `-v`
//! prints each input's decoded ops first. `-s` runs strictly (known bugs
//! not stepped around). `-r N` runs N pseudo-random inputs instead (a smoke
//! test without the fuzzer). Prints what the inputs exercised.

use std::path::PathBuf;
use std::time::Instant;

use pagemap_fuzz_harness::{corpus, removal, removal_interleaved, Stats};

fn main() {
    let (mut verbose, mut threaded, mut strict) = (false, false, false);
    let mut random = 0usize;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-v" => verbose = true,
            "-t" => threaded = true,
            "-s" => strict = true,
            "-r" => random = args.next().and_then(|n| n.parse().ok()).expect("-r N"),
            _ => files.push(PathBuf::from(a)),
        }
    }
    let mut inputs = corpus::read_inputs(&files);
    let garbage = corpus::garbage(0x2545_f491_4f6c_dd1d, random, |n| 3 + (n * 37) % 700);
    for (n, data) in garbage.into_iter().enumerate() {
        inputs.push((format!("random #{n}"), data));
    }
    let mut total = Stats::default();
    let start = Instant::now();
    for (name, data) in &inputs {
        if verbose {
            if threaded {
                eprintln!("{name}: {:?}", removal::Input::decode(data));
            } else {
                let input = removal_interleaved::Input::decode(data);
                eprintln!(
                    "{name}: frames {} cpus {} layout {:#x}",
                    input.frames, input.cpus, input.layout
                );
                for (i, op) in input.ops.iter().enumerate() {
                    eprintln!("  #{i}: {}", removal_interleaved::describe(*op));
                }
            }
        } else if random > 0 {
            // The input in flight, to triage a failure of a random one.
            std::fs::write(std::env::temp_dir().join("removal_replay_last"), data).unwrap();
        }
        let stats = match (threaded, strict) {
            (true, false) => removal::run(data),
            (true, true) => removal::run_strict(data),
            (false, false) => removal_interleaved::run(data),
            (false, true) => removal_interleaved::run_strict(data),
        };
        total.merge(&stats);
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
