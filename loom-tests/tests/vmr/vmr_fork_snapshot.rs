//! fork vs a CPU writing private pages through its TLB (issue 8, fault 2):
//! the child's pages must be a snapshot of one instant.
//!
//! Two private pages hold the space's own copy-on-write copies, writable in
//! CPU 0's TLB. CPU 0 writes 1 into page A, then 1 into page B; the main
//! thread forks and reads the child's pages through CPU 1. At every instant
//! B <= A, so the child must never see A = 0 and B = 1, and what it saw
//! must not change afterwards.
//!
//! fork shares the private frames with the child (copy-on-write) instead of
//! copying them, so a snapshot is only kept if no write reaches a frame once
//! it is shared: fork write-protects the private entries and shoots the
//! space down before sharing them, and CPU 0's writes after that fault,
//! wait for fork, and copy. Without the shootdown (mutant V14), CPU 0 keeps
//! writing the shared frames through its stale writable entries, and the
//! child sees writes made after its fork (B read as 1 after A was read as
//! 0, or a value that changes under it); without the write-protect (V05),
//! fork's "sharing a writable page" assertion fires.
//!
//! Frame contents are invisible to loom; the steps that order CPU 0's writes
//! against fork are its TLB lock, which fork's shootdown takes, and the PTE
//! words that its faults read and fork's write-protect updates. (With
//! fork's eager copy, CPU 0 allocated and freed a frame between its writes,
//! to order them against the per-page copies' allocations; fork now
//! allocates nothing, and the model explores the same outcomes without it.)

use loom_tests::{cpu_read, explore, spawn_with, Bound, VmFixture};
use pagemap::PAGE_SIZE;

const PAGE: u64 = PAGE_SIZE as u64;

#[test]
fn fork_shares_private_pages_as_of_one_instant() {
    explore(Bound::Env, || {
        // 2 cached + 2 private copies + the parent's 2 copies of them if it
        // writes after the fork. Our own copies, writable and dirty in
        // CPU 0's TLB.
        let (vm, va) = VmFixture::with_private_copies(6, 2, &[Some(0), Some(0)]);
        let writer = spawn_with(&vm, move |vm| {
            let cpu = vm.machine.cpu(0);
            cpu.write(&vm.space, va, &[1]).unwrap();
            cpu.write(&vm.space, va + PAGE, &[1]).unwrap();
        });
        let child = vm.space.fork().expect("fork");
        let cpu1 = vm.machine.cpu(1);
        let a = cpu_read(cpu1, &child, va, 1).unwrap()[0];
        let b = cpu_read(cpu1, &child, va + PAGE, 1).unwrap()[0];
        assert!(
            b <= a,
            "the child's snapshot is torn: A = {a}, B = {b} (B was written after A)"
        );
        writer.join().unwrap();
        // The parent's writes all landed, in the parent only.
        assert_eq!(cpu_read(cpu1, &vm.space, va, 1).unwrap(), [1]);
        assert_eq!(cpu_read(cpu1, &vm.space, va + PAGE, 1).unwrap(), [1]);
        // And the child's snapshot did not change under it.
        assert_eq!(cpu_read(cpu1, &child, va, 1).unwrap(), [a]);
        assert_eq!(cpu_read(cpu1, &child, va + PAGE, 1).unwrap(), [b]);
        drop(child);
        format!("child {a}{b}")
    })
    // Before the writes, after them, and between the two.
    .assert_seen(&["child 00", "child 10", "child 11"]);
}
