//! A CPU faults a paged-out anonymous page back in (read, then write) while
//! another thread pages it out again (`Faulter::swap_fault` and
//! `write_private` in `vmr/src/fault.rs` against `Swap::swap_out` and
//! `SpacesRmap::try_to_unmap`).
//!
//! The page is written (OLD) and paged out. Then CPU 0 (a spawned thread)
//! reads it (a swap-in: the frame enters the swap cache, BUSY while it is
//! read, then is mapped read-only), writes NEW (a write fault on a
//! read-only private entry: the entry is locked, then the frame made
//! exclusive, or copied if the swap-out holds it) and reads it back; the
//! main thread pages the range out once (`page_out`: it picks the frame
//! the entry names, if any, and swaps it out without the space's lock).
//!
//! Checked: CPU 0's first read sees OLD and its last NEW (never zeroes, a
//! stale copy or a freed frame: loom reports an access to a freed frame);
//! CPU 1 reads NEW afterwards; once the space is torn down every frame and
//! location is free.
//!
//! Outcomes: what the page-out did (nothing: the entry was a swap entry
//! when it looked; `out`: the frame went to swap; `kept`: BUSY with the
//! swap-in, or its entry locked by the write fault, or a reference taken
//! meanwhile), how the write got its frame (`reuse`: made exclusive;
//! `copy`: the swap-out held a reference or BUSY at that moment), and how
//! many page-ins (2: the page-out came between the read and the write).
//!
//! Mutants: SW03 (`swap_out` frees the frame without its final
//! `refs != 1` check) frees the frame the fault's lookup took or the
//! locked entry still names; SW04 (`try_to_unmap` does not pass locked
//! entries by) turns the entry the write fault holds locked into a swap
//! entry and frees the frame under the copy.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;

use loom::sync::atomic::AtomicBool;
use loom_tests::{cpu_read, explore, spawn_with, Bound, SwapParts, VmFixture};
use pagemap::PAGE_SIZE;

const PAGE: u64 = PAGE_SIZE as u64;
const OLD: u8 = 0x11;
const NEW: u8 = 0x22;

/// The outcome's words for a page-out report.
fn page_out_word(out: vmr::PageOutReport) -> &'static str {
    match (out.paged_out, out.kept) {
        (0, 0) => "none",
        (1, 0) => "out",
        (0, 1) => "kept",
        _ => panic!("{out:?}"),
    }
}

/// How the write faults got a writable frame. Each copies or reuses; a
/// page-out between a write fault and the access it was for makes the
/// access fault again.
fn write_word(space: &vmr::AddressSpace) -> &'static str {
    let st = space.fault_stats();
    match (st.cow.load(Relaxed), st.reused.load(Relaxed)) {
        (1, 0) => "copy",
        (0, 1) => "reuse",
        (0, 2) => "reuse twice",
        (1, 1) => "copy and reuse",
        other => panic!("(cow, reused) = {other:?}"),
    }
}

/// The page written OLD and paged out, in a machine with two frames (the
/// page's and a copy's: the write fault copies when the swap-out holds the
/// frame) and two swap slots; and the store's reads so far.
fn paged_out_page() -> (VmFixture, SwapParts, u64, u64) {
    let (vm, sw) = VmFixture::with_swap(2, 2, 2);
    let va = vm.anon(&vm.space, 1);
    vm.cpu_write(0, va, OLD);
    assert_eq!(vm.space.page_out(va, PAGE).expect("page_out").paged_out, 1);
    let reads = sw.store.reads();
    (vm, sw, va, reads)
}

/// The swap-in read against the page-out: the page-out finds a swap entry
/// (nothing to do), the frame BUSY with its read (kept), or the frame
/// mapped (paged out again: the next access pages it in again).
#[test]
fn swap_in_vs_page_out() {
    explore(Bound::Env, || {
        let (vm, sw, va, reads) = paged_out_page();
        let faulter = spawn_with(&(vm.machine.clone(), vm.space.clone()), move |(m, s)| {
            cpu_read(m.cpu(0), &s, va, 8).expect("read")
        });
        let out = vm.space.page_out(va, PAGE).expect("concurrent page_out");
        assert_eq!(faulter.join().unwrap(), [OLD; 8], "the swap-in read");
        assert_eq!(vm.cpu_read(1, va, 8), [OLD; 8], "CPU 1 afterwards");
        let page_ins = sw.store.reads() - reads;
        let outcome = format!("page_out {}, page-ins {page_ins}", page_out_word(out));
        vm.space.teardown();
        sw.assert_drained(&vm.fx, &outcome);
        outcome
    })
    .assert_seen(&[
        "page_out none, page-ins 1",
        "page_out kept, page-ins 1",
        "page_out out, page-ins 2",
    ]);
}

/// Read, write and read back on CPU 0 against one page-out. At bound 2 the
/// page-out cannot both start after the swap-in's mapping and stop inside
/// the write fault, so the page-out waits for the read to return (a loom
/// flag): the write fault then races the whole swap-out.
#[test]
fn write_fault_vs_page_out() {
    explore(Bound::Env, || {
        let (vm, sw, va, reads) = paged_out_page();
        let read_done = Arc::new(AtomicBool::new(false));
        let faulter = spawn_with(
            &(vm.machine.clone(), vm.space.clone(), read_done.clone()),
            move |(m, s, read_done)| {
                let cpu = m.cpu(0);
                let first = cpu_read(cpu, &s, va, 8).expect("read");
                read_done.store(true, SeqCst);
                cpu.write(&s, va, &[NEW; 8]).expect("write");
                let last = cpu_read(cpu, &s, va, 8).expect("read back");
                (first, last)
            },
        );
        while !read_done.load(SeqCst) {
            loom::thread::yield_now();
        }
        let out = vm.space.page_out(va, PAGE).expect("concurrent page_out");
        let (first, last) = faulter.join().unwrap();
        assert_eq!(first, [OLD; 8], "the swap-in read");
        assert_eq!(last, [NEW; 8], "read after the write");
        assert_eq!(vm.cpu_read(1, va, 8), [NEW; 8], "CPU 1 afterwards");
        let page_ins = sw.store.reads() - reads;
        let outcome = format!(
            "page_out {}, write {}, page-ins {page_ins}",
            page_out_word(out),
            write_word(&vm.space)
        );
        vm.space.teardown();
        sw.assert_drained(&vm.fx, &outcome);
        outcome
    })
    .assert_seen(&[
        "page_out out, write reuse, page-ins 2",
        "page_out kept, write copy, page-ins 1",
        "page_out kept, write reuse, page-ins 1",
    ]);
}
