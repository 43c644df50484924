//! Loom models of `pagemap` and `vmr` live in `tests/` (two test binaries,
//! `pagemap` and `vmr`, a module per race); this crate holds their shared
//! harness and fixtures. Everything here only exists under `--cfg pagemap_loom`.
//!
//! Run the suite with `scripts/loom.sh` (release build, its own target dir,
//! `LOOM_MAX_PREEMPTIONS` defaulting to 2). Each model is also bounded in
//! code ([`model`]), so running a test directly never explores unboundedly.
#![cfg(pagemap_loom)]

// The models also run the libraries' debug assertions (the owner check
// before a slot is published, the lazy-MMU checks): a loom build without
// them (`cargo test --release` run directly, without scripts/loom.sh's
// RUSTFLAGS) would pass while checking less, so it does not build.
#[cfg(not(debug_assertions))]
compile_error!(
    "loom models need debug assertions: run scripts/loom.sh, or add `-C debug-assertions` to RUSTFLAGS"
);

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pagemap::{flags, FrameId, FramePool, MemStore, PageMap, PAGE_SIZE};

/// Preemption bound used when `LOOM_MAX_PREEMPTIONS` is not set.
pub const DEFAULT_PREEMPTIONS: usize = 2;

/// Branch budget per execution: the page map plus crossbeam-epoch's
/// bookkeeping take more scheduling points than loom's default 1000.
pub const MAX_BRANCHES: usize = 20_000;

/// Byte patterns shared by the models of a page written twice (the store's
/// old bytes, then two writes), so that each byte found tells which write
/// it came from.
pub mod bytes {
    /// In the store before the model writes.
    pub const OLD: u8 = 0x01;
    /// The first write (before the race).
    pub const FIRST: u8 = 0xaa;
    /// The racing write.
    pub const SECOND: u8 = 0xbb;
}

/// Runs `f` under loom with a bounded preemption count (the environment's
/// `LOOM_MAX_PREEMPTIONS` if set, else [`DEFAULT_PREEMPTIONS`]).
pub fn model<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    model_with(DEFAULT_PREEMPTIONS, f)
}

/// As [`model`], with the preemption bound used when the environment sets none.
pub fn model_with<F>(default_preemptions: usize, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(default_preemptions);
    }
    check(b, f)
}

/// As [`model`], but with at most `cap` preemptions whatever
/// `LOOM_MAX_PREEMPTIONS` says (unless `LOOM_UNCAPPED` is set): for models
/// with three busy threads, whose state space at bound 2 takes minutes.
pub fn model_capped<F>(cap: usize, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut b = loom::model::Builder::new();
    let bound = b.preemption_bound.unwrap_or(DEFAULT_PREEMPTIONS);
    b.preemption_bound = Some(if std::env::var_os("LOOM_UNCAPPED").is_some() {
        bound
    } else {
        bound.min(cap)
    });
    check(b, f)
}

fn check<F>(mut b: loom::model::Builder, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    b.max_branches = b.max_branches.max(MAX_BRANCHES);
    let start = std::time::Instant::now();
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    b.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f()
    });
    if std::env::var_os("LOOM_TIMING").is_some() {
        eprintln!(
            "model: {} executions in {:.2?} (preemption bound {:?})",
            runs.load(Ordering::Relaxed),
            start.elapsed(),
            b.preemption_bound
        );
    }
}

/// How far a model explores: the environment's preemption bound ([`model`]),
/// or that bound capped ([`model_capped`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// `LOOM_MAX_PREEMPTIONS`, else [`DEFAULT_PREEMPTIONS`].
    Env,
    /// At most this many preemptions (three-thread models).
    Cap(usize),
}

/// Runs `f` under loom with `bound`.
pub fn model_bounded<F>(bound: Bound, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    match bound {
        Bound::Env => model(f),
        Bound::Cap(cap) => model_capped(cap, f),
    }
}

