//! Attempts to break the issue 8 fix (truncate vs faults, fork snapshots,
//! progress of unmappers), through the public API only. Each test is
//! bounded in time: an operation that does not return within its budget is
//! reported as hung (and then released so that the test can end).
//!
//! Run: `cargo test --release -p vmr --test break8 -- --test-threads 1`
//! (the races want both cores; debug builds also work, with wider windows).
//!
//! Release builds only (about 20 s; over a minute unoptimised): CI runs them
//! with `cargo test --release -p vmr --test break8` (scripts/test.sh).
#![cfg(not(debug_assertions))]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pagemap::{BackingStore, FramePool, MemStore, PageBuf, PageMap, StoreControl, PAGE_SIZE};
use vmr::{pte, Access, AddressSpace, Advice, Fault, Machine, MapFlags, MapRequest, Prot};

#[allow(dead_code)]
mod common;
use common::{serial, Rig, PAGE};

/// Spins until `cond` or `limit`; whether `cond` became true.
fn spin_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if cond() {
            return true;
        }
        std::hint::spin_loop();
    }
    false
}

// ---------------------------------------------------------------------------
// 1. An unmap in flight (PTE cleared, shootdown not yet issued) hides the
//    entry from truncate's zaps and from a removal's revoke: neither shoots
//    the space down, so a CPU keeps its TLB entry past truncate's return,
//    and (for entries munmap does not hold: read-only shared, or private
//    read-only entries of the cached page) the frame is freed and reused
//    while that TLB entry still points at it.
//
//    The window is widened without touching the library: the page raced for
//    is the first of the unmapped range, and a big filler mapping (another
//    file, whose pages stay cached) follows it, so the unmap changes many
//    entries after it and builds one record per entry before its shootdown.
// ---------------------------------------------------------------------------

/// Pages of the filler mapping.
const FILLER: u64 = 32768;
/// Where the page raced for is mapped (the filler right after it).
const AT: u64 = 0x4000_0000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unmap {
    Munmap,
    MprotectNone,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    /// `file.truncate(0)`: an access after it returns must fault.
    Truncate,
    /// `file.remove(..)`: the frame must not be freed while a TLB entry may
    /// still point at it.
    Remove,
}

#[derive(Clone, Copy, Debug)]
struct UnmapCase {
    flags: MapFlags,
    prot: Prot,
    unmap: Unmap,
    cut: Cut,
    write: bool,
}

/// Machine, target file (page 0), filler file (FILLER pages, cached).
struct FillerRig {
    pool: Arc<FramePool>,
    machine: Arc<Machine>,
    store: Arc<MemStore>,
    file: Arc<PageMap>,
    filler: Arc<PageMap>,
}

impl FillerRig {
    fn new(extra: usize) -> FillerRig {
        let pool = Arc::new(FramePool::new(FILLER as usize + 64 + extra).unwrap());
        let store = Arc::new(MemStore::new());
        let file = PageMap::new(pool.clone(), store.clone());
        let filler = PageMap::new(pool.clone(), Arc::new(MemStore::new()));
        for i in 0..FILLER {
            drop(filler.load(i).unwrap());
        }
        FillerRig {
            machine: Machine::new(pool.clone(), 2),
            pool,
            store,
            file,
            filler,
        }
    }

    /// A space with the target page at AT (`flags`, `prot`) and the filler
    /// after it (shared, writable, every entry present).
    fn space(&self, flags: MapFlags, prot: Prot) -> Arc<AddressSpace> {
        let space = AddressSpace::new(self.machine.clone());
        space
            .mmap(MapRequest {
                addr: Some(AT),
                advice: Advice::Random,
                ..MapRequest::new(self.file.clone(), PAGE, prot, flags)
            })
            .unwrap();
        space
            .mmap(MapRequest {
                addr: Some(AT + PAGE),
                advice: Advice::Random,
                ..MapRequest::new(
                    self.filler.clone(),
                    FILLER * PAGE,
                    Prot::RW,
                    MapFlags::SHARED | MapFlags::POPULATE,
                )
            })
            .unwrap();
        space
    }
}

