//! Address spaces end to end: errors, protection, sharing, privacy, fork,
//! splits, dirty-bit harvesting, and shootdowns.

use std::sync::Arc;

use pagemap::{FramePool, MemStore, PageMap};
use vmr::{
    pte, Access, AddressSpace, Advice, CheckError, Fault, ForkMode, MapFlags, MapRequest, Prot,
    VmError,
};

#[allow(dead_code)]
mod common;
use common::{Rig, PAGE};

fn regions(s: &AddressSpace) -> Vec<(u64, u64, u64)> {
    s.regions()
        .iter()
        .map(|v| (v.base(), v.end(), v.pgoff()))
        .collect()
}

#[test]
fn bad_input_is_a_typed_error_and_changes_nothing() {
    let w = Rig::seeded(32, 1, 16);
    let (s, va) = w.mapped(4, Prot::RW, MapFlags::SHARED);
    let before = regions(&s);
    let req = |addr: Option<u64>, len: u64| MapRequest {
        addr,
        ..MapRequest::new(w.file.clone(), len, Prot::READ, MapFlags::SHARED)
    };
    assert!(matches!(
        s.mmap(req(Some(va + 1), PAGE)),
        Err(VmError::Misaligned { .. })
    ));
    assert!(matches!(s.mmap(req(None, 0)), Err(VmError::ZeroLength)));
    assert!(matches!(
        s.mmap(req(None, 100)),
        Err(VmError::Misaligned { .. })
    ));
    assert!(matches!(
        s.mmap(req(Some(!(PAGE - 1)), 2 * PAGE)),
        Err(VmError::Overflow)
    ));
    assert!(matches!(
        s.mmap(req(Some(vmr::pagetable::VA_END), PAGE)),
        Err(VmError::OutOfRange { .. })
    ));
    assert!(matches!(
        s.mmap(req(Some(va + PAGE), PAGE)),
        Err(VmError::Overlap { .. })
    ));
    let mut both = req(None, PAGE);
    both.flags = MapFlags::SHARED | MapFlags::PRIVATE;
    assert!(matches!(s.mmap(both), Err(VmError::InvalidFlags)));
    let mut far = req(None, 2 * PAGE);
    far.pgoff = u64::MAX;
    assert!(
        matches!(s.mmap(far), Err(VmError::Overflow)),
        "file page range overflows"
    );
    let other_pool = PageMap::new(
        Arc::new(FramePool::new(1).unwrap()),
        Arc::new(MemStore::new()),
    );
    assert!(matches!(
        s.mmap(MapRequest::new(
            other_pool,
            PAGE,
            Prot::READ,
            MapFlags::SHARED
        )),
        Err(VmError::ForeignPool)
    ));
    assert!(matches!(
        s.munmap(va + 1, PAGE),
        Err(VmError::Misaligned { .. })
    ));
    assert!(matches!(s.munmap(va, 0), Err(VmError::ZeroLength)));
    assert!(matches!(
        s.munmap(!(PAGE - 1), 2 * PAGE),
        Err(VmError::Overflow)
    ));
    assert!(matches!(
        s.mprotect(va, 8 * PAGE, Prot::READ),
        Err(VmError::NoMapping { .. })
    ));
    assert!(matches!(
        s.madvise(va + 64 * PAGE, PAGE, Advice::Random),
        Err(VmError::NoMapping { .. })
    ));
    assert!(matches!(
        s.mprotect(va, PAGE + 5, Prot::READ),
        Err(VmError::Misaligned { .. })
    ));
    assert_eq!(regions(&s), before, "nothing changed");
    assert_eq!(w.file.nr_mappings(), 1);
}