/// Runs `f` under loom with `bound`, recording the outcome each execution
/// returns; the caller then asserts on what was seen
/// ([`Outcomes::assert_seen`]). Recording is outside loom (a std mutex), so
/// it adds no step to the model.
pub fn explore<F, O>(bound: Bound, f: F) -> Outcomes
where
    F: Fn() -> O + Sync + Send + 'static,
    O: Into<String>,
{
    let outcomes = Outcomes::new();
    let out = outcomes.clone();
    model_bounded(bound, move || out.record(f()));
    outcomes
}

/// Runs `f` under loom with `bound` and asserts that at least one execution
/// returned `true`: for the variants that disable a protection and must
/// reach the bad outcome (`what`, e.g. "a lost update"), so that the model
/// demonstrably can fail.
pub fn assert_reachable<F>(bound: Bound, what: &str, f: F)
where
    F: Fn() -> bool + Sync + Send + 'static,
{
    let bad = Arc::new(AtomicUsize::new(0));
    let count = bad.clone();
    model_bounded(bound, move || {
        if f() {
            count.fetch_add(1, Ordering::Relaxed);
        }
    });
    let n = bad.load(Ordering::Relaxed);
    if std::env::var_os("LOOM_TIMING").is_some() {
        eprintln!("{what}: {n} executions");
    }
    assert!(n > 0, "{what} must be reachable");
}

/// Spawns a loom thread that runs `f` on a clone of `shared` (an `Arc`, or
/// a tuple of them): the clone-then-spawn every model repeats.
#[track_caller]
pub fn spawn_with<S, T, F>(shared: &S, f: F) -> loom::thread::JoinHandle<T>
where
    S: Clone + Send + 'static,
    T: Send + 'static,
    F: FnOnce(S) -> T + Send + 'static,
{
    let s = shared.clone();
    loom::thread::spawn(move || f(s))
}

/// The distinct outcomes seen across a model's executions, so a test can
/// assert that its interesting interleavings were actually explored (a model
/// whose race never happens proves nothing).
#[derive(Clone, Default)]
pub struct Outcomes(Arc<Mutex<BTreeSet<String>>>);

impl Outcomes {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one execution's outcome.
    pub fn record(&self, outcome: impl Into<String>) {
        self.0.lock().unwrap().insert(outcome.into());
    }

    /// The outcomes seen.
    pub fn seen(&self) -> BTreeSet<String> {
        let seen = self.0.lock().unwrap().clone();
        if std::env::var_os("LOOM_TIMING").is_some() {
            eprintln!("outcomes: {seen:?}");
        }
        seen
    }

    /// Asserts that every one of `expected` was seen at least once.
    pub fn assert_seen(&self, expected: &[&str]) {
        let seen = self.seen();
        for e in expected {
            assert!(
                seen.contains(*e),
                "outcome {e:?} never explored; seen {seen:?}"
            );
        }
    }
}

/// A page map over a [`MemStore`], shared between loom threads.
pub struct Fixture {
    /// The frame pool (only this map uses it).
    pub pool: Arc<FramePool>,
    /// The backing store, with its typed API (I/O counts, error injection).
    pub store: Arc<MemStore>,
    /// The page map.
    pub map: Arc<PageMap>,
}

impl Fixture {
    /// A map with a pool of `frames` frames and an empty store.
    pub fn new(frames: usize) -> Self {
        // Register this (the model's main) thread with the epoch collector
        // now, before any thread is spawned: a registration racing with
        // another thread's multiplies the executions for nothing.
        drop(crossbeam_epoch::pin());
        let pool = Arc::new(FramePool::new(frames).expect("pool"));
        let store = Arc::new(MemStore::new());
        let map = PageMap::new(pool.clone(), store.clone());
        Self { pool, store, map }
    }

    /// Stores a page filled with `byte` at `index` in the backing store.
    pub fn store_page(&self, index: u64, byte: u8) {
        self.store.set_page(index, &[byte; PAGE_SIZE]);
    }

    /// Loads `index` and drops the reference: a clean, unreferenced cached page.
    /// Returns its frame.
    pub fn cache(&self, index: u64) -> FrameId {
        self.map.load(index).expect("load").frame()
    }

