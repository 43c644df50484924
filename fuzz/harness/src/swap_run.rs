//! `swap_ops`: demand paging (issue 13) on a `vmr::Machine` with swap (a
//! `MemSwap` of 2 to 16 slots with injected read and write errors), a pool
//! of 2 to 8 frames that reclaims (the default policy: page-cache pages of
//! the file and private frames compete for it), two CPUs and up to three
//! address spaces (fresh, or forks of each other), against a model of the
//! bytes every space reads at every mapped page.
//!
//! The model knows no frames, no swap and no reclaim: paging must be
//! invisible. Per space and page it keeps the mapping's kind (anonymous,
//! private or shared page of the file, which it models too), protection,
//! mlock, and the page's own bytes once the space wrote it (a private
//! file page before that reads the file as it is now; an anonymous one
//! zeroes). After `MADV_FREE` a page may read zeroes until it is written
//! again; the model keeps the candidates (old bytes, or zeroes) and drops
//! the ones a read rules out, so a page once seen dropped must stay zero
//! and a page written after the advice keeps the write on whichever it had.
//!
//! Checked:
//!
//! * every byte a CPU read returns is one the model allows, and a write is
//!   read back through the other CPU; a partial access (an error on a
//!   later page) read or wrote exactly the pages before the faulting one;
//! * errors are ones the model allows for the op and the page: `NoMapping`,
//!   `Protection`, `Overlap`, `Locked`, `NotAnonymous` exactly when due
//!   (with the first offending address); a swap read error only on a page
//!   that can be in swap while that location's reads fail (the data stays
//!   in swap: later reads must find it); `SwapWrite` only for a location
//!   whose writes fail; `SwapFull` only with every location in use;
//!   out-of-memory (`OutOfMemory`, `PoolExhausted`) and `Busy` only when the
//!   pool may be short of evictable frames (writes failing, swap (nearly)
//!   full, frames pinned by mlock): reclaim must otherwise find a frame;
//! * after every op, without touching memory: a page the model does not
//!   map has an empty PTE, a shared page no private or swap entry, and
//!   each swap location counts exactly the swap entries that name it;
//!   `page_out` accounts for every private entry of its range;
//! * every 16 ops, on `Check` and at the end (after munlocking everything
//!   and healing swap I/O), every mapped page of every space is read whole;
//! * at the end, with the spaces dropped: no swap location in use; the
//!   file's store holds exactly the shared writes (private writes never
//!   reach it); with the file dropped, every frame is back in the pool.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use pagemap::swap::{Location, MemSwap};
use pagemap::{Error, FrameId, FramePool, MemStore, PageMap};
use vmr::{pte, Access, AddressSpace, Advice, Fault, Machine, MapFlags, MapRequest, Prot, VmError};

use crate::swap_ops::{At, Range, SwapInput, SwapOp};
use crate::{Stats, PAGE_SIZE};

/// Known bugs that [`run`] steps around and [`run_strict`] does not: none
/// open. (`fork_loses_write_after_free`, found by this target, is fixed:
/// a page written after `MADV_FREE` and then forked read zeroes in the
/// child once the parent's dirty entry went and the page was paged out;
/// fork now keeps the dirty bit in the child's entry and a shared frame
/// loses its LAZY mark. Seed `fixed_fork_loses_write_after_free`; test
/// `tests/swap_bugs.rs::fork_keeps_a_page_written_after_madv_free`.)
pub const KNOWN_BUGS: &[&str] = &[];

const PAGE: u64 = PAGE_SIZE as u64;
/// Address-space slots.
const SPACES: usize = 3;
/// Areas of 16 pages each from `BASE_VPN`: mappings are placed in them.
const AREAS: u64 = 4;
const AREA_PAGES: u64 = 16;
const BASE_VPN: u64 = 0x4_0000;
/// Pages a range can reach: the areas plus a range running past the last.
const SPAN: u64 = AREAS * AREA_PAGES + 8;
/// File pages a mapping can show (pgoff < 8, up to 8 pages); the first 8
/// start with a pattern, the others read zeroes until written.
const FILE_PAGES: usize = 16;
/// A full read of every mapped page every this many ops.
const SWEEP_EVERY: usize = 16;

type Page = [u8; PAGE_SIZE];

/// Runs fuzzer bytes, stepping around [`KNOWN_BUGS`]. Panics on any other
/// divergence from the model.
pub fn run(data: &[u8]) -> Stats {
    run_input(&SwapInput::decode(data), false)
}

