//! The `removal_interleaved` driver: a removal ([`PageMap::begin_remove`])
//! advanced one pass at a time, interleaved by the input with lookups,
//! CPU reads and writes (copy-on-write faults included), munmap, mmap,
//! msync, writeback, injected write errors and other removers, all on one
//! OS thread, so that a failing input replays exactly.
//!
//! Input: 3 header bytes (pool size, CPUs, initial mappings), then 4-byte
//! ops `[kind, a, b, c]` (missing bytes read as 0); [`encode`] writes them.
//! `kind % 24` picks the op ([`kind`]); 0-2 advance the remover by one
//! `Removal::step` (starting a removal of `range(a, b)` when none runs).
//!
//! Model: the contents of each file page (what every shared mapping, every
//! lookup and, once written back, the store must show) and of each private
//! copy-on-write copy (per space and window slot), updated by every
//! successful write; removal never changes contents. Checked after every op:
//! [`check_structure`]; every page that is not cached is in the store
//! exactly as the model says (a removed page was written first); every CPU
//! read and every read through a held reference, byte for byte. At the end:
//! the remover finishes, references go, every mapped page is read through
//! every CPU, write errors are lifted and the file synced (the store must
//! then equal the model), everything but pinned pages is removed and read
//! again (from the store), the spaces go, and every frame is back in the
//! pool.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

use pagemap::{Batching, Error, PageMap, PageRef, Pass, Removal, RemoveReport, PAGE_SIZE};
use vmr::{pte, AddressSpace, Fault, MapFlags, MapRequest, Prot, VmError};

use crate::removal_world::*;
use crate::Stats;

/// Ops run per input at most.
pub const MAX_OPS: usize = 256;
/// References the lookup actor holds at most.
pub const MAX_HELD: usize = 6;

/// Op kinds (`kind % 24`).
pub mod kind {
    /// Advance the remover one pass (begin a removal of `range(a, b)` if
    /// none runs; drop it, taking its report, once `Done`). 0, 1 and 2.
    pub const STEP: u8 = 0;
    /// `find(index_of(a % 12))`, held.
    pub const FIND: u8 = 3;
    /// `load(index_of(a % 12))`, held.
    pub const LOAD: u8 = 4;
    /// Drop the `a % n`-th held reference.
    pub const RELEASE: u8 = 5;
    /// Write through the `a % n`-th held reference (offset `b`, length `c`).
    pub const REF_WRITE: u8 = 6;
    /// Read the `a % n`-th held reference whole.
    pub const REF_READ: u8 = 7;
    /// CPU `a & 1` reads slot `b % 16` of space `(a >> 1) & 1` (`c`: offset, length).
    pub const CPU_READ: u8 = 8;
    /// CPU `a & 1` writes slot `b % 16` of space `(a >> 1) & 1`.
    pub const CPU_WRITE: u8 = 9;
    /// munmap of `c % 5` pages (0: zero length) from slot `b % 16` of space `a & 1`.
    pub const MUNMAP: u8 = 10;
    /// mmap at slot `b % 16` of space `a & 1`, `1 + c % 8` pages (clamped);
    /// `a & 2`: shared; `(a >> 2) & 3`: 1 POPULATE, 2 LOCKED;
    /// `(a >> 4) % 12`: the first logical page.
    pub const MMAP: u8 = 11;
    /// msync of `1 + c % 4` pages from slot `b % 16` of space `a & 1`.
    pub const MSYNC: u8 = 12;
    /// `writeback(range(a, b))`.
    pub const WRITEBACK: u8 = 13;
    /// `writeback(..)` (formerly `sync()`).
    pub const SYNC: u8 = 14;
    /// `fail_writes(index_of(a % 12), b & 1 == 1)`.
    pub const FAIL_WRITES: u8 = 15;
    /// CPU `a & 1` flushes its TLB.
    pub const FLUSH_TLB: u8 = 16;
    /// `remove(range(a, b))` (`try_remove` while a removal runs: `Busy`).
    pub const REMOVE: u8 = 17;
    /// `try_remove(range(a, b))`.
    pub const TRY_REMOVE: u8 = 18;
    /// `free_unused()` (skipped while a removal runs).
    pub const FREE_UNUSED: u8 = 19;
    /// `invalidate(range(a, b))` (skipped while a removal runs).
    pub const INVALIDATE: u8 = 20;
    /// Finish the running removal (drop it).
    pub const FINISH: u8 = 21;
    /// Full check (contents of every cached page; lighter during a removal).
    pub const CHECK: u8 = 22;
    /// Drop space `a & 1` (teardown) and make a new, empty one.
    pub const RESPAWN: u8 = 23;
}

/// A decoded input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// Header byte 0: pool size (`& 0x80`: 64 frames, else `6 + b % 27`).
    pub frames: u8,
    /// Header byte 1: CPUs `1 + b % 2`.
    pub cpus: u8,
    /// Header byte 2: initial mappings, bit per (space, kind): bit `2s`
    /// shared, `2s + 1` private, of pages 0..8 at slot 0 (shared) or 8
    /// (private); bit 4: those are MAP_LOCKED in space 1.
    pub layout: u8,
    /// `[kind, a, b, c]`.
    pub ops: Vec<[u8; 4]>,
}

