//! Removal model 7: a lookup that takes the page and lets go again while
//! `begin_remove` + `step` runs, at every pass boundary.
//!
//! A page taken while marked is kept (`raced`), one held when the marking
//! pass reached it is kept (`referenced`), one taken and released before
//! the mark, or found missing after the yank, is removed; a held page is
//! never freed and keeps its bytes, and a kept page is intact. The mapped
//! variant has a dirty PTE: a raced removal still hands the dirty bit to
//! the page (or leaves the entry), so the write reaches the store.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use loom::sync::atomic::AtomicUsize;
use loom_tests::{
    check_frame_accounting, check_ptes, check_quiescent, explore, is_free, page_prefix, pass_of,
    remove_in_steps, spawn_with, Bound, Fixture, VmFixture,
};
use pagemap::{Pass, PAGE_SIZE};
use vmr::{MapFlags, Prot};

const IDX: u64 = 2;
const OLD: u8 = 0x3c;
/// Written through the mapping before the removal (mapped variant).
const NEW: u8 = 0xc3;

/// The finder, spawned: reads the phase, looks IDX up, checks the page
/// while held, lets go, and returns (phase seen, hit).
fn spawn_finder(
    fx: &Fixture,
    phase: &Arc<AtomicUsize>,
    byte: u8,
) -> loom::thread::JoinHandle<(Pass, bool)> {
    let shared = (fx.map.clone(), fx.pool.clone(), phase.clone());
    spawn_with(&shared, move |(map, pool, phase)| {
        finder(&map, &pool, &phase, byte)
    })
}

fn finder(
    fx_map: &pagemap::PageMap,
    pool: &pagemap::FramePool,
    phase: &AtomicUsize,
    byte: u8,
) -> (Pass, bool) {
    let seen = pass_of(phase.load(Ordering::SeqCst));
    let hit = match fx_map.find(IDX).expect("find") {
        Some(p) => {
            assert!(!is_free(pool, p.frame()), "a held page's frame is free");
            assert_eq!(page_prefix(&p, 8), vec![byte; 8], "held page not intact");
            assert!(!is_free(pool, p.frame()), "a held page's frame was freed");
            true
        }
        None => false,
    };
    (seen, hit)
}

/// Checks the report against what the finder saw; returns the outcome.
fn settle(
    fx: &Fixture,
    r: &pagemap::RemoveReport,
    frame: pagemap::FrameId,
    seen: Pass,
    hit: bool,
) -> String {
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(r.removed + r.raced + r.referenced, 1, "{r:?}");
    if !hit {
        assert_eq!(r.removed, 1, "find missed, yet the page was kept: {r:?}");
    }
    if r.removed == 1 {
        assert!(is_free(&fx.pool, frame), "removed page's frame not freed");
        assert_eq!(fx.map.nr_pages(), 0);
    } else {
        let p = fx.map.find(IDX).unwrap().expect("kept page");
        assert_eq!(p.frame(), frame, "kept page changed frame");
    }
    format!(
        "seen={seen:?} hit={hit} removed={} raced={} referenced={}",
        r.removed, r.raced, r.referenced
    )
}

/// An unmapped clean page.
#[test]
fn lookup_vs_removal() {
    explore(Bound::Env, || {
        let (fx, frame) = Fixture::with_cached(2, IDX, OLD);
        let phase = Arc::new(AtomicUsize::new(0));
        let t = spawn_finder(&fx, &phase, OLD);
        let r = remove_in_steps(&fx.map, IDX..=IDX, &phase);
        let (seen, hit) = t.join().unwrap();
        let o = settle(&fx, &r, frame, seen, hit);
        check_quiescent(&fx);
        o
    })
    .assert_seen(&[
        // Held across the marking pass.
        "seen=Start hit=true removed=0 raced=0 referenced=1",
        // Taken after the mark: the removal is aborted for the page.
        "seen=Marked hit=true removed=0 raced=1 referenced=0",
        // Taken and released before the mark.
        "seen=Start hit=true removed=1 raced=0 referenced=0",
        // After the yank.
        "seen=Done hit=false removed=1 raced=0 referenced=0",
    ]);
}

/// A mapped page whose PTE is dirty (the page clean in the cache). Capped at
/// preemption bound 1 (27 s at 2; the outcomes are the same).
#[test]
fn lookup_vs_removal_mapped_dirty() {
    explore(Bound::Cap(1), || {
        let (vm, va) = VmFixture::with_mapped(2, 1, IDX, OLD, Prot::RW, MapFlags::SHARED);
        vm.cpu_write(0, va, NEW);
        let frame = vm.fx.map.find(IDX).unwrap().unwrap().frame();
        let phase = Arc::new(AtomicUsize::new(0));
        let t = spawn_finder(&vm.fx, &phase, NEW);
        let r = remove_in_steps(&vm.fx.map, IDX..=IDX, &phase);
        let (seen, hit) = t.join().unwrap();
        let o = settle(&vm.fx, &r, frame, seen, hit);
        check_ptes(&vm.fx, &vm.space, va, 1, IDX);
        check_quiescent(&vm.fx);
        check_frame_accounting(&vm.fx, &[]);
        if r.removed == 1 {
            assert_eq!(r.written, 1, "the dirty bit was written back: {r:?}");
        } else {
            // Kept: the dirty bit is in the page or still in the PTE.
            let pte_dirty = vm.space.pte(va) & vmr::pte::DIRTY != 0;
            let page_dirty = vm.fx.map.dirty_indices(..) == vec![IDX];
            let stored = vm.fx.store.page(IDX).unwrap()[..8] == [NEW; 8];
            assert!(
                pte_dirty || page_dirty || stored,
                "dirty bit dropped by an aborted removal: {r:?}\n{}",
                vm.fx.map.dump()
            );
        }
        vm.space.munmap(va, PAGE_SIZE as u64).unwrap();
        vm.fx.map.writeback(..);
        assert_eq!(vm.fx.store.page(IDX).unwrap()[..8], [NEW; 8], "lost write");
        o
    })
    .assert_seen(&[
        "seen=Start hit=true removed=0 raced=0 referenced=1",
        "seen=Marked hit=true removed=0 raced=1 referenced=0",
        "seen=Revoked hit=true removed=0 raced=1 referenced=0",
        "seen=Reaped hit=true removed=0 raced=1 referenced=0",
        "seen=Done hit=false removed=1 raced=0 referenced=0",
    ]);
}
