//! An unmap in flight vs truncate: the frame a TLB may still hold is never
//! freed before that TLB is shot down.
//!
//! Page 0 of a shared read-only mapping is cached in CPU 1's TLB. A thread
//! munmaps it: the entry is cleared first, the shootdown comes after. The
//! main thread truncates the file at 0 meanwhile; its zap may find the entry
//! already empty. The page (held by nobody: munmap holds only pages whose
//! entries may be dirty) is removed and its frame freed, and another file's
//! load takes that frame at once. A read through CPU 1 after truncate has
//! returned must fault, never read the other file's page. munmap counts
//! itself in the space's `flush_pending` from before its entry change to
//! after its flush, and a zap that finds the count non-zero shoots the space
//! down itself (Linux's `tlb_flush_pending`); without that, this model reads
//! the other file's bytes.

use std::sync::Arc;

use loom_tests::{explore, spawn_with, Bound, VmFixture};
use pagemap::{MemStore, PageMap};
use vmr::{Fault, MapFlags, Prot};

#[test]
fn truncate_during_munmap_never_frees_a_frame_a_tlb_holds() {
    explore(Bound::Env, || {
        // Exactly one frame: the other file's load must reuse page 0's.
        let vm = VmFixture::new(1, 2);
        vm.fx.store_page(0, 0x10);
        let other = PageMap::new(vm.fx.pool.clone(), Arc::new(MemStore::new()));
        let va = vm.mmap(0, 1, Prot::READ, MapFlags::SHARED);
        let mut b = [0u8];
        vm.machine.cpu(1).read(&vm.space, va, &mut b).unwrap();
        assert_eq!(b, [0x10]);
        let vm = Arc::new(vm);
        let unmapper = spawn_with(&vm, move |vm| {
            vm.space.munmap(va, pagemap::PAGE_SIZE as u64).unwrap()
        });
        let r = vm.fx.map.truncate(0);
        assert!(r.errors.is_empty(), "{r:?}");
        let outcome = match other.load(0) {
            Ok(page) => {
                page.write(0, &[0xee]).unwrap();
                // The frame is reused. A read through CPU 1 now must fault.
                let late = vm.machine.cpu(1).read(&vm.space, va, &mut b);
                assert!(
                    matches!(late, Err(Fault::NoMapping { .. } | Fault::BeyondEof { .. })),
                    "CPU 1 read {b:?} through a stale entry after truncate returned: {late:?}"
                );
                "frame reused"
            }
            // munmap still holds the page? It does not (read-only entry); the
            // page may still be cached only if truncate found it referenced.
            Err(e) => panic!("the only frame was not freed: {e}"),
        };
        unmapper.join().unwrap();
        drop(other);
        outcome
    })
    .assert_seen(&["frame reused"]);
}
