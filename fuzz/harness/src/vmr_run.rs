//! The `vmr_ops` runner: a [`VmrInput`] against a real `vmr::Machine`
//! (1-2 CPUs with TLBs, 2-3 address spaces, 1-2 files, each a `PageMap` over
//! a `MemStore` on the machine's pool) and against the [`VmModel`]. Panics
//! at the first difference, naming the op.
//!
//! After every op: each space's regions (base, end, pgoff, prot, flags,
//! advice, file), each file's `nr_mappings`, `cached_indices`,
//! `dirty_indices`, and the pool's free frames. On `Check` and at the end:
//! every cached page's contents and every known store page. At the end all
//! spaces are dropped, injected write errors lifted, files synced and
//! compared with the model's store (exactly the shared writes), then the
//! files are dropped and every frame must be back in the pool.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use pagemap::{Error, FrameId, FramePool, MemStore, PageMap};
use vmr::{Access, AddressSpace, Advice, Fault, Machine, MapFlags, MapRequest, Prot, VmError};

use crate::vmr_model::*;
use crate::vmr_ops::{Addr, Area, At, Len, Op, Pg, Span, VmrInput, PROTS};
use crate::Stats;

/// Runs fuzzer bytes. Panics on any divergence from the model. Steps
/// around the known bugs (see [`KNOWN_BUGS`]) so that fuzzing finds new ones.
pub fn run(data: &[u8]) -> Stats {
    run_input(&VmrInput::decode(data), false)
}

/// Runs fuzzer bytes without stepping around the known bugs (the `bug_*`
/// seeds reproduce them this way).
pub fn run_strict(data: &[u8]) -> Stats {
    run_input(&VmrInput::decode(data), true)
}

/// Known bugs of `vmr` that [`run`] steps around (and `run_strict` does not).
/// None now. Fixed: `odd_prot_read` (a read of a write-only or exec-only
/// region faulted before a PTE existed and succeeded after; any protection
/// but NONE is now readable, as on x86), seed `fixed_odd_prot_read`.
pub const KNOWN_BUGS: &[&str] = &[];

struct File {
    map: Arc<PageMap>,
    store: Arc<MemStore>,
}

struct Run {
    pool: Arc<FramePool>,
    machine: Arc<Machine>,
    files: Vec<File>,
    foreign: Arc<PageMap>,
    spaces: Vec<Option<Arc<AddressSpace>>>,
    model: VmModel,
    /// Per file, the cached pages `full_check` last read and found right,
    /// with their frame: read again only once the model's contents or the
    /// frame changed (a page freed and reloaded is dropped from here).
    verified: Vec<BTreeMap<u64, (FrameId, Box<Page>)>>,
    stats: Stats,
    step: usize,
    op: Option<Op>,
    /// Do not step around `KNOWN_BUGS` (none are open now; kept for the next).
    #[allow(dead_code)]
    strict: bool,
}

macro_rules! check_eq {
    ($run:expr, $real:expr, $model:expr, $($what:tt)+) => {{
        let (r, m) = (&$real, &$model);
        if r != m {
            $run.diverged(format!(
                "{}\n  vmr:   {:?}\n  model: {:?}",
                format!($($what)+),
                r,
                m
            ));
        }
    }};
}

/// Runs a decoded input. Panics on any divergence from the model.
pub fn run_input(input: &VmrInput, strict: bool) -> Stats {
    let pool = crate::pools::pool(input.frames);
    let machine = Machine::new(pool.clone(), input.cpus);
    let files = (0..input.files)
        .map(|_| {
            let store = Arc::new(MemStore::new());
            File {
                map: PageMap::new(pool.clone(), store.clone()),
                store,
            }
        })
        .collect();
    let foreign = PageMap::new(crate::pools::pool(1), Arc::new(MemStore::new()));
    let mut run = Run {
        spaces: (0..input.spaces)
            .map(|_| Some(AddressSpace::new(machine.clone())))
            .collect(),
        pool,
        machine,
        files,
        foreign,
        model: VmModel::new(input.spaces, input.files, input.frames),
        verified: vec![BTreeMap::new(); input.files],
        stats: Stats::default(),
        step: 0,
        op: None,
        strict,
    };
    for (step, op) in input.ops.iter().enumerate() {
        run.step = step;
        run.op = Some(*op);
        run.stats.hit(op.name());
        run.op(op);
        // The page lists (radix scans) only where they change in bulk and
        // on `Check`; the counts after every op.
        let lists = matches!(op, Op::FreeUnused(_) | Op::Writeback(..) | Op::Sync(_));
        run.cheap_checks(lists);
    }
    run.step = input.ops.len();
    run.op = None;
    run.finish();
    run.stats
}

