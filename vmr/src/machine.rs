//! The simulated machine: a frame pool (physical memory), CPUs with TLBs,
//! and TLB shootdown delivery.
//!
//! A CPU performs each page-sized access holding its own TLB lock, as a
//! real CPU finishes an instruction before it takes an interrupt. A
//! shootdown takes the lock of every CPU that may cache the address space and
//! drops the entries: when it returns, every target has acknowledged and no
//! access through an old translation is in flight (Akaros's shootdown was
//! asynchronous: defect 6).
//!
//! Layer: bottom (it uses only `sync`); it knows an address space only as
//! an ASID and a CPU mask. The accesses themselves, which walk a space's page
//! table and call its fault handler, are in `access.rs`, at the top.

use std::sync::atomic::{AtomicBool, AtomicU64 as StdAtomicU64};
use std::sync::Arc;

use std::sync::OnceLock;

use pagemap::swap::{Swap, SwapStore};
use pagemap::{FrameId, FramePool, MemStore, PageMap};

use crate::anon::AnonSide;

use crate::sync::{AtomicU64, Mutex, Ordering};

/// Entries in each CPU's TLB (direct-mapped).
pub const TLB_ENTRIES: usize = 64;

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TlbEntry {
    pub(crate) valid: bool,
    pub(crate) writable: bool,
    /// The PTE's DIRTY bit is known set: writes need no PTE update.
    pub(crate) dirty: bool,
    pub(crate) frame: u32,
    pub(crate) asid: u64,
    pub(crate) vpn: u64,
}

/// A TLB: cached translations, used without walking the page table.
#[derive(Debug)]
pub(crate) struct Tlb {
    pub(crate) entries: [TlbEntry; TLB_ENTRIES],
}

impl Tlb {
    fn new() -> Self {
        Self {
            entries: [TlbEntry::default(); TLB_ENTRIES],
        }
    }

    #[inline]
    pub(crate) fn slot(asid: u64, vpn: u64) -> usize {
        ((vpn ^ asid.wrapping_mul(0x9e37_79b9_7f4a_7c15)) as usize) % TLB_ENTRIES
    }

    #[inline]
    pub(crate) fn lookup(&mut self, asid: u64, vpn: u64) -> Option<&mut TlbEntry> {
        let e = &mut self.entries[Self::slot(asid, vpn)];
        (e.valid && e.asid == asid && e.vpn == vpn).then_some(e)
    }

    /// Drops the entries of `asid` for pages `first..=last`; returns how many.
    fn invalidate(&mut self, asid: u64, first: u64, last: u64) -> usize {
        let mut n = 0;
        for e in self.entries.iter_mut() {
            if e.valid && e.asid == asid && e.vpn >= first && e.vpn <= last {
                e.valid = false;
                n += 1;
            }
        }
        n
    }
}

/// Counters of one CPU.
#[derive(Debug, Default)]
pub struct CpuStats {
    /// Accesses translated by the TLB.
    pub tlb_hits: StdAtomicU64,
    /// Accesses that walked the page table.
    pub tlb_misses: StdAtomicU64,
    /// Accesses that faulted.
    pub faults: StdAtomicU64,
}

/// A simulated CPU. Threads access memory through one.
pub struct Cpu {
    pub(crate) id: usize,
    /// Held for each whole access (see the module docs).
    pub(crate) tlb: Mutex<Tlb>,
    pub(crate) stats: CpuStats,
}

/// Shootdown counters of a machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShootdownStats {
    /// Shootdowns issued (one per call, whatever the number of CPUs).
    pub shootdowns: u64,
    /// CPUs interrupted.
    pub ipis: u64,
    /// TLB entries dropped.
    pub invalidated: u64,
    /// Shootdowns skipped because they were disabled (tests only).
    pub skipped: u64,
}

/// Memory, CPUs and the shootdown machinery.
pub struct Machine {
    pool: Arc<FramePool>,
    cpus: Box<[Cpu]>,
    next_asid: StdAtomicU64,
    shootdowns_enabled: AtomicBool,
    shootdowns: StdAtomicU64,
    ipis: StdAtomicU64,
    invalidated: StdAtomicU64,
    skipped: StdAtomicU64,
    /// See [`zero_file`](Machine::zero_file); made at the first use.
    zero: OnceLock<Arc<PageMap>>,
    /// Swap, if the machine has it ([`Machine::with_swap`]).
    pub(crate) anon: Option<AnonSide>,
}

