//! `pagemap` used the way a kernel uses it, with no `vmr`: frames from a
//! region of "physical memory" the kernel owns (an anonymous mmap with a
//! made-up physical base; a heap region under miri), handed out by
//! `pagemap`'s `RegionFrames` or by a frame source of the kernel's own;
//! page tables of its own whose entries hold physical frame numbers
//! (x86-64's layout); CPUs with TLBs that set accessed and dirty bits; a
//! [`Mapper`](pagemap::Mapper) and [`FlushTarget`](pagemap::FlushTarget)
//! over those tables; and a fault handler over the fault interface
//! ([`PageMap::map_page`], `map_pages`, `refault`, `page_mkwrite`). Each
//! scenario checks the data through the raw frame memory (the direct map)
//! and the store.
//!
//! Mutants of the mapper (a reap that drops dirty bits, a revoke or a clean
//! without a shootdown) must make a scenario fail: the harness can fail.
//!
//! Modules: `phys` (the region, the frame sources and their addresses),
//! `mmu` (entries, page tables, CPUs), `vma` (mappings, the Mapper, faults,
//! munmap), `dev` (a completion-based store served by a device thread).
//! `scripts/miri.sh` runs the single-threaded scenarios under miri.

mod kernel {
    pub mod dev;
    pub mod mmu;
    pub mod phys;
    pub mod vma;
}

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use kernel::dev::Device;
use kernel::mmu::{self, pte, Hw};
use kernel::phys::Layout;
use kernel::vma::{shootdowns, Fault, Mutant, Space};
use pagemap::{Batching, Error, FrameId, MemStore, PageMap, Pass, StoreError, PAGE_SIZE};

/// Frames of "physical memory" (small under miri).
const FRAMES: usize = if cfg!(miri) { 16 } else { 64 };
/// First virtual page of every address space here.
const VBASE: u64 = 0x100;
/// Both frame sources: `pagemap`'s RegionFrames, the kernel's own.
const LAYOUTS: [Layout; 2] = [Layout::Region, Layout::Kernel];
/// The sources most scenarios run over: under miri, whose time is
/// precious, RegionFrames alone (the kernel's source has its physical
/// memory and fault tests there).
const SCENARIO_LAYOUTS: &[Layout] = if cfg!(miri) {
    &[Layout::Region]
} else {
    &LAYOUTS
};
/// Virtual pages per address space.
const VPAGES: usize = 64;

/// The machine: owns the hardware, and checks at the end that the pool
/// is gone before the memory behind it, with every frame back in the
/// region's free list.
struct Machine {
    hw: Option<Arc<Hw>>,
}

impl Machine {
    fn new(cpus: usize, layout: Layout) -> Self {
        Self {
            hw: Some(Arc::new(Hw::new(FRAMES, cpus, layout))),
        }
    }

    fn hw(&self) -> &Arc<Hw> {
        self.hw.as_ref().unwrap()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let hw = self.hw.take().unwrap();
        match Arc::try_unwrap(hw) {
            Ok(mut hw) => {
                if Arc::strong_count(&hw.pool) != 1 {
                    // Something still reaches frames: keep the memory.
                    hw.mem.leak();
                    assert!(
                        std::thread::panicking(),
                        "the frame pool outlives its memory"
                    );
                } else if !std::thread::panicking() {
                    assert_eq!(
                        hw.pool.free_frames(),
                        FRAMES,
                        "every frame back in the region's free list"
                    );
                }
                // Fields drop in order: the pool, then the memory (munmap).
            }
            Err(hw) => {
                std::mem::forget(hw);
                assert!(std::thread::panicking(), "the machine outlives its users");
            }
        }
    }
}

/// The virtual address of byte `off` of virtual page `vpn`.
fn va(vpn: u64, off: usize) -> u64 {
    vpn * PAGE_SIZE as u64 + off as u64
}

/// The bytes the store holds for page `index` before any write.
fn pattern(index: u64) -> [u8; PAGE_SIZE] {
    let mut p = [0u8; PAGE_SIZE];
    // A word at a time (miri runs this too): bytes differ by page and offset.
    for (i, w) in p.chunks_exact_mut(8).enumerate() {
        let v = (index.wrapping_mul(0x9e37_79b9) << 32) ^ (i as u64 * 0x0101_0101);
        w.copy_from_slice(&v.to_le_bytes());
    }
    p
}

fn store_with(pages: u64) -> Arc<MemStore> {
    let store = Arc::new(MemStore::new());
    for i in 0..pages {
        store.set_page(i, &pattern(i));
    }
    store
}

/// The frame caching page `index` now.
fn frame_of(file: &PageMap, index: u64) -> FrameId {
    file.find(index).unwrap().expect("cached").frame()
}

/// A frame's bytes as the raw memory holds them (through the direct map,
/// from its physical address, not through the pool).
fn raw(hw: &Hw, frame: FrameId) -> Vec<u8> {
    mmu::frame_bytes(hw.mem.ptr_of_phys(hw.pool.phys_addr(frame)))
}

#[test]
fn physical_memory_is_the_region() {
    for layout in LAYOUTS {
        physical_memory_is_the_region_on(layout);
    }
}

