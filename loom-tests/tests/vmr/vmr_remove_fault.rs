//! Removal model 1: a CPU write through a shared mapping against the
//! multi-pass removal (`begin_remove` + `step`), at every pass boundary.
//!
//! File page IDX is cached and mapped shared, read-write. CPU 0 has touched
//! it (read: its TLB holds a clean writable entry; or, in the dirty
//! variants, wrote FIRST at bytes 0..8: PTE and entry dirty, page clean in
//! the cache). The main thread removes IDX one pass at a time and publishes
//! each finished pass; the racer (CPU 0, whose TLB entry is stale from the
//! revoke until the shootdown, or CPU 1, which has none and walks the table)
//! reads the pass and then writes SECOND at bytes 8..16.
//!
//! Whatever the interleaving: either the page was removed and the write went
//! through the page before the removal took it (and was written back with
//! it) or through a later fault to a page reloaded from the store (which then
//! holds FIRST too), or the removal was aborted for that page (`raced` /
//! `referenced`) and the page stays, its entry present again or refaultable.
//! Never a lost write, never a PTE or a TLB entry left on a freed frame.
//! The notable window is a fault between pass 2 (entry not present) and
//! pass 4 (entry cleared): the fault makes the entry present again and takes
//! a reference, so the reap leaves the entry and the yank fails.
//!
//! The dirty variants also reach pass 5 (the remover writes the page back,
//! holding it, and re-marks it afterwards). A fault in that window takes the
//! page, maps it and lets go before the re-mark; the re-mark cannot tell,
//! the page's DIRTY flag is clean (the write dirtied the PTE), and the page
//! is yanked and freed with a present PTE on it: see the `#[ignore]`d model
//! and `loom-tests/README.md` (Findings).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use loom::sync::atomic::AtomicUsize;
use loom_tests::{
    check_frame_accounting, check_ptes, check_quiescent, cpu_read, explore, gated_map, is_free,
    model, pass_of, remove_in_steps, spawn_with, Bound, VmFixture,
};
use pagemap::{flags, Pass, PAGE_SIZE};
use vmr::{MapFlags, Prot};

const IDX: u64 = 1;
const OLD: u8 = 0x11;
/// CPU 0's write before the removal (dirty variants), bytes 0..8.
const FIRST: u8 = 0xa1;
/// The racer's write, bytes 8..16.
const SECOND: u8 = 0xb2;

/// What bytes 0..16 of the page must be once the racer has written.
fn expected(dirty: bool) -> Vec<u8> {
    [[if dirty { FIRST } else { OLD }; 8], [SECOND; 8]].concat()
}

