//! vmr model 5: a copy-on-write fault against CPUs that cache the shared
//! page (`docs/design.md`, section 8, "COW fault vs CPUs caching the shared
//! page"; the shootdown ordering).
//!
//! Space A maps file page 0 privately. CPU 2 has read it: its TLB holds a
//! read-only entry for the page-cache frame. Then, concurrently:
//! * the main thread (CPU 0) writes bytes 8..16: a write fault that copies
//!   the page, installs the copy in the PTE and shoots down the old entry;
//! * CPU 1 writes bytes 0..8 (it faults too, or finds the copy installed)
//!   and then raises a flag;
//! * CPU 2 reads the flag and then bytes 0..8.
//!
//! If CPU 2 saw the flag, CPU 1's write had completed before CPU 2's read
//! began, so the read must return CPU 1's bytes: one address space shows
//! one memory. It cannot if CPU 2 still reads the old shared frame through
//! its stale entry after CPU 1 wrote the copy; that is the window between
//! `copy_on_write`'s PTE CAS and its shootdown (Linux clears the PTE and
//! flushes before it installs the new one: `ptep_clear_flush`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use loom::sync::atomic::AtomicBool;
use loom_tests::{explore, spawn_with, Bound, VmFixture};
use vmr::{MapFlags, Prot};

const IDX: u64 = 0;
const FILE: u8 = 0x10;
/// CPU 1's write (bytes 0..8).
const ONE: u8 = 0x61;
/// CPU 0's write (bytes 8..16).
const ZERO: u8 = 0x60;

#[test]
fn cow_fault_vs_stale_reader() {
    explore(Bound::Cap(2), || {
        // The file page and two private copies (both faulters may copy; the
        // loser frees its copy).
        let (vm, va) = VmFixture::with_mapped(3, 3, IDX, FILE, Prot::RW, MapFlags::PRIVATE);
        // CPU 2 caches the shared page, read-only (COW).
        assert_eq!(vm.cpu_read(2, va, 8), vec![FILE; 8]);
        assert_ne!(vm.space.pte(va) & vmr::pte::COW, 0);
        let vm = Arc::new(vm);
        let done = Arc::new(AtomicBool::new(false));

        let shared = (vm.clone(), done.clone());
        let writer = spawn_with(&shared, move |(vm, done)| {
            vm.cpu_write(1, va, ONE);
            done.store(true, Ordering::SeqCst);
        });
        let reader = spawn_with(&shared, move |(vm, done)| {
            let after = done.load(Ordering::SeqCst);
            let got = vm.cpu_read(2, va, 8);
            (after, got)
        });
        vm.cpu_write(0, va + 8, ZERO);
        writer.join().unwrap();
        let (after, got) = reader.join().unwrap();

        assert!(
            !after || got == vec![ONE; 8],
            "CPU 2 read {got:x?} after CPU 1's write of {ONE:#x} had completed \
             (stale TLB entry for the shared page still in use after the PTE \
             pointed at the private copy)"
        );
        let all = vm.cpu_read(0, va, 16);
        assert_eq!(all, [[ONE; 8], [ZERO; 8]].concat());
        let stale = got == vec![FILE; 8];
        format!("after={after} stale={stale}")
    })
    .assert_seen(&["after=true stale=false", "after=false stale=true"]);
}