#[test]
fn protection_faults() {
    let w = Rig::seeded(32, 1, 16);
    let s = w.space();
    let cpu = w.machine.cpu(0);
    let ro = w.mmap(&s, 2, Prot::READ, MapFlags::SHARED);
    let none = w.mmap(&s, 1, Prot::NONE, MapFlags::SHARED);
    let mut b = [0u8; 4];
    cpu.read(&s, ro, &mut b).unwrap();
    assert_eq!(b, [0x10; 4]);
    assert!(matches!(
        cpu.write(&s, ro, b"x"),
        Err(Fault::Protection {
            access: Access::Write,
            ..
        })
    ));
    assert!(matches!(
        cpu.read(&s, none, &mut b),
        Err(Fault::Protection {
            access: Access::Read,
            ..
        })
    ));
    assert!(matches!(
        cpu.read(&s, 0x10, &mut b),
        Err(Fault::NoMapping { va: 0x10 })
    ));
    assert!(matches!(
        cpu.read(&s, none + 64 * PAGE, &mut b),
        Err(Fault::NoMapping { .. })
    ));
    assert!(matches!(
        s.handle_fault(ro, Access::Exec),
        Err(Fault::Protection { .. })
    ));
    assert!(matches!(
        cpu.read(&s, u64::MAX - 1, &mut b),
        Err(Fault::NoMapping { .. })
    ));
}

#[test]
fn shared_mappings_share_and_reach_the_file() {
    let w = Rig::seeded(32, 2, 16);
    let a = w.space();
    let b = w.space();
    let va = w.mmap(&a, 4, Prot::RW, MapFlags::SHARED);
    let vb = w.mmap(&b, 4, Prot::RW, MapFlags::SHARED);
    w.machine
        .cpu(0)
        .write(&a, va + PAGE + 7, b"shared")
        .unwrap();
    let mut buf = [0u8; 6];
    w.machine.cpu(1).read(&b, vb + PAGE + 7, &mut buf).unwrap();
    assert_eq!(&buf, b"shared");
    assert!(
        w.file.dirty_indices(..).is_empty(),
        "dirty still only in the PTE"
    );
    a.munmap(va, 4 * PAGE).unwrap();
    assert_eq!(
        w.file.dirty_indices(..),
        vec![1],
        "munmap harvested the dirty bit"
    );
    assert_eq!(w.file.writeback(..).written, 1);
    assert_eq!(&w.store.page(1).unwrap()[7..13], b"shared");
    assert_eq!(w.file.nr_mappings(), 1);
}

