//! mprotect(NONE) of a private copy vs truncate zapping it.
//!
//! mprotect keeps a private copy in its entry (not present); truncate's zap
//! clears the entry and frees the copy after its shootdown. munmap used to
//! free a private copy whenever, after its batch, the entry no longer named
//! it, and mprotect went through the same code: a zap between mprotect's
//! update and that test made both free the copy. Now only munmap's own swap
//! takes a copy out; this model checks the copy is freed exactly once.

use loom_tests::{check_frame_accounting, explore, spawn_with, Bound, VmFixture};
use pagemap::PAGE_SIZE;
use vmr::{Fault, Prot};

const PAGE: u64 = PAGE_SIZE as u64;

#[test]
fn mprotect_none_vs_truncate_frees_the_copy_once() {
    explore(Bound::Env, || {
        let (vm, va) = VmFixture::with_private_copies(4, 1, &[None, Some(7)]);
        let protect = spawn_with(&vm, move |vm| {
            vm.space.mprotect(va + PAGE, PAGE, Prot::NONE).unwrap()
        });
        let r = vm.fx.map.truncate(1);
        assert!(r.errors.is_empty(), "{r:?}");
        protect.join().unwrap();
        assert_eq!(vm.space.pte(va + PAGE), 0, "the copy survived truncate");
        vm.space.mprotect(va + PAGE, PAGE, Prot::RW).unwrap();
        assert!(matches!(
            vm.machine.cpu(0).read(&vm.space, va + PAGE, &mut [0]),
            Err(Fault::BeyondEof { .. })
        ));
        check_frame_accounting(&vm.fx, &[]);
        if r.shootdowns > 0 {
            "zapped"
        } else {
            "nothing to zap"
        }
    })
    .assert_seen(&["zapped"]);
}
