//! Break-it pass on issue 13 (demand paging of anonymous and private
//! memory): each test asserts the documented, correct behaviour.

use std::sync::Arc;

use pagemap::swap::MemSwap;
use pagemap::{FrameId, FramePool, PAGE_SIZE};
use vmr::{pte, AddressSpace, Advice, Machine, MapFlags, Prot, VmError};

const PAGE: u64 = PAGE_SIZE as u64;

struct Rig {
    machine: Arc<Machine>,
    swap: Arc<MemSwap>,
    frames: usize,
}

fn rig(frames: usize, slots: u32) -> Rig {
    let pool = Arc::new(FramePool::new(frames).unwrap());
    pool.set_held_grace(std::time::Duration::ZERO);
    let swap = Arc::new(MemSwap::new(slots));
    let machine = Machine::with_swap(pool, 2, swap.clone()).unwrap();
    Rig {
        machine,
        swap,
        frames,
    }
}

impl Rig {
    fn space(&self) -> Arc<AddressSpace> {
        AddressSpace::new(self.machine.clone())
    }
    fn anon(&self, s: &AddressSpace, pages: u64) -> u64 {
        s.mmap_anonymous(None, pages * PAGE, Prot::RW, MapFlags::PRIVATE)
            .unwrap()
    }
    fn write(&self, s: &AddressSpace, va: u64, data: &[u8]) {
        self.machine.cpu(0).write(s, va, data).unwrap();
    }
    fn read(&self, s: &AddressSpace, va: u64, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        self.machine.cpu(1).read(s, va, &mut b).unwrap();
        b
    }
    fn in_use(&self) -> u32 {
        self.machine.swap().unwrap().stats().in_use
    }
    fn no_leaks(&self) {
        assert_eq!(self.in_use(), 0, "swap locations leaked");
        assert_eq!(
            self.machine.pool().free_frames(),
            self.frames,
            "frames leaked"
        );
    }
}

// ---------------------------------------------------------------------------
// MADV_FREE: a page written after the advice must never be dropped.

/// MADV_FREE, then a write (through the still-writable entry: DIRTY set by
/// the "hardware"), then mprotect(PROT_READ): the write must survive a
/// page-out.
#[test]
fn write_after_free_then_mprotect_read_is_not_lost() {
    let r = rig(16, 16);
    let s = r.space();
    let va = r.anon(&s, 1);
    r.write(&s, va, b"AAAA");
    s.madvise(va, PAGE, Advice::Free).unwrap();
    r.write(&s, va, b"BBBB"); // after the advice: must never be dropped
    s.mprotect(va, PAGE, Prot::READ).unwrap();
    s.page_out(va, PAGE).unwrap();
    assert_eq!(r.read(&s, va, 4), b"BBBB", "write after MADV_FREE lost");
    drop(s);
    r.no_leaks();
}

/// The same through mprotect(PROT_NONE) and back.
#[test]
fn write_after_free_then_mprotect_none_is_not_lost() {
    let r = rig(16, 16);
    let s = r.space();
    let va = r.anon(&s, 1);
    r.write(&s, va, b"AAAA");
    s.madvise(va, PAGE, Advice::Free).unwrap();
    r.write(&s, va, b"CCCC");
    s.mprotect(va, PAGE, Prot::NONE).unwrap();
    s.page_out(va, PAGE).unwrap();
    s.mprotect(va, PAGE, Prot::RW).unwrap();
    assert_eq!(r.read(&s, va, 4), b"CCCC", "write after MADV_FREE lost");
    drop(s);
    r.no_leaks();
}

/// The same with reclaim choosing the page instead of page_out.
#[test]
fn write_after_free_then_mprotect_read_survives_evict_frame() {
    let r = rig(16, 16);
    let s = r.space();
    let va = r.anon(&s, 1);
    r.write(&s, va, b"AAAA");
    s.madvise(va, PAGE, Advice::Free).unwrap();
    r.write(&s, va, b"DDDD");
    s.mprotect(va, PAGE, Prot::READ).unwrap();
    let f = FrameId::new(pte::frame(s.pte(va))).unwrap();
    r.machine.evict_frame(f).unwrap();
    assert_eq!(r.read(&s, va, 4), b"DDDD", "write after MADV_FREE lost");
}

// ---------------------------------------------------------------------------
// evict_frame on bad input.

#[test]
fn evict_frame_out_of_range_frame_is_an_error_not_a_panic() {
    let r = rig(8, 8);
    let bogus = FrameId::new(1_000_000).unwrap();
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        r.machine.evict_frame(bogus)
    }));
    assert!(
        res.is_ok(),
        "Machine::evict_frame panicked on a bogus frame id"
    );
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        r.machine.pool().evict_frame(bogus)
    }));
    assert!(
        res.is_ok(),
        "FramePool::evict_frame panicked on a bogus frame id"
    );
}

/// A refused eviction (an mlocked page) changes nothing: in particular it
/// keeps no swap location, so a one-slot swap still takes another page.
#[test]
fn refused_evict_of_mlocked_page_keeps_no_swap_location() {
    let r = rig(16, 1);
    let s = r.space();
    let va = r.anon(&s, 2);
    r.write(&s, va, b"locked");
    r.write(&s, va + PAGE, b"other");
    s.mlock(va, PAGE).unwrap();
    let f = FrameId::new(pte::frame(s.pte(va))).unwrap();
    assert!(matches!(
        r.machine.evict_frame(f),
        Err(pagemap::Error::Busy)
    ));
    assert_eq!(r.in_use(), 0, "a refused eviction took a swap location");
    let rep = s.page_out(va + PAGE, PAGE).unwrap();
    assert_eq!(rep.paged_out, 1);
    assert_eq!(r.read(&s, va + PAGE, 5), b"other");
    assert_eq!(r.read(&s, va, 6), b"locked");
}

