//! The sequential reference model of `vmr` over `pagemap` (target `vmr_ops`).
//!
//! Per address space: its regions (base, end, pgoff, prot, flags, advice,
//! file), its private pages (one copy per virtual page, made by the first
//! write or inherited at fork) and which shared pages it wrote since their
//! dirty bit was last harvested. Per file: the backing store's pages, the
//! cached pages with their contents (the file as every shared mapping sees
//! it: the page cache, else the store, else zeroes), the page cache's dirty
//! set and the injected I/O errors. Frames in use are exactly the cached
//! pages plus the private copies, so the model also predicts the pool's free
//! count and every out-of-frames error.
//!
//! It knows nothing of page tables or TLBs: what a CPU reads must follow
//! from the regions and the writes alone.

use std::collections::{BTreeMap, BTreeSet};

use vmr::{Access, Fault, VmError};

pub use crate::model::PAGE_SIZE;

/// Page size in bytes.
pub const PAGE: u64 = PAGE_SIZE as u64;
/// First address past user space (48-bit, as `vmr::pagetable::VA_END`).
pub const VA_END: u64 = 1 << 48;
/// Where chosen mappings start (as `vmr`'s `MMAP_BASE`).
pub const MMAP_BASE: u64 = 0x1000_0000;

/// Protection bits (as `vmr::Prot`).
pub const READ: u8 = 1;
/// Write.
pub const WRITE: u8 = 2;
/// Exec.
pub const EXEC: u8 = 4;
/// Flag bits (as `vmr::MapFlags`).
pub const SHARED: u8 = 1;
/// Private.
pub const PRIVATE: u8 = 2;
/// Locked (populated, pinned).
pub const LOCKED: u8 = 4;
/// Populate.
pub const POPULATE: u8 = 8;

/// A page's bytes.
pub type Page = [u8; PAGE_SIZE];

/// A region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MRegion {
    /// First address.
    pub base: u64,
    /// First address past it.
    pub end: u64,
    /// File page at `base`.
    pub pgoff: u64,
    /// Protection bits.
    pub prot: u8,
    /// Flag bits.
    pub flags: u8,
    /// Advice: 0 normal, 1 random, 2 sequential.
    pub advice: u8,
    /// Which file.
    pub file: usize,
}

impl MRegion {
    /// Whether writes reach the file.
    pub fn shared(&self) -> bool {
        self.flags & SHARED != 0
    }
    /// File page at `va`.
    pub fn index_of(&self, va: u64) -> u64 {
        self.pgoff + (va - self.base) / PAGE
    }
    /// Last file page.
    pub fn last_index(&self) -> u64 {
        self.pgoff + ((self.end - self.base) / PAGE - 1)
    }
    fn piece(&self, base: u64, end: u64, prot: u8, advice: u8) -> MRegion {
        MRegion {
            base,
            end,
            pgoff: self.index_of(base),
            prot,
            advice,
            ..self.clone()
        }
    }
}

/// One address space.
#[derive(Clone, Debug, Default)]
pub struct MSpace {
    /// Regions by base.
    pub regions: BTreeMap<u64, MRegion>,
    /// Private copies by virtual page number, each with the identity of
    /// its frame: fork shares a copy's frame (copy-on-write) until one of
    /// the spaces writes it, which then copies it unless it holds the last
    /// reference.
    pub private: BTreeMap<u64, (u64, Box<Page>)>,
    /// Shared virtual pages written since their dirty bit was harvested.
    pub pte_dirty: BTreeSet<u64>,
}

impl MSpace {
    /// The region containing `va`: the last one starting at or below it,
    /// if `va` is below its end.
    pub fn find(&self, va: u64) -> Option<&MRegion> {
        let (_, r) = self.regions.range(..=va).last()?;
        (va < r.end).then_some(r)
    }

    /// The bases of the regions sharing a byte with `[start, end)` (`start <
    /// end`), ascending: those starting below `end`, walked down while they
    /// still end above `start` (regions do not overlap, so their ends grow
    /// with their bases).
    fn overlapping(&self, start: u64, end: u64) -> Vec<u64> {
        let mut bases: Vec<u64> = self
            .regions
            .range(..end)
            .rev()
            .take_while(|(_, r)| start < r.end)
            .map(|(&b, _)| b)
            .collect();
        bases.reverse();
        bases
    }
}

