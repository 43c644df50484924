//! `reclaim_ops`: one to three page maps over `MemStore`s sharing a pool of
//! 2 to 8 frames that reclaims on allocation (the default CLOCK policy),
//! against a model of each file's bytes, its dirty pages, the held
//! references and the private frames (issue 12).
//!
//! The model does not predict which page the policy evicts; it checks that
//! whatever left was allowed to and lost nothing, and it predicts exactly
//! when an allocation may fail. Checked:
//!
//! * every allocation (a load that misses, `alloc_private`) succeeds unless
//!   the pool has no free frame and every cached page of every map is
//!   unevictable for a modelled reason (held, or dirty with its store write
//!   failing); it then fails with `PoolExhausted` (the right capacity and
//!   private count) and changes nothing: same pages cached, same dirty;
//! * every byte read equals the model;
//! * a held page stays cached; a page dirty in the model is still cached
//!   and dirty unless it was written (the store then holds the model's
//!   bytes): a failed write-back keeps the page, dirty, and nothing is
//!   lost; no page is dirty that nobody wrote; every page that is not dirty
//!   has the model's bytes in the store;
//! * `free_frames + cached pages of every live map + private frames ==
//!   capacity` after every op;
//! * the counters: a failed allocation is counted once; an allocation that
//!   found a free frame reclaims nothing; one that found none reclaims
//!   directly (one stall) and, if it succeeded, freed at least a frame;
//!   pages the maps say they evicted are the frames the pool says it
//!   reclaimed; a `reclaim(n)` frees what it reports, at most `n`;
//! * write-back and fsync errors only for pages whose writes fail (or an
//!   earlier failure, for fsync), and then always;
//! * a dropped map (at once, or at the release of its last held reference)
//!   wrote every dirty page whose write does not fail.

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};

use pagemap::{Error, FramePool, MemStore, OwnedPageRef, PageMap, PrivateFrame};

use crate::reclaim_ops::{ReclaimInput, ReclaimOp, PAGES};
use crate::{Stats, PAGE_SIZE};

/// Known bugs that [`run`] steps around and [`run_strict`] does not: none
/// (`unevictable_miscounts`, `PoolExhausted::unevictable` counting the
/// policy's checks rather than frames, is fixed: its seed is
/// `fixed_unevictable_miscounts`).
pub const KNOWN_BUGS: &[&str] = &[];

/// Held references at most (more loads let go at once).
const MAX_HELD: usize = 16;

/// Runs fuzzer bytes, stepping around [`KNOWN_BUGS`]. Panics on any other
/// divergence from the model.
pub fn run(data: &[u8]) -> Stats {
    run_input(&ReclaimInput::decode(data), false)
}

/// As [`run`], but a known bug panics too (the `bug_*` seeds).
pub fn run_strict(data: &[u8]) -> Stats {
    run_input(&ReclaimInput::decode(data), true)
}

/// One file: its store, its map (while alive) and its model.
struct File {
    store: Arc<MemStore>,
    /// The runner's handle (`None` once dropped: the map may live on in
    /// held references).
    map: Option<Arc<PageMap>>,
    weak: Weak<PageMap>,
    /// The bytes reads must return, by page (absent: zeroes).
    content: Vec<Box<[u8; PAGE_SIZE]>>,
    /// Pages written since they were last stored.
    dirty: BTreeSet<u64>,
    /// Pages whose store writes fail.
    failing: BTreeSet<u64>,
    /// A write of one of its pages failed since its last fsync (that
    /// fsync may report it).
    earlier_error: bool,
    /// The map was dropped and its store checked.
    gone: bool,
}

impl File {
    fn new() -> Self {
        let store = Arc::new(MemStore::new());
        Self {
            map: None,
            weak: Weak::new(),
            store,
            content: (0..PAGES).map(|_| Box::new([0; PAGE_SIZE])).collect(),
            dirty: BTreeSet::new(),
            failing: BTreeSet::new(),
            earlier_error: false,
            gone: false,
        }
    }

    fn open(pool: &Arc<FramePool>) -> Self {
        let mut f = Self::new();
        let map = PageMap::new(pool.clone(), f.store.clone());
        f.weak = Arc::downgrade(&map);
        f.map = Some(map);
        f
    }

    /// The store's bytes of `page`.
    fn stored(&self, page: u64) -> Box<[u8; PAGE_SIZE]> {
        self.store
            .page(page)
            .unwrap_or_else(|| Box::new([0; PAGE_SIZE]))
    }

