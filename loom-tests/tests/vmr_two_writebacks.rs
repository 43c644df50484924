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
#![cfg(pagemap_loom)]

use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering};
use std::sync::Arc;

use loom::thread;
use loom_tests::{check_quiescent, model_capped, Outcomes, VmFixture};
use pagemap::PAGE_SIZE;
use vmr::{MapFlags, Prot};

const IDX: u64 = 0;
const OLD: u8 = 0x01;
const FIRST: u8 = 0xaa;
const SECOND: u8 = 0xbb;

/// One execution: `Err` for a lost update.
fn run(shootdowns: bool) -> Result<String, String> {
    let vm = VmFixture::new(1, 1);
    vm.fx.store_page(IDX, OLD);
    let va = vm.mmap(IDX, 1, Prot::RW, MapFlags::SHARED);
    vm.machine.cpu(0).write(&vm.space, va, &[FIRST; 8]).unwrap();
    vm.machine.set_shootdowns_enabled(shootdowns);
    let vm = Arc::new(vm);
    let flusher = {
        let vm = vm.clone();
        thread::spawn(move || vm.fx.map.writeback(..))
    };
    let writer = {
        let vm = vm.clone();
        thread::spawn(move || {
            vm.machine
                .cpu(0)
                .write(&vm.space, va, &[SECOND; 8])
                .unwrap()
        })
    };
    let r = vm.space.msync(va, PAGE_SIZE as u64).unwrap();
    let w = flusher.join().unwrap();
    writer.join().unwrap();
    assert!(r.errors.is_empty() && w.errors.is_empty(), "{r:?} {w:?}");
    vm.machine.set_shootdowns_enabled(true);
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
    let outcomes = Outcomes::new();
    let out = outcomes.clone();
    // Three threads: bound 1 keeps it to seconds.
    model_capped(1, move || match run(true) {
        Ok(o) => out.record(o),
        Err(why) => panic!("{why}"),
    });
    outcomes.assert_seen(&[
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
    let bad = Arc::new(StdAtomicUsize::new(0));
    let count = bad.clone();
    model_capped(1, move || {
        if run(false).is_err() {
            count.fetch_add(1, Ordering::Relaxed);
        }
    });
    let n = bad.load(Ordering::Relaxed);
    assert!(n > 0, "without shootdowns a lost update must be reachable");
}
