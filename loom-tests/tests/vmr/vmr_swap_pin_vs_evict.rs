//! `mlock` of an anonymous page against a concurrent eviction of its frame
//! (`AddressSpace::mlock`: LOCKED region, populate, MLOCKED entries, and
//! again while a swap-out took a page between the two; against
//! `Machine::evict_frame` → `Swap::swap_out`, whose walk leaves MLOCKED
//! entries as they are).
//!
//! CPU 0 writes DATA into an anonymous page (frame F). Then a spawned
//! thread mlocks the page while the main thread evicts F.
//!
//! Checked: as soon as mlock returns (the eviction may still be running),
//! the entry is present, private and MLOCKED, and stays so; afterwards an
//! eviction of the frame it names fails (`Busy`) and a `page_out` keeps
//! it; both CPUs read DATA; every frame and location is free after the
//! teardown.
//!
//! Outcomes: `evicted, paged back in` (the swap-out came first: mlock's
//! populate paged the page in again), `evicted, mlock retried` (the
//! swap-out took the page between mlock's populate and its marking: the
//! marking found a swap entry and mlock went round again), `kept` (the
//! walk found the entry MLOCKED, or met the fault's reference).
//!
//! Mutant V15 (mlock returns after one round whatever its marking found)
//! returns with the page in swap.

use std::sync::atomic::Ordering::Relaxed;

use loom_tests::{explore, spawn_with, Bound, VmFixture};
use pagemap::{FrameId, PAGE_SIZE};
use vmr::pte;

const PAGE: u64 = PAGE_SIZE as u64;
const DATA: [u8; 8] = [0x66; 8];

/// The entry of a locked page: a present private frame, MLOCKED.
fn assert_pinned(entry: u64, when: &str) {
    assert!(
        entry & pte::PRESENT != 0 && entry & pte::PRIVATE != 0 && entry & pte::MLOCKED != 0,
        "{when}: entry {entry:#x} is not a present, MLOCKED private frame"
    );
}

#[test]
fn mlock_vs_evict_frame() {
    explore(Bound::Env, || {
        let (vm, sw) = VmFixture::with_swap(2, 2, 2);
        let va = vm.anon(&vm.space, 1);
        vm.cpu_write(0, va, DATA[0]);
        let frame = FrameId::new(pte::frame(vm.space.pte(va))).expect("frame");

        let locker = spawn_with(&vm.space, move |s| {
            s.mlock(va, PAGE).expect("mlock");
            assert_pinned(s.pte(va), "right after mlock");
        });
        let evicted = match vm.machine.evict_frame(frame) {
            Ok(()) => true,
            Err(pagemap::Error::Busy) => false,
            Err(e) => panic!("evict_frame: {e}"),
        };
        locker.join().unwrap();
        let hits = sw.swap.stats().cache_hits;

        let entry = vm.space.pte(va);
        assert_pinned(entry, "after both");
        let now = FrameId::new(pte::frame(entry)).unwrap();
        assert!(
            matches!(vm.machine.evict_frame(now), Err(pagemap::Error::Busy)),
            "an mlocked page was evicted"
        );
        let out = vm.space.page_out(va, PAGE).expect("page_out");
        assert_eq!((out.paged_out, out.kept), (0, 1), "{out:?}");
        assert_pinned(vm.space.pte(va), "after the evictions");
        assert_eq!(vm.cpu_read(0, va, 8), DATA);
        assert_eq!(vm.cpu_read(1, va, 8), DATA);

        // mlock's first populate finds the entry writable (a spurious
        // fault) unless the swap-out came first; a spurious fault and a
        // page-in mean it went round again.
        let spurious = vm.space.fault_stats().spurious.load(Relaxed);
        let outcome = match (evicted, sw.store.reads(), hits) {
            (false, 0, 0) => "kept",
            // The walk made the entry a swap entry, then met the
            // reference mlock's fault took from the swap cache.
            (false, 0, 1) => "kept, faulted back from the cache",
            // The swap-out wrote the page and left the cache while the
            // fault held a passing reference (its lookup saw BUSY and let
            // go): reported kept, the frame freed by the fault's put, the
            // page read back in by the retry.
            (false, 1, _) => "kept after its page-out, paged back in",
            (true, 1, _) if spurious == 0 => "evicted, paged back in",
            (true, 1, _) => "evicted, mlock retried",
            // Forbidden: a swap-out that reports the frame freed while the
            // fault took it from the cache. (It happened: the fault's lookup
            // read the cache before the swap-out left it and BUSY after it
            // let go; the swap-out now sees the fault's reference left
            // after its uncache and reports the frame kept.)
            (true, 0, 1) => panic!("evicted, yet the fault mapped the frame from the cache"),
            other => panic!(
                "(evicted, page-ins, cache hits) = {other:?}, spurious {spurious}, {:?}",
                sw.swap.stats()
            ),
        };
        vm.space.teardown();
        sw.assert_drained(&vm.fx, outcome);
        outcome
    })
    .assert_seen(&[
        "kept",
        "kept, faulted back from the cache",
        "evicted, paged back in",
        "evicted, mlock retried",
    ]);
}
