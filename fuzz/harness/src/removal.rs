//! The threaded removal stress test (`tests/removal_stress.rs`): six threads race over one small file
//! (see [`crate::removal_world`]) mapped by two address spaces, shared
//! (window slots 0..8: logical pages 0..6, 10, 11) and private (slots 8..16,
//! the same pages):
//!
//! * two CPU threads (CPU `t`, owner of space `t`): shared writes through
//!   either space, private writes through their own (copy-on-write faults),
//!   reads checked against their own writes, munmap and mmap of single
//!   pages of their own space, msync;
//! * two lookup threads: `find`/`load`, holding pages a while, writing and
//!   reading them through the reference;
//! * a remover: `remove`, `try_remove`, `remove_with(PerPage)`,
//!   `free_unused`, `invalidate`, and removals stepped pass by pass with
//!   yields between the passes, over arbitrary ranges (empty, huge,
//!   `u64::MAX`-ending);
//! * a writeback thread: `writeback`, `sync`, `msync`, injected write errors.
//!
//! Every writer `w` (CPU threads 0, 1, lookup threads 2, 3) writes only its
//! own bytes of each page, [`region`]`(w)`, in 8-byte slots, with unique
//! stamps (writer, page, slot, sequence number), so the last write to each
//! byte is known: the shared contents every page must end with are the
//! pattern overlaid with each writer's last stamps. While running, each
//! writer checks that it reads back its own last writes (shared, or in its
//! own private copies). After the join: [`check_structure`], every mapped
//! page read through every CPU (shared: exactly the expected contents;
//! private: exact in the owner's bytes, and every other slot holds a value
//! it once had), every cached page; then with write errors lifted a `sync`,
//! after which the store is exactly the expected contents; `remove(..)`
//! (only pinned pages stay) and everything is read again from the store;
//! the spaces go and every frame is back in the pool.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pagemap::{Batching, Error, PageMap, PageRef, Pass, RemoveReport, PAGE_SIZE};
use vmr::{AddressSpace, Fault, MapFlags, MapRequest, Prot, VmError};

use crate::removal_interleaved::range;
use crate::removal_world::*;
use crate::Stats;

/// Ops per thread at most.
pub const MAX_OPS: usize = 40;
/// Threads: CPU 0, CPU 1, lookup 0, lookup 1, remover, writeback.
pub const THREADS: usize = 6;
/// Writers (CPU threads 0, 1, lookup threads 2, 3).
pub const WRITERS: usize = 4;
/// 8-byte stamp slots per writer per page.
pub const WSLOTS: usize = 16;

/// The logical pages window slots `0..8` (shared) and `8..16` (private) map.
pub const PAGES: [usize; 8] = [0, 1, 2, 3, 4, 5, 10, 11];

/// The first byte of writer `w`'s bytes in every page.
pub fn region(w: usize) -> usize {
    512 + w * 256
}

/// A decoded input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// Pool size: `& 0x80`: 64 frames, else `10 + b % 31`.
    pub frames: u8,
    /// Bit 0: space 1's shared mappings are MAP_LOCKED (pinned); bit 1: no
    /// private mappings at the start.
    pub config: u8,
    /// Per thread, its ops `[op, x, y]` (op `k` of the input goes to thread
    /// `k % 6`).
    pub ops: Vec<Vec<[u8; 3]>>,
}

impl Input {
    /// Every byte string decodes.
    pub fn decode(data: &[u8]) -> Input {
        let b = |i: usize| data.get(i).copied().unwrap_or(0);
        let mut ops = vec![Vec::new(); THREADS];
        for (k, c) in data.get(2..).unwrap_or(&[]).chunks(3).enumerate() {
            if ops[k % THREADS].len() < MAX_OPS {
                let mut op = [0u8; 3];
                op[..c.len()].copy_from_slice(c);
                ops[k % THREADS].push(op);
            }
        }
        Input {
            frames: b(0),
            config: b(1),
            ops,
        }
    }

