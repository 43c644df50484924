//! Both sides of a fork write one shared anonymous page at once (the
//! copy-on-write of a private frame: `restore_private` / `copy_shared` in
//! `vmr/src/fault.rs`).
//!
//! The parent writes 1 into an anonymous page, then forks: both spaces'
//! entries name that frame, read-only, and it counts two map references.
//! Each CPU also reads the other space's page, so CPU 0 caches a read-only
//! entry of the child's and CPU 1 one of the parent's: a space's copy must
//! shoot the other CPU's entry down. Then, concurrently, CPU 0 writes 2
//! into the parent (a spawned thread) and CPU 1 writes 3 into the child
//! (the main thread). Each write faults; a fault that sees the count at 2
//! copies the page (`cow`), one that sees 1 (the other side copied and
//! dropped its reference) makes the entry writable in place (`reused`).
//!
//! Afterwards every CPU reads 2 in the parent and 3 in the child, the two
//! entries name different frames, each counting one reference, and once
//! both spaces are gone every frame is back in the pool (a frame freed
//! twice panics in the pool; a leak shows in the free count).
//!
//! Reachable outcomes: one side copies and the other reuses (either way
//! round: the first copier's reference drop comes before the other's count
//! load), or both copy (each loads the count, 2, before either drops its
//! reference; the second drop frees the original frame). Both reusing is
//! impossible: a reuse needs the other reference gone, and only a copy
//! drops it.
//!
//! Mutants: V12 (a write reuses whatever the count) makes both spaces
//! write one frame; V13 (`copy_shared` without its shootdown) leaves the
//! other CPU reading the old frame, which the other space then reuses or
//! which is freed.

use std::sync::atomic::Ordering;

use loom_tests::{cpu_read, explore, spawn_with, Bound, VmFixture};
use pagemap::{FrameId, PAGE_SIZE};
use vmr::{pte, AddressSpace, MapFlags, Prot};

const PAGE: u64 = PAGE_SIZE as u64;

/// What a space's write fault did: `copy` or `reuse` (exactly one fault).
fn path(space: &AddressSpace) -> &'static str {
    let s = space.fault_stats();
    match (
        s.cow.load(Ordering::Relaxed),
        s.reused.load(Ordering::Relaxed),
    ) {
        (1, 0) => "copy",
        (0, 1) => "reuse",
        other => panic!("expected one copy or one reuse, got (cow, reused) = {other:?}"),
    }
}

#[test]
fn parent_and_child_write_a_shared_anonymous_page() {
    explore(Bound::Env, || {
        // The shared frame and, at most, one copy for each space.
        let VmFixture { fx, machine, space } = VmFixture::new(3, 2);
        let pool = fx.pool.clone();
        let parent = space;
        let va = parent
            .mmap_anonymous(None, PAGE, Prot::RW, MapFlags::PRIVATE)
            .expect("mmap");
        machine.cpu(0).write(&parent, va, &[1]).expect("write");
        let child = parent.fork().expect("fork");
        let shared = FrameId::new(pte::frame(parent.pte(va))).expect("frame");
        assert_eq!(pte::frame(child.pte(va)), shared.get(), "fork copied");
        assert_eq!(pool.private_map_count(shared), Some(2));
        // Stale-entry candidates: each CPU caches the other space's entry.
        assert_eq!(cpu_read(machine.cpu(0), &child, va, 1).unwrap(), [1]);
        assert_eq!(cpu_read(machine.cpu(1), &parent, va, 1).unwrap(), [1]);

        let writer = spawn_with(&(machine.clone(), parent.clone()), move |(m, p)| {
            m.cpu(0).write(&p, va, &[2]).expect("parent write");
        });
        machine.cpu(1).write(&child, va, &[3]).expect("child write");
        writer.join().unwrap();

        for cpu in 0..2 {
            let c = machine.cpu(cpu);
            assert_eq!(
                cpu_read(c, &parent, va, 1).unwrap(),
                [2],
                "CPU {cpu} reads the parent"
            );
            assert_eq!(
                cpu_read(c, &child, va, 1).unwrap(),
                [3],
                "CPU {cpu} reads the child"
            );
        }
        let frames =
            [&parent, &child].map(|s| FrameId::new(pte::frame(s.pte(va))).expect("private frame"));
        assert_ne!(frames[0], frames[1], "both spaces map one frame");
        for f in frames {
            assert_eq!(pool.private_map_count(f), Some(1), "{f:?}");
        }
        let outcome = match (path(&parent), path(&child)) {
            ("copy", "copy") => "both copy",
            ("copy", "reuse") => "parent copies, child reuses",
            ("reuse", "copy") => "child copies, parent reuses",
            _ => panic!("both reused a frame the other still held"),
        };
        drop(parent);
        drop(child);
        assert_eq!(
            pool.free_frames(),
            pool.capacity(),
            "a frame leaked ({outcome})"
        );
        outcome
    })
    .assert_seen(&[
        "parent copies, child reuses",
        "child copies, parent reuses",
        "both copy",
    ]);
}