impl Input {
    /// Every byte string decodes.
    pub fn decode(data: &[u8]) -> Input {
        let b = |i: usize| data.get(i).copied().unwrap_or(0);
        let ops = data
            .get(3..)
            .unwrap_or(&[])
            .chunks(4)
            .take(MAX_OPS)
            .map(|c| {
                let mut op = [0u8; 4];
                op[..c.len()].copy_from_slice(c);
                op
            })
            .collect();
        Input {
            frames: b(0),
            cpus: b(1),
            layout: b(2),
            ops,
        }
    }

    /// The exact inverse of [`decode`](Self::decode) (up to trailing zeros).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.frames, self.cpus, self.layout];
        for op in &self.ops {
            out.extend_from_slice(op);
        }
        out
    }

    fn nframes(&self) -> usize {
        if self.frames & 0x80 != 0 {
            64
        } else {
            6 + usize::from(self.frames % 27)
        }
    }
}

/// Writes an input: header and ops.
pub fn encode(frames: u8, cpus: u8, layout: u8, ops: &[[u8; 4]]) -> Vec<u8> {
    Input {
        frames,
        cpus,
        layout,
        ops: ops.to_vec(),
    }
    .encode()
}

/// Known bugs [`run`] steps around (none open).
pub const KNOWN_BUGS: &[&str] = &[];

/// Runs fuzzer bytes; panics on any divergence.
pub fn run(data: &[u8]) -> Stats {
    run_input(&Input::decode(data), false)
}

/// Runs fuzzer bytes without stepping around [`KNOWN_BUGS`].
pub fn run_strict(data: &[u8]) -> Stats {
    run_input(&Input::decode(data), true)
}

/// The range `range(a, b)` of the op docs: small, top, huge, unbounded,
/// empty and `u64::MAX`-ending shapes.
pub fn range(a: u8, b: u8) -> (Bound<u64>, Bound<u64>) {
    use Bound::*;
    let lo = index_of(usize::from(a & 15) % NPAGES);
    let hi = index_of(usize::from(b) % NPAGES);
    match (a >> 4) % 10 {
        0..=2 => (Included(lo), Included(hi)),
        3 => (Included(lo), Unbounded),
        4 => (Unbounded, Excluded(hi)),
        5 => (Unbounded, Unbounded),
        6 => (Included(u64::MAX - u64::from(a % 8)), Included(u64::MAX)),
        7 => (Included(1 << 40), Excluded((1 << 40) + u64::from(b))),
        8 => (Excluded(lo), Included(hi)),
        _ => (Included(lo), Excluded(lo)),
    }
}

/// Whether `r` holds no index (`remove` returns at once).
pub fn is_empty(r: &(Bound<u64>, Bound<u64>)) -> bool {
    crate::first_last(*r).is_none()
}

/// What one window slot maps, and its private copy if any.
type Slot = Option<(SlotMap, Option<Box<Page>>)>;

struct Model {
    /// Contents of each logical file page.
    file: Vec<Box<Page>>,
    /// Per space, per window slot: what it maps and its private copy.
    slots: Vec<[Slot; WINDOW]>,
}

impl Model {
    /// What slot `slot` of space `s` shows.
    fn view(&self, s: usize, slot: usize) -> Option<&Page> {
        self.slots[s][slot]
            .as_ref()
            .map(|(m, p)| p.as_deref().unwrap_or(&self.file[m.lp]))
    }

    fn layout(&self, s: usize) -> [Option<SlotMap>; WINDOW] {
        let mut out = [None; WINDOW];
        for (o, m) in out.iter_mut().zip(&self.slots[s]) {
            *o = m.as_ref().map(|(m, _)| *m);
        }
        out
    }
}

/// What happened to the running removal's victims, for the coverage stats.
#[derive(Default)]
struct Events {
    /// Victims looked up (find/load) between Marked and Done.
    lookup: BTreeSet<u64>,
    /// Victims faulted on between Revoked and Reaped.
    fault_revoked: BTreeSet<u64>,
    /// Victims whose private mapping took a copy-on-write fault.
    cow: BTreeSet<u64>,
    /// Victims whose PTE was revoked with a dirty bit, harvested by the reap.
    harvested: BTreeSet<u64>,
}