    /// Encodes per-thread op lists (the inverse of `decode`, up to
    /// trailing zero ops).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.frames, self.config];
        let n = self.ops.iter().map(Vec::len).max().unwrap_or(0);
        for k in 0..n {
            for t in 0..THREADS {
                out.extend_from_slice(&self.ops[t].get(k).copied().unwrap_or([0xff, 0xff, 0xff]));
            }
        }
        out
    }

    fn nframes(&self) -> usize {
        if self.frames & 0x80 != 0 {
            64
        } else {
            10 + usize::from(self.frames % 31)
        }
    }
}

/// Runs input bytes; panics on any lost write, stale translation, leaked
/// or doubly owned frame, or inconsistent count.
pub fn run(data: &[u8]) -> Stats {
    run_input(&Input::decode(data))
}

/// A stamp: writer, logical page, slot, sequence number.
fn stamp(w: usize, lp: usize, ws: usize, seq: u32) -> [u8; 8] {
    let s = seq.to_le_bytes();
    [
        0xc0 | w as u8,
        lp as u8,
        ws as u8,
        s[0],
        s[1],
        s[2],
        s[3],
        0x5a,
    ]
}

/// Byte offset of writer `w`'s slot `ws`.
fn at(w: usize, ws: usize) -> usize {
    region(w) + ws * 8
}

/// Last writes of one writer: `[lp][ws]`.
type Last = Vec<[Option<[u8; 8]>; WSLOTS]>;

fn new_last() -> Last {
    vec![[None; WSLOTS]; NPAGES]
}

/// What a CPU thread leaves: its space's layout, its private copies' own
/// bytes (`None`: no copy), its last shared writes.
struct CpuEnd {
    layout: [Option<SlotMap>; WINDOW],
    private: Vec<Option<[Option<[u8; 8]>; WSLOTS]>>,
    last: Last,
    seq: u32,
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

fn ok_errors(errors: &[Error], what: &str) {
    for e in errors {
        match e {
            Error::Write { index, .. } if lp_of(*index).is_some() => {}
            other => panic!("{what}: unexpected error {other:?}"),
        }
    }
}

fn check_report(r: &RemoveReport, what: &str, stats: &mut Stats) {
    ok_errors(&r.errors, what);
    assert!(
        r.discarded == 0 && r.zeroed == 0,
        "{what}: a plain removal discarded or zeroed: {r:?}"
    );
    report_stats(r, stats);
    if !r.errors.is_empty() {
        stats.hit("remove.write_error");
    }
}

fn own_bytes(buf: &[u8], w: usize) -> [[u8; 8]; WSLOTS] {
    let mut out = [[0u8; 8]; WSLOTS];
    for (ws, o) in out.iter_mut().enumerate() {
        o.copy_from_slice(&buf[at(w, ws) - region(w)..][..8]);
    }
    out
}

/// Checks writer `w`'s bytes (read from `region(w)`, 128 bytes) of page
/// `lp`: each slot its last write, or the pattern.
fn check_own(got: &[u8], lp: usize, w: usize, want: &[Option<[u8; 8]>; WSLOTS], what: &str) {
    let pat = pattern(lp);
    for (ws, g) in own_bytes(got, w).iter().enumerate() {
        let exp = want[ws].unwrap_or_else(|| {
            let mut p = [0u8; 8];
            p.copy_from_slice(&pat[at(w, ws)..][..8]);
            p
        });
        assert_eq!(
            *g,
            exp,
            "LOST WRITE or STALE DATA: {what}: page {} writer {w} slot {ws}",
            index_of(lp)
        );
    }
}

struct Shared<'m> {
    world: &'m World,
    spaces: Vec<Arc<AddressSpace>>,
    running: AtomicUsize,
    stats: Mutex<Stats>,
}

