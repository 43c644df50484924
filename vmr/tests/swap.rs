//! Demand paging of anonymous and private memory: swap entries, page-in on
//! fault, one page-in for two faults, fork of swapped ranges, swap errors,
//! swap full, evict_frame on each kind of frame, mlock, MADV_DONTNEED and
//! MADV_FREE, reclaim choosing private frames beside page-cache pages.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use pagemap::swap::{Location, MemSwap};
use pagemap::{FrameId, FramePool, MemStore, PageMap, PAGE_SIZE};
use vmr::{pte, AddressSpace, Advice, Fault, Machine, MapFlags, MapRequest, Prot, VmError};

const PAGE: u64 = PAGE_SIZE as u64;

struct Rig {
    machine: Arc<Machine>,
    swap: Arc<MemSwap>,
}

fn rig(frames: usize, slots: u32) -> Rig {
    let pool = Arc::new(FramePool::new(frames).unwrap());
    // Tests run single-threaded against the pool: an allocation that finds
    // every frame held should fail at once, not wait for a holder.
    pool.set_held_grace(std::time::Duration::ZERO);
    let swap = Arc::new(MemSwap::new(slots));
    let machine = Machine::with_swap(pool, 2, swap.clone()).unwrap();
    Rig { machine, swap }
}

impl Rig {
    fn space(&self) -> Arc<AddressSpace> {
        AddressSpace::new(self.machine.clone())
    }

    fn anon(&self, s: &AddressSpace, pages: u64) -> u64 {
        s.mmap_anonymous(None, pages * PAGE, Prot::RW, MapFlags::PRIVATE)
            .unwrap()
    }

    fn write(&self, s: &AddressSpace, va: u64, data: &[u8]) {
        self.machine.cpu(0).write(s, va, data).unwrap();
    }

    fn read(&self, s: &AddressSpace, va: u64, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        self.machine.cpu(1).read(s, va, &mut b).unwrap();
        b
    }

    fn free(&self) -> usize {
        self.machine.pool().free_frames()
    }

    fn swap_in_use(&self) -> u32 {
        self.machine.swap().unwrap().stats().in_use
    }
}

fn tag(i: u64) -> [u8; 8] {
    (i * 0x9e37_79b9 + 1).to_le_bytes()
}

#[test]
fn a_working_set_four_times_the_pool_keeps_every_byte() {
    let r = rig(16, 256);
    let s = r.space();
    let va = r.anon(&s, 64);
    for round in 0..3u64 {
        for i in 0..64 {
            r.write(&s, va + i * PAGE + (i % 7) * 8, &tag(i + round));
        }
        for i in 0..64 {
            assert_eq!(
                r.read(&s, va + i * PAGE + (i % 7) * 8, 8),
                tag(i + round),
                "page {i} round {round}"
            );
        }
    }
    let st = r.machine.swap().unwrap().stats();
    assert!(st.page_outs > 0 && st.page_ins > 0, "{st:?}");
    assert!(s.paging_stats().swapped_out > 0);
    assert!(s.paging_stats().swap_ins > 0);
    drop(s);
    assert_eq!(r.free(), 16, "every frame back");
    assert_eq!(r.swap_in_use(), 0, "every location freed");
}