/// One file: a page map over a store.
#[derive(Clone, Debug, Default)]
pub struct MFile {
    /// Store pages.
    pub store: BTreeMap<u64, Box<Page>>,
    /// Cached pages and their contents.
    pub cache: BTreeMap<u64, Box<Page>>,
    /// Dirty cached pages.
    pub dirty: BTreeSet<u64>,
    /// Injected read errors.
    pub bad_reads: BTreeSet<u64>,
    /// Injected write errors.
    pub bad_writes: BTreeSet<u64>,
    /// Pages mapped at some point (the first 32 of each mapping).
    pub known: BTreeSet<u64>,
}

impl MFile {
    /// What the store holds at `index` (absent: zeroes).
    pub fn store_page(&self, index: u64) -> Box<Page> {
        self.store
            .get(&index)
            .cloned()
            .unwrap_or_else(|| Box::new([0; PAGE_SIZE]))
    }
}

/// What `writeback`/`sync` does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MWriteback {
    /// Pages written.
    pub written: u64,
    /// Pages with write errors.
    pub errors: Vec<u64>,
}

/// What `free_unused` does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MFree {
    /// Freed.
    pub freed: u64,
    /// Written before being freed.
    pub written: u64,
    /// Skipped: covered by a region.
    pub mapped: u64,
    /// Write errors (kept, dirty).
    pub errors: Vec<u64>,
}

/// The model.
#[derive(Clone, Debug)]
pub struct VmModel {
    /// Address-space slots.
    pub spaces: Vec<Option<MSpace>>,
    /// Files.
    pub files: Vec<MFile>,
    /// Frames in the pool.
    pub capacity: usize,
    /// The next private frame identity.
    pub next_frame: u64,
}

/// The documented argument rules of a range `[addr, addr + len)`, first
/// broken first: address aligned, length non-zero, length aligned, no
/// wrap-around, end within user space. Returns the end.
pub fn check_range(addr: u64, len: u64) -> Result<u64, VmError> {
    let end = u128::from(addr) + u128::from(len);
    let broken = [
        (
            addr & (PAGE - 1) != 0,
            VmError::Misaligned {
                what: "address",
                value: addr,
            },
        ),
        (len == 0, VmError::ZeroLength),
        (
            len & (PAGE - 1) != 0,
            VmError::Misaligned {
                what: "length",
                value: len,
            },
        ),
        (end > u128::from(u64::MAX), VmError::Overflow),
        (end > u128::from(VA_END), VmError::OutOfRange { addr, len }),
    ];
    match broken.into_iter().find(|(bad, _)| *bad) {
        Some((_, e)) => Err(e),
        None => Ok(end as u64),
    }
}

/// What the inner part of a reworked range becomes.
#[derive(Clone, Copy)]
enum Rework {
    Unmap,
    Prot(u8),
    Advice(u8),
}

impl VmModel {
    /// `spaces` empty spaces, `files` empty files, a pool of `capacity`.
    pub fn new(spaces: usize, files: usize, capacity: usize) -> Self {
        VmModel {
            spaces: (0..spaces).map(|_| Some(MSpace::default())).collect(),
            files: (0..files).map(|_| MFile::default()).collect(),
            capacity,
            next_frame: 0,
        }
    }

    /// Free frames: the pool less cached pages and private copies.
    pub fn free_frames(&self) -> usize {
        let frames: BTreeSet<u64> = self
            .spaces
            .iter()
            .flatten()
            .flat_map(|s| s.private.values().map(|p| p.0))
            .collect();
        let used = self.files.iter().map(|f| f.cache.len()).sum::<usize>() + frames.len();
        self.capacity - used
    }

    /// Regions of `file` across all spaces (the reverse map's size).
    pub fn nr_mappings(&self, file: usize) -> usize {
        self.spaces
            .iter()
            .flatten()
            .map(|s| s.regions.values().filter(|r| r.file == file).count())
            .sum()
    }

    fn covered(&self, file: usize, index: u64) -> bool {
        self.spaces.iter().flatten().any(|s| {
            s.regions
                .values()
                .any(|r| r.file == file && r.pgoff <= index && index <= r.last_index())
        })
    }

    /// The first free range of `len` bytes from `MMAP_BASE` (as `find_gap`).
    fn find_gap(space: &MSpace, len: u64) -> Result<u64, VmError> {
        let mut candidate = MMAP_BASE;
        for r in space.regions.values() {
            if r.end <= candidate {
                continue;
            }
            if r.base >= candidate && r.base - candidate >= len {
                break;
            }
            candidate = r.end;
        }
        match candidate.checked_add(len) {
            Some(end) if end <= VA_END => Ok(candidate),
            _ => Err(VmError::NoSpace),
        }
    }

