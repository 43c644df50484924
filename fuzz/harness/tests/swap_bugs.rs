//! Library bugs the `swap_ops` fuzz target found, as plain tests of the
//! `vmr` API (each also a `bug_*` seed of `fuzz/seeds/swap_ops/`). They fail
//! while the bug is open.

use std::sync::Arc;

use pagemap::swap::MemSwap;
use pagemap::{FramePool, PAGE_SIZE};
use vmr::{AddressSpace, Advice, Machine, MapFlags, Prot};

const PAGE: u64 = PAGE_SIZE as u64;

/// `fork_loses_write_after_free`: MADV_FREE marks the frame lazily
/// freeable and clears the entry's dirty bit; the write after it dirties
/// the parent's entry only. Fork gives the child a clean entry for the same
/// frame. Once the parent's entry goes (munmap here; exit or the parent's
/// own copy-on-write write do the same), the page-out finds no dirty entry
/// and drops the frame unwritten: the child, whose snapshot holds the
/// write, reads zeroes.
#[test]
fn fork_keeps_a_page_written_after_madv_free() {
    let pool = Arc::new(FramePool::new(8).unwrap());
    pool.set_held_grace(std::time::Duration::ZERO);
    let machine = Machine::with_swap(pool, 2, Arc::new(MemSwap::new(8))).unwrap();
    let parent = AddressSpace::new(machine.clone());
    let va = parent
        .mmap_anonymous(None, PAGE, Prot::RW, MapFlags::PRIVATE)
        .unwrap();
    let cpu = machine.cpu(0);
    cpu.write(&parent, va, b"old").unwrap();
    parent.madvise(va, PAGE, Advice::Free).unwrap();
    cpu.write(&parent, va, b"new").unwrap(); // keeps the page
    let child = parent.fork().unwrap();
    parent.munmap(va, PAGE).unwrap();
    child.page_out(va, PAGE).unwrap();
    let mut b = [0u8; 3];
    cpu.read(&child, va, &mut b).unwrap();
    assert_eq!(
        &b, b"new",
        "the child's snapshot lost the write after MADV_FREE"
    );
}
