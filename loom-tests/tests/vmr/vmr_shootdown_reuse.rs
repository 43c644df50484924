//! vmr model 4: TLB shootdown against frame reuse.
//!
//! CPU 0 holds a TLB entry for a private (copy-on-write) frame F of space A.
//! The main thread munmaps A's page (PTE cleared, shootdown, then F goes
//! back to the pool) and reuses F at once: either a write by CPU 1 through
//! a private mapping of space B copies the file page into a new frame, or a
//! page-cache load of another file page takes one; it must be F (the pool
//! has no other). Meanwhile CPU 0 reads (or writes)
//! A's page. It must either complete before the munmap (and see A's private
//! bytes) or fault with `NoMapping`; it never reads F's new contents nor
//! writes into them.
//!
//! A std atomic would not make loom explore CPU 0's access at different
//! points of the main thread (frame contents are std atomics, invisible to
//! loom; with shootdowns off, CPU 0 shares no lock with the main thread), so
//! the main thread publishes its progress in a loom atomic which CPU 0 reads
//! just before its access: the access is explored before the munmap, after
//! it, and after the reuse.
//!
//! The `*_no_shootdown` models run the same race with shootdowns disabled
//! and assert that the bad outcome (a stale access to the reused frame) is
//! reached, so the model demonstrably can fail.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use loom::sync::atomic::AtomicUsize;
use loom_tests::{
    assert_reachable, check_frame_accounting, check_ptes, cpu_read, explore, page_prefix,
    spawn_with, Bound, VmFixture,
};
use pagemap::{FrameId, PAGE_SIZE};
use vmr::{Fault, MapFlags, Prot};

const IDX: u64 = 0;
/// The file page.
const FILE: u8 = 0x10;
/// A's private copy (written in setup).
const PRIV: u8 = 0x77;
/// B's private copy, in the reused frame.
const REUSED: u8 = 0x99;
/// CPU 0's racing write (write variant).
const STALE: u8 = 0x55;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Write,
}

/// Who takes the freed frame.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reuse {
    /// A copy-on-write fault of space B (CPU 1 writes REUSED through it).
    Cow,
    /// A page-cache load of file page `OTHER` (REUSED in the store).
    Load,
}

/// The file page the `Load` reuse reads.
const OTHER: u64 = 1;

/// One execution. Returns the outcome, or `Err(why)` for a stale access.
fn run(op: Op, reuse: Reuse, shootdowns: bool) -> Result<String, String> {
    run_on(op, reuse, shootdowns, 0)
}

