//! Shared fixtures for the page map benchmarks.
//!
//! Every structure compared against [`PageMap`] maps a `u64` page index to an
//! `Arc<PageMeta>`, the per-page metadata a page cache built on a generic
//! concurrent map would keep (flags + index, as the page map's frame
//! metadata does). A lookup "find + put" is: find the entry, take a counted
//! reference (clone the `Arc`, or the slot's refcount for the page map), and
//! drop it.
//!
//! The big (1M-page) structures are built once per process ([`OnceLock`]s)
//! and shared by every benchmark that needs them.

pub mod fault;
pub mod frame_alloc;
pub mod policy_sim;
pub mod rebuild_rmap;
pub mod removal;

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use pagemap::{BackingStore, FramePool, PageBuf, PageMap, StoreControl};
use parking_lot::{Mutex, RwLock};
use radix_trie::Trie;

/// Hasher of every hash map baseline: foldhash, as a performance-minded user
/// would configure (the std SipHash default would make the baselines look
/// worse than they are).
pub type Hasher = foldhash::fast::RandomState;

/// Pages resident in the find+put benchmarks.
pub const RESIDENT: u64 = 1 << 20;
/// Length of each precomputed index stream (a power of two).
pub const STREAM_LEN: usize = 1 << 20;
/// Zipf exponent of the skewed stream.
pub const ZIPF_S: f64 = 0.99;

/// Per-page metadata held by the baselines (16 bytes, as a frame's in the pool).
#[derive(Debug)]
pub struct PageMeta {
    /// Page flags.
    pub flags: AtomicU32,
    /// Page index.
    pub index: u64,
}

/// A fresh `Arc<PageMeta>` for `index`.
pub fn meta(index: u64) -> Arc<PageMeta> {
    Arc::new(PageMeta {
        flags: AtomicU32::new(0),
        index,
    })
}

/// A backing store of zero pages that discards writes.
#[derive(Debug, Default)]
pub struct ZeroStore;

impl BackingStore for ZeroStore {
    fn read_page(&self, _index: u64, buf: &mut PageBuf) -> Result<(), pagemap::StoreError> {
        buf.fill(0);
        Ok(())
    }
    fn write_page(
        &self,
        _index: u64,
        _src: pagemap::PageSrc<'_>,
    ) -> Result<(), pagemap::StoreError> {
        Ok(())
    }
}

impl StoreControl for ZeroStore {}

// ---- random streams --------------------------------------------------------

/// splitmix64: a tiny, good-enough PRNG (no dependency needed for this).
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Uniform page indices in `0..n` (`n` a power of two).
pub fn uniform_stream(n: u64, len: usize, seed: u64) -> Vec<u32> {
    assert!(n.is_power_of_two() && n <= 1 << 32);
    let mut r = SplitMix64(seed);
    (0..len).map(|_| (r.next_u64() & (n - 1)) as u32).collect()
}

/// Zipf(`s`)-distributed page indices in `0..n` (`n` a power of two), by
/// inversion of the exact CDF. Rank `k` (0 = hottest) is scattered to index
/// `k * odd mod n`, a bijection, so the hot pages are spread over the file
/// rather than packed into its first few tree leaves or cache lines.
pub fn zipf_stream(n: u64, s: f64, len: usize, seed: u64) -> Vec<u32> {
    assert!(n.is_power_of_two() && n <= 1 << 32);
    let mut cdf = Vec::with_capacity(n as usize);
    let mut sum = 0.0;
    for k in 1..=n {
        sum += 1.0 / (k as f64).powf(s);
        cdf.push(sum);
    }
    let mut r = SplitMix64(seed);
    (0..len)
        .map(|_| {
            let u = r.next_f64() * sum;
            let rank = cdf.partition_point(|&c| c < u) as u64;
            (rank.min(n - 1).wrapping_mul(0x9E37_79B1) & (n - 1)) as u32
        })
        .collect()
}

