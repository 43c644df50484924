//! Anonymous memory and fork's copy-on-write sharing of private frames:
//! zero fill, sharing without copies, the copy by whichever space writes
//! first, reuse by the last holder, and frame accounting through munmap,
//! teardown and truncate.

use std::sync::Arc;

use pagemap::{FramePool, PAGE_SIZE};
use vmr::{pte, AddressSpace, ForkMode, Machine, MapFlags, Prot, VmError};

#[allow(dead_code)]
mod common;
use common::{Rig, PAGE};

fn machine(frames: usize, cpus: usize) -> Arc<Machine> {
    Machine::new(Arc::new(FramePool::new(frames).unwrap()), cpus)
}

fn read1(m: &Machine, s: &AddressSpace, va: u64) -> u8 {
    let mut b = [0u8; 1];
    m.cpu(0).read(s, va, &mut b).unwrap();
    b[0]
}

#[test]
fn anonymous_memory_is_zero_filled_and_private() {
    let m = machine(8, 2);
    let a = AddressSpace::new(m.clone());
    let b = AddressSpace::new(m.clone());
    let va = a
        .mmap_anonymous(None, 3 * PAGE, Prot::RW, MapFlags::PRIVATE)
        .unwrap();
    let vb = b
        .mmap_anonymous(Some(va), 3 * PAGE, Prot::RW, MapFlags::PRIVATE)
        .unwrap();
    assert_eq!(va, vb);
    let mut page = vec![0xAAu8; PAGE_SIZE];
    m.cpu(1).read(&a, va + PAGE, &mut page).unwrap();
    assert!(page.iter().all(|&x| x == 0), "first touch reads zeroes");
    m.cpu(0).write(&a, va + 2 * PAGE - 3, b"abcdef").unwrap();
    assert_eq!(
        read1(&m, &b, va + 2 * PAGE - 3),
        0,
        "another space's memory"
    );
    let mut six = [0u8; 6];
    m.cpu(1).read(&a, va + 2 * PAGE - 3, &mut six).unwrap();
    assert_eq!(&six, b"abcdef");
    assert_eq!(a.fault_stats().zero_fill.load(Ordering::Relaxed), 2);
    // One frame per touched page (b's read included: there is no shared
    // zero page, a read fault fills a frame of the space's own).
    assert_eq!(m.pool().free_frames(), 5);
    a.munmap(va, 3 * PAGE).unwrap();
    assert_eq!(m.pool().free_frames(), 7, "munmap frees a's two");
    drop(b);
    assert_eq!(m.pool().free_frames(), 8, "teardown frees b's");
}

use std::sync::atomic::Ordering;

#[test]
fn anonymous_flags_are_checked() {
    let m = machine(4, 1);
    let a = AddressSpace::new(m.clone());
    assert!(matches!(
        a.mmap_anonymous(None, PAGE, Prot::RW, MapFlags::SHARED),
        Err(VmError::InvalidFlags)
    ));
    assert!(matches!(
        a.mmap_anonymous(None, 0, Prot::RW, MapFlags::PRIVATE),
        Err(VmError::ZeroLength)
    ));
    assert!(matches!(
        a.mmap_anonymous(Some(3), PAGE, Prot::RW, MapFlags::PRIVATE),
        Err(VmError::Misaligned { .. })
    ));
    assert!(a.regions().is_empty(), "refusals change nothing");
    // Populate and lock fault everything in at once.
    let va = a
        .mmap_anonymous(
            None,
            2 * PAGE,
            Prot::RW,
            MapFlags::PRIVATE | MapFlags::POPULATE,
        )
        .unwrap();
    assert_eq!(m.pool().free_frames(), 2);
    assert_ne!(a.pte(va + PAGE) & pte::PRESENT, 0);
    // A read-only region: the zero page is mapped without write.
    let ro = a
        .mmap_anonymous(None, PAGE, Prot::READ, MapFlags::PRIVATE)
        .unwrap();
    assert_eq!(read1(&m, &a, ro), 0);
    assert!(m.cpu(0).write(&a, ro, b"x").is_err());
}

#[test]
fn fork_shares_private_frames_until_a_write() {
    let m = machine(16, 2);
    let parent = AddressSpace::new(m.clone());
    let va = parent
        .mmap_anonymous(None, 4 * PAGE, Prot::RW, MapFlags::PRIVATE)
        .unwrap();
    for i in 0..4u64 {
        m.cpu(0)
            .write(&parent, va + i * PAGE, &[i as u8 + 1])
            .unwrap();
    }
    let used = 16 - m.pool().free_frames();
    let child = parent.fork().unwrap();
    assert_eq!(16 - m.pool().free_frames(), used, "fork copies nothing");
    for i in 0..4u64 {
        let (pp, cp) = (parent.pte(va + i * PAGE), child.pte(va + i * PAGE));
        assert_eq!(pte::frame(pp), pte::frame(cp), "same frame");
        assert_eq!(pp & pte::WRITABLE, 0, "read-only in the parent");
        assert_eq!(cp & pte::WRITABLE, 0, "read-only in the child");
        let f = pagemap::FrameId::new(pte::frame(pp)).unwrap();
        assert_eq!(m.pool().private_map_count(f), Some(2));
    }
    // The child writes page 0: it copies; the parent's page is unchanged.
    m.cpu(1).write(&child, va, b"C").unwrap();
    assert_eq!(read1(&m, &parent, va), 1);
    assert_eq!(read1(&m, &child, va), b'C');
    assert_eq!(child.fault_stats().cow.load(Ordering::Relaxed), 1);
    // The parent, now the last holder of page 0's frame, reuses it.
    let before = pte::frame(parent.pte(va));
    m.cpu(0).write(&parent, va, b"P").unwrap();
    assert_eq!(pte::frame(parent.pte(va)), before, "reused, not copied");
    assert_eq!(parent.fault_stats().cow.load(Ordering::Relaxed), 0);
    assert_eq!(parent.fault_stats().reused.load(Ordering::Relaxed), 1);
    assert_eq!(read1(&m, &child, va), b'C');
    // The parent writes page 1 first: it copies, the child reuses.
    m.cpu(0).write(&parent, va + PAGE, b"p").unwrap();
    m.cpu(1).write(&child, va + PAGE, b"c").unwrap();
    assert_eq!(read1(&m, &parent, va + PAGE), b'p');
    assert_eq!(read1(&m, &child, va + PAGE), b'c');
    assert_eq!(16 - m.pool().free_frames(), used + 2, "two copies made");
    // Pages 2 and 3 stay shared; dropping the child leaves them ours alone.
    drop(child);
    assert_eq!(16 - m.pool().free_frames(), used);
    let f = pagemap::FrameId::new(pte::frame(parent.pte(va + 3 * PAGE))).unwrap();
    assert_eq!(m.pool().private_map_count(f), Some(1));
    drop(parent);
    assert_eq!(m.pool().free_frames(), 16, "every frame back");
}

