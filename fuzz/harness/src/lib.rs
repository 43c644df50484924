//! Differential fuzz harness for `pagemap`.
//!
//! [`run`] decodes fuzzer bytes into an [`Input`] (a frame pool size and a
//! sequence of [`Op`]s), runs it against a real `PageMap` over a `MemStore`
//! and against the sequential [`Model`], and panics on the first difference:
//! return values, error variants, page contents, holders, dirty state,
//! `nr_pages`, free frames, report counts, iteration order, store I/O counts
//! and store contents. It is shared by the cargo-fuzz target and by the
//! stable replay test (`tests/replay.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

use pagemap::{Error, FramePool, MemStore, PageMap, PageRef};

pub mod corpus;
pub mod file_ops;
pub mod file_run;
pub mod model;
pub mod ops;
pub mod pools;
pub mod reclaim_ops;
pub mod reclaim_run;
pub mod removal;
pub mod removal_interleaved;
pub mod removal_world;
pub mod swap_ops;
pub mod swap_run;
pub mod vmr_model;
pub mod vmr_ops;
pub mod vmr_run;

pub use model::{Model, E, PAGE_SIZE};
pub use ops::{Idx, Input, Off, Op, Span};

/// What a run exercised: op names and notable outcomes, with counts.
#[derive(Debug, Default, Clone)]
pub struct Stats(pub BTreeMap<&'static str, u64>);

impl Stats {
    pub(crate) fn hit(&mut self, what: &'static str) {
        *self.0.entry(what).or_default() += 1;
    }

    /// Adds another run's counts.
    pub fn merge(&mut self, other: &Stats) {
        for (k, v) in &other.0 {
            *self.0.entry(k).or_default() += v;
        }
    }

    /// Whether `what` happened.
    pub fn has(&self, what: &str) -> bool {
        self.0.get(what).is_some_and(|&n| n > 0)
    }

    /// Panics naming whatever of `must` never happened.
    pub fn require(&self, what: &str, must: &[&str]) {
        let missing: Vec<_> = must.iter().filter(|m| !self.has(m)).collect();
        assert!(
            missing.is_empty(),
            "{what} never exercises {missing:?}; got {:?}",
            self.0
        );
    }
}

/// Runs fuzzer bytes. Panics on any divergence from the model.
pub fn run(data: &[u8]) -> Stats {
    run_input(&Input::decode(data))
}

/// The first and last index in `range`, if it holds any.
pub fn first_last(range: (Bound<u64>, Bound<u64>)) -> Option<(u64, u64)> {
    let first = match range.0 {
        Bound::Included(a) => Some(a),
        Bound::Excluded(a) => a.checked_add(1),
        Bound::Unbounded => Some(0),
    }?;
    let last = match range.1 {
        Bound::Included(b) => Some(b),
        Bound::Excluded(b) => b.checked_sub(1),
        Bound::Unbounded => Some(u64::MAX),
    }?;
    (first <= last).then_some((first, last))
}

/// An error as compared with the model's prediction (see [`E`]).
fn conv(e: &Error) -> E {
    format!("{e:?}")
}

fn conv_all(es: &[Error]) -> Vec<E> {
    es.iter().map(conv).collect()
}

/// The real side of a run.
struct Real<'m> {
    map: &'m PageMap,
    pool: &'m FramePool,
    store: &'m MemStore,
    /// Held references, each with the index the model says it has.
    held: Vec<(u64, PageRef<'m>)>,
}

struct Run<'m> {
    real: Real<'m>,
    model: Model,
    /// Every index any op named (store contents are compared there).
    touched: BTreeSet<u64>,
    /// The cached pages whose contents a check read and found right, with
    /// their frame and the model's version of them then: read again only
    /// once either changes.
    verified: BTreeMap<u64, (pagemap::FrameId, u64)>,
    stats: Stats,
    step: usize,
}

macro_rules! check_eq {
    ($run:expr, $real:expr, $model:expr, $($what:tt)+) => {{
        let (r, m) = (&$real, &$model);
        if r != m {
            panic!(
                "DIVERGENCE at op #{}: {}\n  pagemap: {:?}\n  model:   {:?}\n{}",
                $run.step,
                format!($($what)+),
                r,
                m,
                $run.real.map.dump()
            );
        }
    }};
}

/// Runs a decoded input. Panics on any divergence from the model.
pub fn run_input(input: &Input) -> Stats {
    let pool = pools::pool(input.frames);
    let store = Arc::new(MemStore::new());
    let map = PageMap::new(pool.clone(), store.clone());
    let (mut model, touched, stats) = execute(input, &map, &pool, &store);
    drop(map);
    model.writeback((Bound::Unbounded, Bound::Unbounded));
    assert_eq!(
        pool.free_frames(),
        input.frames,
        "frames leaked by PageMap::drop"
    );
    assert_eq!(
        store.io_counts(),
        (model.store.reads, model.store.writes),
        "io counts after drop"
    );
    for i in touched {
        assert_eq!(
            store.page(i),
            model.store.pages.get(&i).cloned(),
            "store page {i} after drop"
        );
    }
    stats
}