/// page_out over an mlocked page reports it kept and keeps no location.
#[test]
fn page_out_of_mlocked_range_keeps_no_swap_location() {
    let r = rig(16, 4);
    let s = r.space();
    let va = r.anon(&s, 4);
    for i in 0..4 {
        r.write(&s, va + i * PAGE, &[i as u8 + 1]);
    }
    s.mlock(va, 4 * PAGE).unwrap();
    let rep = s.page_out(va, 4 * PAGE).unwrap();
    assert_eq!(rep.kept, 4);
    assert_eq!(rep.paged_out, 0);
    assert_eq!(r.in_use(), 0, "locked pages hold swap locations");
}

// ---------------------------------------------------------------------------
// Two machines on one pool, both with swap.

#[test]
fn evict_frame_of_another_machines_frame_leaks_nothing() {
    let pool = Arc::new(FramePool::new(16).unwrap());
    pool.set_held_grace(std::time::Duration::ZERO);
    let a = Machine::with_swap(pool.clone(), 1, Arc::new(MemSwap::new(8))).unwrap();
    let b = Machine::with_swap(pool.clone(), 1, Arc::new(MemSwap::new(8))).unwrap();
    let sb = AddressSpace::new(b.clone());
    let va = sb
        .mmap_anonymous(None, PAGE, Prot::RW, MapFlags::PRIVATE)
        .unwrap();
    b.cpu(0).write(&sb, va, b"bbb").unwrap();
    let f = FrameId::new(pte::frame(sb.pte(va))).unwrap();
    // Machine a does not own it: refused, nothing changed.
    let _ = a.evict_frame(f);
    assert_eq!(
        a.swap().unwrap().stats().in_use,
        0,
        "a's swap took b's page"
    );
    // b can still page it out and back.
    sb.page_out(va, PAGE).unwrap();
    let mut buf = [0u8; 3];
    b.cpu(0).read(&sb, va, &mut buf).unwrap();
    assert_eq!(&buf, b"bbb");
    drop(sb);
    assert_eq!(b.swap().unwrap().stats().in_use, 0);
    assert_eq!(a.swap().unwrap().stats().in_use, 0);
    assert_eq!(pool.free_frames(), 16, "frame leaked");
}

// ---------------------------------------------------------------------------
// Ranges.

#[test]
fn paging_calls_reject_bad_ranges_typed() {
    let r = rig(8, 8);
    let s = r.space();
    let va = r.anon(&s, 2);
    for (a, l) in [
        (va, 0),
        (va + 1, PAGE),
        (va, 1),
        (u64::MAX - PAGE + 1, 2 * PAGE),
    ] {
        assert!(s.page_out(a, l).is_err(), "page_out({a:#x}, {l})");
        assert!(s.page_in(a, l).is_err(), "page_in({a:#x}, {l})");
        assert!(s.mlock(a, l).is_err(), "mlock({a:#x}, {l})");
        assert!(s.munlock(a, l).is_err(), "munlock({a:#x}, {l})");
        assert!(s.madvise(a, l, Advice::DontNeed).is_err());
        assert!(s.madvise(a, l, Advice::Free).is_err());
    }
    assert!(matches!(
        s.page_out(va, 3 * PAGE),
        Err(VmError::NoMapping { .. })
    ));
    assert!(matches!(
        s.page_in(va, 3 * PAGE),
        Err(VmError::NoMapping { .. })
    ));
    assert!(matches!(
        s.mlock(va, 3 * PAGE),
        Err(VmError::NoMapping { .. })
    ));
    assert_eq!(s.regions().len(), 1, "mlock refused changed the regions");
}