#[test]
fn page_out_leaves_swap_entries_and_a_fault_reads_the_page_back() {
    let r = rig(8, 16);
    let s = r.space();
    let va = r.anon(&s, 3);
    r.write(&s, va, b"zero");
    r.write(&s, va + 2 * PAGE, b"two");
    let rep = s.page_out(va, 3 * PAGE).unwrap();
    assert_eq!((rep.paged_out, rep.written, rep.kept), (2, 2, 0));
    assert_eq!(r.free(), 8);
    let e = s.pte(va);
    let loc = pte::swap_location(e).expect("a swap entry");
    assert_eq!(e & pte::PRESENT, 0);
    assert_eq!(pte::frame(e), 0);
    assert_eq!(s.pte(va + PAGE), 0, "never touched: nothing to page out");
    let swap = r.machine.swap().unwrap();
    assert_eq!(swap.entries(Location::new(loc)), 1);
    assert_eq!(r.read(&s, va, 4), b"zero");
    assert_eq!(r.read(&s, va + 2 * PAGE, 3), b"two");
    assert_eq!(s.fault_stats().swap_ins.load(Ordering::Relaxed), 2);
    // Clean copies in swap: a second page-out writes nothing.
    let writes = r.swap.writes();
    let rep = s.page_out(va, 3 * PAGE).unwrap();
    assert_eq!((rep.paged_out, rep.written), (2, 0));
    assert_eq!(r.swap.writes(), writes, "dropped without I/O");
    assert_eq!(r.read(&s, va, 4), b"zero");
    // Written after the page-in: written again.
    r.write(&s, va, b"ZERO");
    let rep = s.page_out(va, PAGE).unwrap();
    assert_eq!(rep.written, 1);
    assert_eq!(r.read(&s, va, 4), b"ZERO");
    s.munmap(va, 3 * PAGE).unwrap();
    assert_eq!(r.swap_in_use(), 0);
    assert_eq!(r.free(), 8);
}

#[test]
fn two_faults_on_one_swapped_page_do_one_page_in() {
    let r = rig(8, 16);
    let s = r.space();
    let va = r.anon(&s, 1);
    r.write(&s, va, b"x");
    s.page_out(va, PAGE).unwrap();
    for _ in 0..50 {
        let reads = r.swap.reads();
        std::thread::scope(|sc| {
            for cpu in 0..2 {
                let (m, s) = (&r.machine, &s);
                sc.spawn(move || {
                    let mut b = [0u8; 1];
                    m.cpu(cpu).read(s, va, &mut b).unwrap();
                    assert_eq!(&b, b"x");
                });
            }
        });
        assert_eq!(r.swap.reads() - reads, 1, "one page-in for two faults");
        s.page_out(va, PAGE).unwrap();
    }
}

#[test]
fn fork_of_a_swapped_range_shares_locations_and_frees_them_once() {
    let r = rig(16, 16);
    let parent = r.space();
    let va = r.anon(&parent, 2);
    r.write(&parent, va, b"p0");
    r.write(&parent, va + PAGE, b"p1");
    parent.page_out(va, 2 * PAGE).unwrap();
    let loc = Location::new(pte::swap_location(parent.pte(va)).unwrap());
    let swap = r.machine.swap().unwrap().clone();
    let child = parent.fork().unwrap();
    assert_eq!(child.pte(va), parent.pte(va), "the same swap entry");
    assert_eq!(swap.entries(loc), 2);
    // The child faults page 0 in: the parent's entry still names the location,
    // which keeps the frame cached (one page-in serves both).
    assert_eq!(r.read(&child, va, 2), b"p0");
    assert_eq!(swap.entries(loc), 1);
    let reads = r.swap.reads();
    assert_eq!(r.read(&parent, va, 2), b"p0");
    assert_eq!(r.swap.reads(), reads, "found in the swap cache");
    assert_eq!(pte::frame(parent.pte(va)), pte::frame(child.pte(va)));
    // Writes copy: each space keeps its own.
    r.write(&child, va, b"c0");
    assert_eq!(r.read(&parent, va, 2), b"p0");
    r.write(&parent, va, b"P0");
    assert_eq!(r.read(&child, va, 2), b"c0");
    assert_eq!(r.read(&parent, va, 2), b"P0");
    // Page 1: the parent unmaps it while the child's entry holds it.
    let loc1 = Location::new(pte::swap_location(parent.pte(va + PAGE)).unwrap());
    parent.munmap(va + PAGE, PAGE).unwrap();
    assert_eq!(swap.entries(loc1), 1, "the child's entry keeps it");
    assert_eq!(r.read(&child, va + PAGE, 2), b"p1");
    drop(child);
    drop(parent);
    assert_eq!(
        swap.stats().in_use,
        0,
        "each location freed once, by the last"
    );
    assert_eq!(r.free(), 16);
}