/// Runs the ops and the final checks; returns the model for the drop check.
fn execute(
    input: &Input,
    map: &PageMap,
    pool: &FramePool,
    store: &MemStore,
) -> (Model, BTreeSet<u64>, Stats) {
    let mut run = Run {
        real: Real {
            map,
            pool,
            store,
            held: Vec::new(),
        },
        model: Model::new(input.frames),
        touched: BTreeSet::new(),
        verified: BTreeMap::new(),
        stats: Stats::default(),
        step: 0,
    };
    for (step, op) in input.ops.iter().enumerate() {
        run.step = step;
        run.stats.hit(op.name());
        run.op(op);
        // The index list (radix scans of both trees) only after the op that
        // drops pages in bulk and on `Check`; the counts after every op.
        run.cheap_checks(matches!(op, Op::FreeUnused));
    }
    run.step = input.ops.len();
    // Put every reference, then a full comparison.
    while let Some((i, page)) = run.real.held.pop() {
        drop(page);
        run.model.put(i);
    }
    run.full_check();
    run.store_check();
    // Dropping the map syncs (best effort) and frees every frame. Lift the
    // injected write errors first so that the sync must write everything.
    for &i in &run.model.store.bad_writes {
        store.fail_writes(i, false);
    }
    run.model.store.bad_writes.clear();
    (run.model, run.touched, run.stats)
}

impl<'m> Run<'m> {
    fn idx(&mut self, i: Idx) -> u64 {
        let i = i.get();
        self.touched.insert(i);
        i
    }

    fn span(&mut self, s: Span) -> (Bound<u64>, Bound<u64>) {
        let b = s.bounds();
        for x in [b.0, b.1] {
            if let Bound::Included(i) | Bound::Excluded(i) = x {
                self.touched.insert(i);
            }
        }
        b
    }

    fn pick(&self, r: u8) -> Option<usize> {
        (!self.real.held.is_empty()).then(|| usize::from(r) % self.real.held.len())
    }

    /// Keeps (or drops) the reference from an op that returned one.
    fn took(&mut self, index: u64, page: PageRef<'m>, keep: bool) {
        check_eq!(self, page.index(), index, "PageRef::index");
        assert!(page.is_uptodate(), "returned a page that is not up to date");
        if keep {
            self.real.held.push((index, page));
        } else {
            drop(page);
            self.model.put(index);
        }
    }

    /// `load` (or, with `nowait`, `load_nowait`) of `index`, compared.
    fn load(&mut self, index: u64, keep: bool, nowait: bool) {
        let (real, model) = if nowait {
            (
                self.real.map.load_nowait(index),
                self.model.load_nowait(index),
            )
        } else {
            (self.real.map.load(index), self.model.load(index))
        };
        let what = if nowait { "load_nowait" } else { "load" };
        check_eq!(
            self,
            real.as_ref().map(|_| ()).map_err(conv),
            model,
            "{what}({index})"
        );
        match real {
            Ok(page) => self.took(index, page, keep),
            Err(e) => self.stats.hit(match e {
                _ if nowait => "load_nowait.would_block",
                Error::PoolExhausted { .. } => "load.pool_exhausted",
                Error::Read { .. } => "load.read_error",
                _ => "load.other_error",
            }),
        }
    }

