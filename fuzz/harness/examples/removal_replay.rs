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

use pagemap_fuzz_harness::{removal, removal_interleaved, Stats};

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
        let len = 3 + (n * 37) % 700;
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
