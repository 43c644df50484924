//! Races that address-space and page-map operations must win, each
//! reproduced through the public API (issue 8). Each failed on the code
//! before the fixes (3c61644) in every run, release and debug, and passes
//! since; each assertion names the invariant.
//!
//! * `truncate_then_access_faults` (and `truncate_then_access_faults_around`
//!   for fault-around neighbours): an access that starts after
//!   `PageMap::truncate` has returned faults with `BeyondEof`. Before, a fault
//!   that checked the end of the file before the truncate installs its PTE
//!   after the truncate's zap and only then checks the end again, so another
//!   CPU can read the page beyond the new end meanwhile (and a neighbour's
//!   entry, which the reader marks ACCESSED, was not even taken back).
//! * `fork_copies_a_snapshot`: `AddressSpace::fork` copies a private page as
//!   it was at one instant. Before, it copied while another CPU went on
//!   writing through its writable TLB entry, so the child got a torn page.
//! * `operations_complete_while_a_user_holds_a_page_at_the_refcount_limit`:
//!   munmap, mprotect, msync, writeback, teardown, remove and truncate of a
//!   page held `pagemap::MAX_REFS` times complete, and do their job. Before, the
//!   unmappers spun in `PageMap::find_frame` until the user let go,
//!   writeback skipped the page without saying so, and truncate left its old
//!   contents in place.
//!
//! The fault's window in the truncate race is a few instructions wide; the
//! test widens it without touching the code under test. pagemap's lookups
//! pin the global crossbeam epoch, and every 128th pin of a thread walks the
//! list of the epoch's participants to try to advance it. The test parks a
//! thousand threads (three thousand in debug builds) that have each pinned
//! the epoch once, which makes that walk last tens of microseconds (about a
//! millisecond in debug builds); the faulting thread counts its own pins (it
//! measures the period, it does not assume 128) so that the slow pin is the
//! page-map lookup of its fault, which comes after the fault's end-of-file
//! check and before its PTE install. The truncate runs during that stall, and
//! the main thread reads the page as soon as the truncate has returned.
//!
//! The refcount test keeps its 4,194,303 references in a `Vec` (about 135 MB).
//!
//! Each test holds one lock for its whole run, so that the tests of this file
//! do not compete for the CPUs (the races need two threads running at once).
//! On a machine whose cores are all busy with other work, the truncate race
//! may not happen within its time budget, and the test then passes (it says
//! how many rounds actually raced).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pagemap::{Error, FramePool, MemStore, PageMap, PageRef, PAGE_SIZE};
use vmr::{pte, Access, Advice, Fault, MapFlags, MapRequest, Prot};

#[allow(dead_code)]
mod common;
use common::{serial, Rig, PAGE};

fn spin_for(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

// ---- truncate vs an access after it ------------------------------------------

/// Pages in the file.
const FILE_PAGES: u64 = 1024;
/// Where the truncate cuts: the page raced for.
const CUT: u64 = FILE_PAGES - 8;
/// Time each case races for (it stops at the first bad read).
const TRUNCATE_CASE: Duration = Duration::from_secs(1);
/// Threads parked in the epoch: the collection walk takes ~50 us with 1000
/// in release; debug builds need longer stalls (their truncate is slower).
const EPOCH_PARTICIPANTS: usize = if cfg!(debug_assertions) { 3000 } else { 1000 };
/// A pin this slow is an epoch collection (others take well under 1 us).
const SLOW_PIN: Duration = Duration::from_micros(3);
/// How long after the fault starts the truncate comes: long enough for the
/// fault to reach its slow pin (a whole fault takes well under 1 us in
/// release, a few us in debug), well within the stall.
const LEAD: Duration = Duration::from_micros(if cfg!(debug_assertions) { 40 } else { 3 });

/// Threads parked after pinning the epoch once, so that every collection
/// walks them (see the module docs). Dropping it lets them go.
struct EpochDrag {
    release: Arc<(Mutex<bool>, Condvar)>,
    handles: Vec<thread::JoinHandle<()>>,
}

impl EpochDrag {
    fn new(threads: usize) -> EpochDrag {
        let map = PageMap::new(
            Arc::new(FramePool::new(1).unwrap()),
            Arc::new(MemStore::new()),
        );
        let release = Arc::new((Mutex::new(false), Condvar::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut handles = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (map, release, ready) = (map.clone(), release.clone(), ready_tx.clone());
            let spawned = thread::Builder::new().stack_size(64 << 10).spawn(move || {
                let _ = map.holders(0); // pins: registers this thread
                drop(map);
                let _ = ready.send(());
                let (lock, cv) = &*release;
                let mut go = lock.lock().unwrap_or_else(|e| e.into_inner());
                while !*go {
                    go = cv.wait(go).unwrap_or_else(|e| e.into_inner());
                }
            });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    eprintln!(
                        "parked {} epoch participants, not {threads}: {e}",
                        handles.len()
                    );
                    break;
                }
            }
        }
        for _ in 0..handles.len() {
            ready_rx.recv().unwrap();
        }
        EpochDrag { release, handles }
    }
}