#[test]
fn a_chain_of_forks_counts_references() {
    let m = machine(8, 1);
    let a = AddressSpace::new(m.clone());
    let va = a
        .mmap_anonymous(None, PAGE, Prot::RW, MapFlags::PRIVATE)
        .unwrap();
    m.cpu(0).write(&a, va, b"1").unwrap();
    let b = a.fork().unwrap();
    let c = b.fork().unwrap();
    let f = pagemap::FrameId::new(pte::frame(a.pte(va))).unwrap();
    assert_eq!(m.pool().private_map_count(f), Some(3));
    m.cpu(0).write(&b, va, b"2").unwrap(); // copies: a and c still share
    assert_eq!(m.pool().private_map_count(f), Some(2));
    b.munmap(va, PAGE).unwrap();
    c.munmap(va, PAGE).unwrap();
    assert_eq!(m.pool().private_map_count(f), Some(1));
    m.cpu(0).write(&a, va, b"3").unwrap(); // the last holder: no copy
    assert_eq!(pte::frame(a.pte(va)), f.get());
    assert_eq!(read1(&m, &a, va), b'3');
    drop((a, b, c));
    assert_eq!(m.pool().free_frames(), 8);
}

#[test]
fn eager_copy_mode_copies_every_private_page() {
    let m = machine(16, 1);
    let a = AddressSpace::new(m.clone());
    let va = a
        .mmap_anonymous(None, 4 * PAGE, Prot::RW, MapFlags::PRIVATE)
        .unwrap();
    for i in 0..4u64 {
        m.cpu(0).write(&a, va + i * PAGE, &[9]).unwrap();
    }
    let b = a.fork_with(ForkMode::Copy).unwrap();
    assert_eq!(m.pool().free_frames(), 8);
    assert_ne!(pte::frame(a.pte(va)), pte::frame(b.pte(va)));
    m.cpu(0).write(&b, va, &[7]).unwrap();
    assert_eq!(
        b.fault_stats().cow.load(Ordering::Relaxed),
        0,
        "no copy left to make"
    );
    assert_eq!(read1(&m, &a, va), 9);
}

/// Private copies of file pages are shared by fork too, and a truncate
/// zaps both spaces' entries: the frame is freed once, by the last.
#[test]
fn truncate_after_fork_drops_both_references_of_a_shared_copy() {
    let w = Rig::seeded(16, 2, 4);
    let parent = w.space();
    let va = w.mmap(&parent, 2, Prot::RW, MapFlags::PRIVATE);
    w.machine.cpu(0).write(&parent, va + PAGE, b"mine").unwrap();
    let child = parent.fork().unwrap();
    let f = pagemap::FrameId::new(pte::frame(child.pte(va + PAGE))).unwrap();
    assert_eq!(w.pool.private_map_count(f), Some(2));
    let free = w.pool.free_frames();
    w.file.truncate(1);
    assert_eq!(parent.pte(va + PAGE), 0);
    assert_eq!(child.pte(va + PAGE), 0);
    assert_eq!(
        w.pool.free_frames(),
        free + 2,
        "the copy and the cached page 1"
    );
    drop((parent, child));
}

/// Both spaces write their shared page at once, from two threads, many
/// times over: each ends with its own bytes, and no frame leaks.
#[test]
fn both_spaces_write_a_shared_page_concurrently() {
    let m = machine(64, 2);
    for round in 0..200u32 {
        let parent = AddressSpace::new(m.clone());
        let va = parent
            .mmap_anonymous(None, 2 * PAGE, Prot::RW, MapFlags::PRIVATE)
            .unwrap();
        m.cpu(0).write(&parent, va, &round.to_le_bytes()).unwrap();
        let child = parent.fork().unwrap();
        std::thread::scope(|s| {
            for (cpu, space, tag) in [(0, &parent, 0xAAu8), (1, &child, 0xBB)] {
                let m = &m;
                s.spawn(move || {
                    m.cpu(cpu).write(space, va + 4, &[tag; 8]).unwrap();
                    let mut b = [0u8; 12];
                    m.cpu(cpu).read(space, va, &mut b).unwrap();
                    assert_eq!(&b[..4], &round.to_le_bytes(), "the forked bytes");
                    assert_eq!(&b[4..], &[tag; 8], "its own write");
                });
            }
        });
        drop((parent, child));
        assert_eq!(m.pool().free_frames(), 64, "round {round} leaked a frame");
    }
}