struct Drv<'m> {
    w: &'m World,
    map: &'m PageMap,
    spaces: Vec<Arc<AddressSpace>>,
    model: Model,
    removal: Option<(Removal<'m>, Events)>,
    held: Vec<(usize, PageRef<'m>)>,
    bad_writes: BTreeSet<usize>,
    /// Pages whose writes ever failed (a stepped removal's report may name
    /// a page whose failure was lifted after its write pass).
    ever_bad: BTreeSet<usize>,
    stats: Stats,
    step: usize,
    op: [u8; 4],
    #[allow(dead_code)]
    strict: bool,
}

/// Runs a decoded input. Panics on any divergence.
pub fn run_input(input: &Input, strict: bool) -> Stats {
    let cpus = 1 + usize::from(input.cpus % 2);
    let world = World::new(input.nframes(), cpus);
    let stats;
    {
        let mut d = Drv {
            w: &world,
            map: &world.map,
            spaces: (0..2)
                .map(|_| AddressSpace::new(world.machine.clone()))
                .collect(),
            model: Model {
                file: (0..NPAGES).map(pattern).collect(),
                slots: vec![Default::default(), Default::default()],
            },
            removal: None,
            held: Vec::new(),
            bad_writes: BTreeSet::new(),
            ever_bad: BTreeSet::new(),
            stats: Stats::default(),
            step: 0,
            op: [0; 4],
            strict,
        };
        for s in 0..2 {
            for shared in [true, false] {
                let bit = 2 * s + usize::from(!shared);
                if input.layout & (1 << bit) != 0 {
                    let flags = if s == 1 && input.layout & 0x10 != 0 {
                        2
                    } else {
                        0
                    };
                    let slot = if shared { 0 } else { 8 };
                    d.mmap(s, slot, 8, shared, flags, 0);
                }
            }
        }
        d.check();
        for (step, op) in input.ops.iter().enumerate() {
            d.step = step;
            d.op = *op;
            d.op(*op);
            d.check();
        }
        d.step = input.ops.len();
        d.op = [0xff; 4];
        d.finish();
        stats = std::mem::take(&mut d.stats);
    }
    let map = Arc::try_unwrap(world.map).unwrap_or_else(|_| panic!("map still shared"));
    drop(map);
    assert_eq!(
        world.pool.free_frames(),
        world.pool.capacity(),
        "frames leaked after the map was dropped"
    );
    stats
}

/// Bytes a write stores: unique per op.
fn stamp(step: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| match i % 4 {
            0 => 0xee,
            1 => step as u8,
            2 => (step >> 8) as u8,
            _ => (i as u8).wrapping_mul(29) ^ 0x5a,
        })
        .collect()
}

/// Offset and length of an access selector `c`, within one page.
fn access(c: u8) -> (usize, usize) {
    let off = (usize::from(c) * 61) % PAGE_SIZE;
    let len = (1 + (usize::from(c) * 13) % 64).min(PAGE_SIZE - off);
    (off, len)
}

fn is_exhaustion(f: &Fault) -> bool {
    matches!(
        f,
        Fault::Io {
            source: Error::PoolExhausted { .. },
            ..
        } | Fault::OutOfMemory { .. }
    )
}

impl<'m> Drv<'m> {
    fn fail(&self, what: String) -> ! {
        panic!(
            "REMOVAL DIVERGENCE at op #{} {:?}: {what}\n  removal pass: {:?}\n  held: {:?}\n{}",
            self.step,
            self.op,
            self.removal.as_ref().map(|(r, _)| r.pass()),
            self.held.iter().map(|(lp, _)| *lp).collect::<Vec<_>>(),
            self.map.dump()
        )
    }

    fn pass(&self) -> Option<Pass> {
        self.removal.as_ref().map(|(r, _)| r.pass())
    }

    fn victim(&self, lp: usize) -> bool {
        self.removal
            .as_ref()
            .is_some_and(|(r, _)| r.victims().frame_at(index_of(lp)).is_some())
    }

    fn held_counts(&self) -> BTreeMap<u64, u64> {
        let mut out = BTreeMap::new();
        for (lp, _) in &self.held {
            *out.entry(index_of(*lp)).or_default() += 1;
        }
        out
    }

    fn check(&mut self) {
        let layouts: Vec<_> = (0..2).map(|s| self.model.layout(s)).collect();
        let spaces: Vec<_> = (0..2).map(|s| (&*self.spaces[s], layouts[s])).collect();
        let victims = self.removal.as_ref().map(|(r, _)| r.victims().pages());
        let cached = check_structure(
            self.map,
            &self.w.pool,
            &spaces,
            &self.held_counts(),
            victims,
        )
        .unwrap_or_else(|e| self.fail(e));
        // A page that is not cached is in the store as the model says.
        for lp in 0..NPAGES {
            let i = index_of(lp);
            if cached.binary_search(&i).is_ok() {
                continue;
            }
            let s = self.w.store.page(i).expect("every page is in the store");
            if s[..] != self.model.file[lp][..] {
                let at = (0..PAGE_SIZE)
                    .find(|&j| s[j] != self.model.file[lp][j])
                    .expect("differs");
                self.fail(format!(
                    "LOST WRITE: page {i} is not cached and the store has {:#04x} at byte {at}, \
                     the last write put {:#04x}",
                    s[at], self.model.file[lp][at]
                ));
            }
        }
    }

    /// Contents of every cached page and held reference (no removal running).
    fn check_contents(&mut self) {
        for lp in 0..NPAGES {
            let Ok(Some(page)) = self.map.find(index_of(lp)) else {
                continue;
            };
            let mut buf = [0u8; PAGE_SIZE];
            page.read_page(&mut buf);
            drop(page);
            self.compare(&buf, &self.model.file[lp][..], format!("cached page {lp}"));
        }
    }

    fn compare(&self, got: &[u8], want: &[u8], what: String) {
        if got != want {
            let at = (0..got.len())
                .find(|&j| got[j] != want[j])
                .expect("differs");
            self.fail(format!(
                "STALE DATA: {what}: byte {at} is {:#04x}, the model says {:#04x}",
                got[at], want[at]
            ));
        }
    }