fn physical_memory_is_the_region_on(layout: Layout) {
    let m = Machine::new(1, layout);
    let hw = m.hw();
    // (`pool_over` checked every frame's address and physical address.)
    let f = hw.pool.alloc_private().unwrap();
    let p = hw.pool.frame_ptr(f.id());
    assert!(hw.mem.contains(p));
    assert_eq!(hw.frame_of_phys(hw.pool.phys_addr(f.id())), f.id());
    // The pool's view and the raw memory are one.
    mmu::copy_in(p, 4088, b"rawbytes");
    let mut b = [0u8; 8];
    // SAFETY: the private frame is ours (no store fills it).
    unsafe { hw.pool.read(f.id(), 4088, &mut b) }.unwrap();
    assert_eq!(&b, b"rawbytes");
    f.write_page(&pattern(9));
    assert_eq!(raw(hw, f.id()), pattern(9));
    assert_eq!(hw.pool.free_frames(), FRAMES - 1);
    drop(f);
    assert_eq!(hw.pool.free_frames(), FRAMES);

    // A load reads straight into a frame of the region.
    let store = store_with(2);
    let file = PageMap::new(hw.pool.clone(), store.clone());
    let page = file.load(1).unwrap();
    assert!(hw.mem.contains(hw.pool.frame_ptr(page.frame())));
    assert_eq!(raw(hw, page.frame()), pattern(1));
    drop(page);
}

#[test]
fn fault_then_access() {
    for layout in LAYOUTS {
        fault_then_access_on(layout);
    }
}

fn fault_then_access_on(layout: Layout) {
    let m = Machine::new(2, layout);
    let hw = m.hw();
    let store = store_with(5);
    let file = PageMap::new(hw.pool.clone(), store.clone());
    let space = Space::new(hw, VBASE, VPAGES);
    space.mmap(&file, VBASE, 0, 5, Mutant::None);

    // A read fault: not cached (WouldBlock), loaded, retried; read-only.
    let mut b = [0u8; 16];
    space.read(0, va(VBASE + 1, 100), &mut b).unwrap();
    assert_eq!(b[..], pattern(1)[100..116]);
    let e = space.pt.get(VBASE + 1);
    let frame = frame_of(&file, 1);
    assert_eq!(
        pte::phys(e),
        hw.pool.phys_addr(frame),
        "the entry holds the physical address"
    );
    assert_eq!(e & (pte::P | pte::A | pte::W | pte::D), pte::P | pte::A);
    assert_eq!(raw(hw, frame), pattern(1));

    // A write through it: a write-protect fault makes it writable, and the
    // CPU sets the dirty bit. The bytes are in the frame's raw memory; the
    // page map does not know yet (only the entry does).
    space.write(1, va(VBASE + 1, 8), b"kernel!!").unwrap();
    let e = space.pt.get(VBASE + 1);
    assert_eq!(e & (pte::W | pte::D), pte::W | pte::D);
    assert_eq!(&raw(hw, frame)[8..16], b"kernel!!");
    assert!(!file.find(1).unwrap().unwrap().is_dirty());
    // The other CPU's cached read-only translation reaches the same memory.
    space.read(0, va(VBASE + 1, 8), &mut b[..8]).unwrap();
    assert_eq!(&b[..8], b"kernel!!");

    // Fault-around: a read fault maps the cached neighbours read-only.
    drop(file.load(3).unwrap());
    assert_eq!(space.pt.get(VBASE + 3), 0);
    space.read(0, va(VBASE + 2, 0), &mut b).unwrap();
    assert_eq!(space.pt.get(VBASE + 3) & (pte::P | pte::W), pte::P);
    assert_eq!(
        pte::phys(space.pt.get(VBASE + 3)),
        hw.pool.phys_addr(frame_of(&file, 3))
    );
    assert_eq!(space.pt.get(VBASE), 0, "not cached: not mapped");

    // A write fault on an empty entry (page 0), and on a read-only one.
    space.write(0, va(VBASE, 0), b"y").unwrap();
    assert_eq!(
        space.pt.get(VBASE) & (pte::P | pte::W | pte::D),
        pte::P | pte::W | pte::D
    );
    space.write(0, va(VBASE + 2, 0), b"x").unwrap();
    assert_eq!(
        space.pt.get(VBASE + 2) & (pte::P | pte::W | pte::D),
        pte::P | pte::W | pte::D
    );

    // No mapping there.
    assert!(
        matches!(space.read(0, va(VBASE + 10, 0), &mut b), Err(Fault::Segv(v)) if v == VBASE + 10)
    );
    // A failed read reaches the faulting access as an I/O error, with the
    // store's errno; the page can be faulted once the store recovers.
    store.fail_reads(4, true);
    match space.read(1, va(VBASE + 4, 0), &mut b) {
        Err(Fault::Io(Error::Read { index: 4, source })) => {
            assert_eq!(source.code(), StoreError::EIO)
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
    store.fail_reads(4, false);
    space.read(1, va(VBASE + 4, 0), &mut b).unwrap();
    assert_eq!(b[..], pattern(4)[..16]);

    // The store sees the write only once munmap hands the dirty bit over
    // and the page is written back.
    assert_eq!(store.page(1).unwrap()[..], pattern(1)[..]);
    space.munmap(VBASE);
    assert_eq!(space.nr_regions(), 0);
    assert_eq!(space.pt.get(VBASE + 1), 0);
    assert_eq!(file.dirty_indices(..), vec![0, 1, 2]);
    assert_eq!(file.writeback(..).written, 3);
    assert_eq!(&store.page(1).unwrap()[8..16], b"kernel!!");
    assert_eq!(store.page(2).unwrap()[0], b'x');
    assert_eq!(store.page(0).unwrap()[0], b'y');
}

/// Two spaces write to a shared file; a writeback harvests the dirty bits
/// with one shootdown per space; writes after it fault and are written by
/// the next one.
fn writeback_scenario(mutant: Mutant, layout: Layout) {
    let m = Machine::new(2, layout);
    let hw = m.hw();
    let store = store_with(4);
    let file = PageMap::new(hw.pool.clone(), store.clone());
    let a = Space::new(hw, VBASE, VPAGES);
    let b = Space::new(hw, VBASE, VPAGES);
    a.mmap(&file, VBASE, 0, 4, mutant);
    b.mmap(&file, VBASE + 16, 0, 4, mutant);
    a.write(0, va(VBASE, 0), b"a0").unwrap();
    b.write(1, va(VBASE + 17, 0), b"b1").unwrap();
    b.write(0, va(VBASE + 18, 0), b"b2").unwrap();
    let mut x = [0u8; 4];
    a.read(1, va(VBASE + 3, 0), &mut x).unwrap();
    let (sa, sb) = (shootdowns(&a), shootdowns(&b));

    let r = file.writeback(..);
    assert!(r.errors.is_empty());
    assert_eq!((r.harvested, r.written), (3, 3), "{r:?}");
    assert_eq!(&store.page(0).unwrap()[..2], b"a0");
    assert_eq!(&store.page(1).unwrap()[..2], b"b1");
    assert_eq!(&store.page(2).unwrap()[..2], b"b2");
    for (s, vpn) in [(&a, VBASE), (&b, VBASE + 17), (&b, VBASE + 18)] {
        assert_eq!(
            s.pt.get(vpn) & (pte::W | pte::D),
            0,
            "write-protected and clean"
        );
    }
    assert!(file.dirty_indices(..).is_empty());

    // The CPU writes again: its translation was shot down, so it faults,
    // the entry becomes writable and dirty, and the next writeback has it.
    a.write(0, va(VBASE, 0), b"A0").unwrap();
    let r2 = file.writeback(..);
    let stored = store.page(0).unwrap();
    assert!(
        &stored[..2] == b"A0",
        "lost write: the store has {:?} after a writeback, the frame {:?}",
        &stored[..2],
        &raw(hw, frame_of(&file, 0))[..2]
    );
    assert_eq!(
        (r2.harvested, r2.written, r2.shootdowns),
        (1, 1, 1),
        "{r2:?}"
    );
    assert_eq!(r.shootdowns, 2, "one shootdown per address space");
    assert_eq!((shootdowns(&a), shootdowns(&b)), (sa + 2, sb + 1));
    assert!(!a.pt.cached(VBASE) && !b.pt.cached(VBASE + 17));
}

#[test]
fn writeback_harvests_dirty_bits() {
    for &layout in SCENARIO_LAYOUTS {
        writeback_scenario(Mutant::None, layout);
    }
}

#[test]
#[cfg_attr(
    miri,
    ignore = "mutants check the protocol, not memory: native runs suffice"
)]
#[should_panic(expected = "lost write")]
fn mutant_clean_without_shootdown_is_caught() {
    writeback_scenario(Mutant::CleanNoShootdown, Layout::Kernel);
}