/// One case, up to `rounds` rounds; the first bad access, if any.
fn unmap_in_flight(rig: &FillerRig, case: UnmapCase, rounds: u32) -> (u32, u32, Option<String>) {
    const OLD: u8 = 0xaa;
    const OTHER: u8 = 0xbb;
    let other_store = Arc::new(MemStore::new());
    other_store.set_page(0, &[OTHER; PAGE_SIZE]);
    let other = PageMap::new(rig.pool.clone(), other_store);
    let (file, cpu) = (&rig.file, rig.machine.cpu(1));
    let (mut tried, mut raced) = (0, 0);
    for round in 0..rounds {
        tried += 1;
        file.truncate(1); // whole again (page 0 only)
        rig.store.set_page(0, &[OLD; PAGE_SIZE]);
        let space = rig.space(case.flags, case.prot);
        // CPU 1's TLB entry for the page (a dirty one for a writable page).
        if case.write {
            cpu.write(&space, AT + 8, &[OLD]).unwrap();
        }
        let mut b = [0u8; 1];
        cpu.read(&space, AT, &mut b).unwrap();
        assert_eq!(b[0], OLD);
        let frame = pte::frame(space.pte(AT));
        let mut bad = None;
        thread::scope(|s| {
            let sp = &space;
            let len = (FILLER + 1) * PAGE;
            let unmapper = s.spawn(move || match case.unmap {
                Unmap::Munmap => sp.munmap(AT, len).unwrap(),
                Unmap::MprotectNone => sp.mprotect(AT, len, Prot::NONE).unwrap(),
            });
            // The unmap has cleared the entry: its shootdown is still to come.
            if !spin_until(Duration::from_secs(5), || space.pte(AT) & pte::PRESENT == 0) {
                panic!("the unmap never cleared the entry");
            }
            match case.cut {
                Cut::Truncate => drop(file.truncate(0)),
                Cut::Remove => drop(file.remove(..)),
            }
            // Whoever needs a frame now gets the one just freed, if it was.
            let reuse = other.load(0).unwrap();
            let reused = reuse.frame().get() == frame;
            // An access that starts now, after truncate / remove returned.
            let r = if case.write {
                cpu.write(&space, AT, &[0x5a])
            } else {
                cpu.read(&space, AT, &mut b)
            };
            let done = unmapper.is_finished();
            if r.is_ok() && !done {
                bad = Some(format!(
                    "{case:?} round {round}: a {} through CPU 1 after {:?} returned succeeded \
                     (read {:#04x}; the page's frame {frame} {}), the unmap still in flight",
                    if case.write { "write" } else { "read" },
                    case.cut,
                    b[0],
                    if reused {
                        "was freed and now holds another file's page"
                    } else {
                        "was not reused"
                    }
                ));
            }
            drop(reuse);
            unmapper.join().unwrap();
            if !done {
                raced += 1;
            }
        });
        drop(space);
        other.remove(..);
        if let (Some(msg), Cut::Truncate, true) = (&mut bad, case.cut, case.write) {
            // Where did that write go? Grow the file again and look.
            file.truncate(1);
            let mut b0 = [0u8; 1];
            file.load(0).unwrap().read(0, &mut b0).unwrap();
            msg.push_str(&format!(
                "; after truncate(1) grew the file again, page 0 byte 0 reads {:#04x} \
                 (the store has {:#04x}): the write after truncate became file data",
                b0[0],
                rig.store.page(0).map_or(0, |p| p[0])
            ));
            file.truncate(0);
        }
        // Nothing of this round stays cached (end 0 now: dirty data dropped).
        file.remove(..);
        if bad.is_some() {
            return (tried, raced, bad);
        }
    }
    (tried, raced, None)
}

fn unmap_cases(cases: &[UnmapCase]) {
    let _serial = serial();
    let rig = FillerRig::new(16);
    let mut bad = Vec::new();
    for &case in cases {
        let t = Instant::now();
        let (tried, raced, b) = unmap_in_flight(&rig, case, 50);
        eprintln!(
            "{case:?}: {tried} rounds, {raced} raced, bad: {}, {:?}",
            b.is_some(),
            t.elapsed()
        );
        bad.extend(b);
    }
    assert!(
        bad.is_empty(),
        "accesses that started after truncate/remove returned went through a TLB entry \
         an unmap in flight had not shot down yet:\n{}",
        bad.join("\n")
    );
}

/// truncate during a munmap / mprotect(NONE) of the same page: an access
/// that starts after truncate returned must fault (issue 8 invariant).
#[test]
fn truncate_during_an_unmap_in_flight_access_after_it_faults() {
    unmap_cases(&[
        UnmapCase {
            flags: MapFlags::SHARED,
            prot: Prot::READ,
            unmap: Unmap::Munmap,
            cut: Cut::Truncate,
            write: false,
        },
        UnmapCase {
            flags: MapFlags::PRIVATE,
            prot: Prot::READ,
            unmap: Unmap::Munmap,
            cut: Cut::Truncate,
            write: false,
        },
        UnmapCase {
            flags: MapFlags::SHARED,
            prot: Prot::RW,
            unmap: Unmap::Munmap,
            cut: Cut::Truncate,
            write: true,
        },
        UnmapCase {
            flags: MapFlags::SHARED,
            prot: Prot::READ,
            unmap: Unmap::MprotectNone,
            cut: Cut::Truncate,
            write: false,
        },
    ]);
}

