//! Models written to kill mutants of `scripts/mutants.txt` that the other
//! models let survive (issue 9). Each names the mutant it is for; each
//! passes on the real code and fails on its mutant (`scripts/mutants.sh`).
//!
//! * `mprotect_read_vs_first_write` (V11): the hardware's dirty-bit update
//!   on a CPU's first write through a clean entry must be one atomic
//!   read-modify-write of the PTE that re-checks WRITABLE. As a load then a
//!   store it can write back the WRITABLE bit a concurrent mprotect(READ)
//!   just cleared: after mprotect returns, the page is writable again.
//! * `munmap_vs_writeback_vs_stale_writer` (V07): munmap must shoot a page's
//!   translations down before it settles their dirty bits into the page.
//!   Settling first lets a concurrent writeback write the page and clean it
//!   while CPU 0 can still write through its dirty TLB entry: that write
//!   lands in a clean page and is never written.

use std::sync::Arc;

use loom::thread::JoinHandle;
use loom_tests::{explore, page_prefix, spawn_with, Bound, VmFixture};
use pagemap::PAGE_SIZE;
use vmr::{Fault, MapFlags, Prot};

const IDX: u64 = 0;
const OLD: u8 = 0x31;
const NEW: u8 = 0xc4;

/// CPU 0 writes `[NEW; 8]` at `va` on a thread of its own: whether the
/// write completed (it may fail only with a fault `expected` accepts).
fn spawn_writer(vm: &Arc<VmFixture>, va: u64, expected: fn(&Fault) -> bool) -> JoinHandle<bool> {
    spawn_with(vm, move |vm| {
        match vm.machine.cpu(0).write(&vm.space, va, &[NEW; 8]) {
            Ok(()) => true,
            Err(e) if expected(&e) => false,
            Err(e) => panic!("unexpected fault {e:?}"),
        }
    })
}

/// V11. CPU 0 holds a clean, writable TLB entry for a shared page (it read
/// it) and writes it (its first write sets DIRTY in the PTE) while the main
/// thread mprotects the page to READ. Once both are done the PTE is not
/// writable and a write faults `Protection`; the write either completed
/// (and is in the page) or faulted.
#[test]
fn mprotect_read_vs_first_write() {
    let seen = explore(Bound::Env, || {
        let (vm, va) = VmFixture::with_mapped(1, 1, IDX, OLD, Prot::RW, MapFlags::SHARED);
        vm.cpu_read(0, va, 8);
        let vm = Arc::new(vm);
        let writer = spawn_writer(&vm, va, |e| matches!(e, Fault::Protection { .. }));
        vm.space.mprotect(va, PAGE_SIZE as u64, Prot::READ).unwrap();
        let wrote = writer.join().unwrap();
        let pte = vm.space.pte(va);
        assert_eq!(
            pte & vmr::pte::WRITABLE,
            0,
            "PTE {pte:#x} writable after mprotect(READ) returned"
        );
        let again = vm.machine.cpu(0).write(&vm.space, va, &[0xee; 8]);
        assert!(
            matches!(again, Err(Fault::Protection { .. })),
            "a write after mprotect(READ): {again:?}"
        );
        let page = vm.fx.map.find(IDX).unwrap().expect("cached");
        let want = if wrote { NEW } else { OLD };
        assert_eq!(page_prefix(&page, 8), vec![want; 8]);
        drop(page);
        vm.space.munmap(va, PAGE_SIZE as u64).unwrap();
        if wrote {
            "written"
        } else {
            "faulted"
        }
    });
    seen.assert_seen(&["written", "faulted"]);
}

/// V07. CPU 0 wrote a shared page (its TLB entry and the PTE are dirty, the
/// page is clean in the cache) and writes it again while the main thread
/// munmaps it and another thread writes the file back. Once all are done
/// and a last writeback ran, the store has the second write if it
/// completed (else the first). Three threads, but small: bound 2 (about
/// 12k executions; at bound 1 the lost write is not reached).
#[test]
fn munmap_vs_writeback_vs_stale_writer() {
    let seen = explore(Bound::Cap(2), || {
        let (vm, va) = VmFixture::with_mapped(1, 1, IDX, OLD, Prot::RW, MapFlags::SHARED);
        vm.cpu_write(0, va, OLD + 1);
        let vm = Arc::new(vm);
        let writer = spawn_writer(&vm, va, |e| matches!(e, Fault::NoMapping { .. }));
        let flusher = spawn_with(&vm, |vm| vm.fx.map.writeback(..).written);
        vm.space.munmap(va, PAGE_SIZE as u64).unwrap();
        let wrote = writer.join().unwrap();
        let written = flusher.join().unwrap();
        vm.fx.map.writeback(..);
        let stored = vm.fx.store.page(IDX).expect("stored")[..8].to_vec();
        let want = if wrote { NEW } else { OLD + 1 };
        assert_eq!(stored, vec![want; 8], "a completed write was lost");
        format!("wrote={wrote} written={written}")
    });
    seen.assert_seen(&["wrote=true written=1", "wrote=false written=1"]);
}
