//! An access that starts after `truncate` has returned must fault with
//! `BeyondEof` (issue 8, fault 1).
//!
//! File pages 0 and 1 are cached and mapped; CPU 0 faults page 1 in (a
//! shared read, a copy-on-write write, or page 0 with page 1 mapped as a
//! fault-around neighbour) while the main thread truncates the file at
//! page 1; as soon as truncate returns, CPU 1 of the same space reads page 1.
//! That read must fault with `BeyondEof`, whatever CPU 0's fault did, and no
//! entry beyond the end may survive.
//!
//! The fault holds the page as a `pagemap::MapRef` (counted in the slot
//! word) from its end-of-file check to its install, and truncate zaps, waits
//! for every cut page's count to drain, and zaps again. With the old install-then-recheck scheme, CPU 1 could read
//! through the entry CPU 0 had installed and not yet taken back; these
//! models fail on it, and on a truncate without its second zap.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use loom_tests::{check_frame_accounting, explore, spawn_with, Bound, VmFixture};
use pagemap::PAGE_SIZE;
use vmr::{Advice, Fault, MapFlags, MapRequest, Prot};

const PAGE: u64 = PAGE_SIZE as u64;

/// How CPU 0 reaches page 1.
#[derive(Clone, Copy)]
enum Via {
    /// A read fault on page 1 of a shared mapping.
    SharedRead,
    /// A write fault on page 1 of a private mapping (a copy-on-write copy).
    PrivateWrite,
    /// A read fault on page 0 that maps page 1 as a neighbour.
    Neighbour,
}

/// `held`: a user holds page 1 throughout, so truncate's removal pass does
/// not write its slot word (the mark is refused without a CAS): the only
/// order between the fault's count and truncate's end store is then their
/// store-buffering pair, which these variants check (the unheld ones pass
/// without it: the mark's CAS on the slot orders them).
fn access_after_truncate(via: Via, held: bool) {
    let outcomes = explore(Bound::Env, move || {
        let vm = VmFixture::new(4, 2);
        vm.fx.store_page(0, 0x10);
        vm.fx.store_page(1, 0x11);
        // Both pages cached: CPU 0's fault takes them without blocking.
        vm.fx.cache(0);
        vm.fx.cache(1);
        let flags = match via {
            Via::PrivateWrite => MapFlags::PRIVATE,
            _ => MapFlags::SHARED,
        };
        let mut req = MapRequest::new(vm.fx.map.clone(), 2 * PAGE, Prot::RW, flags);
        req.advice = match via {
            Via::Neighbour => Advice::Normal,
            _ => Advice::Random,
        };
        let va = vm.space.mmap(req).expect("mmap");
        let vm = Arc::new(vm);
        let user = held.then(|| vm.fx.map.find(1).unwrap().unwrap());
        let cpu0 = spawn_with(&vm, move |vm| {
            let cpu = vm.machine.cpu(0);
            match via {
                Via::SharedRead => cpu.read(&vm.space, va + PAGE, &mut [0]),
                Via::PrivateWrite => cpu.write(&vm.space, va + PAGE, &[0x99]),
                Via::Neighbour => cpu.read(&vm.space, va, &mut [0]),
            }
        });
        let r = vm.fx.map.truncate(1);
        assert!(r.errors.is_empty(), "{r:?}");
        // Starts after truncate returned: must fault.
        let late = vm.machine.cpu(1).read(&vm.space, va + PAGE, &mut [0]);
        assert!(
            matches!(late, Err(Fault::BeyondEof { .. })),
            "CPU 1 accessed page 1 after truncate returned: {late:?}\n{}",
            vm.fx.map.dump()
        );
        let early = cpu0.join().unwrap();
        let outcome = match (via, early) {
            (_, Ok(())) => "before",
            (Via::Neighbour, Err(e)) => panic!("page 0 is inside the file: {e}"),
            (_, Err(Fault::BeyondEof { .. })) => "sigbus",
            (_, Err(e)) => panic!("unexpected fault: {e}"),
        };
        let neighbour = vm.space.fault_stats().neighbours.load(Ordering::Relaxed);
        assert_eq!(
            vm.space.pte(va + PAGE),
            0,
            "an entry beyond the end survived"
        );
        assert_eq!(vm.cpu_read(0, va, 1), [0x10]);
        if let Some(page) = &user {
            let mut b = [0xff];
            page.read(0, &mut b).unwrap();
            assert_eq!(b, [0], "a held page beyond the end is zeroed");
        }
        drop(user);
        check_frame_accounting(&vm.fx, &[]);
        match via {
            Via::Neighbour if neighbour > 0 => "neighbour mapped",
            Via::Neighbour => "neighbour skipped",
            _ => outcome,
        }
    });
    match via {
        // Either the fault or the truncate first.
        Via::SharedRead | Via::PrivateWrite => outcomes.assert_seen(&["before", "sigbus"]),
        Via::Neighbour => outcomes.assert_seen(&["neighbour mapped", "neighbour skipped"]),
    }
}

#[test]
fn truncate_then_access_shared_read_fault() {
    access_after_truncate(Via::SharedRead, false);
}

#[test]
fn truncate_then_access_private_cow_fault() {
    access_after_truncate(Via::PrivateWrite, false);
}

#[test]
fn truncate_then_access_fault_around_neighbour() {
    access_after_truncate(Via::Neighbour, false);
}

#[test]
fn truncate_then_access_held_shared_read_fault() {
    access_after_truncate(Via::SharedRead, true);
}

#[test]
fn truncate_then_access_held_private_cow_fault() {
    access_after_truncate(Via::PrivateWrite, true);
}