fn cpu_thread(
    sh: &Shared<'_>,
    t: usize,
    ops: &[[u8; 3]],
    layout: [Option<SlotMap>; WINDOW],
) -> CpuEnd {
    let mut st = Stats::default();
    let cpu = sh.world.machine.cpu(t);
    let mut end = CpuEnd {
        layout,
        private: vec![None; NPAGES],
        last: new_last(),
        seq: 0,
    };
    let own = &sh.spaces[t];
    for &[op, x, y] in ops {
        let p = usize::from(x >> 1) % 8;
        let lp = PAGES[p];
        let ws = usize::from(y) % WSLOTS;
        match op % 8 {
            0 | 1 => {
                let s = usize::from(x & 1);
                end.seq += 1;
                let data = stamp(t, lp, ws, end.seq);
                match cpu.write(&sh.spaces[s], va(p) + at(t, ws) as u64, &data) {
                    Ok(()) => {
                        end.last[lp][ws] = Some(data);
                        st.hit("cpu.write.shared");
                    }
                    Err(Fault::NoMapping { .. }) if s != t || end.layout[p].is_none() => {}
                    Err(f) if is_exhaustion(&f) => st.hit("cpu.exhausted"),
                    Err(f) => panic!("CPU {t} shared write of page {lp} via space {s}: {f:?}"),
                }
            }
            2 => {
                let s = usize::from(x & 1);
                let mut buf = [0u8; WSLOTS * 8];
                match cpu.read(&sh.spaces[s], va(p) + region(t) as u64, &mut buf) {
                    Ok(()) => {
                        check_own(&buf, lp, t, &end.last[lp], "CPU reading its shared writes");
                        st.hit("cpu.read.shared");
                    }
                    Err(Fault::NoMapping { .. }) if s != t || end.layout[p].is_none() => {}
                    Err(f) if is_exhaustion(&f) => st.hit("cpu.exhausted"),
                    Err(f) => panic!("CPU {t} shared read of page {lp} via space {s}: {f:?}"),
                }
            }
            3 => {
                end.seq += 1;
                let data = stamp(t, lp, ws, end.seq);
                match cpu.write(own, va(8 + p) + at(t, ws) as u64, &data) {
                    Ok(()) => {
                        let copy = end.private[lp].get_or_insert_with(|| {
                            st.hit("cpu.cow");
                            end.last[lp]
                        });
                        copy[ws] = Some(data);
                        st.hit("cpu.write.private");
                    }
                    Err(Fault::NoMapping { .. }) if end.layout[8 + p].is_none() => {}
                    Err(f) if is_exhaustion(&f) => st.hit("cpu.exhausted"),
                    Err(f) => panic!("CPU {t} private write of page {lp}: {f:?}"),
                }
            }
            4 => {
                let mut buf = [0u8; WSLOTS * 8];
                match cpu.read(own, va(8 + p) + region(t) as u64, &mut buf) {
                    Ok(()) => {
                        let want = end.private[lp].as_ref().unwrap_or(&end.last[lp]);
                        check_own(&buf, lp, t, want, "CPU reading its private mapping");
                        st.hit("cpu.read.private");
                    }
                    Err(Fault::NoMapping { .. }) if end.layout[8 + p].is_none() => {}
                    Err(f) if is_exhaustion(&f) => st.hit("cpu.exhausted"),
                    Err(f) => panic!("CPU {t} private read of page {lp}: {f:?}"),
                }
            }
            5 => {
                let slot = p + if x & 1 == 1 { 8 } else { 0 };
                own.munmap(va(slot), PAGE).expect("munmap of one page");
                if slot >= 8 {
                    end.private[lp] = None;
                }
                end.layout[slot] = None;
                st.hit("munmap");
            }
            6 => {
                let slot = p + if x & 1 == 1 { 8 } else { 0 };
                let shared = slot < 8;
                let req = MapRequest {
                    addr: Some(va(slot)),
                    pgoff: index_of(lp),
                    ..MapRequest::new(
                        sh.world.map.clone(),
                        PAGE,
                        Prot::RW,
                        if shared {
                            MapFlags::SHARED
                        } else {
                            MapFlags::PRIVATE
                        },
                    )
                };
                match (end.layout[slot].is_some(), own.mmap(req)) {
                    (false, Ok(_)) => {
                        end.layout[slot] = Some(SlotMap {
                            lp,
                            shared,
                            pinned: false,
                        });
                        st.hit("mmap");
                    }
                    (true, Err(VmError::Overlap { .. })) => {}
                    (m, r) => panic!("CPU {t} mmap of slot {slot} (mapped: {m}): {r:?}"),
                }
            }
            _ => {
                let n = 1 + usize::from(y) % 3;
                let n = n.min(8 - p);
                match own.msync(va(p), (n as u64) * PAGE) {
                    Ok(r) => {
                        ok_errors(&r.errors, "msync");
                        st.hit("msync");
                    }
                    Err(VmError::NoMapping { .. }) => {}
                    Err(e) => panic!("msync: {e:?}"),
                }
            }
        }
    }
    sh.running.fetch_sub(1, Ordering::SeqCst);
    sh.stats.lock().unwrap().merge(&st);
    end
}

