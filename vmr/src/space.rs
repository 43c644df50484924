//! Address spaces: VM regions over a page table.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64 as StdAtomicU64;
use std::sync::Arc;

use pagemap::{
    FlushTarget, FrameId, MappingId, PageMap, PageRef, PrivateFrame, ShootdownBatch,
    WritebackReport, PAGE_SIZE,
};

use crate::error::{Access, VmError};
use crate::lazy::{self, PteOp};
use crate::machine::Machine;
use crate::pagetable::{PageTable, VA_END};
use crate::pte;
use crate::region::{Advice, MapFlags, Prot, Vmr};
use crate::sync::{AtomicU64, Mutex, Ordering, RwLock, RwLockWriteGuard};

const PAGE: u64 = PAGE_SIZE as u64;
/// Where chosen (non-fixed) mappings start.
#[cfg(not(pagemap_loom))]
const MMAP_BASE: u64 = 0x1000_0000;
#[cfg(pagemap_loom)]
const MMAP_BASE: u64 = 0x1000;

/// What an address space shares with its regions (which the reverse maps
/// hold): the page table, the ASID and the CPUs that may cache it.
pub(crate) struct MmCore {
    pub(crate) asid: u64,
    pub(crate) pt: PageTable,
    /// Bit i: CPU i may hold translations of this space.
    pub(crate) cpumask: AtomicU64,
    /// Unmappers of this space (munmap, mprotect, teardown) between their
    /// first entry change and the end of their shootdown: while non-zero, a
    /// CPU may still cache an entry that is already gone from the table
    /// (Linux's `mm->tlb_flush_pending`). Another path that finds an entry
    /// empty must then shoot the space down itself before it frees or cuts
    /// the page behind it (see `Vmr::add_to_batch`).
    pub(crate) flush_pending: AtomicU64,
    pub(crate) machine: Arc<Machine>,
}

impl MmCore {
    /// A CPU is about to walk this space's page table.
    #[inline]
    pub(crate) fn note_cpu(&self, cpu: usize) {
        let bit = 1u64 << cpu;
        // SeqCst: pairs with the shootdown's SeqCst load (see Machine::shootdown).
        // When the bit is already set, it was set (SeqCst) by an earlier access
        // on this CPU, under the CPU's TLB lock that we hold now: that set
        // happens-before our SeqCst PTE read, which is all the pairing needs,
        // so no fence here (bits are never cleared).
        if self.cpumask.load(Ordering::Relaxed) & bit == 0 {
            self.cpumask.fetch_or(bit, Ordering::SeqCst);
        }
    }

    /// An unmapper is about to change entries of this space. SeqCst, before
    /// the entry changes: a path that reads an entry this unmapper cleared
    /// (its SeqCst load reads from our SeqCst swap, Release) then sees this
    /// count (see [`flush_pending`](Self::flush_pending)).
    pub(crate) fn begin_flush_pending(&self) {
        self.flush_pending.fetch_add(1, Ordering::SeqCst);
    }

    /// The unmapper's shootdown has completed. Release: its flush happens
    /// before a path that sees the count drop.
    pub(crate) fn end_flush_pending(&self) {
        let old = self.flush_pending.fetch_sub(1, Ordering::Release);
        assert!(old > 0, "flush_pending underflow");
    }

    /// Whether some unmapper's shootdown of this space may still be pending
    /// (read after the entries it looked at). SeqCst.
    pub(crate) fn flush_pending(&self) -> bool {
        self.flush_pending.load(Ordering::SeqCst) != 0
    }

    /// Shoots down pages `first..=last` of this space.
    pub(crate) fn shootdown(&self, first_vpn: u64, last_vpn: u64) {
        self.machine.shootdown(self, first_vpn, last_vpn);
    }
}

/// A space's TLBs, as the page map's shootdown batches see them.
impl FlushTarget for MmCore {
    fn id(&self) -> u64 {
        self.asid
    }

    fn flush(&self, pages: Option<(u64, u64)>) {
        let (first, last) = pages.unwrap_or((0, u64::MAX));
        self.machine.shootdown(self, first, last);
    }
}

pub(crate) struct Region {
    pub(crate) vmr: Arc<Vmr>,
    pub(crate) id: MappingId,
}

#[derive(Default)]
pub(crate) struct Regions {
    /// By base address.
    pub(crate) map: BTreeMap<u64, Region>,
    /// Bumped by every change of the regions (faults restart on a change).
    pub(crate) generation: u64,
}