    /// `mmap`. `file`: `None` for the foreign pool's file.
    #[allow(clippy::too_many_arguments)]
    pub fn mmap(
        &mut self,
        s: usize,
        fixed: Option<u64>,
        len: u64,
        prot: u8,
        flags: u8,
        file: Option<usize>,
        pgoff: u64,
        advice: u8,
    ) -> Result<u64, VmError> {
        let shared = flags & SHARED != 0;
        if shared == (flags & PRIVATE != 0) {
            return Err(VmError::InvalidFlags);
        }
        let Some(file) = file else {
            return Err(VmError::ForeignPool);
        };
        // The length rules come first (before the offset and the address).
        if let Err(e @ (VmError::ZeroLength | VmError::Misaligned { .. })) = check_range(0, len) {
            return Err(e);
        }
        pgoff.checked_add(len / PAGE - 1).ok_or(VmError::Overflow)?;
        let space = self.spaces[s].as_mut().expect("live space");
        let base = match fixed {
            Some(addr) => {
                let end = check_range(addr, len)?;
                if let Some(&b) = space.overlapping(addr, end).first() {
                    return Err(VmError::Overlap { addr: b });
                }
                addr
            }
            None => {
                check_range(0, len)?;
                Self::find_gap(space, len)?
            }
        };
        space.regions.insert(
            base,
            MRegion {
                base,
                end: base + len,
                pgoff,
                prot,
                flags,
                advice,
                file,
            },
        );
        if flags & (POPULATE | LOCKED) != 0 {
            let write = !shared && prot & WRITE != 0;
            if write || prot != 0 {
                let mut va = base;
                while va < base + len {
                    if let Err(e) = self.touch(s, va, write) {
                        self.munmap(s, base, len).expect("valid range");
                        return Err(VmError::Populate(Box::new(e)));
                    }
                    va += PAGE;
                }
            }
        }
        Ok(base)
    }

    /// Faults in the page of `va` for a read or a write (region and
    /// protection already checked): loads the file page, makes the private
    /// copy of a private write. `va` is what a fault reports.
    fn touch(&mut self, s: usize, va: u64, write: bool) -> Result<(), Fault> {
        let free = self.free_frames();
        // A write to a private copy another space shares (after fork)
        // copies it into a frame of this space's own.
        let vpn = va / PAGE;
        let mine = self.spaces[s].as_ref().expect("live space").private.get(&vpn).map(|p| p.0);
        if let Some(id) = mine {
            // The fault takes the private entry's path (no file page).
            if !write {
                return Ok(());
            }
            let sharers = self
                .spaces
                .iter()
                .flatten()
                .filter(|sp| sp.private.values().any(|p| p.0 == id))
                .count();
            if sharers > 1 {
                if free == 0 {
                    return Err(Fault::OutOfMemory { va: vpn * PAGE });
                }
                let fresh = self.next_frame;
                self.next_frame += 1;
                let space = self.spaces[s].as_mut().expect("live space");
                space.private.get_mut(&vpn).expect("checked").0 = fresh;
            }
            return Ok(());
        }
        let capacity = self.capacity;
        let space = self.spaces[s].as_mut().expect("live space");
        let r = space.find(va).expect("checked").clone();
        
        let index = r.index_of(va);
        let f = &mut self.files[r.file];
        let mut free = free;
        // Sequential advice: a miss reads ahead a window of up to 32 pages
        // (within the region) with one store read, stopping at the first
        // cached page and at the pool's last free frame; a read error in
        // the window fails all of it (nothing stays), and the fault then
        // reads its page alone.
        if !f.cache.contains_key(&index) && r.advice == 2 {
            let ahead = 32.min(r.last_index() - index + 1);
            if ahead > 1 {
                // Page u64::MAX is never read ahead (the window's end
                // would not fit in a u64).
                let n = (0..ahead)
                    .take_while(|&k| {
                        k < u64::MAX - index
                            && k < free as u64
                            && !f.cache.contains_key(&(index + k))
                    })
                    .count() as u64;
                if !(index..index + n).any(|i| f.bad_reads.contains(&i)) {
                    for i in index..index + n {
                        let p = f.store_page(i);
                        f.cache.insert(i, p);
                    }
                    free -= n as usize;
                }
            }
        }
        if !f.cache.contains_key(&index) {
            if free == 0 {
                // The pool's census: every frame is a cached page or a
                // private copy (none is free).
                let cached: usize = self.files.iter().map(|f| f.cache.len()).sum();
                let source = pagemap::Error::PoolExhausted {
                    capacity,
                    private: (capacity - cached) as u32,
                    unevictable: cached as u32,
                };
                return Err(Fault::Io { va, source });
            }
            if f.bad_reads.contains(&index) {
                let source = pagemap::StoreError::new(pagemap::StoreError::EIO);
                let source = pagemap::Error::Read { index, source };
                return Err(Fault::Io { va, source });
            }
            let p = f.store_page(index);
            f.cache.insert(index, p);
            free -= 1;
        }
        if write && !r.shared() && !space.private.contains_key(&vpn) {
            if free == 0 {
                return Err(Fault::OutOfMemory { va: vpn * PAGE });
            }
            space
                .private
                .insert(vpn, (self.next_frame, f.cache[&index].clone()));
            self.next_frame += 1;
        }
        Ok(())
    }

