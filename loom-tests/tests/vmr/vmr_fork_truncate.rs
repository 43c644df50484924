//! fork vs truncate of a file whose private copies fork copies.
//!
//! Pages 0 and 1 of a private mapping hold the space's own copy-on-write
//! copies. A thread forks the space while the main thread truncates the file
//! at page 1. Truncate zaps every mapping's entries of page 1, private copies
//! included, and frees those copies after its shootdown; fork copies private
//! frames into the child. fork copies a file's private pages under the
//! file's invalidate lock (shared), which truncate takes exclusively, so
//! truncate zaps the parent before the copy or both spaces after it: after
//! both, neither space maps page 1, the child's page 0 is the parent's, and
//! no frame leaked or was copied after being freed.

use loom_tests::{check_frame_accounting, cpu_read, explore, spawn_with, Bound, VmFixture};
use pagemap::PAGE_SIZE;
use vmr::Fault;

const PAGE: u64 = PAGE_SIZE as u64;

#[test]
fn fork_vs_truncate_of_private_copies() {
    explore(Bound::Env, || {
        // 2 cached + 2 private copies + 2 child copies.
        let (vm, va) = VmFixture::with_private_copies(6, 2, &[Some(0xa0), Some(0xa1)]);
        let forker = spawn_with(&vm, |vm| vm.space.fork().expect("fork"));
        let r = vm.fx.map.truncate(1);
        assert!(r.errors.is_empty(), "{r:?}");
        let child = forker.join().unwrap();
        for (who, space) in [("parent", &vm.space), ("child", &child)] {
            assert_eq!(
                space.pte(va + PAGE),
                0,
                "the {who} still maps page 1 after truncate"
            );
            assert!(matches!(
                vm.machine.cpu(1).read(space, va + PAGE, &mut [0]),
                Err(Fault::BeyondEof { .. })
            ));
            assert_eq!(cpu_read(vm.machine.cpu(1), space, va, 1).unwrap(), [0xa0]);
        }
        let copies = [vm.space.pte(va), child.pte(va)]
            .map(|p| pagemap::FrameId::new(vmr::pte::frame(p)).expect("private copy"));
        assert_ne!(copies[0], copies[1]);
        check_frame_accounting(&vm.fx, &copies);
        let outcome = if r.shootdowns > 1 {
            "truncate after fork"
        } else {
            "truncate before fork"
        };
        drop(child);
        outcome
    })
    .assert_seen(&["truncate before fork", "truncate after fork"]);
}
