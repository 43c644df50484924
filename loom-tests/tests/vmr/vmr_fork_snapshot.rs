//! fork vs a CPU writing private pages through its TLB (issue 8, fault 2):
//! the child's copy must be a snapshot of one instant.
//!
//! Two private pages hold the space's own copy-on-write copies, writable in
//! CPU 0's TLB. CPU 0 writes 1 into page A, then 1 into page B; the main
//! thread forks and reads the child's copies through CPU 1. At every instant
//! B <= A, so the child must never see A = 0 and B = 1.
//!
//! Under loom a page copy is one step (frame contents are std atomics), so
//! the torn single-page copy of the bug report is modelled with two pages,
//! which fork copies in two steps. Frame contents are invisible to loom, so
//! CPU 0's thread allocates and frees a frame between its two writes: a
//! loom-visible step that fork's per-page steps (each copy allocates its
//! frame) are ordered against, which lets loom put the writes between the
//! two copies. fork write-protects the private entries
//! and shoots the space down before copying, so CPU 0's writes after that
//! fault and wait for fork; without that step this model finds the torn copy.

use loom_tests::{cpu_read, explore, spawn_with, Bound, VmFixture};
use pagemap::PAGE_SIZE;

const PAGE: u64 = PAGE_SIZE as u64;

#[test]
fn fork_copies_private_pages_as_of_one_instant() {
    explore(Bound::Env, || {
        // 2 cached + 2 private copies + 2 child copies + the writer's.
        // Our own copies, writable and dirty in CPU 0's TLB.
        let (vm, va) = VmFixture::with_private_copies(7, 2, &[Some(0), Some(0)]);
        let writer = spawn_with(&vm, move |vm| {
            let cpu = vm.machine.cpu(0);
            cpu.write(&vm.space, va, &[1]).unwrap();
            // The loom-visible step between the writes (see above).
            drop(vm.fx.pool.alloc_private().unwrap());
            cpu.write(&vm.space, va + PAGE, &[1]).unwrap();
        });
        let child = vm.space.fork().expect("fork");
        let cpu1 = vm.machine.cpu(1);
        let a = cpu_read(cpu1, &child, va, 1).unwrap()[0];
        let b = cpu_read(cpu1, &child, va + PAGE, 1).unwrap()[0];
        assert!(
            b <= a,
            "the child's copy is torn: A = {a}, B = {b} (B was written after A)"
        );
        writer.join().unwrap();
        // The parent's writes all landed, in the parent only.
        assert_eq!(cpu_read(cpu1, &vm.space, va, 1).unwrap(), [1]);
        assert_eq!(cpu_read(cpu1, &vm.space, va + PAGE, 1).unwrap(), [1]);
        assert_eq!(cpu_read(cpu1, &child, va, 1).unwrap(), [a]);
        drop(child);
        format!("child {a}{b}")
    })
    // Before the writes, after them, and between the two.
    .assert_seen(&["child 00", "child 10", "child 11"]);
}