    /// A map with `frames` frames whose store holds page `index` filled
    /// with `byte`.
    pub fn with_page(frames: usize, index: u64, byte: u8) -> Self {
        let fx = Self::new(frames);
        fx.store_page(index, byte);
        fx
    }

    /// As [`with_page`](Self::with_page), with the page cached (clean,
    /// unreferenced); returns its frame too.
    pub fn with_cached(frames: usize, index: u64, byte: u8) -> (Self, FrameId) {
        let fx = Self::with_page(frames, index, byte);
        let frame = fx.cache(index);
        (fx, frame)
    }

    /// What became of `[byte; 8]` written at the start of page `index`
    /// (see [`Fate`]).
    pub fn fate(&self, index: u64, byte: u8) -> Fate {
        let stored = self.store.page(index).map(|b| b[..8].to_vec());
        let cached = self
            .map
            .find(index)
            .unwrap()
            .map(|p| (page_prefix(&p, 8), p.is_dirty()));
        let durable = stored.as_deref() == Some(&[byte; 8][..]);
        Fate {
            stored,
            cached,
            durable,
        }
    }

    /// Asserts that `[byte; 8]`, written at the start of page `index`
    /// through a mapping or a reference, is not lost: the store has it, or
    /// the page is cached, dirty, with it. `what` goes into the message.
    pub fn assert_not_lost(&self, index: u64, byte: u8, what: &str) -> Fate {
        let fate = self.fate(index, byte);
        assert!(
            fate.durable || fate.cached == Some((vec![byte; 8], true)),
            "write lost (dirty bit dropped): store {:x?}, cache {:x?}; {what}\n{}",
            fate.stored,
            fate.cached,
            self.map.dump()
        );
        fate
    }

    /// Frames in the pool.
    pub fn capacity(&self) -> usize {
        self.pool.capacity()
    }
}

/// Where a write of 8 bytes ended up, read once everything is quiescent.
#[derive(Debug, PartialEq, Eq)]
pub struct Fate {
    /// The first 8 bytes of the page in the store, if it was ever written.
    pub stored: Option<Vec<u8>>,
    /// The first 8 bytes of the cached page and its dirty bit, if cached.
    pub cached: Option<(Vec<u8>, bool)>,
    /// The store has the write.
    pub durable: bool,
}

/// Loads `index` and writes `[byte; 8]` at its start: a dirty page, still
/// held (drop it for an unreferenced one).
pub fn dirty(map: &PageMap, index: u64, byte: u8) -> pagemap::PageRef<'_> {
    let p = map.load(index).unwrap();
    p.write(0, &[byte; 8]).unwrap();
    p
}

/// Asserts that no frame of `pool` is LOCKED (after a failed read).
pub fn assert_none_locked(pool: &FramePool) {
    for f in all_frames(pool) {
        assert_eq!(pool.flags(f) & flags::LOCKED, 0, "frame {f:?} left LOCKED");
    }
}

/// Whether `frame` is on the pool's free list (free frames have no flags;
/// every frame that belongs to a page map has PAGEMAP).
pub fn is_free(pool: &FramePool, frame: FrameId) -> bool {
    pool.flags(frame) & flags::PAGEMAP == 0
}

/// Every frame of `pool`.
pub fn all_frames(pool: &FramePool) -> impl Iterator<Item = FrameId> + '_ {
    (1..=pool.capacity() as u32).map(|raw| FrameId::new(raw).expect("non-zero"))
}

/// The first `n` bytes of a page as a vector.
pub fn page_prefix(page: &pagemap::PageRef<'_>, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    page.read(0, &mut buf).expect("read");
    buf
}

