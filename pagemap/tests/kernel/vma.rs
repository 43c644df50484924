//! The kernel's memory management over `pagemap`: address spaces of
//! shared file mappings, the [`Mapper`] each mapping registers with its
//! file's page map, the page-fault handler, munmap, and the CPU-side
//! accesses that fault and retry.

use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use pagemap::{
    Error, FlushTarget, FrameId, Harvest, Mapper, MappingId, PageMap, PageRef, ShootdownBatch,
    Victims, PAGE_SIZE,
};

use super::mmu::{self, pte, Hw, NotMapped, PageTable};

/// A deliberately broken mapper, to show that the harness catches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutant {
    /// The correct implementation.
    None,
    /// `reap` clears entries but drops their dirty bits.
    ReapDropsDirty,
    /// `revoke` makes entries not present but adds no shootdown.
    RevokeNoShootdown,
    /// `clean` write-protects entries but adds no shootdown.
    CleanNoShootdown,
}

/// What an access ended with, when not with success.
#[derive(Debug)]
pub enum Fault {
    /// SIGSEGV: no mapping there.
    Segv(u64),
    /// SIGBUS: the page is beyond the end of the file.
    Sigbus(u64),
    /// The page could not be read.
    Io(Error),
}

/// One shared, writable file mapping: virtual pages `start..start + len`
/// show file pages `first..first + len`.
pub struct Vma {
    pt: Arc<PageTable>,
    start: u64,
    first: u64,
    last: u64,
    mutant: Mutant,
}

impl Vma {
    fn vpn(&self, index: u64) -> u64 {
        self.start + (index - self.first)
    }

    fn index(&self, vpn: u64) -> u64 {
        self.first + (vpn - self.start)
    }

    fn hw(&self) -> &Hw {
        &self.pt.hw
    }

    /// Adds our space to `batch` over `changed` virtual pages, if any.
    fn add(&self, batch: &mut ShootdownBatch, changed: Option<(u64, u64)>) {
        if let Some((lo, hi)) = changed {
            batch.add(self.pt.clone() as Arc<dyn FlushTarget>, lo, hi);
        }
    }

    /// The fault's install, in `map_page`'s callback: makes the entry of
    /// `vpn` present for `page` (writable for a write), keeping the dirty
    /// bit of an entry a removal revoked.
    fn install(&self, vpn: u64, page: &PageRef<'_>, write: bool) {
        let phys = self.hw().pool.phys_addr(page.frame());
        let entry = self.pt.entry(vpn);
        // Acquire: see a concurrent kernel update's entry whole (pairs
        // with its AcqRel); the CAS below is Release.
        let mut old = entry.load(Ordering::Acquire);
        loop {
            // A write fault makes the entry writable and dirty at once
            // (page_mkwrite's contract; the CPU would set the bit anyway).
            let want = pte::P | if write { pte::W | pte::D } else { 0 };
            let new = if old == 0 {
                pte::make(phys, want)
            } else if pte::phys(old) != phys {
                // A revoked entry is reaped before its page is freed, so an
                // entry can only name the page's current frame.
                panic!(
                    "vpn {vpn:#x}: entry {old:#x} names another frame than page {} ({phys:#x})",
                    page.index()
                );
            } else if old & want == want {
                return; // another CPU's fault installed it
            } else {
                old | want // refault of a revoked entry, or a write fault
            };
            // Release: the CPU's walk (Acquire) sees the page's contents,
            // which happen-before our hold of the page.
            match entry.compare_exchange_weak(old, new, Ordering::Release, Ordering::Acquire) {
                Ok(_) => return,
                Err(v) => old = v,
            }
        }
    }

    /// Applies `f` to the entry of `vpn` atomically; `f` returns the new
    /// value or `None` to leave it. Returns the old value if changed.
    fn update(&self, vpn: u64, f: impl Fn(u64) -> Option<u64>) -> Option<u64> {
        let entry = self.pt.entry(vpn);
        // Acquire, and AcqRel on success: every kernel-side change is one
        // read-modify-write that re-checks the entry against the CPUs' A/D
        // updates (their CAS) and faults (their Release install).
        let mut old = entry.load(Ordering::Acquire);
        loop {
            let new = f(old)?;
            match entry.compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(old),
                Err(v) => old = v,
            }
        }
    }
}