fn lookup_thread(sh: &Shared<'_>, l: usize, ops: &[[u8; 3]]) -> (Last, u32) {
    let w = 2 + l;
    let map: &PageMap = &sh.world.map;
    let mut st = Stats::default();
    let mut last = new_last();
    let mut seq = 0u32;
    let mut held: Vec<(usize, PageRef<'_>)> = Vec::new();
    for &[op, x, y] in ops {
        let lp = usize::from(x) % NPAGES;
        let ws = usize::from(y) % WSLOTS;
        match op % 8 {
            0 | 1 | 6 => {
                let r = if op % 8 == 1 {
                    map.load(index_of(lp)).map(Some)
                } else {
                    map.find(index_of(lp))
                };
                match r {
                    Ok(Some(p)) => {
                        assert_eq!(p.index(), index_of(lp));
                        if held.len() >= 3 {
                            held.remove(0);
                        }
                        held.push((lp, p));
                        st.hit("lookup.hit");
                    }
                    Ok(None) => st.hit("find.miss"),
                    Err(Error::PoolExhausted { .. }) => st.hit("load.exhausted"),
                    Err(e) => panic!("lookup of page {lp}: {e:?}"),
                }
            }
            2 => {
                if !held.is_empty() {
                    let n = usize::from(x) % held.len();
                    held.remove(n);
                }
            }
            3 | 7 => {
                if let Some((lp, p)) = held.last() {
                    seq += 1;
                    let data = stamp(w, *lp, ws, seq);
                    p.write(at(w, ws), &data)
                        .expect("write through a reference");
                    last[*lp][ws] = Some(data);
                    st.hit("ref.write");
                }
            }
            4 => {
                if !held.is_empty() {
                    let n = usize::from(x) % held.len();
                    let (lp, p) = &held[n];
                    let mut buf = [0u8; WSLOTS * 8];
                    p.read(region(w), &mut buf).expect("in the page");
                    check_own(&buf, *lp, w, &last[*lp], "lookup reading its writes");
                    st.hit("ref.read");
                }
            }
            _ => {
                for _ in 0..u32::from(y) * 8 {
                    std::hint::spin_loop();
                }
                std::thread::yield_now();
            }
        }
    }
    drop(held);
    sh.running.fetch_sub(1, Ordering::SeqCst);
    sh.stats.lock().unwrap().merge(&st);
    (last, seq)
}

fn remover_thread(sh: &Shared<'_>, ops: &[[u8; 3]]) {
    let map: &PageMap = &sh.world.map;
    let mut st = Stats::default();
    // Goes round its ops while the others run (at most 3 times).
    for round in 0..3 {
        if round > 0 && sh.running.load(Ordering::SeqCst) == 0 {
            break;
        }
        for &[op, x, y] in ops {
            let r = range(x, y);
            match op % 8 {
                0..=2 => check_report(&map.remove(r), "remove", &mut st),
                3 => match map.try_remove(r) {
                    Ok(rep) => check_report(&rep, "try_remove", &mut st),
                    Err(e) => panic!("try_remove with one remover: {e:?}"),
                },
                4 => {
                    let rep = map.free_unused();
                    ok_errors(&rep.errors, "free_unused");
                    st.hit("free_unused");
                }
                5 => {
                    map.invalidate(r);
                    st.hit("invalidate");
                }
                6 => {
                    let batching = if y & 0x80 != 0 {
                        Batching::PerPage
                    } else {
                        Batching::PerSpace
                    };
                    let mut removal = map.begin_remove(r, batching);
                    while removal.step() != Pass::Done {
                        std::thread::yield_now();
                    }
                    check_report(&removal.finish(), "stepped removal", &mut st);
                    st.hit("remove.stepped");
                }
                _ => check_report(
                    &map.remove_with(r, Batching::PerPage),
                    "remove_with(PerPage)",
                    &mut st,
                ),
            }
            st.hit("remover.op");
        }
    }
    sh.stats.lock().unwrap().merge(&st);
}

fn writeback_thread(sh: &Shared<'_>, ops: &[[u8; 3]]) -> Vec<usize> {
    let map: &PageMap = &sh.world.map;
    let mut st = Stats::default();
    let mut failing = Vec::new();
    for round in 0..3 {
        if round > 0 && sh.running.load(Ordering::SeqCst) == 0 {
            break;
        }
        for &[op, x, y] in ops {
            match op % 8 {
                0 | 1 => {
                    let r = map.writeback(range(x, y));
                    ok_errors(&r.errors, "writeback");
                    st.hit("writeback");
                }
                2 => {
                    ok_errors(&map.writeback(..).errors, "sync");
                    st.hit("sync");
                }
                3 => {
                    let p = usize::from(y) % 8;
                    let n = (1 + usize::from(y >> 4) % 4).min(8 - p);
                    match sh.spaces[usize::from(x & 1)].msync(va(p), n as u64 * PAGE) {
                        Ok(r) => {
                            ok_errors(&r.errors, "msync");
                            st.hit("msync");
                        }
                        Err(VmError::NoMapping { .. }) => {}
                        Err(e) => panic!("msync: {e:?}"),
                    }
                }
                4 => {
                    let lp = usize::from(x) % NPAGES;
                    let on = y & 1 == 1;
                    sh.world.store.fail_writes(index_of(lp), on);
                    if on {
                        failing.push(lp);
                        st.hit("fail_writes");
                    }
                }
                5 => {
                    let c = usize::from(x) % sh.world.machine.cpus().len();
                    sh.world.machine.cpu(c).flush_tlb();
                }
                _ => std::thread::yield_now(),
            }
        }
    }
    sh.stats.lock().unwrap().merge(&st);
    failing
}

/// The shared contents page `lp` must have: the pattern and every
/// writer's last stamps.
fn expected(lp: usize, lasts: &[&Last]) -> Box<Page> {
    let mut p = pattern(lp);
    for (w, last) in lasts.iter().enumerate() {
        for (ws, s) in last[lp].iter().enumerate() {
            if let Some(s) = s {
                p[at(w, ws)..at(w, ws) + 8].copy_from_slice(s);
            }
        }
    }
    p
}

fn compare(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let i = (0..got.len())
            .find(|&j| got[j] != want[j])
            .expect("differs");
        panic!(
            "LOST WRITE or STALE DATA: {what}: byte {i} is {:#04x}, expected {:#04x} \
             (writer region {:?})",
            got[i],
            want[i],
            (0..WRITERS).find(|&w| (region(w)..region(w) + WSLOTS * 8).contains(&i))
        );
    }
}