#[test]
fn a_swap_read_error_is_a_typed_fault_and_a_retry_succeeds() {
    let r = rig(8, 16);
    let s = r.space();
    let va = r.anon(&s, 1);
    r.write(&s, va, b"kept");
    s.page_out(va, PAGE).unwrap();
    let loc = Location::new(pte::swap_location(s.pte(va)).unwrap());
    r.swap.fail_reads(loc, true);
    let mut b = [0u8; 4];
    match r.machine.cpu(0).read(&s, va, &mut b) {
        Err(Fault::Io {
            source: pagemap::Error::SwapRead { location, .. },
            ..
        }) => assert_eq!(location, loc.get()),
        other => panic!("expected a swap read fault, got {other:?}"),
    }
    assert_eq!(
        pte::swap_location(s.pte(va)),
        Some(loc.get()),
        "still in swap"
    );
    assert_eq!(r.free(), 8, "the frame of the failed read went back");
    r.swap.fail_reads(loc, false);
    assert_eq!(r.read(&s, va, 4), b"kept");
}

#[test]
fn a_swap_write_error_keeps_the_page_in_memory() {
    let r = rig(8, 16);
    let s = r.space();
    let va = r.anon(&s, 1);
    r.write(&s, va, b"safe");
    r.swap.fail_all_writes(true);
    assert!(matches!(
        s.page_out(va, PAGE),
        Err(VmError::Swap(pagemap::Error::SwapWrite { .. }))
    ));
    assert_eq!(r.read(&s, va, 4), b"safe");
    r.write(&s, va, b"SAFE");
    r.swap.fail_all_writes(false);
    assert_eq!(s.page_out(va, PAGE).unwrap().written, 1);
    assert_eq!(r.read(&s, va, 4), b"SAFE");
}

#[test]
fn swap_full_is_a_typed_error_and_changes_nothing() {
    let r = rig(8, 2);
    let s = r.space();
    let va = r.anon(&s, 3);
    for i in 0..3 {
        r.write(&s, va + i * PAGE, &[i as u8 + 1]);
    }
    assert!(matches!(
        s.page_out(va, 3 * PAGE),
        Err(VmError::Swap(pagemap::Error::SwapFull { locations: 2 }))
    ));
    for i in 0..3 {
        assert_eq!(r.read(&s, va + i * PAGE, 1), [i as u8 + 1]);
    }
    assert_eq!(r.machine.swap().unwrap().stats().full, 1);
}

#[test]
fn a_full_swap_steals_the_location_of_a_clean_copy() {
    let r = rig(8, 1);
    let s = r.space();
    let va = r.anon(&s, 2);
    r.write(&s, va, b"a");
    r.write(&s, va + PAGE, b"b");
    s.page_out(va, PAGE).unwrap();
    assert_eq!(r.read(&s, va, 1), b"a"); // mapped again, clean copy in swap
                                         // Page 1 needs a location: the only one holds page 0's clean copy.
    assert_eq!(s.page_out(va + PAGE, PAGE).unwrap().paged_out, 1);
    assert_eq!(r.machine.swap().unwrap().stats().stolen, 1);
    assert_eq!(r.read(&s, va + PAGE, 1), b"b");
    assert_eq!(r.read(&s, va, 1), b"a", "page 0 kept its data in memory");
}

