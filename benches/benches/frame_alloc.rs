//! The frame allocator's free list under alloc+free pairs (issue: reclaim
//! on allocation must not serialise on one mutex).
//!
//! * `frame_alloc/{lockfree,mutex}/{1,2}t`: each of 1 or 2 threads takes a
//!   frame and gives it back, over a 1024-frame list: `lockfree` is
//!   `RegionFrames` (Treiber stack), `mutex` the mutex-headed list it
//!   replaced (`benches::frame_alloc::MutexFreeList`, same links).
//!
//! Reported per iteration: the wall time one thread takes per alloc+free
//! pair (with 2 threads the machine does two pairs in that time). At the end
//! the bench prints ns per pair and the ratio lockfree / mutex per thread
//! count (medians of criterion's samples, recorded here).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use benches::frame_alloc::{run, FreeList, MutexFreeList, FRAMES};
use benches::removal::median_ns;
use criterion::{criterion_group, criterion_main, Criterion};
use pagemap::RegionFrames;

/// Criterion samples per benchmark (the last calls of `iter_custom`).
const SAMPLES: usize = 20;

/// (threads, list) -> `(iterations, time)` of each `iter_custom` call.
type Runs = BTreeMap<(usize, &'static str), Vec<(u64, Duration)>>;

static LOG: Mutex<Runs> = Mutex::new(BTreeMap::new());

fn bench_list(c: &mut Criterion, name: &'static str, list: &impl FreeList, threads: usize) {
    c.bench_function(&format!("frame_alloc/{name}/{threads}t"), |b| {
        b.iter_custom(|iters| {
            let d = run(list, threads, iters);
            LOG.lock()
                .expect("log")
                .entry((threads, name))
                .or_default()
                .push((iters, d));
            d
        })
    });
}

fn frame_alloc(c: &mut Criterion) {
    for threads in [1, 2] {
        let lockfree = RegionFrames::heap(FRAMES).expect("frames");
        bench_list(c, "lockfree", &lockfree, threads);
        let mutex = MutexFreeList::new(FRAMES);
        bench_list(c, "mutex", &mutex, threads);
    }
}

fn report(_: &mut Criterion) {
    let log = LOG.lock().expect("log");
    println!("\nframe_alloc: ns per alloc+free pair (per thread), median of {SAMPLES} samples");
    println!("| threads | lockfree | mutex | lockfree / mutex |");
    println!("|---|---|---|---|");
    for threads in [1, 2] {
        let ns = |name| {
            log.get(&(threads, name))
                .and_then(|r| median_ns(r, SAMPLES))
        };
        if let (Some(new), Some(old)) = (ns("lockfree"), ns("mutex")) {
            println!("| {threads} | {new:.1} | {old:.1} | {:.2} |", new / old);
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(SAMPLES)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = frame_alloc, report
}
criterion_main!(benches);