    fn op(&mut self, [k, a, b, c]: [u8; 4]) {
        match k % 24 {
            0..=2 => self.remover_step(a, b),
            kind::FIND | kind::LOAD => self.lookup(k % 24 == kind::LOAD, usize::from(a) % NPAGES),
            kind::RELEASE => {
                if !self.held.is_empty() {
                    let n = usize::from(a) % self.held.len();
                    self.held.remove(n);
                    self.stats.hit("release");
                }
            }
            kind::REF_WRITE => {
                if self.held.is_empty() {
                    return;
                }
                let n = usize::from(a) % self.held.len();
                let off = usize::from(b) * 16;
                let len = (1 + usize::from(c) % 32).min(PAGE_SIZE - off);
                let data = stamp(self.step, len);
                let lp = self.held[n].0;
                if let Err(e) = self.held[n].1.write(off, &data) {
                    self.fail(format!("write through a held reference: {e:?}"));
                }
                self.model.file[lp][off..off + len].copy_from_slice(&data);
                self.stats.hit("ref.write");
                if self.pass().is_some() {
                    self.stats.hit("ref.write.during_removal");
                }
            }
            kind::REF_READ => {
                if self.held.is_empty() {
                    return;
                }
                let n = usize::from(a) % self.held.len();
                let mut buf = [0u8; PAGE_SIZE];
                self.held[n].1.read_page(&mut buf);
                let lp = self.held[n].0;
                self.compare(&buf, &self.model.file[lp][..], format!("held page {lp}"));
                self.stats.hit("ref.read");
            }
            kind::CPU_READ | kind::CPU_WRITE => {
                let cpu = usize::from(a & 1) % self.w.machine.cpus().len();
                let s = usize::from(a >> 1) & 1;
                self.cpu_access(
                    cpu,
                    s,
                    usize::from(b) % WINDOW,
                    c,
                    k % 24 == kind::CPU_WRITE,
                );
            }
            kind::MUNMAP => {
                let s = usize::from(a & 1);
                let slot = usize::from(b) % WINDOW;
                let n = (usize::from(c) % 5).min(WINDOW - slot);
                let r = self.spaces[s].munmap(va(slot), n as u64 * PAGE);
                match (n, r) {
                    (0, Err(VmError::ZeroLength)) => {}
                    (0, r) => self.fail(format!("munmap of 0 bytes gave {r:?}")),
                    (_, Ok(())) => {
                        for m in &mut self.model.slots[s][slot..slot + n] {
                            *m = None;
                        }
                        self.stats.hit("munmap");
                        if self.pass().is_some() {
                            self.stats.hit("munmap.during_removal");
                        }
                    }
                    (_, r) => self.fail(format!("munmap gave {r:?}")),
                }
            }
            kind::MMAP => {
                let s = usize::from(a & 1);
                let lp = usize::from(a >> 4) % NPAGES;
                let slot = usize::from(b) % WINDOW;
                let n = (1 + usize::from(c) % 8)
                    .min(WINDOW - slot)
                    .min(block_end(lp) - lp);
                self.mmap(s, slot, n, a & 2 != 0, (a >> 2) & 3, lp);
            }
            kind::MSYNC => {
                let s = usize::from(a & 1);
                let slot = usize::from(b) % WINDOW;
                let n = (1 + usize::from(c) % 4).min(WINDOW - slot);
                let mapped = self.model.slots[s][slot..slot + n]
                    .iter()
                    .all(|m| m.is_some());
                let r = self.spaces[s].msync(va(slot), n as u64 * PAGE);
                match (mapped, r) {
                    (true, Ok(report)) => {
                        self.wb_errors(&report.errors, "msync");
                        self.stats.hit("msync");
                        if report.written > 0 {
                            self.stats.hit("msync.written");
                        }
                        if self.pass().is_some_and(|p| p >= Pass::Marked) {
                            self.stats.hit("msync.during_removal");
                        }
                    }
                    (false, Err(VmError::NoMapping { .. })) => self.stats.hit("msync.unmapped"),
                    (m, r) => self.fail(format!("msync (mapped: {m}) gave {r:?}")),
                }
            }
            kind::WRITEBACK => {
                let r = self.map.writeback(range(a, b));
                self.wb_errors(&r.errors, "writeback");
                self.stats.hit("writeback");
                if r.harvested > 0 {
                    self.stats.hit("writeback.harvested");
                }
                if self.pass().is_some() {
                    self.stats.hit("writeback.during_removal");
                }
            }
            kind::SYNC => {
                let r = self.map.writeback(..);
                self.wb_errors(&r.errors, "sync");
                self.stats.hit("sync");
            }
            kind::FAIL_WRITES => {
                let lp = usize::from(a) % NPAGES;
                let on = b & 1 == 1;
                self.w.store.fail_writes(index_of(lp), on);
                if on {
                    self.bad_writes.insert(lp);
                    self.ever_bad.insert(lp);
                } else {
                    self.bad_writes.remove(&lp);
                }
                self.stats.hit("fail_writes");
            }
            kind::FLUSH_TLB => {
                let cpu = usize::from(a & 1) % self.w.machine.cpus().len();
                self.w.machine.cpu(cpu).flush_tlb();
            }
            kind::REMOVE | kind::TRY_REMOVE => {
                let r = range(a, b);
                let res = if self.removal.is_some() || k % 24 == kind::TRY_REMOVE {
                    self.map.try_remove(r)
                } else {
                    Ok(self.map.remove(r))
                };
                match (self.removal.is_some(), res) {
                    (true, Err(Error::Busy)) => self.stats.hit("try_remove.busy"),
                    // An empty range is done before the remover lock.
                    (true, Ok(report)) if is_empty(&r) => {
                        if report.removed != 0 {
                            self.fail(format!("empty range removed {report:?}"));
                        }
                    }
                    (false, Ok(report)) => {
                        self.stats.hit("remove.sync");
                        self.report(&report, &Events::default());
                        self.write_errors_kept(&report);
                    }
                    (running, res) => {
                        self.fail(format!("remove (removal running: {running}) gave {res:?}"))
                    }
                }
            }
            kind::FREE_UNUSED => {
                if self.removal.is_none() {
                    let r = self.map.free_unused();
                    self.wb_errors(&r.errors, "free_unused");
                    self.stats.hit("free_unused");
                }
            }
            kind::INVALIDATE => {
                if self.removal.is_none() {
                    let r = self.map.invalidate(range(a, b));
                    if r.invalidated > 0 {
                        self.stats.hit("invalidate.removed");
                    }
                    self.stats.hit("invalidate");
                }
            }
            kind::FINISH => {
                if let Some((r, ev)) = self.removal.take() {
                    let report = r.finish();
                    self.stats.hit("removal.finish");
                    self.report(&report, &ev);
                }
            }
            kind::CHECK => {
                if self.removal.is_none() {
                    self.check_contents();
                }
                self.stats.hit("check");
            }
            kind::RESPAWN => {
                let s = usize::from(a & 1);
                self.spaces[s] = AddressSpace::new(self.w.machine.clone());
                self.model.slots[s] = Default::default();
                self.stats.hit("respawn");
                if self.pass().is_some() {
                    self.stats.hit("respawn.during_removal");
                }
            }
            _ => unreachable!(),
        }
    }

