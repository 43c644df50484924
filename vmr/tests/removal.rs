//! The page map's removal, writeback, truncate, invalidate and destroy
//! protocols over mapped pages, end to end through simulated CPUs.

use pagemap::{Batching, Error, Pass};
use vmr::{pte, Fault, MapFlags, Prot};

#[allow(dead_code)]
mod common;
use common::{Rig, PAGE};

#[test]
fn removal_unmaps_every_space_with_one_shootdown_each_and_keeps_dirty_data() {
    let w = Rig::seeded(64, 2, 64);
    let a = w.space();
    let b = w.space();
    // Three regions over pages 0..8: two in `a`, one in `b`.
    let a1 = w.map_at(&a, 0, 8, Prot::RW, MapFlags::SHARED);
    let a2 = w.map_at(&a, 0, 8, Prot::READ, MapFlags::SHARED);
    let b1 = w.map_at(&b, 0, 8, Prot::RW, MapFlags::SHARED);
    for i in 0..8 {
        w.write_byte(0, &a, a1 + i * PAGE, 0xa0 + i as u8);
        assert_eq!(w.read_byte(1, &a, a2 + i * PAGE).unwrap(), 0xa0 + i as u8);
        assert_eq!(w.read_byte(1, &b, b1 + i * PAGE).unwrap(), 0xa0 + i as u8);
    }
    assert!(
        w.file.dirty_indices(..).is_empty(),
        "dirty only in the PTEs"
    );
    let free_before = w.pool.free_frames();
    let r = w.file.remove(0..8);
    assert_eq!(r.removed, 8, "{r:?}");
    assert_eq!(r.written, 8, "PTE dirty bits harvested and written: {r:?}");
    assert_eq!(
        r.shootdowns, 2,
        "one per address space, not per region or page"
    );
    assert!(r.errors.is_empty());
    assert_eq!(w.file.nr_pages(), 0);
    assert_eq!(w.pool.free_frames(), free_before + 8);
    for i in 0..8 {
        assert_eq!(a.pte(a1 + i * PAGE), 0);
        assert_eq!(a.pte(a2 + i * PAGE), 0);
        assert_eq!(b.pte(b1 + i * PAGE), 0);
        assert_eq!(w.store.page(i).unwrap()[0], 0xa0 + i as u8);
    }
    // Refaults read the written data back from the store.
    for i in 0..8 {
        assert_eq!(w.read_byte(0, &b, b1 + i * PAGE).unwrap(), 0xa0 + i as u8);
    }
}

#[test]
fn per_page_baseline_issues_one_shootdown_per_page_per_mapping() {
    let w = Rig::seeded(64, 1, 64);
    let a = w.space();
    let b = w.space();
    let va = w.map_at(&a, 0, 4, Prot::READ, MapFlags::SHARED);
    let vb = w.map_at(&b, 0, 4, Prot::READ, MapFlags::SHARED);
    for i in 0..4 {
        w.read_byte(0, &a, va + i * PAGE).unwrap();
        w.read_byte(0, &b, vb + i * PAGE).unwrap();
    }
    let r = w.file.remove_with(0..4, Batching::PerPage);
    assert_eq!((r.removed, r.shootdowns), (4, 8), "{r:?}");
}

#[test]
fn pinned_and_referenced_pages_stay() {
    let w = Rig::seeded(64, 1, 64);
    let (s, locked) = w.mapped(2, Prot::READ, MapFlags::SHARED | MapFlags::LOCKED);
    let plain = w.map_at(&s, 2, 4, Prot::READ, MapFlags::SHARED);
    for i in 0..4 {
        w.read_byte(0, &s, plain + i * PAGE).unwrap();
    }
    let held = w.file.find(3).unwrap().unwrap();
    let r = w.file.remove(..);
    assert_eq!((r.removed, r.pinned, r.referenced), (3, 2, 1), "{r:?}");
    assert_eq!(w.file.cached_indices(..), vec![0, 1, 3]);
    assert_ne!(s.pte(locked) & pte::PRESENT, 0, "pinned page still mapped");
    assert_ne!(
        s.pte(plain + PAGE) & pte::PRESENT,
        0,
        "held page still mapped"
    );
    assert_eq!(s.pte(plain), 0);
    drop(held);
}

