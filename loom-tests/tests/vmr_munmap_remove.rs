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
#![cfg(pagemap_loom)]

use std::sync::atomic::Ordering;
use std::sync::Arc;

use loom::sync::atomic::AtomicUsize;
use loom::thread;
use loom_tests::{
    check_frame_accounting, check_quiescent, model, page_prefix, pass_of, Outcomes, VmFixture,
};
use pagemap::{Batching, Pass, PAGE_SIZE};
use vmr::{MapFlags, Prot};

const IDX: u64 = 0;
const OLD: u8 = 0x22;
const NEW: u8 = 0xdd;

#[test]
fn munmap_vs_removal() {
    let outcomes = Outcomes::new();
    let out = outcomes.clone();
    model(move || {
        let vm = VmFixture::new(2, 1);
        vm.fx.store_page(IDX, OLD);
        let va = vm.mmap(IDX, 1, Prot::RW, MapFlags::SHARED);
        vm.machine.cpu(0).write(&vm.space, va, &[NEW; 8]).unwrap();
        assert!(vm.fx.map.dirty_indices(..).is_empty());
        let vm = Arc::new(vm);
        let phase = Arc::new(AtomicUsize::new(0));
        let unmapper = {
            let (vm, phase) = (vm.clone(), phase.clone());
            thread::spawn(move || {
                let seen = pass_of(phase.load(Ordering::SeqCst));
                vm.space.munmap(va, PAGE_SIZE as u64).unwrap();
                seen
            })
        };
        let mut removal = vm.fx.map.begin_remove(IDX..=IDX, Batching::PerSpace);
        loop {
            let pass = removal.step();
            phase.store(pass as usize, Ordering::SeqCst);
            if pass == Pass::Done {
                break;
            }
        }
        let r = removal.finish();
        let seen = unmapper.join().unwrap();
        assert!(r.errors.is_empty(), "{r:?}");
        assert_eq!(r.removed + r.raced + r.referenced, 1, "{r:?}");
        let stored = vm.fx.store.page(IDX).map(|b| b[..8].to_vec());
        let cached = vm
            .fx
            .map
            .find(IDX)
            .unwrap()
            .map(|p| (page_prefix(&p, 8), p.is_dirty()));
        let durable = stored.as_deref() == Some(&[NEW; 8][..]);
        assert!(
            durable || cached == Some((vec![NEW; 8], true)),
            "dirty bit dropped: store {stored:x?}, cache {cached:x?}; {r:?}\n{}",
            vm.fx.map.dump()
        );
        if r.removed == 1 {
            assert!(durable && r.written == 1, "removed unwritten: {r:?}");
            assert!(cached.is_none());
        }
        assert_eq!(vm.space.pte(va), 0);
        assert_eq!(vm.fx.map.nr_mappings(), 0);
        check_quiescent(&vm.fx);
        check_frame_accounting(&vm.fx, &[]);
        out.record(format!(
            "seen={seen:?} removed={} raced={} written={}",
            r.removed, r.raced, r.written
        ));
    });
    outcomes.assert_seen(&[
        // munmap first: the page is dirty, unmapped; the removal writes it.
        "seen=Start removed=1 raced=0 written=1",
        // munmap after the mark: its lookup keeps the page (dirty).
        "seen=Marked removed=0 raced=1 written=0",
        // munmap after the reap: nothing left to take; written and removed.
        "seen=Done removed=1 raced=0 written=1",
    ]);
}
