//! Truncate against a fault on the page it cuts off.
//!
//! File pages 0 and 1 are mapped; CPU 0 writes page 1 (a fault: shared, or
//! a copy-on-write copy for a private mapping) while the main thread
//! truncates the file at page 1. Truncate moves the end of file under the
//! writer lock, zaps the PTEs of the range, waits for the faults in flight on
//! every page still cached and zaps again; the fault counts itself on the
//! page, checks the end, then installs (`pagemap::MapRef`). Whatever the order: the write either succeeded
//! before the cut or got `BeyondEof`, no PTE beyond the end survives, a
//! later access faults with `BeyondEof`, page 0 is untouched, and every
//! frame is free or cached (no private copy leaked).

use std::sync::Arc;

use loom_tests::{check_frame_accounting, explore, spawn_with, Bound, VmFixture};
use pagemap::PAGE_SIZE;
use vmr::{Fault, MapFlags, Prot};

const PAGE: u64 = PAGE_SIZE as u64;

fn truncate_vs_write_fault(flags: MapFlags) {
    explore(Bound::Env, move || {
        let vm = VmFixture::new(3, 1);
        vm.fx.store_page(0, 0x10);
        vm.fx.store_page(1, 0x11);
        let va = vm.mmap(0, 2, Prot::RW, flags);
        assert_eq!(vm.cpu_read(0, va, 1), [0x10]);
        let vm = Arc::new(vm);
        let cpu = spawn_with(&vm, move |vm| {
            vm.machine.cpu(0).write(&vm.space, va + PAGE, &[0x99])
        });
        let r = vm.fx.map.truncate(1);
        let wrote = cpu.join().unwrap();
        assert!(r.errors.is_empty(), "{r:?}");
        let outcome = match wrote {
            Ok(()) => "wrote",
            Err(Fault::BeyondEof { .. }) => "sigbus",
            Err(e) => panic!("unexpected fault: {e}"),
        };
        assert_eq!(
            vm.space.pte(va + PAGE),
            0,
            "a PTE beyond the end survived ({outcome}, {r:?})\n{}",
            vm.fx.map.dump()
        );
        assert!(matches!(
            vm.machine.cpu(0).read(&vm.space, va + PAGE, &mut [0]),
            Err(Fault::BeyondEof { .. })
        ));
        assert_eq!(vm.cpu_read(0, va, 1), [0x10]);
        check_frame_accounting(&vm.fx, &[]);
        outcome
    })
    .assert_seen(&["wrote", "sigbus"]);
}

#[test]
fn truncate_vs_shared_write_fault() {
    truncate_vs_write_fault(MapFlags::SHARED);
}

#[test]
fn truncate_vs_private_cow_fault() {
    truncate_vs_write_fault(MapFlags::PRIVATE);
}