#[test]
fn a_fault_between_not_present_and_clear_keeps_the_page_and_its_dirty_bit() {
    let w = Rig::seeded(64, 1, 64);
    let (s, va) = w.mapped(1, Prot::RW, MapFlags::SHARED);
    w.write_byte(0, &s, va, 1);
    let mut removal = w.file.begin_remove(0..1, Batching::PerSpace);
    assert_eq!(removal.step(), Pass::Marked);
    assert_eq!(removal.step(), Pass::Revoked);
    let hidden = s.pte(va);
    assert_eq!(hidden & pte::PRESENT, 0);
    assert_ne!(hidden & pte::DIRTY, 0, "dirty bit kept while not present");
    assert_eq!(removal.step(), Pass::ShotDown);
    // The fault maps the page again (taking a reference: removal aborted).
    w.write_byte(0, &s, va + 1, 2);
    assert_ne!(s.pte(va) & pte::PRESENT, 0);
    let r = removal.finish();
    assert_eq!((r.removed, r.raced), (0, 1), "{r:?}");
    assert_ne!(
        s.pte(va) & pte::PRESENT,
        0,
        "the reap left the live entry alone"
    );
    assert_eq!(w.read_byte(0, &s, va).unwrap(), 1);
    // Nothing lost: msync writes both bytes.
    let wb = s.msync(va, PAGE).unwrap();
    assert_eq!(wb.written, 1);
    assert_eq!(&w.store.page(0).unwrap()[..2], &[1, 2]);
}

#[test]
fn a_fault_after_the_reap_reloads_and_the_dirty_data_is_written() {
    let w = Rig::seeded(64, 1, 64);
    let (s, va) = w.mapped(1, Prot::RW, MapFlags::SHARED);
    w.write_byte(0, &s, va, 9);
    let mut removal = w.file.begin_remove(0..1, Batching::PerSpace);
    while removal.pass() < Pass::Reaped {
        removal.step();
    }
    assert_eq!(s.pte(va), 0);
    assert_eq!(w.file.dirty_indices(..), vec![0], "harvested by the reap");
    let r = removal.finish();
    assert_eq!((r.removed, r.written), (1, 1));
    assert_eq!(
        w.read_byte(0, &s, va).unwrap(),
        9,
        "reloaded from the store"
    );
}

#[test]
fn a_lookup_during_removal_aborts_it_for_that_page() {
    let w = Rig::seeded(64, 1, 64);
    for i in 0..3 {
        drop(w.file.load(i).unwrap());
    }
    let mut removal = w.file.begin_remove(.., Batching::PerSpace);
    removal.step();
    assert_eq!(removal.victims().len(), 3);
    drop(w.file.find(1).unwrap().unwrap());
    assert!(matches!(w.file.try_remove(..), Err(Error::Busy)));
    let r = removal.finish();
    assert_eq!((r.removed, r.raced), (2, 1), "{r:?}");
    assert_eq!(w.file.cached_indices(..), vec![1]);
    assert_eq!(w.file.holders(1), 0);
}

#[test]
fn munmap_during_removal_hands_its_dirty_bit_to_the_cache() {
    let w = Rig::seeded(64, 1, 64);
    let (s, va) = w.mapped(1, Prot::RW, MapFlags::SHARED);
    w.write_byte(0, &s, va, 7);
    let mut removal = w.file.begin_remove(0..1, Batching::PerSpace);
    removal.step(); // marked
    removal.step(); // revoked: entry not present, still dirty
    s.munmap(va, PAGE).unwrap(); // takes the dirty bit holding the page
    let r = removal.finish();
    assert_eq!(r.removed + r.raced, 1, "{r:?}");
    // Wherever the page went, the byte reached the store or stays dirty.
    w.file.writeback(..);
    assert_eq!(w.store.page(0).unwrap()[0], 7);
}