    fn op(&mut self, op: &Op) {
        match *op {
            Op::Load(i) => {
                let i = self.idx(i);
                self.load(i, true, false);
            }
            Op::LoadDrop(i) => {
                let i = self.idx(i);
                self.load(i, false, false);
            }
            Op::Find(i) => {
                let i = self.idx(i);
                let real = self.real.map.find(i);
                let model = self.model.find(i);
                match real {
                    Ok(Some(page)) => {
                        check_eq!(self, true, model, "find({i}) is Some");
                        self.stats.hit("find.hit");
                        self.took(i, page, true);
                    }
                    Ok(None) => check_eq!(self, false, model, "find({i}) is Some"),
                    Err(e) => check_eq!(self, Err::<(), E>(conv(&e)), Ok::<(), E>(()), "find({i})"),
                }
            }
            Op::LoadNowait(i) => {
                let i = self.idx(i);
                self.load(i, true, true);
            }
            Op::Put(r) => {
                if let Some(k) = self.pick(r) {
                    let (i, page) = self.real.held.remove(k);
                    drop(page);
                    self.model.put(i);
                }
            }
            Op::Clone(r) => {
                if let Some(k) = self.pick(r) {
                    let (i, page) = &self.real.held[k];
                    let i = *i;
                    match page.try_clone() {
                        Ok(c) => {
                            self.model.get(i);
                            self.took(i, c, true);
                        }
                        Err(e) => panic!("try_clone({i}): {e:?}"),
                    }
                }
            }
            Op::Write { r, off, len, byte } => {
                if let Some(k) = self.pick(r) {
                    let i = self.real.held[k].0;
                    let data: Vec<u8> = (0..len).map(|n| byte.wrapping_add(n)).collect();
                    let real = self.real.held[k]
                        .1
                        .write(off.get(), &data)
                        .map_err(|e| conv(&e));
                    let model = self.model.write(i, off.get(), &data);
                    if real.is_err() {
                        self.stats.hit("write.out_of_bounds");
                    }
                    check_eq!(self, real, model, "write({i}, {}, {len})", off.get());
                }
            }
            Op::Read { r, off, len } => {
                if let Some(k) = self.pick(r) {
                    let i = self.real.held[k].0;
                    let mut buf = vec![0xa5u8; usize::from(len)];
                    let real = self.real.held[k]
                        .1
                        .read(off.get(), &mut buf)
                        .map(|()| buf)
                        .map_err(|e| conv(&e));
                    let model = self.model.read(i, off.get(), usize::from(len));
                    if real.is_err() {
                        self.stats.hit("read.out_of_bounds");
                    }
                    check_eq!(self, real, model, "read({i}, {}, {len})", off.get());
                }
            }
            Op::MarkDirty(r) | Op::ClearDirty(r) => {
                if let Some(k) = self.pick(r) {
                    let (i, page) = &self.real.held[k];
                    let dirty = matches!(op, Op::MarkDirty(_));
                    if dirty {
                        page.mark_dirty()
                    } else {
                        page.clear_dirty()
                    }
                    let i = *i;
                    self.model.set_dirty(i, dirty);
                }
            }
            Op::FailReads(i, on) | Op::FailWrites(i, on) => {
                let i = self.idx(i);
                let reads = matches!(op, Op::FailReads(..));
                if reads {
                    self.real.store.fail_reads(i, on)
                } else {
                    self.real.store.fail_writes(i, on)
                }
                self.model.inject(i, reads, on);
            }
            Op::StoreSet(i, fill) => {
                let i = self.idx(i);
                let mut page = [fill; PAGE_SIZE];
                page[..8].copy_from_slice(&i.to_le_bytes());
                self.real.store.set_page(i, &page);
                self.model.store.pages.insert(i, Box::new(page));
            }
            Op::FreeUnused => {
                let r = self.real.map.free_unused();
                let m = self.model.free_unused();
                let real = model::Freed {
                    freed: r.freed,
                    written: r.written,
                    referenced: r.referenced,
                    raced: r.raced,
                    mapped: r.mapped,
                    errors: conv_all(&r.errors),
                };
                if !m.errors.is_empty() {
                    self.stats.hit("free_unused.write_error");
                }
                if m.referenced > 0 {
                    self.stats.hit("free_unused.referenced");
                }
                if m.written > 0 {
                    self.stats.hit("free_unused.written");
                }
                check_eq!(self, real, m, "free_unused report");
                self.store_check();
            }
            Op::Writeback(s) => {
                let b = self.span(s);
                let r = self.real.map.writeback(b);
                let m = self.model.writeback(b);
                if !m.1.is_empty() {
                    self.stats.hit("writeback.write_error");
                }
                if m.0 > 0 {
                    self.stats.hit("writeback.written");
                }
                check_eq!(
                    self,
                    (r.written, conv_all(&r.errors)),
                    m,
                    "writeback({b:?})"
                );
                self.store_check();
            }
            Op::Cached(_) | Op::Dirty(_) | Op::NextPresent(_) | Op::NextDirty(_) => self.query(op),
            Op::Check => {
                self.full_check();
                self.store_check();
            }
        }
    }

    /// The range queries: `cached_indices`, `dirty_indices`, `next_present`,
    /// `next_dirty`, each compared with the model's answer.
    fn query(&mut self, op: &Op) {
        let (real, model) = match *op {
            Op::Cached(s) => {
                let b = self.span(s);
                let r = self.real.map.cached_indices(b);
                (format!("{r:?}"), format!("{:?}", self.model.cached(b)))
            }
            Op::Dirty(s) => {
                let b = self.span(s);
                let r = self.real.map.dirty_indices(b);
                (format!("{r:?}"), format!("{:?}", self.model.dirty(b)))
            }
            Op::NextPresent(i) => {
                let i = self.idx(i);
                let r = self.real.map.next_present(i);
                (
                    format!("{r:?}"),
                    format!("{:?}", self.model.next_present(i)),
                )
            }
            Op::NextDirty(i) => {
                let i = self.idx(i);
                let r = self.real.map.next_dirty(i);
                (format!("{r:?}"), format!("{:?}", self.model.next_dirty(i)))
            }
            _ => unreachable!("not a query: {op:?}"),
        };
        check_eq!(self, real, model, "{op:?}");
    }