/// The uniform stream over the resident pages (built once).
pub fn uniform() -> &'static [u32] {
    static S: OnceLock<Vec<u32>> = OnceLock::new();
    S.get_or_init(|| uniform_stream(RESIDENT, STREAM_LEN, 0x5eed_0001))
}

/// The Zipf stream over the resident pages (built once).
pub fn zipf() -> &'static [u32] {
    static S: OnceLock<Vec<u32>> = OnceLock::new();
    S.get_or_init(|| zipf_stream(RESIDENT, ZIPF_S, STREAM_LEN, 0x5eed_0002))
}

// ---- the structures --------------------------------------------------------

/// One find + put: look `index` up, take a counted reference, drop it.
pub trait FindPut: Sync {
    /// Does one find + put.
    fn find_put(&self, index: u64);
}

/// Our page map, with its pool (declared first so it drops first).
pub struct Ours {
    /// The map.
    pub map: Arc<PageMap>,
}

impl Ours {
    /// A map with pages `indices` resident, in a pool of exactly that many frames.
    pub fn build(indices: impl Iterator<Item = u64> + Clone) -> Self {
        let pool = Arc::new(FramePool::new(indices.clone().count()).expect("frame pool"));
        let map = PageMap::new(pool, Arc::new(ZeroStore));
        for i in indices {
            drop(map.load(i).expect("load"));
        }
        Self { map }
    }
}

impl FindPut for Ours {
    #[inline]
    fn find_put(&self, index: u64) {
        // Dropping the PageRef is the put.
        let _ = black_box(self.map.find(index));
    }
}

/// The floor: a flat array of counters, `fetch_add(1)` then `fetch_sub(1)`.
pub struct Flat(pub Vec<AtomicU64>);

impl Flat {
    /// `n` zero counters.
    pub fn build(n: u64) -> Self {
        Self((0..n).map(|_| AtomicU64::new(0)).collect())
    }
}

impl FindPut for Flat {
    #[inline]
    fn find_put(&self, index: u64) {
        let c = &self.0[index as usize];
        c.fetch_add(1, Ordering::Acquire);
        black_box(c);
        c.fetch_sub(1, Ordering::Release);
    }
}

/// The simplest design: one mutex around a hash map.
pub struct MutexHash(pub Mutex<HashMap<u64, Arc<PageMeta>, Hasher>>);

impl FindPut for MutexHash {
    #[inline]
    fn find_put(&self, index: u64) {
        // The guard is a temporary: unlocked at the end of this statement,
        // the Arc is dropped later, outside the lock.
        let a = self.0.lock().get(&index).cloned();
        black_box(a);
    }
}

/// A reader-writer lock around a radix trie.
pub struct RwTrie(pub RwLock<Trie<u64, Arc<PageMeta>>>);

impl FindPut for RwTrie {
    #[inline]
    fn find_put(&self, index: u64) {
        let a = self.0.read().get(&index).cloned();
        black_box(a);
    }
}

/// dashmap (sharded RwLocks).
pub struct Dash(pub dashmap::DashMap<u64, Arc<PageMeta>, Hasher>);

impl FindPut for Dash {
    #[inline]
    fn find_put(&self, index: u64) {
        let a = self.0.get(&index).map(|r| r.value().clone());
        black_box(a);
    }
}

/// papaya (lock-free, seize reclamation); pinned per operation, as ours is.
pub struct Papaya(pub papaya::HashMap<u64, Arc<PageMeta>, Hasher>);

impl FindPut for Papaya {
    #[inline]
    fn find_put(&self, index: u64) {
        let a = self.0.pin().get(&index).cloned();
        black_box(a);
    }
}

/// scc::HashIndex (read-optimised, epoch reclamation).
pub struct SccIndex(pub scc::HashIndex<u64, Arc<PageMeta>, Hasher>);

impl FindPut for SccIndex {
    #[inline]
    fn find_put(&self, index: u64) {
        let a = self.0.peek_with(&index, |_, v| v.clone());
        black_box(a);
    }
}

