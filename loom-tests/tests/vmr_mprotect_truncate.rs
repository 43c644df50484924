//! mprotect(NONE) of a private copy vs truncate zapping it.
//!
//! mprotect keeps a private copy in its entry (not present); truncate's zap
//! clears the entry and frees the copy after its shootdown. munmap used to
//! free a private copy whenever, after its batch, the entry no longer named
//! it, and mprotect went through the same code: a zap between mprotect's
//! update and that test made both free the copy. Now only munmap's own swap
//! takes a copy out; this model checks the copy is freed exactly once.
#![cfg(pagemap_loom)]

use std::sync::Arc;

use loom::thread;
use loom_tests::{check_frame_accounting, model, Outcomes, VmFixture};
use pagemap::PAGE_SIZE;
use vmr::{Fault, MapFlags, Prot};

const PAGE: u64 = PAGE_SIZE as u64;

#[test]
fn mprotect_none_vs_truncate_frees_the_copy_once() {
    let outcomes = Outcomes::new();
    let out = outcomes.clone();
    model(move || {
        let vm = VmFixture::new(4, 1);
        let va = vm.mmap(0, 2, Prot::RW, MapFlags::PRIVATE);
        vm.machine.cpu(0).write(&vm.space, va + PAGE, &[7]).unwrap();
        let vm = Arc::new(vm);
        let protect = {
            let vm = vm.clone();
            thread::spawn(move || vm.space.mprotect(va + PAGE, PAGE, Prot::NONE).unwrap())
        };
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
        out.record(if r.shootdowns > 0 {
            "zapped"
        } else {
            "nothing to zap"
        });
    });
    outcomes.assert_seen(&["zapped"]);
}