/// As [`run`], but a known bug panics too (the `bug_*` seeds).
pub fn run_strict(data: &[u8]) -> Stats {
    run_input(&SwapInput::decode(data), true)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Anon,
    /// A private mapping of this file page.
    Private(usize),
    /// A shared mapping of this file page.
    Shared(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum P {
    Rw,
    R,
    None,
}

impl P {
    fn of(sel: u8) -> P {
        match sel % 4 {
            0 | 1 => P::Rw,
            2 => P::R,
            _ => P::None,
        }
    }

    fn prot(self) -> Prot {
        match self {
            P::Rw => Prot::RW,
            P::R => Prot::READ,
            P::None => Prot::NONE,
        }
    }

    fn allows(self, access: Access) -> bool {
        match access {
            Access::Write => self == P::Rw,
            _ => self != P::None,
        }
    }
}

/// A page's own bytes (written by its space, or copied by mlock): one of
/// `cands`, or zeroes while `lazy` (`MADV_FREE` and not written since).
#[derive(Clone, PartialEq, Eq)]
struct Own {
    cands: Vec<Box<Page>>,
    lazy: bool,
}

#[derive(Clone)]
struct Pg {
    kind: Kind,
    prot: P,
    locked: bool,
    /// `None`: the file's page now (private), zeroes (anonymous).
    own: Option<Own>,
    /// `MADV_FREE` was advised on it since its last `MADV_DONTNEED` (see
    /// `KNOWN_BUGS`).
    advised: bool,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {:?}", self.kind, self.prot)?;
        if self.locked {
            write!(f, " locked")?;
        }
        if let Some(o) = &self.own {
            let heads: Vec<_> = o.cands.iter().map(|c| &c[..4]).collect();
            write!(
                f,
                " own {heads:?}{}",
                if o.lazy { " or zeroes" } else { "" }
            )?;
        }
        Ok(())
    }
}

type Space = BTreeMap<u64, Pg>;

fn zero_page() -> Box<Page> {
    Box::new([0; PAGE_SIZE])
}

/// The initial bytes of file page `i` (`i < 8`): recognisable per page.
fn file_pattern(i: usize) -> Box<Page> {
    let mut p = zero_page();
    for (k, b) in p.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add((k % 253) as u8) | 1;
    }
    p
}

/// The bytes a write stores (never all zero: a dropped page shows).
fn write_data(seed: u8, step: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i % 251) as u8) ^ (step as u8) | 0x40)
        .collect()
}

fn range_vpns(r: Range) -> (u64, u64) {
    let first = BASE_VPN + u64::from(r.area) % AREAS * AREA_PAGES + u64::from(r.first) % AREA_PAGES;
    (first, 1 + u64::from(r.pages) % 8)
}

fn at_va(a: At) -> u64 {
    (BASE_VPN + u64::from(a.area) % AREAS * AREA_PAGES + u64::from(a.page) % AREA_PAGES) * PAGE
        + u64::from(a.off) % PAGE
}

fn len_of(sel: u8) -> usize {
    if sel == 255 {
        PAGE_SIZE
    } else {
        1 + 16 * usize::from(sel)
    }
}

fn fault_va(f: &Fault) -> Option<u64> {
    match f {
        Fault::NoMapping { va }
        | Fault::Protection { va, .. }
        | Fault::Io { va, .. }
        | Fault::OutOfMemory { va }
        | Fault::Livelock { va }
        | Fault::BeyondEof { va } => Some(*va),
        _ => None,
    }
}

struct Run {
    pool: Arc<FramePool>,
    machine: Arc<Machine>,
    swap: Arc<MemSwap>,
    slots: u32,
    store: Arc<MemStore>,
    file: Option<Arc<PageMap>>,
    spaces: Vec<Option<Arc<AddressSpace>>>,
    model: Vec<Option<Space>>,
    /// The file's bytes (shared writes).
    filem: Vec<Box<Page>>,
    read_fail: BTreeSet<u32>,
    all_reads_fail: bool,
    write_fail: BTreeSet<u32>,
    all_writes_fail: bool,
    /// Whether the pool may have been short of evictable frames when the
    /// op began (see `pressure`).
    pressure_before: bool,
    stats: Stats,
    step: usize,
    op: Option<SwapOp>,
    /// Do not step around `KNOWN_BUGS`.
    strict: bool,
}

/// Runs one input. Panics on the first divergence from the model.
pub fn run_input(input: &SwapInput, strict: bool) -> Stats {
    // The default (reclaiming) policy: a new pool per input (the reused
    // pools of `pools.rs` refuse to reclaim). One thread: a full pool of
    // held frames fails at once.
    let pool = Arc::new(FramePool::new(input.frames).expect("valid capacity"));
    pool.set_held_grace(std::time::Duration::ZERO);
    let swap = Arc::new(MemSwap::new(input.slots));
    let machine = Machine::with_swap(pool.clone(), 2, swap.clone()).expect("valid swap");
    let store = Arc::new(MemStore::new());
    let mut filem: Vec<Box<Page>> = (0..FILE_PAGES).map(|_| zero_page()).collect();
    for (i, page) in filem.iter_mut().enumerate().take(8) {
        *page = file_pattern(i);
        store.set_page(i as u64, page);
    }
    let file = PageMap::new(pool.clone(), store.clone());
    let mut r = Run {
        spaces: vec![Some(AddressSpace::new(machine.clone())), None, None],
        model: vec![Some(Space::new()), None, None],
        pool,
        machine,
        swap,
        slots: input.slots,
        store,
        file: Some(file),
        filem,
        read_fail: BTreeSet::new(),
        all_reads_fail: false,
        write_fail: BTreeSet::new(),
        all_writes_fail: false,
        pressure_before: false,
        stats: Stats::default(),
        step: 0,
        op: None,
        strict,
    };
    for (step, op) in input.ops.iter().enumerate() {
        r.step = step;
        r.op = Some(*op);
        r.stats.hit(op.name());
        r.pressure_before = r.pressure();
        r.apply(*op);
        r.structure();
        if step % SWEEP_EVERY == SWEEP_EVERY - 1 {
            r.sweep();
        }
    }
    r.step = input.ops.len();
    r.op = None;
    r.finish();
    r.stats
}