/// remove during a munmap of the same page: the removed page's frame must
/// not be freed (and reused) while a CPU may still use a TLB entry for it
/// (design.md invariant 4, "frames are freed last").
#[test]
fn remove_during_a_munmap_in_flight_never_frees_a_frame_a_tlb_holds() {
    unmap_cases(&[
        UnmapCase {
            flags: MapFlags::SHARED,
            prot: Prot::READ,
            unmap: Unmap::Munmap,
            cut: Cut::Remove,
            write: false,
        },
        UnmapCase {
            flags: MapFlags::PRIVATE,
            prot: Prot::READ,
            unmap: Unmap::Munmap,
            cut: Cut::Remove,
            write: false,
        },
        UnmapCase {
            flags: MapFlags::SHARED,
            prot: Prot::READ,
            unmap: Unmap::MprotectNone,
            cut: Cut::Remove,
            write: false,
        },
    ]);
}

// ---------------------------------------------------------------------------
// 2. mprotect(NONE) (or READ) of private copies vs truncate's zap: mprotect
//    decides whether to free a private frame by re-reading the PTE after
//    its own change ("the frame left its PTE"); truncate's zap clearing the
//    entry in between makes both free it.
// ---------------------------------------------------------------------------

#[test]
fn mprotect_of_private_copies_racing_truncate_frees_each_copy_once() {
    let _serial = serial();
    let mut report = Vec::new();
    'prots: for prot in [Prot::NONE, Prot::READ] {
        // A rig per protection: a double free corrupts the pool for good.
        let rig = FillerRig::new(16);
        let cap = rig.pool.capacity();
        let mut raced_rounds = 0;
        for round in 0..50 {
            rig.file.truncate(1);
            let base_free = rig.pool.free_frames() + rig.file.nr_pages() as usize;
            let space = rig.space(MapFlags::PRIVATE, Prot::RW);
            // The private copy of page 0.
            rig.machine.cpu(0).write(&space, AT, b"copy").unwrap();
            assert_ne!(space.pte(AT) & pte::PRIVATE, 0);
            let len = (FILLER + 1) * PAGE;
            let mut raced = false;
            thread::scope(|s| {
                let sp = &space;
                let h = s.spawn(move || sp.mprotect(AT, len, prot).unwrap());
                // mprotect has changed the entry (not present, or not writable).
                let changed = |p: u64| {
                    if prot == Prot::NONE {
                        p & pte::PRESENT == 0
                    } else {
                        p & pte::WRITABLE == 0
                    }
                };
                assert!(spin_until(Duration::from_secs(5), || changed(
                    space.pte(AT)
                )));
                rig.file.truncate(0);
                raced = !h.is_finished();
                h.join().unwrap();
            });
            raced_rounds += u32::from(raced);
            drop(space);
            let free = rig.pool.free_frames();
            // Every frame the round took is back (the cached page 0 went with
            // the truncate, the private copy with its zap), each once.
            let want = base_free - rig.file.nr_pages() as usize;
            if free != want {
                let mut seen = std::collections::HashMap::new();
                let mut dup = None;
                let mut held = Vec::new();
                while let Ok(f) = rig.pool.alloc_private() {
                    if let Some(prev) = seen.insert(f.id().get(), held.len()) {
                        dup = Some((f.id().get(), prev, held.len()));
                        held.push(f);
                        break;
                    }
                    held.push(f);
                }
                report.push(format!(
                    "mprotect({prot:?}) racing truncate, round {round}: {free} frames free \
                     where {want} should be (capacity {cap}): a private copy was freed twice; \
                     allocating until empty: {dup:?} (frame, 1st alloc #, 2nd alloc #)"
                ));
                // The pool is corrupt: leak everything rather than free twice again.
                std::mem::forget(held);
                std::mem::forget(rig);
                continue 'prots;
            }
        }
        eprintln!("mprotect({prot:?}): 50 rounds, {raced_rounds} raced, no double free");
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
}

