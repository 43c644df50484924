//! Removal model 4: a copy-on-write fault against the removal of the page
//! it copies.
//!
//! File page IDX is mapped privately; CPU 0 has read it (a read-only COW
//! entry for the page-cache frame in its PTE and TLB). The main thread
//! removes IDX one pass at a time; CPU 0 reads the pass, reads IDX, writes
//! PRIV over bytes 0..8 (a COW fault: copy into a private frame) and reads
//! 16 bytes back. Every read returns the file's bytes or, after the write,
//! PRIV then the file's bytes: the copy was made from an intact page and no
//! read goes through a stale entry to a freed frame. Afterwards the PTE
//! maps the private copy (never a page-map frame), the shared page is
//! removed or kept intact, and every frame is free, cached or the copy.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use loom::sync::atomic::AtomicUsize;
use loom_tests::{
    check_frame_accounting, check_ptes, explore, page_prefix, pass_of, remove_in_steps, spawn_with,
    Bound, VmFixture,
};
use vmr::{MapFlags, Prot};

const IDX: u64 = 1;
const FILE: u8 = 0x10;
const PRIV: u8 = 0x70;

#[test]
fn cow_fault_vs_removal() {
    explore(Bound::Env, || {
        // The page, the copy, and the page reloaded after its removal.
        let (vm, va) = VmFixture::with_mapped(3, 1, IDX, FILE, Prot::RW, MapFlags::PRIVATE);
        assert_eq!(vm.cpu_read(0, va, 8), [FILE; 8]);
        assert_ne!(vm.space.pte(va) & vmr::pte::COW, 0);
        let frame = vm.fx.map.find(IDX).unwrap().unwrap().frame();
        let vm = Arc::new(vm);
        let phase = Arc::new(AtomicUsize::new(0));
        let cpu = spawn_with(&(vm.clone(), phase.clone()), move |(vm, phase)| {
            let seen = pass_of(phase.load(Ordering::SeqCst));
            let before = vm.cpu_read(0, va, 8);
            assert_eq!(
                before, [FILE; 8],
                "stale read before the COW write ({seen:?})"
            );
            vm.cpu_write(0, va, PRIV);
            let after = vm.cpu_read(0, va, 16);
            assert_eq!(
                after,
                [[PRIV; 8], [FILE; 8]].concat(),
                "COW copy wrong or read through a stale entry ({seen:?})"
            );
            seen
        });
        let r = remove_in_steps(&vm.fx.map, IDX..=IDX, &phase);
        let seen = cpu.join().unwrap();
        assert!(r.errors.is_empty(), "{r:?}");
        assert_eq!(r.removed + r.raced + r.referenced, 1, "{r:?}");
        assert_eq!(r.written, 0, "a private write reached the page");
        let pte = vm.space.pte(va);
        assert_ne!(pte & vmr::pte::PRIVATE, 0, "PTE {pte:#x} is not the copy");
        let private = check_ptes(&vm.fx, &vm.space, va, 1, IDX);
        assert_eq!(private.len(), 1);
        if let Some(p) = vm.fx.map.find(IDX).unwrap() {
            assert_eq!(page_prefix(&p, 8), vec![FILE; 8], "shared page changed");
            assert!(!p.is_dirty());
            if r.removed == 0 {
                assert_eq!(p.frame(), frame, "kept page changed frame");
            }
        }
        check_frame_accounting(&vm.fx, &private);
        assert_eq!(vm.cpu_read(0, va, 16), [[PRIV; 8], [FILE; 8]].concat());
        format!(
            "seen={seen:?} removed={} raced={} cached={}",
            r.removed,
            r.raced,
            vm.fx.map.nr_pages()
        )
    })
    .assert_seen(&[
        // COW before the removal: the page is no longer mapped shared; removed.
        "seen=Start removed=1 raced=0 cached=0",
        // COW fault while the page is marked: its load keeps it.
        "seen=Marked removed=0 raced=1 cached=1",
        // After the removal: the fault reloads the page, then copies it.
        "seen=Done removed=1 raced=0 cached=1",
    ]);
}
