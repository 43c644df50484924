//! Two CPUs fault on one paged-out anonymous page at once (the swap-in
//! protocol: `Swap::lookup` / `read_in` / `wait`, driven by
//! `Faulter::swap_fault` in `vmr/src/fault.rs`).
//!
//! An anonymous page is written and paged out (its entry a swap entry, its
//! frame free). Then CPU 0 (a spawned thread) and CPU 1 (the main thread)
//! read it. Each fault looks the location up: absent, it reads it in
//! (a fresh frame, BUSY, in the swap cache before the read); BUSY, it waits;
//! cached, it maps the frame read-only and drops the entry's count on the
//! location.
//!
//! Checked: exactly one read from the store (a second `read_in` finds the
//! frame cached and does nothing), both CPUs read the written bytes (never
//! the zeroes of a frame still being read), the entry ends present, and
//! once the space is torn down every frame and location is free.
//!
//! Outcomes, by what the faults did (`major`: faults that went to
//! `read_in`; `hits`: lookups that found the frame cached; `waited`: the
//! other fault found it BUSY): one fault reads it in and the other either
//! finds it cached (`hits=2`: both lookups hit, one CAS maps it), finds the
//! entry mapped already (`hits=1`), or waited for the read; both went to
//! `read_in` (the second found the frame cached and did nothing).
//!
//! Mutants: SW01 (`lookup` ignores BUSY) maps the frame under its read: a
//! CPU reads zeroes; SW02 (`read_in` publishes the frame in the swap cache
//! before taking BUSY) the same through the window between the two.

use loom_tests::{cpu_read, explore, spawn_with, Bound, VmFixture};
use pagemap::PAGE_SIZE;
use vmr::pte;

const PAGE: u64 = PAGE_SIZE as u64;
const DATA: [u8; 8] = [0x5a; 8];

#[test]
fn two_cpus_fault_on_one_paged_out_page() {
    explore(Bound::Env, || {
        // One frame for the page; a second for a fault's reclaim-free
        // allocation (the loser of two `read_in`s gives its frame back).
        let (vm, sw) = VmFixture::with_swap(2, 2, 2);
        let va = vm.anon(&vm.space, 1);
        vm.cpu_write(0, va, DATA[0]);
        let out = vm.space.page_out(va, PAGE).expect("page_out");
        assert_eq!(out.paged_out, 1, "{out:?}");
        assert!(pte::swap_location(vm.space.pte(va)).is_some());
        let reads = sw.store.reads();

        let other = spawn_with(&(vm.machine.clone(), vm.space.clone()), move |(m, s)| {
            cpu_read(m.cpu(0), &s, va, 8).expect("CPU 0 read")
        });
        let mine = vm.cpu_read(1, va, 8);
        let theirs = other.join().unwrap();
        assert_eq!(mine, DATA, "CPU 1 read");
        assert_eq!(theirs, DATA, "CPU 0 read");
        assert_eq!(sw.store.reads() - reads, 1, "one page-in for two faults");
        let now = vm.space.pte(va);
        assert!(
            now & pte::PRESENT != 0 && now & pte::PRIVATE != 0,
            "entry {now:#x}"
        );

        let st = vm.space.paging_stats();
        let hits = sw.swap.stats().cache_hits;
        let outcome = match (st.major, hits) {
            (1, 2) => "one read, both hit".to_string(),
            (1, 1) => "one read, other found it mapped or waited".to_string(),
            (2, 1) => "both went to read_in, one read".to_string(),
            (2, 2) => "both went to read_in, both hit".to_string(),
            other => format!("(major, hits) = {other:?}"),
        };
        vm.space.teardown();
        sw.assert_drained(&vm.fx, &outcome);
        outcome
    })
    .assert_seen(&[
        "one read, both hit",
        "one read, other found it mapped or waited",
    ]);
}