    /// Pages that reclaim cannot evict for a reason the model knows of
    /// (held ones aside): dirty with failing writes.
    fn stuck(&self, page: u64) -> bool {
        self.dirty.contains(&page) && self.failing.contains(&page)
    }
}

/// What the runner knows of one live map at a moment.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Snapshot {
    cached: Vec<(usize, Vec<u64>)>,
    dirty: Vec<(usize, Vec<u64>)>,
}

struct Runner {
    pool: Arc<FramePool>,
    files: Vec<File>,
    /// The file each map slot shows now.
    slots: Vec<usize>,
    /// Held references: (file, page, reference).
    held: Vec<(usize, u64, OwnedPageRef)>,
    private: Vec<PrivateFrame>,
    /// Allocations that failed, that found the pool empty, pages reclaimed:
    /// the pool's `failed_allocs`, `direct_reclaims`, `reclaimed` must agree.
    failed: u64,
    direct: u64,
    reclaimed: u64,
    stats: Stats,
    step: usize,
    op: ReclaimOp,
}

/// The pattern a write puts at byte `i` of its data.
fn pattern(byte: u8, i: usize) -> u8 {
    byte.wrapping_add((i % 251) as u8)
}

fn span(off: u16, len: u8) -> (usize, usize) {
    let off = usize::from(off) % PAGE_SIZE;
    let len = (1 + usize::from(len) * 17).min(PAGE_SIZE - off);
    (off, len)
}

/// Runs one input. Panics on the first divergence from the model.
pub fn run_input(input: &ReclaimInput, strict: bool) -> Stats {
    // No known bug is stepped around: strict and not are the same run.
    let _ = strict;
    let pool = Arc::new(FramePool::new(input.frames).expect("valid capacity"));
    // One thread: its own holds cannot end while it allocates, so a full
    // pool of held frames fails at once rather than after the grace.
    pool.set_held_grace(std::time::Duration::ZERO);
    let files: Vec<File> = (0..input.maps).map(|_| File::open(&pool)).collect();
    let mut r = Runner {
        pool,
        slots: (0..files.len()).collect(),
        files,
        held: Vec::new(),
        private: Vec::new(),
        failed: 0,
        direct: 0,
        reclaimed: 0,
        stats: Stats::default(),
        step: 0,
        op: ReclaimOp::Check,
    };
    for (step, op) in input.ops.iter().enumerate() {
        r.step = step;
        r.op = *op;
        r.stats.hit(op.name());
        r.apply(*op);
        r.check();
    }
    // The end: every reference let go, writes succeed, every map dropped;
    // then every frame is free and every store holds its model.
    r.step = input.ops.len();
    r.op = ReclaimOp::Check;
    for f in &mut r.files {
        for &p in &f.failing {
            f.store.fail_writes(p, false);
        }
        f.failing.clear();
    }
    r.held.clear();
    r.private.clear();
    for f in &mut r.files {
        f.map = None;
    }
    r.check();
    r.check_pool_counters();
    let s = r.pool.stats();
    if s.maps.evicted_dirty > 0 {
        r.stats.hit("evicted.dirty");
    }
    if s.reclaimed > s.maps.evicted_dirty {
        r.stats.hit("evicted.clean");
    }
    assert_eq!(
        r.pool.free_frames(),
        r.pool.capacity(),
        "frames leaked after every map was dropped"
    );
    assert_eq!(r.pool.nr_maps(), 0, "a dropped map is still registered");
    r.stats.hit("finished");
    r.stats
}

impl Runner {
    fn fail(&self, msg: std::fmt::Arguments<'_>) -> ! {
        panic!(
            "reclaim_ops step {} ({:?}): {msg}\n  pool: {:?}",
            self.step, self.op, self.pool
        );
    }

    fn file_of(&self, map: u8) -> usize {
        self.slots[usize::from(map) % self.slots.len()]
    }

