//! Address spaces: VM regions over a page table. [`AddressSpace`]'s public
//! entry points: mmap, munmap, mprotect, madvise, msync, fork, teardown and
//! the fault handler's (`handle_fault`, `check_fault`).
//!
//! Layer: above everything but `access`: the region map (`regions`), the
//! range-change mechanics (`rework`), the fault handler (`fault`) and the
//! space's core (`mm`), which it owns and lends to them.

use std::sync::Arc;

use pagemap::{FrameId, PageMap, PrivateFrame, WritebackReport, PAGE_SIZE};

use crate::error::{Access, Fault, VmError};
use crate::fault::{fault_check, CheckError, FaultCtx, FaultStats, Faulter};
use crate::machine::Machine;
use crate::mm::MmCore;
use crate::pagetable::VA_END;
use crate::pte;
use crate::region::{Advice, MapFlags, Prot, Vmr};
use crate::regions::Regions;
use crate::rework::{rework, write_protect_private};
use crate::sync::{Mutex, RwLock};

const PAGE: u64 = PAGE_SIZE as u64;

/// How [`AddressSpace::fork_with`] gives the child the private pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForkMode {
    /// Share each private frame copy-on-write (Linux's fork).
    #[default]
    Share,
    /// Copy every private page now (the benchmark's baseline).
    Copy,
}

/// What to map (see [`AddressSpace::mmap`]).
#[derive(Clone)]
pub struct MapRequest {
    /// Where: `Some` for a fixed address, `None` to let the space choose.
    pub addr: Option<u64>,
    /// Bytes, a multiple of the page size.
    pub len: u64,
    /// Protection.
    pub prot: Prot,
    /// SHARED or PRIVATE, plus LOCKED and POPULATE.
    pub flags: MapFlags,
    /// The file.
    pub file: Arc<PageMap>,
    /// File page shown at the first address (a page index, so the whole
    /// 64-bit page space is reachable).
    pub pgoff: u64,
    /// Initial advice.
    pub advice: Advice,
}

impl MapRequest {
    /// A request to map `len` bytes of `file` from offset 0, chosen address,
    /// normal advice.
    pub fn new(file: Arc<PageMap>, len: u64, prot: Prot, flags: MapFlags) -> Self {
        Self {
            addr: None,
            len,
            prot,
            flags,
            file,
            pgoff: 0,
            advice: Advice::Normal,
        }
    }
}

/// An address space (a process's memory): regions, a page table, and the
/// CPUs that cache its translations.
///
/// ```
/// use std::sync::Arc;
/// use pagemap::{FramePool, MemStore, PageMap};
/// use vmr::{AddressSpace, Machine, MapFlags, MapRequest, Prot};
///
/// let pool = Arc::new(FramePool::new(64).unwrap());
/// let machine = Machine::new(pool.clone(), 2);
/// let file = PageMap::new(pool, Arc::new(MemStore::new()));
/// let space = AddressSpace::new(machine.clone());
/// let va = space.mmap(MapRequest::new(file.clone(), 8192, Prot::RW, MapFlags::SHARED)).unwrap();
/// machine.cpu(0).write(&space, va + 4090, b"across a page boundary").unwrap();
/// let mut buf = [0u8; 22];
/// machine.cpu(1).read(&space, va + 4090, &mut buf).unwrap();
/// assert_eq!(&buf, b"across a page boundary");
/// space.munmap(va, 8192).unwrap(); // harvests dirty bits into the page cache
/// assert_eq!(file.dirty_indices(..), vec![0, 1]);
/// ```
pub struct AddressSpace {
    core: Arc<MmCore>,
    /// The address-space lock (outermost in the lock order).
    regions: RwLock<Regions>,
    /// Held by a copy-on-write fault while a PTE carries `pte::LOCK`
    /// (lock order: after `regions`, before the TLBs).
    cow: Mutex<()>,
    stats: FaultStats,
}