/// Removal of mapped pages: entries cleared, dirty data written first,
/// frames back in the region; a later access refaults.
fn removal_scenario(mutant: Mutant, layout: Layout) {
    let m = Machine::new(2, layout);
    let hw = m.hw();
    let store = store_with(4);
    let file = PageMap::new(hw.pool.clone(), store.clone());
    let space = Space::new(hw, VBASE, VPAGES);
    space.mmap(&file, VBASE, 0, 4, mutant);
    space.write(0, va(VBASE + 1, 0), b"dirty").unwrap();
    let mut x = [0u8; 4];
    space.read(1, va(VBASE + 2, 0), &mut x).unwrap();
    space.read(0, va(VBASE + 3, 0), &mut x).unwrap();
    let old = frame_of(&file, 1);
    assert_eq!(hw.pool.free_frames(), FRAMES - 3);

    let r = file.remove(..);
    assert!(r.errors.is_empty());
    let stored = store.page(1).unwrap();
    assert!(
        &stored[..5] == b"dirty",
        "lost write: removal freed the page without writing the CPU's bytes"
    );
    assert_eq!((r.removed, r.written), (3, 1), "{r:?}");
    for vpn in VBASE..VBASE + 4 {
        assert_eq!(space.pt.get(vpn), 0, "entry of vpn {vpn:#x} cleared");
    }
    assert_eq!(file.nr_pages(), 0);
    assert_eq!(
        hw.pool.free_frames(),
        FRAMES,
        "frames back in the region's free list"
    );
    assert_ne!(hw.pool.flags(old) & pagemap::flags::FREE, 0);

    // An access now refaults and reads the data back from the store (a
    // translation the removal forgot to shoot down reaches a free frame).
    space.write(0, va(VBASE + 1, 8), b"again").unwrap();
    let mut b = [0u8; 13];
    space.read(1, va(VBASE + 1, 0), &mut b).unwrap();
    assert_eq!(&b[..5], b"dirty");
    assert_eq!(&b[8..], b"again");
    assert_eq!(&raw(hw, frame_of(&file, 1))[..5], b"dirty");
    assert_eq!(r.shootdowns, 1, "one shootdown for the space");
    assert!(!space.pt.cached(VBASE + 2) && !space.pt.cached(VBASE + 3));
}