/// Runs a decoded input.
pub fn run_input(input: &Input) -> Stats {
    let world = World::new(input.nframes(), 2);
    let spaces: Vec<_> = (0..2)
        .map(|_| AddressSpace::new(world.machine.clone()))
        .collect();
    let mut layouts = [[None; WINDOW]; 2];
    for (s, space) in spaces.iter().enumerate() {
        let pinned = s == 1 && input.config & 1 != 0;
        let private = input.config & 2 == 0;
        // (first slot, first page, pages)
        for (slot, lp, n) in [(0, 0, 6), (6, 10, 2)] {
            for shared in [true, false] {
                if !shared && !private {
                    continue;
                }
                let slot = slot + if shared { 0 } else { 8 };
                let mut flags = if shared {
                    MapFlags::SHARED
                } else {
                    MapFlags::PRIVATE
                };
                if shared && pinned {
                    flags = flags | MapFlags::LOCKED;
                }
                let req = MapRequest {
                    addr: Some(va(slot)),
                    pgoff: index_of(lp),
                    ..MapRequest::new(world.map.clone(), n as u64 * PAGE, Prot::RW, flags)
                };
                match space.mmap(req) {
                    Ok(_) => {
                        for j in 0..n {
                            layouts[s][slot + j] = Some(SlotMap {
                                lp: lp + j,
                                shared,
                                pinned: shared && pinned,
                            });
                        }
                    }
                    // A pinned mapping is populated; the pool may be too small.
                    Err(VmError::Populate(f)) if is_exhaustion(&f) => {}
                    Err(e) => panic!("initial mmap: {e:?}"),
                }
            }
        }
    }
    let sh = Shared {
        world: &world,
        spaces,
        running: AtomicUsize::new(4),
        stats: Mutex::new(Stats::default()),
    };
    let (cpus, lookups, failing) = std::thread::scope(|scope| {
        let cpu: Vec<_> = (0..2)
            .map(|t| {
                let (sh, ops, layout) = (&sh, &input.ops[t], layouts[t]);
                scope.spawn(move || cpu_thread(sh, t, ops, layout))
            })
            .collect();
        let look: Vec<_> = (0..2)
            .map(|l| {
                let (sh, ops) = (&sh, &input.ops[2 + l]);
                scope.spawn(move || lookup_thread(sh, l, ops))
            })
            .collect();
        let rem = scope.spawn(|| remover_thread(&sh, &input.ops[4]));
        let wb = scope.spawn(|| writeback_thread(&sh, &input.ops[5]));
        let cpus: Vec<CpuEnd> = cpu.into_iter().map(|h| h.join().unwrap()).collect();
        let lookups: Vec<(Last, u32)> = look.into_iter().map(|h| h.join().unwrap()).collect();
        rem.join().unwrap();
        (cpus, lookups, wb.join().unwrap())
    });
    let mut stats = std::mem::take(&mut *sh.stats.lock().unwrap());
    let Shared { mut spaces, .. } = sh;
    let map: &PageMap = &world.map;
    let lasts: Vec<&Last> = vec![&cpus[0].last, &cpus[1].last, &lookups[0].0, &lookups[1].0];
    let seqs = [cpus[0].seq, cpus[1].seq, lookups[0].1, lookups[1].1];
    let want: Vec<Box<Page>> = (0..NPAGES).map(|lp| expected(lp, &lasts)).collect();
    let layout = |s: usize| cpus[s].layout;

    let structure = |spaces: &[Arc<AddressSpace>], what: &str| {
        let sp: Vec<_> = (0..2).map(|s| (&*spaces[s], layout(s))).collect();
        if let Err(e) = check_structure(map, &world.pool, &sp, &BTreeMap::new(), None) {
            panic!("{what}: {e}\n{}", map.dump());
        }
    };
    let read_all = |spaces: &[Arc<AddressSpace>], what: &str| {
        for (s, space) in spaces.iter().enumerate() {
            for (slot, m) in layout(s).iter().enumerate() {
                let Some(m) = m else { continue };
                for c in 0..2 {
                    let mut buf = [0u8; PAGE_SIZE];
                    match world.machine.cpu(c).read(space, va(slot), &mut buf) {
                        Ok(()) => {}
                        Err(f) if is_exhaustion(&f) => continue,
                        Err(f) => panic!("{what}: read of space {s} slot {slot}: {f:?}"),
                    }
                    let what = format!(
                        "{what}: CPU {c} reading space {s} slot {slot} (page {})",
                        m.lp
                    );
                    match (m.shared, &cpus[s].private[m.lp]) {
                        (true, _) | (false, None) => compare(&buf, &want[m.lp][..], &what),
                        (false, Some(own)) => check_private(&buf, m.lp, s, own, &seqs, &what),
                    }
                }
            }
        }
    };
    structure(&spaces, "after the join");
    for (lp, want) in want.iter().enumerate().take(NPAGES) {
        if let Ok(Some(p)) = map.find(index_of(lp)) {
            let mut buf = [0u8; PAGE_SIZE];
            p.read_page(&mut buf);
            compare(&buf, &want[..], &format!("cached page {}", index_of(lp)));
        }
    }
    read_all(&spaces, "after the join");
    structure(&spaces, "after reading back");
    for lp in failing {
        world.store.fail_writes(index_of(lp), false);
    }
    let r = map.writeback(..);
    assert!(r.errors.is_empty(), "sync errors {:?}", r.errors);
    assert!(map.dirty_indices(..).is_empty(), "dirty after sync");
    for (lp, want) in want.iter().enumerate().take(NPAGES) {
        let s = world.store.page(index_of(lp)).expect("in the store");
        compare(
            &s[..],
            &want[..],
            &format!("store page {} after sync", index_of(lp)),
        );
    }
    let r = map.remove(..);
    assert!(r.errors.is_empty(), "final removal errors {:?}", r.errors);
    for i in map.cached_indices(..) {
        let pinned = (0..2).any(|s| {
            layout(s)
                .iter()
                .flatten()
                .any(|m| m.pinned && index_of(m.lp) == i)
        });
        assert!(pinned, "page {i} survived remove(..) unheld and unpinned");
    }
    structure(&spaces, "after remove(..)");
    read_all(&spaces, "after remove(..)");
    for (lp, want) in want.iter().enumerate().take(NPAGES) {
        match map.load(index_of(lp)) {
            Ok(p) => {
                let mut buf = [0u8; PAGE_SIZE];
                p.read_page(&mut buf);
                compare(&buf, &want[..], &format!("reloaded page {}", index_of(lp)));
            }
            Err(Error::PoolExhausted { .. }) => {}
            Err(e) => panic!("reload of {lp}: {e:?}"),
        }
    }
    structure(&spaces, "after the reload");
    spaces.clear();
    assert_eq!(map.nr_mappings(), 0, "mappings after teardown");
    let r = map.remove(..);
    assert!(
        r.errors.is_empty() && map.nr_pages() == 0,
        "remove(..) after teardown: {r:?}"
    );
    assert_eq!(
        world.pool.free_frames(),
        world.pool.capacity(),
        "frames leaked after teardown"
    );
    stats.hit("finished");
    stats
}

