//! "Physical memory": a region the kernel owns, handed to `pagemap` as a
//! [`RegionFrames`] with a made-up physical base, and the kernel's direct
//! map over it (physical address -> pointer).
//!
//! Natively the region is an anonymous `mmap`; under miri, which this
//! harness must also run under, a page-aligned zeroed heap allocation.

use std::ptr::NonNull;
use std::sync::Arc;

use pagemap::{flags, FrameId, FramePool, RegionFrames, PAGE_SIZE};

/// Physical address of the region's first byte (any page-aligned value
/// whose frame number is not 0 would do: 0 in a page table entry is empty).
pub const PHYS_BASE: u64 = 0x8000_0000;

/// The region: `frames` pages at `base`, unmapped (or freed) on drop unless
/// something may still point into it.
pub struct PhysMem {
    base: NonNull<u8>,
    frames: usize,
    leak: bool,
}

// SAFETY: the region is plain memory; who may touch which frame is decided
// by the frame pool and the page tables, not by this owner.
unsafe impl Send for PhysMem {}
// SAFETY: as for Send.
unsafe impl Sync for PhysMem {}

impl PhysMem {
    /// A zeroed region of `frames` pages.
    pub fn new(frames: usize) -> Self {
        Self {
            base: alloc_region(frames),
            frames,
            leak: false,
        }
    }

    /// The region's first byte.
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Pages in the region.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The direct map: the CPU address of physical address `phys`.
    ///
    /// # Panics
    /// If `phys` is outside the region.
    pub fn ptr_of_phys(&self, phys: u64) -> NonNull<u8> {
        let off = phys
            .checked_sub(PHYS_BASE)
            .filter(|&o| o < (self.frames * PAGE_SIZE) as u64)
            .unwrap_or_else(|| panic!("physical address {phys:#x} is not in the region"));
        // SAFETY: `off` is inside the region (checked above).
        unsafe { self.base.add(off as usize) }
    }

    /// Whether `p` points into the region.
    pub fn contains(&self, p: NonNull<u8>) -> bool {
        let b = self.base.as_ptr() as usize;
        (b..b + self.frames * PAGE_SIZE).contains(&(p.as_ptr() as usize))
    }

    /// Keeps the memory mapped forever (something may still use it).
    pub fn leak(&mut self) {
        self.leak = true;
    }
}

impl Drop for PhysMem {
    fn drop(&mut self) {
        if !self.leak {
            free_region(self.base, self.frames);
        }
    }
}

#[cfg(not(miri))]
fn alloc_region(frames: usize) -> NonNull<u8> {
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing touches no existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            frames * PAGE_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap of {frames} frames failed");
    NonNull::new(p.cast()).expect("mmap returned null")
}

#[cfg(not(miri))]
fn free_region(base: NonNull<u8>, frames: usize) {
    // SAFETY: `alloc_region` mapped exactly this range, and the owner checked
    // (`Machine`'s drop) that no pool over it is left.
    let r = unsafe { libc::munmap(base.as_ptr().cast(), frames * PAGE_SIZE) };
    assert_eq!(r, 0, "munmap failed");
}

#[cfg(miri)]
fn layout(frames: usize) -> std::alloc::Layout {
    std::alloc::Layout::from_size_align(frames * PAGE_SIZE, PAGE_SIZE).expect("layout")
}

#[cfg(miri)]
fn alloc_region(frames: usize) -> NonNull<u8> {
    // SAFETY: the layout's size is not zero (tests ask for frames >= 1).
    NonNull::new(unsafe { std::alloc::alloc_zeroed(layout(frames)) }).expect("allocation failed")
}

#[cfg(miri)]
fn free_region(base: NonNull<u8>, frames: usize) {
    // SAFETY: `alloc_region` allocated it with this layout; no pool is left.
    unsafe { std::alloc::dealloc(base.as_ptr(), layout(frames)) }
}

/// A frame pool over the region, its addresses checked.
///
/// The caller (`Machine`) drops the pool before the region.
pub fn pool_over(mem: &PhysMem) -> Arc<FramePool> {
    // SAFETY: the region is valid for reads and writes and used by nothing
    // else; `Machine` keeps it mapped until the pool is gone (it leaks the
    // region if the pool outlives it).
    let source = unsafe { RegionFrames::new(mem.base(), mem.frames(), PHYS_BASE) }
        .expect("a region of a valid size");
    let pool = Arc::new(FramePool::with_source(source).expect("a pool over the region"));
    assert_eq!(pool.capacity(), mem.frames());
    assert_eq!(pool.free_frames(), mem.frames(), "every frame starts free");
    for raw in 1..=mem.frames() as u32 {
        let id = FrameId::new(raw).unwrap();
        let off = (raw as usize - 1) * PAGE_SIZE;
        assert_eq!(
            pool.frame_ptr(id).as_ptr() as usize,
            mem.base().as_ptr() as usize + off,
            "frame {id:?} is not where the region puts it"
        );
        assert_eq!(pool.phys_addr(id), PHYS_BASE + off as u64);
        assert_eq!(pool.source().frame_ptr(id), pool.frame_ptr(id));
        assert_ne!(pool.flags(id) & flags::FREE, 0);
    }
    pool
}

/// The frame whose memory has physical address `phys` (the inverse of
/// `phys_addr`: the kernel's pfn -> frame id).
pub fn frame_of_phys(mem: &PhysMem, phys: u64) -> FrameId {
    assert_eq!(
        phys % PAGE_SIZE as u64,
        0,
        "{phys:#x} is not a frame address"
    );
    let off = phys - PHYS_BASE;
    assert!(
        off < (mem.frames() * PAGE_SIZE) as u64,
        "{phys:#x} is not in the region"
    );
    FrameId::new((off / PAGE_SIZE as u64) as u32 + 1).unwrap()
}
