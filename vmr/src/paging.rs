//! The demand-paging entry points of an address space (the Zephyr seed's
//! `k_mem_page_out`, `k_mem_page_in`, `k_mem_pin`, `k_mem_unpin`) and the
//! madvise actions and mlock a Linux user expects: [`AddressSpace::page_out`],
//! [`AddressSpace::page_in`], [`AddressSpace::mlock`] (pin),
//! [`AddressSpace::munlock`] (unpin), [`AddressSpace::madvise`] with
//! [`Advice::DontNeed`] and [`Advice::Free`].
//!
//! Layer: the top, beside `access`: it uses `space` (the regions and the
//! fault handler), `advice`, `anon` (through the machine) and `pte`.

use std::sync::atomic::Ordering as StdOrdering;

use pagemap::swap::SwapOut;
use pagemap::{FrameId, PAGE_SIZE};

use crate::advice;
use crate::error::{Access, VmError};
use crate::pte;
use crate::region::{Advice, Prot};
use crate::space::AddressSpace;

const PAGE: u64 = PAGE_SIZE as u64;

/// What [`AddressSpace::page_out`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageOutReport {
    /// Private pages whose frame went back to the pool.
    pub paged_out: u64,
    /// Of those, pages written to swap (the others had a clean copy there).
    pub written: u64,
    /// Pages left in memory: locked (mlocked) or shared with an entry that
    /// could not be changed now (a copy-on-write in flight).
    pub kept: u64,
}

/// Paging counters of one address space (see [`AddressSpace::paging_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PagingStats {
    /// Faults on swap entries that mapped the page back (its page-in, if it
    /// needed one, is counted in [`FaultStats::major`](crate::FaultStats::major)).
    pub swap_ins: u64,
    /// Entries of this space turned into swap entries (by reclaim, by
    /// [`page_out`](AddressSpace::page_out) or
    /// [`Machine::evict_frame`](crate::Machine::evict_frame), on any space).
    pub swapped_out: u64,
    /// Faults that blocked (page cache misses and page-ins).
    pub major: u64,
    /// Faults that did not.
    pub minor: u64,
}

impl AddressSpace {
    /// Pages out the private and anonymous pages of `[addr, addr + len)`
    /// (the seed's `k_mem_page_out`): each goes to swap (written unless a
    /// clean copy is there) and its frame back to the pool; every entry of
    /// it, in every space that shares it, becomes a swap entry. Shared
    /// mappings' pages are the page cache's and are left alone. No lock of
    /// the space is held across the I/O.
    ///
    /// # Errors
    /// Bad ranges as [`munmap`](Self::munmap); [`VmError::NoMapping`] if
    /// part of the range is not mapped; [`VmError::NoSwap`] if the machine
    /// has no swap; [`VmError::Swap`] with [`pagemap::Error::SwapFull`] or
    /// [`pagemap::Error::SwapWrite`]: the page that failed stays in memory
    /// with its data, and the pages before it are in swap (which no access
    /// can tell).
    pub fn page_out(&self, addr: u64, len: u64) -> Result<PageOutReport, VmError> {
        let end = Self::check_range(addr, len)?;
        let anon = self.machine().anon.as_ref().ok_or(VmError::NoSwap)?;
        let mut frames = Vec::new();
        {
            let regions = self.regions_read();
            regions.require_mapped(addr, end)?;
            self.core()
                .pt
                .for_each(addr / PAGE, (end - 1) / PAGE, &mut |_, p| {
                    let old = p.load();
                    if old & pte::PRIVATE != 0 {
                        frames
                            .push(FrameId::new(pte::frame(old)).expect("private PTE has a frame"));
                    }
                });
        }
        // Without the lock: a frame freed meanwhile is refused by the
        // swap-out (or, reused by another page, paged out in its stead,
        // which nothing can tell).
        let mut report = PageOutReport::default();
        for f in frames {
            match anon.owner.evict(f).map_err(VmError::Swap)? {
                SwapOut::Freed { written } => {
                    report.paged_out += 1;
                    report.written += u64::from(written);
                }
                SwapOut::Kept => report.kept += 1,
            }
        }
        Ok(report)
    }

    /// Faults in every page of `[addr, addr + len)` now (the seed's
    /// `k_mem_page_in`, a prefetch): paged-out pages are read back from
    /// swap, file pages into the page cache; each is mapped read-only or
    /// with the rights a read would give. Pages of PROT_NONE regions are
    /// skipped. No lock of the space is held across the I/O.
    ///
    /// # Errors
    /// Bad ranges as [`munmap`](Self::munmap); [`VmError::NoMapping`] if
    /// part of the range is not mapped; [`VmError::PageIn`] with the fault
    /// of the first page that failed (a swap read error leaves that page in
    /// swap: a retry reads it again).
    pub fn page_in(&self, addr: u64, len: u64) -> Result<(), VmError> {
        let end = Self::check_range(addr, len)?;
        self.regions_read().require_mapped(addr, end)?;
        let mut va = addr;
        while va < end {
            match self.fault_narrow(va, Access::Read) {
                Ok(()) | Err(crate::Fault::Protection { .. }) => {}
                Err(e) => return Err(VmError::PageIn(Box::new(e))),
            }
            va += PAGE;
        }
        Ok(())
    }