/// Inserting page `index` into a structure (for the insert benchmarks).
pub trait Insert {
    /// An empty structure able to hold `n` pages (only the page map's pool
    /// is sized; the maps grow as users' would).
    fn fresh(n: usize) -> Self;
    /// Inserts page `index`.
    fn insert(&self, index: u64);
}

/// A pool shared by the page maps of successive insert iterations, so frames
/// (and their committed memory) are reused rather than faulted in each time.
fn insert_pool(n: usize) -> Arc<FramePool> {
    static P: OnceLock<Mutex<HashMap<usize, Arc<FramePool>>>> = OnceLock::new();
    let pools = P.get_or_init(Default::default);
    pools
        .lock()
        .entry(n)
        .or_insert_with(|| Arc::new(FramePool::new(n).expect("frame pool")))
        .clone()
}

impl Insert for Ours {
    fn fresh(n: usize) -> Self {
        let pool = insert_pool(n);
        assert_eq!(pool.free_frames(), n, "previous map not dropped");
        Self {
            map: PageMap::new(pool, Arc::new(ZeroStore)),
        }
    }
    #[inline]
    fn insert(&self, index: u64) {
        drop(self.map.load(index).expect("load"));
    }
}

/// The floor of the page map's insert: what any page cache's load does
/// whatever its index structure: take a frame from the pool and fill it with
/// the page read from the store. No index is kept (the frames are freed when
/// the structure drops, untimed). `pagemap - fill_floor` is the cost of the
/// radix tree, its locks and the slot word.
pub struct FillFloor {
    pool: Arc<FramePool>,
    frames: std::cell::RefCell<Vec<pagemap::PrivateFrame>>,
}

impl Insert for FillFloor {
    fn fresh(n: usize) -> Self {
        let pool = insert_pool(n);
        assert_eq!(pool.free_frames(), n, "previous structure not dropped");
        Self {
            pool,
            frames: std::cell::RefCell::new(Vec::with_capacity(n)),
        }
    }
    #[inline]
    fn insert(&self, index: u64) {
        let frame = self.pool.alloc_private().expect("frame");
        let mut buf: PageBuf = [0; pagemap::PAGE_SIZE];
        ZeroStore.read_page(index, &mut buf).expect("zero store");
        frame.write_page(&buf);
        self.frames.borrow_mut().push(frame);
    }
}

impl Insert for MutexHash {
    fn fresh(_n: usize) -> Self {
        Self(Mutex::new(HashMap::with_hasher(Hasher::default())))
    }
    #[inline]
    fn insert(&self, index: u64) {
        self.0.lock().insert(index, meta(index));
    }
}

impl Insert for RwTrie {
    fn fresh(_n: usize) -> Self {
        Self(RwLock::new(Trie::new()))
    }
    #[inline]
    fn insert(&self, index: u64) {
        self.0.write().insert(index, meta(index));
    }
}

impl Insert for Dash {
    fn fresh(_n: usize) -> Self {
        Self(dashmap::DashMap::with_hasher(Hasher::default()))
    }
    #[inline]
    fn insert(&self, index: u64) {
        self.0.insert(index, meta(index));
    }
}

impl Insert for Papaya {
    fn fresh(_n: usize) -> Self {
        Self(papaya::HashMap::with_hasher(Hasher::default()))
    }
    #[inline]
    fn insert(&self, index: u64) {
        self.0.pin().insert(index, meta(index));
    }
}

impl Insert for SccIndex {
    fn fresh(_n: usize) -> Self {
        Self(scc::HashIndex::with_hasher(Hasher::default()))
    }
    #[inline]
    fn insert(&self, index: u64) {
        let _ = self.0.insert_sync(index, meta(index));
    }
}

/// Builds any baseline with pages `indices` resident.
pub fn build<T: Insert>(indices: impl Iterator<Item = u64>) -> T {
    let t = T::fresh(0);
    for i in indices {
        t.insert(i);
    }
    t
}

// ---- the shared 1M-page structures -----------------------------------------

