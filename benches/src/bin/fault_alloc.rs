//! Heap allocations made by `vmr` minor faults, counted by a global allocator.
//!
//! A minor fault whose page-table page already exists should allocate
//! nothing (the fault path takes the address-space read lock, looks the page
//! up lock-free and CASes the PTE). Page-table pages themselves are allocated
//! on the first fault in each 2 MiB region (one 4 KiB table of 512 PTEs,
//! plus upper-level tables for a new 1 GiB / 512 GiB region), and never
//! freed before the address space is dropped: those allocations are
//! counted separately.
//!
//! Only allocations made by the measuring thread(s) while counting is on
//! are counted (a thread-local flag), so thread spawning and the
//! benchmark's own bookkeeping are not.
//!
//! `cargo run --release -p benches --bin fault_alloc` (exit status 1 if a
//! minor fault over existing page tables allocated).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

use benches::ZeroStore;
use pagemap::{FramePool, PageMap, PAGE_SIZE};
use vmr::{AddressSpace, Advice, Machine, MapFlags, MapRequest, Prot};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

#[inline]
fn count(size: usize) {
    if COUNTING.with(Cell::get) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(size as u64, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const PAGE: u64 = PAGE_SIZE as u64;
/// Pages mapped: 4 MiB, two 2 MiB page-table pages.
const PAGES: u64 = 1024;

/// (allocations, bytes) made by `f` on this thread.
fn counted<T>(f: impl FnOnce() -> T) -> (u64, u64, T) {
    let (a0, b0) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    COUNTING.with(|c| c.set(true));
    let t = f();
    COUNTING.with(|c| c.set(false));
    (
        ALLOCS.load(Ordering::Relaxed) - a0,
        BYTES.load(Ordering::Relaxed) - b0,
        t,
    )
}

struct Setup {
    machine: Arc<Machine>,
    file: Arc<PageMap>,
    space: Arc<AddressSpace>,
    va: u64,
}

impl Setup {
    fn new(advice: Advice) -> Self {
        let pool = Arc::new(FramePool::new(PAGES as usize).expect("frame pool"));
        let file = PageMap::new(pool.clone(), Arc::new(ZeroStore));
        for i in 0..PAGES {
            drop(file.load(i).expect("load"));
        }
        let machine = Machine::new(pool, 2);
        let space = AddressSpace::new(machine.clone());
        let va = space.mmap(Self::request(&file, advice)).expect("mmap");
        Self {
            machine,
            file,
            space,
            va,
        }
    }

    fn request(file: &Arc<PageMap>, advice: Advice) -> MapRequest {
        MapRequest {
            advice,
            ..MapRequest::new(file.clone(), PAGES * PAGE, Prot::READ, MapFlags::SHARED)
        }
    }

    /// Reads one byte of each page of `pages` on CPU `cpu`.
    fn touch(&self, cpu: usize, pages: std::ops::Range<u64>) {
        let mut b = [0u8; 1];
        for i in pages {
            self.machine
                .cpu(cpu)
                .read(&self.space, self.va + i * PAGE, &mut b)
                .expect("read");
        }
    }

    fn minor(&self) -> u64 {
        self.space.fault_stats().minor.load(Ordering::Relaxed)
    }

    fn neighbours(&self) -> u64 {
        self.space.fault_stats().neighbours.load(Ordering::Relaxed)
    }

    fn all_ptes_absent(&self) -> bool {
        (0..PAGES).all(|i| self.space.pte(self.va + i * PAGE) == 0)
    }
}

fn main() {
    let mut bad = false;
    let mut report = |what: &str, faults: u64, allocs: u64, bytes: u64, expect_zero: bool| {
        let verdict = if !expect_zero {
            "(page-table pages)"
        } else if allocs == 0 {
            "expected 0: OK"
        } else {
            bad = true;
            "expected 0: UNEXPECTED"
        };
        println!("| {what} | {faults} | {allocs} | {bytes} | {verdict} |");
    };
    println!("Heap allocations during vmr faults ({PAGES} cached pages, shared read-only mapping, Advice::Random unless said)");
    println!();
    println!("| phase | faults | allocations | bytes | verdict |");
    println!("| --- | ---: | ---: | ---: | --- |");

    let s = Setup::new(Advice::Random);
    // Make the epoch machinery's per-thread state exist (first pin).
    drop(s.file.find(0).expect("find"));

    // 1. First touch: PTEs absent and page-table pages missing.
    let m0 = s.minor();
    let (a, b, ()) = counted(|| s.touch(0, 0..PAGES));
    report(
        "first faults (page-table pages allocated on the first fault of each 2 MiB)",
        s.minor() - m0,
        a,
        b,
        false,
    );

    // 2. mprotect(NONE) then READ: shared PTEs cleared, page tables kept.
    s.space
        .mprotect(s.va, PAGES * PAGE, Prot::NONE)
        .expect("mprotect NONE");
    s.space
        .mprotect(s.va, PAGES * PAGE, Prot::READ)
        .expect("mprotect READ");
    assert!(s.all_ptes_absent(), "PROT_NONE cleared the shared PTEs");
    let m0 = s.minor();
    let (a, b, ()) = counted(|| s.touch(0, 0..PAGES));
    let n = s.minor() - m0;
    assert_eq!(n, PAGES, "one minor fault per page");
    report("minor faults after mprotect NONE -> READ", n, a, b, true);

    // 3. munmap + mmap at the same address: PTEs cleared, page tables kept.
    s.space.munmap(s.va, PAGES * PAGE).expect("munmap");
    let va = s
        .space
        .mmap(Setup::request(&s.file, Advice::Random))
        .expect("mmap");
    assert_eq!(va, s.va);
    let m0 = s.minor();
    let (a, b, ()) = counted(|| s.touch(0, 0..PAGES));
    let n = s.minor() - m0;
    assert_eq!(n, PAGES, "one minor fault per page");
    report("minor faults after munmap + mmap", n, a, b, true);

    // 4. The same, two threads on two CPUs faulting different halves.
    s.space.munmap(s.va, PAGES * PAGE).expect("munmap");
    s.space
        .mmap(Setup::request(&s.file, Advice::Random))
        .expect("mmap");
    let m0 = s.minor();
    let (a0, b0) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    let barrier = Barrier::new(2);
    std::thread::scope(|sc| {
        for t in 0..2u64 {
            let (s, barrier) = (&s, &barrier);
            sc.spawn(move || {
                drop(s.file.find(0).expect("find")); // epoch per-thread state
                barrier.wait();
                // Counted on both threads; the totals are read after both end.
                counted(|| s.touch(t as usize, t * PAGES / 2..(t + 1) * PAGES / 2));
            });
        }
    });
    let n = s.minor() - m0;
    assert_eq!(n, PAGES, "one minor fault per page");
    report(
        "minor faults, 2 threads on different halves",
        n,
        ALLOCS.load(Ordering::Relaxed) - a0,
        BYTES.load(Ordering::Relaxed) - b0,
        true,
    );

    // 5. Reads that walk the page table (TLB misses on present PTEs).
    let f0 = s.machine.cpu(0).stats().faults.load(Ordering::Relaxed);
    let (a, b, ()) = counted(|| s.touch(0, 0..PAGES));
    let f = s.machine.cpu(0).stats().faults.load(Ordering::Relaxed) - f0;
    report("reads through page-table walks (no fault)", f, a, b, true);

    // 6. Advice::Normal: fault-around maps up to 7 neighbours per fault.
    let s = Setup::new(Advice::Normal);
    drop(s.file.find(0).expect("find"));
    s.touch(0, 0..PAGES);
    s.space
        .mprotect(s.va, PAGES * PAGE, Prot::NONE)
        .expect("mprotect NONE");
    s.space
        .mprotect(s.va, PAGES * PAGE, Prot::READ)
        .expect("mprotect READ");
    let (m0, n0) = (s.minor(), s.neighbours());
    let (a, b, ()) = counted(|| s.touch(0, 0..PAGES));
    report(
        &format!(
            "minor faults with fault-around (Advice::Normal, {} neighbours mapped)",
            s.neighbours() - n0
        ),
        s.minor() - m0,
        a,
        b,
        true,
    );

    println!();
    if bad {
        println!("FAILED: a minor fault over existing page tables allocated");
        std::process::exit(1);
    }
    println!("target: no allocation on a minor fault (page tables present): met");
}
