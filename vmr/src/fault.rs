//! The fault handler, in the shape of OpenBSD's `uvm_fault` after its 2020
//! split into `uvm_fault_check` and `struct uvm_faultctx`: a check phase fills a [`FaultCtx`] or answers "no mapping",
//! "protection" or "restart"; resident neighbours are mapped without
//! blocking; the centre page is taken without blocking under the
//! address-space lock, and if that would block, the lock is dropped, the
//! page is loaded blocking, and the fault restarts (a generation counter
//! tells whether the regions changed meanwhile).
//!
//! It is the worked example of pagemap's fault-side interface (the module
//! docs of `pagemap`'s `fault`, with the page table entry's state machine),
//! and uses nothing else of the page map:
//! * fault-around: [`pagemap::PageMap::map_pages`] over the window, for the
//!   empty entries;
//! * the centre, entry empty: [`pagemap::PageMap::map_page`]
//!   ([`pagemap::Error::WouldBlock`]: drop the lock, with sequential advice
//!   [`pagemap::PageMap::readahead`] of a window from the page, then
//!   [`pagemap::PageMap::load`], restart);
//! * the centre, entry naming a page-cache frame: revoked by a removal,
//!   [`pagemap::PageMap::refault`]; present and read-only under a write to
//!   a shared mapping, [`pagemap::PageMap::page_mkwrite`]; if the page has
//!   left that frame, the entry is cleared and the fault takes the miss path.
//!
//! Every entry of a file page is installed in one of those calls' callbacks
//! (the page counted as being mapped, the end of file checked after the
//! count), so a truncate cannot return while an entry beyond its new end is
//! being installed, and none is installed after it returns.
//!
//! A minor fault (page cached) allocates nothing and takes no lock beyond
//! the address-space read lock: the page map lookup is lock-free.
//!
//! Layer: above `regions`, `region` and `mm`; below `space`, whose
//! `AddressSpace::handle_fault` and `check_fault` lend it the space's parts
//! (a [`Faulter`]).

use std::sync::atomic::AtomicU64 as StdAtomicU64;
use std::sync::Arc;

use pagemap::swap::{Location, Lookup};
use pagemap::{FrameId, PageRef, PrivateFrame, PAGE_SIZE};

/// What a fault on a swap entry does next (see `Faulter::swap_fault`).
enum SwapStep {
    /// Look at the entry again (the page was mapped, or the entry changed).
    Again,
    /// Sleep until this frame is no longer BUSY, without the lock.
    Wait(FrameId),
    /// Read the location in, without the lock.
    Read(Location),
}

use crate::error::{Access, Fault};
use crate::machine::Machine;
use crate::mm::MmCore;
use crate::pte::{self, PteCell};
use crate::region::{MapFlags, Prot, Vmr};
use crate::regions::Regions;
use crate::sync::{Mutex, Ordering, RwLock};

const PAGE: u64 = PAGE_SIZE as u64;

/// Fault counters of an address space.
#[derive(Debug, Default)]
pub struct FaultStats {
    /// Faults resolved without blocking (the page was cached; spurious ones included).
    pub minor: StdAtomicU64,
    /// Faults that read the page (the handler dropped its lock and blocked).
    pub major: StdAtomicU64,
    /// Private copies made by write faults (of a page-cache page, or of a
    /// private frame another space shares after fork).
    pub cow: StdAtomicU64,
    /// Write faults on a private frame shared at fork that found it no
    /// longer shared and took it writable without a copy.
    pub reused: StdAtomicU64,
    /// Anonymous pages zero-filled at their first touch.
    pub zero_fill: StdAtomicU64,
    /// Faults on swap entries that mapped the page back from the swap
    /// cache (each after its page-in, counted in `major`, or after
    /// another fault's).
    pub swap_ins: StdAtomicU64,
    /// Neighbouring pages mapped by fault-around.
    pub neighbours: StdAtomicU64,
    /// Faults restarted because the regions changed while blocked.
    pub restarts: StdAtomicU64,
    /// Faults that found the translation already there.
    pub spurious: StdAtomicU64,
    /// Pages read ahead by faults that missed in a region with sequential
    /// advice (each window one store I/O).
    pub readahead: StdAtomicU64,
}

