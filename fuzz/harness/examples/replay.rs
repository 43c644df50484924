//! Replays fuzz inputs on stable, without libFuzzer: files or directories.
//!
//!   cargo run --release --manifest-path fuzz/Cargo.toml -p pagemap-fuzz-harness \
//!       --example replay -- [-t TARGET] [-v] [-s] [-r N] fuzz/artifacts/vmr_ops/crash-...
//!
//! `-t` names the target (`pagemap_ops`, `vmr_ops`, `removal_interleaved`;
//! by default the parent directory's name of the first file). `-v` prints
//! each input's decoded ops first, `-s` runs strictly (known bugs not
//! stepped around), `-r N` runs N pseudo-random inputs too (a smoke test
//! without the fuzzer; the one in flight is in `$TMPDIR/replay_last`).
//! Prints what the inputs exercised and how long they took; a divergence
//! panics with its report.

use std::path::PathBuf;
use std::time::Instant;

use pagemap_fuzz_harness::{corpus, Stats};

fn main() {
    let (mut verbose, mut strict, mut random, mut name) = (false, false, 0usize, None);
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-v" => verbose = true,
            "-s" => strict = true,
            "-t" => name = args.next(),
            "-r" => random = args.next().and_then(|n| n.parse().ok()).expect("-r N"),
            _ => files.push(PathBuf::from(a)),
        }
    }
    let name = name.unwrap_or_else(|| {
        let dir = files
            .first()
            .and_then(|f| f.parent())
            .and_then(|d| d.file_name());
        dir.map_or("pagemap_ops".into(), |d| d.to_string_lossy().into_owned())
    });
    let target = corpus::target(&name);
    let mut inputs = corpus::read_inputs(&files);
    let garbage = corpus::garbage(0x2545_f491_4f6c_dd1d, random, |n| 3 + (n * 37) % 700);
    inputs.extend(garbage.into_iter().map(|d| ("random".to_string(), d)));
    let mut total = Stats::default();
    let start = Instant::now();
    for (name, data) in &inputs {
        if verbose {
            eprintln!("{name}: {}", (target.describe)(data));
        }
        std::fs::write(std::env::temp_dir().join("replay_last"), data).unwrap();
        total.merge(&(if strict { target.strict } else { target.run })(data));
    }
    let dt = start.elapsed();
    let each = dt / inputs.len().max(1) as u32;
    println!("{} inputs in {dt:?} ({each:?} each)", inputs.len());
    for (k, v) in &total.0 {
        println!("{v:>10} {k}");
    }
}