/// Checks a quiescent map (no thread running, no reference held):
/// * `nr_pages` equals the cached indices and, with the free frames, the
///   pool's capacity (every frame is in the map or free, none leaked or twice);
/// * every up-to-date page has a distinct frame owned by the map, unlocked,
///   UPTODATE, with no holder left;
/// * no frame of the pool is LOCKED;
/// * the tree's DIRTY marks match the frames' DIRTY flags.
pub fn check_quiescent(fx: &Fixture) {
    let map = &fx.map;
    let pool = &fx.pool;
    let cached = map.cached_indices(..);
    let dump = map.dump();
    assert_eq!(
        map.nr_pages(),
        cached.len() as u64,
        "nr_pages vs tree\n{dump}"
    );
    assert_eq!(
        pool.free_frames() + cached.len(),
        pool.capacity(),
        "free frames + cached pages != capacity\n{dump}"
    );
    let free_by_flags = all_frames(pool).filter(|&f| is_free(pool, f)).count();
    assert_eq!(
        free_by_flags,
        pool.free_frames(),
        "free list count vs frame flags\n{dump}"
    );
    for f in all_frames(pool) {
        assert_eq!(
            pool.flags(f) & flags::LOCKED,
            0,
            "frame {f:?} left LOCKED\n{dump}"
        );
    }
    let mut frames = Vec::new();
    let dirty_marked = map.dirty_indices(..);
    for &i in &cached {
        // A page left by a failed read is cached but not up to date: find
        // does not return it.
        if let Some(p) = map.find(i).expect("find") {
            assert_eq!(p.holders(), 1, "page {i} has holders at quiescence\n{dump}");
            assert!(p.is_uptodate());
            let f = p.flags();
            assert_ne!(f & flags::PAGEMAP, 0, "page {i}: frame not owned\n{dump}");
            assert_ne!(f & flags::UPTODATE, 0, "page {i}: not UPTODATE\n{dump}");
            assert_eq!(
                f & flags::DIRTY != 0,
                dirty_marked.contains(&i),
                "page {i}: DIRTY flag vs tree mark\n{dump}"
            );
            frames.push(p.frame());
        }
    }
    let n = frames.len();
    frames.sort();
    frames.dedup();
    assert_eq!(frames.len(), n, "two pages share a frame\n{dump}");
}

/// A [`MemStore`] whose next read or write, once armed, stops until the
/// model opens the gate. It pins a thread inside the store call (no page
/// map lock held, page lock as the caller left it) for exactly as long as
/// the other thread needs, which forces a race window open in every
/// execution instead of hoping the scheduler finds it.
pub struct GatedStore {
    /// The store behind the gate.
    pub inner: MemStore,
    /// 0 idle, 1 read armed, 2 write armed, 3 a call is waiting, 4 open.
    phase: loom::sync::atomic::AtomicUsize,
}

const IDLE: usize = 0;
const READ_ARMED: usize = 1;
const WRITE_ARMED: usize = 2;
const WAITING: usize = 3;
const OPEN: usize = 4;

impl Default for GatedStore {
    fn default() -> Self {
        Self::new()
    }
}

impl GatedStore {
    /// An idle gate over an empty store.
    pub fn new() -> Self {
        Self {
            inner: MemStore::new(),
            phase: loom::sync::atomic::AtomicUsize::new(IDLE),
        }
    }

    /// The next read stops at the gate.
    pub fn arm_read(&self) {
        self.phase.store(READ_ARMED, Ordering::SeqCst);
    }

    /// The next write stops at the gate.
    pub fn arm_write(&self) {
        self.phase.store(WRITE_ARMED, Ordering::SeqCst);
    }

    /// Waits (yielding to loom) until a call is stopped at the gate.
    pub fn wait_for_caller(&self) {
        while self.phase.load(Ordering::SeqCst) != WAITING {
            loom::thread::yield_now();
        }
    }

    /// Lets the stopped call go on.
    pub fn open(&self) {
        self.phase.store(OPEN, Ordering::SeqCst);
    }

    fn gate(&self, armed: usize) {
        if self
            .phase
            .compare_exchange(armed, WAITING, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            while self.phase.load(Ordering::SeqCst) != OPEN {
                loom::thread::yield_now();
            }
        }
    }
}