/// A private copy of page `lp` in space `s` (owned by CPU thread `s`): the
/// owner's bytes exactly as its model says, every other writer's slot a
/// value it once had (the pattern or one of its stamps of that slot), the
/// rest the pattern.
fn check_private(
    buf: &[u8],
    lp: usize,
    s: usize,
    own: &[Option<[u8; 8]>; WSLOTS],
    seqs: &[u32; WRITERS],
    what: &str,
) {
    check_own(&buf[region(s)..], lp, s, own, what);
    let pat = pattern(lp);
    for w in (0..WRITERS).filter(|&w| w != s) {
        for ws in 0..WSLOTS {
            let g = &buf[at(w, ws)..at(w, ws) + 8];
            let ok = g == &pat[at(w, ws)..at(w, ws) + 8]
                || (g[0] == 0xc0 | w as u8
                    && usize::from(g[1]) == lp
                    && usize::from(g[2]) == ws
                    && u32::from_le_bytes([g[3], g[4], g[5], g[6]]) <= seqs[w]
                    && g[7] == 0x5a);
            assert!(
                ok,
                "STALE DATA: {what}: writer {w} slot {ws} holds {g:02x?}, never written"
            );
        }
    }
    let mut masked = buf.to_vec();
    let mut want = pat.to_vec();
    for w in 0..WRITERS {
        let r = region(w)..region(w) + WSLOTS * 8;
        masked[r.clone()].fill(0);
        want[r].fill(0);
    }
    compare(&masked, &want, what);
}