impl Run {
    fn fail(&self, what: std::fmt::Arguments<'_>) -> ! {
        let spaces: Vec<_> = self
            .model
            .iter()
            .map(|m| m.as_ref().map(|s| s.iter().collect::<Vec<_>>()))
            .collect();
        panic!(
            "DIVERGENCE at op #{} {:?}: {what}\n  model: {spaces:#?}\n  swap: {:?}\n  \
             reads fail: all {} {:?}; writes fail: all {} {:?}; free frames {}",
            self.step,
            self.op,
            self.machine.swap().map(|s| s.stats()),
            self.all_reads_fail,
            self.read_fail,
            self.all_writes_fail,
            self.write_fail,
            self.pool.free_frames(),
        );
    }

    fn space(&self, s: usize) -> Option<Arc<AddressSpace>> {
        self.spaces[s].clone()
    }

    fn in_use(&self) -> u32 {
        self.machine.swap().expect("swap").stats().in_use
    }

    fn writes_failing(&self) -> bool {
        self.all_writes_fail || !self.write_fail.is_empty()
    }

    fn reads_fail(&self, loc: u32) -> bool {
        self.all_reads_fail || self.read_fail.contains(&loc)
    }

    fn writes_fail(&self, loc: u32) -> bool {
        self.all_writes_fail || self.write_fail.contains(&loc)
    }

    /// Frames that may be pinned: those named by the PTEs of locked pages,
    /// plus one per file page a locked file mapping shows (a LOCKED region
    /// pins the page-cache page whether or not its entry names it).
    fn pinned(&self) -> usize {
        let mut frames = BTreeSet::new();
        let mut indices = BTreeSet::new();
        for (sp, m) in self.spaces.iter().zip(&self.model) {
            let (Some(sp), Some(m)) = (sp, m) else {
                continue;
            };
            for (&vpn, pg) in m.iter().filter(|(_, pg)| pg.locked) {
                let f = pte::frame(sp.pte(vpn * PAGE));
                if f != 0 {
                    frames.insert(f);
                }
                if let Kind::Private(i) | Kind::Shared(i) = pg.kind {
                    indices.insert(i);
                }
            }
        }
        frames.len() + indices.len()
    }

    /// Whether the pool may be short of evictable frames: swap writes
    /// failing (dirty private pages stay), swap (nearly) full (no location
    /// to page out to), or all but two frames pinned (a fault may need two:
    /// the page-cache page and its private copy). Reclaim must find a frame
    /// otherwise.
    fn pressure(&self) -> bool {
        self.writes_failing()
            || self.in_use() + 2 >= self.slots
            || self.pinned() + 2 >= self.pool.capacity()
    }

    fn oom_plausible(&self) -> bool {
        self.pressure_before || self.pressure()
    }

    fn any_locked(&self) -> bool {
        self.model
            .iter()
            .flatten()
            .any(|m| m.values().any(|pg| pg.locked))
    }

    /// Whether the page can be in swap: a private frame's bytes (an
    /// anonymous page, or a private file page with its own copy).
    fn swappable(pg: &Pg) -> bool {
        match pg.kind {
            Kind::Anon => true,
            Kind::Private(_) => pg.own.is_some(),
            Kind::Shared(_) => false,
        }
    }