impl Drop for EpochDrag {
    fn drop(&mut self) {
        let (lock, cv) = &*self.release;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// A thread's count of its own epoch pins, so that it can make one of its
/// pins the slow one (see the module docs).
struct PinClock<'a> {
    map: &'a PageMap,
    /// Pins from one collection to the next on one thread.
    period: u64,
}

impl<'a> PinClock<'a> {
    /// One pin (a lookup); whether it was slow (a collection).
    fn pin(map: &PageMap) -> bool {
        let t = Instant::now();
        let _ = map.holders(0);
        t.elapsed() >= SLOW_PIN
    }

    /// Pins until a slow pin; how many that took (`None`: none in `limit`).
    fn to_slow(map: &PageMap, limit: u64) -> Option<u64> {
        (1..=limit).find(|_| Self::pin(map))
    }

    /// Measures the period (the same twice in a row), if collections are
    /// slow enough to tell.
    fn calibrate(map: &'a PageMap) -> Option<PinClock<'a>> {
        Self::to_slow(map, 4096)?;
        let mut last = None;
        for _ in 0..8 {
            let p = Self::to_slow(map, 4096)?;
            if last == Some(p) {
                return Some(PinClock { map, period: p });
            }
            last = Some(p);
        }
        None
    }

    /// Pins until a collection, then one period less one: this thread's
    /// next pin is the slow one.
    fn arm(&self) {
        if Self::to_slow(self.map, 2 * self.period).is_some() {
            for _ in 1..self.period {
                let _ = self.map.holders(0);
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct TruncateCase {
    flags: MapFlags,
    /// The racing fault's access.
    access: Access,
    /// The fault is at the page below the cut, so that the page raced for
    /// is its first fault-around neighbour (default advice).
    around: bool,
}

/// What one case saw.
#[derive(Debug, Default)]
struct TruncateOutcome {
    rounds: u64,
    /// Rounds in which the fault was still in flight when the truncate
    /// returned: the race was on.
    raced: u64,
    /// Accesses that succeeded although they started after the truncate
    /// had returned: the bug.
    bad: Vec<String>,
}

/// Races a fault against a truncate, round after round, for `budget`.
/// Each round the file is whole again; thread A starts a fault (its slow
/// pin comes after the fault's end-of-file check); the main thread cuts
/// the file at [`CUT`] during it, then reads page `CUT` through CPU 1 (of
/// the same address space) until the fault is over. Stops at the first read
/// that succeeds.
fn race_truncate(case: TruncateCase, budget: Duration) -> TruncateOutcome {
    let rig = Rig::new(64, 2);
    let (file, store, machine) = (&rig.file, &rig.store, &rig.machine);
    let space = rig.space();
    file.truncate(FILE_PAGES);
    for i in CUT - 4..CUT + 4 {
        store.set_page(i, &[0xa5; PAGE_SIZE]);
    }
    let va = space
        .mmap(MapRequest {
            advice: if case.around {
                Advice::Normal
            } else {
                Advice::Random
            },
            ..rig.request(FILE_PAGES, Prot::RW, case.flags)
        })
        .unwrap();
    let fault_page = if case.around { CUT - 1 } else { CUT };
    let fault_at = va + fault_page * PAGE;
    let raced_va = va + CUT * PAGE;
    // Another user holds the pages around the cut (as a read() in progress
    // would), so the truncate zeroes them instead of freeing them: the
    // fault still finds its page after the truncate.
    let held: Vec<PageRef<'_>> = (CUT - 4..CUT + 4).map(|i| file.load(i).unwrap()).collect();
    if case.around {
        // Map the neighbours below the cut for good: from now on the
        // fault's first lookup is that of the neighbour at the cut.
        space.handle_fault(fault_at, Access::Read).unwrap();
    }
    let go = AtomicU64::new(0);
    let entered = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let mut out = TruncateOutcome::default();
    thread::scope(|s| {
        let (space, file, go, entered, done, stop) = (&space, &file, &go, &entered, &done, &stop);
        // Thread A: one fault per round, its first pin slow.
        s.spawn(move || {
            let clock = PinClock::calibrate(file);
            if clock.is_none() {
                eprintln!("{case:?}: epoch collections are not slow enough to aim at");
            }
            let mut last = 0;
            loop {
                let round = loop {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let r = go.load(Ordering::SeqCst);
                    if r != last {
                        break r;
                    }
                    std::hint::spin_loop();
                };
                if let Some(c) = &clock {
                    c.arm();
                }
                entered.store(round, Ordering::SeqCst);
                let _ = space.handle_fault(fault_at, case.access);
                done.store(round, Ordering::SeqCst);
                last = round;
            }
        });
        let cpu = machine.cpu(1);
        let start = Instant::now();
        'rounds: while start.elapsed() < budget && out.bad.is_empty() {
            out.rounds += 1;
            let round = out.rounds;
            file.truncate(FILE_PAGES);
            go.store(round, Ordering::SeqCst);
            while entered.load(Ordering::SeqCst) != round {
                if start.elapsed() >= budget {
                    break 'rounds;
                }
                std::hint::spin_loop();
            }
            // Let the fault get past its end-of-file check, to its slow pin;
            // if it is over already, it did not stall: next round.
            spin_for(LEAD);
            if done.load(Ordering::SeqCst) == round {
                continue;
            }
            file.truncate(CUT);
            if done.load(Ordering::SeqCst) != round {
                out.raced += 1;
            }
            // Every access from here on starts after the truncate returned.
            let t = Instant::now();
            let mut finished: Option<Instant> = None;
            loop {
                let mut b = [0u8; 1];
                if cpu.read(space, raced_va, &mut b).is_ok() {
                    out.bad.push(format!(
                        "{case:?}: round {round}: page {CUT} read {:#04x} after truncate({CUT}) \
                         had returned (its PTE now {:#x})",
                        b[0],
                        space.pte(raced_va)
                    ));
                    break;
                }
                if finished.is_none() && done.load(Ordering::SeqCst) == round {
                    finished = Some(Instant::now());
                }
                if finished.is_some_and(|f| f.elapsed() >= Duration::from_micros(5))
                    || t.elapsed() >= Duration::from_millis(50)
                {
                    break;
                }
            }
            while done.load(Ordering::SeqCst) != round && start.elapsed() < budget {
                std::hint::spin_loop();
            }
        }
        stop.store(true, Ordering::SeqCst);
    });
    drop(held);
    out
}

fn truncate_cases(cases: &[TruncateCase]) {
    let _serial = serial();
    let t0 = Instant::now();
    let _drag = EpochDrag::new(EPOCH_PARTICIPANTS);
    eprintln!("epoch participants parked in {:?}", t0.elapsed());
    let mut bad = Vec::new();
    for &case in cases {
        let t = Instant::now();
        let o = race_truncate(case, TRUNCATE_CASE);
        eprintln!(
            "{case:?}: {} rounds, {} raced, {} bad reads, {:?}",
            o.rounds,
            o.raced,
            o.bad.len(),
            t.elapsed()
        );
        bad.extend(o.bad);
    }
    assert!(
        bad.is_empty(),
        "accesses that started after truncate had returned did not fault:\n{}",
        bad.join("\n")
    );
}

/// An access that starts after `truncate` has returned faults with
/// `BeyondEof`, whatever fault of that page is still in flight: shared and
/// private mappings, read and write faults (a private write fault copies).
#[test]
fn truncate_then_access_faults() {
    let mut cases = Vec::new();
    for flags in [MapFlags::SHARED, MapFlags::PRIVATE] {
        for access in [Access::Read, Access::Write] {
            cases.push(TruncateCase {
                flags,
                access,
                around: false,
            });
        }
    }
    truncate_cases(&cases);
}

/// The same for fault-around: once `truncate` has returned, a neighbour
/// that a fault in flight maps beyond the new end is not readable.
#[test]
fn truncate_then_access_faults_around() {
    truncate_cases(&[TruncateCase {
        flags: MapFlags::SHARED,
        access: Access::Read,
        around: true,
    }]);
}

// ---- fork vs a writer -----------------------------------------------------

/// A child made by `fork` has a copy of each private page as it was at one
/// instant: a page the parent's CPU fills "word 0, then the last word" with
/// 1, 2, 3, ... never reaches the child with the last word ahead of word 0.
#[test]
fn fork_copies_a_snapshot() {
    let _serial = serial();
    let t0 = Instant::now();
    let budget = Duration::from_secs(2);
    let rig = Rig::new(64, 2);
    let machine = &rig.machine;
    let (space, va) = rig.mapped(1, Prot::RW, MapFlags::PRIVATE);
    const LAST: u64 = PAGE - 8;
    // The parent's private copy, and CPU 1's writable TLB entry for it.
    machine
        .cpu(1)
        .write(&space, va, &0u64.to_le_bytes())
        .unwrap();
    let stop = AtomicBool::new(false);
    let written = AtomicU64::new(0);
    let mut forks = 0u64;
    let mut torn = None;
    thread::scope(|s| {
        let (space, machine, stop, written) = (&space, &machine, &stop, &written);
        s.spawn(move || {
            let cpu = machine.cpu(1);
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                cpu.write(space, va, &k.to_le_bytes()).unwrap();
                cpu.write(space, va + LAST, &k.to_le_bytes()).unwrap();
            }
            written.store(k, Ordering::Relaxed);
        });
        let cpu = machine.cpu(0);
        let start = Instant::now();
        while start.elapsed() < budget && torn.is_none() {
            let child = space.fork().unwrap();
            forks += 1;
            let (mut first, mut last) = ([0u8; 8], [0u8; 8]);
            cpu.read(&child, va, &mut first).unwrap();
            cpu.read(&child, va + LAST, &mut last).unwrap();
            let (first, last) = (u64::from_le_bytes(first), u64::from_le_bytes(last));
            if last > first {
                torn = Some((forks, first, last));
            }
            drop(child);
        }
        stop.store(true, Ordering::Relaxed);
    });
    eprintln!(
        "fork_copies_a_snapshot: {forks} forks, {} writer rounds, torn: {torn:?}, {:?}",
        written.load(Ordering::Relaxed),
        t0.elapsed()
    );
    if let Some((n, first, last)) = torn {
        panic!(
            "fork #{n} copied a torn page: word at {LAST} is {last} but word 0 is {first} \
             (word 0 is written first, so no instant has the last word ahead)"
        );
    }
}

// ---- a page at the refcount limit -------------------------------------------

/// How long an operation on one page may take before it counts as hung.
const HANG: Duration = Duration::from_secs(1);

/// A user's references to one page, as many as the page takes.
struct AtLimit<'m> {
    map: &'m PageMap,
    index: u64,
    refs: Vec<PageRef<'m>>,
}

impl<'m> AtLimit<'m> {
    fn take(map: &'m PageMap, index: u64) -> AtLimit<'m> {
        let mut at = AtLimit {
            map,
            index,
            refs: Vec::new(),
        };
        at.fill();
        at
    }

    /// Takes references until the next one is refused.
    fn fill(&mut self) {
        if self.refs.is_empty() {
            self.refs.reserve_exact(pagemap::MAX_REFS as usize);
            let first = self.map.find(self.index).expect("below the limit");
            self.refs.push(first.expect("the page is cached"));
        }
        loop {
            match self.refs[0].try_clone() {
                Ok(r) => self.refs.push(r),
                Err(Error::RefcountOverflow { .. }) => break,
                Err(e) => panic!("try_clone: {e}"),
            }
        }
        // A page truncate cut off is detached: no longer found at its index.
        if !self.refs[0].is_detached() {
            assert!(matches!(
                self.map.find(self.index),
                Err(Error::RefcountOverflow { .. })
            ));
        }
    }

    /// Runs `f` with one reference given back (set-up and clean-up that
    /// need to take the page), then takes it again.
    fn spare<R>(&mut self, f: impl FnOnce() -> R) -> R {
        drop(self.refs.pop());
        let r = f();
        self.fill();
        r
    }

    /// Runs `op` in a thread while the references are held. If it has not
    /// returned after [`HANG`], it is reported as hung and the user lets go
    /// of some references, then of all, giving it [`HANG`] each time to
    /// finish; if it still has not, the process exits (a thread that never
    /// returns cannot be joined). The references are taken again afterwards.
    fn hold_during<R: Send>(
        &mut self,
        what: &str,
        failures: &mut Vec<String>,
        op: impl FnOnce() -> R + Send,
    ) -> R {
        let t = Instant::now();
        let mut refs = std::mem::take(&mut self.refs);
        let r = thread::scope(|s| {
            let (tx, rx) = mpsc::channel();
            s.spawn(move || {
                let _ = tx.send(op());
            });
            if let Ok(r) = rx.recv_timeout(HANG) {
                return r;
            }
            failures.push(format!(
                "{what}: did not complete within {HANG:?} while a user held the page at the \
                 refcount limit"
            ));
            // The user lets go of a few references (enough for an operation
            // that takes one or two), then, if that is not enough, of all.
            refs.truncate(refs.len() - 16);
            let r = rx.recv_timeout(HANG).or_else(|_| {
                refs.clear();
                rx.recv_timeout(HANG)
            });
            match r {
                Ok(r) => {
                    eprintln!(
                        "{what}: completed {:?} after it started, once the user let go",
                        t.elapsed()
                    );
                    r
                }
                Err(_) => {
                    eprintln!("{what}: still not done after the user let go; giving up");
                    std::process::exit(1);
                }
            }
        });
        self.refs = refs;
        self.fill();
        r
    }
}

const AT: usize = 100;

/// Whether the store's copy of page 0 has `mark` at [`AT`].
fn stored(store: &MemStore, mark: &[u8]) -> bool {
    store
        .page(0)
        .is_some_and(|p| &p[AT..AT + mark.len()] == mark)
}

/// munmap, mprotect, msync, writeback, teardown, remove and truncate of a
/// page that a user holds at the refcount limit complete, and do their job:
/// the dirty bit of its PTE reaches the page cache, msync and writeback
/// write the page, truncate zeroes it.
#[test]
fn operations_complete_while_a_user_holds_a_page_at_the_refcount_limit() {
    let _serial = serial();
    let t0 = Instant::now();
    let rig = Rig::new(16, 2);
    let (file, store, machine) = (&rig.file, &rig.store, &rig.machine);
    drop(file.load(0).unwrap());
    let mut user = AtLimit::take(file, 0);
    eprintln!("{} references taken in {:?}", user.refs.len(), t0.elapsed());
    assert_eq!(user.refs.len() as u64, pagemap::MAX_REFS);
    let mut failures = Vec::new();

    // A fresh address space mapping the page shared and writable, its PTE
    // dirty with `mark` (written by CPU 0) and the cached page clean.
    let dirty_mapping = |user: &mut AtLimit<'_>, mark: &[u8]| {
        user.spare(|| {
            assert!(file.writeback(..).errors.is_empty());
            let (space, va) = rig.mapped(1, Prot::RW, MapFlags::SHARED);
            machine.cpu(0).write(&space, va + AT as u64, mark).unwrap();
            assert_ne!(space.pte(va) & pte::DIRTY, 0);
            assert!(file.dirty_indices(..).is_empty(), "dirty only in the PTE");
            (space, va)
        })
    };

    // munmap: the PTE's dirty bit must reach the page cache.
    let (space, va) = dirty_mapping(&mut user, b"munmap");
    user.hold_during("munmap", &mut failures, || space.munmap(va, PAGE))
        .unwrap();
    if file.dirty_indices(..) != [0] {
        failures.push("munmap: the PTE's dirty bit did not reach the page cache".into());
    }
    user.spare(|| drop(space));

    // mprotect(READ): write-protected, its dirty bit in the page cache.
    let (space, va) = dirty_mapping(&mut user, b"mprotect");
    user.hold_during("mprotect(READ)", &mut failures, || {
        space.mprotect(va, PAGE, Prot::READ)
    })
    .unwrap();
    if space.pte(va) & pte::WRITABLE != 0 {
        failures.push("mprotect(READ): the PTE is still writable".into());
    }
    if file.dirty_indices(..) != [0] {
        failures.push("mprotect(READ): the PTE's dirty bit did not reach the page cache".into());
    }
    match machine.cpu(1).write(&space, va, b"x") {
        Err(Fault::Protection { .. }) => {}
        other => failures.push(format!("mprotect(READ): a write after it gave {other:?}")),
    }
    user.spare(|| drop(space));

    // msync: the store has the bytes when it returns.
    let (space, va) = dirty_mapping(&mut user, b"msync");
    let (report, written) = user.hold_during("msync", &mut failures, || {
        let r = space.msync(va, PAGE).unwrap();
        (r, stored(store, b"msync"))
    });
    if !written || report.written != 1 {
        failures.push(format!(
            "msync: the page was not written (store has it: {written}; {report:?})"
        ));
    }
    user.spare(|| drop(space));

    // writeback of the mapped page (what a flusher calls).
    let (space, _) = dirty_mapping(&mut user, b"writeback");
    let (report, written) = user.hold_during("writeback (mapped)", &mut failures, || {
        let r = file.writeback(..);
        (r, stored(store, b"writeback"))
    });
    if !written || report.written != 1 {
        failures.push(format!(
            "writeback (mapped): the page was not written (store has it: {written}; {report:?})"
        ));
    }
    user.spare(|| drop(space));

    // writeback of a page the user dirtied through its own reference.
    user.spare(|| assert!(file.writeback(..).errors.is_empty()));
    user.refs[0].write(AT, b"unmapped").unwrap();
    let (report, written) = user.hold_during("writeback (unmapped)", &mut failures, || {
        let r = file.writeback(..);
        (r, stored(store, b"unmapped"))
    });
    if !written || report.written != 1 {
        failures.push(format!(
            "writeback (unmapped): the page was not written, and nothing says so (store has \
             it: {written}; {report:?})"
        ));
    }

    // teardown (the space dropped): its dirty bit reaches the page cache.
    let (space, _) = dirty_mapping(&mut user, b"teardown");
    user.hold_during("teardown (drop of the space)", &mut failures, move || {
        drop(space)
    });
    if file.dirty_indices(..) != [0] {
        failures.push("teardown: the PTE's dirty bit did not reach the page cache".into());
    }
    user.spare(|| assert!(file.writeback(..).errors.is_empty()));
    if !stored(store, b"teardown") {
        failures.push("teardown: the write through the mapping was lost".into());
    }

    // remove: the held page stays, intact, and the call returns.
    let (space, va) = dirty_mapping(&mut user, b"remove");
    let report = user.hold_during("remove", &mut failures, || file.remove(..));
    if report.referenced != 1 || report.removed != 0 || file.cached_indices(..) != [0] {
        failures.push(format!("remove: {report:?}"));
    }
    let mut b = [0u8; 6];
    machine.cpu(1).read(&space, va + AT as u64, &mut b).unwrap();
    assert_eq!(&b, b"remove");

    // truncate(0) (the mapping still dirty): the page is cut, so its
    // holders must see zeroes, and the mapping faults.
    let frame = user.refs[0].frame();
    let report = user.hold_during("truncate", &mut failures, || file.truncate(0));
    let mut after = [0u8; 6];
    user.refs[0].read(AT, &mut after).unwrap();
    if after != [0u8; 6] {
        failures.push(format!(
            "truncate: the cut page (frame {frame:?}) still holds its old contents {:?} for \
             its holders ({report:?})",
            String::from_utf8_lossy(&after)
        ));
    }
    match machine.cpu(1).read(&space, va, &mut b) {
        Err(Fault::BeyondEof { .. }) => {}
        other => failures.push(format!("truncate: a read after it gave {other:?}")),
    }
    drop(space);
    drop(user);

    eprintln!("refcount-limit operations: {:?}", t0.elapsed());
    assert!(
        failures.is_empty(),
        "with a page at the refcount limit:\n{}",
        failures.join("\n")
    );
}