/// Widens `range` to include `vpn`.
fn widen(range: &mut Option<(u64, u64)>, vpn: u64) {
    *range = Some(match *range {
        None => (vpn, vpn),
        Some((lo, hi)) => (lo.min(vpn), hi.max(vpn)),
    });
}

impl Mapper for Vma {
    fn file_pages(&self) -> (u64, u64) {
        (self.first, self.last)
    }

    fn is_pinned(&self) -> bool {
        false
    }

    fn revoke(&self, victims: &Victims, batch: &mut ShootdownBatch) {
        let mut changed = None;
        for &(index, frame) in victims.within(self.first, self.last) {
            let phys = self.hw().pool.phys_addr(frame);
            let vpn = self.vpn(index);
            let done = self.update(vpn, |e| {
                (e & pte::P != 0 && pte::phys(e) == phys).then_some(e & !pte::P)
            });
            if done.is_some() {
                widen(&mut changed, vpn);
            }
        }
        if self.mutant != Mutant::RevokeNoShootdown {
            self.add(batch, changed);
        }
    }

    fn reap(&self, victims: &Victims, dirty: &mut dyn FnMut(u64, FrameId)) {
        // No shootdown: these entries were not present since the revoke,
        // whose shootdown dropped every translation cached before.
        for &(index, frame) in victims.within(self.first, self.last) {
            let phys = self.hw().pool.phys_addr(frame);
            let old = self.update(self.vpn(index), |e| {
                (e != 0 && e & pte::P == 0 && pte::phys(e) == phys).then_some(0)
            });
            if old.is_some_and(|e| e & pte::D != 0) && self.mutant != Mutant::ReapDropsDirty {
                dirty(index, frame);
            }
        }
    }

    fn clean(&self, first: u64, last: u64, batch: &mut ShootdownBatch, harvest: &mut Harvest<'_>) {
        let mut changed = None;
        for index in first..=last {
            let vpn = self.vpn(index);
            let e = self.pt.get(vpn);
            if e & (pte::W | pte::D) == 0 {
                continue;
            }
            let frame = self.hw().frame_of_phys(pte::phys(e));
            // Hold the page from before its dirty bit leaves the entry.
            let Some(page) = harvest.hold(index, frame) else {
                continue; // gone: a removal's reap owns the entry
            };
            let phys = pte::phys(e);
            let old = self.update(vpn, |e| {
                (pte::phys(e) == phys && e & (pte::W | pte::D) != 0)
                    .then_some(e & !(pte::W | pte::D))
            });
            if let Some(old) = old {
                widen(&mut changed, vpn);
                if old & pte::D != 0 {
                    harvest.dirty(page);
                }
            }
        }
        if self.mutant != Mutant::CleanNoShootdown {
            self.add(batch, changed);
        }
    }

    fn zap(&self, first: u64, last: u64, batch: &mut ShootdownBatch) {
        let mut changed = None;
        for index in first..=last {
            let vpn = self.vpn(index);
            if self.update(vpn, |e| (e != 0).then_some(0)).is_some() {
                widen(&mut changed, vpn);
            }
        }
        self.add(batch, changed);
    }

    fn zap_shared(&self, first: u64, last: u64, batch: &mut ShootdownBatch) {
        // This kernel maps files shared only: every entry is the file's
        // page, none a private copy to spare.
        self.zap(first, last, batch);
    }
}

/// Pages around a read fault that fault-around may map.
const FAULT_AROUND: u64 = 4;

/// A mapping as its address space keeps it.
struct Region {
    vma: Arc<Vma>,
    file: Arc<PageMap>,
    id: MappingId,
    len: u64,
}

/// An address space: a page table and, behind the address-space lock, its
/// mappings (read: faults; write: mmap, munmap).
pub struct Space {
    pub pt: Arc<PageTable>,
    regions: RwLock<Vec<Region>>,
}

