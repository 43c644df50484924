//! vmr model 1: a CPU faulting a page in through a shared mapping while
//! another thread runs `free_unused` on the file.
//!
//! The mapping is in the file's reverse map before the CPU touches the page,
//! so `free_unused` must leave the page alone (it may mark it and take the
//! mark back, or find it referenced by the fault). The CPU's access must see
//! the store's bytes and its own write; at every moment after the access the
//! PTE maps exactly the frame the page map has at that index (never a frame
//! that is free or another page's).
//!
//! A second model maps, writes and unmaps in the CPU thread, so that
//! `free_unused` can run before the mapping exists, while it exists, and
//! after it is gone (then it writes the harvested dirty page back and frees
//! it): the write is never lost and no PTE outlives its frame.

use std::sync::Arc;

use loom_tests::{
    check_frame_accounting, check_ptes, check_quiescent, explore, spawn_with, Bound, VmFixture,
};
use pagemap::PAGE_SIZE;
use vmr::{MapFlags, Prot};

const IDX: u64 = 1;
const OLD: u8 = 0x11;
const NEW: u8 = 0xee;

/// After the CPU's accesses (concurrently with free_unused): the PTE maps
/// the map's frame for IDX.
fn check_pte_now(vm: &VmFixture, va: u64) {
    let pte = vm.space.pte(va);
    assert_ne!(pte & vmr::pte::PRESENT, 0, "accessed page not present");
    check_ptes(&vm.fx, &vm.space, va, 1, IDX);
}

fn fault_vs_free_unused(precached: bool) {
    let outcomes = explore(Bound::Env, move || {
        let vm = VmFixture::new(2, 1);
        vm.fx.store_page(IDX, OLD);
        if precached {
            vm.fx.cache(IDX);
        }
        let va = vm.mmap(IDX, 1, Prot::RW, MapFlags::SHARED);
        let vm = Arc::new(vm);

        let cpu = spawn_with(&vm, move |vm| {
            // The write faults the page in (major or minor), the read
            // then hits the TLB.
            vm.cpu_write(0, va, NEW);
            check_pte_now(&vm, va);
            let got = vm.cpu_read(0, va, 16);
            let mut want = vec![NEW; 8];
            want.extend_from_slice(&[OLD; 8]);
            assert_eq!(got, want, "the access saw the wrong bytes");
        });
        let r = vm.fx.map.free_unused();
        cpu.join().unwrap();

        assert!(r.errors.is_empty(), "{r:?}");
        assert_eq!(r.freed, 0, "freed a mapped page: {r:?}");
        check_pte_now(&vm, va);
        let pte = vm.space.pte(va);
        assert_ne!(pte & vmr::pte::DIRTY, 0, "the write set DIRTY in the PTE");
        check_quiescent(&vm.fx);
        // The dirty bit reaches the cache at munmap, and the store after a
        // writeback.
        vm.space.munmap(va, PAGE_SIZE as u64).unwrap();
        assert_eq!(vm.fx.map.dirty_indices(..), vec![IDX]);
        vm.fx.map.writeback(..);
        let stored = vm.fx.store.page(IDX).unwrap();
        assert_eq!(&stored[..16], &[[NEW; 8], [OLD; 8]].concat()[..]);
        check_frame_accounting(&vm.fx, &[]);
        format!("mapped={} referenced={}", r.mapped, r.referenced)
    });
    let mut expected = vec!["mapped=1 referenced=0", "mapped=0 referenced=1"];
    if !precached {
        // free_unused ran before the fault inserted the page.
        expected.push("mapped=0 referenced=0");
    }
    outcomes.assert_seen(&expected);
}

/// The page is not cached: the fault drops the address-space lock, loads the
/// page (blocking), and restarts; free_unused may run in between.
#[test]
fn fault_major_vs_free_unused() {
    fault_vs_free_unused(false);
}

/// The page is cached, clean and unreferenced: free_unused would free it but
/// for the mapping; the fault takes it with `map_page`, without blocking.
#[test]
fn fault_minor_vs_free_unused() {
    fault_vs_free_unused(true);
}

/// The CPU thread maps the (cached, clean) page, writes through the mapping
/// and unmaps it, while free_unused runs. Afterwards the write is in the
/// store, or the page is cached and dirty with it; no frame leaked.
#[test]
fn map_write_unmap_vs_free_unused() {
    explore(Bound::Env, || {
        let vm = VmFixture::new(2, 1);
        vm.fx.store_page(IDX, OLD);
        vm.fx.cache(IDX);
        let vm = Arc::new(vm);

        let cpu = spawn_with(&vm, |vm| {
            let va = vm.mmap(IDX, 1, Prot::RW, MapFlags::SHARED);
            vm.cpu_write(0, va, NEW);
            check_pte_now(&vm, va);
            vm.space.munmap(va, PAGE_SIZE as u64).unwrap();
            assert_eq!(vm.space.pte(va), 0);
        });
        let r = vm.fx.map.free_unused();
        cpu.join().unwrap();

        assert!(r.errors.is_empty(), "{r:?}");
        let cached = vm.fx.assert_not_lost(IDX, NEW, &format!("{r:?}")).cached;
        check_quiescent(&vm.fx);
        check_frame_accounting(&vm.fx, &[]);
        format!(
            "freed={} written={} cached={}",
            r.freed,
            r.written,
            cached.is_some()
        )
    })
    .assert_seen(&[
        // free_unused before the mmap: freed clean; the fault reloads it.
        "freed=1 written=0 cached=true",
        // free_unused after the munmap: the harvested dirty page is written
        // back and freed.
        "freed=1 written=1 cached=false",
        // While mapped: kept.
        "freed=0 written=0 cached=true",
    ]);
}