impl AddressSpace {
    /// An empty address space on `machine`.
    pub fn new(machine: Arc<Machine>) -> Arc<AddressSpace> {
        Arc::new(AddressSpace {
            core: MmCore::new(machine),
            regions: RwLock::new(Regions::default()),
            cow: Mutex::new(()),
            stats: FaultStats::default(),
        })
    }

    pub(crate) fn core(&self) -> &MmCore {
        &self.core
    }

    pub(crate) fn core_arc(&self) -> &Arc<MmCore> {
        &self.core
    }

    /// The address-space lock, shared.
    pub(crate) fn regions_read(&self) -> crate::sync::RwLockReadGuard<'_, Regions> {
        self.regions.read()
    }

    /// The address-space lock, exclusive.
    pub(crate) fn regions_write(&self) -> crate::sync::RwLockWriteGuard<'_, Regions> {
        self.regions.write()
    }

    /// The machine.
    pub fn machine(&self) -> &Arc<Machine> {
        &self.core.machine
    }

    /// Fault counters.
    pub fn fault_stats(&self) -> &FaultStats {
        &self.stats
    }

    /// The regions now, in address order.
    pub fn regions(&self) -> Vec<Arc<Vmr>> {
        self.regions
            .read()
            .map
            .values()
            .map(|r| r.vmr.clone())
            .collect()
    }

    /// The raw PTE of `va` (0 if none): for tests and debugging.
    pub fn pte(&self, va: u64) -> u64 {
        if va >= VA_END {
            return 0;
        }
        self.core.pt.get(va / PAGE).map_or(0, |p| p.load())
    }

    /// Checks `[addr, addr + len)`: aligned, non-empty, in user space.
    pub(crate) fn check_range(addr: u64, len: u64) -> Result<u64, VmError> {
        if !addr.is_multiple_of(PAGE) {
            return Err(VmError::Misaligned {
                what: "address",
                value: addr,
            });
        }
        if len == 0 {
            return Err(VmError::ZeroLength);
        }
        if !len.is_multiple_of(PAGE) {
            return Err(VmError::Misaligned {
                what: "length",
                value: len,
            });
        }
        let end = addr.checked_add(len).ok_or(VmError::Overflow)?;
        if end > VA_END {
            return Err(VmError::OutOfRange { addr, len });
        }
        Ok(end)
    }

    /// Maps a file. Returns the address.
    pub fn mmap(&self, req: MapRequest) -> Result<u64, VmError> {
        let shared = req.flags.contains(MapFlags::SHARED);
        if shared == req.flags.contains(MapFlags::PRIVATE) {
            return Err(VmError::InvalidFlags);
        }
        if req.flags.contains(MapFlags::ANONYMOUS)
            && !Arc::ptr_eq(&req.file, self.core.machine.zero_file())
        {
            // Anonymous memory maps the zero file (mmap_anonymous does).
            return Err(VmError::InvalidFlags);
        }
        if !Arc::ptr_eq(req.file.pool(), self.core.machine.pool()) {
            return Err(VmError::ForeignPool);
        }
        if req.len == 0 {
            return Err(VmError::ZeroLength);
        }
        if !req.len.is_multiple_of(PAGE) {
            return Err(VmError::Misaligned {
                what: "length",
                value: req.len,
            });
        }
        let pgoff = req.pgoff;
        // The last file page must be representable (full 64-bit indices).
        pgoff
            .checked_add(req.len / PAGE - 1)
            .ok_or(VmError::Overflow)?;
        let mut regions = self.regions.write();
        let base = match req.addr {
            Some(addr) => {
                let end = Self::check_range(addr, req.len)?;
                if let Some(&b) = regions.overlapping(addr, end).first() {
                    return Err(VmError::Overlap { addr: b });
                }
                addr
            }
            None => {
                Self::check_range(0, req.len)?;
                regions.find_gap(req.len)?
            }
        };
        let vmr = Arc::new(Vmr {
            base,
            end: base + req.len,
            pgoff,
            prot: req.prot,
            flags: req.flags,
            advice: req.advice,
            file: req.file.clone(),
            mm: self.core.clone(),
        });
        // Fully built before the page map can see it (Akaros: defect 4).
        let id = req.file.add_mapping(vmr.clone());
        regions.insert(vmr, id);
        regions.generation += 1;
        drop(regions);
        if req.flags.contains(MapFlags::POPULATE) || req.flags.contains(MapFlags::LOCKED) {
            if let Err(e) = self.populate(base, req.len, req.prot, shared) {
                let _ = self.munmap(base, req.len);
                return Err(e);
            }
        }
        Ok(base)
    }

    /// Maps `len` bytes of anonymous memory (MAP_PRIVATE | MAP_ANONYMOUS):
    /// zero-filled on first touch, owned by this space, shared copy-on-write
    /// with a [`fork`](Self::fork)'s child. `addr`: `Some` for a fixed
    /// address (MAP_FIXED without replacing: an overlap is an error), `None`
    /// to let the space choose. `flags` may add
    /// [`MapFlags::LOCKED`] and [`MapFlags::POPULATE`]; SHARED is refused
    /// (shared anonymous memory is a file: map a [`PageMap`] SHARED).
    /// Returns the address.
    ///
    /// # Errors
    /// As [`mmap`](Self::mmap); [`VmError::InvalidFlags`] for SHARED.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pagemap::FramePool;
    /// use vmr::{AddressSpace, Machine, MapFlags, Prot};
    ///
    /// let machine = Machine::new(Arc::new(FramePool::new(8).unwrap()), 1);
    /// let parent = AddressSpace::new(machine.clone());
    /// let va = parent.mmap_anonymous(None, 4096, Prot::RW, MapFlags::PRIVATE).unwrap();
    /// let cpu = machine.cpu(0);
    /// let mut b = [1u8; 2];
    /// cpu.read(&parent, va, &mut b).unwrap();
    /// assert_eq!(b, [0, 0]); // zero-filled
    /// cpu.write(&parent, va, b"p").unwrap();
    /// let child = parent.fork().unwrap(); // shares the page, copy-on-write
    /// cpu.write(&child, va, b"c").unwrap(); // the child copies it
    /// cpu.read(&parent, va, &mut b[..1]).unwrap();
    /// assert_eq!(&b[..1], b"p");
    /// ```
    pub fn mmap_anonymous(
        &self,
        addr: Option<u64>,
        len: u64,
        prot: Prot,
        flags: MapFlags,
    ) -> Result<u64, VmError> {
        if flags.contains(MapFlags::SHARED) {
            return Err(VmError::InvalidFlags);
        }
        self.mmap(MapRequest {
            addr,
            len,
            prot,
            flags: flags | MapFlags::PRIVATE | MapFlags::ANONYMOUS,
            file: self.core.machine.zero_file().clone(),
            pgoff: 0,
            advice: Advice::Normal,
        })
    }

    /// Pre-faults a range (MAP_POPULATE, MAP_LOCKED): private writable
    /// mappings take write faults (their copies are made now), others read.
    pub(crate) fn populate(
        &self,
        base: u64,
        len: u64,
        prot: Prot,
        shared: bool,
    ) -> Result<(), VmError> {
        let access = if !shared && prot.contains(Prot::WRITE) {
            Access::Write
        } else if prot != Prot::NONE {
            Access::Read // any protection but NONE is readable
        } else {
            return Ok(()); // PROT_NONE: nothing to touch
        };
        let mut va = base;
        while va < base + len {
            self.fault_narrow(va, access)
                .map_err(|e| VmError::Populate(Box::new(e)))?;
            va += PAGE;
        }
        Ok(())
    }

    /// Runs the check phase alone for a first-pass (wide) fault at `va`:
    /// what the handler would decide, without mapping anything.
    pub fn check_fault(&self, va: u64, access: Access) -> Result<(FaultCtx, Arc<Vmr>), CheckError> {
        let mut ctx = FaultCtx {
            enter_prot: Prot::NONE,
            start_va: 0,
            npages: 0,
            center: 0,
            narrow: false,
            wired: false,
        };
        let v = fault_check(&self.regions.read(), va, access, &mut ctx, None)?.clone();
        Ok((ctx, v))
    }

    /// Resolves a fault at `va` (what a CPU does on a missing or insufficient
    /// translation). Spurious faults (already mapped) are fine.
    pub fn handle_fault(&self, va: u64, access: Access) -> Result<(), Fault> {
        self.faulter().fault(va, access, false)
    }

    /// A narrow fault (no neighbours): populate and wiring.
    pub(crate) fn fault_narrow(&self, va: u64, access: Access) -> Result<(), Fault> {
        self.faulter().fault(va, access, true)
    }

    /// The fault handler over this space.
    fn faulter(&self) -> Faulter<'_> {
        Faulter {
            regions: &self.regions,
            core: &self.core,
            cow: &self.cow,
            stats: &self.stats,
        }
    }

    /// Unmaps `[addr, addr + len)`. Parts of regions outside stay mapped.
    /// Dirty bits of shared pages are moved to the page cache before the
    /// regions leave the reverse map, after the shootdown.
    pub fn munmap(&self, addr: u64, len: u64) -> Result<(), VmError> {
        let end = Self::check_range(addr, len)?;
        let mut regions = self.regions.write();
        rework(&self.core, &mut regions, addr, end, &|_| None, true);
        Ok(())
    }

    /// Writes back the shared file pages shown in `[addr, addr + len)`, which
    /// must be mapped (msync with MS_SYNC): for each file, every mapping of
    /// those pages (in any address space) is write-protected and cleaned,
    /// one shootdown per address space, then the dirty pages are written.
    /// The address-space lock is not held across the I/O. Private mappings
    /// have nothing to write. Write errors are in the report (those pages
    /// stay dirty).
    pub fn msync(&self, addr: u64, len: u64) -> Result<WritebackReport, VmError> {
        let end = Self::check_range(addr, len)?;
        let mut files = Vec::new();
        {
            let regions = self.regions.read();
            regions.require_mapped(addr, end)?;
            for base in regions.overlapping(addr, end) {
                let v = &regions.map[&base].vmr;
                if v.is_shared() {
                    let (lo, hi) = (addr.max(v.base), end.min(v.end));
                    files.push((v.file.clone(), v.index_of(lo), v.index_of(hi - PAGE)));
                }
            }
        }
        let mut report = WritebackReport::default();
        for (file, first, last) in files {
            let r = file.writeback(first..=last);
            report.written += r.written;
            report.harvested += r.harvested;
            report.shootdowns += r.shootdowns;
            report.discarded += r.discarded;
            report.errors.extend(r.errors);
        }
        Ok(report)
    }

    /// Changes the protection of `[addr, addr + len)`, which must be mapped.
    pub fn mprotect(&self, addr: u64, len: u64, prot: Prot) -> Result<(), VmError> {
        self.set_attrs(addr, len, &|v| (prot, v.advice))
    }

    /// Advice on `[addr, addr + len)`, which must be mapped (madvise):
    /// [`Advice::Normal`], [`Advice::Random`] and [`Advice::Sequential`]
    /// become the regions' advice (their fault-around and readahead);
    /// [`Advice::DontNeed`] and [`Advice::Free`] are actions on the pages
    /// now (see each), which leave the regions as they are.
    ///
    /// # Errors
    /// Bad ranges as [`munmap`](Self::munmap); [`VmError::NoMapping`] if
    /// part of the range is not mapped; for the actions,
    /// [`VmError::Locked`] if part of it is locked (mlock, MAP_LOCKED), and
    /// for [`Advice::Free`] [`VmError::NotAnonymous`] if part of it is not
    /// anonymous memory (as Linux's EINVAL). Nothing changed then.
    pub fn madvise(&self, addr: u64, len: u64, advice: Advice) -> Result<(), VmError> {
        if advice.is_action() {
            let end = Self::check_range(addr, len)?;
            return self.madvise_action(addr, end, advice);
        }
        self.set_attrs(addr, len, &|v| (v.prot, advice))
    }

    /// mprotect and madvise: gives each region of `[addr, addr + len)`,
    /// which must be mapped, the protection and advice `attrs` makes of it.
    fn set_attrs(
        &self,
        addr: u64,
        len: u64,
        attrs: &dyn Fn(&Vmr) -> (Prot, Advice),
    ) -> Result<(), VmError> {
        let end = Self::check_range(addr, len)?;
        let mut regions = self.regions.write();
        regions.require_mapped(addr, end)?;
        rework(
            &self.core,
            &mut regions,
            addr,
            end,
            &|v| {
                let (prot, advice) = attrs(v);
                Some((prot, advice, v.flags))
            },
            false,
        );
        Ok(())
    }

    /// A copy of this space ([`fork_with`](Self::fork_with) in
    /// [`ForkMode::Share`]): shared mappings stay shared, private and
    /// anonymous pages are shared copy-on-write.
    pub fn fork(&self) -> Result<Arc<AddressSpace>, VmError> {
        self.fork_with(ForkMode::Share)
    }

    /// A copy of this space: shared mappings stay shared (the child faults
    /// them in); private and anonymous pages (private frames) are, as of
    /// one instant, shared copy-on-write ([`ForkMode::Share`]: the child's
    /// entries name the same frames, read-only, and a write fault in either
    /// space copies the page unless its writer holds the last reference,
    /// which it then reuses) or copied now ([`ForkMode::Copy`], the eager
    /// copy this crate made before; kept as the benchmark's baseline).
    ///
    /// Before, every writable private entry of ours is made read-only and
    /// this space is shot down once, so no CPU can change a page while it is
    /// shared or copied (CPUs that write meanwhile fault, and wait for the
    /// address-space lock, which fork holds; afterwards the fault gives the
    /// entry its rights back without copying if the frame is ours alone).
    /// One file's private entries are handled under that file's
    /// [`PageMap::invalidate_lock_shared`], so a truncate or hole punch zaps
    /// either our entries before the fork or both spaces' after it.
    ///
    /// # Errors
    /// [`VmError::OutOfMemory`] ([`ForkMode::Copy`]) if the pool has no
    /// frame for a copy, or if a frame has [`pagemap::PrivateFrame::MAX_MAP_COUNT`]
    /// references already; the child is torn down and this space unchanged
    /// (its entries stay write-protected: its next write fault restores them).
    pub fn fork_with(&self, mode: ForkMode) -> Result<Arc<AddressSpace>, VmError> {
        let child = AddressSpace::new(self.core.machine.clone());
        let regions = self.regions.write();
        write_protect_private(&self.core, &regions);
        let pool = self.core.machine.pool();
        let pool_swap = self.core.machine.swap();
        {
            let mut kid = child.regions.write();
            for r in regions.map.values() {
                let v = &r.vmr;
                // Memory locks are not inherited (as on Linux): the child's
                // region is not LOCKED, its entries not MLOCKED.
                let cv = Arc::new(Vmr {
                    mm: child.core.clone(),
                    flags: MapFlags(v.flags.bits() & !MapFlags::LOCKED.bits()),
                    ..v.piece(v.base, v.end, v.prot, v.advice)
                });
                let id = v.file.add_mapping(cv.clone());
                kid.insert(cv, id);
                if v.is_shared() {
                    continue;
                }
                let invalidate = v.file.invalidate_lock_shared();
                let mut failed = false;
                self.core
                    .pt
                    .for_each(v.base / PAGE, (v.end - 1) / PAGE, &mut |vpn, p| loop {
                        let old = p.load();
                        if failed {
                            return;
                        }
                        if let Some(loc) = pte::swap_location(old) {
                            // A paged-out page: the child's entry names the
                            // same location, counted on it.
                            let swap = pool_swap.expect("a swap entry means swap");
                            if swap.dup(pagemap::swap::Location::new(loc)).is_err() {
                                failed = true;
                                return;
                            }
                            child.core.pt.get_or_alloc(vpn).store(old);
                            return;
                        }
                        if old & pte::PRIVATE == 0 {
                            return;
                        }
                        debug_assert_eq!(old & pte::WRITABLE, 0, "sharing a writable page");
                        // Locked (LOCK) while we take the frame: a swap-out
                        // (which takes no address-space lock) passes a
                        // locked entry by, so the entry keeps its reference
                        // and the frame stays ours to share or copy. If the
                        // entry changed (a swap-out made it a swap entry, a
                        // CPU set an A/D bit), look again.
                        if p.cas(old, old | pte::LOCK).is_err() {
                            continue;
                        }
                        let src = FrameId::new(pte::frame(old)).expect("private frame");
                        let shared = match mode {
                            // SAFETY: the parent's entry holds a reference
                            // to this private frame (PRIVATE), and keeps it
                            // while we run: it is locked (see above), faults
                            // and unmaps of this space wait for its lock,
                            // which fork holds, and a truncate's zap for the
                            // file's invalidate lock.
                            ForkMode::Share => unsafe { PrivateFrame::share_raw(pool, src) }.ok(),
                            ForkMode::Copy => pool.alloc_private().ok().map(|copy| {
                                let mut buf = [0u8; PAGE_SIZE];
                                // SAFETY: the parent's entry owns this private
                                // frame (PRIVATE), write-protected and shot down
                                // above; no store ever fills a private frame.
                                unsafe { pool.read_page(src, &mut buf) };
                                copy.write_page(&buf);
                                if let Some(anon) = &child.core.machine.anon {
                                    copy.make_evictable(anon.owner.id(), vpn);
                                }
                                copy.into_raw()
                            }),
                        };
                        if let Some(nf) = shared {
                            // The child's entry holds the new reference (see
                            // `PrivateFrame`), read-only too: the first write
                            // in either space faults and copies or reuses.
                            // A store: the child's entry is empty, and only
                            // a swap-out could change it, for a frame it
                            // names (nobody else sees the child yet).
                            // The dirty bit too (as Linux's copy_present_pte
                            // for a private mapping): the page's writes
                            // since MADV_FREE live in the entries' bits.
                            let keep = old & (pte::PRESENT | pte::PRIVATE | pte::DIRTY);
                            child
                                .core
                                .pt
                                .get_or_alloc(vpn)
                                .store(pte::make(nf.get(), keep));
                        } else {
                            failed = true;
                        }
                        // Unlocked (a CAS: CPUs may set A/D bits on it).
                        p.update(|o| Some(o & !pte::LOCK))
                            .expect("update always applies");
                        return;
                    });
                drop(invalidate);
                if failed {
                    drop(kid);
                    drop(regions);
                    drop(child); // tears down what was shared or copied
                    return Err(VmError::OutOfMemory);
                }
            }
            kid.generation += 1;
        }
        Ok(child)
    }

    /// Unmaps everything: dirty bits of shared pages reach the page cache
    /// before the regions leave the reverse maps (Akaros lost them on exit:
    /// defect 5). Also runs on drop.
    pub fn teardown(&self) {
        let mut regions = self.regions.write();
        rework(&self.core, &mut regions, 0, VA_END, &|_| None, true);
    }
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        self.teardown();
    }
}

impl std::fmt::Debug for AddressSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddressSpace")
            .field("asid", &self.core.asid)
            .field("regions", &self.regions())
            .finish()
    }
}