#[test]
fn removal_of_mapped_pages() {
    for &layout in SCENARIO_LAYOUTS {
        removal_scenario(Mutant::None, layout);
    }
}

#[test]
#[cfg_attr(
    miri,
    ignore = "mutants check the protocol, not memory: native runs suffice"
)]
#[should_panic(expected = "lost write")]
fn mutant_reap_dropping_dirty_bits_is_caught() {
    removal_scenario(Mutant::ReapDropsDirty, Layout::Region);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "mutants check the protocol, not memory: native runs suffice"
)]
#[should_panic(expected = "stale translation")]
fn mutant_revoke_without_shootdown_is_caught() {
    removal_scenario(Mutant::RevokeNoShootdown, Layout::Region);
}

/// A removal stepped pass by pass, the CPUs acting in between: a cached
/// translation still works until the shootdown; after it, a refault
/// rebuilds the revoked entry (its dirty bit kept) and keeps the page; the
/// reap leaves that entry and hands the others' dirty bits over.
#[test]
fn cpus_act_between_removal_passes() {
    for &layout in SCENARIO_LAYOUTS {
        cpus_act_between_removal_passes_on(layout);
    }
}

fn cpus_act_between_removal_passes_on(layout: Layout) {
    let m = Machine::new(2, layout);
    let hw = m.hw();
    let store = store_with(3);
    let file = PageMap::new(hw.pool.clone(), store.clone());
    let space = Space::new(hw, VBASE, VPAGES);
    space.mmap(&file, VBASE, 0, 3, Mutant::None);
    space.write(0, va(VBASE, 0), b"zero").unwrap();
    space.write(0, va(VBASE + 1, 0), b"one").unwrap();
    space.read(1, va(VBASE + 2, 0), &mut [0u8; 4]).unwrap();
    let frame0 = frame_of(&file, 0);

    let mut rm = file.begin_remove(.., Batching::PerSpace);
    assert_eq!(rm.step(), Pass::Marked);
    assert_eq!(rm.victims().len(), 3);
    assert_eq!(rm.step(), Pass::Revoked);
    let e = space.pt.get(VBASE);
    assert_eq!(
        e & (pte::P | pte::D),
        pte::D,
        "revoked: not present, dirty bit kept"
    );
    assert_eq!(
        pte::phys(e),
        hw.pool.phys_addr(frame0),
        "and still naming its frame"
    );
    // Until the shootdown, CPU 0's cached translation is live.
    space.write(0, va(VBASE, 16), b"before").unwrap();
    assert_eq!(rm.step(), Pass::ShotDown);
    assert!(!space.pt.cached(VBASE));
    // Now an access faults and rebuilds the entry: the page stays.
    space.write(1, va(VBASE, 32), b"refault").unwrap();
    assert_eq!(space.pt.get(VBASE) & (pte::P | pte::D), pte::P | pte::D);
    assert_eq!(rm.step(), Pass::Reaped);
    assert_ne!(
        space.pt.get(VBASE) & pte::P,
        0,
        "a refaulted entry is not reaped"
    );
    assert_eq!(space.pt.get(VBASE + 1), 0);
    assert_eq!(space.pt.get(VBASE + 2), 0);
    let r = rm.finish();
    assert_eq!((r.removed, r.written, r.raced), (2, 1, 1), "{r:?}");
    assert_eq!(file.cached_indices(..), vec![0]);
    assert_eq!(frame_of(&file, 0), frame0);
    assert_eq!(&store.page(1).unwrap()[..3], b"one");
    let bytes = raw(hw, frame0);
    assert_eq!(&bytes[..4], b"zero");
    assert_eq!(&bytes[16..22], b"before");
    assert_eq!(&bytes[32..39], b"refault");
    drop(space);
    assert_eq!(file.writeback(..).written, 1);
    assert_eq!(&store.page(0).unwrap()[16..22], b"before");
}