    /// After every op: counts, frames, store I/O, held references; with
    /// `list`, the cached indices too.
    fn cheap_checks(&mut self, list: bool) {
        let nr = self.model.nr_pages();
        check_eq!(self, self.real.map.nr_pages(), nr, "nr_pages");
        check_eq!(
            self,
            self.real.pool.free_frames(),
            self.model.capacity - nr as usize,
            "free frames"
        );
        check_eq!(
            self,
            self.real.store.io_counts(),
            (self.model.store.reads, self.model.store.writes),
            "store io_counts (reads, writes)"
        );
        let all = (Bound::Unbounded, Bound::Unbounded);
        if list {
            check_eq!(
                self,
                self.real.map.cached_indices(all),
                self.model.cached(all),
                "cached_indices(..)"
            );
        }
        let mem = self.real.map.memory();
        check_eq!(
            self,
            (mem.pages, mem.nodes),
            (nr, self.model.expected_nodes()),
            "memory() (pages, radix nodes)"
        );
        // Each held page once (a page is often held many times).
        let mut seen = BTreeSet::new();
        for k in 0..self.real.held.len() {
            let (i, page) = &self.real.held[k];
            if !seen.insert(*i) {
                continue;
            }
            let m = self.model.page(*i);
            let (h, d) = (page.holders(), page.is_dirty());
            let (mh, md) = (m.holders, m.dirty);
            let i = *i;
            check_eq!(
                self,
                (h, d),
                (mh, md),
                "(holders, is_dirty) of held page {i}"
            );
        }
    }

    /// Every cached page: contents, dirty flag and mark, holders.
    fn full_check(&mut self) {
        self.cheap_checks(true);
        let all = (Bound::Unbounded, Bound::Unbounded);
        check_eq!(
            self,
            self.real.map.dirty_indices(all),
            self.model.dirty(all),
            "dirty_indices(..)"
        );
        let absent: Vec<u64> = self
            .touched
            .iter()
            .copied()
            .filter(|i| !self.model.pages.contains_key(i))
            .collect();
        for i in absent {
            check_eq!(
                self,
                self.real.map.holders(i),
                0,
                "map.holders({i}) of an absent page"
            );
        }
        for i in self.model.keys() {
            let page = match self.real.map.find(i) {
                Ok(Some(p)) => p,
                other => panic!(
                    "DIVERGENCE at op #{}: find({i}) of a cached page: {other:?}",
                    self.step
                ),
            };
            let m = self.model.page(i);
            let seen = (page.frame(), m.version);
            if self.verified.insert(i, seen) != Some(seen) {
                let mut buf = [0u8; PAGE_SIZE];
                page.read_page(&mut buf);
                if buf[..] != m.data[..] {
                    let at = buf
                        .iter()
                        .zip(m.data.iter())
                        .position(|(a, b)| a != b)
                        .unwrap_or(0);
                    panic!(
                        "DIVERGENCE at op #{}: contents of page {i} differ from byte {at}: {} vs model {}",
                        self.step, buf[at], m.data[at]
                    );
                }
            }
            check_eq!(
                self,
                self.real.map.holders(i),
                m.holders + 1,
                "map.holders({i})"
            );
            let got = (page.holders(), page.is_dirty(), page.is_uptodate());
            let want = (m.holders + 1, m.dirty, m.uptodate);
            check_eq!(
                self,
                got,
                want,
                "(holders, dirty, uptodate) of page {i} (+1 for the check)"
            );
        }
    }

    /// The store holds exactly what the model wrote. Checked at every index
    /// the model wrote or caches: a write to a wrong index would also miss
    /// the right one (the write counts are compared after every op).
    fn store_check(&mut self) {
        let mut idx: Vec<u64> = self.model.store.pages.keys().copied().collect();
        idx.extend(self.model.keys());
        for i in idx {
            let real = self.real.store.page(i);
            let model = self.model.store.pages.get(&i);
            if real.as_deref() != model.map(|p| &**p) {
                panic!(
                    "DIVERGENCE at op #{}: store page {i}: pagemap wrote {:?}, model {:?}",
                    self.step,
                    real.map(|p| p[..16].to_vec()),
                    model.map(|p| p[..16].to_vec())
                );
            }
        }
    }
}
