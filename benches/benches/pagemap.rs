//! Page map vs generic concurrent maps: hot find+put, single hot slot, insert;
//! and a load miss reading straight into the frame vs through a bounce buffer.
//!
//! Every group holds our page map and its baselines, measured in the same
//! run, so the ratios between them are what to read (the machine is noisy).
//! Multi-thread results are aggregate time per operation (wall time / total
//! operations, every thread doing the same number).

use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::{
    dash, flat, mutex_hash, ours, papaya_map, run_threads, rw_trie, scc_index, uniform, zipf, Dash,
    FillFloor, FindPut, Insert, MutexHash, Ours, Papaya, RwTrie, SccIndex, RESIDENT,
};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use pagemap::{
    BackingStore, FramePool, PageBuf, PageMap, PageSrc, StoreControl, StoreError, PAGE_SIZE,
};

/// Pages inserted per insert iteration.
const INSERT_N: u64 = 1 << 16;
/// Stride of the sparse insert (1% of indices cached).
const SPARSE_STRIDE: u64 = 100;
/// The single hot page.
const HOT: u64 = RESIDENT / 2 + 7;

fn configure(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.sample_size(15);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(2));
}

fn one<T: FindPut>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    s: &T,
    stream: &[u32],
    threads: usize,
) {
    g.bench_function(name, |b| {
        b.iter_custom(|iters| run_threads(s, stream, threads, iters))
    });
}

/// All implementations on one index stream with `threads` threads.
fn all(c: &mut Criterion, group: &str, stream: &[u32], threads: usize) {
    let mut g = c.benchmark_group(group);
    configure(&mut g);
    g.throughput(Throughput::Elements(1));
    one(&mut g, "pagemap", ours(), stream, threads);
    one(&mut g, "flat_floor", flat(), stream, threads);
    one(&mut g, "mutex_hashmap", mutex_hash(), stream, threads);
    one(&mut g, "rwlock_radix_trie", rw_trie(), stream, threads);
    one(&mut g, "dashmap", dash(), stream, threads);
    one(&mut g, "papaya", papaya_map(), stream, threads);
    one(&mut g, "scc_hashindex", scc_index(), stream, threads);
    g.finish();
}

fn find_put(c: &mut Criterion) {
    all(c, "find_put_1t_uniform", uniform(), 1);
    all(c, "find_put_2t_uniform", uniform(), 2);
    all(c, "find_put_1t_zipf", zipf(), 1);
    all(c, "find_put_2t_zipf", zipf(), 2);
}

fn hot_slot(c: &mut Criterion) {
    // A stream of length one: every operation hits the same page.
    all(c, "hot_slot_2t", &[HOT as u32], 2);
}

fn insert_one<T: Insert>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, indices: &[u64]) {
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let s = T::fresh(indices.len());
                let t = Instant::now();
                for &i in indices {
                    s.insert(i);
                }
                total += t.elapsed();
                drop(s); // not timed
            }
            total
        })
    });
}

fn insert(c: &mut Criterion) {
    for (group, stride) in [
        ("insert_dense_64k", 1),
        ("insert_sparse_64k", SPARSE_STRIDE),
    ] {
        let indices: Vec<u64> = (0..INSERT_N).map(|i| i * stride).collect();
        let mut g = c.benchmark_group(group);
        configure(&mut g);
        g.sample_size(10);
        g.throughput(Throughput::Elements(INSERT_N));
        insert_one::<Ours>(&mut g, "pagemap", &indices);
        insert_one::<FillFloor>(&mut g, "frame_fill_floor", &indices);
        insert_one::<MutexHash>(&mut g, "mutex_hashmap", &indices);
        insert_one::<RwTrie>(&mut g, "rwlock_radix_trie", &indices);
        insert_one::<Dash>(&mut g, "dashmap", &indices);
        insert_one::<Papaya>(&mut g, "papaya", &indices);
        insert_one::<SccIndex>(&mut g, "scc_hashindex", &indices);
        g.finish();
    }
}

/// A store whose read copies a page of data (a device's DMA, a page cache
/// of a lower layer): `bounce` reads it into a zeroed stack buffer and copies
/// that into the frame, as every load did before issue 10; the direct path
/// copies once, straight into the frame.
struct CopyStore {
    bounce: bool,
}

static SOURCE_PAGE: [u8; PAGE_SIZE] = {
    let mut p = [0u8; PAGE_SIZE];
    let mut i = 0;
    while i < PAGE_SIZE {
        p[i] = (i * 7 + 3) as u8;
        i += 1;
    }
    p
};

impl BackingStore for CopyStore {
    fn read_page(&self, _index: u64, buf: &mut PageBuf) -> Result<(), StoreError> {
        if self.bounce {
            let mut tmp: PageBuf = [0; PAGE_SIZE];
            tmp.copy_from_slice(std::hint::black_box(&SOURCE_PAGE));
            buf.copy_from_slice(&tmp);
        } else {
            buf.copy_from_slice(std::hint::black_box(&SOURCE_PAGE));
        }
        Ok(())
    }
    fn write_page(&self, _index: u64, _src: PageSrc<'_>) -> Result<(), StoreError> {
        Ok(())
    }
}

impl StoreControl for CopyStore {}

fn load_miss(c: &mut Criterion) {
    let mut g = c.benchmark_group("load_miss_64k");
    configure(&mut g);
    g.sample_size(10);
    g.throughput(Throughput::Elements(INSERT_N));
    let pool = Arc::new(FramePool::new(INSERT_N as usize).expect("pool"));
    for (name, bounce) in [("direct", false), ("bounce", true)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let map = PageMap::new(pool.clone(), Arc::new(CopyStore { bounce }));
                    let t = Instant::now();
                    for i in 0..INSERT_N {
                        drop(map.load(i).expect("load"));
                    }
                    total += t.elapsed();
                    drop(map); // not timed
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, find_put, hot_slot, insert, load_miss);
criterion_main!(benches);
