//! A swap location freed by munmap and reused by another page's page-out
//! while a fault still holds the location it read from the old entry
//! (`Faulter::fault`'s swap loop, which drops the address-space lock to
//! `read_in`; munmap's `free_entry`; `SwapMap::alloc`).
//!
//! Space S1 has page P0 (written A, paged out: location L = slot 0); space
//! S2 has pages P1 (B) and P2 (C, paged out: slot 1), so that the store is
//! full and P1 can only be paged out into L once munmap has freed it. Then
//! CPU 0 (a spawned thread) reads P0 while the main thread munmaps P0,
//! pages P1 out and reads P1 back on CPU 1.
//!
//! The fault on P0 may read L in after munmap freed it and P1's page-out
//! refilled it (B): its next look under the lock must find the mapping gone
//! (the regions' generation changed), never map what it read. Checked: CPU
//! 0 reads A or faults with `NoMapping`, never B; afterwards P0 faults with
//! `NoMapping` on both CPUs, P1 reads B and P2 C; once both spaces are torn
//! down every frame and location is free (a location freed while a frame
//! still caches it, or counted wrong, leaks one or the other, or panics in
//! `free_entry`).
//!
//! Outcomes: `read A` / `no mapping` (the fault mapped P0 before the
//! munmap, or looked after it), crossed with `P1 in L` / `swap full` (the
//! fault's `read_in` still held L's new frame BUSY when munmap dropped the
//! last entry, so L was only freed at the end of that read, after P1's
//! page-out had found the store full), and the store reads meanwhile: P1's
//! page-in if it was paged out, plus the fault's read of L if it got to
//! `read_in` (with `no mapping, P1 in L, store reads 2` that read may be a
//! stale one of B, which the fault then never maps).
//!
//! Mutant SW08 (the last swap entry of a location frees it even while a
//! frame still caches it) frees L under the frame the fault mapped: P1's
//! page-out takes L, and P0's frame is left cached at a location that is
//! no longer its own (it leaks at the teardown).

use loom_tests::{cpu_read, explore, spawn_with, Bound, VmFixture};
use pagemap::PAGE_SIZE;
use vmr::{pte, Fault};

const PAGE: u64 = PAGE_SIZE as u64;
const A: u8 = 0xa1;
const B: u8 = 0xb2;
const C: u8 = 0xc3;

#[test]
fn fault_on_a_location_freed_and_reused() {
    explore(Bound::Env, || {
        let (vm, sw) = VmFixture::with_swap(3, 2, 2);
        let s1 = vm.space.clone();
        let s2 = vm.new_space();
        let p0 = vm.anon(&s1, 1);
        vm.cpu_write(0, p0, A);
        assert_eq!(s1.page_out(p0, PAGE).expect("page_out P0").paged_out, 1);
        let l = pte::swap_location(s1.pte(p0)).expect("P0 in swap");
        let p1 = vm.anon(&s2, 2);
        let p2 = p1 + PAGE;
        let c1 = vm.machine.cpu(1);
        c1.write(&s2, p1, &[B; 8]).expect("write P1");
        c1.write(&s2, p2, &[C; 8]).expect("write P2");
        assert_eq!(s2.page_out(p2, PAGE).expect("page_out P2").paged_out, 1);
        assert_eq!(sw.swap.stats().in_use, 2, "the store is full");

        let reads = sw.store.reads();
        let reader = spawn_with(&(vm.machine.clone(), s1.clone()), move |(m, s)| {
            cpu_read(m.cpu(0), &s, p0, 8)
        });
        s1.munmap(p0, PAGE).expect("munmap P0");
        let full = match s2.page_out(p1, PAGE) {
            Ok(out) => {
                assert_eq!(out.paged_out, 1, "{out:?}");
                assert_eq!(pte::swap_location(s2.pte(p1)), Some(l), "P1 not in L");
                false
            }
            Err(vmr::VmError::Swap(pagemap::Error::SwapFull { .. })) => true,
            Err(e) => panic!("page_out P1: {e}"),
        };
        assert_eq!(cpu_read(c1, &s2, p1, 8).unwrap(), [B; 8], "P1");
        let read = reader.join().unwrap();
        let seen = match read {
            Ok(b) if b == [A; 8] => "read A",
            Err(Fault::NoMapping { .. }) => "no mapping",
            other => panic!("P0 read {other:?} (B is P1's, reached through L)"),
        };
        for c in 0..2 {
            let r = cpu_read(vm.machine.cpu(c), &s1, p0, 8);
            assert!(matches!(r, Err(Fault::NoMapping { .. })), "CPU {c}: {r:?}");
        }
        let io = sw.store.reads() - reads;
        assert_eq!(cpu_read(c1, &s2, p2, 8).unwrap(), [C; 8], "P2");
        // Reads of L: P1's page-in if it was paged out, and the fault's
        // (A, or a stale one of B) if it got to `read_in` before munmap.
        let outcome = format!(
            "{seen}, {}, store reads {}",
            if full { "swap full" } else { "P1 in L" },
            io
        );
        s1.teardown();
        s2.teardown();
        sw.assert_drained(&vm.fx, &outcome);
        outcome
    })
    .assert_seen(&[
        "read A, P1 in L, store reads 2",
        "no mapping, P1 in L, store reads 1",
        "no mapping, P1 in L, store reads 2",
        "no mapping, swap full, store reads 1",
    ]);
}