impl pagemap::BackingStore for GatedStore {
    fn read_page(&self, index: u64, buf: &mut pagemap::PageBuf) -> Result<(), pagemap::StoreError> {
        self.gate(READ_ARMED);
        self.inner.read_page(index, buf)
    }

    fn write_page(&self, index: u64, buf: pagemap::PageSrc<'_>) -> Result<(), pagemap::StoreError> {
        self.gate(WRITE_ARMED);
        self.inner.write_page(index, buf)
    }
}

impl pagemap::StoreControl for GatedStore {
    fn size(&self) -> Result<Option<u64>, pagemap::StoreError> {
        self.inner.size()
    }

    fn set_size(&self, bytes: u64) -> Result<(), pagemap::StoreError> {
        self.inner.set_size(bytes)
    }
}

/// A [`gated_map`] with page `index` dirty (`[byte; 8]` written, not
/// held) and the gate armed for the next write: the write-back of that page
/// stops at the gate.
pub fn gated_dirty(
    frames: usize,
    index: u64,
    byte: u8,
) -> (Arc<FramePool>, Arc<GatedStore>, Arc<PageMap>) {
    let (pool, store, map) = gated_map(frames);
    drop(dirty(&map, index, byte));
    store.arm_write();
    (pool, store, map)
}

/// A page map over a [`GatedStore`] (the main thread's epoch handle is
/// registered first, as in [`Fixture::new`]).
pub fn gated_map(frames: usize) -> (Arc<FramePool>, Arc<GatedStore>, Arc<PageMap>) {
    drop(crossbeam_epoch::pin());
    let pool = Arc::new(FramePool::new(frames).expect("pool"));
    let store = Arc::new(GatedStore::new());
    let map = PageMap::new(pool.clone(), store.clone());
    (pool, store, map)
}

// ---- vmr ------------------------------------------------------------------

/// A page map ([`Fixture`]) plus a simulated machine and one address space
/// over its pool, for the models of `vmr` (`tests/vmr/`).
pub struct VmFixture {
    /// The page map, its pool and store.
    pub fx: Fixture,
    /// The machine (CPUs with TLBs) over `fx.pool`.
    pub machine: Arc<vmr::Machine>,
    /// An address space on `machine`.
    pub space: Arc<vmr::AddressSpace>,
}

impl VmFixture {
    /// A map with `frames` frames and a machine with `ncpus` CPUs.
    pub fn new(frames: usize, ncpus: usize) -> Self {
        let fx = Fixture::new(frames);
        let machine = vmr::Machine::new(fx.pool.clone(), ncpus);
        let space = vmr::AddressSpace::new(machine.clone());
        Self { fx, machine, space }
    }

    /// As [`new`](Self::new), with file page `index` filled with `byte` in
    /// the store and mapped (one page, `prot`, `flags`) in `space`; returns
    /// the mapping's address too.
    pub fn with_mapped(
        frames: usize,
        ncpus: usize,
        index: u64,
        byte: u8,
        prot: vmr::Prot,
        flags: vmr::MapFlags,
    ) -> (Self, u64) {
        let vm = Self::new(frames, ncpus);
        vm.fx.store_page(index, byte);
        let va = vm.mmap(index, 1, prot, flags);
        (vm, va)
    }

    /// A map with `frames` frames and `ncpus` CPUs, file pages
    /// `0..copies.len()` mapped private and read-write in `space`, and CPU 0
    /// writing byte `b` at the start of page `i` for each `copies[i] ==
    /// Some(b)` (the space's own copy-on-write copy, writable and dirty in
    /// CPU 0's TLB). Returns the shared fixture and the mapping's address.
    pub fn with_private_copies(
        frames: usize,
        ncpus: usize,
        copies: &[Option<u8>],
    ) -> (Arc<Self>, u64) {
        let vm = Self::new(frames, ncpus);
        let va = vm.mmap(
            0,
            copies.len() as u64,
            vmr::Prot::RW,
            vmr::MapFlags::PRIVATE,
        );
        let cpu0 = vm.machine.cpu(0);
        for (i, b) in copies.iter().enumerate() {
            if let Some(b) = b {
                cpu0.write(&vm.space, va + i as u64 * PAGE_SIZE as u64, &[*b])
                    .unwrap();
            }
        }
        (Arc::new(vm), va)
    }