impl Machine {
    /// The most CPUs (one bit each in an address space's CPU mask).
    pub const MAX_CPUS: usize = 64;

    /// A machine with `ncpus` CPUs over `pool` (`ncpus` in `1..=64`).
    pub fn new(pool: Arc<FramePool>, ncpus: usize) -> Arc<Machine> {
        Self::build(pool, ncpus, None)
    }

    /// A machine as [`new`](Self::new) whose private and anonymous pages
    /// can be paged out to `store` (swap): by the pool's reclaim (they join
    /// its eviction policy beside the page cache's pages), by
    /// [`AddressSpace::page_out`](crate::AddressSpace::page_out) and by
    /// [`Machine::evict_frame`]. A fault on a paged-out page pages it back in.
    ///
    /// # Errors
    /// [`pagemap::Error::InvalidCapacity`] if the store has no slot or more
    /// than [`pte::MAX_SWAP_LOCATIONS`](crate::pte::MAX_SWAP_LOCATIONS).
    ///
    /// # Panics
    /// As [`new`](Self::new).
    pub fn with_swap(
        pool: Arc<FramePool>,
        ncpus: usize,
        store: Arc<dyn SwapStore>,
    ) -> Result<Arc<Machine>, pagemap::Error> {
        let anon = AnonSide::new(&pool, store)?;
        Ok(Self::build(pool, ncpus, Some(anon)))
    }

    /// The swap space, if the machine has one.
    pub fn swap(&self) -> Option<&Arc<Swap>> {
        self.anon.as_ref().map(|a| a.swap())
    }

    /// Frees frame `f` by moving out whatever it holds (the Zephyr seed's
    /// `k_mem_page_frame_evict`, e.g. to power down a bank of memory): a
    /// page-cache page is evicted from its file's page map (written back
    /// first if dirty, unmapped everywhere), a private copy or an anonymous
    /// page is paged out to swap. A free frame is left free.
    ///
    /// # Errors
    /// [`pagemap::Error::Busy`] if the frame is not in the pool, or cannot
    /// be freed now: held,
    /// locked, moving, pinned (mlocked, MAP_LOCKED), a private frame on a
    /// machine without swap, or its write-back failed (the page stays,
    /// dirty); [`pagemap::Error::SwapFull`] if swap has no room.
    pub fn evict_frame(&self, f: FrameId) -> Result<(), pagemap::Error> {
        if f.get() as usize > self.pool.capacity() {
            return Err(pagemap::Error::Busy);
        }
        let flags = self.pool.flags(f);
        if flags & pagemap::flags::FREE != 0 {
            return Ok(());
        }
        if flags & pagemap::flags::PAGEMAP == 0 {
            let Some(anon) = &self.anon else {
                return Err(pagemap::Error::Busy);
            };
            if self.pool.private_owner(f) != Some(anon.owner.id()) {
                // Another machine's private frame (machines may share a
                // pool): its own owner moves it, to its own swap.
                return self.pool.evict_frame(f);
            }
            return match anon.owner.evict(f)? {
                pagemap::swap::SwapOut::Freed { .. } => Ok(()),
                pagemap::swap::SwapOut::Kept => Err(pagemap::Error::Busy),
            };
        }
        self.pool.evict_frame(f)
    }

    fn build(pool: Arc<FramePool>, ncpus: usize, anon: Option<AnonSide>) -> Arc<Machine> {
        assert!(
            (1..=Self::MAX_CPUS).contains(&ncpus),
            "1..=64 CPUs, not {ncpus}"
        );
        Arc::new(Machine {
            pool,
            cpus: (0..ncpus)
                .map(|id| Cpu {
                    id,
                    tlb: Mutex::new(Tlb::new()),
                    stats: CpuStats::default(),
                })
                .collect(),
            next_asid: StdAtomicU64::new(1),
            shootdowns_enabled: AtomicBool::new(true),
            shootdowns: StdAtomicU64::new(0),
            ipis: StdAtomicU64::new(0),
            invalidated: StdAtomicU64::new(0),
            skipped: StdAtomicU64::new(0),
            zero: OnceLock::new(),
            anon,
        })
    }