    /// Checks a fault of an `access` to page `vpn` of space `s` against
    /// what the model allows there; returns the statistics key.
    fn check_fault(
        &self,
        s: usize,
        vpn: u64,
        access: Access,
        f: &Fault,
        what: &str,
    ) -> &'static str {
        let m = self.model[s].as_ref().expect("a live space");
        let pg = m.get(&vpn);
        let key = match (pg, f) {
            (None, Fault::NoMapping { .. }) => Some("fault.NoMapping"),
            (Some(pg), Fault::Protection { access: a, .. })
                if *a == access && !pg.prot.allows(access) =>
            {
                Some("fault.Protection")
            }
            (Some(pg), _) if !pg.prot.allows(access) => None,
            (Some(_), Fault::OutOfMemory { .. }) if self.oom_plausible() => {
                Some("fault.OutOfMemory")
            }
            (
                Some(_),
                Fault::Io {
                    source: Error::PoolExhausted { .. },
                    ..
                },
            ) if self.oom_plausible() => Some("fault.pool_exhausted"),
            (
                Some(pg),
                Fault::Io {
                    source: Error::SwapRead { location, .. },
                    ..
                },
            ) if Self::swappable(pg) && *location < self.slots && self.reads_fail(*location) => {
                Some("fault.swap_read")
            }
            _ => None,
        };
        key.unwrap_or_else(|| {
            self.fail(format_args!(
                "{what}: {access:?} of page {vpn:#x} ({pg:?}) faulted: {f:?} (pool may be short: {})",
                self.oom_plausible()
            ))
        })
    }

    /// Compares `got`, read at `off` of page `vpn` of space `s`, with the
    /// model, and narrows the page's candidates to those that match.
    fn observe(&mut self, s: usize, vpn: u64, off: usize, got: &[u8], what: &str) {
        let end = off + got.len();
        let zeroes = got.iter().all(|&b| b == 0);
        let pg = self.model[s].as_ref().expect("a live space")[&vpn].clone();
        let exact: Option<&Page> = match (&pg.own, pg.kind) {
            (Some(_), _) => None,
            (None, Kind::Anon) => {
                if zeroes {
                    return;
                }
                self.fail(format_args!(
                    "{what}: page {vpn:#x}+{off} ({pg:?}) reads {:?}..., not zeroes",
                    &got[..got.len().min(8)]
                ));
            }
            (None, Kind::Private(i) | Kind::Shared(i)) => Some(&self.filem[i]),
        };
        if let Some(want) = exact {
            if let Some(k) = (0..got.len()).find(|&k| got[k] != want[off + k]) {
                self.fail(format_args!(
                    "{what}: page {vpn:#x} ({pg:?}) byte {} is {}, the file's is {}",
                    off + k,
                    got[k],
                    want[off + k]
                ));
            }
            return;
        }
        let own = pg.own.as_ref().expect("own bytes");
        let matching: Vec<Box<Page>> = own
            .cands
            .iter()
            .filter(|c| c[off..end] == *got)
            .cloned()
            .collect();
        let new = if !matching.is_empty() {
            if matching.len() < own.cands.len() {
                self.stats.hit("observe.narrowed");
            }
            if own.lazy && !zeroes {
                self.stats.hit("free.not_dropped_yet");
            }
            Own {
                cands: matching,
                lazy: own.lazy,
            }
        } else if own.lazy && zeroes {
            // Dropped after MADV_FREE: zeroes from now until written.
            self.stats.hit("free.dropped");
            Own {
                cands: vec![zero_page()],
                lazy: false,
            }
        } else {
            let c = &own.cands[0];
            let k = (0..got.len()).find(|&k| got[k] != c[off + k]).unwrap_or(0);
            self.fail(format_args!(
                "{what}: page {vpn:#x} ({pg:?}) bytes {off}..{end}: byte {} is {}, the model \
                 has {} (of {} candidates{})",
                off + k,
                got[k],
                c[off + k],
                own.cands.len(),
                if own.lazy { ", or zeroes" } else { "" }
            ));
        };
        let m = self.model[s].as_mut().expect("a live space");
        m.get_mut(&vpn).expect("mapped").own = Some(new);
    }

    /// The model's side of a CPU write of `data` at `off` of page `vpn`.
    fn written(&mut self, s: usize, vpn: u64, off: usize, data: &[u8]) {
        let end = off + data.len();
        let pg = self.model[s]
            .as_mut()
            .expect("a live space")
            .get_mut(&vpn)
            .expect("mapped");
        let base = match pg.kind {
            Kind::Shared(i) => {
                self.filem[i][off..end].copy_from_slice(data);
                return;
            }
            Kind::Private(i) => self.filem[i].clone(),
            Kind::Anon => zero_page(),
        };
        let mut cands = match pg.own.take() {
            None => vec![base],
            Some(o) => {
                let mut c = o.cands;
                if o.lazy {
                    // Dropped just before the write (then it wrote on
                    // zeroes), or not: both stay possible, and the page
                    // now keeps whichever it has.
                    self.stats.hit("free.written_after");
                    c.push(zero_page());
                }
                c
            }
        };
        for c in &mut cands {
            c[off..end].copy_from_slice(data);
        }
        cands.sort();
        cands.dedup();
        pg.own = Some(Own { cands, lazy: false });
    }

    /// A CPU read of `len` bytes at `va`, checked against the model
    /// (errors included). Returns whether it read everything.
    fn read_checked(&mut self, s: usize, cpu: usize, va: u64, len: usize, what: &str) -> bool {
        let sp = self.space(s).expect("a live space");
        let mut buf = vec![0u8; len];
        let r = self.machine.cpu(cpu).read(&sp, va, &mut buf);
        let upto = self.access_end(&r, va, len, what);
        let mut cur = va;
        while cur < upto {
            let n = ((PAGE - cur % PAGE) as usize).min((upto - cur) as usize);
            let at = (cur - va) as usize;
            self.observe(s, cur / PAGE, (cur % PAGE) as usize, &buf[at..at + n], what);
            cur += n as u64;
        }
        match r {
            Ok(()) => true,
            Err(f) => {
                let key = self.check_fault(s, upto / PAGE, Access::Read, &f, what);
                self.stats.hit(key);
                false
            }
        }
    }

    /// Where an access of `[va, va + len)` stopped: its end, or the start
    /// of the page (or `va`) that faulted.
    fn access_end(&self, r: &Result<(), Fault>, va: u64, len: usize, what: &str) -> u64 {
        let end = va + len as u64;
        let Err(f) = r else {
            return end;
        };
        // The fault names the faulting address or its page's start.
        match fault_va(f) {
            Some(at) if at / PAGE >= va / PAGE && at / PAGE <= (end - 1) / PAGE => {
                va.max(at / PAGE * PAGE)
            }
            _ => self.fail(format_args!("{what}: fault {f:?} outside {va:#x}+{len}")),
        }
    }

    fn apply(&mut self, op: SwapOp) {
        match op {
            SwapOp::Mmap {
                space,
                area,
                off,
                pages,
                kind,
                prot,
                pgoff,
            } => self.mmap(space, area, off, pages, kind, prot, pgoff),
            SwapOp::Munmap { space, range } => {
                let s = usize::from(space) % SPACES;
                let Some(sp) = self.space(s) else { return };
                let (first, n) = range_vpns(range);
                if let Err(e) = sp.munmap(first * PAGE, n * PAGE) {
                    self.fail(format_args!("munmap: {e:?}"));
                }
                let m = self.model[s].as_mut().expect("a live space");
                let before = m.len();
                m.retain(|&v, _| v < first || v >= first + n);
                if m.len() < before {
                    self.stats.hit("munmap.unmapped");
                }
            }
            SwapOp::Mprotect { space, range, prot } => {
                let s = usize::from(space) % SPACES;
                let Some(sp) = self.space(s) else { return };
                let (first, n) = range_vpns(range);
                let p = P::of(prot);
                let r = sp.mprotect(first * PAGE, n * PAGE, p.prot());
                if self.expect_mapped(s, first, n, &r, "mprotect") {
                    for pg in self.pages_mut(s, first, n) {
                        pg.prot = p;
                    }
                    self.stats.hit("mprotect.ok");
                }
            }
            SwapOp::Mlock { space, range } => self.mlock(space, range),
            SwapOp::Munlock { space, range } => {
                let s = usize::from(space) % SPACES;
                let Some(sp) = self.space(s) else { return };
                let (first, n) = range_vpns(range);
                let r = sp.munlock(first * PAGE, n * PAGE);
                if self.expect_mapped(s, first, n, &r, "munlock") {
                    for pg in self.pages_mut(s, first, n) {
                        pg.locked = false;
                    }
                    self.stats.hit("munlock.ok");
                }
            }
            SwapOp::DontNeed { space, range } => self.madvise(space, range, Advice::DontNeed),
            SwapOp::Free { space, range } => self.madvise(space, range, Advice::Free),
            SwapOp::PageOut { space, range } => self.page_out(space, range),
            SwapOp::PageIn { space, range } => {
                let s = usize::from(space) % SPACES;
                let Some(sp) = self.space(s) else { return };
                let (first, n) = range_vpns(range);
                if self.first_unmapped(s, first, n).is_some() {
                    let r = sp.page_in(first * PAGE, n * PAGE);
                    self.expect_mapped(s, first, n, &r, "page_in");
                    return;
                }
                match sp.page_in(first * PAGE, n * PAGE) {
                    Ok(()) => self.stats.hit("page_in.ok"),
                    Err(VmError::PageIn(f)) => {
                        let at = fault_va(&f).unwrap_or(0);
                        if at < first * PAGE || at >= (first + n) * PAGE {
                            self.fail(format_args!("page_in: fault {f:?} outside the range"));
                        }
                        let key = self.check_fault(s, at / PAGE, Access::Read, &f, "page_in");
                        self.stats.hit(key);
                        self.stats.hit("page_in.error");
                    }
                    Err(e) => self.fail(format_args!("page_in: {e:?}")),
                }
            }
            SwapOp::Fork { space, into } => {
                let s = usize::from(space) % SPACES;
                let Some(sp) = self.space(s) else { return };
                let mut t = usize::from(into) % SPACES;
                if t == s {
                    t = (s + 1) % SPACES;
                }
                // The slot's old space goes first (teardown).
                self.spaces[t] = None;
                self.model[t] = None;
                let swapped = self.swap_entries_of(&sp);
                match sp.fork() {
                    Ok(child) => {
                        let strict = self.strict;
                        let mut m = self.model[s].clone().expect("a live space");
                        for pg in m.values_mut() {
                            pg.locked = false; // locks are not inherited
                            let _ = strict; // (no known bug to step around)
                        }
                        self.spaces[t] = Some(child);
                        self.model[t] = Some(m);
                        self.stats.hit("fork.ok");
                        if swapped > 0 {
                            self.stats.hit("fork.swapped");
                        }
                    }
                    Err(e) => self.fail(format_args!("fork: {e:?}")),
                }
            }
            SwapOp::Drop { space } => {
                let s = usize::from(space) % SPACES;
                if self.spaces[s].take().is_some() {
                    self.model[s] = None;
                    self.stats.hit("drop.space");
                }
            }
            SwapOp::New { space } => {
                let s = usize::from(space) % SPACES;
                self.spaces[s] = None;
                self.spaces[s] = Some(AddressSpace::new(self.machine.clone()));
                self.model[s] = Some(Space::new());
            }
            SwapOp::Read {
                space,
                cpu,
                at,
                len,
            } => {
                let s = usize::from(space) % SPACES;
                if self.spaces[s].is_none() {
                    return;
                }
                let va = at_va(at);
                let len = len_of(len);
                if self.read_checked(s, usize::from(cpu) % 2, va, len, "read") {
                    self.stats.hit("read.ok");
                    if (va % PAGE) as usize + len > PAGE_SIZE {
                        self.stats.hit("read.cross_page");
                    }
                }
            }
            SwapOp::Write {
                space,
                cpu,
                at,
                len,
                byte,
            } => self.write(space, cpu, at, len, byte),
            SwapOp::Evict { how, space, at } => self.evict(how, space, at),
            SwapOp::FailReads { loc, on } => {
                let l = u32::from(loc) % (self.slots + 1);
                if l == self.slots {
                    self.swap.fail_all_reads(on);
                    self.all_reads_fail = on;
                } else {
                    self.swap.fail_reads(Location::new(l), on);
                    if on {
                        self.read_fail.insert(l);
                    } else {
                        self.read_fail.remove(&l);
                    }
                }
            }
            SwapOp::FailWrites { loc, on } => {
                let l = u32::from(loc) % (self.slots + 1);
                if l == self.slots {
                    self.swap.fail_all_writes(on);
                    self.all_writes_fail = on;
                } else {
                    self.swap.fail_writes(Location::new(l), on);
                    if on {
                        self.write_fail.insert(l);
                    } else {
                        self.write_fail.remove(&l);
                    }
                }
            }
            SwapOp::Reclaim { n } => {
                let rep = self.pool.reclaim(1 + usize::from(n % 4));
                if rep.freed > 0 {
                    self.stats.hit("reclaim.freed");
                }
            }
            SwapOp::FlushTlb { cpu } => self.machine.cpu(usize::from(cpu) % 2).flush_tlb(),
            SwapOp::Check => self.sweep(),
        }
    }

    /// Swap entries in a space's PTEs.
    fn swap_entries_of(&self, sp: &AddressSpace) -> usize {
        (BASE_VPN..BASE_VPN + SPAN)
            .filter(|v| pte::swap_location(sp.pte(v * PAGE)).is_some())
            .count()
    }

    fn first_unmapped(&self, s: usize, first: u64, n: u64) -> Option<u64> {
        let m = self.model[s].as_ref().expect("a live space");
        (first..first + n).find(|v| !m.contains_key(v))
    }

    fn pages_mut(&mut self, s: usize, first: u64, n: u64) -> impl Iterator<Item = &mut Pg> {
        self.model[s]
            .as_mut()
            .expect("a live space")
            .range_mut(first..first + n)
            .map(|(_, pg)| pg)
    }

    /// For ops that need the whole range mapped: `NoMapping` at the first
    /// unmapped page exactly when there is one. Returns whether the range
    /// is mapped (and `r` is then still to be looked at by the caller if
    /// it is an error).
    fn expect_mapped<T: std::fmt::Debug>(
        &mut self,
        s: usize,
        first: u64,
        n: u64,
        r: &Result<T, VmError>,
        what: &str,
    ) -> bool {
        match (self.first_unmapped(s, first, n), r) {
            (Some(v), Err(VmError::NoMapping { addr })) if *addr == v * PAGE => {
                self.stats.hit("err.NoMapping");
                false
            }
            (None, Ok(_)) => true,
            (None, Err(_)) if matches!(what, "mlock" | "madvise" | "page_out") => true,
            (un, r) => self.fail(format_args!(
                "{what}: {r:?}, first unmapped page: {:?}",
                un.map(|v| v * PAGE)
            )),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn mmap(&mut self, space: u8, area: u8, off: u8, pages: u8, kind: u8, prot: u8, pgoff: u8) {
        let s = usize::from(space) % SPACES;
        let Some(sp) = self.space(s) else { return };
        let first = BASE_VPN + u64::from(area) % AREAS * AREA_PAGES + u64::from(off) % 8;
        let n = 1 + u64::from(pages) % 8;
        let p = P::of(prot);
        let pgoff = usize::from(pgoff) % 8;
        let (va, len) = (first * PAGE, n * PAGE);
        let file = self.file.clone().expect("the file lives until the end");
        let kind = kind % 3;
        let r = if kind == 0 {
            sp.mmap_anonymous(Some(va), len, p.prot(), MapFlags::PRIVATE)
        } else {
            let flags = if kind == 1 {
                MapFlags::PRIVATE
            } else {
                MapFlags::SHARED
            };
            let mut req = MapRequest::new(file, len, p.prot(), flags);
            req.addr = Some(va);
            req.pgoff = pgoff as u64;
            sp.mmap(req)
        };
        let m = self.model[s].as_mut().expect("a live space");
        let overlap = m.range(first..first + n).next().is_some();
        match r {
            Ok(got) if !overlap && got == va => {
                for k in 0..n {
                    let index = pgoff + k as usize;
                    let kind = match kind {
                        0 => Kind::Anon,
                        1 => Kind::Private(index),
                        _ => Kind::Shared(index),
                    };
                    m.insert(
                        first + k,
                        Pg {
                            kind,
                            prot: p,
                            locked: false,
                            own: None,
                            advised: false,
                        },
                    );
                }
                self.stats.hit("mmap.ok");
            }
            Err(VmError::Overlap { .. }) if overlap => self.stats.hit("mmap.overlap"),
            r => self.fail(format_args!("mmap at {va:#x}: {r:?}, overlap: {overlap}")),
        }
    }

    fn mlock(&mut self, space: u8, range: Range) {
        let s = usize::from(space) % SPACES;
        let Some(sp) = self.space(s) else { return };
        let (first, n) = range_vpns(range);
        let r = sp.mlock(first * PAGE, n * PAGE);
        if !self.expect_mapped(s, first, n, &r, "mlock") {
            return;
        }
        // The range is locked whatever populating it did (locked first:
        // the pages it pinned count for a fault's plausibility); pages
        // before a failing one are populated: a writable private file
        // page got its copy of the file as it is now.
        for pg in self.pages_mut(s, first, n) {
            pg.locked = true;
        }
        let upto = match &r {
            Ok(()) => {
                self.stats.hit("mlock.ok");
                first + n
            }
            Err(VmError::Populate(f)) => {
                let at = fault_va(f).unwrap_or(0);
                let vpn = at / PAGE;
                if vpn < first || vpn >= first + n {
                    self.fail(format_args!("mlock: fault {f:?} outside the range"));
                }
                let pg = &self.model[s].as_ref().expect("a live space")[&vpn];
                let access = if !matches!(pg.kind, Kind::Shared(_)) && pg.prot == P::Rw {
                    Access::Write
                } else {
                    Access::Read
                };
                let key = self.check_fault(s, vpn, access, f, "mlock");
                self.stats.hit(key);
                self.stats.hit("mlock.populate_error");
                vpn
            }
            Err(e) => self.fail(format_args!("mlock: {e:?}")),
        };
        let filem = &self.filem;
        let m = self.model[s].as_mut().expect("a live space");
        for (&vpn, pg) in m.range_mut(first..first + n) {
            if vpn < upto && pg.prot == P::Rw && pg.own.is_none() {
                if let Kind::Private(i) = pg.kind {
                    pg.own = Some(Own {
                        cands: vec![filem[i].clone()],
                        lazy: false,
                    });
                }
            }
        }
    }

    fn madvise(&mut self, space: u8, range: Range, advice: Advice) {
        let s = usize::from(space) % SPACES;
        let Some(sp) = self.space(s) else { return };
        let (first, n) = range_vpns(range);
        let r = sp.madvise(first * PAGE, n * PAGE, advice);
        if !self.expect_mapped(s, first, n, &r, "madvise") {
            return;
        }
        let m = self.model[s].as_ref().expect("a live space");
        let locked = m
            .range(first..first + n)
            .find(|(_, pg)| pg.locked)
            .map(|(&v, _)| v * PAGE);
        let not_anon = m
            .range(first..first + n)
            .find(|(_, pg)| pg.kind != Kind::Anon)
            .map(|(&v, _)| v * PAGE);
        let free = advice == Advice::Free;
        match (&r, locked, not_anon) {
            (Err(VmError::Locked { addr }), Some(l), _) if *addr == l => {
                self.stats.hit("madvise.locked");
                return;
            }
            (Err(VmError::NotAnonymous { addr }), None, Some(a)) if free && *addr == a => {
                self.stats.hit("madvise.not_anonymous");
                return;
            }
            (Ok(()), None, None) => {}
            (Ok(()), None, Some(_)) if !free => {}
            (r, ..) => self.fail(format_args!(
                "madvise({advice:?}): {r:?}; first locked {locked:?}, first not anonymous \
                 {not_anon:?}"
            )),
        }
        let mut hit = None;
        for pg in self.pages_mut(s, first, n) {
            if free {
                if let Some(o) = &mut pg.own {
                    o.lazy = true;
                    pg.advised = true;
                    hit = Some("free.ok");
                }
            } else if matches!(pg.kind, Kind::Shared(_)) {
                // The file's page: left as it is.
            } else {
                pg.advised = false;
                if pg.own.take().is_some() {
                    hit = Some("dontneed.dropped");
                }
            }
        }
        if let Some(h) = hit {
            self.stats.hit(h);
        }
    }

    fn page_out(&mut self, space: u8, range: Range) {
        let s = usize::from(space) % SPACES;
        let Some(sp) = self.space(s) else { return };
        let (first, n) = range_vpns(range);
        let private = (first..first + n)
            .filter(|v| sp.pte(v * PAGE) & pte::PRIVATE != 0)
            .count() as u64;
        let r = sp.page_out(first * PAGE, n * PAGE);
        if !self.expect_mapped(s, first, n, &r, "page_out") {
            return;
        }
        match r {
            Ok(rep) => {
                if rep.paged_out + rep.kept != private
                    || rep.written > rep.paged_out
                    || (rep.kept > 0 && !self.any_locked())
                {
                    self.fail(format_args!(
                        "page_out: {rep:?} of {private} private entries (a page locked \
                         anywhere: {})",
                        self.any_locked()
                    ));
                }
                self.stats.hit(match (rep.paged_out, rep.kept) {
                    (0, 0) => "page_out.nothing",
                    (_, 0) => "page_out.ok",
                    _ => "page_out.kept",
                });
            }
            Err(VmError::Swap(Error::SwapFull { locations }))
                if locations == self.slots && self.in_use() == self.slots =>
            {
                self.stats.hit("page_out.swap_full")
            }
            Err(VmError::Swap(Error::SwapWrite { location, .. })) if self.writes_fail(location) => {
                self.stats.hit("page_out.swap_write")
            }
            Err(e) => self.fail(format_args!(
                "page_out: {e:?} (locations in use: {})",
                self.in_use()
            )),
        }
    }

    fn write(&mut self, space: u8, cpu: u8, at: At, len: u8, byte: u8) {
        let s = usize::from(space) % SPACES;
        let Some(sp) = self.space(s) else { return };
        let cpu = usize::from(cpu) % 2;
        let va = at_va(at);
        let len = len_of(len);
        let data = write_data(byte, self.step, len);
        let r = self.machine.cpu(cpu).write(&sp, va, &data);
        let upto = self.access_end(&r, va, len, "write");
        let mut cur = va;
        while cur < upto {
            let n = ((PAGE - cur % PAGE) as usize).min((upto - cur) as usize);
            let at = (cur - va) as usize;
            self.written(s, cur / PAGE, (cur % PAGE) as usize, &data[at..at + n]);
            cur += n as u64;
        }
        match r {
            Ok(()) => {
                self.stats.hit("write.ok");
                if (va % PAGE) as usize + len > PAGE_SIZE {
                    self.stats.hit("write.cross_page");
                }
            }
            Err(f) => {
                let key = self.check_fault(s, upto / PAGE, Access::Write, &f, "write");
                self.stats.hit(key);
                if upto > va {
                    self.stats.hit("write.partial");
                }
            }
        }
        if upto > va {
            self.read_checked(s, 1 - cpu, va, (upto - va) as usize, "read back");
        }
    }

    fn evict(&mut self, how: u8, space: u8, at: At) {
        let cap = self.pool.capacity() as u32;
        let f = if how % 2 == 1 {
            1 + u32::from(how / 2) % cap
        } else {
            let Some(sp) = self.space(usize::from(space) % SPACES) else {
                return;
            };
            pte::frame(sp.pte(at_va(at)))
        };
        let Some(id) = FrameId::new(f) else { return };
        match self.machine.evict_frame(id) {
            Ok(()) => self.stats.hit("evict.ok"),
            Err(Error::Busy) if self.any_locked() || self.writes_failing() => {
                self.stats.hit("evict.busy")
            }
            Err(Error::SwapFull { locations })
                if locations == self.slots && self.in_use() == self.slots =>
            {
                self.stats.hit("evict.swap_full")
            }
            Err(Error::SwapWrite { location, .. }) if self.writes_fail(location) => {
                self.stats.hit("evict.swap_write")
            }
            Err(e) => self.fail(format_args!(
                "evict_frame({f}): {e:?} (a page locked anywhere: {})",
                self.any_locked()
            )),
        }
    }

    /// The checks that touch no memory (see the module docs).
    fn structure(&mut self) {
        let mut counts = vec![0u32; self.slots as usize];
        for s in 0..SPACES {
            let Some(sp) = self.space(s) else { continue };
            let m = self.model[s].as_ref().expect("a live space");
            for vpn in BASE_VPN..BASE_VPN + SPAN {
                let e = sp.pte(vpn * PAGE);
                let bad = match m.get(&vpn) {
                    None => e != 0,
                    Some(pg) => {
                        matches!(pg.kind, Kind::Shared(_)) && e & (pte::PRIVATE | pte::SWAP) != 0
                    }
                };
                if bad {
                    self.fail(format_args!(
                        "space {s} page {vpn:#x} ({:?}): PTE {e:#x}",
                        m.get(&vpn)
                    ));
                }
                if let Some(l) = pte::swap_location(e) {
                    match counts.get_mut(l as usize) {
                        Some(c) => *c += 1,
                        None => {
                            self.fail(format_args!("space {s} page {vpn:#x}: swap entry {e:#x}"))
                        }
                    }
                }
            }
        }
        let swap = self.machine.swap().expect("swap");
        for (l, &c) in counts.iter().enumerate() {
            let real = swap.entries(Location::new(l as u32));
            if real != c {
                self.fail(format_args!(
                    "swap location {l} counts {real} entries, the PTEs name it {c} times"
                ));
            }
        }
    }

    /// Reads every mapped page of every space whole (a PROT_NONE page
    /// must refuse a read).
    fn sweep(&mut self) {
        let mut cpu = 0;
        for s in 0..SPACES {
            let Some(m) = &self.model[s] else { continue };
            let pages: Vec<u64> = m.keys().copied().collect();
            for vpn in pages {
                let len = if self.model[s].as_ref().expect("live")[&vpn].prot == P::None {
                    1
                } else {
                    PAGE_SIZE
                };
                self.read_checked(s, cpu, vpn * PAGE, len, "sweep");
                cpu = 1 - cpu;
            }
        }
        self.stats.hit("sweep");
    }

    fn finish(&mut self) {
        // Swap I/O heals; every lock goes: the last sweep may fail only
        // where swap is full.
        self.swap.fail_all_reads(false);
        self.swap.fail_all_writes(false);
        for l in std::mem::take(&mut self.read_fail) {
            self.swap.fail_reads(Location::new(l), false);
        }
        for l in std::mem::take(&mut self.write_fail) {
            self.swap.fail_writes(Location::new(l), false);
        }
        self.all_reads_fail = false;
        self.all_writes_fail = false;
        for s in 0..SPACES {
            let Some(sp) = self.space(s) else { continue };
            let locked: Vec<u64> = self.model[s]
                .as_ref()
                .expect("live")
                .iter()
                .filter(|(_, pg)| pg.locked)
                .map(|(&v, _)| v)
                .collect();
            for vpn in locked {
                if let Err(e) = sp.munlock(vpn * PAGE, PAGE) {
                    self.fail(format_args!("final munlock of {vpn:#x}: {e:?}"));
                }
                self.model[s]
                    .as_mut()
                    .expect("live")
                    .get_mut(&vpn)
                    .expect("mapped")
                    .locked = false;
            }
        }
        self.pressure_before = self.pressure();
        self.sweep();
        self.structure();
        self.spaces = vec![None, None, None];
        self.model = vec![None, None, None];
        let in_use = self.in_use();
        if in_use != 0 {
            self.fail(format_args!(
                "{in_use} swap locations in use with every space gone"
            ));
        }
        let file = self.file.take().expect("the file");
        let rep = file.writeback(..);
        if !rep.errors.is_empty() {
            self.fail(format_args!("final writeback: {rep:?}"));
        }
        for (i, want) in self.filem.iter().enumerate() {
            let got = self.store.page(i as u64).unwrap_or_else(zero_page);
            if let Some(k) = (0..PAGE_SIZE).find(|&k| got[k] != want[k]) {
                self.fail(format_args!(
                    "file page {i} byte {k}: the store has {}, the shared writes {}",
                    got[k], want[k]
                ));
            }
        }
        drop(file);
        let free = self.pool.free_frames();
        if free != self.pool.capacity() {
            self.fail(format_args!(
                "{free} of {} frames free with every space and the file gone",
                self.pool.capacity()
            ));
        }
        self.stats.hit("finished");
    }
}