#[test]
fn private_writes_stay_private() {
    let w = Rig::seeded(32, 2, 16);
    let a = w.space();
    let b = w.space();
    let pa = w.mmap(&a, 2, Prot::RW, MapFlags::PRIVATE);
    let sb = w.mmap(&b, 2, Prot::RW, MapFlags::SHARED);
    let mut buf = [0u8; 1];
    w.machine.cpu(0).read(&a, pa, &mut buf).unwrap();
    assert_eq!(buf[0], 0x10, "a private mapping reads the file");
    assert_eq!(
        a.pte(pa) & (pte::WRITABLE | pte::COW),
        pte::COW,
        "mapped read-only"
    );
    w.machine.cpu(0).write(&a, pa, b"p").unwrap();
    assert_eq!(
        a.fault_stats()
            .cow
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_ne!(a.pte(pa) & pte::PRIVATE, 0);
    w.machine.cpu(1).read(&b, sb, &mut buf).unwrap();
    assert_eq!(
        buf[0], 0x10,
        "the shared view does not see the private write"
    );
    w.machine.cpu(1).write(&b, sb + PAGE, b"s").unwrap();
    w.machine.cpu(0).read(&a, pa + PAGE, &mut buf).unwrap();
    assert_eq!(
        buf[0], b's',
        "an untouched private page still shows the file"
    );
    w.machine.cpu(0).read(&a, pa, &mut buf).unwrap();
    assert_eq!(buf[0], b'p');
    let free_before = w.machine.pool().free_frames();
    drop(a);
    assert_eq!(
        w.machine.pool().free_frames(),
        free_before + 1,
        "private frame freed"
    );
    drop(b);
    w.file.writeback(..);
    assert_eq!(
        w.store.page(0).unwrap()[0],
        0x10,
        "private writes never reach the file"
    );
    assert_eq!(w.store.page(1).unwrap()[0], b's');
}

#[test]
fn munmap_and_mprotect_split_without_holes() {
    let w = Rig::seeded(32, 1, 16);
    let (s, va) = w.mapped(8, Prot::RW, MapFlags::SHARED);
    s.munmap(va + 2 * PAGE, 2 * PAGE).unwrap();
    assert_eq!(
        regions(&s),
        vec![(va, va + 2 * PAGE, 0), (va + 4 * PAGE, va + 8 * PAGE, 4)]
    );
    s.mprotect(va + 5 * PAGE, PAGE, Prot::READ).unwrap();
    assert_eq!(
        regions(&s),
        vec![
            (va, va + 2 * PAGE, 0),
            (va + 4 * PAGE, va + 5 * PAGE, 4),
            (va + 5 * PAGE, va + 6 * PAGE, 5),
            (va + 6 * PAGE, va + 8 * PAGE, 6)
        ]
    );
    assert_eq!(w.file.nr_mappings(), 4);
    for i in [0, 1, 4, 5, 6, 7] {
        assert!(w.file.is_mapped(i), "page {i} covered");
    }
    assert!(!w.file.is_mapped(2) && !w.file.is_mapped(3));
    let cpu = w.machine.cpu(0);
    assert!(matches!(
        cpu.write(&s, va + 5 * PAGE, b"x"),
        Err(Fault::Protection { .. })
    ));
    cpu.write(&s, va + 6 * PAGE, b"x").unwrap();
    assert!(matches!(
        cpu.write(&s, va + 2 * PAGE, b"x"),
        Err(Fault::NoMapping { .. })
    ));
    s.munmap(va, 8 * PAGE).unwrap();
    assert!(s.regions().is_empty());
    assert_eq!(w.file.nr_mappings(), 0);
}

#[test]
fn mprotect_read_only_harvests_dirty_bits_and_blocks_writes() {
    let w = Rig::seeded(32, 2, 16);
    let (s, va) = w.mapped(1, Prot::RW, MapFlags::SHARED);
    w.machine.cpu(1).write(&s, va, b"before").unwrap();
    s.mprotect(va, PAGE, Prot::READ).unwrap();
    assert_eq!(
        w.file.dirty_indices(..),
        vec![0],
        "dirty bit not lost by mprotect"
    );
    assert!(matches!(
        w.machine.cpu(1).write(&s, va, b"x"),
        Err(Fault::Protection { .. })
    ));
    s.mprotect(va, PAGE, Prot::NONE).unwrap();
    let mut b = [0u8; 6];
    assert!(matches!(
        w.machine.cpu(0).read(&s, va, &mut b),
        Err(Fault::Protection { .. })
    ));
    s.mprotect(va, PAGE, Prot::RW).unwrap();
    w.machine.cpu(0).read(&s, va, &mut b).unwrap();
    assert_eq!(&b, b"before");
}

#[test]
fn private_data_survives_prot_none() {
    let w = Rig::seeded(32, 1, 16);
    let (s, va) = w.mapped(1, Prot::RW, MapFlags::PRIVATE);
    let cpu = w.machine.cpu(0);
    cpu.write(&s, va, b"mine").unwrap();
    s.mprotect(va, PAGE, Prot::NONE).unwrap();
    let mut b = [0u8; 4];
    assert!(cpu.read(&s, va, &mut b).is_err());
    s.mprotect(va, PAGE, Prot::READ).unwrap();
    cpu.read(&s, va, &mut b).unwrap();
    assert_eq!(&b, b"mine");
}

#[test]
fn teardown_harvests_dirty_bits() {
    let w = Rig::seeded(32, 1, 16);
    let (s, va) = w.mapped(3, Prot::RW, MapFlags::SHARED);
    w.machine.cpu(0).write(&s, va + 2 * PAGE, b"exit").unwrap();
    drop(s);
    assert_eq!(
        w.file.dirty_indices(..),
        vec![2],
        "Akaros lost these on exit"
    );
    assert_eq!(w.file.nr_mappings(), 0);
    w.file.writeback(..);
    assert_eq!(&w.store.page(2).unwrap()[..4], b"exit");
}

#[test]
fn fork_shares_shared_and_copies_private() {
    let w = Rig::seeded(32, 2, 16);
    let (parent, sh) = w.mapped(1, Prot::RW, MapFlags::SHARED);
    let pr = w.mmap(&parent, 1, Prot::RW, MapFlags::PRIVATE);
    let (c0, c1) = (w.machine.cpu(0), w.machine.cpu(1));
    c0.write(&parent, pr, b"parent").unwrap();
    let child = parent.fork().unwrap();
    assert_eq!(w.file.nr_mappings(), 4);
    let mut b = [0u8; 6];
    c1.read(&child, pr, &mut b).unwrap();
    assert_eq!(&b, b"parent", "the child got a copy of the private page");
    c1.write(&child, pr, b"child!").unwrap();
    c0.read(&parent, pr, &mut b).unwrap();
    assert_eq!(&b, b"parent", "copies diverge");
    c1.write(&child, sh, b"shared").unwrap();
    c0.read(&parent, sh, &mut b).unwrap();
    assert_eq!(&b, b"shared", "shared mappings stay shared");
    drop(child);
    assert_eq!(w.file.nr_mappings(), 2);
}

#[test]
fn fork_out_of_frames_changes_nothing() {
    let w = Rig::seeded(5, 1, 16);
    let (parent, pr) = w.mapped(2, Prot::RW, MapFlags::PRIVATE);
    w.machine.cpu(0).write(&parent, pr, b"a").unwrap(); // page 0 cached + copy
    w.machine.cpu(0).write(&parent, pr + PAGE, b"b").unwrap(); // pool now empty-ish
    let free = w.machine.pool().free_frames();
    assert_eq!(free, 1, "room for one of the two copies");
    // Held, the cached pages cannot be reclaimed to make room either.
    let held = (w.file.load(0).unwrap(), w.file.load(1).unwrap());
    assert!(matches!(
        parent.fork_with(ForkMode::Copy),
        Err(VmError::OutOfMemory)
    ));
    assert_eq!(w.machine.pool().free_frames(), free, "partial copies freed");
    assert_eq!(w.file.nr_mappings(), 1);
    // Sharing needs no frame: the same fork succeeds copy-on-write.
    let child = parent.fork().unwrap();
    assert_eq!(w.machine.pool().free_frames(), free);
    let mut b = [0u8; 1];
    w.machine.cpu(0).read(&child, pr + PAGE, &mut b).unwrap();
    assert_eq!(&b, b"b");
    drop(child);
    drop(held);
}

#[test]
fn check_phase_chooses_the_window() {
    let w = Rig::seeded(64, 1, 16);
    let (s, va) = w.mapped(16, Prot::RW, MapFlags::SHARED);
    let (ctx, _) = s.check_fault(va + 5 * PAGE + 9, Access::Read).unwrap();
    assert_eq!(
        (ctx.start_va, ctx.npages, ctx.center),
        (va + 2 * PAGE, 8, 3)
    );
    let (ctx, _) = s.check_fault(va, Access::Read).unwrap();
    assert_eq!(
        (ctx.start_va, ctx.npages, ctx.center),
        (va, 5, 0),
        "clipped at the start"
    );
    s.madvise(va, 16 * PAGE, Advice::Random).unwrap();
    let (ctx, _) = s.check_fault(va + 5 * PAGE, Access::Read).unwrap();
    assert_eq!(ctx.npages, 1);
    s.madvise(va, 16 * PAGE, Advice::Sequential).unwrap();
    let (ctx, _) = s.check_fault(va + 15 * PAGE, Access::Read).unwrap();
    assert_eq!((ctx.npages, ctx.center), (9, 8), "clipped at the end");
    assert_eq!(
        s.check_fault(va + 16 * PAGE, Access::Read).unwrap_err(),
        CheckError::NoMapping
    );
    s.mprotect(va, PAGE, Prot::READ).unwrap();
    assert_eq!(
        s.check_fault(va, Access::Write).unwrap_err(),
        CheckError::Protection
    );
    let p = w.mmap(&s, 2, Prot::RW, MapFlags::PRIVATE);
    let (ctx, _) = s.check_fault(p, Access::Read).unwrap();
    assert!(
        !ctx.enter_prot.contains(Prot::WRITE),
        "private pages enter read-only"
    );
}

#[test]
fn fault_around_maps_cached_neighbours_only() {
    let w = Rig::seeded(64, 1, 16);
    let s = w.space();
    for i in [3u64, 4, 10] {
        drop(w.file.load(i).unwrap());
    }
    let va = w.mmap(&s, 16, Prot::READ, MapFlags::SHARED);
    let mut b = [0u8; 1];
    w.machine.cpu(0).read(&s, va + 5 * PAGE, &mut b).unwrap();
    assert_ne!(s.pte(va + 3 * PAGE) & pte::PRESENT, 0);
    assert_ne!(s.pte(va + 4 * PAGE) & pte::PRESENT, 0);
    assert_eq!(s.pte(va + 6 * PAGE), 0, "uncached neighbours are not read");
    assert_eq!(s.pte(va + 10 * PAGE), 0, "outside the window (pages 2..=9)");
    let st = s.fault_stats();
    assert_eq!(st.neighbours.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert_eq!(st.major.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn populate_and_locked() {
    let w = Rig::seeded(64, 1, 16);
    let (s, va) = w.mapped(4, Prot::READ, MapFlags::SHARED | MapFlags::POPULATE);
    for i in 0..4 {
        assert_ne!(
            s.pte(va + i * PAGE) & pte::PRESENT,
            0,
            "page {i} pre-faulted"
        );
    }
    let mut req = MapRequest::new(
        w.file.clone(),
        2 * PAGE,
        Prot::READ,
        MapFlags::SHARED | MapFlags::LOCKED,
    );
    req.pgoff = 10;
    let lv = s.mmap(req).unwrap();
    assert_ne!(s.pte(lv) & pte::PRESENT, 0);
    assert!(w.file.is_pinned(10) && w.file.is_pinned(11) && !w.file.is_pinned(12));
    assert!(s
        .regions()
        .iter()
        .any(|v| v.flags().contains(MapFlags::LOCKED)));
    let (ctx, _) = s.check_fault(lv, Access::Read).unwrap();
    assert!(
        ctx.wired && ctx.npages == 1,
        "locked faults are wired and narrow"
    );
}

#[test]
fn populate_failure_unmaps_and_reports() {
    let w = Rig::seeded(64, 1, 16);
    let s = w.space();
    w.store.fail_reads(2, true);
    let r = s.mmap(MapRequest::new(
        w.file.clone(),
        4 * PAGE,
        Prot::READ,
        MapFlags::SHARED | MapFlags::POPULATE,
    ));
    assert!(matches!(r, Err(VmError::Populate(_))));
    assert!(s.regions().is_empty());
    assert_eq!(w.file.nr_mappings(), 0);
}

#[test]
fn free_unused_skips_mapped_pages() {
    let w = Rig::seeded(64, 1, 16);
    let (s, va) = w.mapped(2, Prot::READ, MapFlags::SHARED);
    let mut b = [0u8; 1];
    w.machine.cpu(0).read(&s, va, &mut b).unwrap();
    drop(w.file.load(5).unwrap());
    let r = w.file.free_unused();
    assert_eq!(
        (r.freed, r.mapped),
        (1, 1),
        "page 5 freed; mapped page 0 kept"
    );
    w.machine.cpu(0).read(&s, va, &mut b).unwrap();
    assert_eq!(b[0], 0x10);
    s.munmap(va, 2 * PAGE).unwrap();
    assert_eq!(w.file.free_unused().freed, 1);
}

#[test]
fn full_64_bit_page_indices() {
    let w = Rig::seeded(64, 1, 16);
    let s = w.space();
    let mut req = MapRequest::new(w.file.clone(), 2 * PAGE, Prot::RW, MapFlags::SHARED);
    req.pgoff = u64::MAX - 1;
    let va = s.mmap(req).unwrap();
    w.machine.cpu(0).write(&s, va + PAGE, b"top").unwrap();
    s.munmap(va, 2 * PAGE).unwrap();
    assert_eq!(w.file.dirty_indices(..), vec![u64::MAX]);
    w.file.writeback(..);
    assert_eq!(&w.store.page(u64::MAX).unwrap()[..3], b"top");
    assert!(
        w.store.page(0xffff_ffff).is_none(),
        "not truncated to 32 bits"
    );
}

/// A CPU caches a read-only translation of the shared page; another CPU's
/// write copies the page. Without the COW shootdown the first CPU keeps
/// reading the old page: the simulation shows the missing shootdown.
fn cow_then_read(shootdowns: bool) -> u8 {
    let w = Rig::seeded(32, 2, 16);
    // SAFETY: a test of what a missing shootdown breaks; the stale
    // accesses it allows are what it looks for.
    unsafe { w.machine.set_shootdowns_enabled(shootdowns) };
    let (s, va) = w.mapped(1, Prot::RW, MapFlags::PRIVATE);
    let mut b = [0u8; 1];
    w.machine.cpu(1).read(&s, va, &mut b).unwrap(); // CPU 1 caches the RO entry
    w.machine.cpu(0).write(&s, va, b"N").unwrap(); // COW
    w.machine.cpu(1).read(&s, va, &mut b).unwrap();
    b[0]
}

#[test]
fn missing_cow_shootdown_is_a_stale_read() {
    assert_eq!(cow_then_read(true), b'N');
    assert_eq!(
        cow_then_read(false),
        0x10,
        "stale read through the old translation"
    );
}

/// A CPU keeps a writable translation of a private frame; munmap frees the
/// frame and a new mapping reuses it. Without the shootdown the old CPU's
/// write lands in the new owner's page.
fn write_after_munmap(shootdowns: bool) -> (Result<(), Fault>, u8) {
    let w = Rig::seeded(32, 2, 16);
    // SAFETY: a test of what a missing shootdown breaks; the stale
    // accesses it allows are what it looks for.
    unsafe { w.machine.set_shootdowns_enabled(shootdowns) };
    let (s, va) = w.mapped(1, Prot::RW, MapFlags::PRIVATE);
    w.machine.cpu(1).write(&s, va, b"1").unwrap(); // private frame F cached writable
    s.munmap(va, PAGE).unwrap(); // F back to the pool
    let (other, ov) = w.mapped(1, Prot::RW, MapFlags::PRIVATE);
    w.machine.cpu(0).write(&other, ov, b"2").unwrap(); // COW takes F again
    let r = w.machine.cpu(1).write(&s, va, b"X");
    let mut b = [0u8; 1];
    w.machine.cpu(0).read(&other, ov, &mut b).unwrap();
    (r, b[0])
}

#[test]
fn missing_munmap_shootdown_is_a_lost_write() {
    let (r, b) = write_after_munmap(true);
    assert!(matches!(r, Err(Fault::NoMapping { .. })));
    assert_eq!(b, b'2');
    let (r, b) = write_after_munmap(false);
    assert!(r.is_ok(), "the stale entry let the write through");
    assert_eq!(b, b'X', "another space's page was overwritten");
}

#[test]
fn one_shootdown_per_munmap_whatever_the_regions() {
    let w = Rig::seeded(64, 2, 16);
    let (s, base) = w.mapped(12, Prot::RW, MapFlags::PRIVATE);
    // Split it into three regions and touch every page from both CPUs.
    s.mprotect(base + 4 * PAGE, 4 * PAGE, Prot::READ).unwrap();
    for p in 0..12 {
        let mut b = [0u8; 1];
        w.machine.cpu(0).read(&s, base + p * PAGE, &mut b).unwrap();
        w.machine.cpu(1).read(&s, base + p * PAGE, &mut b).unwrap();
    }
    w.machine.cpu(1).write(&s, base, b"x").unwrap(); // a private frame to free
    assert_eq!(s.regions().len(), 3);
    let free = w.machine.pool().free_frames();
    let before = w.machine.shootdown_stats();
    s.munmap(base, 12 * PAGE).unwrap();
    let after = w.machine.shootdown_stats();
    assert_eq!(
        after.shootdowns - before.shootdowns,
        1,
        "one per address space, not per region or page"
    );
    assert_eq!(after.ipis - before.ipis, 2, "both CPUs cached the space");
    assert_eq!(
        w.machine.pool().free_frames(),
        free + 1,
        "the private copy went back after the shootdown"
    );
}