/// Write errors keep mapped data: a failed write-back leaves the page
/// dirty, a removal keeps it (its entries gone), a refault finds the data,
/// and a later writeback stores it.
#[test]
fn write_errors_keep_mapped_data() {
    let layout = Layout::Region;
    let m = Machine::new(2, layout);
    let hw = m.hw();
    let store = store_with(2);
    let file = PageMap::new(hw.pool.clone(), store.clone());
    let space = Space::new(hw, VBASE, VPAGES);
    space.mmap(&file, VBASE, 0, 2, Mutant::None);
    space.write(0, va(VBASE, 0), b"ok").unwrap();
    space.write(1, va(VBASE + 1, 0), b"kept").unwrap();
    store.fail_writes(1, true);
    let r = file.writeback(..);
    assert_eq!((r.written, r.errors.len()), (1, 1), "{r:?}");
    assert_eq!(file.dirty_indices(..), vec![1]);
    space.write(1, va(VBASE + 1, 8), b"more").unwrap();
    let r = file.remove(..);
    assert_eq!((r.removed, r.errors.len()), (1, 1), "{r:?}");
    assert_eq!(file.cached_indices(..), vec![1]);
    assert_eq!(
        space.pt.get(VBASE + 1),
        0,
        "its entries are gone all the same"
    );
    let mut b = [0u8; 12];
    space.read(0, va(VBASE + 1, 0), &mut b).unwrap();
    assert_eq!(&b[..4], b"kept");
    assert_eq!(&b[8..], b"more");
    assert_eq!(
        &store.page(1).unwrap()[..],
        &pattern(1)[..],
        "nothing stored yet"
    );
    store.fail_writes(1, false);
    drop(space);
    assert_eq!(file.writeback(..).written, 1);
    assert_eq!(&store.page(1).unwrap()[..12], &b[..]);
}

#[test]
fn truncate_cuts_mapped_pages() {
    for &layout in SCENARIO_LAYOUTS {
        truncate_cuts_mapped_pages_on(layout);
    }
}

fn truncate_cuts_mapped_pages_on(layout: Layout) {
    let m = Machine::new(2, layout);
    let hw = m.hw();
    let store = store_with(8);
    let file = PageMap::new(hw.pool.clone(), store.clone());
    let space = Space::new(hw, VBASE, VPAGES);
    space.mmap(&file, VBASE, 0, 8, Mutant::None);
    for i in 0..8 {
        space
            .write((i % 2) as usize, va(VBASE + i, 0), b"data")
            .unwrap();
    }
    // Someone holds page 6 (a read in progress): it is zeroed and detached
    // (out of the cache; its frame freed at the holder's put).
    let held = file.find(6).unwrap().unwrap();

    let r = file.truncate(4);
    assert_eq!((r.removed, r.zeroed), (3, 1), "{r:?}");
    for i in 4..8 {
        assert_eq!(space.pt.get(VBASE + i), 0, "entry of cut page {i} cleared");
        assert!(
            !space.pt.cached(VBASE + i),
            "translation of cut page {i} shot down"
        );
    }
    for i in 0..4 {
        assert_ne!(space.pt.get(VBASE + i) & pte::P, 0, "page {i} kept");
    }
    assert_eq!(file.cached_indices(..), vec![0, 1, 2, 3]);
    assert!(held.is_detached());
    assert!(
        raw(hw, held.frame()).iter().all(|&b| b == 0),
        "the cut page is zeroed"
    );
    assert!(!held.is_dirty());
    assert!(matches!(
        space.read(0, va(VBASE + 5, 0), &mut [0u8; 1]),
        Err(Fault::Sigbus(v)) if v == VBASE + 5
    ));
    assert!(
        matches!(space.write(1, va(VBASE + 6, 0), b"z"), Err(Fault::Sigbus(v)) if v == VBASE + 6)
    );
    assert!(store.page(5).is_none(), "the store was cut too");
    let mut b = [0u8; 4];
    space.read(1, va(VBASE + 2, 0), &mut b).unwrap();
    assert_eq!(&b, b"data");
    drop(held);
    drop(space);
    file.writeback(..);
    assert_eq!(&store.page(3).unwrap()[..4], b"data");
    assert!(store.page(6).is_none(), "the cut page is not written back");
}

#[test]
fn free_unused_after_munmap() {
    for &layout in SCENARIO_LAYOUTS {
        free_unused_after_munmap_on(layout);
    }
}

fn free_unused_after_munmap_on(layout: Layout) {
    let m = Machine::new(2, layout);
    let hw = m.hw();
    let store = store_with(6);
    let file = PageMap::new(hw.pool.clone(), store.clone());
    let space = Space::new(hw, VBASE, VPAGES);
    space.mmap(&file, VBASE, 0, 6, Mutant::None);
    let mut x = [0u8; 1];
    for i in 0..6 {
        if i < 3 {
            space.write(0, va(VBASE + i, 1), b"w").unwrap();
        } else {
            space.read(1, va(VBASE + i, 1), &mut x).unwrap();
        }
    }
    let r = file.free_unused();
    assert_eq!((r.freed, r.mapped), (0, 6), "mapped pages stay: {r:?}");
    let r = file.invalidate(..);
    assert_eq!((r.invalidated, r.mapped), (0, 6), "{r:?}");
    assert!((0..6).all(|i| space.pt.get(VBASE + i) & pte::P != 0));

    space.munmap(VBASE);
    assert_eq!(
        file.dirty_indices(..),
        vec![0, 1, 2],
        "munmap handed the dirty bits over"
    );
    for i in 0..6 {
        assert_eq!(space.pt.get(VBASE + i), 0);
        assert!(!space.pt.cached(VBASE + i));
    }
    let r = file.free_unused();
    assert!(r.errors.is_empty());
    assert_eq!((r.freed, r.written), (6, 3), "{r:?}");
    assert_eq!(hw.pool.free_frames(), FRAMES);
    for i in 0..3 {
        assert_eq!(store.page(i).unwrap()[1], b'w');
    }
}