// ---------------------------------------------------------------------------
// 3. remove_or_zero (hole punch) has one zap only: a copy-on-write fault
//    that copies the old bytes after that zap publishes its private copy,
//    which survives the call ("private copy-on-write copies included").
//    truncate is protected by its second zap; remove_or_zero is not.
// ---------------------------------------------------------------------------

/// A MemStore whose writes of page `gated` stop until the gate opens.
struct GatedStore {
    inner: MemStore,
    gated: u64,
    open: Mutex<bool>,
    cv: Condvar,
    waiting: AtomicBool,
}

impl GatedStore {
    fn new(gated: u64) -> Self {
        Self {
            inner: MemStore::new(),
            gated,
            open: Mutex::new(true),
            cv: Condvar::new(),
            waiting: AtomicBool::new(false),
        }
    }
    fn close(&self) {
        *self.open.lock().unwrap() = false;
    }
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

impl BackingStore for GatedStore {
    fn read_page(&self, index: u64, buf: &mut PageBuf) -> Result<(), pagemap::StoreError> {
        self.inner.read_page(index, buf)
    }
    fn write_page(&self, index: u64, buf: pagemap::PageSrc<'_>) -> Result<(), pagemap::StoreError> {
        if index == self.gated {
            let mut open = self.open.lock().unwrap();
            self.waiting.store(true, Ordering::SeqCst);
            while !*open {
                open = self.cv.wait(open).unwrap();
            }
            self.waiting.store(false, Ordering::SeqCst);
        }
        self.inner.write_page(index, buf)
    }
}

impl StoreControl for GatedStore {
    fn set_size(&self, bytes: u64) -> Result<(), pagemap::StoreError> {
        self.inner.set_size(bytes)
    }
}

#[test]
fn remove_or_zero_leaves_no_private_copy_of_the_old_bytes() {
    let _serial = serial();
    const OLD: u8 = 0xaa;
    let (q, p) = (0u64, 1u64);
    let store = Arc::new(GatedStore::new(q));
    store.inner.set_page(p, &[OLD; PAGE_SIZE]);
    let rig = Rig::with_store(16, 2, store);
    let (file, store, machine) = (&rig.file, &rig.store, &rig.machine);
    let (space, va) = rig.mapped_random(2, Prot::RW, MapFlags::PRIVATE);
    // Page q dirty (a write-back of it will be in flight); page p held by a
    // reader (a read() in progress), so the punch zeroes it in place.
    file.load(q).unwrap().write(0, b"q").unwrap();
    let reader = file.load(p).unwrap();
    store.close();
    let (tx, rx) = mpsc::channel();
    thread::scope(|s| {
        let (file, store) = (&file, &store);
        let wb = s.spawn(move || file.writeback(q..=q));
        assert!(spin_until(Duration::from_secs(5), || store
            .waiting
            .load(Ordering::SeqCst)));
        let punch = s.spawn(move || {
            let r = file.remove_or_zero(0..2);
            let _ = tx.send(());
            r
        });
        // Let the punch zap and reach its wait for the write-back of q.
        thread::sleep(Duration::from_millis(200));
        assert!(rx.try_recv().is_err(), "the punch waits for q's write-back");
        // A write to the private mapping of p: a copy-on-write of the old bytes.
        machine.cpu(0).write(&space, va + p * PAGE, b"W").unwrap();
        store.open();
        wb.join().unwrap();
        let report = punch.join().unwrap();
        eprintln!("remove_or_zero: {report:?}");
    });
    drop(reader);
    // After the punch returned: byte 100 of p (never written by anyone but
    // the old contents) must read as zero, through any mapping.
    let mut b = [0u8; 1];
    machine
        .cpu(1)
        .read(&space, va + p * PAGE + 100, &mut b)
        .unwrap();
    let pte_after = space.pte(va + p * PAGE);
    assert_eq!(
        b[0],
        0,
        "after remove_or_zero returned, the private mapping still shows the punched page's \
         old bytes ({:#04x}) through a copy-on-write copy published during the punch (PTE \
         {pte_after:#x}, PRIVATE {})",
        b[0],
        pte_after & pte::PRIVATE != 0
    );
}

// ---------------------------------------------------------------------------
// 5. A user holding the page at the user refcount limit (MAX_REFS) makes
//    every fault of the page fail: the fault's get checked the user limit,
//    though a fault's hold is short and bounded (at most 15 per page).
// ---------------------------------------------------------------------------

#[test]
fn a_fault_succeeds_while_a_user_holds_the_page_at_the_refcount_limit() {
    let _serial = serial();
    let rig = Rig::new(16, 2);
    let (space, va) = rig.mapped(1, Prot::READ, MapFlags::SHARED);
    // The file is leaked below: out of the rig with it.
    let Rig { file, machine, .. } = rig;
    {
        let first = file.load(0).unwrap();
        // Leak the user's references (the test leaks the map afterwards).
        while let Ok(r) = first.try_clone() {
            std::mem::forget(r);
        }
        std::mem::forget(first);
    }
    let mut b = [0u8; 1];
    let r = machine.cpu(0).read(&space, va, &mut b);
    // Leak: the page stays held for good (PageMap's drop would assert).
    std::mem::forget(space);
    std::mem::forget(file);
    assert!(
        r.is_ok(),
        "a read of a mapped, cached page in the file failed while a user held it at the \
         refcount limit: {r:?}"
    );
}

// ---------------------------------------------------------------------------
// Things that held (kept as regression tests).
// ---------------------------------------------------------------------------

/// fork of a fork, with mprotect(NONE) copies, while another CPU writes:
/// every copy is whole and the parent's writes after fork are kept.
#[test]
fn fork_of_fork_with_hidden_copies_keeps_every_write() {
    let _serial = serial();
    let rig = Rig::new(256, 2);
    let machine = &rig.machine;
    let (space, va) = rig.mapped(4, Prot::RW, MapFlags::PRIVATE);
    let cpu0 = machine.cpu(0);
    for i in 0..4u8 {
        cpu0.write(&space, va + i as u64 * PAGE, &[i + 1; 16])
            .unwrap();
    }
    space.mprotect(va + PAGE, PAGE, Prot::NONE).unwrap();
    let child = space.fork().unwrap();
    let grandchild = child.fork().unwrap();
    space.mprotect(va + PAGE, PAGE, Prot::RW).unwrap();
    grandchild.mprotect(va + PAGE, PAGE, Prot::READ).unwrap();
    cpu0.write(&space, va + PAGE, &[0x77; 16]).unwrap();
    let mut b = [0u8; 16];
    machine.cpu(1).read(&grandchild, va + PAGE, &mut b).unwrap();
    assert_eq!(b, [2; 16]);
    machine.cpu(1).read(&space, va + PAGE, &mut b).unwrap();
    assert_eq!(b, [0x77; 16]);
    for i in [0u64, 2, 3] {
        machine
            .cpu(1)
            .read(&grandchild, va + i * PAGE, &mut b)
            .unwrap();
        assert_eq!(b, [i as u8 + 1; 16]);
    }
    assert!(matches!(
        machine.cpu(1).read(&child, va + PAGE, &mut b),
        Err(Fault::Protection { .. })
    ));
}

/// More than MAX_MAPPING (15) faults of one page at once, racing truncates
/// that cut and regrow the file: every fault returns (the 16th waits for a
/// slot in the mapping count, it does not fail), and after each truncate
/// returns the cut page is not readable.
#[test]
fn many_concurrent_faults_of_one_page_vs_truncate() {
    let _serial = serial();
    let rig = Rig::new(64, 2);
    let (file, machine) = (&rig.file, &rig.machine);
    let (space, va) = rig.mapped_random(2, Prot::RW, MapFlags::SHARED);
    file.truncate(2);
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    let mut bad = Vec::new();
    thread::scope(|s| {
        for t in 0..24 {
            let (space, stop, tx) = (&space, &stop, tx.clone());
            s.spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let access = if t % 2 == 0 {
                        Access::Read
                    } else {
                        Access::Write
                    };
                    let _ = space.handle_fault(va + PAGE, access);
                    n += 1;
                }
                let _ = tx.send(n);
            });
        }
        drop(tx);
        let cpu = machine.cpu(1);
        let t0 = Instant::now();
        let mut rounds = 0;
        while t0.elapsed() < Duration::from_secs(2) {
            rounds += 1;
            file.truncate(1);
            let mut b = [0u8; 1];
            if let Ok(()) = cpu.read(&space, va + PAGE, &mut b) {
                bad.push(format!(
                    "round {rounds}: page 1 readable after truncate(1) returned"
                ));
                break;
            }
            file.truncate(2);
        }
        stop.store(true, Ordering::Relaxed);
        let mut faults = 0;
        for _ in 0..24 {
            match rx.recv_timeout(Duration::from_secs(5)) {
                Ok(n) => faults += n,
                Err(_) => {
                    bad.push("a faulting thread did not stop within 5 s".into());
                    break;
                }
            }
        }
        eprintln!("{rounds} truncate rounds, {faults} faults");
    });
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