impl Regions {
    /// The region containing `va`.
    pub(crate) fn find(&self, va: u64) -> Option<&Region> {
        self.map
            .range(..=va)
            .next_back()
            .map(|(_, r)| r)
            .filter(|r| va < r.vmr.end)
    }

    fn overlapping(&self, start: u64, end: u64) -> Vec<u64> {
        let mut out = Vec::new();
        if let Some(r) = self.find(start) {
            out.push(r.vmr.base);
        }
        out.extend(
            self.map
                .range(start..end)
                .map(|(b, _)| *b)
                .filter(|b| *b != start),
        );
        out.dedup();
        out
    }
}

/// Fault counters of an address space.
#[derive(Debug, Default)]
pub struct FaultStats {
    /// Faults resolved without blocking (the page was cached; spurious ones included).
    pub minor: StdAtomicU64,
    /// Faults that read the page (the handler dropped its lock and blocked).
    pub major: StdAtomicU64,
    /// Private copies made by write faults.
    pub cow: StdAtomicU64,
    /// Neighbouring pages mapped by fault-around.
    pub neighbours: StdAtomicU64,
    /// Faults restarted because the regions changed while blocked.
    pub restarts: StdAtomicU64,
    /// Faults that found the translation already there.
    pub spurious: StdAtomicU64,
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
/// let file = Arc::new(PageMap::new(pool, Arc::new(MemStore::new())));
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
    pub(crate) regions: RwLock<Regions>,
    /// Held by a copy-on-write fault while a PTE carries `pte::LOCK`
    /// (lock order: after `regions`, before the TLBs).
    pub(crate) cow: Mutex<()>,
    pub(crate) stats: FaultStats,
}

/// A page table entry taken away by an unmap, to settle after the shootdown.
struct Unmapped {
    vmr: Arc<Vmr>,
    tag: usize,
    vpn: u64,
    old: u64,
}

/// A shared page held while an unmap takes its entry's dirty bit: without
/// the reference a remover could free the page before the bit reaches it.
struct Hold<'v> {
    tag: usize,
    vpn: u64,
    page: PageRef<'v>,
}

impl AddressSpace {
    /// An empty address space on `machine`.
    pub fn new(machine: Arc<Machine>) -> Arc<AddressSpace> {
        Arc::new(AddressSpace {
            core: Arc::new(MmCore {
                asid: machine.new_asid(),
                pt: PageTable::new(),
                cpumask: AtomicU64::new(0),
                flush_pending: AtomicU64::new(0),
                machine,
            }),
            regions: RwLock::new(Regions::default()),
            cow: Mutex::new(()),
            stats: FaultStats::default(),
        })
    }

