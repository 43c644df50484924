//! fork vs truncate of a file whose private copies fork shares.
//!
//! Pages 0 and 1 of a private mapping hold the space's own copy-on-write
//! copies. A thread forks the space while the main thread truncates the file
//! at page 1. Truncate zaps every mapping's entries of page 1, private copies
//! included, and drops their references to those frames after its
//! shootdown; fork shares each private frame with the child (one reference
//! more, `PrivateFrame::share_raw`, which asserts the frame is not free).
//! fork shares a file's private pages under the file's invalidate lock
//! (shared), which truncate takes exclusively, so truncate zaps the parent
//! before the sharing or both spaces after it (the frame is then freed by
//! the second reference dropped): after both, neither space maps page 1,
//! both spaces' page 0 is the one shared frame (two references), and no
//! frame leaked, was freed twice or was shared after being freed.

use loom_tests::{check_frame_accounting, cpu_read, explore, spawn_with, Bound, VmFixture};
use pagemap::PAGE_SIZE;
use vmr::Fault;

const PAGE: u64 = PAGE_SIZE as u64;

#[test]
fn fork_vs_truncate_of_private_copies() {
    explore(Bound::Env, || {
        // 2 cached + 2 private copies (the child shares them).
        let (vm, va) = VmFixture::with_private_copies(4, 2, &[Some(0xa0), Some(0xa1)]);
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
        // Copy-on-write: one frame, a reference from each space.
        assert_eq!(
            copies[0], copies[1],
            "fork copied page 0 instead of sharing it"
        );
        assert_eq!(vm.fx.pool.private_map_count(copies[0]), Some(2));
        check_frame_accounting(&vm.fx, &copies[..1]);
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
