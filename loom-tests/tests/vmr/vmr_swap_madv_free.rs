//! A write to a `MADV_FREE`d anonymous page against its page-out
//! (`advice::lazy_free` and `Swap::lazy_free` against `Swap::swap_out`'s
//! lazy drop; the dirty bit that a CPU sets through its TLB is what tells
//! the two apart).
//!
//! CPU 0 writes OLD into an anonymous page (its TLB now holds a writable,
//! dirty translation). The main thread advises `MADV_FREE` and the advice
//! returns (the entry clean, the frame marked LAZY, CPU 0's translation
//! shot down). Then CPU 0 (a spawned thread) writes NEW while the main
//! thread pages the page out.
//!
//! A write that starts after the advice returned must survive: afterwards
//! the page reads NEW (the rest of the page may read zeroes: dropped
//! unwritten before the write, which then faulted on a zero swap entry).
//! Every frame and location is free once the space is torn down.
//!
//! Outcomes: `dropped` (the swap-out found the entry clean: the page went
//! without I/O, its swap entry reads zeroes, and the write faulted it back
//! in as zeroes), `written` (the write dirtied the entry first: the
//! swap-out wrote the page), `kept` (the swap-out met the write fault's
//! reference or locked entry).
//!
//! Mutant SW05 (`lazy_free` without its shootdown): CPU 0 keeps its dirty
//! translation, its write sets no dirty bit in the entry, and the swap-out
//! drops the page with NEW in it: a lost write.

use loom_tests::{explore, spawn_with, Bound, VmFixture};
use pagemap::PAGE_SIZE;
use vmr::Advice;

const PAGE: u64 = PAGE_SIZE as u64;
const OLD: u8 = 0x33;
const NEW: u8 = 0x44;

#[test]
fn write_after_madv_free_vs_page_out() {
    explore(Bound::Env, || {
        let (vm, sw) = VmFixture::with_swap(2, 2, 2);
        let va = vm.anon(&vm.space, 1);
        vm.cpu_write(0, va, OLD);
        vm.space.madvise(va, PAGE, Advice::Free).expect("MADV_FREE");
        let before = sw.swap.stats();

        let writer = spawn_with(&(vm.machine.clone(), vm.space.clone()), move |(m, s)| {
            m.cpu(0).write(&s, va, &[NEW; 8]).expect("write");
        });
        let out = vm.space.page_out(va, PAGE).expect("page_out");
        writer.join().unwrap();
        assert_eq!(vm.cpu_read(1, va, 8), [NEW; 8], "the write after MADV_FREE");
        assert_eq!(vm.cpu_read(0, va, 8), [NEW; 8], "CPU 0 reads it too");

        let st = sw.swap.stats();
        let outcome = match (
            out.paged_out,
            st.lazy_freed - before.lazy_freed,
            st.page_outs - before.page_outs,
        ) {
            (1, 1, 0) => "dropped",
            (1, 0, 1) => "written",
            (0, 0, 0) => "kept",
            // Written (the write came first), then kept: the writer's
            // fault had taken the page from the swap cache meanwhile.
            (0, 0, 1) => "kept after its page-out",
            other => panic!("(paged out, lazily freed, written) = {other:?}"),
        };
        vm.space.teardown();
        sw.assert_drained(&vm.fx, outcome);
        outcome
    })
    .assert_seen(&["dropped", "written", "kept"]);
}
