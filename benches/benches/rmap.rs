//! Issue 10 item 6: the reverse map, with 10,000 mappings of a 1M-page file
//! registered (random ranges of 1 to 256 pages).
//!
//! * `rmap_add_remove_10k`: register one more mapping, then unregister it.
//!   `pagemap` is `PageMap::add_mapping` + `PageMap::remove_mapping` (the
//!   augmented AVL tree, O(log n)); `rebuild_baseline` the reverse map as it
//!   was before issue 10 (`benches/src/rebuild_rmap.rs`: sorted `Vec`,
//!   segment tree rebuilt in O(n), remove by linear scan) behind the same
//!   `parking_lot::RwLock`, write-locked per call as the page map does.
//! * `rmap_covers_10k`: "is page i mapped" for random pages: `pagemap` is
//!   `PageMap::is_mapped`, `rebuild_baseline` a read lock and `covers`.
//!
//! Both sides of a group run in the same process on the same ranges and
//! queries: read the ratio. The mappers added are built outside the timed
//! part and cycled through (an `Arc` clone per add, the same on both sides).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::rebuild_rmap::{RebuildMap, Span};
use benches::{SplitMix64, ZeroStore};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use pagemap::{FramePool, Mapper, PageMap};
use parking_lot::RwLock;

/// Mappings registered while measuring.
const MAPPINGS: usize = 10_000;
/// Pages of the mapped file.
const FILE_PAGES: u64 = 1 << 20;
/// Longest mapping, in pages.
const MAX_LEN: u64 = 256;
/// Mappers cycled through by the add/remove benchmark (a power of two).
const SPARE: usize = 1 << 10;
/// Pages queried by the covers benchmark, cycled through (a power of two).
const QUERIES: usize = 1 << 14;

fn configure(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.sample_size(15);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(1));
}

/// `n` mappers over random ranges of the file.
fn spans(n: usize, r: &mut SplitMix64) -> Vec<Arc<dyn Mapper>> {
    (0..n)
        .map(|_| {
            let first = r.next_u64() % FILE_PAGES;
            let last = first + r.next_u64() % MAX_LEN;
            Arc::new(Span(first, last)) as Arc<dyn Mapper>
        })
        .collect()
}

/// The new reverse map (inside a page map) and the baseline, holding the
/// same mappings.
struct Fixture {
    map: Arc<PageMap>,
    base: RwLock<RebuildMap>,
    spare: Vec<Arc<dyn Mapper>>,
    queries: Vec<u64>,
}

impl Fixture {
    fn new() -> Self {
        let mut r = SplitMix64(0x5eed_0a10);
        // The page map caches nothing here: one frame is enough.
        let pool = Arc::new(FramePool::new(1).expect("frame pool"));
        let map = PageMap::new(pool, Arc::new(ZeroStore));
        let base = RwLock::new(RebuildMap::new());
        for m in spans(MAPPINGS, &mut r) {
            map.add_mapping(m.clone());
            base.write().add(m);
        }
        let spare = spans(SPARE, &mut r);
        let queries: Vec<u64> = (0..QUERIES).map(|_| r.next_u64() % FILE_PAGES).collect();
        let f = Self {
            map,
            base,
            spare,
            queries,
        };
        // Both answer alike (and the queries hit some pages, miss others).
        let hits = f
            .queries
            .iter()
            .filter(|&&i| {
                let hit = f.map.is_mapped(i);
                assert_eq!(hit, f.base.read().covers(i), "page {i}");
                hit
            })
            .count();
        eprintln!("  covers: {hits} of {QUERIES} queried pages mapped");
        assert!(hits > 0 && hits < QUERIES);
        f
    }

    /// Both hold exactly the fixture's mappings (checked after measuring).
    fn check(&self) {
        assert_eq!(self.map.nr_mappings(), MAPPINGS);
        assert_eq!(self.base.read().len(), MAPPINGS);
    }
}

fn add_remove(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("rmap_add_remove_10k");
    configure(&mut g);
    let mask = SPARE - 1;
    g.bench_function("pagemap", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for k in 0..iters as usize {
                let id = f.map.add_mapping(f.spare[k & mask].clone());
                black_box(f.map.remove_mapping(id).expect("just added"));
            }
            t.elapsed()
        })
    });
    g.bench_function("rebuild_baseline", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for k in 0..iters as usize {
                let id = f.base.write().add(f.spare[k & mask].clone());
                black_box(f.base.write().remove(id).expect("just added"));
            }
            t.elapsed()
        })
    });
    g.finish();
    f.check();
}

fn covers(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("rmap_covers_10k");
    configure(&mut g);
    let mask = QUERIES - 1;
    g.bench_function("pagemap", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for k in 0..iters as usize {
                black_box(f.map.is_mapped(f.queries[k & mask]));
            }
            t.elapsed()
        })
    });
    g.bench_function("rebuild_baseline", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for k in 0..iters as usize {
                black_box(f.base.read().covers(f.queries[k & mask]));
            }
            t.elapsed()
        })
    });
    g.finish();
    f.check();
}

fn rmap(c: &mut Criterion) {
    let f = Fixture::new();
    add_remove(c, &f);
    covers(c, &f);
}

criterion_group!(benches, rmap);
criterion_main!(benches);