/// Memory pressure: a mapped file twice the size of memory. When a fault
/// finds no free frame the kernel reclaims, removing the file's other
/// pages (mapped ones too: revoked, reaped, written back), and retries.
#[test]
#[cfg_attr(miri, ignore = "hundreds of page loads: too slow under miri")]
fn reclaim_under_memory_pressure() {
    for layout in LAYOUTS {
        let m = Machine::new(2, layout);
        let hw = m.hw();
        let pages = 2 * FRAMES as u64;
        let store = Arc::new(MemStore::new());
        let file = PageMap::new(hw.pool.clone(), store.clone());
        let space = Space::new(hw, VBASE, pages as usize);
        space.mmap(&file, VBASE, 0, pages, Mutant::None);
        let mut reclaims = 0;
        for round in 0..3usize {
            for p in 0..pages {
                let v = p * 10 + round as u64;
                loop {
                    let cpu = (p % 2) as usize;
                    match space.write(cpu, va(VBASE + p, round * 8), &v.to_le_bytes()) {
                        Ok(()) => break,
                        Err(Fault::Io(Error::PoolExhausted { .. })) => {
                            reclaims += 1;
                            let r1 = file.remove(..p);
                            let r2 = file.remove(p + 1..);
                            assert!(r1.errors.is_empty() && r2.errors.is_empty());
                            assert!(r1.removed + r2.removed > 0, "nothing to reclaim");
                        }
                        Err(e) => panic!("page {p}: {e:?}"),
                    }
                }
            }
        }
        // The pool reclaims by itself now (mapped pages unmapped, dirty ones
        // written back first); the manual removal above is the fallback
        // for a pool with nothing reclaimable, which never happens here.
        let stats = hw.pool.stats();
        assert_eq!(reclaims, 0, "a load failed though pages were reclaimable");
        assert!(stats.direct_reclaims >= 3, "{stats:?}");
        assert!(
            stats.maps.evicted_mapped > 0 && stats.maps.evicted_dirty > 0,
            "{stats:?}"
        );
        drop(space);
        assert!(file.writeback(..).errors.is_empty());
        for p in 0..pages {
            let stored = store.page(p).unwrap();
            for round in 0..3 {
                let v = p * 10 + round as u64;
                assert_eq!(
                    stored[round * 8..round * 8 + 8],
                    v.to_le_bytes(),
                    "page {p}"
                );
            }
        }
    }
}

/// How many writes each racing CPU makes.
const RACE_WRITES: u64 = 10_000;
const RACE_PAGES: u64 = 4;

/// Page, word and value of write `i` (1-based) of writer `k` (0 or 1):
/// the writers own alternate words.
fn race_slot(k: u64, i: u64) -> (u64, usize, u64) {
    let word = 2 * ((i / RACE_PAGES) % 256) + k;
    (i % RACE_PAGES, word as usize, (i << 1) | k)
}

