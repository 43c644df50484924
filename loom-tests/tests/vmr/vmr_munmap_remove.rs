//! Removal model 3: munmap against the multi-pass removal.
//!
//! A CPU wrote through a shared writable mapping: the PTE is dirty, the page
//! clean in the cache. munmap takes the entry (holding the page while it
//! moves the dirty bit into it); the removal revokes, shoots down and reaps
//! the same entry. Whoever takes the dirty bit, it must reach the cache or
//! the store: never munmap's "dirty bit taken without holding the page"
//! panic, never a lost write, never a dirty page removed without being
//! written.
//!
//! munmap may run anywhere, inside the revoke and reap passes' lazy MMU
//! sections included: `vmr::lazy` keeps its state in a loom thread-local
//! under `cfg(pagemap_loom)` (it used a std one, which loom's threads, coroutines on
//! one OS thread, shared, so this model had to serialise the sections).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use loom::sync::atomic::AtomicUsize;
use loom_tests::{
    check_frame_accounting, check_quiescent, explore, pass_of, remove_in_steps, spawn_with, Bound,
    Fate, VmFixture,
};
use pagemap::PAGE_SIZE;
use vmr::{MapFlags, Prot};

const IDX: u64 = 0;
const OLD: u8 = 0x22;
const NEW: u8 = 0xdd;

#[test]
fn munmap_vs_removal() {
    explore(Bound::Env, || {
        let (vm, va) = VmFixture::with_mapped(2, 1, IDX, OLD, Prot::RW, MapFlags::SHARED);
        vm.cpu_write(0, va, NEW);
        assert!(vm.fx.map.dirty_indices(..).is_empty());
        let vm = Arc::new(vm);
        let phase = Arc::new(AtomicUsize::new(0));
        let unmapper = spawn_with(&(vm.clone(), phase.clone()), move |(vm, phase)| {
            let seen = pass_of(phase.load(Ordering::SeqCst));
            vm.space.munmap(va, PAGE_SIZE as u64).unwrap();
            seen
        });
        let r = remove_in_steps(&vm.fx.map, IDX..=IDX, &phase);
        let seen = unmapper.join().unwrap();
        assert!(r.errors.is_empty(), "{r:?}");
        assert_eq!(r.removed + r.raced + r.referenced, 1, "{r:?}");
        let Fate {
            cached, durable, ..
        } = vm.fx.assert_not_lost(IDX, NEW, &format!("{r:?}"));
        if r.removed == 1 {
            assert!(durable && r.written == 1, "removed unwritten: {r:?}");
            assert!(cached.is_none());
        }
        assert_eq!(vm.space.pte(va), 0);
        assert_eq!(vm.fx.map.nr_mappings(), 0);
        check_quiescent(&vm.fx);
        check_frame_accounting(&vm.fx, &[]);
        format!(
            "seen={seen:?} removed={} raced={} written={}",
            r.removed, r.raced, r.written
        )
    })
    .assert_seen(&[
        // munmap first: the page is dirty, unmapped; the removal writes it.
        "seen=Start removed=1 raced=0 written=1",
        // munmap after the mark: its lookup keeps the page (dirty).
        "seen=Marked removed=0 raced=1 written=0",
        // munmap after the reap: nothing left to take; written and removed.
        "seen=Done removed=1 raced=0 written=1",
    ]);
}