#[test]
fn evict_frame_moves_out_each_kind_of_frame() {
    let pool = Arc::new(FramePool::new(16).unwrap());
    pool.set_held_grace(std::time::Duration::ZERO);
    let machine = Machine::with_swap(pool.clone(), 1, Arc::new(MemSwap::new(16))).unwrap();
    let store = Arc::new(MemStore::new());
    store.set_page(0, &[7u8; PAGE_SIZE]);
    let file = PageMap::new(pool.clone(), store.clone());
    let s = AddressSpace::new(machine.clone());
    let cpu = machine.cpu(0);
    let shared = s
        .mmap(MapRequest::new(
            file.clone(),
            PAGE,
            Prot::RW,
            MapFlags::SHARED,
        ))
        .unwrap();
    let private = s
        .mmap(MapRequest::new(
            file.clone(),
            PAGE,
            Prot::RW,
            MapFlags::PRIVATE,
        ))
        .unwrap();
    let anon = s
        .mmap_anonymous(None, PAGE, Prot::RW, MapFlags::PRIVATE)
        .unwrap();
    cpu.write(&s, shared, b"S").unwrap(); // a dirty page-cache page, mapped
    cpu.write(&s, private, b"P").unwrap(); // a private copy of it
    cpu.write(&s, anon, b"A").unwrap(); // an anonymous page
    let frame = |va| FrameId::new(pte::frame(s.pte(va))).unwrap();
    let (fs, fp, fa) = (frame(shared), frame(private), frame(anon));
    let free = pool.free_frames();
    machine.evict_frame(fs).unwrap();
    assert_eq!(store.page(0).unwrap()[0], b'S', "written back first");
    machine.evict_frame(fp).unwrap();
    machine.evict_frame(fa).unwrap();
    assert_eq!(pool.free_frames(), free + 3);
    assert_eq!(machine.evict_frame(fa), Ok(()), "a free frame stays free");
    let mut b = [0u8; 1];
    for (va, want) in [(shared, b'S'), (private, b'P'), (anon, b'A')] {
        cpu.read(&s, va, &mut b).unwrap();
        assert_eq!(b[0], want);
    }
    // Pinned: refused, kept.
    s.mlock(anon, PAGE).unwrap();
    let fa = frame(anon);
    assert!(matches!(machine.evict_frame(fa), Err(pagemap::Error::Busy)));
    assert_ne!(s.pte(anon) & pte::PRESENT, 0);
    s.munlock(anon, PAGE).unwrap();
    machine.evict_frame(fa).unwrap();
    cpu.read(&s, anon, &mut b).unwrap();
    assert_eq!(b[0], b'A');
}

#[test]
fn mlocked_pages_stay_and_an_allocation_is_refused_when_all_are_pinned() {
    let r = rig(8, 64);
    let s = r.space();
    let va = r.anon(&s, 8);
    s.mlock(va, 8 * PAGE).unwrap();
    assert_eq!(r.free(), 0, "populated");
    for i in 0..8 {
        assert_ne!(s.pte(va + i * PAGE) & pte::MLOCKED, 0);
    }
    // Everything is pinned: a new page cannot be had, cleanly.
    let more = r.anon(&s, 1);
    assert!(matches!(
        r.machine.cpu(0).write(&s, more, b"x"),
        Err(Fault::OutOfMemory { .. })
    ));
    assert!(matches!(
        s.page_out(va, PAGE),
        Ok(vmr::PageOutReport {
            kept: 1,
            paged_out: 0,
            ..
        })
    ));
    // Unlocked: reclaim can take them again.
    s.munlock(va, 8 * PAGE).unwrap();
    r.write(&s, more, b"x");
    assert_eq!(r.read(&s, more, 1), b"x");
    // A fork's child does not inherit the lock.
    s.mlock(va, PAGE).unwrap();
    let child = s.fork().unwrap();
    assert_eq!(child.pte(va) & pte::MLOCKED, 0);
    assert!(child
        .regions()
        .iter()
        .all(|v| !v.flags().contains(MapFlags::LOCKED)));
}

#[test]
fn dontneed_drops_private_pages_and_their_swap_entries() {
    let r = rig(16, 16);
    let store = Arc::new(MemStore::new());
    store.set_page(0, &[9u8; PAGE_SIZE]);
    let file = PageMap::new(r.machine.pool().clone(), store);
    let s = r.space();
    let va = r.anon(&s, 2);
    r.write(&s, va, b"gone");
    r.write(&s, va + PAGE, b"out");
    s.page_out(va + PAGE, PAGE).unwrap();
    let pf = s
        .mmap(MapRequest::new(file, PAGE, Prot::RW, MapFlags::PRIVATE))
        .unwrap();
    r.write(&s, pf, b"copy");
    s.madvise(va, 2 * PAGE, Advice::DontNeed).unwrap();
    s.madvise(pf, PAGE, Advice::DontNeed).unwrap();
    assert_eq!(r.swap_in_use(), 0, "the swap entry's location freed");
    assert_eq!(r.read(&s, va, 4), [0; 4], "anonymous: zeroes");
    assert_eq!(r.read(&s, va + PAGE, 3), [0; 3]);
    assert_eq!(r.read(&s, pf, 4), [9; 4], "private file: the file's data");
    assert_eq!(s.regions().len(), 2, "regions unchanged");
    s.mlock(va, PAGE).unwrap();
    assert!(matches!(
        s.madvise(va, PAGE, Advice::DontNeed),
        Err(VmError::Locked { .. })
    ));
}