    fn wb_errors(&self, errors: &[Error], what: &str) {
        for e in errors {
            match e {
                Error::Write { index, .. }
                    if lp_of(*index).is_some_and(|lp| self.bad_writes.contains(&lp)) => {}
                other => self.fail(format!("{what}: unexpected error {other:?}")),
            }
        }
    }

    fn lookup(&mut self, load: bool, lp: usize) {
        let i = index_of(lp);
        let victim = self.victim(lp);
        let r = if load {
            self.map.load(i).map(Some)
        } else {
            self.map.find(i)
        };
        let page = match r {
            Ok(Some(p)) => p,
            Ok(None) => {
                self.stats.hit("find.miss");
                return;
            }
            Err(Error::PoolExhausted { .. }) if self.w.pool.free_frames() == 0 => {
                self.stats.hit("load.exhausted");
                return;
            }
            Err(e) => self.fail(format!("lookup of page {i}: {e:?}")),
        };
        if page.index() != i {
            self.fail(format!("lookup of {i} gave page {}", page.index()));
        }
        self.stats.hit(if load { "load" } else { "find.hit" });
        if victim && self.pass().is_some_and(|p| p < Pass::Done) {
            self.stats.hit("lookup.of_victim");
            if let Some((_, ev)) = &mut self.removal {
                ev.lookup.insert(i);
            }
        }
        if self.held.len() >= MAX_HELD {
            self.held.remove(0);
        }
        self.held.push((lp, page));
    }

    fn cpu_access(&mut self, cpu: usize, s: usize, slot: usize, c: u8, write: bool) {
        let (off, len) = access(c);
        let addr = va(slot) + off as u64;
        let space = self.spaces[s].clone();
        let c = self.w.machine.cpu(cpu);
        let faults = c.stats().faults.load(std::sync::atomic::Ordering::Relaxed);
        let before = space.pte(va(slot));
        let mut buf = vec![0u8; len];
        let data = stamp(self.step, len);
        let r = if write {
            c.write(&space, addr, &data)
        } else {
            c.read(&space, addr, &mut buf)
        };
        let faulted = c.stats().faults.load(std::sync::atomic::Ordering::Relaxed) != faults;
        let Some((m, copy)) = self.model.slots[s][slot].clone() else {
            match r {
                Err(Fault::NoMapping { .. }) => self.stats.hit("cpu.unmapped"),
                r => self.fail(format!("access to unmapped slot {slot} gave {r:?}")),
            }
            return;
        };
        match r {
            Ok(()) => {}
            Err(f) if is_exhaustion(&f) && self.w.pool.free_frames() == 0 => {
                self.stats.hit("cpu.exhausted");
                return;
            }
            Err(f) => self.fail(format!(
                "{} of slot {slot} (page {}) gave {f:?}",
                if write { "write" } else { "read" },
                m.lp
            )),
        }
        let i = index_of(m.lp);
        let victim = self.victim(m.lp);
        let pass = self.pass();
        if faulted && victim && matches!(pass, Some(Pass::Revoked | Pass::ShotDown)) {
            self.stats.hit("fault.victim_revoked");
            if let Some((_, ev)) = &mut self.removal {
                ev.fault_revoked.insert(i);
            }
        }
        if write {
            if m.shared {
                self.model.file[m.lp][off..off + len].copy_from_slice(&data);
                self.stats.hit("cpu.write.shared");
            } else {
                let mut p = copy.unwrap_or_else(|| {
                    self.stats.hit("cpu.write.cow");
                    if pass.is_some_and(|p| p >= Pass::Marked && p < Pass::Done) {
                        self.stats.hit("cow.during_removal");
                        if victim {
                            if let Some((_, ev)) = &mut self.removal {
                                ev.cow.insert(i);
                            }
                        }
                    }
                    if before & pte::PRIVATE != 0 {
                        self.fail("model has no private copy, the PTE has".into());
                    }
                    self.model.file[m.lp].clone()
                });
                p[off..off + len].copy_from_slice(&data);
                self.model.slots[s][slot] = Some((m, Some(p)));
                self.stats.hit("cpu.write.private");
            }
            if pass.is_some() {
                self.stats.hit("cpu.write.during_removal");
            }
        } else {
            let want = self.model.view(s, slot).expect("mapped");
            self.compare(
                &buf,
                &want[off..off + len],
                format!("CPU {cpu} read of space {s} slot {slot} (page {i})"),
            );
            self.stats.hit("cpu.read");
        }
    }

