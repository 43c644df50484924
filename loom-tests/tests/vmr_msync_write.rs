//! Removal model 2: a CPU writing through a shared mapping while `msync`
//! (the page map's mapped writeback: clean the PTEs, shoot down, write the
//! tagged pages) runs. No lost update: after both, and one more msync, the
//! store holds the last write.
//!
//! CPU 0 wrote FIRST (its TLB entry and the PTE dirty); the racer then
//! writes SECOND over it: through that stale dirty entry (CPU 0: no PTE
//! update at all, so only the shootdown makes it fault and dirty the PTE
//! again), or by walking the table (CPU 1). CPU 0 observes the PTE and the
//! page's flags before writing, which places its write before or after the
//! clean and the write-back's snapshot. The `_no_shootdown` variant must
//! reach a lost update.
#![cfg(pagemap_loom)]

use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering};
use std::sync::Arc;

use loom::thread;
use loom_tests::{check_quiescent, model, Outcomes, VmFixture};
use pagemap::PAGE_SIZE;
use vmr::{MapFlags, Prot};

const IDX: u64 = 0;
const OLD: u8 = 0x01;
const FIRST: u8 = 0xaa;
const SECOND: u8 = 0xbb;

/// One execution: `Err` for a lost update.
fn run(racer: usize, shootdowns: bool) -> Result<String, String> {
    let vm = VmFixture::new(1, 2);
    vm.fx.store_page(IDX, OLD);
    let va = vm.mmap(IDX, 1, Prot::RW, MapFlags::SHARED);
    vm.machine.cpu(0).write(&vm.space, va, &[FIRST; 8]).unwrap();
    let frame = vm.fx.map.find(IDX).unwrap().unwrap().frame();
    vm.machine.set_shootdowns_enabled(shootdowns);
    let vm = Arc::new(vm);
    let writer = {
        let vm = vm.clone();
        thread::spawn(move || {
            // Observations loom can order against the msync.
            let _ = vm.space.pte(va);
            let _ = vm.fx.pool.flags(frame);
            vm.machine
                .cpu(racer)
                .write(&vm.space, va, &[SECOND; 8])
                .unwrap();
        })
    };
    let r = vm.space.msync(va, PAGE_SIZE as u64).unwrap();
    writer.join().unwrap();
    assert!(r.errors.is_empty(), "{r:?}");
    let first = vm.fx.store.page(IDX).unwrap()[..8].to_vec();
    assert_ne!(first, vec![OLD; 8], "msync wrote nothing");
    let pending =
        vm.space.pte(va) & vmr::pte::DIRTY != 0 || !vm.fx.map.dirty_indices(..).is_empty();
    let r2 = vm.space.msync(va, PAGE_SIZE as u64).unwrap();
    assert!(r2.errors.is_empty(), "{r2:?}");
    let stored = vm.fx.store.page(IDX).unwrap()[..8].to_vec();
    let outcome = format!(
        "first_msync_stored_second={} pending={pending}",
        first == vec![SECOND; 8]
    );
    if stored != vec![SECOND; 8] {
        return Err(format!("lost update: store has {stored:x?} ({outcome})"));
    }
    check_quiescent(&vm.fx);
    Ok(outcome)
}

fn with_shootdowns(racer: usize) {
    let outcomes = Outcomes::new();
    let out = outcomes.clone();
    model(move || match run(racer, true) {
        Ok(o) => out.record(o),
        Err(why) => panic!("{why}"),
    });
    outcomes.assert_seen(&[
        // The write before the snapshot: stored by the first msync.
        "first_msync_stored_second=true pending=false",
        // After it: dirty again (PTE), stored by the second.
        "first_msync_stored_second=false pending=true",
    ]);
}

#[test]
fn stale_dirty_entry_write_vs_msync() {
    with_shootdowns(0);
}

#[test]
fn fresh_cpu_write_vs_msync() {
    with_shootdowns(1);
}

#[test]
fn stale_dirty_entry_write_vs_msync_no_shootdown() {
    let bad = Arc::new(StdAtomicUsize::new(0));
    let count = bad.clone();
    model(move || {
        if run(0, false).is_err() {
            count.fetch_add(1, Ordering::Relaxed);
        }
    });
    let n = bad.load(Ordering::Relaxed);
    if std::env::var_os("LOOM_TIMING").is_some() {
        eprintln!("lost updates without shootdowns: {n} executions");
    }
    assert!(n > 0, "without shootdowns a lost update must be reachable");
}