impl Space {
    /// An empty space of `pages` virtual pages from `vbase` on.
    pub fn new(hw: &Arc<Hw>, vbase: u64, pages: usize) -> Self {
        Self {
            pt: hw.page_table(vbase, pages),
            regions: RwLock::new(Vec::new()),
        }
    }

    /// Maps file pages `first..first + len` of `file` at virtual page
    /// `start`, shared and writable.
    pub fn mmap(&self, file: &Arc<PageMap>, start: u64, first: u64, len: u64, mutant: Mutant) {
        let mut regions = self.write_lock();
        assert!(
            regions
                .iter()
                .all(|r| start + len <= r.vma.start || r.vma.start + r.len <= start),
            "overlapping mappings"
        );
        let vma = Arc::new(Vma {
            pt: self.pt.clone(),
            start,
            first,
            last: first + len - 1,
            mutant,
        });
        let id = file.add_mapping(vma.clone());
        regions.push(Region {
            vma,
            file: file.clone(),
            id,
            len,
        });
    }

    /// Unmaps the mapping at virtual page `start`: clears its entries,
    /// one shootdown, then hands their dirty bits to the pages (held since
    /// before each bit left its entry) and unregisters the mapping.
    pub fn munmap(&self, start: u64) {
        let mut regions = self.write_lock();
        let at = regions
            .iter()
            .position(|r| r.vma.start == start)
            .expect("no mapping there");
        let r = regions.swap_remove(at);
        // The lock stays held to the end: no fault sees a half-gone mapping.
        let mut batch = ShootdownBatch::new();
        let mut changed = None;
        let mut dirty: Vec<PageRef<'_>> = Vec::new();
        for vpn in r.vma.start..r.vma.start + r.len {
            let e = self.pt.get(vpn);
            if e == 0 {
                continue;
            }
            let index = r.vma.index(vpn);
            let frame = self.pt.hw.frame_of_phys(pte::phys(e));
            let page = r.file.find_frame(index, frame);
            let Some(old) = r.vma.update(vpn, |e| (e != 0).then_some(0)) else {
                continue; // a removal reaped it meanwhile
            };
            widen(&mut changed, vpn);
            if old & pte::D != 0 {
                let page = page.filter(|p| pte::phys(old) == self.pt.hw.pool.phys_addr(p.frame()));
                dirty.push(page.expect("a dirty entry's page left the cache before its reap"));
            }
        }
        r.vma.add(&mut batch, changed);
        batch.flush();
        // Only after the shootdown: no CPU writes through the old entries.
        for page in &dirty {
            page.mark_dirty();
        }
        drop(dirty);
        r.file.remove_mapping(r.id).expect("registered");
    }

