//! `fork` of a space against a concurrent page-out of one of its private
//! pages (`AddressSpace::fork_with`, which locks each private entry with
//! `pte::LOCK` while it shares the frame and copies swap entries with
//! `Swap::dup`; against `Swap::swap_out`, whose walk takes no address-space
//! lock, passes locked entries by and visits the child as soon as it
//! exists).
//!
//! CPU 0 writes OLD into an anonymous page (frame F). A spawned thread
//! forks the space while the main thread evicts F (`Machine::evict_frame`:
//! no address-space lock at all, so the swap-out can meet fork anywhere).
//!
//! Checked afterwards: both spaces read OLD; the child writes CHILD and the
//! parent PARENT, and each then reads its own bytes on both CPUs (neither
//! write shows in the other space); a frame freed while an entry still
//! named it would be an access to a freed frame (loom reports it) or a
//! second free (the pool panics); once both spaces are gone every frame and
//! swap location is free (a location counted once too few is freed early,
//! and the next `free_entry` of it panics; once too many, it leaks).
//!
//! Outcomes: `evicted before fork` (fork copied a swap entry, dup'ing the
//! location), `evicted after fork` (the walk turned both spaces' entries
//! into swap entries), `kept` (the walk met the entry fork held locked, or
//! the child's reference appeared before the swap-out counted them),
//! `kept, child's entry swapped` (the walk changed the child's new entry
//! but passed the parent's, still locked: the frame stays in the swap
//! cache, and the child's fault finds it there).
//!
//! Mutant SW06 (fork shares the frame without locking the entry): the
//! swap-out turns the parent's entry into a swap entry and frees the frame
//! between fork's read of the entry and its `share_raw`, and the child maps
//! a freed frame.

use loom_tests::{cpu_read, explore, spawn_with, Bound, VmFixture};
use pagemap::FrameId;
use vmr::pte;

const OLD: u8 = 0x77;
const PARENT: u8 = 0x88;
const CHILD: u8 = 0x99;

#[test]
fn fork_vs_evict_of_a_private_page() {
    explore(Bound::Env, || {
        // The shared frame, the child's copy and a page-in's frame.
        let (vm, sw) = VmFixture::with_swap(3, 2, 2);
        let parent = vm.space.clone();
        let va = vm.anon(&parent, 1);
        vm.cpu_write(0, va, OLD);
        let frame = FrameId::new(pte::frame(parent.pte(va))).expect("frame");

        let forker = spawn_with(&parent, move |p| {
            let child = p.fork().expect("fork");
            let swapped = pte::swap_location(child.pte(va)).is_some();
            (child, swapped)
        });
        let evicted = match vm.machine.evict_frame(frame) {
            Ok(()) => true,
            Err(pagemap::Error::Busy) => false,
            Err(e) => panic!("evict_frame: {e}"),
        };
        let (child, child_swapped) = forker.join().unwrap();

        let (c0, c1) = (vm.machine.cpu(0), vm.machine.cpu(1));
        assert_eq!(cpu_read(c0, &parent, va, 8).unwrap(), [OLD; 8], "parent");
        assert_eq!(cpu_read(c1, &child, va, 8).unwrap(), [OLD; 8], "child");
        c1.write(&child, va, &[CHILD; 8]).expect("child write");
        c0.write(&parent, va, &[PARENT; 8]).expect("parent write");
        for c in [c0, c1] {
            assert_eq!(cpu_read(c, &parent, va, 8).unwrap(), [PARENT; 8], "parent");
            assert_eq!(cpu_read(c, &child, va, 8).unwrap(), [CHILD; 8], "child");
        }

        let outcome = match (evicted, child_swapped) {
            (true, true) => "evicted before fork",
            (true, false) => "evicted after fork",
            (false, false) => "kept",
            // The walk changed the child's new entry but passed the
            // parent's, still locked by fork: the frame stays in the swap
            // cache, where the child's fault finds it.
            (false, true) => "kept, child's entry swapped",
        };
        drop(child);
        parent.teardown();
        sw.assert_drained(&vm.fx, outcome);
        outcome
    })
    .assert_seen(&[
        "evicted before fork",
        "evicted after fork",
        "kept",
        "kept, child's entry swapped",
    ]);
}