// ---------------------------------------------------------------------------
// Concurrency stress: one space, per-thread disjoint pages (each thread's
// model is exact for its own pages), with content-preserving operations
// (page_out, page_in, evict_frame of arbitrary frames) on the WHOLE mapping,
// a tiny pool and a tiny swap, and swap I/O errors injected meanwhile.

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What a page of a thread holds: exactly `v`, or (after MADV_FREE, until
/// the next write) `v` or zero.
#[derive(Clone, Copy, Debug)]
struct Model {
    v: u64,
    maybe_zero: bool,
}

fn allowed_error(e: &vmr::Fault) -> bool {
    // Typed, transient: a swap read error, out of frames (everything else
    // pinned or moving).
    matches!(
        e,
        vmr::Fault::Io { .. } | vmr::Fault::OutOfMemory { .. } | vmr::Fault::Livelock { .. }
    )
}

fn stress(serialized: bool, inject: bool, seed: u64) {
    const THREADS: u64 = 3;
    const PAGES: u64 = 6; // per thread
    let frames = 10usize;
    let r = rig(frames, 64);
    r.machine.swap().unwrap().set_serialized(serialized);
    let s = r.space();
    let all = s
        .mmap_anonymous(None, THREADS * PAGES * PAGE, Prot::RW, MapFlags::PRIVATE)
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let injector = {
        let swap = r.swap.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut rng = XorShift(seed ^ 0xdead_beef);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if inject {
                    let w = rng.below(4) == 0;
                    let rd = rng.below(6) == 0;
                    swap.fail_all_writes(w);
                    swap.fail_all_reads(rd);
                }
                std::thread::sleep(std::time::Duration::from_micros(300));
            }
            swap.fail_all_writes(false);
            swap.fail_all_reads(false);
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(2500);
    let errs = std::sync::Mutex::new(Vec::<String>::new());
    std::thread::scope(|sc| {
        for t in 0..THREADS {
            let s = s.clone();
            let r = &r;
            let errs = &errs;
            sc.spawn(move || {
                let cpu = r.machine.cpu((t % 2) as usize);
                let base = all + t * PAGES * PAGE;
                let mut model = vec![
                    Model {
                        v: 0,
                        maybe_zero: false
                    };
                    PAGES as usize
                ];
                let mut rng = XorShift(seed.wrapping_mul(t + 7) | 1);
                let mut gen = 0u64;
                let mut ops = 0u64;
                while std::time::Instant::now() < deadline {
                    ops += 1;
                    let i = rng.below(PAGES);
                    let va = base + i * PAGE;
                    match rng.below(14) {
                        0..=3 => {
                            gen += 1;
                            let v = (t << 56) | (i << 48) | gen;
                            match cpu.write(&s, va, &v.to_le_bytes()) {
                                Ok(()) => {
                                    model[i as usize] = Model {
                                        v,
                                        maybe_zero: false,
                                    }
                                }
                                Err(e) if allowed_error(&e) => {}
                                Err(e) => errs.lock().unwrap().push(format!("write: {e:?}")),
                            }
                        }
                        4..=6 => {
                            let mut b = [0u8; 8];
                            match cpu.read(&s, va, &mut b) {
                                Ok(()) => {
                                    let got = u64::from_le_bytes(b);
                                    let m = model[i as usize];
                                    if got != m.v && !(m.maybe_zero && got == 0) {
                                        errs.lock().unwrap().push(format!(
                                            "t{t} page {i}: read {got:#x}, model {m:?} (op {ops})"
                                        ));
                                    }
                                    if got == 0 {
                                        // Once seen zero, it stays zero.
                                        model[i as usize] = Model {
                                            v: 0,
                                            maybe_zero: false,
                                        };
                                    }
                                }
                                Err(e) if allowed_error(&e) => {}
                                Err(e) => errs.lock().unwrap().push(format!("read: {e:?}")),
                            }
                        }
                        7 => {
                            // Whole mapping, other threads' pages too.
                            match s.page_out(all, THREADS * PAGES * PAGE) {
                                Ok(_) | Err(VmError::Swap(_)) => {}
                                Err(e) => errs.lock().unwrap().push(format!("page_out: {e:?}")),
                            }
                        }
                        8 => match s.page_in(all, THREADS * PAGES * PAGE) {
                            Ok(()) => {}
                            Err(VmError::PageIn(f)) if allowed_error(&f) => {}
                            Err(e) => errs.lock().unwrap().push(format!("page_in: {e:?}")),
                        },
                        9 => {
                            let f = FrameId::new(1 + rng.below(frames as u64) as u32).unwrap();
                            match r.machine.evict_frame(f) {
                                Ok(())
                                | Err(pagemap::Error::Busy)
                                | Err(pagemap::Error::SwapFull { .. })
                                | Err(pagemap::Error::SwapWrite { .. }) => {}
                                Err(e) => errs.lock().unwrap().push(format!("evict: {e:?}")),
                            }
                        }
                        10 => match s.madvise(va, PAGE, Advice::DontNeed) {
                            Ok(()) => {
                                model[i as usize] = Model {
                                    v: 0,
                                    maybe_zero: false,
                                }
                            }
                            Err(e) => errs.lock().unwrap().push(format!("dontneed: {e:?}")),
                        },
                        11 => match s.madvise(va, PAGE, Advice::Free) {
                            Ok(()) => model[i as usize].maybe_zero = true,
                            Err(e) => errs.lock().unwrap().push(format!("free: {e:?}")),
                        },
                        12 => {
                            // mlock one page, touch it, munlock.
                            match s.mlock(va, PAGE) {
                                Ok(()) | Err(VmError::Populate(_)) => {}
                                Err(e) => errs.lock().unwrap().push(format!("mlock: {e:?}")),
                            }
                            // mlock's populate writes: a MADV_FREE'd page
                            // becomes "written" (kept) or reads zero now.
                            let mut b = [0u8; 8];
                            if cpu.read(&s, va, &mut b).is_ok() {
                                let got = u64::from_le_bytes(b);
                                let m = model[i as usize];
                                if got != m.v && !(m.maybe_zero && got == 0) {
                                    errs.lock().unwrap().push(format!(
                                        "t{t} page {i} locked: read {got:#x}, model {m:?}"
                                    ));
                                }
                                model[i as usize] = Model {
                                    v: got,
                                    maybe_zero: m.maybe_zero && got != 0,
                                };
                            }
                            if let Err(e) = s.munlock(va, PAGE) {
                                errs.lock().unwrap().push(format!("munlock: {e:?}"));
                            }
                        }
                        _ => {
                            // fork; the child sees our pages as they are,
                            // writes its own copy, and goes.
                            match s.fork() {
                                Ok(child) => {
                                    let mut b = [0u8; 8];
                                    if cpu.read(&child, va, &mut b).is_ok() {
                                        let got = u64::from_le_bytes(b);
                                        let m = model[i as usize];
                                        if got != m.v && !(m.maybe_zero && got == 0) {
                                            errs.lock().unwrap().push(format!(
                                                "t{t} page {i} child: read {got:#x}, model {m:?}"
                                            ));
                                        }
                                    }
                                    let _ = cpu.write(&child, va, &u64::MAX.to_le_bytes());
                                    drop(child);
                                }
                                Err(VmError::OutOfMemory) => {}
                                Err(e) => errs.lock().unwrap().push(format!("fork: {e:?}")),
                            }
                        }
                    }
                    if errs.lock().unwrap().len() > 20 {
                        break;
                    }
                }
                eprintln!("t{t}: {ops} ops");
                (t, model)
            });
        }
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    injector.join().unwrap();
    eprintln!("{:?}", r.machine.swap().unwrap().stats());
    let errs = errs.into_inner().unwrap();
    assert!(
        errs.is_empty(),
        "{} errors, first: {:#?}",
        errs.len(),
        &errs[..errs.len().min(8)]
    );
    drop(s);
    r.no_leaks();
}

#[test]
fn stress_concurrent_paging() {
    stress(false, false, 0x1234_5678);
}

#[test]
fn stress_concurrent_paging_serialized() {
    stress(true, false, 0x8765_4321);
}

#[test]
fn stress_concurrent_paging_with_swap_errors() {
    stress(false, true, 0x5555_aaaa);
}

#[test]
fn stress_concurrent_paging_with_swap_errors_serialized() {
    stress(true, true, 0x0f0f_f0f0);
}

// ---------------------------------------------------------------------------
// Fork trees over swapped pages: each space's model is a snapshot at its
// fork, then its own writes; spaces run concurrently on shared
// copy-on-write frames and shared swap locations; dropped in various orders.

fn fork_tree(seed: u64, drop_order: &[usize], serialized: bool) {
    const PAGES: u64 = 8;
    let frames = 12usize;
    let r = rig(frames, 96);
    r.machine.swap().unwrap().set_serialized(serialized);
    let root = r.space();
    let va = r.anon(&root, PAGES);
    let mut m0 = vec![0u64; PAGES as usize];
    for i in 0..PAGES {
        m0[i as usize] = 0x1000 + i;
        r.write(&root, va + i * PAGE, &m0[i as usize].to_le_bytes());
    }
    root.page_out(va, 4 * PAGE).unwrap();
    // A chain: root -> c1 -> c2, and root -> c3 (pages half swapped).
    let c1 = root.fork().unwrap();
    c1.page_out(va + 4 * PAGE, 2 * PAGE).unwrap();
    let c2 = c1.fork().unwrap();
    root.page_out(va, PAGES * PAGE).unwrap();
    let c3 = root.fork().unwrap();
    let spaces = [root, c1, c2, c3];
    let models: Vec<Vec<u64>> = std::thread::scope(|sc| {
        let hs: Vec<_> = spaces
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let r = &r;
                let mut m = m0.clone();
                sc.spawn(move || {
                    let cpu = r.machine.cpu(k % 2);
                    let mut rng = XorShift(seed + k as u64 * 77 + 1);
                    for n in 0..1500u64 {
                        let i = rng.below(PAGES);
                        let a = va + i * PAGE;
                        match rng.below(6) {
                            0 | 1 => {
                                let v = ((k as u64) << 40) | n;
                                if cpu.write(s, a, &v.to_le_bytes()).is_ok() {
                                    m[i as usize] = v;
                                }
                            }
                            2 | 3 => {
                                let mut b = [0u8; 8];
                                if cpu.read(s, a, &mut b).is_ok() {
                                    assert_eq!(
                                        u64::from_le_bytes(b),
                                        m[i as usize],
                                        "space {k} page {i} after {n} ops"
                                    );
                                }
                            }
                            4 => {
                                let _ = s.page_out(a, PAGE);
                            }
                            _ => {
                                let f = 1 + rng.below(frames as u64) as u32;
                                let _ = r.machine.evict_frame(FrameId::new(f).unwrap());
                            }
                        }
                    }
                    m
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (k, s) in spaces.iter().enumerate() {
        for i in 0..PAGES {
            let got = u64::from_le_bytes(r.read(s, va + i * PAGE, 8).try_into().unwrap());
            assert_eq!(got, models[k][i as usize], "space {k} page {i} at the end");
        }
    }
    let mut spaces: Vec<Option<Arc<AddressSpace>>> = spaces.into_iter().map(Some).collect();
    for &k in drop_order {
        spaces[k] = None;
        // The survivors still read their data.
        for (j, s) in spaces.iter().enumerate() {
            if let Some(s) = s {
                for i in 0..PAGES {
                    let got = u64::from_le_bytes(r.read(s, va + i * PAGE, 8).try_into().unwrap());
                    assert_eq!(
                        got, models[j][i as usize],
                        "space {j} page {i} after drop {k}"
                    );
                }
                s.page_out(va, PAGES * PAGE).unwrap();
            }
        }
    }
    drop(spaces);
    r.no_leaks();
}

#[test]
fn fork_tree_drop_root_first() {
    fork_tree(1, &[0, 1, 2, 3], false);
}

#[test]
fn fork_tree_drop_leaves_first() {
    fork_tree(2, &[2, 3, 1, 0], false);
}

#[test]
fn fork_tree_drop_middle_first_serialized() {
    fork_tree(3, &[1, 3, 0, 2], true);
}

/// fork of a range of swap entries and munmap of parts of it in both
/// spaces: the location counts end at zero.
#[test]
fn fork_and_partial_munmap_of_swapped_range_counts_right() {
    let r = rig(16, 32);
    let a = r.space();
    let va = r.anon(&a, 6);
    for i in 0..6 {
        r.write(&a, va + i * PAGE, &[i as u8 + 1]);
    }
    a.page_out(va, 6 * PAGE).unwrap();
    assert_eq!(r.in_use(), 6);
    let b = a.fork().unwrap();
    a.munmap(va + PAGE, 2 * PAGE).unwrap();
    b.munmap(va + 2 * PAGE, 2 * PAGE).unwrap();
    assert_eq!(r.read(&a, va, 1), [1]);
    assert_eq!(r.read(&b, va + PAGE, 1), [2]);
    assert_eq!(r.read(&a, va + 3 * PAGE, 1), [4]);
    assert_eq!(r.read(&b, va + 5 * PAGE, 1), [6]);
    a.madvise(va + 4 * PAGE, 2 * PAGE, Advice::DontNeed)
        .unwrap();
    assert_eq!(r.read(&a, va + 4 * PAGE, 1), [0]);
    assert_eq!(r.read(&b, va + 4 * PAGE, 1), [5]);
    drop(a);
    assert_eq!(r.read(&b, va, 1), [1]);
    drop(b);
    r.no_leaks();
}

// ---------------------------------------------------------------------------
// Errors, stores, statistics.

#[test]
fn swap_store_capacity_is_checked() {
    let pool = Arc::new(FramePool::new(4).unwrap());
    assert!(matches!(
        Machine::with_swap(pool.clone(), 1, Arc::new(MemSwap::new(0))),
        Err(pagemap::Error::InvalidCapacity { .. })
    ));
    assert!(matches!(
        Machine::with_swap(
            pool.clone(),
            1,
            Arc::new(MemSwap::new(pte::MAX_SWAP_LOCATIONS + 1))
        ),
        Err(pagemap::Error::InvalidCapacity { .. })
    ));
    // The largest one is fine.
    let m = Machine::with_swap(pool, 1, Arc::new(MemSwap::new(pte::MAX_SWAP_LOCATIONS))).unwrap();
    assert_eq!(m.swap().unwrap().locations(), pte::MAX_SWAP_LOCATIONS);
}

#[test]
fn file_swap_in_missing_directory_is_an_io_error() {
    let dir = std::env::temp_dir().join(format!("break13-missing-{}", std::process::id()));
    let e = pagemap::swap::FileSwap::create(dir.join("x").join("swap"), 4).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    assert!(pagemap::swap::FileSwap::temp(dir.join("y"), 4).is_err());
    assert!(pagemap::swap::FileSwap::open(dir.join("z"), 4).is_err());
}

#[test]
fn file_swap_round_trip_through_a_machine() {
    let pool = Arc::new(FramePool::new(8).unwrap());
    pool.set_held_grace(std::time::Duration::ZERO);
    let swap = Arc::new(pagemap::swap::FileSwap::temp(std::env::temp_dir(), 64).unwrap());
    let m = Machine::with_swap(pool.clone(), 1, swap).unwrap();
    let s = AddressSpace::new(m.clone());
    let va = s
        .mmap_anonymous(None, 32 * PAGE, Prot::RW, MapFlags::PRIVATE)
        .unwrap();
    for i in 0..32u64 {
        m.cpu(0)
            .write(&s, va + i * PAGE, &(i * 3 + 1).to_le_bytes())
            .unwrap();
    }
    for i in 0..32u64 {
        let mut b = [0u8; 8];
        m.cpu(0).read(&s, va + i * PAGE, &mut b).unwrap();
        assert_eq!(u64::from_le_bytes(b), i * 3 + 1);
    }
    drop(s);
    assert_eq!(m.swap().unwrap().stats().in_use, 0);
    assert_eq!(pool.free_frames(), 8);
}

#[test]
fn swap_full_is_typed_and_changes_nothing() {
    let r = rig(16, 2);
    let s = r.space();
    let va = r.anon(&s, 4);
    for i in 0..4 {
        r.write(&s, va + i * PAGE, &[i as u8 + 10]);
    }
    let e = s.page_out(va, 4 * PAGE).unwrap_err();
    assert!(
        matches!(e, VmError::Swap(pagemap::Error::SwapFull { locations: 2 })),
        "{e:?}"
    );
    // (Before any read: a page read back is a clean copy a full store
    // may steal the location of.)
    let f = FrameId::new(pte::frame(s.pte(va + 3 * PAGE))).unwrap();
    let e = r.machine.evict_frame(f);
    assert!(matches!(e, Err(pagemap::Error::SwapFull { .. })), "{e:?}");
    for i in 0..4 {
        assert_eq!(r.read(&s, va + i * PAGE, 1), [i as u8 + 10]);
    }
    drop(s);
    r.no_leaks();
}

/// A full store steals the location of a clean BACKED copy whose frame is
/// mapped; the robbed page keeps its data and can be paged out again later.
#[test]
fn full_swap_steals_a_clean_copy_and_loses_nothing() {
    let r = rig(16, 1);
    let s = r.space();
    let va = r.anon(&s, 2);
    r.write(&s, va, b"first");
    r.write(&s, va + PAGE, b"second");
    s.page_out(va, PAGE).unwrap();
    assert_eq!(r.read(&s, va, 5), b"first"); // back in: BACKED, cached
    let rep = s.page_out(va + PAGE, PAGE).unwrap(); // steals the slot
    assert_eq!(rep.paged_out, 1);
    assert_eq!(r.machine.swap().unwrap().stats().stolen, 1);
    assert_eq!(r.read(&s, va, 5), b"first");
    // Now the first one needs a new location: full again, typed (the
    // second is in swap, not cached: nothing to steal).
    let e = s.page_out(va, PAGE);
    assert!(
        matches!(e, Err(VmError::Swap(pagemap::Error::SwapFull { .. }))),
        "{e:?}"
    );
    assert_eq!(r.read(&s, va, 5), b"first");
    assert_eq!(r.read(&s, va + PAGE, 6), b"second");
    drop(s);
    r.no_leaks();
}

#[test]
fn swap_read_error_is_typed_and_retry_reads_the_page() {
    let r = rig(16, 8);
    let s = r.space();
    let va = r.anon(&s, 2);
    r.write(&s, va, b"keepme");
    s.page_out(va, 2 * PAGE).unwrap();
    r.swap.fail_all_reads(true);
    let e = s.page_in(va, 2 * PAGE).unwrap_err();
    match e {
        VmError::PageIn(f) => assert!(
            matches!(
                *f,
                vmr::Fault::Io {
                    source: pagemap::Error::SwapRead { .. },
                    ..
                }
            ),
            "{f:?}"
        ),
        e => panic!("{e:?}"),
    }
    let mut b = [0u8; 6];
    assert!(matches!(
        r.machine.cpu(0).read(&s, va, &mut b),
        Err(vmr::Fault::Io { .. })
    ));
    // A write fault on it fails the same way, and changes nothing.
    assert!(r.machine.cpu(0).write(&s, va, b"X").is_err());
    r.swap.fail_all_reads(false);
    assert_eq!(r.read(&s, va, 6), b"keepme");
    drop(s);
    r.no_leaks();
}

#[test]
fn swap_write_error_keeps_the_page() {
    let r = rig(16, 8);
    let s = r.space();
    let va = r.anon(&s, 3);
    for i in 0..3 {
        r.write(&s, va + i * PAGE, &[0x40 + i as u8; 16]);
    }
    r.swap.fail_all_writes(true);
    let e = s.page_out(va, 3 * PAGE).unwrap_err();
    assert!(
        matches!(e, VmError::Swap(pagemap::Error::SwapWrite { .. })),
        "{e:?}"
    );
    // A second try, still failing, then the pages read their data.
    assert!(s.page_out(va, 3 * PAGE).is_err());
    for i in 0..3 {
        assert_eq!(r.read(&s, va + i * PAGE, 16), [0x40 + i as u8; 16]);
    }
    // Written to after the failure, then paged out for real.
    r.write(&s, va, b"new");
    r.swap.fail_all_writes(false);
    s.page_out(va, 3 * PAGE).unwrap();
    assert_eq!(r.read(&s, va, 3), b"new");
    assert_eq!(r.read(&s, va + 2 * PAGE, 16), [0x42; 16]);
    drop(s);
    r.no_leaks();
}

/// PagingStats::minor is documented as "Faults that did not [block]": an
/// anonymous zero-fill fault and a swap-cache hit do not block.
#[test]
fn paging_stats_count_anonymous_minor_faults() {
    let r = rig(16, 8);
    let s = r.space();
    let va = r.anon(&s, 4);
    for i in 0..4 {
        r.write(&s, va + i * PAGE, b"x");
    }
    let st = s.paging_stats();
    assert_eq!(st.major, 0);
    assert!(st.minor >= 4, "4 zero-fill faults, none blocked: {st:?}");
}

#[test]
fn paging_without_swap_is_typed() {
    let m = Machine::new(Arc::new(FramePool::new(8).unwrap()), 1);
    let s = AddressSpace::new(m.clone());
    let va = s
        .mmap_anonymous(None, 2 * PAGE, Prot::RW, MapFlags::PRIVATE)
        .unwrap();
    m.cpu(0).write(&s, va, b"abc").unwrap();
    assert!(matches!(s.page_out(va, 2 * PAGE), Err(VmError::NoSwap)));
    let f = FrameId::new(pte::frame(s.pte(va))).unwrap();
    assert!(matches!(m.evict_frame(f), Err(pagemap::Error::Busy)));
    s.mlock(va, 2 * PAGE).unwrap();
    s.munlock(va, 2 * PAGE).unwrap();
    s.page_in(va, 2 * PAGE).unwrap();
    let mut b = [0u8; 3];
    m.cpu(0).read(&s, va, &mut b).unwrap();
    assert_eq!(&b, b"abc");
}

// ---------------------------------------------------------------------------
// A pool as small as the number of faulting threads: every frame is at
// worst in transit (BUSY for a page-in or page-out, or just paged in), so
// a fault should wait for one rather than fail. (`pagecache --anon --pool 2
// --threads 2 --file-size 1M --ops 20000` reports "frame pool exhausted"
// and FAILED.)

#[test]
fn two_threads_on_a_two_frame_pool_never_fail_a_fault() {
    // The default grace (20 ms), as the CLI has it.
    let (ok, errs) = tiny_pool_run(2, 2, 1500);
    assert!(
        errs.is_empty(),
        "{} of {} accesses failed, first: {:?}",
        errs.len(),
        ok + errs.len() as u64,
        errs.first()
    );
}

/// `threads` threads over `frames` frames (the pool's default grace, as
/// the CLI has it): each writes only its own pages (page % threads), reads
/// any page (as the CLI's workload does), whole 4 KiB pages.
fn tiny_pool_run(frames: usize, threads: u64, millis: u64) -> (u64, Vec<String>) {
    let policy = pagemap::policy::by_name("s3fifo", frames).unwrap();
    let pool = Arc::new(FramePool::with_policy(frames, policy).unwrap());
    let swap = Arc::new(MemSwap::new(256));
    let file = Arc::new(pagemap::swap::FileSwap::temp(std::env::temp_dir(), 512).unwrap());
    let machine = Machine::with_swap(pool, threads as usize, file).unwrap();
    let r = Rig {
        machine,
        swap,
        frames,
    };
    let s = r.space();
    const PAGES: u64 = 256;
    let va = r.anon(&s, PAGES);
    for i in 0..PAGES {
        r.machine
            .cpu(0)
            .write(&s, va + i * PAGE, &[0u8; PAGE_SIZE])
            .unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(millis);
    let errs = std::sync::Mutex::new(Vec::new());
    let ok = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|sc| {
        for t in 0..threads {
            let (s, r, errs, ok) = (&s, &r, &errs, &ok);
            sc.spawn(move || {
                let cpu = r.machine.cpu(t as usize);
                let mut model = vec![0u8; PAGES as usize];
                let mut rng = XorShift(t * 31 + 5);
                let mut page = vec![0u8; PAGE_SIZE];
                while std::time::Instant::now() < deadline {
                    // Skewed: half the accesses to the first 4 pages.
                    let i = if rng.below(2) == 0 {
                        rng.below(4)
                    } else {
                        rng.below(PAGES)
                    };
                    let a = va + i * PAGE;
                    if i % threads == t && rng.below(4) == 0 {
                        let v = (rng.below(255) + 1) as u8;
                        page.fill(v);
                        match cpu.write(s, a, &page) {
                            Ok(()) => {
                                model[i as usize] = v;
                                ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            Err(e) => errs.lock().unwrap().push(format!("write: {e}")),
                        }
                    } else {
                        match cpu.read(s, a, &mut page) {
                            Ok(()) => {
                                if i % threads == t {
                                    assert!(page.iter().all(|&b| b == model[i as usize]));
                                }
                                ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            Err(e) => errs.lock().unwrap().push(format!("read: {e}")),
                        }
                    }
                }
            });
        }
    });
    (ok.into_inner(), errs.into_inner().unwrap())
}

/// Out of frames is `Fault::OutOfMemory` for a zero-fill fault; a page-in
/// that finds no frame is the same condition and should say so, not
/// `Fault::Io` (a caller retrying on OutOfMemory but failing on I/O errors
/// would give up on a page whose data is intact in swap).
#[test]
fn page_in_out_of_frames_is_out_of_memory_not_io() {
    let r = rig(1, 8);
    let s = r.space();
    let va = r.anon(&s, 3);
    r.write(&s, va, b"swapped");
    s.page_out(va, PAGE).unwrap();
    r.write(&s, va + PAGE, b"pinned");
    s.mlock(va + PAGE, PAGE).unwrap(); // the only frame, pinned
    let mut b = [0u8; 7];
    let zero_fill = r
        .machine
        .cpu(0)
        .read(&s, va + 2 * PAGE, &mut b)
        .unwrap_err();
    assert!(
        matches!(zero_fill, vmr::Fault::OutOfMemory { .. }),
        "{zero_fill:?}"
    );
    let page_in = r.machine.cpu(0).read(&s, va, &mut b).unwrap_err();
    assert!(
        matches!(page_in, vmr::Fault::OutOfMemory { .. }),
        "a page-in without a frame: {page_in:?}"
    );
    s.munlock(va + PAGE, PAGE).unwrap();
    r.machine.cpu(0).read(&s, va, &mut b).unwrap();
    assert_eq!(&b, b"swapped");
}

// ---------------------------------------------------------------------------
// Mixed regions: anonymous, private file, shared file side by side.

struct Mixed {
    r: Rig,
    s: Arc<AddressSpace>,
    file: Arc<pagemap::PageMap>,
    anon: u64,
    private: u64,
    shared: u64,
}

fn mixed() -> Mixed {
    let r = rig(32, 32);
    let file = pagemap::PageMap::new(r.machine.pool().clone(), Arc::new(pagemap::MemStore::new()));
    file.set_size(2 * PAGE).unwrap();
    file.write_at(0, b"file0").unwrap();
    file.write_at(PAGE, b"file1").unwrap();
    let s = r.space();
    // Adjacent: anon at A, private file at A+P, shared file at A+2P.
    let anon = r.anon(&s, 1);
    let mut req = vmr::MapRequest::new(file.clone(), PAGE, Prot::RW, MapFlags::PRIVATE);
    req.addr = Some(anon + PAGE);
    let private = s.mmap(req).unwrap();
    let mut req = vmr::MapRequest::new(file.clone(), PAGE, Prot::RW, MapFlags::SHARED);
    req.addr = Some(anon + 2 * PAGE);
    req.pgoff = 1;
    let shared = s.mmap(req).unwrap();
    assert_eq!((private, shared), (anon + PAGE, anon + 2 * PAGE));
    r.write(&s, anon, b"anon!");
    r.write(&s, private, b"priv!");
    r.write(&s, shared, b"shar!");
    Mixed {
        r,
        s,
        file,
        anon,
        private,
        shared,
    }
}

#[test]
fn dontneed_on_mixed_regions() {
    let m = mixed();
    m.s.page_out(m.anon, 3 * PAGE).unwrap();
    m.s.madvise(m.anon, 3 * PAGE, Advice::DontNeed).unwrap();
    assert_eq!(m.r.read(&m.s, m.anon, 5), [0; 5]);
    assert_eq!(m.r.read(&m.s, m.private, 5), b"file0");
    assert_eq!(m.r.read(&m.s, m.shared, 5), b"shar!");
    let mut b = [0u8; 5];
    m.file.read_at(PAGE, &mut b).unwrap();
    assert_eq!(&b, b"shar!");
    drop(m.s);
    assert_eq!(m.r.in_use(), 0);
}

#[test]
fn free_on_mixed_regions_is_refused_and_changes_nothing() {
    let m = mixed();
    let e = m.s.madvise(m.anon, 3 * PAGE, Advice::Free).unwrap_err();
    assert!(
        matches!(e, VmError::NotAnonymous { addr } if addr == m.private),
        "{e:?}"
    );
    // Nothing marked: a page-out writes the anonymous page, which reads back.
    let rep = m.s.page_out(m.anon, 3 * PAGE).unwrap();
    assert_eq!(rep.paged_out, 2, "anon page and the private copy: {rep:?}");
    assert_eq!(rep.written, 2);
    assert_eq!(m.r.read(&m.s, m.anon, 5), b"anon!");
    assert_eq!(m.r.read(&m.s, m.private, 5), b"priv!");
    assert_eq!(m.r.read(&m.s, m.shared, 5), b"shar!");
}

#[test]
fn mlock_of_mixed_regions_then_page_out_keeps_everything() {
    let m = mixed();
    m.s.mlock(m.anon, 3 * PAGE).unwrap();
    let rep = m.s.page_out(m.anon, 3 * PAGE).unwrap();
    assert_eq!(rep.paged_out, 0, "{rep:?}");
    // The shared page is pinned by the locked region: evict_frame refuses.
    let f = FrameId::new(pte::frame(m.s.pte(m.shared))).unwrap();
    assert!(matches!(
        m.r.machine.evict_frame(f),
        Err(pagemap::Error::Busy)
    ));
    assert!(matches!(
        m.r.machine.pool().evict_frame(f),
        Err(pagemap::Error::Busy)
    ));
    let f = FrameId::new(pte::frame(m.s.pte(m.anon))).unwrap();
    assert!(matches!(
        m.r.machine.pool().evict_frame(f),
        Err(pagemap::Error::Busy)
    ));
    m.s.munlock(m.anon, 3 * PAGE).unwrap();
    let rep = m.s.page_out(m.anon, 3 * PAGE).unwrap();
    assert_eq!(rep.paged_out, 2, "{rep:?}");
    assert_eq!(m.r.read(&m.s, m.anon, 5), b"anon!");
    assert_eq!(m.r.read(&m.s, m.private, 5), b"priv!");
    assert_eq!(m.r.read(&m.s, m.shared, 5), b"shar!");
}

#[test]
fn mlock_of_prot_none_region_then_mprotect_keeps_it_locked() {
    let r = rig(16, 16);
    let s = r.space();
    let va = s
        .mmap_anonymous(None, 2 * PAGE, Prot::NONE, MapFlags::PRIVATE)
        .unwrap();
    s.mlock(va, 2 * PAGE).unwrap();
    assert_eq!(r.machine.pool().free_frames(), 16, "nothing to fault in");
    s.mprotect(va, 2 * PAGE, Prot::RW).unwrap();
    r.write(&s, va, b"lk");
    let rep = s.page_out(va, 2 * PAGE).unwrap();
    assert_eq!(rep.paged_out, 0, "locked region's page paged out: {rep:?}");
    assert!(matches!(
        s.madvise(va, PAGE, Advice::DontNeed),
        Err(VmError::Locked { .. })
    ));
    s.munlock(va, 2 * PAGE).unwrap();
    assert_eq!(s.page_out(va, 2 * PAGE).unwrap().paged_out, 1);
    assert_eq!(r.read(&s, va, 2), b"lk");
}

#[test]
fn evict_frame_of_held_and_unheld_page_cache_pages() {
    let m = mixed();
    let page = m.file.load(0).unwrap();
    let f = page.frame();
    assert!(matches!(
        m.r.machine.evict_frame(f),
        Err(pagemap::Error::Busy)
    ));
    drop(page);
    // Mapped shared page: evicted (written back first), data intact.
    let f = FrameId::new(pte::frame(m.s.pte(m.shared))).unwrap();
    m.r.machine.evict_frame(f).unwrap();
    assert_eq!(m.r.read(&m.s, m.shared, 5), b"shar!");
    // A free frame: Ok, stays free.
    let free_before = m.r.machine.pool().free_frames();
    let mut freed = None;
    for id in 1..=32u32 {
        let f = FrameId::new(id).unwrap();
        if m.r.machine.pool().flags(f) & pagemap::flags::FREE != 0 {
            freed = Some(f);
            break;
        }
    }
    m.r.machine.evict_frame(freed.unwrap()).unwrap();
    assert_eq!(m.r.machine.pool().free_frames(), free_before);
}

/// File page-cache pressure (PageMap loads and writes through the same
/// pool) beside anonymous pressure, concurrently; everything verified.
#[test]
fn file_and_anonymous_pressure_share_one_pool() {
    let r = rig(12, 128);
    let file = pagemap::PageMap::new(r.machine.pool().clone(), Arc::new(pagemap::MemStore::new()));
    const FP: u64 = 40;
    const AP: u64 = 40;
    file.set_size(FP * PAGE).unwrap();
    let s = r.space();
    let va = r.anon(&s, AP);
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(1500);
    std::thread::scope(|sc| {
        let f = &file;
        sc.spawn(move || {
            let mut model = vec![0u64; FP as usize];
            let mut rng = XorShift(99);
            while std::time::Instant::now() < deadline {
                let i = rng.below(FP);
                if rng.below(3) == 0 {
                    let v = rng.next() | 1;
                    match f.write_at(i * PAGE, &v.to_le_bytes()) {
                        Ok(_) => model[i as usize] = v,
                        Err(e) => panic!("file write: {e}"),
                    }
                } else {
                    let mut b = [0u8; 8];
                    f.read_at(i * PAGE, &mut b).expect("file read");
                    assert_eq!(u64::from_le_bytes(b), model[i as usize], "file page {i}");
                }
            }
        });
        let (s, r) = (&s, &r);
        sc.spawn(move || {
            let cpu = r.machine.cpu(1);
            let mut model = vec![0u64; AP as usize];
            let mut rng = XorShift(7);
            while std::time::Instant::now() < deadline {
                let i = rng.below(AP);
                let a = va + i * PAGE;
                match rng.below(8) {
                    0..=2 => {
                        let v = rng.next() | 1;
                        cpu.write(s, a, &v.to_le_bytes()).expect("anon write");
                        model[i as usize] = v;
                    }
                    3 => {
                        let _ = s.page_out(a, PAGE);
                    }
                    _ => {
                        let mut b = [0u8; 8];
                        cpu.read(s, a, &mut b).expect("anon read");
                        assert_eq!(u64::from_le_bytes(b), model[i as usize], "anon page {i}");
                    }
                }
            }
        });
    });
    let st = r.machine.swap().unwrap().stats();
    assert!(st.page_outs > 0 && st.page_ins > 0, "{st:?}");
    drop(s);
    drop(file);
    r.no_leaks();
}

/// Two machines with swap on one pool: machine a's evict_frame of machine
/// b's frame leaves the frame in a's swap cache (its state names a's
/// location); b's next page-out of that frame then uses a's location number
/// in b's swap map, where another page of b lives.
#[test]
fn evict_frame_of_another_machines_frame_corrupts_nothing() {
    let pool = Arc::new(FramePool::new(16).unwrap());
    pool.set_held_grace(std::time::Duration::ZERO);
    let a = Machine::with_swap(pool.clone(), 1, Arc::new(MemSwap::new(8))).unwrap();
    let b = Machine::with_swap(pool.clone(), 1, Arc::new(MemSwap::new(8))).unwrap();
    let sb = AddressSpace::new(b.clone());
    let va = sb
        .mmap_anonymous(None, 2 * PAGE, Prot::RW, MapFlags::PRIVATE)
        .unwrap();
    b.cpu(0).write(&sb, va, b"page P").unwrap();
    sb.page_out(va, PAGE).unwrap(); // P at b's location 0
    b.cpu(0).write(&sb, va + PAGE, b"page Q").unwrap();
    let q = FrameId::new(pte::frame(sb.pte(va + PAGE))).unwrap();
    let _ = a.evict_frame(q); // a's location 0 now names Q's frame
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        sb.page_out(va + PAGE, PAGE)
    }));
    let mut buf = [0u8; 6];
    b.cpu(0).read(&sb, va, &mut buf).unwrap();
    assert_eq!(
        &buf,
        b"page P",
        "P's swap slot overwritten (page_out panicked: {})",
        r.is_err()
    );
    assert!(r.is_ok(), "b's page_out panicked");
    b.cpu(0).read(&sb, va + PAGE, &mut buf).unwrap();
    assert_eq!(&buf, b"page Q");
}