    /// A CPU access of `len` bytes at `va`: `data` is written (`Some`) or
    /// the bytes read are returned. Applies page by page, as the CPU does, up
    /// to the first fault.
    pub fn access(
        &mut self,
        s: usize,
        va: u64,
        len: usize,
        data: Option<&[u8]>,
        out: &mut Vec<u8>,
    ) -> Result<(), Fault> {
        if va.checked_add(len as u64).is_none() {
            return Err(Fault::NoMapping { va });
        }
        let write = data.is_some();
        let mut done = 0usize;
        while done < len {
            let cur = va + done as u64;
            let off = (cur % PAGE) as usize;
            let n = (PAGE_SIZE - off).min(len - done);
            let space = self.spaces[s].as_ref().expect("live space");
            let Some(r) = space.find(cur) else {
                return Err(Fault::NoMapping { va: cur });
            };
            // Any protection but NONE is readable (as on x86).
            let denied = if write {
                r.prot & WRITE == 0
            } else {
                r.prot == 0
            };
            if denied {
                let access = if write { Access::Write } else { Access::Read };
                return Err(Fault::Protection { va: cur, access });
            }
            let (shared, file, index) = (r.shared(), r.file, r.index_of(cur));
            self.touch(s, cur, write)?;
            let vpn = cur / PAGE;
            let space = self.spaces[s].as_mut().expect("live space");
            let page: &mut Page = match space.private.get_mut(&vpn) {
                Some(p) if !shared => &mut p.1,
                _ => self.files[file].cache.get_mut(&index).expect("touched"),
            };
            match data {
                Some(d) => {
                    page[off..off + n].copy_from_slice(&d[done..done + n]);
                    if shared {
                        space.pte_dirty.insert(vpn);
                    }
                }
                None => out.extend_from_slice(&page[off..off + n]),
            }
            done += n;
        }
        Ok(())
    }

    /// `munmap`.
    pub fn munmap(&mut self, s: usize, addr: u64, len: u64) -> Result<(), VmError> {
        let end = check_range(addr, len)?;
        self.rework(s, addr, end, Rework::Unmap);
        Ok(())
    }

    fn require_mapped(&self, s: usize, start: u64, end: u64) -> Result<(), VmError> {
        let space = self.spaces[s].as_ref().expect("live space");
        let mut at = start;
        while at < end {
            match space.find(at) {
                Some(r) => at = r.end,
                None => return Err(VmError::NoMapping { addr: at }),
            }
        }
        Ok(())
    }

    /// `mprotect`.
    pub fn mprotect(&mut self, s: usize, addr: u64, len: u64, prot: u8) -> Result<(), VmError> {
        let end = check_range(addr, len)?;
        self.require_mapped(s, addr, end)?;
        self.rework(s, addr, end, Rework::Prot(prot));
        Ok(())
    }

    /// `madvise`.
    pub fn madvise(&mut self, s: usize, addr: u64, len: u64, advice: u8) -> Result<(), VmError> {
        let end = check_range(addr, len)?;
        self.require_mapped(s, addr, end)?;
        self.rework(s, addr, end, Rework::Advice(advice));
        Ok(())
    }