    /// The file every anonymous region maps (Linux's `/dev/zero` for a
    /// private mapping): a page map over an empty store, made at the first
    /// anonymous mmap. Its pages are never loaded (a fault on anonymous
    /// memory allocates a zero-filled private frame instead); it exists so
    /// that an anonymous region is a region like any other (a reverse-map
    /// entry, splitting, teardown).
    pub fn zero_file(&self) -> &Arc<PageMap> {
        self.zero
            .get_or_init(|| PageMap::new(self.pool.clone(), Arc::new(MemStore::new())))
    }

    /// The frame pool (physical memory).
    pub fn pool(&self) -> &Arc<FramePool> {
        &self.pool
    }

    /// CPU `i`.
    pub fn cpu(&self, i: usize) -> &Cpu {
        &self.cpus[i]
    }

    /// All CPUs.
    pub fn cpus(&self) -> &[Cpu] {
        &self.cpus
    }

    pub(crate) fn new_asid(&self) -> u64 {
        // Never reused, so a stale TLB entry can never alias a new space.
        self.next_asid.fetch_add(1, Ordering::Relaxed)
    }

    /// Shootdown counters so far.
    pub fn shootdown_stats(&self) -> ShootdownStats {
        ShootdownStats {
            shootdowns: self.shootdowns.load(Ordering::Relaxed),
            ipis: self.ipis.load(Ordering::Relaxed),
            invalidated: self.invalidated.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
        }
    }

    /// Turns shootdowns off (or on again). Only for tests that show the
    /// simulation catches a missing shootdown as a stale read or lost write.
    ///
    /// # Safety
    /// Not memory safety (frame contents are atomics) but the page cache's
    /// invariants: with shootdowns off, a CPU keeps using translations to
    /// frames that were freed and reused, so its writes land in another
    /// page (another file's, or a private copy) without marking it dirty.
    /// The caller must accept that for every address space of this machine
    /// until shootdowns are on again and every CPU's TLB flushed; only a
    /// test that looks for that corruption should do this.
    pub unsafe fn set_shootdowns_enabled(&self, on: bool) {
        self.shootdowns_enabled.store(on, Ordering::SeqCst);
        // Under loom, a stale access to a freed frame is what such a test
        // wants to reach: loom's ownership tracking would fail it first.
        #[cfg(pagemap_loom)]
        self.pool.set_access_tracking(on);
    }

    /// Drops the translations of pages `first..=last` of the address space
    /// `asid` from every CPU that may cache them (the space's `cpumask`),
    /// and returns when all have done so.
    pub(crate) fn shootdown(&self, asid: u64, cpumask: &AtomicU64, first: u64, last: u64) {
        if !self.shootdowns_enabled.load(Ordering::SeqCst) {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // SeqCst: pairs with the CPU's SeqCst mask update before its walk; the
        // caller changed the PTEs (SeqCst) before calling us. Either the CPU
        // saw the new PTE, or we see its bit and flush it.
        let mask = cpumask.load(Ordering::SeqCst);
        let (mut ipis, mut dropped) = (0, 0);
        for cpu in self.cpus.iter().filter(|c| mask & (1 << c.id) != 0) {
            // Waits for the CPU's access in flight, if any: the acknowledgement.
            dropped += cpu.tlb.lock().invalidate(asid, first, last);
            ipis += 1;
        }
        self.shootdowns.fetch_add(1, Ordering::Relaxed);
        self.ipis.fetch_add(ipis, Ordering::Relaxed);
        self.invalidated
            .fetch_add(dropped as u64, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("cpus", &self.cpus.len())
            .field("pool", &self.pool)
            .field("shootdowns", &self.shootdown_stats())
            .finish()
    }
}

impl Cpu {
    /// This CPU's number.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Counters.
    pub fn stats(&self) -> &CpuStats {
        &self.stats
    }

    /// Drops every cached translation (as a context switch without ASIDs would).
    pub fn flush_tlb(&self) {
        *self.tlb.lock() = Tlb::new();
    }
}

impl std::fmt::Debug for Cpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cpu")
            .field("id", &self.id)
            .field("stats", &self.stats)
            .finish()
    }
}