/// An outcome as compared: the model predicts the library's own error
/// values (kind and every field, the I/O source included).
fn outcome<T: std::fmt::Debug, E: std::fmt::Debug>(r: &Result<T, E>) -> String {
    format!("{r:?}")
}

fn prot_of(bits: u8) -> Prot {
    let mut p = Prot::NONE;
    for (b, q) in [(READ, Prot::READ), (WRITE, Prot::WRITE), (EXEC, Prot::EXEC)] {
        if bits & b != 0 {
            p = p | q;
        }
    }
    p
}

fn flags_of(bits: u8) -> MapFlags {
    let mut f = MapFlags::default();
    for (b, q) in [
        (SHARED, MapFlags::SHARED),
        (PRIVATE, MapFlags::PRIVATE),
        (LOCKED, MapFlags::LOCKED),
        (POPULATE, MapFlags::POPULATE),
    ] {
        if bits & b != 0 {
            f = f | q;
        }
    }
    f
}

fn advice_of(a: u8) -> Advice {
    match a % 3 {
        0 => Advice::Normal,
        1 => Advice::Random,
        _ => Advice::Sequential,
    }
}

/// Flag bits of an `Op::Mmap` selector.
fn decode_flags(sel: u8) -> u8 {
    let kind = match sel & 7 {
        0..=2 => SHARED,
        3..=5 => PRIVATE,
        6 => SHARED | PRIVATE,
        _ => 0,
    };
    kind | if sel & 0x10 != 0 { POPULATE } else { 0 } | if sel & 0x20 != 0 { LOCKED } else { 0 }
}

/// The initial store contents of a page: recognisable per file and index.
fn pattern(file: usize, index: u64) -> Box<Page> {
    let mut p = Box::new([0u8; PAGE_SIZE]);
    let fill = (index as u8)
        .wrapping_mul(7)
        .wrapping_add(file as u8 * 0x55)
        .wrapping_add(1);
    p.fill(fill);
    p[..8].copy_from_slice(&index.to_le_bytes());
    p[8] = file as u8;
    p
}

/// The bytes a write stores.
fn write_data(seed: u8, step: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i as u8).wrapping_mul(31)) ^ (step as u8) ^ 0xa5)
        .collect()
}

impl Run {
    fn diverged(&self, what: String) -> ! {
        panic!(
            "DIVERGENCE at op #{} {:?}: {}\n  model spaces: {:#?}\n  pool: {:?}",
            self.step,
            self.op,
            what,
            self.model
                .spaces
                .iter()
                .map(|s| s.as_ref().map(|s| &s.regions))
                .collect::<Vec<_>>(),
            self.pool,
        )
    }

    fn slot(&self, s: u8) -> usize {
        usize::from(s) % self.spaces.len()
    }

    fn cpu(&self, c: u8) -> &vmr::Cpu {
        self.machine.cpu(usize::from(c) % self.machine.cpus().len())
    }

    /// The slot, its live space, and the op's address and length in it.
    fn range_args(&self, a: Area) -> Option<(usize, Arc<AddressSpace>, u64, u64)> {
        let s = self.slot(a.s);
        let space = self.spaces[s].clone()?;
        Some((s, space, self.addr(s, a.addr), Self::len(a.len)))
    }