    /// The page fault handler for virtual page `vpn`: by the state of its
    /// entry (`pagemap`'s fault docs), the miss path ([`PageMap::map_page`],
    /// loading with no lock held on [`Error::WouldBlock`]), a refault of
    /// an entry a removal revoked ([`PageMap::refault`]), or a write to a
    /// read-only entry ([`PageMap::page_mkwrite`]); each installs in its
    /// callback.
    pub fn fault(&self, vpn: u64, write: bool) -> Result<(), Fault> {
        loop {
            let regions = self.read_lock();
            let r = regions
                .iter()
                .find(|r| (r.vma.start..r.vma.start + r.len).contains(&vpn))
                .ok_or(Fault::Segv(vpn))?;
            let index = r.vma.index(vpn);
            let e = self.pt.get(vpn);
            let install = |page: &PageRef<'_>| r.vma.install(vpn, page, write);
            let done = if e == 0 {
                let done = r.file.map_page(index, install).map(Some);
                if done.is_ok() && !write {
                    self.fault_around(r, index);
                }
                done
            } else {
                let frame = self.pt.hw.frame_of_phys(pte::phys(e));
                if e & pte::P == 0 {
                    r.file.refault(index, frame, install)
                } else if write && e & pte::W == 0 {
                    r.file.page_mkwrite(index, frame, install)
                } else {
                    return Ok(()); // another CPU's fault installed it
                }
            };
            match done {
                Ok(Some(())) => return Ok(()),
                Ok(None) => {
                    // The page left that frame, so a removal reaped the
                    // entry first: this CAS on the value read fails (but
                    // clears it if a page table ever kept such an entry).
                    // AcqRel: as every kernel-side update.
                    let _ = self.pt.entry(vpn).compare_exchange(
                        e,
                        0,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                }
                Err(Error::WouldBlock { .. }) => {
                    // Not cached: read it with no lock held, then retry
                    // (the page may be gone again by then: the loop).
                    let file = r.file.clone();
                    drop(regions);
                    match file.load(index).map(drop) {
                        Ok(()) => {}
                        Err(Error::BeyondEof { .. }) => return Err(Fault::Sigbus(vpn)),
                        Err(e) => return Err(Fault::Io(e)),
                    };
                }
                Err(Error::BeyondEof { .. }) => return Err(Fault::Sigbus(vpn)),
                Err(e) => return Err(Fault::Io(e)),
            }
        }
    }

    /// Fault-around (Linux's `map_pages`): maps the cached neighbours of
    /// a read fault's page read-only, where their entries are empty.
    fn fault_around(&self, r: &Region, index: u64) {
        let vma = &r.vma;
        let first = index.saturating_sub(FAULT_AROUND / 2).max(vma.first);
        let last = (index + FAULT_AROUND / 2).min(vma.last);
        let empty = |i: u64| i != index && self.pt.get(vma.vpn(i)) == 0;
        r.file.map_pages(first, last, empty, |page| {
            let phys = self.pt.hw.pool.phys_addr(page.frame());
            // Release: as `install` (the CPU's walk acquires the contents).
            self.pt
                .entry(vma.vpn(page.index()))
                .compare_exchange(
                    0,
                    pte::make(phys, pte::P),
                    Ordering::Release,
                    Ordering::Relaxed,
                )
                .is_ok()
        });
    }

    /// CPU `cpu` runs `f` on the memory of virtual page `vpn`, faulting
    /// the page in (writable, for a write) first if needed.
    fn access<R>(
        &self,
        cpu: usize,
        vpn: u64,
        write: bool,
        mut f: impl FnMut(NonNull<u8>) -> R,
    ) -> Result<R, Fault> {
        loop {
            match self.pt.hw.access(cpu, &self.pt, vpn, write, &mut f) {
                Ok(r) => return Ok(r),
                Err(NotMapped) => self.fault(vpn, write)?,
            }
        }
    }

    /// CPU `cpu` loads `buf.len()` bytes at virtual address `va` (one page).
    pub fn read(&self, cpu: usize, va: u64, buf: &mut [u8]) -> Result<(), Fault> {
        let off = (va % PAGE_SIZE as u64) as usize;
        self.access(cpu, va / PAGE_SIZE as u64, false, |m| {
            mmu::copy_out(m, off, buf)
        })
    }

    /// CPU `cpu` stores `data` at virtual address `va` (one page).
    pub fn write(&self, cpu: usize, va: u64, data: &[u8]) -> Result<(), Fault> {
        let off = (va % PAGE_SIZE as u64) as usize;
        self.access(cpu, va / PAGE_SIZE as u64, true, |m| {
            mmu::copy_in(m, off, data)
        })
    }

    // A mutant's detected loss panics in a test; its unwinding still
    // unmaps (`Drop`), so a poisoned lock is taken anyway.
    fn read_lock(&self) -> RwLockReadGuard<'_, Vec<Region>> {
        self.regions.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, Vec<Region>> {
        self.regions.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Mappings now.
    pub fn nr_regions(&self) -> usize {
        self.read_lock().len()
    }
}

impl Drop for Space {
    /// Process exit: every mapping unmapped (dirty bits handed over).
    fn drop(&mut self) {
        let starts: Vec<u64> = self
            .regions
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|r| r.vma.start)
            .collect();
        for s in starts {
            self.munmap(s);
        }
    }
}

/// Shootdowns a space has received.
pub fn shootdowns(space: &Space) -> u64 {
    // Relaxed: read after the operations that issued them returned.
    space.pt.shootdowns.load(Ordering::Relaxed)
}