    /// mmap of `n` pages at `slot` of space `s`, logical pages from `lp`.
    /// `flags`: 1 POPULATE, 2 LOCKED.
    fn mmap(&mut self, s: usize, slot: usize, n: usize, shared: bool, flags: u8, lp: usize) {
        let free = self.model.slots[s][slot..slot + n]
            .iter()
            .all(|m| m.is_none());
        let mut f = if shared {
            MapFlags::SHARED
        } else {
            MapFlags::PRIVATE
        };
        match flags {
            1 => f = f | MapFlags::POPULATE,
            2 => f = f | MapFlags::LOCKED,
            _ => {}
        }
        let req = MapRequest {
            addr: Some(va(slot)),
            pgoff: index_of(lp),
            ..MapRequest::new(self.map_arc(), n as u64 * PAGE, Prot::RW, f)
        };
        let free_before = self.w.pool.free_frames();
        let r = self.spaces[s].mmap(req);
        match (free, r) {
            (true, Ok(addr)) if addr == va(slot) => {
                for j in 0..n {
                    let m = SlotMap {
                        lp: lp + j,
                        shared,
                        pinned: flags == 2,
                    };
                    // Populated private writable pages are copied now.
                    let copy = (!shared && matches!(flags, 1 | 2))
                        .then(|| self.model.file[lp + j].clone());
                    self.model.slots[s][slot + j] = Some((m, copy));
                }
                self.stats.hit(if shared {
                    "mmap.shared"
                } else {
                    "mmap.private"
                });
                if flags == 2 {
                    self.stats.hit("mmap.locked");
                }
            }
            (true, Err(VmError::Populate(f))) if is_exhaustion(&f) && free_before < 2 * n => {
                self.stats.hit("mmap.populate_exhausted");
            }
            (false, Err(VmError::Overlap { .. })) => self.stats.hit("mmap.overlap"),
            (free, r) => self.fail(format!("mmap (slots free: {free}) gave {r:?}")),
        }
    }

    fn map_arc(&self) -> Arc<PageMap> {
        self.w.map.clone()
    }

    fn remover_step(&mut self, a: u8, b: u8) {
        let Some((r, _)) = &mut self.removal else {
            let r = range(a, b);
            let removal = self.map.begin_remove(r, Batching::PerSpace);
            self.removal = Some((removal, Events::default()));
            self.stats.hit("removal.begin");
            return;
        };
        // Before the reap: which victims' entries carry a dirty bit.
        let mut dirty_revoked = BTreeSet::new();
        if r.pass() == Pass::ShotDown {
            for (s, space) in self.spaces.iter().enumerate() {
                for (slot, m) in self.model.slots[s].iter().enumerate() {
                    let Some((m, _)) = m else { continue };
                    let p = space.pte(va(slot));
                    let i = index_of(m.lp);
                    if p & pte::DIRTY != 0
                        && p & (pte::PRESENT | pte::PRIVATE) == 0
                        && r.victims().frame_at(i).is_some()
                    {
                        dirty_revoked.insert(i);
                    }
                }
            }
        }
        // Before the write pass: victims that are dirty and cannot be written.
        let mut unwritable = Vec::new();
        if r.pass() == Pass::Reaped {
            let dirty: BTreeSet<u64> = self.map.dirty_indices(..).into_iter().collect();
            for &(i, _) in r.victims().pages() {
                if dirty.contains(&i) && lp_of(i).is_some_and(|lp| self.bad_writes.contains(&lp)) {
                    unwritable.push(i);
                }
            }
        }
        let pass = r.step();
        if pass == Pass::WrittenBack {
            let cached: BTreeSet<u64> = self.map.cached_indices(..).into_iter().collect();
            let dirty: BTreeSet<u64> = self.map.dirty_indices(..).into_iter().collect();
            for i in unwritable {
                if !cached.contains(&i) || !dirty.contains(&i) {
                    self.fail(format!(
                        "page {i}: its write failed but it is not kept dirty in the cache"
                    ));
                }
                self.stats.hit("remove.write_error_kept_dirty");
            }
        }
        self.stats.hit(match pass {
            Pass::Marked => "pass.marked",
            Pass::Revoked => "pass.revoked",
            Pass::ShotDown => "pass.shot_down",
            Pass::Reaped => "pass.reaped",
            Pass::WrittenBack => "pass.written_back",
            Pass::Done => "pass.done",
            Pass::Start => "pass.start",
        });
        if pass == Pass::Marked && !r.victims().is_empty() {
            self.stats.hit("removal.victims");
        }
        if pass == Pass::Reaped {
            let dirty: BTreeSet<u64> = self.map.dirty_indices(..).into_iter().collect();
            for i in dirty_revoked {
                if !dirty.contains(&i) {
                    self.fail(format!("page {i}: the reap dropped a dirty bit"));
                }
                self.stats.hit("reap.harvested_dirty");
                if let Some((_, ev)) = &mut self.removal {
                    ev.harvested.insert(i);
                }
            }
        }
        if pass == Pass::Done {
            let (r, ev) = self.removal.take().expect("running");
            let report = r.finish();
            self.report(&report, &ev);
        }
    }