#[test]
fn a_write_error_keeps_the_page_dirty_and_mapped_data_safe() {
    let w = Rig::seeded(64, 1, 64);
    let (s, va) = w.mapped(2, Prot::RW, MapFlags::SHARED);
    w.write_byte(0, &s, va, 5);
    w.write_byte(0, &s, va + PAGE, 6);
    w.store.fail_writes(1, true);
    let r = w.file.remove(0..2);
    assert_eq!((r.removed, r.written, r.errors.len()), (1, 1, 1), "{r:?}");
    assert!(matches!(r.errors[0], Error::Write { index: 1, .. }));
    assert_eq!(w.file.dirty_indices(..), vec![1], "kept, dirty");
    assert_eq!(w.read_byte(0, &s, va + PAGE).unwrap(), 6);
    w.store.fail_writes(1, false);
    let r = w.file.remove(0..2);
    assert_eq!((r.removed, r.written), (1, 1));
    assert_eq!(w.store.page(1).unwrap()[0], 6);
}

/// A CPU reads page 0 (its TLB caches the translation), the page is
/// removed and its frame reused for page 1; then the CPU reads page 0 again.
fn read_after_removal(shootdowns: bool) -> u8 {
    let w = Rig::seeded(2, 1, 64);
    let (s, va) = w.mapped(2, Prot::READ, MapFlags::SHARED);
    assert_eq!(w.read_byte(0, &s, va).unwrap(), 0x10);
    let old = w.file.find(0).unwrap().unwrap().frame();
    // SAFETY: a test of what a missing shootdown breaks; the stale
    // accesses it allows are what it looks for.
    unsafe { w.machine.set_shootdowns_enabled(shootdowns) };
    assert_eq!(w.file.remove(0..1).removed, 1);
    let reused = w.file.load(1).unwrap().frame(); // page 1 (0x11)
    assert_eq!(reused, old, "the freed frame went to page 1");
    // SAFETY: a test of what a missing shootdown breaks; the stale
    // accesses it allows are what it looks for.
    unsafe { w.machine.set_shootdowns_enabled(true) };
    let b = w.read_byte(0, &s, va).unwrap();
    w.machine.cpu(0).flush_tlb();
    b
}

#[test]
fn a_missing_removal_shootdown_is_a_stale_read() {
    assert_eq!(read_after_removal(false), 0x11, "the check can fail");
    // With the shootdown the read refaults and reloads page 0 (other frame).
    assert_eq!(read_after_removal(true), 0x10);
}

#[test]
fn msync_cleans_write_protects_and_a_later_write_dirties_again() {
    let w = Rig::seeded(64, 2, 64);
    let (s, va) = w.mapped(4, Prot::RW, MapFlags::SHARED);
    for i in 0..4 {
        w.write_byte(0, &s, va + i * PAGE, 0x40 + i as u8);
    }
    let r = s.msync(va, 4 * PAGE).unwrap();
    assert_eq!((r.written, r.harvested, r.shootdowns), (4, 4, 1), "{r:?}");
    for i in 0..4 {
        let e = s.pte(va + i * PAGE);
        assert_eq!(
            e & (pte::WRITABLE | pte::DIRTY),
            0,
            "cleaned and write-protected"
        );
        assert_eq!(w.store.page(i).unwrap()[0], 0x40 + i as u8);
    }
    assert!(w.file.dirty_indices(..).is_empty());
    // A write after the msync faults, sets the dirty bit again: not lost.
    w.write_byte(1, &s, va + 2 * PAGE, 0x99);
    let r = s.msync(va, 4 * PAGE).unwrap();
    assert_eq!(r.written, 1);
    assert_eq!(w.store.page(2).unwrap()[0], 0x99);
    // msync of an unmapped range is a typed error.
    assert!(s.msync(va + 16 * PAGE, PAGE).is_err());
}

#[test]
fn writeback_error_keeps_the_harvested_page_dirty() {
    let w = Rig::seeded(64, 1, 64);
    let (s, va) = w.mapped(1, Prot::RW, MapFlags::SHARED);
    w.write_byte(0, &s, va, 3);
    w.store.fail_writes(0, true);
    let r = s.msync(va, PAGE).unwrap();
    assert_eq!((r.written, r.errors.len()), (0, 1));
    assert_eq!(w.file.dirty_indices(..), vec![0]);
    w.store.fail_writes(0, false);
    assert_eq!(w.file.writeback(..).written, 1);
    assert_eq!(w.store.page(0).unwrap()[0], 3);
}