    /// Locks `[addr, addr + len)` in memory (mlock; the seed's `k_mem_pin`):
    /// its regions become LOCKED, every page is faulted in now (writable
    /// private pages get their private copies now, as MAP_LOCKED does) and
    /// none of them is paged out or evicted until
    /// [`munlock`](Self::munlock), so a fault on them never waits for I/O.
    /// Locks are not inherited by a fork's child (as on Linux).
    ///
    /// # Errors
    /// Bad ranges as [`munmap`](Self::munmap); [`VmError::NoMapping`] if
    /// part of the range is not mapped (nothing changed);
    /// [`VmError::Populate`] if a page could not be faulted in (out of
    /// frames: everything else pinned; a read error): the range stays
    /// locked as far as it got, as Linux's mlock leaves it.
    pub fn mlock(&self, addr: u64, len: u64) -> Result<(), VmError> {
        let end = Self::check_range(addr, len)?;
        {
            let mut regions = self.regions_write();
            regions.require_mapped(addr, end)?;
            advice::set_locked_flag(&mut regions, addr, end, true);
        }
        // Fault everything in, mark the private entries, and again for any
        // page a swap-out took between the two (bounded: each round's
        // swap-outs must have started before its marks).
        for _ in 0..64 {
            let parts = self.lock_parts(addr, end);
            for &(lo, hi, prot, private) in &parts {
                self.populate(lo, hi - lo, prot, !private)?;
            }
            let missing: usize = parts
                .iter()
                .filter(|p| p.3)
                .map(|&(lo, hi, ..)| advice::set_mlocked(self.core(), lo, hi, true))
                .sum();
            if missing == 0 {
                return Ok(());
            }
        }
        Err(VmError::Populate(Box::new(crate::Fault::Livelock {
            va: addr,
        })))
    }

    /// Unlocks `[addr, addr + len)` (munlock; the seed's `k_mem_unpin`):
    /// its pages may be paged out and evicted again.
    ///
    /// # Errors
    /// Bad ranges as [`munmap`](Self::munmap); [`VmError::NoMapping`] if
    /// part of the range is not mapped (nothing changed).
    pub fn munlock(&self, addr: u64, len: u64) -> Result<(), VmError> {
        let end = Self::check_range(addr, len)?;
        let mut regions = self.regions_write();
        regions.require_mapped(addr, end)?;
        advice::set_locked_flag(&mut regions, addr, end, false);
        advice::set_mlocked(self.core(), addr, end, false);
        Ok(())
    }

    /// The parts of `[addr, end)`'s regions to lock: `(lo, hi, prot,
    /// private frames expected)` — anonymous and writable private file
    /// regions hold private frames once populated; a read-only private
    /// file region and a shared one map the page cache's pages, which the
    /// LOCKED region pins ([`pagemap::Mapper::is_pinned`]).
    fn lock_parts(&self, addr: u64, end: u64) -> Vec<(u64, u64, Prot, bool)> {
        let regions = self.regions_read();
        regions
            .overlapping(addr, end)
            .into_iter()
            .map(|b| &regions.map[&b].vmr)
            .filter(|v| v.prot != Prot::NONE)
            .map(|v| {
                let private = !v.is_shared() && (v.is_anonymous() || v.prot.contains(Prot::WRITE));
                (addr.max(v.base), end.min(v.end), v.prot, private)
            })
            .collect()
    }

    /// Per-space paging counters now.
    pub fn paging_stats(&self) -> PagingStats {
        let s = self.fault_stats();
        PagingStats {
            swap_ins: s.swap_ins.load(StdOrdering::Relaxed),
            swapped_out: self.core().swapped_out.load(StdOrdering::Relaxed),
            major: s.major.load(StdOrdering::Relaxed),
            minor: s.minor.load(StdOrdering::Relaxed),
        }
    }

    /// madvise's actions: [`Advice::DontNeed`] and [`Advice::Free`]; the
    /// other advice is an attribute of the regions (see
    /// [`madvise`](Self::madvise)).
    pub(crate) fn madvise_action(
        &self,
        addr: u64,
        end: u64,
        advice: Advice,
    ) -> Result<(), VmError> {
        let regions = self.regions_write();
        regions.require_mapped(addr, end)?;
        if let Some(at) = advice::first_locked(&regions, addr, end) {
            return Err(VmError::Locked { addr: at });
        }
        match advice {
            Advice::DontNeed => {
                advice::dontneed(self.core_arc(), &regions, addr, end);
            }
            Advice::Free => {
                if let Some(at) = advice::first_not_anonymous(&regions, addr, end) {
                    return Err(VmError::NotAnonymous { addr: at });
                }
                advice::lazy_free(self.core_arc(), &regions, addr, end);
            }
            _ => unreachable!("only actions come here"),
        }
        Ok(())
    }
}