    /// As [`range_args`](Self::range_args) for a CPU access: `off` into the
    /// page, up to 8199 bytes.
    fn access_args(&self, at: At) -> Option<(usize, Arc<AddressSpace>, u64, usize)> {
        let s = self.slot(at.s);
        let space = self.spaces[s].clone()?;
        let va = self.addr(s, at.addr).wrapping_add(u64::from(at.off % 4096));
        Some((s, space, va, usize::from(at.len % 8200)))
    }

    fn file(&self, f: u8) -> usize {
        usize::from(f) % self.files.len()
    }

    fn addr(&self, s: usize, a: Addr) -> u64 {
        let region = |i: u8| -> u64 {
            match &self.model.spaces[s] {
                Some(sp) if !sp.regions.is_empty() => *sp
                    .regions
                    .keys()
                    .nth(usize::from(i) % sp.regions.len())
                    .expect("in range"),
                _ => MMAP_BASE,
            }
        };
        match a {
            Addr::Low(k) => u64::from(k % 64) * PAGE,
            Addr::Base(k) => MMAP_BASE + u64::from(k % 64) * PAGE,
            Addr::Region(i, d) => {
                region(i).wrapping_add_signed((i64::from(d).rem_euclid(24) - 4) * PAGE as i64)
            }
            Addr::Top(k) => VA_END - u64::from(k % 16) * PAGE,
            Addr::Max(k) => !(PAGE - 1) - u64::from(k % 16) * PAGE,
            Addr::Odd(i, v) => region(i) + 1 + u64::from(v % 4095),
        }
    }

    fn len(l: Len) -> u64 {
        match l {
            Len::Pages(n) => u64::from(n % 20) * PAGE,
            Len::Bytes(v) => u64::from(v),
            Len::Huge(k) => !(PAGE - 1) - u64::from(k % 4) * PAGE,
            Len::VaEnd(k) => match k % 4 {
                0 => VA_END,
                1 => VA_END - PAGE,
                2 => VA_END - MMAP_BASE,
                _ => VA_END + PAGE,
            },
        }
    }

    fn pg(&self, f: usize, p: Pg) -> u64 {
        match p {
            Pg::Small(k) => u64::from(k % 32),
            Pg::Big(d) => (1u64 << 40).wrapping_add_signed(i64::from(d)),
            Pg::Top(k) => u64::MAX - u64::from(k % 32),
            Pg::Div(d) => (u64::MAX / PAGE).wrapping_add_signed(i64::from(d)),
            Pg::Known(k) => {
                let known = &self.model.files[f].known;
                if known.is_empty() {
                    0
                } else {
                    *known
                        .iter()
                        .nth(usize::from(k) % known.len())
                        .expect("in range")
                }
            }
        }
    }

    /// Fills never-seen store pages of a mapping with their pattern (the
    /// first 32 pages), in the store and in the model alike.
    fn prefill(&mut self, f: usize, pgoff: u64, len: u64) {
        if len == 0 || !len.is_multiple_of(PAGE) || pgoff.checked_add(len / PAGE - 1).is_none() {
            return;
        }
        for i in 0..(len / PAGE).min(32) {
            let index = pgoff + i;
            let mf = &mut self.model.files[f];
            if !mf.known.insert(index) || mf.cache.contains_key(&index) {
                continue;
            }
            let p = pattern(f, index);
            self.files[f].store.set_page(index, &p);
            mf.store.insert(index, p);
        }
    }

    fn vm_result<T: std::fmt::Debug + PartialEq>(
        &mut self,
        what: &'static str,
        real: Result<T, VmError>,
        model: Result<T, VmError>,
    ) {
        match &real {
            Ok(_) => self.stats.hit(what),
            Err(e) => self.stats.hit(err_name(e)),
        }
        check_eq!(self, outcome(&real), outcome(&model), "{what} result");
    }