#[test]
fn truncate_unmaps_shared_and_private_pages_and_later_faults_get_sigbus() {
    let w = Rig::seeded(64, 1, 64);
    let (s, shared) = w.mapped(8, Prot::RW, MapFlags::SHARED);
    let private = w.map_at(&s, 0, 8, Prot::RW, MapFlags::PRIVATE);
    for i in 0..8 {
        w.write_byte(0, &s, shared + i * PAGE, 0x50 + i as u8);
        w.write_byte(0, &s, private + i * PAGE, 0x70 + i as u8); // COW copies
    }
    w.file.writeback(..);
    let free_before = w.pool.free_frames();
    let r = w.file.truncate(4);
    assert_eq!(r.removed, 4, "{r:?}");
    assert!(r.errors.is_empty());
    assert_eq!(r.shootdowns, 1);
    assert_eq!(
        w.pool.free_frames(),
        free_before + 8,
        "4 cache pages and 4 private copies freed"
    );
    for i in 4..8 {
        assert_eq!(s.pte(shared + i * PAGE), 0);
        assert_eq!(s.pte(private + i * PAGE), 0, "even cows");
        assert!(matches!(
            w.read_byte(0, &s, shared + i * PAGE),
            Err(Fault::BeyondEof { .. })
        ));
        assert!(matches!(
            w.read_byte(0, &s, private + i * PAGE),
            Err(Fault::BeyondEof { .. })
        ));
        assert!(w.store.page(i).is_none(), "store shrunk");
    }
    for i in 0..4 {
        assert_eq!(
            w.read_byte(0, &s, shared + i * PAGE).unwrap(),
            0x50 + i as u8
        );
        assert_eq!(
            w.read_byte(0, &s, private + i * PAGE).unwrap(),
            0x70 + i as u8
        );
    }
    // Extending again: the pages read as the (now empty) store says.
    let r = w.file.truncate(8);
    assert_eq!(r.removed, 0);
    assert_eq!(w.read_byte(0, &s, shared + 5 * PAGE).unwrap(), 0);
}

/// Issue 11: a hole punch clears the file's pages from every mapping but
/// keeps a process's private copy-on-write copies (Linux keeps them: only
/// truncate passes `even_cows`); the shared mapping reads zeroes after it,
/// the size is unchanged, and the copies' frames are not freed.
#[test]
fn punch_keeps_private_copies_that_truncate_drops() {
    let w = Rig::seeded(64, 1, 64);
    let (s, shared) = w.mapped(8, Prot::RW, MapFlags::SHARED);
    let private = w.map_at(&s, 0, 8, Prot::RW, MapFlags::PRIVATE);
    for i in 0..8 {
        w.write_byte(0, &s, shared + i * PAGE, 0x50 + i as u8);
        w.write_byte(0, &s, private + i * PAGE, 0x70 + i as u8); // COW copies
    }
    w.file.writeback(..);
    let r = w
        .file
        .punch_hole(2 * PAGE, 4 * PAGE)
        .expect("MemStore punches");
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(r.shootdowns, 1, "one space");
    for i in 2..6 {
        assert_eq!(s.pte(shared + i * PAGE), 0, "the file's page is unmapped");
        assert_ne!(s.pte(private + i * PAGE), 0, "the private copy stays");
        assert_eq!(w.read_byte(0, &s, shared + i * PAGE).unwrap(), 0, "a hole");
        assert_eq!(
            w.read_byte(0, &s, private + i * PAGE).unwrap(),
            0x70 + i as u8,
            "the copy keeps its bytes"
        );
        assert!(w.store.page(i).is_none(), "the store's range is a hole");
    }
    for i in (0..2).chain(6..8) {
        assert_eq!(
            w.read_byte(0, &s, shared + i * PAGE).unwrap(),
            0x50 + i as u8
        );
    }
    assert!(w.file.load(40).is_ok(), "the size is unchanged");
    // Truncate, by contrast, drops the copies.
    w.file.truncate(2);
    for i in 2..8 {
        assert_eq!(s.pte(private + i * PAGE), 0, "even cows");
    }
}