    /// Checks a finished removal's report and notes what it covered.
    fn report(&mut self, r: &RemoveReport, ev: &Events) {
        let others = non_write_errors(&r.errors);
        if !others.is_empty() {
            self.fail(format!("removal errors {others:?}"));
        }
        let cached: BTreeSet<u64> = self.map.cached_indices(..).into_iter().collect();
        for e in &r.errors {
            let Error::Write { index, .. } = e else {
                unreachable!()
            };
            if !lp_of(*index).is_some_and(|lp| self.ever_bad.contains(&lp)) {
                self.fail(format!("write error of page {index}, never injected"));
            }
            // Kept (a later sync may have cleaned it since).
            if !cached.contains(index) {
                self.fail(format!("page {index}: its write failed but it was removed"));
            }
            self.stats.hit("remove.write_error");
        }
        report_stats(r, &mut self.stats);
        if r.discarded > 0 || r.zeroed > 0 {
            self.fail(format!("a plain removal discarded or zeroed: {r:?}"));
        }
        if r.raced > 0 {
            if ev.lookup.iter().any(|i| cached.contains(i)) {
                self.stats.hit("aborted.by_lookup");
            }
            if ev.fault_revoked.iter().any(|i| cached.contains(i)) {
                self.stats.hit("aborted.by_fault_revoked");
            }
            if ev.cow.iter().any(|i| cached.contains(i)) {
                self.stats.hit("aborted.by_cow");
            }
        }
        for &i in &ev.harvested {
            let lp = lp_of(i).expect("file page");
            if self
                .w
                .store
                .page(i)
                .is_some_and(|p| p[..] == self.model.file[lp][..])
            {
                self.stats.hit("reap.harvested_written");
            }
        }
    }

    /// A removal just wrote: the pages whose write failed are cached and dirty.
    fn write_errors_kept(&mut self, r: &RemoveReport) {
        let cached: BTreeSet<u64> = self.map.cached_indices(..).into_iter().collect();
        let dirty: BTreeSet<u64> = self.map.dirty_indices(..).into_iter().collect();
        for e in &r.errors {
            if let Error::Write { index, .. } = e {
                if !cached.contains(index) || !dirty.contains(index) {
                    self.fail(format!(
                        "page {index}: its write failed but it is not kept dirty in the cache"
                    ));
                }
                self.stats.hit("remove.write_error_kept_dirty");
            }
        }
    }

