//! The simulated machine: a frame pool (physical memory), CPUs with TLBs,
//! and TLB shootdown delivery.
//!
//! A CPU performs each page-sized access holding its own TLB lock, as a
//! real CPU finishes an instruction before it takes an interrupt. A
//! shootdown takes the lock of every CPU that may cache the address space and
//! drops the entries: when it returns, every target has acknowledged and no
//! access through an old translation is in flight (Akaros's shootdown was
//! asynchronous: defect 6).

use std::sync::atomic::{AtomicBool, AtomicU64 as StdAtomicU64};
use std::sync::Arc;

use pagemap::{FrameId, FramePool, PAGE_SIZE};

use crate::error::{Access, Fault};
use crate::pte;
use crate::space::{AddressSpace, MmCore};
use crate::sync::{Mutex, Ordering};

/// Entries in each CPU's TLB (direct-mapped).
pub const TLB_ENTRIES: usize = 64;

#[derive(Clone, Copy, Debug, Default)]
struct TlbEntry {
    valid: bool,
    writable: bool,
    /// The PTE's DIRTY bit is known set: writes need no PTE update.
    dirty: bool,
    frame: u32,
    asid: u64,
    vpn: u64,
}

/// A TLB: cached translations, used without walking the page table.
#[derive(Debug)]
pub(crate) struct Tlb {
    entries: [TlbEntry; TLB_ENTRIES],
}

impl Tlb {
    fn new() -> Self {
        Self {
            entries: [TlbEntry::default(); TLB_ENTRIES],
        }
    }

    #[inline]
    fn slot(asid: u64, vpn: u64) -> usize {
        ((vpn ^ asid.wrapping_mul(0x9e37_79b9_7f4a_7c15)) as usize) % TLB_ENTRIES
    }

    #[inline]
    fn lookup(&mut self, asid: u64, vpn: u64) -> Option<&mut TlbEntry> {
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
    id: usize,
    tlb: Mutex<Tlb>,
    stats: CpuStats,
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
}

impl Machine {
    /// The most CPUs (one bit each in an address space's CPU mask).
    pub const MAX_CPUS: usize = 64;

    /// A machine with `ncpus` CPUs over `pool` (`ncpus` in `1..=64`).
    pub fn new(pool: Arc<FramePool>, ncpus: usize) -> Arc<Machine> {
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
        })
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
    pub fn set_shootdowns_enabled(&self, on: bool) {
        self.shootdowns_enabled.store(on, Ordering::SeqCst);
        // Under loom, a stale access to a freed frame is what such a test
        // wants to reach: loom's ownership tracking would fail it first.
        #[cfg(pagemap_loom)]
        self.pool.set_access_tracking(on);
    }