#[test]
fn truncate_zeroes_pages_in_use_and_never_writes_them_back() {
    let w = Rig::seeded(64, 1, 64);
    let held = w.file.load(6).unwrap();
    held.write(0, b"doomed").unwrap();
    let r = w.file.truncate(2);
    assert_eq!((r.zeroed, r.discarded), (1, 1), "{r:?}");
    let mut buf = [1u8; 6];
    held.read(0, &mut buf).unwrap();
    assert_eq!(buf, [0; 6]);
    // A holder's write beyond the end: refused, the page is detached.
    assert!(matches!(
        held.write(0, b"late"),
        Err(Error::Detached { index: 6 })
    ));
    drop(held);
    let wb = w.file.writeback(..);
    assert_eq!((wb.written, wb.discarded), (0, 0), "{wb:?}");
    assert!(w.store.page(6).is_none(), "the file was not extended");
    assert!(matches!(
        w.file.load(6),
        Err(Error::BeyondEof { index: 6, end: 2 })
    ));
}

#[test]
fn remove_or_zero_discards_mapped_data() {
    let w = Rig::seeded(64, 1, 64);
    let (s, va) = w.mapped(4, Prot::RW, MapFlags::SHARED);
    for i in 0..4 {
        w.write_byte(0, &s, va + i * PAGE, 0xee);
    }
    let held = w.file.find(1).unwrap().unwrap();
    let r = w.file.remove_or_zero(0..4);
    assert_eq!((r.removed, r.zeroed), (3, 1), "{r:?}");
    drop(held);
    // Page 1 stayed, zeroed; the others reload from the store (never written).
    assert_eq!(w.read_byte(0, &s, va + PAGE).unwrap(), 0);
    assert_eq!(w.read_byte(0, &s, va).unwrap(), 0x10);
}

#[test]
fn invalidate_skips_mapped_dirty_and_referenced_pages() {
    let w = Rig::seeded(64, 1, 64);
    let (s, va) = w.mapped(1, Prot::READ, MapFlags::SHARED);
    w.read_byte(0, &s, va).unwrap(); // page 0 mapped
    w.file.load(1).unwrap().write(0, b"d").unwrap(); // page 1 dirty
    let held = w.file.load(2).unwrap(); // page 2 referenced
    drop(w.file.load(3).unwrap()); // page 3 clean, unused, unmapped
    let r = w.file.invalidate(..);
    assert_eq!(
        (r.invalidated, r.mapped, r.dirty, r.referenced),
        (1, 1, 1, 1),
        "{r:?}"
    );
    assert_eq!(w.file.cached_indices(..), vec![0, 1, 2]);
    drop(held);
}

#[test]
fn destroy_writes_back_then_empties() {
    let w = Rig::seeded(64, 1, 64);
    w.file.load(1).unwrap().write(0, b"keep").unwrap();
    w.file.load(2).unwrap().write(0, b"fail").unwrap();
    w.store.fail_writes(2, true);
    let r = w.file.destroy(false);
    assert_eq!((r.written, r.freed, r.errors.len()), (1, 1, 1), "{r:?}");
    assert_eq!(
        w.file.cached_indices(..),
        vec![2],
        "the failed page is kept"
    );
    assert_eq!(&w.store.page(1).unwrap()[..4], b"keep");
    let r = w.file.destroy(true);
    assert_eq!((r.freed, r.discarded), (1, 1));
    assert_eq!(w.file.nr_pages(), 0);
}

#[test]
#[should_panic(expected = "mappings")]
fn destroy_refuses_a_mapped_map() {
    let w = Rig::seeded(64, 1, 64);
    let s = w.space();
    w.map_at(&s, 0, 1, Prot::READ, MapFlags::SHARED);
    w.file.destroy(true);
}

#[test]
#[should_panic(expected = "is held")]
fn destroy_refuses_a_held_page() {
    let w = Rig::seeded(64, 1, 64);
    let _held = w.file.load(0).unwrap();
    w.file.destroy(true);
}