macro_rules! resident {
    ($name:ident, $ty:ty, $make:expr) => {
        /// The shared structure with every page in `0..RESIDENT` (built once).
        pub fn $name() -> &'static $ty {
            static S: OnceLock<$ty> = OnceLock::new();
            S.get_or_init(|| {
                let t = Instant::now();
                let s = $make;
                eprintln!(
                    "built {} ({} pages) in {:.2?}",
                    stringify!($name),
                    RESIDENT,
                    t.elapsed()
                );
                s
            })
        }
    };
}

resident!(ours, Ours, {
    let o = Ours::build(0..RESIDENT);
    assert_eq!(o.map.nr_pages(), RESIDENT);
    assert!(o.map.find(RESIDENT - 1).expect("find").is_some());
    o
});
resident!(flat, Flat, Flat::build(RESIDENT));
resident!(mutex_hash, MutexHash, build(0..RESIDENT));
resident!(rw_trie, RwTrie, build(0..RESIDENT));
resident!(dash, Dash, build(0..RESIDENT));
resident!(papaya_map, Papaya, build(0..RESIDENT));
resident!(scc_index, SccIndex, build(0..RESIDENT));

// ---- drivers ---------------------------------------------------------------

/// `iters` find+puts on `s`, following `stream` cyclically from `offset`.
#[inline]
pub fn drive<T: FindPut>(s: &T, stream: &[u32], offset: usize, iters: u64) {
    debug_assert!(stream.len().is_power_of_two());
    let mask = stream.len() - 1;
    let mut k = offset;
    for _ in 0..iters {
        s.find_put(u64::from(stream[k & mask]));
        k = k.wrapping_add(1);
    }
}

/// Runs `iters` find+puts on each of `threads` threads (the same number on
/// each, thread t starting at a different point of `stream`), all released
/// together by a barrier. Returns wall time (first start to last finish)
/// divided by `threads`: reported per iteration, that is the time per
/// operation of the whole machine (aggregate throughput, inverted).
pub fn run_threads<T: FindPut>(s: &T, stream: &[u32], threads: usize, iters: u64) -> Duration {
    if threads == 1 {
        let t = Instant::now();
        drive(s, stream, 0, iters);
        return t.elapsed();
    }
    let barrier = Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                sc.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    drive(s, stream, t * stream.len() / threads, iters);
                    (start, Instant::now())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect()
    });
    let start = spans.iter().map(|s| s.0).min().expect("threads");
    let end = spans.iter().map(|s| s.1).max().expect("threads");
    (end - start) / threads as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_is_skewed_and_in_range() {
        let n = 1 << 12;
        let s = zipf_stream(n, ZIPF_S, 1 << 16, 1);
        assert!(s.iter().all(|&i| u64::from(i) < n));
        let hottest = 0u32; // rank 0 maps to index 0
        let hits = s.iter().filter(|&&i| i == hottest).count();
        // H(4096, 0.99) ~ 9: rank 0 gets ~11% of draws.
        assert!(hits > (1 << 16) / 20, "hottest page drawn {hits} times");
    }

    #[test]
    fn every_structure_finds_and_puts() {
        let idx = [0u64, 5, 700];
        let o = Ours::build(idx.iter().copied());
        let m: MutexHash = build(idx.iter().copied());
        let r: RwTrie = build(idx.iter().copied());
        let d: Dash = build(idx.iter().copied());
        let p: Papaya = build(idx.iter().copied());
        let c: SccIndex = build(idx.iter().copied());
        for &i in &idx {
            o.find_put(i);
            assert_eq!(o.map.find(i).unwrap().unwrap().holders(), 1);
            assert!(m.0.lock().get(&i).is_some());
            assert!(r.0.read().get(&i).is_some());
            assert!(d.0.get(&i).is_some());
            assert!(p.0.pin().get(&i).is_some());
            assert!(c.0.peek_with(&i, |_, v| v.index) == Some(i));
            for s in [&m as &dyn FindPut, &r, &d, &p, &c] {
                s.find_put(i);
            }
        }
        let f = Flat::build(8);
        run_threads(&f, &[3, 4], 2, 100);
        assert!(f.0.iter().all(|c| c.load(Ordering::Relaxed) == 0));
    }
}
