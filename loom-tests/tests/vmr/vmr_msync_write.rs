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

use loom_tests::bytes::{FIRST, OLD, SECOND};
use loom_tests::{assert_reachable, check_quiescent, explore, spawn_with, Bound, VmFixture};
use pagemap::PAGE_SIZE;
use vmr::{MapFlags, Prot};

const IDX: u64 = 0;

/// One execution: `Err` for a lost update.
fn run(racer: usize, shootdowns: bool) -> Result<String, String> {
    let (vm, va) = VmFixture::with_mapped(1, 2, IDX, OLD, Prot::RW, MapFlags::SHARED);
    vm.cpu_write(0, va, FIRST);
    let frame = vm.fx.map.find(IDX).unwrap().unwrap().frame();
    // SAFETY: a test of what a missing shootdown breaks; the stale
    // accesses it allows are what it looks for.
    unsafe { vm.machine.set_shootdowns_enabled(shootdowns) };
    let vm = std::sync::Arc::new(vm);
    let writer = spawn_with(&vm, move |vm| {
        // Observations loom can order against the msync.
        let _ = vm.space.pte(va);
        let _ = vm.fx.pool.flags(frame);
        vm.cpu_write(racer, va, SECOND);
    });
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
    explore(Bound::Env, move || {
        run(racer, true).unwrap_or_else(|why| panic!("{why}"))
    })
    .assert_seen(&[
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
    assert_reachable(Bound::Env, "a lost update without shootdowns", || {
        run(0, false).is_err()
    });
}
