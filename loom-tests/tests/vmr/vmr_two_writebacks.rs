//! Two writebacks of one mapped page overlapping, while a CPU keeps writing
//! through a stale writable TLB entry (the lost write the soak test found).
//!
//! CPU 0 wrote FIRST: the PTE and its TLB entry are writable and dirty.
//! A flusher thread runs the file's writeback while the main thread msyncs
//! the mapping, and CPU 0 writes SECOND through its entry (no PTE update: it
//! is already dirty). Each writeback cleans the PTE, shoots down, and only
//! then marks the page dirty; marking it before its own shootdown let the
//! other writeback snapshot and clean the page while CPU 0 could still
//! write, and SECOND was recorded nowhere. After both (and one more msync)
//! the store must hold SECOND. The `_no_shootdown` variant must lose it.
//!
//! Limits: with three threads the model runs at preemption bound 1 (~50 s,
//! 120K executions), which does not reach the premature-mark window itself
//! (it needs a switch after the mark, another after the other writeback's
//! snapshot, and the write in between): checked with that mutant, which
//! passes here. The soak test found it, and the deterministic test
//! `pagemap/tests/writeback_mapped.rs` fails on it; this model covers the
//! other interleavings of overlapping writebacks.

use loom_tests::bytes::{FIRST, OLD, SECOND};
use loom_tests::{assert_reachable, check_quiescent, explore, spawn_with, Bound, VmFixture};
use pagemap::PAGE_SIZE;
use vmr::{MapFlags, Prot};

const IDX: u64 = 0;

/// One execution: `Err` for a lost update.
fn run(shootdowns: bool) -> Result<String, String> {
    let (vm, va) = VmFixture::with_mapped(1, 1, IDX, OLD, Prot::RW, MapFlags::SHARED);
    vm.cpu_write(0, va, FIRST);
    // SAFETY: a test of what a missing shootdown breaks; the stale
    // accesses it allows are what it looks for.
    unsafe { vm.machine.set_shootdowns_enabled(shootdowns) };
    let vm = std::sync::Arc::new(vm);
    let flusher = spawn_with(&vm, |vm| vm.fx.map.writeback(..));
    let writer = spawn_with(&vm, move |vm| vm.cpu_write(0, va, SECOND));
    let r = vm.space.msync(va, PAGE_SIZE as u64).unwrap();
    let w = flusher.join().unwrap();
    writer.join().unwrap();
    assert!(r.errors.is_empty() && w.errors.is_empty(), "{r:?} {w:?}");
    // SAFETY: a test of what a missing shootdown breaks; the stale
    // accesses it allows are what it looks for.
    unsafe { vm.machine.set_shootdowns_enabled(true) };
    let r2 = vm.space.msync(va, PAGE_SIZE as u64).unwrap();
    assert!(r2.errors.is_empty(), "{r2:?}");
    let stored = vm.fx.store.page(IDX).unwrap()[..8].to_vec();
    let outcome = format!("written={}+{} then {}", r.written, w.written, r2.written);
    if stored != vec![SECOND; 8] {
        return Err(format!("lost update: store has {stored:x?} ({outcome})"));
    }
    check_quiescent(&vm.fx);
    Ok(outcome)
}

#[test]
fn two_writebacks_vs_stale_writer() {
    // Three threads: bound 1 keeps it to seconds.
    explore(Bound::Cap(1), || {
        run(true).unwrap_or_else(|why| panic!("{why}"))
    })
    .assert_seen(&[
        // One write-back took FIRST and SECOND together.
        "written=1+0 then 0",
        // Both wrote (the second after the write re-dirtied the page).
        "written=1+1 then 0",
        // The write landed after both snapshots: the last msync wrote it.
        "written=1+0 then 1",
        "written=0+1 then 1",
    ]);
}

#[test]
fn two_writebacks_vs_stale_writer_no_shootdown() {
    assert_reachable(Bound::Cap(1), "a lost update without shootdowns", || {
        run(false).is_err()
    });
}