    /// Splits the regions overlapping `[start, end)`; the inner parts go or
    /// change. Dirty bits of shared pages whose write permission goes are
    /// harvested into the page cache; private copies of unmapped pages go.
    fn rework(&mut self, s: usize, start: u64, end: u64, what: Rework) {
        let space = self.spaces[s].as_mut().expect("live space");
        for base in space.overlapping(start, end) {
            let v = space.regions.remove(&base).expect("overlapping");
            let (lo, hi) = (start.max(v.base), end.min(v.end));
            if v.base < lo {
                let p = v.piece(v.base, lo, v.prot, v.advice);
                space.regions.insert(p.base, p);
            }
            let new_prot = match what {
                Rework::Unmap => None,
                Rework::Prot(p) => Some((p, v.advice)),
                Rework::Advice(a) => Some((v.prot, a)),
            };
            if let Some((prot, advice)) = new_prot {
                let p = v.piece(lo, hi, prot, advice);
                space.regions.insert(p.base, p);
            }
            if hi < v.end {
                let p = v.piece(hi, v.end, v.prot, v.advice);
                space.regions.insert(p.base, p);
            }
            let (first, last) = (lo / PAGE, (hi - 1) / PAGE);
            let harvest = match new_prot {
                None => true,
                Some((p, _)) => p & WRITE == 0,
            };
            if harvest {
                let dirty: Vec<u64> = space.pte_dirty.range(first..=last).copied().collect();
                for vpn in dirty {
                    space.pte_dirty.remove(&vpn);
                    self.files[v.file].dirty.insert(v.index_of(vpn * PAGE));
                }
            }
            if new_prot.is_none() {
                let copies: Vec<u64> = space.private.range(first..=last).map(|(k, _)| *k).collect();
                for vpn in copies {
                    space.private.remove(&vpn);
                }
            }
        }
    }

    /// Drops the space in slot `s` (teardown), if any.
    pub fn drop_space(&mut self, s: usize) {
        if self.spaces[s].is_some() {
            self.rework(s, 0, VA_END, Rework::Unmap);
            self.spaces[s] = None;
        }
    }

    /// `fork` of `src` into `dst` (dropped first). `None`: a no-op.
    pub fn fork(&mut self, src: usize, dst: usize) -> Option<Result<(), VmError>> {
        if src == dst || self.spaces[src].is_none() {
            return None;
        }
        self.drop_space(dst);
        let parent = self.spaces[src].as_ref().expect("live");
        // Copy-on-write: the child shares every private frame (no frame is
        // needed), and does not inherit memory locks.
        let child = MSpace {
            regions: parent
                .regions
                .iter()
                .map(|(b, r)| {
                    let mut r = r.clone();
                    r.flags &= !LOCKED;
                    (*b, r)
                })
                .collect(),
            private: parent.private.clone(),
            pte_dirty: BTreeSet::new(),
        };
        self.spaces[dst] = Some(child);
        Some(Ok(()))
    }

    /// `writeback` of `first..=last` (`None`: an empty range): first the
    /// dirty bits of every shared mapping of those pages are harvested (the
    /// library cleans and write-protects the PTEs), then the dirty pages
    /// are written.
    pub fn writeback(&mut self, file: usize, range: Option<(u64, u64)>) -> MWriteback {
        let mut rep = MWriteback::default();
        let Some((first, last)) = range else {
            return rep;
        };
        let mut harvested = Vec::new();
        for space in self.spaces.iter_mut().flatten() {
            let dirty: Vec<u64> = space.pte_dirty.iter().copied().collect();
            for vpn in dirty {
                let Some(r) = space.find(vpn * PAGE) else {
                    continue;
                };
                let index = r.index_of(vpn * PAGE);
                if r.file == file && r.shared() && (first..=last).contains(&index) {
                    space.pte_dirty.remove(&vpn);
                    harvested.push(index);
                }
            }
        }
        let f = &mut self.files[file];
        f.dirty.extend(harvested);
        let dirty: Vec<u64> = f.dirty.range(first..=last).copied().collect();
        for i in dirty {
            if f.bad_writes.contains(&i) {
                rep.errors.push(i);
            } else {
                f.store.insert(i, f.cache[&i].clone());
                f.dirty.remove(&i);
                rep.written += 1;
            }
        }
        rep
    }

    /// `free_unused`.
    pub fn free_unused(&mut self, file: usize) -> MFree {
        let mut rep = MFree::default();
        let cached: Vec<u64> = self.files[file].cache.keys().copied().collect();
        for i in cached {
            if self.covered(file, i) {
                rep.mapped += 1;
                continue;
            }
            let f = &mut self.files[file];
            if f.dirty.contains(&i) {
                if f.bad_writes.contains(&i) {
                    rep.errors.push(i);
                    continue;
                }
                f.store.insert(i, f.cache[&i].clone());
                f.dirty.remove(&i);
                rep.written += 1;
            }
            f.cache.remove(&i);
            rep.freed += 1;
        }
        rep
    }
}