    /// CPU `cpu` writes `[byte; 8]` at `va` of `space`.
    pub fn cpu_write(&self, cpu: usize, va: u64, byte: u8) {
        self.machine
            .cpu(cpu)
            .write(&self.space, va, &[byte; 8])
            .expect("write");
    }

    /// CPU `cpu` reads `n` bytes at `va` of `space`.
    pub fn cpu_read(&self, cpu: usize, va: u64, n: usize) -> Vec<u8> {
        cpu_read(self.machine.cpu(cpu), &self.space, va, n).expect("read")
    }

    /// Another address space on the same machine.
    pub fn new_space(&self) -> Arc<vmr::AddressSpace> {
        vmr::AddressSpace::new(self.machine.clone())
    }

    /// Maps `pages` pages of the file from page `pgoff` into `space`, with
    /// `Advice::Random` (no fault-around: the models stay small).
    pub fn mmap_in(
        &self,
        space: &vmr::AddressSpace,
        pgoff: u64,
        pages: u64,
        prot: vmr::Prot,
        flags: vmr::MapFlags,
    ) -> u64 {
        let mut req =
            vmr::MapRequest::new(self.fx.map.clone(), pages * PAGE_SIZE as u64, prot, flags);
        req.pgoff = pgoff;
        req.advice = vmr::Advice::Random;
        space.mmap(req).expect("mmap")
    }

    /// As [`mmap_in`](Self::mmap_in) in `self.space`.
    pub fn mmap(&self, pgoff: u64, pages: u64, prot: vmr::Prot, flags: vmr::MapFlags) -> u64 {
        self.mmap_in(&self.space, pgoff, pages, prot, flags)
    }
}

/// The swap store and swap space of a [`VmFixture::with_swap`] machine.
pub struct SwapParts {
    /// The store, with its typed API (I/O counts, error injection).
    pub store: Arc<pagemap::swap::MemSwap>,
    /// The machine's swap space (its stats: `in_use` locations).
    pub swap: Arc<pagemap::swap::Swap>,
}

impl VmFixture {
    /// A map with `frames` frames and a machine with `ncpus` CPUs and swap
    /// (a [`MemSwap`](pagemap::swap::MemSwap) of `slots` locations): its
    /// private frames can be paged out, by `page_out`, `evict_frame` and
    /// the pool's reclaim (which an allocation in a small pool runs).
    pub fn with_swap(frames: usize, ncpus: usize, slots: u32) -> (Self, SwapParts) {
        let fx = Fixture::new(frames);
        let store = Arc::new(pagemap::swap::MemSwap::new(slots));
        let machine = vmr::Machine::with_swap(fx.pool.clone(), ncpus, store.clone()).expect("swap");
        let swap = machine.swap().expect("swap").clone();
        let space = vmr::AddressSpace::new(machine.clone());
        (Self { fx, machine, space }, SwapParts { store, swap })
    }

    /// Maps `pages` anonymous pages, private and read-write, in `space`.
    pub fn anon(&self, space: &vmr::AddressSpace, pages: u64) -> u64 {
        space
            .mmap_anonymous(
                None,
                pages * PAGE_SIZE as u64,
                vmr::Prot::RW,
                vmr::MapFlags::PRIVATE,
            )
            .expect("mmap_anonymous")
    }
}

impl SwapParts {
    /// After every space of the machine is torn down: every frame is back
    /// in `fx`'s pool and no swap location is in use (none leaked, none
    /// freed twice: a double free panics in the pool or the swap map).
    pub fn assert_drained(&self, fx: &Fixture, what: &str) {
        assert_eq!(
            fx.pool.free_frames(),
            fx.pool.capacity(),
            "a frame leaked ({what})"
        );
        let st = self.swap.stats();
        assert_eq!(st.in_use, 0, "a swap location leaked ({what}): {st:?}");
    }
}

