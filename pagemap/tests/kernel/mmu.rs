//! The hardware: page table entries in the shape of x86-64's, page tables
//! (one flat array of entries per address space), and CPUs with a small
//! TLB each that walk the tables, set the accessed and dirty bits as the
//! hardware does, and reach frame memory through the kernel's direct map.
//!
//! A TLB entry caches a translation, and whether its dirty bit is already
//! set: a write through a cached dirty translation touches no entry (as on
//! x86), so an unmapper that forgets a shootdown loses writes here as it
//! would on a real machine.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use pagemap::{flags, FlushTarget, FrameId, FramePool, PAGE_SIZE};

use super::phys::{self, Layout, PhysMem};

/// Page table entry bits (x86-64's positions).
pub mod pte {
    /// Present: the CPU may use the entry.
    pub const P: u64 = 1 << 0;
    /// Writable.
    pub const W: u64 = 1 << 1;
    /// Accessed: set by the CPU on a walk.
    pub const A: u64 = 1 << 5;
    /// Dirty: set by the CPU on the first write through the entry.
    pub const D: u64 = 1 << 6;
    /// The physical address of the frame (bits 12..51).
    pub const ADDR: u64 = 0x000f_ffff_ffff_f000;

    /// An entry for the frame at physical address `phys`.
    pub fn make(phys: u64, bits: u64) -> u64 {
        assert_eq!(phys & !ADDR, 0, "{phys:#x} is not a frame address");
        phys | bits
    }

    /// The physical address an entry names (0: none; an entry that is not
    /// present may still name one: a removal revoked it).
    pub fn phys(e: u64) -> u64 {
        e & ADDR
    }
}

/// Translations a CPU caches.
const TLB_ENTRIES: usize = 8;

#[derive(Clone, Copy, Debug)]
struct Tlbe {
    space: u64,
    vpn: u64,
    phys: u64,
    writable: bool,
    /// The entry's dirty bit was set when this was cached (or by a write
    /// through it): further writes do not touch the entry.
    dirty: bool,
}

/// One CPU: its TLB. The TLB lock is held across a whole access, so a
/// shootdown (which takes it) returns only once no access through a
/// dropped translation is in progress: the IPI's acknowledgement.
#[derive(Default)]
pub struct Cpu {
    tlb: Mutex<Vec<Tlbe>>,
}

impl Cpu {
    fn tlb(&self) -> MutexGuard<'_, Vec<Tlbe>> {
        // A mutant's detected stale access panics with the lock held; the
        // unwinding test still shoots down (drops flush), so no poison.
        self.tlb.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn invalidate(&self, space: u64, pages: Option<(u64, u64)>) {
        self.tlb()
            .retain(|e| e.space != space || pages.is_some_and(|(lo, hi)| e.vpn < lo || e.vpn > hi));
    }
}

/// The machine: physical memory, its frame pool, and the CPUs.
pub struct Hw {
    /// Frames over `mem` (dropped before it: see `Machine`).
    pub pool: Arc<FramePool>,
    pub mem: PhysMem,
    /// Which frame lives where in `mem`.
    pub layout: Layout,
    pub cpus: Vec<Cpu>,
    next_space: AtomicU64,
}

/// Why an access did not complete: the fault the CPU takes.
#[derive(Debug, PartialEq, Eq)]
pub struct NotMapped;

impl Hw {
    pub fn new(frames: usize, cpus: usize, layout: Layout) -> Self {
        let mem = PhysMem::new(frames);
        let pool = phys::pool_over(&mem, layout);
        Self {
            pool,
            mem,
            layout,
            cpus: (0..cpus).map(|_| Cpu::default()).collect(),
            next_space: AtomicU64::new(1),
        }
    }

    /// The frame an entry's physical address names.
    pub fn frame_of_phys(&self, phys: u64) -> FrameId {
        phys::frame_of_phys(&self.mem, self.layout, phys)
    }

