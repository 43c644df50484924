//! Removal model 6: the removal frees a frame only after its shootdown.
//!
//! File page IDX is mapped shared; CPU 0 has read it (its TLB caches the
//! page's frame F). The main thread removes IDX one pass at a time, then at
//! once loads file page OTHER, which takes F (the pool hands out the frame
//! freed last), and publishes its progress. CPU 0 reads the progress, then
//! reads (or writes) IDX through the mapping. With shootdowns, the access
//! sees IDX's bytes (through F before the removal took it, or through a
//! fault to a reloaded page after) and OTHER's page keeps its bytes. With
//! shootdowns disabled the `_no_shootdown` variants must reach the bad
//! outcome (CPU 0 reads OTHER's bytes, or writes into OTHER's page, through
//! its stale entry for F), so the model demonstrably can fail.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use loom::sync::atomic::AtomicUsize;
use loom_tests::{
    assert_reachable, check_frame_accounting, check_ptes, check_quiescent, explore, page_prefix,
    remove_in_steps, spawn_with, Bound, VmFixture,
};
use pagemap::{Pass, PAGE_SIZE};
use vmr::{MapFlags, Prot};

const IDX: u64 = 0;
const OTHER: u64 = 1;
const FILE: u8 = 0x10;
const REUSED: u8 = 0x99;
/// CPU 0's racing write (bytes 0..8).
const STALE: u8 = 0x55;
/// Progress past `Pass::Done`: OTHER loaded (into F, if it was freed).
const REUSED_PHASE: usize = Pass::Done as usize + 1;

/// One execution; `Err` for a stale access.
fn run(write: bool, shootdowns: bool) -> Result<String, String> {
    let (vm, va) = VmFixture::with_mapped(2, 1, IDX, FILE, Prot::RW, MapFlags::SHARED);
    vm.fx.store_page(OTHER, REUSED);
    assert_eq!(vm.cpu_read(0, va, 8), [FILE; 8]);
    let f = vm.fx.map.find(IDX).unwrap().unwrap().frame();
    // SAFETY: a test of what a missing shootdown breaks; the stale
    // accesses it allows are what it looks for.
    unsafe { vm.machine.set_shootdowns_enabled(shootdowns) };
    let vm = Arc::new(vm);
    let phase = Arc::new(AtomicUsize::new(0));

    let cpu0 = spawn_with(&(vm.clone(), phase.clone()), move |(vm, phase)| {
        let seen = phase.load(Ordering::SeqCst);
        let got = if write {
            vm.cpu_write(0, va, STALE);
            vec![]
        } else {
            vm.cpu_read(0, va, 8)
        };
        (seen, got)
    });
    let r = remove_in_steps(&vm.fx.map, IDX..=IDX, &phase);
    let other = vm.fx.cache(OTHER);
    phase.store(REUSED_PHASE, Ordering::SeqCst);
    let (seen, got) = cpu0.join().unwrap();
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(r.removed + r.raced + r.referenced, 1, "{r:?}");

    let outcome = format!("seen={seen} removed={} reused_f={}", r.removed, other == f);
    let other_bytes = page_prefix(&vm.fx.map.find(OTHER).unwrap().unwrap(), 8);
    if other_bytes != [REUSED; 8] {
        return Err(format!(
            "OTHER's page (frame {other:?}) was written through a stale entry for F={f:?}: \
             {other_bytes:x?} ({outcome})"
        ));
    }
    if !write && got != [FILE; 8] {
        return Err(format!(
            "CPU 0 read {got:x?} through a stale entry for freed frame {f:?} ({outcome})"
        ));
    }
    if write {
        // The write is not lost: CPU 0 reads it back, and it reaches the store.
        let back = vm.cpu_read(0, va, 8);
        vm.space.munmap(va, PAGE_SIZE as u64).unwrap();
        vm.fx.map.writeback(..);
        let stored = vm.fx.store.page(IDX).unwrap()[..8].to_vec();
        if back != [STALE; 8] || stored != [STALE; 8] {
            return Err(format!(
                "CPU 0's write went to freed frame {f:?}: reads back {back:x?}, stored \
                 {stored:x?} ({outcome})"
            ));
        }
    } else {
        check_ptes(&vm.fx, &vm.space, va, 1, IDX);
    }
    check_quiescent(&vm.fx);
    check_frame_accounting(&vm.fx, &[]);
    Ok(outcome)
}

fn with_shootdowns(write: bool, expected: &[&str]) {
    explore(Bound::Env, move || {
        run(write, true).unwrap_or_else(|why| panic!("stale TLB access: {why}"))
    })
    .assert_seen(expected);
}

fn without_shootdowns(write: bool) {
    assert_reachable(Bound::Env, "a stale access without shootdowns", move || {
        run(write, false).is_err()
    });
}

#[test]
fn read_vs_removal_reuse() {
    with_shootdowns(
        false,
        &[
            // Before the removal: the page stays or goes after the read.
            "seen=0 removed=1 reused_f=true",
            // After the removal and the reuse of F: a fault reloads IDX
            // into the other frame.
            "seen=7 removed=1 reused_f=true",
            // A fault in the middle of the removal keeps the page.
            "seen=3 removed=0 reused_f=false",
        ],
    );
}

#[test]
fn write_vs_removal_reuse() {
    with_shootdowns(
        true,
        &[
            "seen=0 removed=1 reused_f=true",
            "seen=7 removed=1 reused_f=true",
            "seen=3 removed=0 reused_f=false",
        ],
    );
}

#[test]
fn read_vs_removal_reuse_no_shootdown() {
    without_shootdowns(false);
}

#[test]
fn write_vs_removal_reuse_no_shootdown() {
    without_shootdowns(true);
}