/// One execution. `dirty`: CPU 0 wrote FIRST before the removal (else it
/// only read). `racer`: the CPU that writes SECOND during the removal.
fn run(dirty: bool, racer: usize) -> String {
    // Two frames: the page, and the page reloaded after its removal.
    let (vm, va) = VmFixture::with_mapped(2, 2, IDX, OLD, Prot::RW, MapFlags::SHARED);
    if dirty {
        vm.cpu_write(0, va, FIRST);
        assert_ne!(vm.space.pte(va) & vmr::pte::DIRTY, 0);
    } else {
        vm.cpu_read(0, va, 8);
    }
    assert!(vm.fx.map.dirty_indices(..).is_empty());
    let frame = vm.fx.map.find(IDX).unwrap().expect("cached").frame();
    let vm = Arc::new(vm);
    let phase = Arc::new(AtomicUsize::new(Pass::Start as usize));

    let cpu = spawn_with(&(vm.clone(), phase.clone()), move |(vm, phase)| {
        let seen = phase.load(Ordering::SeqCst);
        vm.cpu_write(racer, va + 8, SECOND);
        let after = phase.load(Ordering::SeqCst);
        (pass_of(seen), pass_of(after))
    });
    let r = remove_in_steps(&vm.fx.map, IDX..=IDX, &phase);
    let (seen, after) = cpu.join().unwrap();

    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(
        r.removed + r.raced + r.referenced,
        1,
        "the page is counted once: {r:?}"
    );
    let dump = vm.fx.map.dump();
    // The PTE is gone or maps the frame the map has at IDX now: never a
    // freed frame (nor, were it reused, another page's).
    let pte = vm.space.pte(va);
    let pte_frame = pagemap::FrameId::new(vmr::pte::frame(pte));
    assert!(
        pte_frame.is_none_or(|f| !is_free(&vm.fx.pool, f)),
        "PTE {pte:#x} maps a freed frame after the removal (racer's write began at {seen:?}, \
         ended at {after:?}; {r:?})\n{dump}"
    );
    check_ptes(&vm.fx, &vm.space, va, 1, IDX);
    if r.removed == 1 {
        assert!(
            is_free(&vm.fx.pool, frame) || vm.fx.map.find(IDX).unwrap().is_some(),
            "removed page's frame neither free nor reloaded"
        );
    } else {
        // Aborted: the page is intact, its frame the same.
        let p = vm.fx.map.find(IDX).unwrap().expect("kept page");
        assert_eq!(p.frame(), frame, "kept page changed frame");
        assert_ne!(p.flags() & flags::PAGEMAP, 0);
    }
    check_quiescent(&vm.fx);
    check_frame_accounting(&vm.fx, &[]);
    // Every CPU reads back both writes, whichever frame it reaches.
    for c in 0..2 {
        let got = vm.cpu_read(c, va, 16);
        assert_eq!(
            got,
            expected(dirty),
            "CPU {c} read a lost write (racer began at {seen:?}, ended at {after:?}; {r:?})\n{dump}"
        );
    }
    // And they reach the store.
    vm.space.munmap(va, PAGE_SIZE as u64).unwrap();
    vm.fx.map.writeback(..);
    assert_eq!(
        &vm.fx.store.page(IDX).expect("stored")[..16],
        &expected(dirty)[..],
        "lost write in the store ({r:?})"
    );
    check_quiescent(&vm.fx);
    format!(
        "seen={seen:?} after={after:?} removed={} raced={} referenced={}",
        r.removed, r.raced, r.referenced
    )
}

fn fault_vs_removal(dirty: bool, racer: usize, expected: &[&str]) {
    explore(Bound::Env, move || run(dirty, racer)).assert_seen(expected);
}

/// CPU 1 (no TLB entry) writes a clean page: every write walks the table,
/// and faults while the entry is not present.
#[test]
fn fresh_cpu_write_vs_removal() {
    fault_vs_removal(
        false,
        1,
        &[
            // Done before the removal: the harvested dirty bit is written
            // back and the page removed.
            "seen=Start after=Start removed=1 raced=0 referenced=0",
            // The fault of the notable window: the entry is not present
            // (pass 2) and not yet cleared (pass 4); the fault makes it
            // present again, the reap leaves it, the yank fails.
            "seen=Revoked after=Revoked removed=0 raced=1 referenced=0",
            "seen=ShotDown after=ShotDown removed=0 raced=1 referenced=0",
            // After the reap: a fault on a cleared entry, page still there.
            "seen=Reaped after=Reaped removed=0 raced=1 referenced=0",
            // After the removal: a major fault reloads the page.
            "seen=Done after=Done removed=1 raced=0 referenced=0",
        ],
    );
}

/// CPU 0 (a clean writable entry in its TLB) writes a clean page: before
/// the revoke it sets the PTE's dirty bit; between the revoke and the
/// shootdown its entry is stale (not dirty, so the write re-checks the PTE,
/// finds it not present and faults).
#[test]
fn stale_cpu_write_vs_removal() {
    fault_vs_removal(
        false,
        0,
        &[
            "seen=Start after=Start removed=1 raced=0 referenced=0",
            "seen=Revoked after=Revoked removed=0 raced=1 referenced=0",
            "seen=Reaped after=Reaped removed=0 raced=1 referenced=0",
            "seen=Done after=Done removed=1 raced=0 referenced=0",
        ],
    );
}