    /// The memory of the frame at `phys`, through the direct map, checked
    /// against the pool's own view of the frame.
    ///
    /// # Panics
    /// If the frame is free: a CPU reached it through a translation that
    /// outlived its page (a missing shootdown), the use-after-free a
    /// kernel's page poisoning would catch.
    pub fn frame_mem(&self, phys: u64) -> NonNull<u8> {
        let id = self.frame_of_phys(phys);
        let p = self.mem.ptr_of_phys(phys);
        assert_eq!(
            p,
            self.pool.frame_ptr(id),
            "direct map disagrees with the pool"
        );
        assert!(
            self.pool.flags(id) & flags::FREE == 0,
            "stale translation: a CPU reached free frame {id:?} (phys {phys:#x})"
        );
        p
    }

    /// A new page table of `pages` entries for virtual pages `vbase..`.
    pub fn page_table(self: &Arc<Self>, vbase: u64, pages: usize) -> Arc<PageTable> {
        Arc::new(PageTable {
            // Relaxed: a unique id is all it gives.
            id: self.next_space.fetch_add(1, Ordering::Relaxed),
            vbase,
            ptes: (0..pages).map(|_| AtomicU64::new(0)).collect(),
            hw: self.clone(),
            shootdowns: AtomicU64::new(0),
        })
    }

    /// CPU `cpu` accesses virtual page `vpn` of `pt` (a write if `write`),
    /// running `f` on the frame's memory with the translation held (the
    /// TLB lock: a shootdown waits for it). `Err(NotMapped)` is the page
    /// fault: the caller handles it and retries.
    pub fn access<R>(
        &self,
        cpu: usize,
        pt: &PageTable,
        vpn: u64,
        write: bool,
        f: impl FnOnce(NonNull<u8>) -> R,
    ) -> Result<R, NotMapped> {
        let mut tlb = self.cpus[cpu].tlb();
        let i = match tlb.iter().position(|e| e.space == pt.id && e.vpn == vpn) {
            Some(i) => i,
            None => {
                let e = walk(pt.entry(vpn), write)?;
                if tlb.len() == TLB_ENTRIES {
                    tlb.remove(0);
                }
                tlb.push(Tlbe {
                    space: pt.id,
                    vpn,
                    phys: pte::phys(e),
                    writable: e & pte::W != 0,
                    dirty: e & pte::D != 0,
                });
                tlb.len() - 1
            }
        };
        if write && !tlb[i].writable {
            // A write-protect fault drops the cached translation.
            tlb.remove(i);
            return Err(NotMapped);
        }
        if write && !tlb[i].dirty {
            // First write through a clean translation: the CPU sets the
            // entry's dirty bit with a locked read-modify-write that
            // re-checks the entry (x86 re-walks), else faults.
            match set_dirty(pt.entry(vpn), tlb[i].phys) {
                Ok(()) => tlb[i].dirty = true,
                Err(NotMapped) => {
                    tlb.remove(i);
                    return Err(NotMapped);
                }
            }
        }
        let mem = self.frame_mem(tlb[i].phys);
        Ok(f(mem))
    }
}

/// The hardware walk: a present entry (writable, for a write) gets its
/// accessed bit (and dirty bit, for a write) in one atomic update.
fn walk(entry: &AtomicU64, write: bool) -> Result<u64, NotMapped> {
    // Acquire: pairs with the Release of the fault that installed the entry,
    // so the page's contents (filled before it was installed) are visible.
    let mut old = entry.load(Ordering::Acquire);
    loop {
        if old & pte::P == 0 || (write && old & pte::W == 0) {
            return Err(NotMapped);
        }
        let new = old | pte::A | if write { pte::D } else { 0 };
        if new == old {
            return Ok(new);
        }
        // AcqRel: as the load above; Release publishes nothing, but the
        // bit must not be lost to a concurrent kernel update (the CAS).
        match entry.compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(new),
            Err(v) => old = v,
        }
    }
}

/// Sets the dirty bit of an entry still present, writable and naming
/// `phys`.
fn set_dirty(entry: &AtomicU64, phys: u64) -> Result<(), NotMapped> {
    // Acquire/AcqRel: as `walk` (pairs with the installing fault's Release).
    let mut old = entry.load(Ordering::Acquire);
    loop {
        if old & pte::P == 0 || old & pte::W == 0 || pte::phys(old) != phys {
            return Err(NotMapped);
        }
        let new = old | pte::A | pte::D;
        match entry.compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(()),
            Err(v) => old = v,
        }
    }
}

