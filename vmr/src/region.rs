//! VM regions: immutable descriptions of one mapping of one file.
//!
//! A region never changes once built. munmap, mprotect and madvise of part
//! of a region replace it by new pieces, which are added to the file's
//! reverse map before the old region leaves it, so every mapped page stays
//! covered throughout (Akaros shrank the old region first: defect 4).
//!
//! Layer: above `mm` (a region holds its space's core); the region map of a
//! space is in `regions.rs`, a region's side of the page map's protocols in
//! `unmap.rs`.

use std::sync::Arc;

use pagemap::{PageMap, PAGE_SIZE};

use crate::mm::MmCore;

/// Memory protection of a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Prot(u8);

impl Prot {
    /// No access.
    pub const NONE: Prot = Prot(0);
    /// Loads. (As on x86, WRITE or EXEC alone also allow loads: any
    /// protection but NONE is readable.)
    pub const READ: Prot = Prot(1);
    /// Stores.
    pub const WRITE: Prot = Prot(2);
    /// Instruction fetches.
    pub const EXEC: Prot = Prot(4);
    /// Read and write.
    pub const RW: Prot = Prot(3);

    /// Whether all of `other` is allowed.
    pub const fn contains(self, other: Prot) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` without `other`.
    pub const fn without(self, other: Prot) -> Prot {
        Prot(self.0 & !other.0)
    }
}

impl std::ops::BitOr for Prot {
    type Output = Prot;
    fn bitor(self, rhs: Prot) -> Prot {
        Prot(self.0 | rhs.0)
    }
}

/// Mapping flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MapFlags(pub(crate) u8);

impl MapFlags {
    /// Writes reach the file and every other sharer.
    pub const SHARED: MapFlags = MapFlags(1);
    /// Writes go to private copies (copy on write).
    pub const PRIVATE: MapFlags = MapFlags(2);
    /// Pages are pinned (MAP_LOCKED): pre-faulted and never removed.
    pub const LOCKED: MapFlags = MapFlags(4);
    /// Pre-fault the whole range at mmap.
    pub const POPULATE: MapFlags = MapFlags(8);
    /// Anonymous memory (MAP_ANONYMOUS, always with PRIVATE): zero-filled
    /// on first touch, owned by the address space, no file behind it (see
    /// [`AddressSpace::mmap_anonymous`](crate::AddressSpace::mmap_anonymous)).
    pub const ANONYMOUS: MapFlags = MapFlags(16);

    /// Whether all of `other` is set.
    pub const fn contains(self, other: MapFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }
}

impl std::ops::BitOr for MapFlags {
    type Output = MapFlags;
    fn bitor(self, rhs: MapFlags) -> MapFlags {
        MapFlags(self.0 | rhs.0)
    }
}

/// Access-pattern advice (madvise): it sets the fault-around window and
/// the readahead of a fault that misses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Advice {
    /// A few pages each side.
    #[default]
    Normal,
    /// No neighbours.
    Random,
    /// More pages ahead.
    Sequential,
    /// `MADV_DONTNEED`, an action: the private and anonymous pages of the
    /// range are dropped now (private frames freed, paged-out pages' swap
    /// entries too); the next touch zero-fills an anonymous page or maps
    /// the file's page again. Shared mappings are left as they are.
    DontNeed,
    /// `MADV_FREE`, an action on anonymous memory: its pages may be dropped
    /// by reclaim without being written to swap (they then read zeroes)
    /// unless they are written again first; a page written after the
    /// advice keeps its data.
    Free,
}

impl Advice {
    /// Whether this is an action on the pages ([`DontNeed`](Advice::DontNeed),
    /// [`Free`](Advice::Free)) rather than an attribute of the regions.
    pub const fn is_action(self) -> bool {
        matches!(self, Advice::DontNeed | Advice::Free)
    }

    /// Pages mapped before and after the faulting one (as UVM's table).
    pub const fn window(self) -> (u64, u64) {
        match self {
            Advice::Normal | Advice::DontNeed | Advice::Free => (3, 4),
            Advice::Random => (0, 0),
            Advice::Sequential => (8, 7),
        }
    }

    /// Pages a fault that misses reads ahead from the faulting one, in one
    /// store I/O ([`pagemap::PageMap::readahead`]), before it maps the page:
    /// 32 for [`Sequential`](Advice::Sequential) (madvise's
    /// `MADV_SEQUENTIAL`), none otherwise (the fault reads its page alone).
    pub const fn readahead(self) -> u64 {
        match self {
            Advice::Sequential => 32,
            Advice::Normal | Advice::Random | Advice::DontNeed | Advice::Free => 0,
        }
    }
}

/// One mapping of a file into an address space: `[base, end)` shows file
/// pages from `pgoff` on. Immutable.
pub struct Vmr {
    pub(crate) base: u64,
    pub(crate) end: u64,
    pub(crate) pgoff: u64,
    pub(crate) prot: Prot,
    pub(crate) flags: MapFlags,
    pub(crate) advice: Advice,
    pub(crate) file: Arc<PageMap>,
    pub(crate) mm: Arc<MmCore>,
}

impl Vmr {
    /// First address.
    pub fn base(&self) -> u64 {
        self.base
    }
    /// First address past the region.
    pub fn end(&self) -> u64 {
        self.end
    }
    /// File page shown at `base`.
    pub fn pgoff(&self) -> u64 {
        self.pgoff
    }
    /// Protection.
    pub fn prot(&self) -> Prot {
        self.prot
    }
    /// Flags.
    pub fn flags(&self) -> MapFlags {
        self.flags
    }
    /// Advice.
    pub fn advice(&self) -> Advice {
        self.advice
    }
    /// The file's page map.
    pub fn file(&self) -> &Arc<PageMap> {
        &self.file
    }
    /// Whether writes reach the file.
    pub fn is_shared(&self) -> bool {
        self.flags.contains(MapFlags::SHARED)
    }
    /// Whether this is anonymous memory (its "file" is the machine's zero
    /// file, whose pages are never loaded: see
    /// [`Machine::zero_file`](crate::Machine::zero_file)).
    pub fn is_anonymous(&self) -> bool {
        self.flags.contains(MapFlags::ANONYMOUS)
    }
    /// Pages in the region.
    pub fn pages(&self) -> u64 {
        (self.end - self.base) / PAGE_SIZE as u64
    }
    /// File page shown at `va` (full 64-bit: Akaros truncated to 32 bits, defect 10).
    pub fn index_of(&self, va: u64) -> u64 {
        debug_assert!(va >= self.base && va < self.end);
        self.pgoff + (va - self.base) / PAGE_SIZE as u64
    }
    /// Address showing file page `index` (must be covered).
    pub fn va_of(&self, index: u64) -> u64 {
        debug_assert!(index >= self.pgoff && index - self.pgoff < self.pages());
        self.base + (index - self.pgoff) * PAGE_SIZE as u64
    }

    /// The same mapping restricted to `[base, end)` with other attributes.
    pub(crate) fn piece(&self, base: u64, end: u64, prot: Prot, advice: Advice) -> Vmr {
        self.piece_with(base, end, prot, advice, self.flags)
    }

    /// [`piece`](Self::piece) with other flags too (mlock, munlock).
    pub(crate) fn piece_with(
        &self,
        base: u64,
        end: u64,
        prot: Prot,
        advice: Advice,
        flags: MapFlags,
    ) -> Vmr {
        debug_assert!(self.base <= base && base < end && end <= self.end);
        Vmr {
            base,
            end,
            pgoff: self.index_of(base),
            prot,
            flags,
            advice,
            file: self.file.clone(),
            mm: self.mm.clone(),
        }
    }
}

impl std::fmt::Debug for Vmr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vmr")
            .field("range", &format_args!("{:#x}..{:#x}", self.base, self.end))
            .field("pgoff", &self.pgoff)
            .field("prot", &self.prot)
            .field("flags", &self.flags)
            .field("advice", &self.advice)
            .finish()
    }
}