/// The pages' contents after the racing writes (over zeroed pages).
fn race_expected(writers: u64) -> Vec<[u8; PAGE_SIZE]> {
    let mut pages = vec![[0u8; PAGE_SIZE]; RACE_PAGES as usize];
    for k in 0..writers {
        for i in 1..=RACE_WRITES {
            let (p, w, v) = race_slot(k, i);
            pages[p as usize][w * 8..w * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
    }
    pages
}

/// What runs against the writing CPUs.
#[derive(Clone, Copy, Debug)]
struct Race {
    /// Writing CPUs, each in an address space of its own (1 or 2).
    writers: u64,
    /// A thread writing the file back in a loop.
    writeback: bool,
    /// A thread removing every page in a loop (mapped ones are revoked,
    /// reaped and refaulted).
    remove: bool,
    /// The writers munmap and mmap again every 64 writes.
    remap: bool,
}

/// CPUs write while other threads keep writing back or removing the
/// file; at the end the frames and then the store hold every last write:
/// none lost. `stored(p)`: page `p` as the store holds it.
fn race(file: &Arc<PageMap>, hw: &Arc<Hw>, race: Race, stored: &dyn Fn(u64) -> Vec<u8>) {
    let done = AtomicBool::new(false);
    let rounds = std::thread::scope(|s| {
        let background: Vec<_> = [(race.writeback, false), (race.remove, true)]
            .into_iter()
            .filter(|&(on, _)| on)
            .map(|(_, remove)| {
                let done = &done;
                s.spawn(move || {
                    let mut rounds = 0u64;
                    // Relaxed: a stop flag; the join orders everything else.
                    while !done.load(Ordering::Relaxed) {
                        if remove {
                            assert!(file.remove(..).errors.is_empty());
                        } else {
                            assert!(file.writeback(..).errors.is_empty());
                        }
                        rounds += 1;
                    }
                    rounds
                })
            })
            .collect();
        // Stops the loops even if a writer's check panics (the scope
        // waits for every thread before it unwinds).
        let _stop = SetOnDrop(&done);
        let writers: Vec<_> = (0..race.writers)
            .map(|k| {
                s.spawn(move || {
                    let space = Space::new(hw, VBASE, VPAGES);
                    space.mmap(file, VBASE, 0, RACE_PAGES, Mutant::None);
                    for i in 1..=RACE_WRITES {
                        let (p, w, v) = race_slot(k, i);
                        space
                            .write(k as usize, va(VBASE + p, w * 8), &v.to_le_bytes())
                            .unwrap();
                        if race.remap && i % 64 == 0 {
                            space.munmap(VBASE);
                            space.mmap(file, VBASE, 0, RACE_PAGES, Mutant::None);
                        }
                    }
                    // Exit: munmap hands the last dirty bits over.
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        // Relaxed: the stop flag (the joins order the rest).
        done.store(true, Ordering::Relaxed);
        background
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<u64>>()
    });
    assert!(rounds.iter().all(|&r| r > 0), "{rounds:?}");
    let expected = race_expected(race.writers);
    // The frames hold every last write (read by another CPU).
    let space = Space::new(hw, VBASE, VPAGES);
    space.mmap(file, VBASE, 0, RACE_PAGES, Mutant::None);
    for p in 0..RACE_PAGES {
        let mut got = vec![0u8; PAGE_SIZE];
        space.read(2, va(VBASE + p, 0), &mut got).unwrap();
        assert!(
            got[..] == expected[p as usize][..],
            "{race:?}: lost update in page {p}"
        );
        assert!(raw(hw, frame_of(file, p))[..] == expected[p as usize][..]);
    }
    drop(space);
    assert!(file.writeback(..).errors.is_empty());
    for p in 0..RACE_PAGES {
        let got = stored(p);
        assert!(
            got[..] == expected[p as usize][..],
            "{race:?}: lost update in the store, page {p}"
        );
    }
}

/// Sets its flag when dropped, unwinding included.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        // SeqCst: the stop flags' loads are SeqCst or Relaxed; either way
        // only termination depends on it.
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Every combination worth running, over one file.
fn races(file: &Arc<PageMap>, hw: &Arc<Hw>, stored: &dyn Fn(u64) -> Vec<u8>) {
    for (writeback, remove, remap) in [
        (true, false, false),
        (false, true, false),
        (true, true, false),
        (true, true, true),
    ] {
        let r = Race {
            writers: 2,
            writeback,
            remove,
            remap,
        };
        race(file, hw, r, stored);
        // The next round starts over zeroed pages.
        assert!(file.remove(..).errors.is_empty());
        assert_eq!(file.nr_pages(), 0);
        for p in 0..RACE_PAGES {
            file.load(p).unwrap().write(0, &[0; PAGE_SIZE]).unwrap();
        }
        assert!(file.writeback(..).errors.is_empty());
        file.remove(..);
    }
}

#[test]
#[cfg_attr(miri, ignore = "threads: too slow under miri")]
fn cpu_writes_race_writeback_and_removal() {
    let m = Machine::new(3, Layout::Kernel);
    let hw = m.hw();
    let store = Arc::new(MemStore::new());
    let file = PageMap::new(hw.pool.clone(), store.clone());
    races(&file, hw, &|p| store.page(p).unwrap().to_vec());
}

#[test]
#[cfg_attr(miri, ignore = "threads: too slow under miri")]
fn completion_store_races() {
    let m = Machine::new(3, Layout::Region);
    let hw = m.hw();
    let dev = Arc::new(Device::new(hw));
    for i in 0..2 {
        dev.set_page(i, &pattern(i));
    }
    let file = PageMap::with_submit_store(hw.pool.clone(), dev.clone());
    // A fault's load completes on the device thread, into the frame.
    let space = Space::new(hw, VBASE, VPAGES);
    space.mmap(&file, VBASE + 32, 0, 2, Mutant::None);
    let mut b = [0u8; 8];
    space.read(0, va(VBASE + 33, 16), &mut b).unwrap();
    assert_eq!(b[..], pattern(1)[16..24]);
    assert_eq!(raw(hw, frame_of(&file, 1)), pattern(1));
    // A write-back DMAs out of the frame on the device thread.
    space.write(1, va(VBASE + 32, 0), b"dma").unwrap();
    drop(space);
    assert_eq!(file.writeback(..).written, 1);
    assert_eq!(&dev.page(0).unwrap()[..3], b"dma");
    file.remove(..);
    for i in 0..RACE_PAGES {
        dev.set_page(i, &[0; PAGE_SIZE]);
    }
    races(&file, hw, &|p| dev.page(p).unwrap().to_vec());
}

/// A CPU keeps writing every page while the file is truncated: once
/// truncate has returned, every access to a cut page is SIGBUS (no entry
/// and no translation survives it), and no access reaches a freed frame.
#[test]
#[cfg_attr(miri, ignore = "threads: too slow under miri")]
fn truncate_races_a_writing_cpu() {
    for round in 0..20u64 {
        let m = Machine::new(2, LAYOUTS[round as usize % 2]);
        let hw = m.hw();
        let store = Arc::new(MemStore::new());
        let file = PageMap::new(hw.pool.clone(), store.clone());
        let truncated = AtomicBool::new(false);
        let abort = AtomicBool::new(false);
        let end = 2 + round % 5;
        std::thread::scope(|s| {
            let writer = s.spawn(|| {
                let space = Space::new(hw, VBASE, VPAGES);
                space.mmap(&file, VBASE, 0, 8, Mutant::None);
                let mut sigbus = [false; 8];
                let mut i = 0u64;
                // SeqCst: as the flags'; only ends the loop.
                while sigbus[end as usize..].iter().any(|&b| !b) && !abort.load(Ordering::SeqCst) {
                    let p = i % 8;
                    i += 1;
                    // SeqCst: read before the access starts; truncate's
                    // return happens-before the flag's store.
                    let after = truncated.load(Ordering::SeqCst);
                    match space.write(0, va(VBASE + p, 0), &i.to_le_bytes()) {
                        Ok(()) => assert!(
                            !(after && p >= end),
                            "page {p} written after truncate to {end} returned"
                        ),
                        Err(Fault::Sigbus(_)) => {
                            assert!(p >= end, "SIGBUS on page {p} inside the file");
                            sigbus[p as usize] = true;
                        }
                        Err(e) => panic!("{e:?}"),
                    }
                }
                i
            });
            let _abort = SetOnDrop(&abort); // a failed check below ends the writer
            std::thread::yield_now();
            file.truncate(end);
            truncated.store(true, Ordering::SeqCst);
            assert!(writer.join().unwrap() > 0);
        });
        assert_eq!(file.cached_indices(end..), Vec::<u64>::new());
        assert!(file.writeback(..).errors.is_empty());
        assert!(store.page(end).is_none());
    }
}

/// Truncates that cut and regrow the file race a writing CPU and a
/// writeback loop: no access reaches a freed frame or installs over
/// another frame's entry (the harness's own checks), the pages never cut
/// keep every last write, and the rest end up in the store as in the cache.
#[test]
#[cfg_attr(miri, ignore = "threads: too slow under miri")]
fn truncates_race_writes_and_writeback() {
    const KEPT: u64 = 2;
    const PAGES: u64 = 8;
    const WRITES: u64 = 8_000;
    let m = Machine::new(2, Layout::Kernel);
    let hw = m.hw();
    let store = Arc::new(MemStore::new());
    let file = PageMap::new(hw.pool.clone(), store.clone());
    let done = AtomicBool::new(false);
    // Writes made so far, and truncates (Relaxed: they only pace the two
    // threads, each waiting for the other's progress).
    let (progress, phases) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut expected = vec![[0u8; PAGE_SIZE]; KEPT as usize];
    std::thread::scope(|s| {
        let (stop, progress, phases) = (&done, &progress, &phases);
        let file = &file;
        let cutter = s.spawn(move || {
            // Ends the writer's waits if a check here panics.
            let _stop = SetOnDrop(stop);
            let mut phase = 0u64;
            // Relaxed: a stop flag; the join orders everything else.
            while !stop.load(Ordering::Relaxed) {
                // Cut, then regrow, each for about PAGES writes: writes land
                // on pages the next cut zeroes or removes, and SIGBUS between.
                let r = file.truncate(if phase.is_multiple_of(2) { KEPT } else { PAGES });
                assert!(r.errors.is_empty(), "{r:?}");
                phase += 1;
                phases.store(phase, Ordering::Relaxed);
                let from = progress.load(Ordering::Relaxed);
                while progress.load(Ordering::Relaxed) < from + PAGES
                    && !stop.load(Ordering::Relaxed)
                {
                    std::thread::yield_now();
                }
            }
            phase
        });
        let flusher = s.spawn(move || {
            // Relaxed: as the cutter's.
            while !stop.load(Ordering::Relaxed) {
                assert!(file.writeback(..).errors.is_empty());
            }
        });
        let _stop = SetOnDrop(&done);
        let space = Space::new(hw, VBASE, VPAGES);
        space.mmap(file, VBASE, 0, PAGES, Mutant::None);
        let (mut sigbus, mut cut_pages_written) = (0u64, 0u64);
        for i in 1..=WRITES {
            progress.store(i, Ordering::Relaxed);
            while phases.load(Ordering::Relaxed) < i / PAGES && !stop.load(Ordering::Relaxed) {
                std::thread::yield_now();
            }
            let p = i % PAGES;
            let w = ((i / PAGES) % 512) as usize;
            match space.write(0, va(VBASE + p, w * 8), &i.to_le_bytes()) {
                Ok(()) => {
                    cut_pages_written += u64::from(p >= KEPT);
                    if p < KEPT {
                        expected[p as usize][w * 8..w * 8 + 8].copy_from_slice(&i.to_le_bytes());
                    }
                }
                Err(Fault::Sigbus(_)) if p >= KEPT => sigbus += 1,
                Err(e) => panic!("write {i} to page {p}: {e:?}"),
            }
        }
        // Relaxed: the stop flag (the joins order the rest).
        done.store(true, Ordering::Relaxed);
        assert!(cutter.join().unwrap() > 0);
        flusher.join().unwrap();
        assert!(
            sigbus > 0 && cut_pages_written > 0,
            "{sigbus} SIGBUS, {cut_pages_written} writes to pages cut at times"
        );
    });
    assert!(file.writeback(..).errors.is_empty());
    for p in 0..KEPT {
        assert!(
            store.page(p).unwrap()[..] == expected[p as usize][..],
            "lost update in page {p}"
        );
        assert!(raw(hw, frame_of(&file, p))[..] == expected[p as usize][..]);
    }
    for p in KEPT..PAGES {
        if let Some(page) = file.find(p).unwrap() {
            let stored = store.page(p).unwrap_or_else(|| Box::new([0; PAGE_SIZE]));
            assert!(
                raw(hw, page.frame())[..] == stored[..],
                "page {p}: store and cache differ"
            );
        }
    }
}