    /// Drops the translations of pages `first..=last` of `mm` from every CPU
    /// that may cache them, and returns when all have done so.
    pub(crate) fn shootdown(&self, mm: &MmCore, first: u64, last: u64) {
        if !self.shootdowns_enabled.load(Ordering::SeqCst) {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // SeqCst: pairs with the CPU's SeqCst mask update before its walk; the
        // caller changed the PTEs (SeqCst) before calling us. Either the CPU
        // saw the new PTE, or we see its bit and flush it.
        let mask = mm.cpumask.load(Ordering::SeqCst);
        let (mut ipis, mut dropped) = (0, 0);
        for cpu in self.cpus.iter().filter(|c| mask & (1 << c.id) != 0) {
            // Waits for the CPU's access in flight, if any: the acknowledgement.
            dropped += cpu.tlb.lock().invalidate(mm.asid, first, last);
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

/// How many times one access may fault before giving up.
const MAX_FAULTS: u32 = 1000;

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

    /// Loads `buf.len()` bytes at `va` in `space`, faulting pages in as needed.
    pub fn read(&self, space: &AddressSpace, va: u64, buf: &mut [u8]) -> Result<(), Fault> {
        let pool = space.machine().pool();
        self.access(
            space,
            va,
            buf.len(),
            Access::Read,
            &mut |frame, off, range| {
                pool.read(frame, off, &mut buf[range])
                    .expect("in-page range");
            },
        )
    }

    /// Stores `data` at `va` in `space`, faulting pages in as needed.
    pub fn write(&self, space: &AddressSpace, va: u64, data: &[u8]) -> Result<(), Fault> {
        let pool = space.machine().pool();
        self.access(
            space,
            va,
            data.len(),
            Access::Write,
            &mut |frame, off, range| {
                // SAFETY: `frame` comes from a TLB entry that allows this
                // write (`try_access` checked it, holding the TLB lock that
                // every shootdown of it waits for), so its owner handed out
                // this writable translation and the entry's dirty bit tells
                // it the frame changed.
                unsafe { pool.mmu_write(frame, off, &data[range]) }.expect("in-page range");
            },
        )
    }

    fn access(
        &self,
        space: &AddressSpace,
        va: u64,
        len: usize,
        access: Access,
        f: &mut dyn FnMut(FrameId, usize, std::ops::Range<usize>),
    ) -> Result<(), Fault> {
        let page = PAGE_SIZE as u64;
        if va.checked_add(len as u64).is_none() {
            return Err(Fault::NoMapping { va });
        }
        let mut done = 0usize;
        while done < len {
            let cur = va + done as u64;
            let off = (cur % page) as usize;
            let n = (PAGE_SIZE - off).min(len - done);
            let mut faults = 0;
            while !self.try_access(space, cur / page, access == Access::Write, &mut |frame| {
                f(frame, off, done..done + n)
            }) {
                self.stats.faults.fetch_add(1, Ordering::Relaxed);
                space.handle_fault(cur, access)?;
                faults += 1;
                if faults >= MAX_FAULTS {
                    return Err(Fault::Livelock { va: cur });
                }
            }
            done += n;
        }
        Ok(())
    }

    /// One access to one page, as the hardware does it. `false`: it faults.
    #[inline]
    fn try_access(
        &self,
        space: &AddressSpace,
        vpn: u64,
        write: bool,
        f: &mut dyn FnMut(FrameId),
    ) -> bool {
        let mm = space.core();
        if vpn >= crate::pagetable::VA_END / PAGE_SIZE as u64 {
            return false;
        }
        // Held for the whole access: shootdowns wait for it to finish.
        let mut tlb = self.tlb.lock();
        if let Some(e) = tlb.lookup(mm.asid, vpn) {
            if write && !e.writable {
                e.valid = false;
                return false;
            }
            if write && !e.dirty {
                // First write through this entry: the hardware sets DIRTY in
                // the PTE atomically, re-checking that it still allows it.
                let frame = e.frame;
                let set = mm.pt.get(vpn).is_some_and(|p| {
                    p.update(|old| {
                        (pte::frame(old) == frame)
                            .then(|| pte::touched(old, true))
                            .flatten()
                    })
                    .is_ok()
                });
                if !set {
                    e.valid = false;
                    return false;
                }
                e.dirty = true;
            }
            let frame = FrameId::new(e.frame).expect("TLB entry has a frame");
            self.stats.tlb_hits.fetch_add(1, Ordering::Relaxed);
            f(frame);
            return true;
        }
        // Miss: announce ourselves before reading the PTE (see `shootdown`).
        mm.note_cpu(self.id);
        let Some(p) = mm.pt.get(vpn) else {
            return false;
        };
        // SeqCst read (the pairing with shootdowns needs a read, not a write).
        // The fault handler installs entries with ACCESSED (and DIRTY for a
        // write), so the access that follows a fault needs no write here.
        let seen = p.load();
        let new = match pte::touched(seen, write) {
            None => return false,
            Some(new) if new == seen => new,
            Some(_) => match p.update(|old| pte::touched(old, write)) {
                Ok(old) => pte::touched(old, write).expect("checked by fetch_update"),
                Err(_) => return false,
            },
        };
        let e = TlbEntry {
            valid: true,
            writable: new & pte::WRITABLE != 0,
            dirty: new & pte::DIRTY != 0,
            frame: pte::frame(new),
            asid: mm.asid,
            vpn,
        };
        tlb.entries[Tlb::slot(mm.asid, vpn)] = e;
        self.stats.tlb_misses.fetch_add(1, Ordering::Relaxed);
        f(FrameId::new(e.frame).expect("present PTE has a frame"));
        true
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