#[test]
fn madv_free_pages_are_dropped_unwritten_unless_written_again() {
    let r = rig(16, 16);
    let s = r.space();
    let va = r.anon(&s, 2);
    r.write(&s, va, b"old0");
    r.write(&s, va + PAGE, b"old1");
    s.madvise(va, 2 * PAGE, Advice::Free).unwrap();
    // Page 1 is written after the advice: its data must survive.
    r.write(&s, va + PAGE, b"new1");
    let writes = r.swap.writes();
    let rep = s.page_out(va, 2 * PAGE).unwrap();
    assert_eq!(rep.paged_out, 2);
    assert_eq!(r.swap.writes() - writes, 1, "only the written page");
    assert_eq!(r.machine.swap().unwrap().stats().lazy_freed, 1);
    assert_eq!(r.read(&s, va, 4), [0; 4], "dropped: zeroes");
    assert_eq!(r.read(&s, va + PAGE, 4), b"new1");
    // Refused on memory that is not anonymous.
    let file = PageMap::new(r.machine.pool().clone(), Arc::new(MemStore::new()));
    let pf = s
        .mmap(MapRequest::new(file, PAGE, Prot::RW, MapFlags::PRIVATE))
        .unwrap();
    assert!(matches!(
        s.madvise(pf, PAGE, Advice::Free),
        Err(VmError::NotAnonymous { .. })
    ));
}

#[test]
fn reclaim_pages_out_anonymous_memory_beside_the_page_cache() {
    let r = rig(32, 256);
    let store = Arc::new(MemStore::new());
    for i in 0..64 {
        store.set_page(i, &[i as u8; PAGE_SIZE]);
    }
    let file = PageMap::new(r.machine.pool().clone(), store);
    let s = r.space();
    let va = r.anon(&s, 48);
    for i in 0..48 {
        r.write(&s, va + i * PAGE, &tag(i));
    }
    // File reads need frames too: reclaim takes anonymous pages to swap.
    for i in 0..64 {
        let mut page = [0u8; PAGE_SIZE];
        file.load(i).unwrap().read_page(&mut page);
        assert_eq!(page[0], i as u8);
    }
    for i in 0..48 {
        assert_eq!(r.read(&s, va + i * PAGE, 8), tag(i), "page {i}");
    }
    let st = r.machine.pool().stats();
    assert!(st.reclaimed > 0);
    assert!(r.machine.swap().unwrap().stats().page_outs > 0);
}

#[test]
fn paging_without_swap_is_a_typed_error() {
    let m = Machine::new(Arc::new(FramePool::new(4).unwrap()), 1);
    let s = AddressSpace::new(m);
    let va = s
        .mmap_anonymous(None, PAGE, Prot::RW, MapFlags::PRIVATE)
        .unwrap();
    assert!(matches!(s.page_out(va, PAGE), Err(VmError::NoSwap)));
    assert!(matches!(
        s.page_out(va + PAGE, PAGE),
        Err(VmError::NoSwap | VmError::NoMapping { .. })
    ));
}

#[test]
fn serialized_paging_with_a_full_pool_pages_in() {
    // A page-in allocates, which reclaims, which pages out under the same
    // serialising lock: it must not be held across the allocation.
    let r = rig(16, 256);
    r.machine.swap().unwrap().set_serialized(true);
    let s = r.space();
    let va = r.anon(&s, 64);
    for round in 0..2u64 {
        for i in 0..64 {
            r.write(&s, va + i * PAGE, &tag(i + round));
        }
        for i in 0..64 {
            assert_eq!(r.read(&s, va + i * PAGE, 8), tag(i + round), "page {i}");
        }
    }
    let st = r.machine.swap().unwrap().stats();
    assert!(st.page_ins > 0 && st.page_outs > 0, "{st:?}");
}