    fn live(&self) -> Vec<(usize, Arc<PageMap>)> {
        self.files
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.gone)
            .filter_map(|(i, f)| f.weak.upgrade().map(|m| (i, m)))
            .collect()
    }

    fn snapshot(&self) -> Snapshot {
        let live = self.live();
        Snapshot {
            cached: live
                .iter()
                .map(|(i, m)| (*i, m.cached_indices(..)))
                .collect(),
            dirty: live
                .iter()
                .map(|(i, m)| (*i, m.dirty_indices(..)))
                .collect(),
        }
    }

    fn is_held(&self, file: usize, page: u64) -> bool {
        self.held.iter().any(|h| h.0 == file && h.1 == page)
    }

    /// Whether some cached page could be evicted now (not held, not dirty
    /// with failing writes).
    fn evictable(&self, snap: &Snapshot) -> bool {
        snap.cached.iter().any(|(file, pages)| {
            pages
                .iter()
                .any(|&p| !self.is_held(*file, p) && !self.files[*file].stuck(p))
        })
    }

    /// Pages the live maps say they evicted so far (cheap: their sharded
    /// counters; the pool's own statistics build histograms, far too slow
    /// to read around every allocation).
    fn evicted_now(&self) -> u64 {
        self.live().iter().map(|(_, m)| m.stats().evicted).sum()
    }

    /// An allocation, checked: `alloc` runs it; `hit`: it needs no frame.
    /// `None` if it failed with `PoolExhausted` (checked to be allowed).
    fn alloc_checked<T>(
        &mut self,
        hit: bool,
        what: &'static str,
        alloc: impl FnOnce() -> Result<T, Error>,
    ) -> Option<T> {
        let before = self.snapshot();
        let free = self.pool.free_frames();
        let may_fail = !hit && free == 0 && !self.evictable(&before);
        let e0 = self.evicted_now();
        let result = alloc();
        let evicted = self.evicted_now() - e0;
        self.reclaimed += evicted;
        if !hit && free == 0 {
            // Every allocation that finds the pool empty stalls once in
            // direct reclaim (checked against the pool's count later).
            self.direct += 1;
        } else if evicted != 0 {
            self.fail(format_args!(
                "{what}: evicted {evicted} pages though a frame was free ({free}) or the page \
                 cached ({hit})"
            ));
        }
        match result {
            Ok(v) => {
                if may_fail {
                    self.fail(format_args!(
                        "{what}: succeeded with no free frame and nothing evictable: {before:?}"
                    ));
                }
                if !hit && free == 0 {
                    self.stats.hit("alloc.reclaimed");
                    if evicted == 0 {
                        self.fail(format_args!(
                            "{what}: a full pool's allocation evicted nothing"
                        ));
                    }
                } else {
                    self.stats.hit(if hit { "alloc.hit" } else { "alloc.free" });
                }
                Some(v)
            }
            Err(Error::PoolExhausted {
                capacity,
                private,
                unevictable,
            }) => {
                if !may_fail {
                    self.fail(format_args!(
                        "{what}: PoolExhausted (private {private}, unevictable \
                         {unevictable}) though {} (free {free}, held {:?}): {before:?}",
                        if hit {
                            "the page was cached"
                        } else {
                            "a page was evictable"
                        },
                        self.held.iter().map(|h| (h.0, h.1)).collect::<Vec<_>>()
                    ));
                }
                self.stats.hit("alloc.pool_exhausted");
                if capacity != self.pool.capacity() || private as usize != self.private.len() {
                    self.fail(format_args!(
                        "{what}: PoolExhausted {{ capacity: {capacity}, private: {private} }}, \
                         expected {} and {}",
                        self.pool.capacity(),
                        self.private.len()
                    ));
                }
                let page_frames = self.pool.capacity() - self.private.len();
                if unevictable as usize != page_frames {
                    self.fail(format_args!(
                        "{what}: PoolExhausted says {unevictable} pages unevictable, but \
                         {page_frames} frames hold pages, all unevictable"
                    ));
                }
                self.failed += 1;
                let after = self.snapshot();
                if after != before || evicted != 0 {
                    self.fail(format_args!(
                        "{what}: a failed allocation changed the cache (evicted {evicted}): \
                         {before:?} -> {after:?}"
                    ));
                }
                None
            }
            Err(e) => self.fail(format_args!("{what}: unexpected error {e:?}")),
        }
    }

    /// The pool's counters against the runner's: allocations failed,
    /// direct-reclaim stalls, pages reclaimed (exact: one thread).
    fn check_pool_counters(&self) {
        let s = self.pool.stats();
        let got = (s.failed_allocs, s.direct_reclaims, s.reclaimed);
        let want = (self.failed, self.direct, self.reclaimed);
        if got != want {
            self.fail(format_args!(
                "pool counters (failed allocs, direct reclaims, reclaimed) are {got:?}, \
                 expected {want:?}"
            ));
        }
        if s.maps.evicted != s.reclaimed || s.maps.evicted_dirty > s.maps.evicted {
            self.fail(format_args!(
                "the maps evicted {} ({} dirty), the pool reclaimed {}",
                s.maps.evicted, s.maps.evicted_dirty, s.reclaimed
            ));
        }
    }

    /// `load(page)` of `file`'s map, checked as an allocation; `None` if
    /// the pool is exhausted (allowed).
    fn load(&mut self, file: usize, page: u64) -> Option<OwnedPageRef> {
        let map = self.files[file].weak.upgrade().expect("a live map");
        let hit = map.cached_indices(page..=page).contains(&page);
        let r = self.alloc_checked(hit, "load", || map.load(page).map(|p| p.into_owned(&map)))?;
        if r.index() != page {
            self.fail(format_args!("load({page}) gave page {}", r.index()));
        }
        Some(r)
    }

    fn compare(&self, file: usize, page: &OwnedPageRef) {
        let mut buf = vec![0u8; PAGE_SIZE];
        page.get().read(0, &mut buf).expect("a whole-page read");
        let want = &self.files[file].content[page.index() as usize];
        if let Some(at) = (0..PAGE_SIZE).find(|&i| buf[i] != want[i]) {
            self.fail(format_args!(
                "file {file} page {}: byte {at} is {}, the model says {}",
                page.index(),
                buf[at],
                want[at]
            ));
        }
    }

    fn write(&mut self, file: usize, page: &OwnedPageRef, off: u16, len: u8, byte: u8) {
        let (off, len) = span(off, len);
        let data: Vec<u8> = (0..len).map(|i| pattern(byte, i)).collect();
        if let Err(e) = page.get().write(off, &data) {
            self.fail(format_args!("write({off}, {len}): {e:?}"));
        }
        let f = &mut self.files[file];
        let index = page.index();
        f.content[index as usize][off..off + len].copy_from_slice(&data);
        f.dirty.insert(index);
        if !page.get().is_dirty() {
            self.fail(format_args!("page {index} clean after a write"));
        }
    }

    fn apply(&mut self, op: ReclaimOp) {
        match op {
            ReclaimOp::Load { map, page } => {
                let (file, page) = (self.file_of(map), u64::from(page) % PAGES);
                if let Some(r) = self.load(file, page) {
                    self.compare(file, &r);
                    if self.held.len() < MAX_HELD {
                        self.held.push((file, page, r));
                        self.stats.hit("load.held");
                    }
                }
            }
            ReclaimOp::Release { k } => {
                if !self.held.is_empty() {
                    let k = usize::from(k) % self.held.len();
                    let (file, _, r) = self.held.remove(k);
                    let last =
                        self.files[file].map.is_none() && !self.held.iter().any(|h| h.0 == file);
                    drop(r);
                    if last {
                        self.stats.hit("release.drops_map");
                    }
                }
            }
            ReclaimOp::Read { map, page } => {
                let (file, page) = (self.file_of(map), u64::from(page) % PAGES);
                if let Some(r) = self.load(file, page) {
                    self.compare(file, &r);
                    self.stats.hit("read.ok");
                }
            }
            ReclaimOp::Write {
                map,
                page,
                off,
                len,
                byte,
            } => {
                let (file, page) = (self.file_of(map), u64::from(page) % PAGES);
                if let Some(r) = self.load(file, page) {
                    self.write(file, &r, off, len, byte);
                    self.compare(file, &r);
                    self.stats.hit("write.ok");
                }
            }
            ReclaimOp::WriteHeld { k, off, len, byte } => {
                if !self.held.is_empty() {
                    let k = usize::from(k) % self.held.len();
                    let (file, page, r) = self.held.remove(k);
                    self.write(file, &r, off, len, byte);
                    self.compare(file, &r);
                    self.held.insert(k, (file, page, r));
                    self.stats.hit("write_held.ok");
                }
            }
            ReclaimOp::Writeback { map } => {
                let file = self.file_of(map);
                let m = self.files[file].map.clone().expect("a slot's map");
                let stuck = self.stuck_pages(file);
                let rep = m.writeback(..);
                let errors = rep.errors.len() as u64 + rep.errors_dropped;
                if errors != stuck {
                    self.fail(format_args!(
                        "writeback: {errors} errors, {stuck} dirty pages fail their writes"
                    ));
                }
                if stuck > 0 {
                    self.files[file].earlier_error = true;
                    self.stats.hit("writeback.write_error");
                } else if rep.written > 0 {
                    self.stats.hit("writeback.written");
                }
                self.expect_only_stuck_dirty(file, &m, "writeback");
            }
            ReclaimOp::Fsync { map } => {
                let file = self.file_of(map);
                let m = self.files[file].map.clone().expect("a slot's map");
                let stuck = self.stuck_pages(file);
                match m.fsync() {
                    Ok(_) if stuck > 0 => {
                        self.fail(format_args!("fsync Ok with {stuck} failing dirty pages"))
                    }
                    Ok(_) => self.stats.hit("fsync.ok"),
                    Err(e) => {
                        let pages = e.report.errors.len() as u64 + e.report.errors_dropped;
                        if pages != stuck || (stuck == 0 && !self.files[file].earlier_error) {
                            self.fail(format_args!(
                                "fsync: {e} ({pages} pages), {stuck} failing dirty pages, \
                                 earlier error possible: {}",
                                self.files[file].earlier_error
                            ));
                        }
                        self.stats.hit(if stuck > 0 {
                            "fsync.write_error"
                        } else {
                            "fsync.earlier"
                        });
                    }
                }
                self.files[file].earlier_error = false;
                self.expect_only_stuck_dirty(file, &m, "fsync");
            }
            ReclaimOp::FailWrites { map, page, on } => {
                let (file, page) = (self.file_of(map), u64::from(page) % PAGES);
                let f = &mut self.files[file];
                f.store.fail_writes(page, on);
                if on {
                    f.failing.insert(page);
                } else {
                    f.failing.remove(&page);
                }
            }
            ReclaimOp::Reclaim { n } => {
                let want = 1 + usize::from(n % 8);
                let before = self.snapshot();
                let evictable = self.evictable(&before);
                let any_stuck = self
                    .files
                    .iter()
                    .any(|f| f.failing.iter().any(|p| f.dirty.contains(p)));
                let free = self.pool.free_frames();
                let e0 = self.evicted_now();
                let rep = self.pool.reclaim(want);
                let freed = self.pool.free_frames() - free;
                let evicted = self.evicted_now() - e0;
                self.reclaimed += evicted;
                if evicted != freed as u64 {
                    self.fail(format_args!(
                        "reclaim({want}): the maps evicted {evicted}, {freed} frames freed"
                    ));
                }
                if rep.freed != freed as u64 || freed > want || rep.dirty > rep.freed {
                    self.fail(format_args!(
                        "reclaim({want}): {rep:?}, but {freed} frames were freed"
                    ));
                }
                if freed == 0 && evictable && !any_stuck {
                    self.fail(format_args!(
                        "reclaim({want}) freed nothing though a page was evictable: {before:?}"
                    ));
                }
                if rep.write_errors > 0 && !any_stuck {
                    self.fail(format_args!("reclaim: write errors with no failing page"));
                }
                if rep.write_errors > 0 {
                    for f in &mut self.files {
                        if f.failing.iter().any(|p| f.dirty.contains(p)) {
                            f.earlier_error = true;
                        }
                    }
                    self.stats.hit("reclaim.write_error");
                }
                self.stats.hit(match (freed, rep.dirty) {
                    (0, _) => "reclaim.none",
                    (_, 0) => "reclaim.clean",
                    _ => "reclaim.dirty",
                });
            }
            ReclaimOp::DropMap { map, keep_refs } => {
                let slot = usize::from(map) % self.slots.len();
                let file = self.slots[slot];
                if !keep_refs {
                    self.held.retain(|h| h.0 != file);
                }
                if self.held.iter().any(|h| h.0 == file) {
                    self.stats.hit("drop_map.kept_alive");
                }
                self.files[file].map = None;
                self.files.push(File::open(&self.pool));
                self.slots[slot] = self.files.len() - 1;
            }
            ReclaimOp::Private { alloc } => {
                if alloc {
                    let pool = self.pool.clone();
                    if let Some(f) =
                        self.alloc_checked(false, "alloc_private", || pool.alloc_private())
                    {
                        self.private.push(f);
                        self.stats.hit("private.alloc");
                    }
                } else if self.private.pop().is_some() {
                    self.stats.hit("private.free");
                }
            }
            ReclaimOp::Check => {
                for slot in 0..self.slots.len() {
                    let file = self.slots[slot];
                    for page in 0..PAGES {
                        if let Some(r) = self.load(file, page) {
                            self.compare(file, &r);
                        }
                    }
                }
            }
        }
        // Any op during which a page that fails its writes was dirty may
        // have failed a write-back of it (reclaim's), for fsync to report.
        for f in &mut self.files {
            if f.failing.iter().any(|p| f.dirty.contains(p)) {
                f.earlier_error = true;
            }
        }
    }

    fn stuck_pages(&self, file: usize) -> u64 {
        let f = &self.files[file];
        f.failing.iter().filter(|p| f.dirty.contains(p)).count() as u64
    }

    /// After a write-back of all of `file`: only pages whose writes fail
    /// are dirty.
    fn expect_only_stuck_dirty(&mut self, file: usize, m: &PageMap, what: &str) {
        let dirty = m.dirty_indices(..);
        let f = &self.files[file];
        let want: Vec<u64> = f
            .dirty
            .iter()
            .copied()
            .filter(|p| f.failing.contains(p))
            .collect();
        if dirty != want {
            self.fail(format_args!(
                "{what}: dirty pages {dirty:?}, expected those failing their writes: {want:?}"
            ));
        }
    }

    /// The state after an op (see the module's documentation).
    fn check(&mut self) {
        let capacity = self.pool.capacity();
        let mut cached_total = 0usize;
        for file in 0..self.files.len() {
            if self.files[file].gone {
                continue;
            }
            let Some(map) = self.files[file].weak.upgrade() else {
                self.dropped(file);
                continue;
            };
            let cached = map.cached_indices(..);
            let real_dirty = map.dirty_indices(..);
            if map.nr_pages() != cached.len() as u64 {
                self.fail(format_args!(
                    "file {file}: nr_pages {} but {} cached",
                    map.nr_pages(),
                    cached.len()
                ));
            }
            cached_total += cached.len();
            for h in self.held.iter().filter(|h| h.0 == file) {
                if !cached.contains(&h.1) {
                    self.fail(format_args!("file {file}: held page {} not cached", h.1));
                }
            }
            if let Some(p) = real_dirty
                .iter()
                .find(|p| !self.files[file].dirty.contains(p))
            {
                self.fail(format_args!(
                    "file {file}: page {p} dirty, nothing wrote it"
                ));
            }
            let f = &self.files[file];
            let cleaned: Vec<u64> = f
                .dirty
                .iter()
                .copied()
                .filter(|p| !real_dirty.contains(p))
                .collect();
            for &p in &cleaned {
                if f.failing.contains(&p) {
                    self.fail(format_args!(
                        "file {file}: page {p} was dirty and fails its writes, but is {}",
                        if cached.contains(&p) {
                            "clean"
                        } else {
                            "gone (its data lost)"
                        }
                    ));
                }
            }
            for p in cleaned {
                self.files[file].dirty.remove(&p);
            }
            let f = &self.files[file];
            for p in 0..PAGES {
                if !f.dirty.contains(&p) && f.stored(p)[..] != f.content[p as usize][..] {
                    self.fail(format_args!(
                        "file {file}: page {p} is not dirty (cached: {}) but the store \
                         differs from the model: data lost",
                        cached.contains(&p)
                    ));
                }
            }
        }
        let free = self.pool.free_frames();
        if free + cached_total + self.private.len() != capacity {
            self.fail(format_args!(
                "{free} free + {cached_total} cached + {} private != {capacity} frames",
                self.private.len()
            ));
        }
        // The pool's statistics are slow to read (about 160 us: they merge
        // histograms): every 16 ops and at the end.
        if self.step % 16 == 15 {
            self.check_pool_counters();
        }
        if self.live().len() != self.pool.nr_maps() {
            self.fail(format_args!(
                "{} maps alive, {} registered",
                self.live().len(),
                self.pool.nr_maps()
            ));
        }
    }

    /// `file`'s map is gone: it wrote back every dirty page it could.
    fn dropped(&mut self, file: usize) {
        self.files[file].gone = true;
        let f = &self.files[file];
        for p in 0..PAGES {
            if f.stuck(p) {
                continue; // lost, as documented (a drop can only log it)
            }
            if f.stored(p)[..] != f.content[p as usize][..] {
                self.fail(format_args!(
                    "file {file}: dropped, page {p} (dirty: {}) not in the store",
                    f.dirty.contains(&p)
                ));
            }
        }
        if f.failing.iter().any(|p| f.dirty.contains(p)) {
            self.stats.hit("drop_map.lost_failing");
        }
        self.stats.hit("drop_map.dropped");
    }
}