/// The first `n` bytes at `va` read through `cpu`.
pub fn cpu_read(
    cpu: &vmr::Cpu,
    space: &vmr::AddressSpace,
    va: u64,
    n: usize,
) -> Result<Vec<u8>, vmr::Fault> {
    let mut buf = vec![0u8; n];
    cpu.read(space, va, &mut buf)?;
    Ok(buf)
}

/// Checks the PTEs of `pages` pages at `va` of `space`, which show file
/// pages from `pgoff` of `fx.map` (or nothing, once unmapped):
/// * a shared PTE's frame is the frame the page map has at that index now
///   (so it is neither free nor another page's), owned by the map;
/// * a private PTE's frame is not the map's (PAGEMAP clear) and is not
///   recorded by two PTEs.
///
/// Returns the private frames seen, for [`check_frame_accounting`].
pub fn check_ptes(
    fx: &Fixture,
    space: &vmr::AddressSpace,
    va: u64,
    pages: u64,
    pgoff: u64,
) -> Vec<FrameId> {
    let mut private = Vec::new();
    for i in 0..pages {
        let pte = space.pte(va + i * PAGE_SIZE as u64);
        let Some(frame) = FrameId::new(vmr::pte::frame(pte)) else {
            assert_eq!(pte, 0, "PTE with flags and no frame: {pte:#x}");
            continue;
        };
        if pte & vmr::pte::PRIVATE != 0 {
            assert_eq!(
                fx.pool.flags(frame) & flags::PAGEMAP,
                0,
                "private PTE {pte:#x} maps a page-map frame\n{}",
                fx.map.dump()
            );
            assert!(!private.contains(&frame), "private frame mapped twice");
            private.push(frame);
            continue;
        }
        let index = pgoff + i;
        let page = fx.map.find(index).expect("find");
        assert!(
            page.as_ref().is_some_and(|p| p.frame() == frame),
            "PTE {pte:#x} of page {index} maps {frame:?}, the map has {:?} (frame flags {:#x})\n{}",
            page.as_ref().map(|p| p.frame()),
            fx.pool.flags(frame),
            fx.map.dump()
        );
        assert_ne!(fx.pool.flags(frame) & flags::PAGEMAP, 0);
    }
    private
}

/// Every frame is free, cached by `fx.map`, or one of the `private` frames
/// mapped by PTEs (none leaked, none counted twice). Quiescent map only.
pub fn check_frame_accounting(fx: &Fixture, private: &[FrameId]) {
    let cached = fx.map.cached_indices(..).len();
    assert_eq!(
        fx.pool.free_frames() + cached + private.len(),
        fx.pool.capacity(),
        "free {} + cached {cached} + private {private:?} != capacity\n{}",
        fx.pool.free_frames(),
        fx.map.dump()
    );
}

// ---- removal in steps -------------------------------------------------------

/// Runs a removal of `range` ([`PageMap::begin_remove`], per-space
/// batching) one pass at a time, storing each finished pass in `phase` (as
/// `Pass as usize`; see [`pass_of`]). A thread that loads `phase` just
/// before an action is thereby explored at every pass boundary (and inside
/// passes, by preemption), and knows where the removal was when it began.
pub fn remove_in_steps(
    map: &PageMap,
    range: impl std::ops::RangeBounds<u64>,
    phase: &loom::sync::atomic::AtomicUsize,
) -> pagemap::RemoveReport {
    let mut removal = map.begin_remove(range, pagemap::Batching::PerSpace);
    loop {
        let pass = removal.step();
        phase.store(pass as usize, Ordering::SeqCst);
        if pass == pagemap::Pass::Done {
            break;
        }
    }
    removal.finish()
}

/// The pass [`remove_in_steps`] stored as `n`.
pub fn pass_of(n: usize) -> pagemap::Pass {
    use pagemap::Pass::*;
    [Start, Marked, Revoked, ShotDown, Reaped, WrittenBack, Done][n]
}