/// One address space's page table: entries for virtual pages
/// `vbase..vbase + len`. It is the [`FlushTarget`] of its space.
pub struct PageTable {
    pub id: u64,
    pub vbase: u64,
    ptes: Box<[AtomicU64]>,
    pub hw: Arc<Hw>,
    /// Shootdowns issued to this space.
    pub shootdowns: AtomicU64,
}

impl PageTable {
    /// The entry of virtual page `vpn`.
    pub fn entry(&self, vpn: u64) -> &AtomicU64 {
        let i = vpn
            .checked_sub(self.vbase)
            .filter(|&i| i < self.ptes.len() as u64)
            .unwrap_or_else(|| panic!("vpn {vpn:#x} is outside the page table"));
        &self.ptes[i as usize]
    }

    /// The entry's value now.
    pub fn get(&self, vpn: u64) -> u64 {
        // Acquire: as a walk.
        self.entry(vpn).load(Ordering::Acquire)
    }

    /// Whether any CPU caches a translation of `vpn` in this space.
    pub fn cached(&self, vpn: u64) -> bool {
        self.hw
            .cpus
            .iter()
            .any(|c| c.tlb().iter().any(|e| e.space == self.id && e.vpn == vpn))
    }
}

impl FlushTarget for PageTable {
    fn id(&self) -> u64 {
        self.id
    }

    fn flush(&self, pages: Option<(u64, u64)>) {
        // Every CPU, each under its TLB lock: when this returns, no CPU
        // uses, or is in the middle of an access through, a dropped one.
        for cpu in &self.hw.cpus {
            cpu.invalidate(self.id, pages);
        }
        // Relaxed: a statistic read by the test thread after joining.
        self.shootdowns.fetch_add(1, Ordering::Relaxed);
    }
}

/// The 8-byte word `i` of the frame memory at `frame`.
///
/// Every access to frame memory, the pool's and the CPUs', is an atomic
/// word access (the pool's contents are `AtomicU64`s), so concurrent CPU
/// stores and a write-back's reads are not data races.
fn word<'a>(frame: NonNull<u8>, i: usize) -> &'a AtomicU64 {
    assert!(i < PAGE_SIZE / 8);
    // SAFETY: `frame` is a frame's memory (from `Hw::frame_mem` or the
    // pool): PAGE_SIZE bytes, 8-aligned (the region is page aligned),
    // valid while the region is mapped, which outlives every user here;
    // all accesses to it are atomic.
    unsafe { AtomicU64::from_ptr(frame.as_ptr().add(i * 8).cast()) }
}

/// Copies bytes out of frame memory (a CPU's loads).
pub fn copy_out(frame: NonNull<u8>, offset: usize, buf: &mut [u8]) {
    assert!(offset + buf.len() <= PAGE_SIZE);
    for (k, b) in buf.iter_mut().enumerate() {
        let pos = offset + k;
        // Relaxed: ordered, where it matters, by the translation (the
        // entry's Acquire) or the page map's own locks.
        *b = word(frame, pos / 8).load(Ordering::Relaxed).to_le_bytes()[pos % 8];
    }
}

/// Copies bytes into frame memory (a CPU's byte stores: each merges into
/// its word atomically, so stores to other bytes of the word are kept).
pub fn copy_in(frame: NonNull<u8>, offset: usize, data: &[u8]) {
    assert!(offset + data.len() <= PAGE_SIZE);
    for (k, &b) in data.iter().enumerate() {
        let pos = offset + k;
        let shift = (pos % 8) * 8;
        let w = word(frame, pos / 8);
        // Relaxed: as `copy_out`; the CAS loop keeps neighbouring bytes.
        let mut old = w.load(Ordering::Relaxed);
        loop {
            let new = (old & !(0xff << shift)) | (u64::from(b) << shift);
            match w.compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(v) => old = v,
            }
        }
    }
}

/// A whole frame's bytes, read through the direct map (for checks).
pub fn frame_bytes(frame: NonNull<u8>) -> Vec<u8> {
    let mut v = Vec::with_capacity(PAGE_SIZE);
    for i in 0..PAGE_SIZE / 8 {
        // Relaxed: as `copy_out`.
        v.extend_from_slice(&word(frame, i).load(Ordering::Relaxed).to_le_bytes());
    }
    v
}
