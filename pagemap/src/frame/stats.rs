//! Statistics a user reads while the cache runs: counters sharded so that
//! the hit path adds to a line no other thread writes (one Relaxed add, no
//! lock), and, with `std`, latency histograms (HdrHistogram) of load misses
//! and reclaim batches, also sharded, each shard behind its own mutex taken
//! only on those slow paths.

use alloc::boxed::Box;

use crate::sync::{AtomicU64, Ordering};

/// Counter shards: a power of two, more than the threads a small machine
/// runs at once.
const SHARDS: usize = 16;

/// `N` counters, each split over [`SHARDS`] cache-line-aligned shards.
pub(crate) struct Sharded<const N: usize> {
    shards: Box<[Shard<N>; SHARDS]>,
}

#[repr(align(128))]
struct Shard<const N: usize>([AtomicU64; N]);

/// The calling thread's shard: a hash of the stack's address above 2 MiB
/// granularity (threads' stacks lie megabytes apart, so two threads seldom
/// share a shard; one that does only shares a cache line, never a count).
/// No thread-local look-up and no call: a handful of instructions on the
/// hit path, the same with or without `std` (a kernel's per-CPU stacks
/// spread the same way).
#[inline(always)]
fn shard() -> usize {
    // Loom replays each execution's accesses in order: a choice that
    // depends on where a thread's stack lies would touch other atomics from
    // one execution to the next (loom's own assertions then fail).
    #[cfg(pagemap_loom)]
    {
        0
    }
    #[cfg(not(pagemap_loom))]
    {
        let here = 0u8;
        let addr = core::ptr::addr_of!(here) as usize;
        ((addr >> 21).wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize) >> (usize::BITS - 4))
            & (SHARDS - 1)
    }
}

impl<const N: usize> Sharded<N> {
    pub(crate) fn new() -> Self {
        Self {
            shards: Box::new(core::array::from_fn(|_| {
                Shard(core::array::from_fn(|_| AtomicU64::new(0)))
            })),
        }
    }

    /// Adds `n` to counter `i`. Relaxed: a statistic orders nothing.
    #[inline]
    pub(crate) fn add(&self, i: usize, n: u64) {
        self.shards[shard()].0[i].fetch_add(n, Ordering::Relaxed);
    }

    /// Counter `i` now (a sum over the shards, not one instant's snapshot).
    pub(crate) fn get(&self, i: usize) -> u64 {
        self.shards
            .iter()
            .map(|s| s.0[i].load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

/// Latency histograms in nanoseconds, sharded (std only).
#[cfg(all(feature = "std", not(pagemap_loom)))]
pub(crate) struct Latency {
    shards: Box<[crate::sync::Mutex<hdrhistogram::Histogram<u64>>]>,
}

#[cfg(all(feature = "std", not(pagemap_loom)))]
impl Latency {
    /// Histograms from 1 ns to 60 s at 2 significant digits (1% resolution,
    /// about 20 KiB each, allocated here once).
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..4)
                .map(|_| {
                    crate::sync::Mutex::new(
                        hdrhistogram::Histogram::new_with_bounds(1, 60_000_000_000, 2)
                            .expect("valid histogram bounds"),
                    )
                })
                .collect(),
        }
    }

    /// Records one latency.
    pub(crate) fn record(&self, d: std::time::Duration) {
        let ns = (d.as_nanos() as u64).clamp(1, 60_000_000_000);
        let _ = self.shards[shard() % self.shards.len()].lock().record(ns);
    }

    /// All shards merged (allocates: a reader's call, not the cache's).
    pub(crate) fn snapshot(&self) -> hdrhistogram::Histogram<u64> {
        let mut all = hdrhistogram::Histogram::new_with_bounds(1, 60_000_000_000, 2)
            .expect("valid histogram bounds");
        for s in self.shards.iter() {
            let _ = all.add(&*s.lock());
        }
        all
    }
}

/// Counters of one page map ([`MapStats`] names them).
pub(crate) mod map_ctr {
    pub(crate) const HITS: usize = 0;
    pub(crate) const MISSES: usize = 1;
    pub(crate) const READS: usize = 2;
    pub(crate) const WRITES: usize = 3;
    pub(crate) const EVICTED: usize = 4;
    pub(crate) const EVICTED_DIRTY: usize = 5;
    pub(crate) const EVICTED_MAPPED: usize = 6;
    pub(crate) const N: usize = 7;
}

/// A page map's statistics (see [`PageMap::stats`](crate::PageMap::stats)).
/// Counts since the map was created; every count is of pages, except
/// `reads` and `writes`, which count store requests (one request may carry
/// an extent of pages: a readahead window, a write-back run).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapStats {
    /// Lookups that found the page cached and up to date.
    pub hits: u64,
    /// Loads that had to insert the page (and read it, unless it was new).
    pub misses: u64,
    /// Read requests issued to the store.
    pub reads: u64,
    /// Write requests issued to the store.
    pub writes: u64,
    /// Pages evicted by reclaim (all kinds).
    pub evicted: u64,
    /// Of those, pages written back first.
    pub evicted_dirty: u64,
    /// Of those, pages that were mapped and were unmapped first.
    pub evicted_mapped: u64,
}