/// A writeback whose mappings hand over more dirty entries than
/// `HARVEST_CAP` settles them in rounds between mappings, one shootdown per
/// address space each, and still writes every CPU write.
#[test]
fn writeback_of_more_dirty_entries_than_one_harvest_holds() {
    let pages = pagemap::HARVEST_CAP as u64 + 700;
    let w = Rig::new(pages as usize + 8, 1);
    let (s, va) = w.mapped(pages, Prot::RW, MapFlags::SHARED);
    let t = w.space();
    let vb = w.map_at(&t, 0, pages, Prot::RW, MapFlags::SHARED);
    for i in 0..pages {
        w.write_byte(0, &s, va + i * PAGE, i as u8 | 1);
        w.write_byte(0, &t, vb + i * PAGE, i as u8 | 1);
    }
    let r = w.file.writeback(..);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.harvested, 2 * pages, "both mappings' entries");
    assert_eq!(r.written, pages);
    assert_eq!(
        r.shootdowns, 2,
        "a round after the first mapping, then the rest"
    );
    for i in 0..pages {
        assert_eq!(w.store.page(i).unwrap()[0], i as u8 | 1, "page {i}");
    }
    // Clean now: CPU writes fault or set dirty bits again, and the next
    // writeback finds them.
    w.write_byte(0, &t, vb + 3 * PAGE, 0x77);
    let r = w.file.writeback(..);
    assert_eq!((r.harvested, r.written), (1, 1));
    assert_eq!(w.store.page(3).unwrap()[0], 0x77);
}

/// Reclaim of mapped pages (issue 12): a pool full of a file's pages mapped
/// into two address spaces (three regions), dirty only in the PTEs. Each
/// reclaim batch unmaps its victims with one shootdown per address space
/// (never per region or page), writes the dirty ones back first, and the
/// CPUs then read the written bytes back through refaults: no stale read,
/// no lost write.
#[test]
fn reclaim_unmaps_mapped_victims_with_one_shootdown_per_space_per_batch() {
    let w = Rig::seeded(8, 2, 64);
    let a = w.space();
    let b = w.space();
    let a1 = w.map_at(&a, 0, 8, Prot::RW, MapFlags::SHARED);
    let a2 = w.map_at(&a, 0, 8, Prot::READ, MapFlags::SHARED);
    let b1 = w.map_at(&b, 0, 8, Prot::RW, MapFlags::SHARED);
    for i in 0..8 {
        w.write_byte(0, &a, a1 + i * PAGE, 0xc0 + i as u8);
        assert_eq!(w.read_byte(1, &b, b1 + i * PAGE).unwrap(), 0xc0 + i as u8);
        assert_eq!(w.read_byte(1, &a, a2 + i * PAGE).unwrap(), 0xc0 + i as u8);
    }
    assert_eq!(w.pool.free_frames(), 0, "the file fills the pool");
    let mut freed = 0;
    for _ in 0..64 {
        let r = w.pool.reclaim(8);
        if r.freed > 0 {
            assert!(
                r.shootdowns <= 2,
                "one shootdown per space per batch: {r:?}"
            );
            assert!(r.shootdowns >= 1, "mapped victims need a shootdown: {r:?}");
        }
        assert_eq!(r.write_errors, 0);
        freed += r.freed;
        if freed == 8 {
            break;
        }
    }
    assert_eq!(
        freed, 8,
        "every page reclaimable once its accessed bits aged"
    );
    let stats = w.pool.stats();
    assert_eq!(stats.maps.evicted_mapped, 8, "{stats:?}");
    assert_eq!(stats.maps.evicted_dirty, 8, "{stats:?}");
    for i in 0..8 {
        assert_eq!(w.store.page(i).unwrap()[0], 0xc0 + i as u8, "written back");
        assert_eq!(a.pte(a1 + i * PAGE), 0);
        assert_eq!(b.pte(b1 + i * PAGE), 0);
    }
    for i in 0..8 {
        assert_eq!(w.read_byte(0, &a, a2 + i * PAGE).unwrap(), 0xc0 + i as u8);
        assert_eq!(w.read_byte(1, &b, b1 + i * PAGE).unwrap(), 0xc0 + i as u8);
    }
}