/// What the check phase decided (UVM's `uvm_faultctx`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultCtx {
    /// Protection to enter the pages with (a private mapping enters the
    /// shared page without write: a write copies it).
    pub enter_prot: Prot,
    /// First address of the neighbourhood.
    pub start_va: u64,
    /// Pages in the neighbourhood.
    pub npages: u64,
    /// Position of the faulting page in it.
    pub center: u64,
    /// Only the faulting page (after the first pass, and for wired faults).
    pub narrow: bool,
    /// The mapping is locked, or this is a wiring fault.
    pub wired: bool,
}

/// Why the check phase did not produce a context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckError {
    /// No region covers the address.
    NoMapping,
    /// The region forbids the access.
    Protection,
    /// The regions changed since the previous pass: start from scratch.
    Restart,
}

/// The check phase: find the region, check the access, choose the window.
/// `seen_generation` is the regions' generation when the previous pass
/// dropped the lock, if it did.
pub(crate) fn fault_check<'r>(
    regions: &'r Regions,
    va: u64,
    access: Access,
    ctx: &mut FaultCtx,
    seen_generation: Option<u64>,
) -> Result<&'r Arc<Vmr>, CheckError> {
    if seen_generation.is_some_and(|g| g != regions.generation) {
        return Err(CheckError::Restart);
    }
    let region = regions.find(va).ok_or(CheckError::NoMapping)?;
    let v = &region.vmr;
    // As on x86 (and Linux): any protection but NONE can be read, so a
    // write-only or exec-only region reads the same whether or not a PTE is
    // there yet (the vmr_ops fuzzer caught the difference).
    let allowed = match access {
        Access::Read => v.prot != Prot::NONE,
        Access::Write => v.prot.contains(Prot::WRITE),
        Access::Exec => v.prot.contains(Prot::EXEC),
    };
    if !allowed {
        return Err(CheckError::Protection);
    }
    ctx.enter_prot = v.prot;
    if !v.is_shared() && access != Access::Write {
        ctx.enter_prot = ctx.enter_prot.without(Prot::WRITE);
    }
    ctx.wired = ctx.wired || v.flags.contains(MapFlags::LOCKED);
    let page_va = va & !(PAGE - 1);
    if ctx.narrow || ctx.wired {
        ctx.start_va = page_va;
        ctx.npages = 1;
        ctx.center = 0;
    } else {
        let (back, forw) = v.advice.window();
        let nback = back.min((page_va - v.base) / PAGE);
        let nforw = forw.min((v.end - page_va) / PAGE - 1);
        ctx.start_va = page_va - nback * PAGE;
        ctx.npages = nback + nforw + 1;
        ctx.center = nback;
        ctx.narrow = true; // once per fault
    }
    // Borrowed, not cloned: a clone is two shared atomics on every fault.
    Ok(v)
}

/// The fault handler over one address space: the parts of it that a fault
/// uses, lent by the `AddressSpace` for one fault.
pub(crate) struct Faulter<'a> {
    /// The address-space lock.
    pub(crate) regions: &'a RwLock<Regions>,
    pub(crate) core: &'a MmCore,
    /// The space's copy-on-write mutex (see `copy_on_write`).
    pub(crate) cow: &'a Mutex<()>,
    pub(crate) stats: &'a FaultStats,
}