impl MapStats {
    pub(crate) fn read(c: &Sharded<{ map_ctr::N }>) -> Self {
        Self {
            hits: c.get(map_ctr::HITS),
            misses: c.get(map_ctr::MISSES),
            reads: c.get(map_ctr::READS),
            writes: c.get(map_ctr::WRITES),
            evicted: c.get(map_ctr::EVICTED),
            evicted_dirty: c.get(map_ctr::EVICTED_DIRTY),
            evicted_mapped: c.get(map_ctr::EVICTED_MAPPED),
        }
    }

    /// `hits / (hits + misses)`, 0 with no lookups.
    pub fn hit_ratio(&self) -> f64 {
        let all = self.hits + self.misses;
        if all == 0 {
            0.0
        } else {
            self.hits as f64 / all as f64
        }
    }

    pub(crate) fn add(&mut self, o: &MapStats) {
        self.hits += o.hits;
        self.misses += o.misses;
        self.reads += o.reads;
        self.writes += o.writes;
        self.evicted += o.evicted;
        self.evicted_dirty += o.evicted_dirty;
        self.evicted_mapped += o.evicted_mapped;
    }
}

/// Counters of a pool.
pub(crate) mod pool_ctr {
    pub(crate) const DIRECT_RECLAIMS: usize = 0;
    pub(crate) const RECLAIM_BATCHES: usize = 1;
    pub(crate) const SCANNED: usize = 2;
    pub(crate) const FREED: usize = 3;
    pub(crate) const KEPT: usize = 4;
    pub(crate) const FAILED_ALLOCS: usize = 5;
    pub(crate) const N: usize = 6;
}

/// A pool's statistics (see [`FramePool::stats`](crate::FramePool::stats)).
#[derive(Clone, Debug)]
pub struct PoolStats {
    /// The sum of every page map's [`MapStats`] drawing on the pool now,
    /// plus those of the maps dropped since the pool was created.
    pub maps: MapStats,
    /// Frames free now.
    pub free_frames: usize,
    /// Allocations that found the pool empty and reclaimed in the
    /// allocating thread (direct-reclaim stalls).
    pub direct_reclaims: u64,
    /// Allocations that failed after reclaim found nothing to evict.
    pub failed_allocs: u64,
    /// Reclaim batches run (direct and background).
    pub reclaim_batches: u64,
    /// Frames the policy looked at.
    pub scanned: u64,
    /// Frames reclaim freed.
    pub reclaimed: u64,
    /// Victims reclaim chose but kept (taken meanwhile, pinned, failed writes).
    pub kept: u64,
    /// Refaults the policy saw (pages loaded again soon after their
    /// eviction; 0 for a policy that cannot tell).
    pub refaults: u64,
    /// Latency of load misses (insert to up to date), in nanoseconds.
    #[cfg(all(feature = "std", not(pagemap_loom)))]
    pub load_miss_ns: hdrhistogram::Histogram<u64>,
    /// Latency of reclaim batches, in nanoseconds.
    #[cfg(all(feature = "std", not(pagemap_loom)))]
    pub reclaim_ns: hdrhistogram::Histogram<u64>,
    /// Time the eviction policy took to choose each batch's victims (its
    /// `select`, the pool's checks of the candidates included: page-table
    /// accessed bits, private frames' reverse-map walks), in nanoseconds
    /// (the Zephyr seed's eviction-selection histogram).
    #[cfg(all(feature = "std", not(pagemap_loom)))]
    pub select_ns: hdrhistogram::Histogram<u64>,
}

/// The pool's counters and histograms.
pub(crate) struct PoolCounters {
    pub(crate) ctr: Sharded<{ pool_ctr::N }>,
    /// What the dropped maps counted (folded in at their drop).
    pub(crate) gone: crate::sync::Mutex<MapStats>,
    #[cfg(all(feature = "std", not(pagemap_loom)))]
    pub(crate) load_miss: Latency,
    #[cfg(all(feature = "std", not(pagemap_loom)))]
    pub(crate) reclaim: Latency,
    #[cfg(all(feature = "std", not(pagemap_loom)))]
    pub(crate) select: Latency,
}

impl PoolCounters {
    pub(crate) fn new() -> Self {
        Self {
            ctr: Sharded::new(),
            gone: crate::sync::Mutex::new(MapStats::default()),
            #[cfg(all(feature = "std", not(pagemap_loom)))]
            load_miss: Latency::new(),
            #[cfg(all(feature = "std", not(pagemap_loom)))]
            reclaim: Latency::new(),
            #[cfg(all(feature = "std", not(pagemap_loom)))]
            select: Latency::new(),
        }
    }

    pub(crate) fn reclaimed(&self, r: &super::ReclaimReport) {
        self.ctr.add(pool_ctr::RECLAIM_BATCHES, 1);
        self.ctr.add(pool_ctr::SCANNED, r.scanned);
        self.ctr.add(pool_ctr::FREED, r.freed);
        self.ctr.add(pool_ctr::KEPT, r.kept);
    }
}