    /// Reads the first `len` bytes of every mapped page through every CPU.
    fn read_all_mapped(&mut self, what: &str, len: usize) {
        for s in 0..2 {
            for slot in 0..WINDOW {
                let Some(want) = self.model.view(s, slot).map(|p| Box::new(*p)) else {
                    continue;
                };
                for cpu in 0..self.w.machine.cpus().len() {
                    let mut buf = [0u8; PAGE_SIZE];
                    let space = self.spaces[s].clone();
                    match self
                        .w
                        .machine
                        .cpu(cpu)
                        .read(&space, va(slot), &mut buf[..len])
                    {
                        Ok(()) => self.compare(
                            &buf[..len],
                            &want[..len],
                            format!("{what}: CPU {cpu} reading space {s} slot {slot}"),
                        ),
                        Err(f) if is_exhaustion(&f) && self.w.pool.free_frames() == 0 => {}
                        Err(f) => {
                            self.fail(format!("{what}: read of space {s} slot {slot}: {f:?}"))
                        }
                    }
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some((r, ev)) = self.removal.take() {
            let report = r.finish();
            self.report(&report, &ev);
        }
        self.held.clear();
        self.check();
        self.check_contents();
        self.read_all_mapped("end", PAGE_SIZE);
        self.check();
        // Sync with the write errors lifted: the store is the model.
        for lp in std::mem::take(&mut self.bad_writes) {
            self.w.store.fail_writes(index_of(lp), false);
        }
        let r = self.map.writeback(..);
        if !r.errors.is_empty() {
            self.fail(format!("sync errors {:?}", r.errors));
        }
        let dirty = self.map.dirty_indices(..);
        if !dirty.is_empty() {
            self.fail(format!("dirty after sync: {dirty:?}"));
        }
        for lp in 0..NPAGES {
            let s = self.w.store.page(index_of(lp)).expect("in the store");
            self.compare(
                &s[..],
                &self.model.file[lp][..],
                format!("store page {lp} after sync"),
            );
        }
        // Remove everything; only pinned pages may stay.
        let r = self.map.remove(..);
        if !r.errors.is_empty() {
            self.fail(format!("final removal errors {:?}", r.errors));
        }
        let pinned: BTreeSet<u64> = self
            .model
            .slots
            .iter()
            .flat_map(|s| s.iter().flatten())
            .filter(|(m, _)| m.pinned)
            .map(|(m, _)| index_of(m.lp))
            .collect();
        if let Some(i) = self
            .map
            .cached_indices(..)
            .into_iter()
            .find(|i| !pinned.contains(i))
        {
            self.fail(format!("page {i} survived remove(..) unheld and unpinned"));
        }
        self.check();
        // Reload from the store, through the CPUs (the head of each page:
        // its index stamp shows a wrong or stale frame) and the page map
        // (every byte).
        self.read_all_mapped("after remove(..)", 64);
        for lp in 0..NPAGES {
            match self.map.load(index_of(lp)) {
                Ok(p) => {
                    let mut buf = [0u8; PAGE_SIZE];
                    p.read_page(&mut buf);
                    self.compare(
                        &buf,
                        &self.model.file[lp][..],
                        format!("reloaded page {lp}"),
                    );
                }
                Err(Error::PoolExhausted { .. }) => {}
                Err(e) => self.fail(format!("reload of {lp}: {e:?}")),
            }
        }
        self.check();
        // Teardown: no mapping left, every frame back once the cache is empty.
        for s in 0..2 {
            self.spaces[s] = AddressSpace::new(self.w.machine.clone());
            self.model.slots[s] = Default::default();
        }
        if self.map.nr_mappings() != 0 {
            self.fail(format!(
                "{} mappings after teardown",
                self.map.nr_mappings()
            ));
        }
        let r = self.map.remove(..);
        if !r.errors.is_empty() || self.map.nr_pages() != 0 {
            self.fail(format!(
                "remove(..) after teardown left {} pages ({:?})",
                self.map.nr_pages(),
                r
            ));
        }
        if self.w.pool.free_frames() != self.w.pool.capacity() {
            self.fail(format!(
                "{} of {} frames free after teardown",
                self.w.pool.free_frames(),
                self.w.pool.capacity()
            ));
        }
        self.stats.hit("finished");
    }
}

/// A readable form of an input (for `examples/replay.rs -v`).
pub fn describe_input(data: &[u8]) -> String {
    let input = Input::decode(data);
    let mut out = format!(
        "frames {} cpus {} layout {:#x}",
        input.frames, input.cpus, input.layout
    );
    for (i, op) in input.ops.iter().enumerate() {
        out += &format!("\n  #{i}: {}", describe(*op));
    }
    out
}

/// A readable form of an op.
pub fn describe([k, a, b, c]: [u8; 4]) -> String {
    let sa = a & 1;
    match k % 24 {
        0..=2 => format!("step (or begin_remove({:?}))", range(a, b)),
        kind::FIND => format!("find(page {})", index_of(usize::from(a) % NPAGES)),
        kind::LOAD => format!("load(page {})", index_of(usize::from(a) % NPAGES)),
        kind::RELEASE => format!("release(held #{a})"),
        kind::REF_WRITE => format!(
            "held #{a}.write(off {}, len {})",
            usize::from(b) * 16,
            1 + c % 32
        ),
        kind::REF_READ => format!("held #{a}.read"),
        kind::CPU_READ | kind::CPU_WRITE => format!(
            "cpu {} {} space {} slot {} {:?}",
            a & 1,
            if k % 24 == kind::CPU_WRITE {
                "write"
            } else {
                "read"
            },
            (a >> 1) & 1,
            b % WINDOW as u8,
            access(c)
        ),
        kind::MUNMAP => format!("munmap(space {sa}, slot {}, {} pages)", b % 16, c % 5),
        kind::MMAP => format!(
            "mmap(space {sa}, slot {}, {} pages, {}, flags {}, from page {})",
            b % 16,
            1 + c % 8,
            if a & 2 != 0 { "shared" } else { "private" },
            (a >> 2) & 3,
            index_of(usize::from(a >> 4) % NPAGES)
        ),
        kind::MSYNC => format!("msync(space {sa}, slot {}, {} pages)", b % 16, 1 + c % 4),
        kind::WRITEBACK => format!("writeback({:?})", range(a, b)),
        kind::SYNC => "sync".into(),
        kind::FAIL_WRITES => format!(
            "fail_writes(page {}, {})",
            index_of(usize::from(a) % NPAGES),
            b & 1 == 1
        ),
        kind::FLUSH_TLB => format!("flush_tlb(cpu {})", a & 1),
        kind::REMOVE => format!("remove({:?})", range(a, b)),
        kind::TRY_REMOVE => format!("try_remove({:?})", range(a, b)),
        kind::FREE_UNUSED => "free_unused".into(),
        kind::INVALIDATE => format!("invalidate({:?})", range(a, b)),
        kind::FINISH => "finish removal".into(),
        kind::CHECK => "check".into(),
        _ => format!("respawn space {sa}"),
    }
}
