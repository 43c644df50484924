//! Replays fuzz inputs on stable, without libFuzzer: files or directories.
//!
//!   cargo run --release --manifest-path fuzz/Cargo.toml -p pagemap-fuzz-harness \
//!       --example replay -- [-v] fuzz/artifacts/pagemap_ops/crash-...
//!
//! `-v` prints each input's decoded ops first. Prints what the inputs
//! exercised and how long they took; a divergence panics with its report.

use std::path::PathBuf;
use std::time::Instant;

use pagemap_fuzz_harness::{corpus, run, Input, Stats};

fn main() {
    let mut verbose = false;
    let mut files = Vec::new();
    for a in std::env::args().skip(1) {
        if a == "-v" {
            verbose = true;
            continue;
        }
        files.push(PathBuf::from(a));
    }
    let mut total = Stats::default();
    let start = Instant::now();
    for (name, data) in &corpus::read_inputs(&files) {
        if verbose {
            let input = Input::decode(data);
            eprintln!("{name}: {} frames", input.frames);
            for (i, op) in input.ops.iter().enumerate() {
                eprintln!("  #{i}: {op:?}");
            }
        }
        total.merge(&run(data));
    }
    let dt = start.elapsed();
    println!(
        "{} inputs in {:?} ({:?} each)",
        files.len(),
        dt,
        dt / files.len().max(1) as u32
    );
    for (k, v) in &total.0 {
        println!("{v:>10} {k}");
    }
}