/// `setup_cpu`: the CPU that makes A's private copy. 0: CPU 0 races with a
/// TLB entry for F; 1: CPU 0 never ran in space A (no entry, not in A's CPU
/// mask), so its access walks the page table and announces itself while the
/// munmap reads the mask (the store-buffer race `note_cpu` / `shootdown`
/// settle with SeqCst).
fn run_on(op: Op, reuse: Reuse, shootdowns: bool, setup_cpu: usize) -> Result<String, String> {
    // Two frames: the file page and A's private copy.
    let (vm, va) = VmFixture::with_mapped(2, 2, IDX, FILE, Prot::RW, MapFlags::PRIVATE);
    vm.fx.store_page(OTHER, REUSED);
    let len = PAGE_SIZE as u64;
    vm.cpu_write(setup_cpu, va, PRIV);
    let pte = vm.space.pte(va);
    assert_ne!(pte & vmr::pte::PRIVATE, 0);
    let f = FrameId::new(vmr::pte::frame(pte)).unwrap();
    assert_eq!(vm.fx.pool.free_frames(), 0);
    let space_b = vm.new_space();
    let vb = vm.mmap_in(&space_b, IDX, 1, Prot::RW, MapFlags::PRIVATE);
    // SAFETY: a test of what a missing shootdown breaks; the stale
    // accesses it allows are what it looks for.
    unsafe { vm.machine.set_shootdowns_enabled(shootdowns) };
    let vm = Arc::new(vm);
    // 0: nothing done, 1: A's page unmapped, 2: F reused by B.
    let phase = Arc::new(AtomicUsize::new(0));

    let cpu0 = spawn_with(&(vm.clone(), phase.clone()), move |(vm, phase)| {
        let seen = phase.load(Ordering::SeqCst);
        let c = vm.machine.cpu(0);
        let r = match op {
            Op::Read => cpu_read(c, &vm.space, va, 8),
            Op::Write => c.write(&vm.space, va, &[STALE; 8]).map(|()| vec![]),
        };
        (seen, r)
    });
    vm.space.munmap(va, len).unwrap();
    phase.store(1, Ordering::SeqCst);
    let reused = match reuse {
        Reuse::Cow => {
            vm.machine
                .cpu(1)
                .write(&space_b, vb, &[REUSED; 8])
                .expect("B's COW write (reuses F)");
            FrameId::new(vmr::pte::frame(space_b.pte(vb))).unwrap()
        }
        Reuse::Load => vm.fx.cache(OTHER),
    };
    assert_eq!(reused, f, "the reuse must take A's freed frame");
    phase.store(2, Ordering::SeqCst);
    let (seen, r) = cpu0.join().unwrap();

    // The new owner of F holds its bytes; the file page is untouched.
    let b_bytes = match reuse {
        Reuse::Cow => cpu_read(vm.machine.cpu(1), &space_b, vb, 8).unwrap(),
        Reuse::Load => {
            let p = vm.fx.map.find(OTHER).unwrap().expect("cached");
            page_prefix(&p, 8)
        }
    };
    let file_page = vm.fx.map.find(IDX).unwrap().expect("cached");
    let file_bytes = page_prefix(&file_page, 8);
    drop(file_page);
    assert_eq!(
        file_bytes,
        vec![FILE; 8],
        "a private write reached the file page"
    );
    let private = check_ptes(&vm.fx, &space_b, vb, 1, IDX);
    assert_eq!(private.is_empty(), reuse == Reuse::Load);
    assert_eq!(vm.space.pte(va), 0);
    check_frame_accounting(&vm.fx, &private);

    let outcome = match &r {
        Ok(_) => "ok",
        Err(Fault::NoMapping { .. }) => "nomapping",
        Err(e) => panic!("unexpected fault {e:?}"),
    };
    let outcome = format!("seen={seen} {outcome}");
    if b_bytes != vec![REUSED; 8] {
        return Err(format!(
            "F's new owner was overwritten: {b_bytes:x?} ({outcome})"
        ));
    }
    match r {
        Ok(bytes) if op == Op::Read && bytes != vec![PRIV; 8] => {
            Err(format!("read {bytes:x?} through a stale entry ({outcome})"))
        }
        Ok(_) if seen >= 1 => Err(format!(
            "access after munmap returned succeeded ({outcome})"
        )),
        _ => Ok(outcome),
    }
}

/// Runs `run_on` with shootdowns; panics on a stale access.
fn explore_reuse(op: Op, reuse: Reuse, setup_cpu: usize) -> loom_tests::Outcomes {
    explore(Bound::Env, move || {
        run_on(op, reuse, true, setup_cpu).unwrap_or_else(|why| panic!("stale TLB access: {why}"))
    })
}

fn with_shootdowns(op: Op, reuse: Reuse) {
    explore_reuse(op, reuse, 0).assert_seen(&[
        // Before the munmap.
        "seen=0 ok",
        // Started before, shot down before it used the entry.
        "seen=0 nomapping",
        // After the munmap, and after the reuse.
        "seen=1 nomapping",
        "seen=2 nomapping",
    ]);
}

fn without_shootdowns(op: Op, reuse: Reuse) {
    assert_reachable(Bound::Env, "a stale access without shootdowns", move || {
        run(op, reuse, false).is_err()
    });
}

#[test]
fn read_vs_munmap_cow_reuse() {
    with_shootdowns(Op::Read, Reuse::Cow);
}

#[test]
fn write_vs_munmap_cow_reuse() {
    with_shootdowns(Op::Write, Reuse::Cow);
}

#[test]
fn read_vs_munmap_load_reuse() {
    with_shootdowns(Op::Read, Reuse::Load);
}

#[test]
fn write_vs_munmap_load_reuse() {
    with_shootdowns(Op::Write, Reuse::Load);
}

/// CPU 0 has no entry and is not in A's CPU mask: its page-table walk races
/// with the munmap's PTE change and mask read.
#[test]
fn fresh_cpu_read_vs_munmap_cow_reuse() {
    explore_reuse(Op::Read, Reuse::Cow, 1).assert_seen(&[
        "seen=0 ok",
        "seen=0 nomapping",
        "seen=2 nomapping",
    ]);
}

#[test]
fn read_vs_munmap_cow_reuse_no_shootdown() {
    without_shootdowns(Op::Read, Reuse::Cow);
}

#[test]
fn write_vs_munmap_cow_reuse_no_shootdown() {
    without_shootdowns(Op::Write, Reuse::Cow);
}

#[test]
fn write_vs_munmap_load_reuse_no_shootdown() {
    without_shootdowns(Op::Write, Reuse::Load);
}