    pub(crate) fn core(&self) -> &MmCore {
        &self.core
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
    fn check_range(addr: u64, len: u64) -> Result<u64, VmError> {
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
                Self::find_gap(&regions, req.len)?
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
        regions.map.insert(base, Region { vmr, id });
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

    fn find_gap(regions: &Regions, len: u64) -> Result<u64, VmError> {
        let mut candidate = MMAP_BASE;
        for r in regions.map.values() {
            if r.vmr.end <= candidate {
                continue;
            }
            if r.vmr.base >= candidate && r.vmr.base - candidate >= len {
                break;
            }
            candidate = r.vmr.end;
        }
        match candidate.checked_add(len) {
            Some(end) if end <= VA_END => Ok(candidate),
            _ => Err(VmError::NoSpace),
        }
    }

    /// Pre-faults a range (MAP_POPULATE, MAP_LOCKED): private writable
    /// mappings take write faults (their copies are made now), others read.
    fn populate(&self, base: u64, len: u64, prot: Prot, shared: bool) -> Result<(), VmError> {
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

    /// Unmaps `[addr, addr + len)`. Parts of regions outside stay mapped.
    /// Dirty bits of shared pages are moved to the page cache before the
    /// regions leave the reverse map, after the shootdown.
    pub fn munmap(&self, addr: u64, len: u64) -> Result<(), VmError> {
        let end = Self::check_range(addr, len)?;
        let mut regions = self.regions.write();
        self.rework(&mut regions, addr, end, &|_| None, true);
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
            Self::require_mapped(&regions, addr, end)?;
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
        let end = Self::check_range(addr, len)?;
        let mut regions = self.regions.write();
        Self::require_mapped(&regions, addr, end)?;
        self.rework(&mut regions, addr, end, &|v| Some((prot, v.advice)), false);
        Ok(())
    }

    /// Sets the advice of `[addr, addr + len)`, which must be mapped.
    pub fn madvise(&self, addr: u64, len: u64, advice: Advice) -> Result<(), VmError> {
        let end = Self::check_range(addr, len)?;
        let mut regions = self.regions.write();
        Self::require_mapped(&regions, addr, end)?;
        self.rework(&mut regions, addr, end, &|v| Some((v.prot, advice)), false);
        Ok(())
    }

    fn require_mapped(regions: &Regions, start: u64, end: u64) -> Result<(), VmError> {
        let mut at = start;
        while at < end {
            match regions.find(at) {
                Some(r) => at = r.vmr.end,
                None => return Err(VmError::NoMapping { addr: at }),
            }
        }
        Ok(())
    }

    /// Replaces the regions overlapping `[start, end)`: the parts outside
    /// keep their attributes, the part inside gets `f`'s (prot, advice) or
    /// goes (`None`). Order: new pieces into the reverse map; PTEs changed;
    /// one shootdown; dirty bits harvested, private frames freed; old regions
    /// out of the reverse map. No page is uncovered at any point.
    fn rework(
        &self,
        regions: &mut RwLockWriteGuard<'_, Regions>,
        start: u64,
        end: u64,
        f: &dyn Fn(&Vmr) -> Option<(Prot, Advice)>,
        unmap: bool,
    ) {
        let bases = regions.overlapping(start, end);
        if bases.is_empty() {
            return;
        }
        // (old region, first and last address changed, its new prot)
        let mut olds = Vec::with_capacity(bases.len());
        for base in bases {
            let old = regions
                .map
                .remove(&base)
                .expect("overlapping region exists");
            let v = &old.vmr;
            let (lo, hi) = (start.max(v.base), end.min(v.end));
            let mut pieces = Vec::with_capacity(3);
            if v.base < lo {
                pieces.push(v.piece(v.base, lo, v.prot, v.advice));
            }
            let inner = f(v);
            if let Some((prot, advice)) = inner {
                pieces.push(v.piece(lo, hi, prot, advice));
            }
            if hi < v.end {
                pieces.push(v.piece(hi, v.end, v.prot, v.advice));
            }
            for p in pieces {
                let p = Arc::new(p);
                let id = v.file.add_mapping(p.clone());
                regions.map.insert(p.base, Region { vmr: p, id });
            }
            olds.push((old, lo, hi, inner.map(|(p, _)| p)));
        }
        regions.generation += 1;
        // PTE changes are batched in a lazy MMU section and applied at its
        // end (or at the caller's flush, if this one is nested). Pages whose
        // dirty bit we may take are held until it is in the page cache.
        let mut holds: Vec<Hold<'_>> = Vec::new();
        // Entries we clear stay in CPUs' TLBs until our flush below: say so
        // to truncate and removal, which must not free or cut the pages
        // behind them without their own shootdown of this space.
        self.core.begin_flush_pending();
        lazy::lazy_mmu_mode_enable();
        for (tag, (old, lo, hi, prot)) in olds.iter().enumerate() {
            self.take_ptes(&old.vmr, *lo, *hi, unmap, *prot, tag, &mut holds);
        }
        lazy::lazy_mmu_mode_disable();
        let taken: Vec<Unmapped> = lazy::take_applied()
            .into_iter()
            .filter(|&(_, _, old)| old != 0)
            .map(|(tag, vpn, old)| Unmapped {
                vmr: olds[tag].0.vmr.clone(),
                tag,
                vpn,
                old,
            })
            .collect();
        // One shootdown for this space (a whole-space flush above the
        // batch's ceiling); the private frames taken go back to the pool only
        // after it has completed.
        let mut batch = ShootdownBatch::new();
        if !taken.is_empty() {
            batch.add(self.core.clone(), start / PAGE, (end - 1) / PAGE);
        }
        if unmap {
            let pool = self.core.machine.pool();
            for t in taken.iter().filter(|t| t.old & pte::PRIVATE != 0) {
                let frame = FrameId::new(pte::frame(t.old)).expect("private PTE has a frame");
                // SAFETY: a private entry owns its frame (`into_raw` at the
                // copy-on-write fault or fork), and our swap to 0 took this
                // entry out of the table: a concurrent zap that got there
                // first returned it instead, and we saw 0 (filtered above).
                // So this is the only `from_raw`. (mprotect's updates keep
                // the frame in the entry, so only munmap frees here; the
                // entry-still-names-it test it replaces double-freed a copy
                // that a truncate zapped between mprotect(NONE) and it.)
                batch.defer_free(unsafe { PrivateFrame::from_raw(pool, frame) });
            }
        }
        batch.flush();
        self.core.end_flush_pending();
        self.settle(taken, &holds);
        drop(holds);
        for (old, ..) in olds {
            old.vmr.file.remove_mapping(old.id);
        }
    }

    /// Queues the PTE changes of `[lo, hi)` of `v` (clear them for `unmap`,
    /// or remove write, and presence for NONE, as `prot` asks) in the
    /// caller's lazy MMU section; `tag` names `v` in the caller's list. A
    /// shared page whose entry may carry a dirty bit is held in `holds`.
    #[allow(clippy::too_many_arguments)]
    fn take_ptes<'v>(
        &self,
        v: &'v Vmr,
        lo: u64,
        hi: u64,
        unmap: bool,
        prot: Option<Prot>,
        tag: usize,
        holds: &mut Vec<Hold<'v>>,
    ) {
        let (keep_write, keep_read) = match prot {
            Some(p) if !unmap => (p.contains(Prot::WRITE), p != Prot::NONE),
            _ => (false, false),
        };
        if !unmap && keep_write && keep_read {
            return; // adding rights: faults upgrade the entries
        }
        let op = if unmap {
            PteOp::Clear
        } else if !keep_read {
            PteOp::Update(prot_none, 0)
        } else {
            PteOp::Update(write_protect, 0)
        };
        self.core
            .pt
            .for_each(lo / PAGE, (hi - 1) / PAGE, &mut |vpn, p| {
                let old = p.load();
                // The AS write lock keeps faults out, so an entry neither
                // writable nor dirty now cannot become dirty before our op.
                if v.is_shared()
                    && old & pte::PRIVATE == 0
                    && old & (pte::WRITABLE | pte::DIRTY) != 0
                {
                    let index = v.index_of(vpn * PAGE);
                    let frame = FrameId::new(pte::frame(old)).expect("shared PTE has a frame");
                    // (None: a remover reaped the entry meanwhile.)
                    if let Some(page) = v.file.find_frame(index, frame) {
                        holds.push(Hold { tag, vpn, page });
                    }
                }
                lazy::queue(&self.core, vpn, op, tag);
            });
    }

    /// After the shootdown: dirty bits of shared pages go to the page cache,
    /// through the references `take_ptes` took (in `(tag, vpn)` order).
    fn settle(&self, taken: Vec<Unmapped>, holds: &[Hold<'_>]) {
        for t in taken {
            if t.old & pte::PRIVATE != 0 || t.old & pte::DIRTY == 0 {
                continue; // private: freed by the shootdown batch if unmapped
            }
            let at = holds.binary_search_by_key(&(t.tag, t.vpn), |h| (h.tag, h.vpn));
            match at.ok().map(|i| &holds[i].page) {
                Some(page) if page.frame().get() == pte::frame(t.old) => page.mark_dirty(),
                _ => panic!(
                    "dirty bit of page {} taken without holding the page",
                    t.vmr.index_of(t.vpn * PAGE)
                ),
            }
        }
    }

    #[cfg(all(test, not(pagemap_loom)))]
    pub(crate) fn core_arc(&self) -> Arc<MmCore> {
        self.core.clone()
    }

    /// A copy of this space: shared mappings stay shared (the child faults
    /// them in), private pages are copied now, each as of one instant.
    ///
    /// Before copying, every writable private entry of ours is made
    /// read-only and this space is shot down once, so no CPU can change a
    /// page while it is copied (CPUs that write meanwhile fault, and wait for
    /// the address-space lock, which fork holds; afterwards the fault gives
    /// the entry its rights back without copying: the copy is ours). The
    /// copies of one file's private pages are made under that file's
    /// [`PageMap::invalidate_lock_shared`], so a truncate or hole punch zaps
    /// either our entries before the copy or both spaces' after it.
    pub fn fork(&self) -> Result<Arc<AddressSpace>, VmError> {
        let child = AddressSpace::new(self.core.machine.clone());
        let regions = self.regions.write();
        self.write_protect_private(&regions);
        let pool = self.core.machine.pool();
        {
            let mut kid = child.regions.write();
            for r in regions.map.values() {
                let v = &r.vmr;
                let cv = Arc::new(Vmr {
                    mm: child.core.clone(),
                    ..v.piece(v.base, v.end, v.prot, v.advice)
                });
                let id = v.file.add_mapping(cv.clone());
                kid.map.insert(cv.base, Region { vmr: cv, id });
                if v.is_shared() {
                    continue;
                }
                let invalidate = v.file.invalidate_lock_shared();
                let mut failed = false;
                self.core
                    .pt
                    .for_each(v.base / PAGE, (v.end - 1) / PAGE, &mut |vpn, p| {
                        let old = p.load();
                        if failed || old & pte::PRIVATE == 0 {
                            return;
                        }
                        debug_assert_eq!(old & pte::WRITABLE, 0, "copying a writable page");
                        let Ok(copy) = pool.alloc_private() else {
                            failed = true;
                            return;
                        };
                        let src = FrameId::new(pte::frame(old)).expect("private frame");
                        let mut buf = [0u8; PAGE_SIZE];
                        pool.read_page(src, &mut buf);
                        copy.write_page(&buf);
                        // The child's entry owns it (see `PrivateFrame`).
                        let nf = copy.into_raw();
                        // Read-only too: the child's first write faults and
                        // takes its rights back, as ours does.
                        let keep = old & (pte::PRESENT | pte::PRIVATE);
                        child
                            .core
                            .pt
                            .get_or_alloc(vpn)
                            .store(pte::make(nf.get(), keep));
                    });
                drop(invalidate);
                if failed {
                    drop(kid);
                    drop(regions);
                    drop(child); // tears down what was copied
                    return Err(VmError::OutOfMemory);
                }
            }
            kid.generation += 1;
        }
        Ok(child)
    }

    /// Fork's first step: every writable private entry becomes read-only, in
    /// one lazy section, then one shootdown of this space if any changed.
    fn write_protect_private(&self, regions: &Regions) {
        lazy::lazy_mmu_mode_enable();
        for r in regions.map.values() {
            let v = &r.vmr;
            if v.is_shared() {
                continue;
            }
            self.core
                .pt
                .for_each(v.base / PAGE, (v.end - 1) / PAGE, &mut |vpn, p| {
                    if p.load() & pte::PRIVATE != 0 {
                        lazy::queue(&self.core, vpn, PteOp::Update(protect_private, 0), 0);
                    }
                });
        }
        lazy::lazy_mmu_mode_disable();
        let changed = lazy::take_applied();
        let lo = changed.iter().map(|a| a.1).min();
        let hi = changed.iter().map(|a| a.1).max();
        if let (Some(lo), Some(hi)) = (lo, hi) {
            self.core.shootdown(lo, hi);
        }
    }

    /// Unmaps everything: dirty bits of shared pages reach the page cache
    /// before the regions leave the reverse maps (Akaros lost them on exit:
    /// defect 5). Also runs on drop.
    pub fn teardown(&self) {
        let mut regions = self.regions.write();
        self.rework(&mut regions, 0, VA_END, &|_| None, true);
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

/// mprotect(NONE) of one PTE: a private frame stays recorded (its data is
/// the only copy) but not present; a shared page is simply unmapped.
fn prot_none(old: u64, _: u64) -> Option<u64> {
    if old == 0 {
        return None;
    }
    Some(if old & pte::PRIVATE != 0 {
        old & !(pte::PRESENT | pte::WRITABLE | pte::DIRTY)
    } else {
        0
    })
}

/// fork: a writable private copy becomes read-only (its dirty bit means
/// nothing to the page cache: the frame is ours alone).
fn protect_private(old: u64, _: u64) -> Option<u64> {
    (old & pte::PRIVATE != 0 && old & pte::WRITABLE != 0).then_some(old & !pte::WRITABLE)
}

/// mprotect without WRITE of one PTE: write and dirty go (the dirty bit is
/// settled into the page cache after the shootdown).
fn write_protect(old: u64, _: u64) -> Option<u64> {
    (old & pte::WRITABLE != 0).then_some(old & !(pte::WRITABLE | pte::DIRTY))
}