/// As `fresh_cpu_write_vs_removal`, on a page CPU 0 had dirtied (PTE dirty,
/// page clean): the reap hands the dirty bit to the page and pass 5 writes
/// it back. (At bounds 2 and 3 loom does not reach the pass-5 window bug
/// that `fault_in_writeback_window_of_removal` forces; it would fail here.)
#[test]
fn fresh_cpu_write_vs_removal_dirty() {
    fault_vs_removal(
        true,
        1,
        &[
            "seen=Start after=Start removed=1 raced=0 referenced=0",
            "seen=Revoked after=Revoked removed=0 raced=1 referenced=0",
            "seen=Done after=Done removed=1 raced=0 referenced=0",
        ],
    );
}

/// As `stale_cpu_write_vs_removal` on a dirtied page: CPU 0's entry is
/// dirty, so between the revoke and the shootdown its write goes through
/// the stale entry into the page without touching the PTE; the shootdown
/// waits for it, and pass 5's snapshot includes it.
#[test]
fn stale_cpu_write_vs_removal_dirty() {
    fault_vs_removal(
        true,
        0,
        &[
            "seen=Start after=Start removed=1 raced=0 referenced=0",
            // Through the stale dirty entry: no fault, the page goes.
            "seen=Revoked after=Revoked removed=1 raced=0 referenced=0",
            "seen=Done after=Done removed=1 raced=0 referenced=0",
        ],
    );
}

/// The pass 5 window forced open: the store's write (the remover's
/// write-back of the dirty page) waits until CPU 1 has faulted the page in
/// and written through it. The removal must then keep the page (the fault
/// took it while it was being removed). It failed before the remover's
/// write-back hold kept REMOVAL (`slot::get_marked`, commit 5dfdca2): the
/// page was removed and its frame freed while CPU 1's PTE (present, dirty)
/// still mapped it.
#[test]
fn fault_in_writeback_window_of_removal() {
    model(|| {
        let (pool, store, map) = gated_map(2);
        store.inner.set_page(IDX, &[OLD; PAGE_SIZE]);
        let machine = vmr::Machine::new(pool.clone(), 2);
        let space = vmr::AddressSpace::new(machine.clone());
        let mut req =
            vmr::MapRequest::new(map.clone(), PAGE_SIZE as u64, Prot::RW, MapFlags::SHARED);
        req.pgoff = IDX;
        req.advice = vmr::Advice::Random;
        let va = space.mmap(req).expect("mmap");
        machine.cpu(0).write(&space, va, &[FIRST; 8]).unwrap();
        let frame = map.find(IDX).unwrap().unwrap().frame();
        store.arm_write();
        let shared = (machine.clone(), space.clone(), store.clone());
        let cpu = spawn_with(&shared, move |(machine, space, store)| {
            store.wait_for_caller();
            machine.cpu(1).write(&space, va + 8, &[SECOND; 8]).unwrap();
            store.open();
        });
        let r = map.remove(IDX..=IDX);
        cpu.join().unwrap();
        let pte = space.pte(va);
        assert_ne!(pte & vmr::pte::PRESENT, 0, "CPU 1's fault mapped the page");
        assert_eq!(vmr::pte::frame(pte), frame.get());
        assert!(
            !is_free(&pool, frame),
            "page freed under a present PTE (CPU 1 faulted it in during the remover's \
             write-back and let go before the re-mark): {r:?}\n{}",
            map.dump()
        );
        assert_eq!((r.removed, r.raced), (0, 1), "{r:?}");
        let got = cpu_read(machine.cpu(0), &space, va, 16).unwrap();
        assert_eq!(got, expected(true));
        space.munmap(va, PAGE_SIZE as u64).unwrap();
        map.writeback(..);
        assert_eq!(&store.inner.page(IDX).unwrap()[..16], &expected(true)[..]);
    });
}