impl Faulter<'_> {
    /// The space's page table and shootdowns.
    fn core(&self) -> &MmCore {
        self.core
    }

    /// The machine, for its frame pool.
    fn machine(&self) -> &Arc<Machine> {
        &self.core.machine
    }

    /// Resolves a fault at `va`; `wire`: a narrow fault (no neighbours), for
    /// populate and wiring.
    pub(crate) fn fault(&self, va: u64, access: Access, wire: bool) -> Result<(), Fault> {
        let mut ctx = FaultCtx {
            enter_prot: Prot::NONE,
            start_va: 0,
            npages: 0,
            center: 0,
            narrow: wire,
            wired: wire,
        };
        let mut seen = None;
        let mut blocked = false;
        loop {
            let regions = self.regions.read();
            let v = match fault_check(&regions, va, access, &mut ctx, seen) {
                Ok(v) => v,
                Err(CheckError::Restart) => {
                    self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                    seen = None;
                    continue;
                }
                Err(CheckError::NoMapping) => return Err(Fault::NoMapping { va }),
                Err(CheckError::Protection) => return Err(Fault::Protection { va, access }),
            };
            let center_va = ctx.start_va + ctx.center * PAGE;
            // The centre's entry, walked to once for the whole fault (table
            // pages are never freed while the space lives).
            let p = self.core().pt.get_or_alloc(center_va / PAGE);
            let now = p.load();
            if let Some(loc) = pte::swap_location(now) {
                let step = self.swap_fault(v, center_va, p, now, loc);
                let swap = self.machine().swap().expect("a swap entry means swap");
                match step {
                    SwapStep::Again => continue,
                    SwapStep::Wait(f) => {
                        // Never sleep under the address-space lock.
                        seen = Some(regions.generation);
                        drop(regions);
                        swap.wait(f);
                    }
                    SwapStep::Read(loc) => {
                        seen = Some(regions.generation);
                        drop(regions);
                        self.stats.major.fetch_add(1, Ordering::Relaxed);
                        blocked = true;
                        swap.read_in(loc).map_err(|source| match source {
                            // No frame to read into: as a zero-fill fault's.
                            pagemap::Error::PoolExhausted { .. } => Fault::OutOfMemory { va },
                            source => Fault::Io { va, source },
                        })?;
                    }
                }
                continue;
            }
            if let Some(done) = self.restore_private(v, center_va, p, access) {
                return done;
            }
            if v.is_anonymous() {
                // No page cache: an empty entry gets a zero-filled frame.
                if p.load() & pte::LOCK != 0 {
                    drop(self.cow.lock()); // a copy in flight: wait for it
                    continue;
                }
                return self.anon_fault(v, center_va, p, access);
            }
            if ctx.npages > 1 {
                self.map_neighbours(v, &ctx);
            }
            let index = v.index_of(center_va);
            // The install runs in the page map's callback: ordered against
            // truncate (see `pagemap::PageMap::map_page`).
            let install = |page: &PageRef<'_>| self.map_center(v, center_va, p, page, access, &ctx);
            let mapped = match Self::named_frame(p) {
                // The entry names a page-cache frame: a revoked entry, or a
                // present one (a write to a read-only entry, a spurious
                // fault). Take that page only if it is still in that frame.
                Some((old, frame)) => {
                    let mkwrite =
                        old & pte::PRESENT != 0 && access == Access::Write && v.is_shared();
                    let refaulted = if mkwrite {
                        v.file.page_mkwrite(index, frame, install)
                    } else {
                        v.file.refault(index, frame, install)
                    };
                    match refaulted {
                        Ok(Some(r)) => Ok(r),
                        Ok(None) => {
                            // Gone: the removal reaped this entry before it
                            // took the page, so our read was stale; clear it
                            // if it is still there and take the miss path.
                            let _ = p.cas(old, 0);
                            continue;
                        }
                        Err(e) => Err(e),
                    }
                }
                None => v.file.map_page(index, install),
            };
            match mapped {
                Ok(r) => {
                    if r.is_ok() && !blocked {
                        self.stats.minor.fetch_add(1, Ordering::Relaxed);
                    }
                    return r;
                }
                Err(pagemap::Error::WouldBlock { .. }) => {}
                Err(pagemap::Error::BeyondEof { .. }) => return Err(Fault::BeyondEof { va }),
                Err(source) => return Err(Fault::Io { va, source }),
            }
            // Would block: never sleep on I/O under the address-space lock.
            seen = Some(regions.generation);
            blocked = true;
            let file = v.file.clone();
            // The window to read ahead, within the region (its last page
            // is `index_of(end - PAGE)`).
            let ahead = v
                .advice
                .readahead()
                .min(v.index_of(v.end - PAGE) - index + 1);
            drop(regions);
            self.stats.major.fetch_add(1, Ordering::Relaxed);
            if ahead > 1 {
                // One I/O for the window, the faulting page first; an error
                // is left to the load below, which reads the page alone and
                // reports it (readahead is only a hint).
                if let Ok(n) = file.readahead(index, ahead) {
                    self.stats.readahead.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
            let page = file.load(index).map_err(|source| match source {
                pagemap::Error::BeyondEof { .. } => Fault::BeyondEof { va },
                source => Fault::Io { va, source },
            })?;
            // The page stays cached while the region covers it.
            drop(page);
        }
    }

    /// Fault-around: maps the resident, up-to-date pages of the window
    /// whose PTEs are empty, the centre excepted, through the page map's
    /// [`pagemap::PageMap::map_pages`] (each install ordered against
    /// truncate). Never blocks.
    fn map_neighbours(&self, v: &Vmr, ctx: &FaultCtx) {
        let first = v.index_of(ctx.start_va);
        let center = first + ctx.center;
        let flags = pte::PRESENT | Self::write_flags(v, ctx.enter_prot);
        let pt = &self.core().pt;
        let installed = v.file.map_pages(
            first,
            first + (ctx.npages - 1),
            // Only empty entries: a revoked one is left to its own fault.
            |index| index != center && pt.get(v.va_of(index) / PAGE).is_none_or(|p| p.load() == 0),
            |page| {
                let p = pt.get_or_alloc(v.va_of(page.index()) / PAGE);
                p.cas(0, pte::make(page.frame().get(), flags)).is_ok()
            },
        );
        if installed != 0 {
            self.stats
                .neighbours
                .fetch_add(installed, Ordering::Relaxed);
        }
    }

    /// The entry at `va` and the page-cache frame it names, if it names one
    /// that no copy-on-write of ours is changing (not empty, not a private
    /// copy, not locked).
    fn named_frame(p: &PteCell) -> Option<(u64, pagemap::FrameId)> {
        let old = p.load();
        if old & (pte::PRIVATE | pte::LOCK) != 0 {
            return None;
        }
        pagemap::FrameId::new(pte::frame(old)).map(|f| (old, f))
    }

    /// A private frame at `va` (write-protected by fork, or hidden by
    /// mprotect): gives it the region's rights back without looking at the
    /// page cache (the file page may be gone; the frame is all that counts).
    /// Write rights only to the last holder of the frame: a write to a frame
    /// still shared with another space (after fork, or through the swap
    /// cache) copies it first ([`write_private`](Self::write_private)).
    /// `None` if the entry is not a private frame. One CAS on the existing
    /// entry: a truncate's zap or an unmap of it wins or loses cleanly.
    fn restore_private(
        &self,
        v: &Vmr,
        va: u64,
        p: &PteCell,
        access: Access,
    ) -> Option<Result<(), Fault>> {
        let pool = self.machine().pool();
        loop {
            let old = p.load();
            if old & pte::PRIVATE == 0 || old & pte::LOCK != 0 {
                return None;
            }
            if access == Access::Write && old & pte::WRITABLE == 0 {
                // (The region allows writes: fault_check said so.)
                match self.write_private(va, p, old) {
                    Some(r) => return Some(r),
                    None => continue, // the entry changed: look again
                }
            }
            // A read (or a write the entry already allows): presence, and
            // write rights only if the frame is ours alone with no side
            // effect to find that out (a read never takes a page out of the
            // swap cache).
            let frame = FrameId::new(pte::frame(old)).expect("private PTE has a frame");
            let exclusive = match self.machine().swap() {
                // Exact for us: only a holder adds references (fork, under
                // the lock of a space that maps it); the others let go.
                None => pool.private_map_count(frame) == Some(1),
                // With swap, a swap-out may free the frame and a swap-in
                // reuse its id under us (no lock stops them): no write
                // rights without the entry locked (`write_private`).
                Some(_) => false,
            };
            let write = if v.prot.contains(Prot::WRITE) && exclusive {
                pte::WRITABLE
            } else {
                0
            };
            let new = old | pte::PRESENT | write;
            if new == old {
                self.stats.spurious.fetch_add(1, Ordering::Relaxed);
                return Some(Ok(()));
            }
            if p.cas(old, new).is_ok() {
                return Some(Ok(()));
            }
        }
    }

    /// A write to the read-only private entry `old` of `va`: the entry is
    /// locked first (LOCK, in one CAS that re-checks it: a swap-out's walk
    /// passes locked entries by, so the entry's reference keeps the frame
    /// alive and where it is); then, if the writer's reference is the last
    /// one and no swap entry shares the page (Linux's
    /// `wp_can_reuse_anon_folio`), the entry gets write rights (reuse);
    /// otherwise the page is copied into a frame of our own, the entry
    /// hidden and shot down, the copy published, and our reference to the
    /// shared frame dropped (the last holder frees it). `None` if the entry
    /// changed before it could be locked. The space's COW mutex is held
    /// while LOCK is set (faults that find LOCK sleep on it).
    fn write_private(&self, va: u64, p: &PteCell, old: u64) -> Option<Result<(), Fault>> {
        let pool = self.machine().pool();
        let src = FrameId::new(pte::frame(old)).expect("private PTE has a frame");
        let vpn = va / PAGE;
        let _cow = self.cow.lock();
        // Locked, still present (CPUs keep reading it meanwhile, and may
        // set its accessed bit: the changes below are CASes).
        if p.cas(old, old | pte::LOCK).is_err() {
            return None;
        }
        let exclusive = match self.machine().swap() {
            None => pool.private_map_count(src) == Some(1),
            Some(swap) => swap.make_exclusive(src),
        };
        if exclusive {
            // Ours alone: write rights, no copy, no shootdown (the old
            // translations were read-only and name the same frame).
            p.update(|o| Some((o & !pte::LOCK) | pte::PRESENT | pte::WRITABLE))
                .expect("update always applies");
            self.stats.reused.fetch_add(1, Ordering::Relaxed);
            return Some(Ok(()));
        }
        // Hidden: CPUs fault instead of reading a frame about to be
        // replaced; then shot down.
        let hidden = p
            .update(|o| Some(o & !(pte::PRESENT | pte::WRITABLE)))
            .expect("update always applies")
            & !(pte::PRESENT | pte::WRITABLE);
        if old & pte::PRESENT != 0 {
            self.core().shootdown(vpn, vpn);
        }
        let copy = match pool.alloc_private() {
            Ok(c) => c,
            Err(_) => {
                // Back as it was (unlocked, present again if it was): the
                // frame is still ours. Store: locked and not present.
                p.store((hidden & !pte::LOCK) | (old & pte::PRESENT));
                return Some(Err(Fault::OutOfMemory { va }));
            }
        };
        let mut buf = [0u8; PAGE_SIZE];
        // SAFETY: our entry (locked) holds a reference to `src`, so it is
        // neither freed nor reused while we copy; every entry that shares it
        // is read-only (a holder writes only once it holds the last
        // reference), so nobody writes it meanwhile.
        unsafe { pool.read_page(src, &mut buf) };
        copy.write_page(&buf);
        self.make_evictable(&copy, va);
        let new = pte::make(
            copy.id().get(),
            pte::PRESENT
                | pte::WRITABLE
                | pte::PRIVATE
                | pte::ACCESSED
                | pte::DIRTY
                | (old & pte::MLOCKED),
        );
        let _ = copy.into_raw();
        // Unlocks, with the copy (SeqCst, as every PTE change).
        p.store(new);
        // SAFETY: our entry held this reference, and it names the copy
        // now: ours to drop, after the shootdown above, and nobody else's.
        drop(unsafe { PrivateFrame::from_raw(pool, src) });
        self.stats.cow.fetch_add(1, Ordering::Relaxed);
        Some(Ok(()))
    }

    /// A fault on an anonymous region's empty entry: a zero-filled private
    /// frame of our own, writable if the region is (nobody else can have
    /// it), installed by one CAS from empty (a racing fault's frame wins and
    /// ours is freed).
    fn anon_fault(&self, v: &Vmr, va: u64, p: &PteCell, access: Access) -> Result<(), Fault> {
        let pool = self.machine().pool();
        let frame = pool
            .alloc_private()
            .map_err(|_| Fault::OutOfMemory { va })?;
        frame.write_page(&[0u8; PAGE_SIZE]);
        self.make_evictable(&frame, va);
        let write = if v.prot.contains(Prot::WRITE) {
            pte::WRITABLE
        } else {
            0
        };
        let touched = pte::ACCESSED
            | if access == Access::Write {
                pte::DIRTY
            } else {
                0
            };
        let new = pte::make(
            frame.id().get(),
            pte::PRESENT | pte::PRIVATE | write | touched | Self::mlocked(v),
        );
        if p.cas(0, new).is_ok() {
            let _ = frame.into_raw(); // the entry holds it now
            self.stats.zero_fill.fetch_add(1, Ordering::Relaxed);
            self.stats.minor.fetch_add(1, Ordering::Relaxed);
        }
        // Lost: someone else's entry is there; the access retries on it.
        Ok(())
    }

    /// MLOCKED for a private frame's entry in a locked region.
    fn mlocked(v: &Vmr) -> u64 {
        if v.flags.contains(MapFlags::LOCKED) {
            pte::MLOCKED
        } else {
            0
        }
    }

    /// A new private frame for `va` joins reclaim's choice of victims (if
    /// the machine has swap to put it in): its rmap key is its page.
    fn make_evictable(&self, frame: &PrivateFrame, va: u64) {
        if let Some(anon) = &self.machine().anon {
            frame.make_evictable(anon.owner.id(), va / PAGE);
        }
    }

    /// A fault on a swap entry (`old`, of location `loc`): the page is
    /// taken from the swap cache and mapped read-only (a write faults again
    /// and copies or reuses it, as after fork); if it is being moved or is
    /// not in memory, `Blocked` says what to do without the address-space
    /// lock.
    fn swap_fault(&self, v: &Vmr, va: u64, p: &PteCell, old: u64, loc: u32) -> SwapStep {
        let Some(swap) = self.machine().swap() else {
            unreachable!("a swap entry on a machine without swap");
        };
        let loc = Location::new(loc);
        match swap.lookup(loc) {
            Lookup::Cached(frame) => {
                self.make_evictable(&frame, va);
                let new = pte::make(
                    frame.id().get(),
                    pte::PRESENT | pte::PRIVATE | pte::ACCESSED | Self::mlocked(v),
                );
                if p.cas(old, new).is_ok() {
                    // The entry holds the reference now, no longer the
                    // location.
                    let _ = frame.into_raw();
                    swap.free_entry(loc);
                    self.stats.swap_ins.fetch_add(1, Ordering::Relaxed);
                }
                // Else the entry changed (dropping the frame gives the
                // reference back): look again.
                SwapStep::Again
            }
            Lookup::Busy(f) => SwapStep::Wait(f),
            Lookup::Absent => SwapStep::Read(loc),
        }
    }

    /// PTE bits for a page-cache page entered with `prot`.
    fn write_flags(v: &Vmr, prot: Prot) -> u64 {
        if !v.is_shared() {
            pte::COW
        } else if prot.contains(Prot::WRITE) {
            pte::WRITABLE
        } else {
            0
        }
    }

    fn map_center(
        &self,
        v: &Vmr,
        va: u64,
        p: &PteCell,
        page: &PageRef<'_>,
        access: Access,
        ctx: &FaultCtx,
    ) -> Result<(), Fault> {
        // Runs in `map_page`'s callback: `page` is counted as mapping until
        // the entry is in place or the copy-on-write copy published, and
        // truncate waits for that. `p` is the entry of `va`.
        let frame = page.frame().get();
        loop {
            let old = p.load();
            if old & pte::LOCK != 0 {
                // Another CPU's copy-on-write of this page is in flight: wait
                // for it (it holds the space's COW lock while LOCK is set).
                drop(self.cow.lock());
                continue;
            }
            if old & pte::PRIVATE != 0 {
                // A private frame appeared meanwhile (another CPU's
                // copy-on-write): the access retries, and its fault, if it
                // needs one, takes `restore_private`'s path.
                return Ok(());
            }
            if !v.is_shared() && access == Access::Write {
                return self.copy_on_write(v, va, p, page, old);
            }
            debug_assert!(
                old & pte::PRESENT == 0 || pte::frame(old) == frame,
                "a present PTE maps another frame than the cached page"
            );
            // ACCESSED (and DIRTY for a write) now: the access that follows
            // then needs no PTE update of its own.
            let touched = pte::ACCESSED
                | if access == Access::Write {
                    pte::DIRTY
                } else {
                    0
                };
            let mut new = pte::make(
                frame,
                pte::PRESENT | Self::write_flags(v, ctx.enter_prot) | touched,
            );
            if pte::frame(old) == frame {
                // Keep the hardware bits: a dirty bit here is owed to the
                // page cache (Akaros's fault handler preserved it too).
                new |= old & (pte::DIRTY | pte::ACCESSED);
            }
            if new == old {
                self.stats.spurious.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            if p.cas(old, new).is_ok() {
                return Ok(());
            }
        }
    }

    /// A write to a private mapping of a cached page: copy it into a frame of
    /// our own that never enters the page map.
    ///
    /// The entry is hidden (not present) and locked in one CAS, CPUs that may
    /// cache the old read-only translation are shot down, and only then is
    /// the copy published (which unlocks). Installing first and flushing
    /// after let a CPU read the old page after another CPU's write to the
    /// copy had completed (found by the loom model vmr_cow_shootdown); the
    /// lock keeps a second faulter from installing its own copy meanwhile.
    /// The space's COW mutex is held while LOCK is set, so a fault that finds
    /// LOCK sleeps on the mutex instead of spinning.
    fn copy_on_write(
        &self,
        v: &Vmr,
        va: u64,
        p: &pte::PteCell,
        page: &PageRef<'_>,
        old: u64,
    ) -> Result<(), Fault> {
        let pool = self.machine().pool();
        let copy = pool
            .alloc_private()
            .map_err(|_| Fault::OutOfMemory { va })?;
        let mut buf = [0u8; PAGE_SIZE];
        page.read_page(&mut buf);
        copy.write_page(&buf);
        self.make_evictable(&copy, va);
        let new = pte::make(
            copy.id().get(),
            pte::PRESENT
                | pte::WRITABLE
                | pte::PRIVATE
                | pte::ACCESSED
                | pte::DIRTY
                | Self::mlocked(v),
        );
        let vpn = va / PAGE;
        let _cow = self.cow.lock();
        let hidden = (old & !(pte::PRESENT | pte::WRITABLE)) | pte::LOCK;
        if p.cas(old, hidden).is_err() {
            // Someone changed the entry meanwhile: retry the fault (dropping
            // the copy frees it).
            return Ok(());
        }
        if old & pte::PRESENT != 0 {
            // CPUs may still read the shared page through the old entry.
            self.core().shootdown(vpn, vpn);
        }
        // Release the lock with the copy (SeqCst, as every PTE change); the
        // entry owns the frame from now on (taken back by whoever clears it:
        // munmap, truncate's zap, teardown).
        let _ = copy.into_raw();
        p.store(new);
        self.stats.cow.fetch_add(1, Ordering::Relaxed);
        debug_assert!(!v.is_shared());
        Ok(())
    }
}
