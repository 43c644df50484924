//! vmr model 2: munmap's dirty-bit harvest against `free_unused` and
//! writeback of the file.
//!
//! A CPU wrote through a shared writable mapping: the PTE is DIRTY, the page
//! is clean in the cache (the page map knows nothing of the write). munmap
//! clears the PTE, shoots it down, moves the dirty bit into the page
//! (`mark_dirty`) and only then takes the region out of the reverse map. A
//! concurrent `free_unused` must therefore either see the region (and keep
//! the page) or see the page dirty (and write it back before freeing it):
//! the written bytes are never dropped with the frame.

use std::sync::Arc;

use loom_tests::{
    check_frame_accounting, check_quiescent, explore, spawn_with, Bound, Fate, VmFixture,
};
use pagemap::PAGE_SIZE;
use vmr::{MapFlags, Prot};

const IDX: u64 = 0;
const OLD: u8 = 0x22;
const NEW: u8 = 0xdd;

/// A file page mapped shared and written by CPU 0: PTE dirty, page clean.
/// The munmap of it is already spawned.
fn dirty_pte_setup() -> (Arc<VmFixture>, loom::thread::JoinHandle<()>) {
    let (vm, va) = VmFixture::with_mapped(2, 1, IDX, OLD, Prot::RW, MapFlags::SHARED);
    vm.cpu_write(0, va, NEW);
    let pte = vm.space.pte(va);
    assert_ne!(pte & vmr::pte::DIRTY, 0);
    assert!(
        vm.fx.map.dirty_indices(..).is_empty(),
        "page clean in the cache"
    );
    let vm = Arc::new(vm);
    let unmapper = spawn_with(&vm, move |vm| {
        vm.space.munmap(va, PAGE_SIZE as u64).unwrap()
    });
    (vm, unmapper)
}

/// After everything: the store has NEW, or the page is cached, dirty, with
/// NEW. Returns (stored NEW, cached).
fn check_not_dropped(vm: &VmFixture, what: &str) -> (bool, bool) {
    let Fate {
        cached, durable, ..
    } = vm.fx.assert_not_lost(IDX, NEW, what);
    if let Some((bytes, _)) = &cached {
        assert_eq!(bytes, &vec![NEW; 8], "cache lost the write");
    }
    check_quiescent(&vm.fx);
    check_frame_accounting(&vm.fx, &[]);
    assert_eq!(vm.fx.map.nr_mappings(), 0);
    (durable, cached.is_some())
}

/// One execution: the munmap (spawned by `dirty_pte_setup`) against
/// `flush` on the main thread, which returns whether its reports are free
/// of errors, the reports (for messages) and its part of the outcome.
fn munmap_vs(flush: impl Fn(&pagemap::PageMap) -> (bool, String, String)) -> String {
    let (vm, unmapper) = dirty_pte_setup();
    let (ok, reports, outcome) = flush(&vm.fx.map);
    unmapper.join().unwrap();
    assert!(ok, "{reports}");
    let (durable, cached) = check_not_dropped(&vm, &reports);
    format!("{outcome} durable={durable} cached={cached}")
}

/// munmap against free_unused.
#[test]
fn munmap_vs_free_unused() {
    explore(Bound::Env, || {
        munmap_vs(|map| {
            let r = map.free_unused();
            let outcome = format!(
                "freed={} written={} mapped={}",
                r.freed, r.written, r.mapped
            );
            (r.errors.is_empty(), format!("{r:?}"), outcome)
        })
    })
    .assert_seen(&[
        // free_unused saw the region: page kept, dirty.
        "freed=0 written=0 mapped=1 durable=false cached=true",
        // free_unused after munmap: written back, then freed.
        "freed=1 written=1 mapped=0 durable=true cached=false",
    ]);
}

/// munmap against a flusher that writes the file back and then frees its
/// unused pages.
#[test]
fn munmap_vs_writeback_then_free_unused() {
    explore(Bound::Env, || {
        munmap_vs(|map| {
            let w = map.writeback(..);
            let r = map.free_unused();
            let ok = w.errors.is_empty() && r.errors.is_empty();
            let outcome = format!("wb={} freed={} written={}", w.written, r.freed, r.written);
            (ok, format!("{w:?} {r:?}"), outcome)
        })
    })
    .assert_seen(&[
        // munmap took the dirty bit (holding the page) before writeback's
        // clean looked and marked the page dirty only after both flusher
        // steps (free_unused skipped it: still mapped): kept, dirty.
        "wb=0 freed=0 written=0 durable=false cached=true",
        // writeback's clean harvested the bit itself and wrote the page
        // while it was still mapped; free_unused skipped it (mapped).
        "wb=1 freed=0 written=0 durable=true cached=true",
        // writeback wrote it; munmap was done; free_unused freed it clean.
        "wb=1 freed=1 written=0 durable=true cached=false",
        // (munmap's harvest between the two steps, free_unused writing it,
        // needs a third preemption since writeback harvests PTEs itself.)
    ]);
}

/// Three threads: munmap, writeback, free_unused (bound capped at 1: at 2
/// it takes minutes).
#[test]
fn munmap_vs_writeback_vs_free_unused() {
    explore(Bound::Cap(1), || {
        let (vm, unmapper) = dirty_pte_setup();
        let flusher = spawn_with(&vm, |vm| vm.fx.map.writeback(..));
        let r = vm.fx.map.free_unused();
        unmapper.join().unwrap();
        let w = flusher.join().unwrap();
        assert!(w.errors.is_empty() && r.errors.is_empty(), "{w:?} {r:?}");
        let (durable, cached) = check_not_dropped(&vm, &format!("{w:?} {r:?}"));
        format!("durable={durable} cached={cached}")
    })
    .assert_seen(&[
        "durable=false cached=true",
        "durable=true cached=false",
        "durable=true cached=true",
    ]);
}