    fn op(&mut self, op: &Op) {
        match *op {
            Op::Mmap(m) => {
                let s = self.slot(m.s);
                let Some(space) = self.spaces[s].clone() else {
                    return;
                };
                let fixed = m.fixed.map(|a| self.addr(s, a));
                let len = Self::len(m.len);
                let prot = PROTS[usize::from(m.prot % 8)];
                let flags = decode_flags(m.flags);
                let file = (m.f % 8 != 7).then(|| self.file(m.f));
                let pgoff = self.pg(file.unwrap_or(0), m.pgoff);
                if let Some(fi) = file {
                    self.prefill(fi, pgoff, len);
                }
                let map = match file {
                    Some(fi) => self.files[fi].map.clone(),
                    None => self.foreign.clone(),
                };
                let req = MapRequest {
                    addr: fixed,
                    len,
                    prot: prot_of(prot),
                    flags: flags_of(flags),
                    file: map,
                    pgoff,
                    advice: advice_of(m.advice),
                };
                let real = space.mmap(req);
                let model = self
                    .model
                    .mmap(s, fixed, len, prot, flags, file, pgoff, m.advice % 3);
                if flags & (POPULATE | LOCKED) != 0 {
                    self.stats.hit("mmap.populate");
                }
                self.vm_result("mmap.ok", real, model);
            }
            Op::Munmap(a) => {
                let Some((s, space, addr, len)) = self.range_args(a) else {
                    return;
                };
                let real = space.munmap(addr, len);
                let model = self.model.munmap(s, addr, len);
                self.vm_result("munmap.ok", real, model);
            }
            Op::Mprotect(a, prot) => {
                let Some((s, space, addr, len)) = self.range_args(a) else {
                    return;
                };
                let prot = PROTS[usize::from(prot % 8)];
                let real = space.mprotect(addr, len, prot_of(prot));
                let model = self.model.mprotect(s, addr, len, prot);
                self.vm_result("mprotect.ok", real, model);
            }
            Op::Madvise(a, advice) => {
                let Some((s, space, addr, len)) = self.range_args(a) else {
                    return;
                };
                let real = space.madvise(addr, len, advice_of(advice));
                let model = self.model.madvise(s, addr, len, advice % 3);
                self.vm_result("madvise.ok", real, model);
            }
            Op::Fork { src, dst } => {
                let (src, dst) = (self.slot(src), self.slot(dst));
                let Some(model) = self.model.fork(src, dst) else {
                    return;
                };
                self.spaces[dst] = None; // drop: teardown
                let parent = self.spaces[src].clone().expect("live parent");
                let real = parent.fork();
                let real = match real {
                    Ok(child) => {
                        self.spaces[dst] = Some(child);
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                self.vm_result("fork.ok", real, model);
            }
            Op::Drop(s) => {
                let s = self.slot(s);
                if self.spaces[s].take().is_some() {
                    self.stats.hit("drop.space");
                }
                self.model.drop_space(s);
            }
            Op::New(s) => {
                let s = self.slot(s);
                self.spaces[s] = None;
                self.model.drop_space(s);
                self.spaces[s] = Some(AddressSpace::new(self.machine.clone()));
                self.model.spaces[s] = Some(MSpace::default());
            }
            Op::Read(at) => {
                let Some((s, space, va, len)) = self.access_args(at) else {
                    return;
                };
                let cpu = self.cpu(at.c);
                let mut buf = vec![0u8; len];
                let real = cpu.read(&space, va, &mut buf);
                let mut want = Vec::new();
                let model = self.model.access(s, va, len, None, &mut want);
                self.access_stats("read", &real, va, len);
                check_eq!(
                    self,
                    outcome(&real),
                    outcome(&model),
                    "read({va:#x}, {len})"
                );
                // On a fault, the pages before it were read all the same.
                if buf[..want.len()] != want[..] {
                    let at = (0..want.len())
                        .find(|&i| buf[i] != want[i])
                        .expect("differs");
                    self.diverged(format!(
                        "read({va:#x}, {len}): byte {at} (va {:#x}) is {:#04x}, model says {:#04x}",
                        va + at as u64,
                        buf[at],
                        want[at]
                    ));
                }
            }
            Op::Write(at, seed) => {
                let Some((s, space, va, len)) = self.access_args(at) else {
                    return;
                };
                let cpu = self.cpu(at.c);
                let data = write_data(seed, self.step, len);
                let private_before = self.model.spaces[s].as_ref().map_or(0, |m| m.private.len());
                let real = cpu.write(&space, va, &data);
                let model = self.model.access(s, va, len, Some(&data), &mut Vec::new());
                if self.model.spaces[s].as_ref().map_or(0, |m| m.private.len()) > private_before {
                    self.stats.hit("write.cow");
                }
                self.access_stats("write", &real, va, len);
                check_eq!(
                    self,
                    outcome(&real),
                    outcome(&model),
                    "write({va:#x}, {len})"
                );
            }
            Op::FreeUnused(f) => {
                let f = self.file(f);
                let r = self.files[f].map.free_unused();
                let m = self.model.free_unused(f);
                self.verified[f].clear();
                let errors = self.write_errors(&r.errors, "free_unused");
                for (n, what) in [
                    (r.freed, "free_unused.freed"),
                    (r.written, "free_unused.written"),
                    (r.mapped, "free_unused.mapped"),
                    (errors.len() as u64, "free_unused.write_error"),
                ] {
                    if n > 0 {
                        self.stats.hit(what);
                    }
                }
                let real = MFree {
                    freed: r.freed,
                    written: r.written,
                    mapped: r.mapped,
                    errors,
                };
                check_eq!(
                    self,
                    (r.referenced, r.raced),
                    (0u64, 0u64),
                    "free_unused referenced/raced"
                );
                check_eq!(self, real, m, "free_unused report");
            }
            Op::Writeback(f, span) => {
                let f = self.file(f);
                let range = self.span(f, span);
                let r = match range {
                    Some((a, b)) => self.files[f].map.writeback(a..=b),
                    None => match span {
                        // Empty ranges, passed as the op says.
                        Span::To(b) => self.files[f].map.writeback(..self.pg(f, b)),
                        Span::Incl(a, b) => {
                            self.files[f].map.writeback(self.pg(f, a)..=self.pg(f, b))
                        }
                        _ => unreachable!("never empty"),
                    },
                };
                self.wb_compare(f, r, range);
            }
            Op::Sync(f) => {
                let f = self.file(f);
                let r = self.files[f].map.writeback(..);
                self.wb_compare(f, r, Some((0, u64::MAX)));
            }
            Op::FailReads(f, p, on) | Op::FailWrites(f, p, on) => {
                let f = self.file(f);
                let i = self.pg(f, p);
                let (store, mf) = (&self.files[f].store, &mut self.model.files[f]);
                let set = if matches!(op, Op::FailReads(..)) {
                    store.fail_reads(i, on);
                    &mut mf.bad_reads
                } else {
                    store.fail_writes(i, on);
                    &mut mf.bad_writes
                };
                if on {
                    set.insert(i);
                } else {
                    set.remove(&i);
                }
            }
            Op::FlushTlb(c) => {
                self.cpu(c).flush_tlb();
            }
            Op::Check => {
                self.cheap_checks(true);
                self.full_check(true);
            }
        }
    }

    fn span(&self, f: usize, s: Span) -> Option<(u64, u64)> {
        match s {
            Span::Full => Some((0, u64::MAX)),
            Span::Incl(a, b) => {
                let (a, b) = (self.pg(f, a), self.pg(f, b));
                (a <= b).then_some((a, b))
            }
            Span::From(a) => Some((self.pg(f, a), u64::MAX)),
            Span::To(b) => self.pg(f, b).checked_sub(1).map(|b| (0, b)),
        }
    }

    /// The indices of a report's errors, which must all be write errors.
    fn write_errors(&self, errors: &[Error], what: &str) -> Vec<u64> {
        errors
            .iter()
            .map(|e| match e {
                Error::Write { index, .. } => *index,
                other => self.diverged(format!("{what} error {other:?}")),
            })
            .collect()
    }

    fn wb_compare(&mut self, f: usize, r: pagemap::WritebackReport, range: Option<(u64, u64)>) {
        let m = self.model.writeback(f, range);
        let errors = self.write_errors(&r.errors, "writeback");
        if r.written > 0 {
            self.stats.hit("writeback.written");
        }
        if !errors.is_empty() {
            self.stats.hit("writeback.write_error");
        }
        check_eq!(
            self,
            MWriteback {
                written: r.written,
                errors
            },
            m,
            "writeback report"
        );
    }

    fn access_stats(&mut self, what: &'static str, r: &Result<(), Fault>, va: u64, len: usize) {
        if len > 0 && va % PAGE + len as u64 > PAGE {
            self.stats.hit(if what == "read" {
                "read.cross_page"
            } else {
                "write.cross_page"
            });
        }
        self.stats.hit(match (what, r) {
            ("read", Ok(())) => "read.ok",
            (_, Ok(())) => "write.ok",
            (_, Err(f)) => fault_name(f),
        });
    }

    fn cheap_checks(&mut self, lists: bool) {
        for s in 0..self.spaces.len() {
            let real = self.spaces[s].as_ref().map(|sp| {
                sp.regions()
                    .iter()
                    .map(|v| {
                        let f = self
                            .files
                            .iter()
                            .position(|f| Arc::ptr_eq(&f.map, v.file()));
                        (
                            v.base(),
                            v.end(),
                            v.pgoff(),
                            v.prot(),
                            v.flags(),
                            v.advice(),
                            f,
                        )
                    })
                    .collect::<Vec<_>>()
            });
            let model = self.model.spaces[s].as_ref().map(|sp| {
                sp.regions
                    .values()
                    .map(|r| {
                        (
                            r.base,
                            r.end,
                            r.pgoff,
                            prot_of(r.prot),
                            flags_of(r.flags),
                            advice_of(r.advice),
                            Some(r.file),
                        )
                    })
                    .collect::<Vec<_>>()
            });
            check_eq!(self, real, model, "regions of space {s}");
        }
        for f in 0..self.files.len() {
            let map = &self.files[f].map;
            let mf = &self.model.files[f];
            let nr = (map.nr_mappings(), map.nr_pages());
            let want = (self.model.nr_mappings(f), mf.cache.len() as u64);
            check_eq!(self, nr, want, "file {f} (nr_mappings, nr_pages)");
            if !lists {
                continue;
            }
            let (cached, dirty) = (map.cached_indices(..), map.dirty_indices(..));
            check_eq!(
                self,
                cached,
                mf.cache.keys().copied().collect::<Vec<_>>(),
                "file {f} cached"
            );
            check_eq!(
                self,
                dirty,
                mf.dirty.iter().copied().collect::<Vec<_>>(),
                "file {f} dirty"
            );
        }
        check_eq!(
            self,
            self.pool.free_frames(),
            self.model.free_frames(),
            "free frames"
        );
    }

    /// Every cached page's contents (those not verified unchanged since);
    /// with `store`, every known store page.
    fn full_check(&mut self, store: bool) {
        for f in 0..self.files.len() {
            let mf = &self.model.files[f];
            let verified = &mut self.verified[f];
            verified.retain(|i, _| mf.cache.contains_key(i));
            for (&i, want) in &mf.cache {
                let page = match self.files[f].map.find(i) {
                    Ok(Some(p)) => p,
                    other => self.diverged(format!("file {f} page {i}: find gave {other:?}")),
                };
                let frame = page.frame();
                if verified
                    .get(&i)
                    .is_some_and(|(fr, p)| *fr == frame && p[..] == want[..])
                {
                    continue;
                }
                let mut buf = [0u8; PAGE_SIZE];
                page.read_page(&mut buf);
                drop(page);
                if buf[..] != want[..] {
                    let at = (0..PAGE_SIZE)
                        .find(|&j| buf[j] != want[j])
                        .expect("differs");
                    self.diverged(format!(
                        "file {f} cached page {i} byte {at}: {:#04x}, model {:#04x}",
                        buf[at], want[at]
                    ));
                }
                verified.insert(i, (frame, want.clone()));
            }
            if !store {
                continue;
            }
            let indices: BTreeSet<u64> = mf.known.iter().chain(mf.store.keys()).copied().collect();
            for i in indices {
                let real = self.files[f].store.page(i);
                let want = mf.store.get(&i);
                if real.as_deref().map(|p| &p[..]) != want.map(|p| &p[..]) {
                    self.diverged(format!(
                        "file {f} store page {i}: {} vs model {}",
                        describe(real.as_deref()),
                        describe(want.map(|p| &**p))
                    ));
                }
            }
        }
        self.stats.hit("check.full");
    }

    /// Drops every space, syncs every file with write errors lifted, checks
    /// that the store holds exactly the shared writes, then that every frame
    /// is back in the pool once the files are gone.
    fn finish(&mut self) {
        self.full_check(false);
        for s in 0..self.spaces.len() {
            self.spaces[s] = None;
            self.model.drop_space(s);
        }
        self.cheap_checks(true);
        for f in 0..self.files.len() {
            check_eq!(
                self,
                self.files[f].map.nr_mappings(),
                0usize,
                "file {f} mapped after teardown"
            );
            let bad: Vec<u64> = self.model.files[f].bad_writes.iter().copied().collect();
            for i in bad {
                self.files[f].store.fail_writes(i, false);
            }
            self.model.files[f].bad_writes.clear();
            let r = self.files[f].map.writeback(..);
            self.wb_compare(f, r, Some((0, u64::MAX)));
            let mf = &self.model.files[f];
            assert!(mf.dirty.is_empty(), "model: dirty after sync");
            for (i, p) in &mf.cache {
                assert!(
                    mf.store_page(*i)[..] == p[..],
                    "model: store page {i} not synced"
                );
            }
        }
        self.cheap_checks(true);
        self.full_check(true);
        self.spaces.clear();
        self.files.clear();
        check_eq!(
            self,
            self.pool.free_frames(),
            self.model.capacity,
            "frames back in the pool"
        );
    }
}

fn describe(p: Option<&Page>) -> String {
    match p {
        None => "absent".into(),
        Some(p) => format!("{:02x?}..", &p[..16]),
    }
}

fn fault_name(f: &Fault) -> &'static str {
    match f {
        Fault::NoMapping { .. } => "fault.NoMapping",
        Fault::Protection {
            access: Access::Write,
            ..
        } => "fault.Protection.write",
        Fault::Protection { .. } => "fault.Protection.read",
        Fault::Io {
            source: Error::Read { .. },
            ..
        } => "fault.Io.read_error",
        Fault::Io {
            source: Error::PoolExhausted { .. },
            ..
        } => "fault.Io.pool_exhausted",
        Fault::OutOfMemory { .. } => "fault.OutOfMemory",
        _ => "fault.other",
    }
}

fn err_name(e: &VmError) -> &'static str {
    match e {
        VmError::Misaligned { .. } => "err.Misaligned",
        VmError::ZeroLength => "err.ZeroLength",
        VmError::Overflow => "err.Overflow",
        VmError::OutOfRange { .. } => "err.OutOfRange",
        VmError::Overlap { .. } => "err.Overlap",
        VmError::NoMapping { .. } => "err.NoMapping",
        VmError::NoSpace => "err.NoSpace",
        VmError::InvalidFlags => "err.InvalidFlags",
        VmError::ForeignPool => "err.ForeignPool",
        VmError::OutOfMemory => "err.OutOfMemory",
        VmError::Populate(f) => match fault_name(f) {
            "fault.Io.read_error" => "err.Populate.read_error",
            "fault.Io.pool_exhausted" => "err.Populate.pool_exhausted",
            "fault.OutOfMemory" => "err.Populate.oom",
            _ => "err.Populate.other",
        },
        _ => "err.Other",
    }
}
