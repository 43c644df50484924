//! vmr model 3: two CPUs write one shared page through their TLBs while a
//! third thread harvests the dirty bits (mprotect to READ and back, or
//! munmap) and writes the file back.
//!
//! The CPUs hold TLB entries for the page before the race: clean ones (the
//! first write through the entry sets DIRTY in the PTE with a CAS that
//! re-checks WRITABLE) or dirty ones (writes go to the frame without
//! touching the PTE at all: only the acknowledged shootdown stops them).
//! After the race, every write that returned `Ok` is in the store, or the
//! page is dirty in the cache, or its PTE is dirty; after a final munmap and
//! writeback every completed write is in the store; a write that faulted
//! (`Protection` while the region was read-only, `NoMapping` after munmap)
//! left no trace.
//!
//! `*_no_shootdown` runs the dirty-entry race with shootdowns disabled and
//! asserts that a lost write IS reached: the model can fail.

use std::sync::Arc;

use loom_tests::{
    assert_reachable, check_frame_accounting, explore, page_prefix, spawn_with, Bound, VmFixture,
};
use pagemap::PAGE_SIZE;
use vmr::{Fault, MapFlags, Prot};

const IDX: u64 = 0;
const OLD: u8 = 0x33;
/// Setup writes (dirty-entry variant).
const PRE: [u8; 2] = [0x40, 0x41];
/// The racing writes of CPU 0 (bytes 0..8) and CPU 1 (bytes 8..16).
const NEW: [u8; 2] = [0xa0, 0xa1];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Entries {
    /// Each CPU read the page: writable, not dirty.
    Clean,
    /// Each CPU wrote the page: writable and dirty (PTE DIRTY).
    Dirty,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Harvest {
    /// mprotect(READ), mprotect(RW), writeback.
    Mprotect,
    /// munmap, writeback.
    Munmap,
}

/// What one execution showed. `lost` is `Some(why)` when a completed write
/// was lost (or a failed one left bytes behind).
struct Verdict {
    outcome: String,
    lost: Option<String>,
}

fn run(entries: Entries, harvest: Harvest, shootdowns: bool) -> Verdict {
    let (vm, va) = VmFixture::with_mapped(1, 2, IDX, OLD, Prot::RW, MapFlags::SHARED);
    // SAFETY: a test of what a missing shootdown breaks; the stale
    // accesses it allows are what it looks for.
    unsafe { vm.machine.set_shootdowns_enabled(shootdowns) };
    let mut before = [OLD; 2];
    for c in 0..2 {
        let cpu = vm.machine.cpu(c);
        let at = va + 8 * c as u64;
        match entries {
            Entries::Clean => {
                let mut b = [0u8; 8];
                cpu.read(&vm.space, at, &mut b).unwrap();
            }
            Entries::Dirty => {
                cpu.write(&vm.space, at, &[PRE[c]; 8]).unwrap();
                before[c] = PRE[c];
            }
        }
    }
    let vm = Arc::new(vm);
    let writers: Vec<_> = (0..2)
        .map(|c| {
            spawn_with(&vm, move |vm| {
                let r = vm
                    .machine
                    .cpu(c)
                    .write(&vm.space, va + 8 * c as u64, &[NEW[c]; 8]);
                match r {
                    Ok(()) => true,
                    Err(Fault::Protection { .. }) if harvest == Harvest::Mprotect => false,
                    Err(Fault::NoMapping { .. }) if harvest == Harvest::Munmap => false,
                    Err(e) => panic!("unexpected fault {e:?}"),
                }
            })
        })
        .collect();
    let len = PAGE_SIZE as u64;
    match harvest {
        Harvest::Mprotect => {
            vm.space.mprotect(va, len, Prot::READ).unwrap();
            vm.space.mprotect(va, len, Prot::RW).unwrap();
        }
        Harvest::Munmap => vm.space.munmap(va, len).unwrap(),
    }
    let w = vm.fx.map.writeback(..);
    assert!(w.errors.is_empty(), "{w:?}");
    let done: Vec<bool> = writers.into_iter().map(|t| t.join().unwrap()).collect();

    // Right after the race: each completed write is stored, or dirty in the
    // cache, or dirty in the PTE.
    let page = vm.fx.map.find(IDX).unwrap().expect("cached (never freed)");
    let content = page_prefix(&page, 16);
    let cache_dirty = page.is_dirty();
    drop(page);
    let pte_dirty = vm.space.pte(va) & vmr::pte::DIRTY != 0;
    let stored = vm.fx.store.page(IDX).map(|b| b[..16].to_vec());
    let mut lost = None;
    let mut fate = [""; 2];
    for c in 0..2 {
        let want = if done[c] { NEW[c] } else { before[c] };
        if content[8 * c..8 * c + 8] != [want; 8] {
            lost = Some(format!(
                "cpu {c}: page has {:x?}",
                &content[8 * c..8 * c + 8]
            ));
        }
        let in_store = stored
            .as_ref()
            .is_some_and(|s| s[8 * c..8 * c + 8] == [NEW[c]; 8]);
        if done[c] && !(in_store || cache_dirty || pte_dirty) {
            lost = Some(format!(
                "cpu {c}'s write is not stored and nothing is dirty (store {stored:x?})"
            ));
        }
        // stored: harvested and written back during the race; pending: only
        // a dirty bit (PTE or cache) holds it; fault: the write faulted.
        fate[c] = match (done[c], in_store) {
            (false, _) => "fault",
            (true, true) => "stored",
            (true, false) => "pending",
        };
    }
    // Quiesce: harvest what is left and write it back.
    if harvest == Harvest::Mprotect {
        vm.space.munmap(va, len).unwrap();
    }
    vm.fx.map.writeback(..);
    let stored = vm.fx.store.page(IDX).expect("stored")[..16].to_vec();
    for c in 0..2 {
        if done[c] && stored[8 * c..8 * c + 8] != [NEW[c]; 8] {
            lost.get_or_insert(format!(
                "cpu {c}'s write never reached the store: {:x?}",
                &stored[8 * c..8 * c + 8]
            ));
        }
    }
    assert!(vm.fx.map.dirty_indices(..).is_empty());
    check_frame_accounting(&vm.fx, &[]);
    Verdict {
        outcome: format!("w0={} w1={}", fate[0], fate[1]),
        lost,
    }
}

/// Runs the race with shootdowns on (at most `cap` preemptions: the
/// mprotect models take minutes at 2); panics on a lost write.
fn no_lost_write(entries: Entries, harvest: Harvest, cap: usize, expected: &[&str]) {
    explore(Bound::Cap(cap), move || {
        let v = run(entries, harvest, true);
        if let Some(why) = v.lost {
            panic!("lost dirty bit / write: {why} ({})", v.outcome);
        }
        v.outcome
    })
    .assert_seen(expected);
}

/// The outcomes of the mprotect models (symmetric in the two CPUs).
const MPROTECT_OUTCOMES: &[&str] = &[
    // One write before the harvest (written back), one after the rights
    // came back (its PTE is dirty again).
    "w0=stored w1=pending",
    // One write in the read-only window: Protection, no trace.
    "w0=fault w1=pending",
    "w0=pending w1=pending",
];

/// Clean TLB entries, mprotect(READ) and back, writeback.
#[test]
fn clean_entries_vs_mprotect_harvest() {
    no_lost_write(Entries::Clean, Harvest::Mprotect, 1, MPROTECT_OUTCOMES);
}

/// Dirty TLB entries (writes do not touch the PTE), mprotect(READ) and back.
#[test]
fn dirty_entries_vs_mprotect_harvest() {
    no_lost_write(Entries::Dirty, Harvest::Mprotect, 1, MPROTECT_OUTCOMES);
}

/// Dirty TLB entries, munmap, writeback.
#[test]
fn dirty_entries_vs_munmap_harvest() {
    no_lost_write(
        Entries::Dirty,
        Harvest::Munmap,
        2,
        &[
            "w0=stored w1=stored",
            "w0=fault w1=stored",
            "w0=fault w1=fault",
        ],
    );
}

/// Clean TLB entries (the first write through each sets DIRTY in the PTE,
/// racing munmap's clear of it), munmap, writeback. munmap must take the
/// entry with one atomic swap: a load followed by a store of 0 loses a
/// DIRTY set in between, and the write with it (mutant V01 of
/// `scripts/mutants.txt`, which survived every other model).
#[test]
fn clean_entries_vs_munmap_harvest() {
    no_lost_write(
        Entries::Clean,
        Harvest::Munmap,
        2,
        &["w0=stored w1=stored", "w0=fault w1=fault"],
    );
}

/// As `dirty_entries_vs_munmap_harvest` with shootdowns disabled: a CPU
/// keeps writing through its stale dirty entry after the harvest, and the
/// write is lost. The model must reach that outcome.
#[test]
fn dirty_entries_vs_munmap_harvest_no_shootdown() {
    assert_reachable(Bound::Cap(1), "a lost write without shootdowns", || {
        run(Entries::Dirty, Harvest::Munmap, false).lost.is_some()
    });
}
