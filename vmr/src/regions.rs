//! An address space's region map ([`Regions`]): its regions by base
//! address, with the generation that faults compare across a dropped lock;
//! lookup, overlap, gap search, insertion and the split of regions around a
//! range.
//!
//! Layer: above `region` (the map holds [`Vmr`]s); below the fault handler,
//! `rework` and `space`, which hold the map under the address-space lock.

use std::collections::BTreeMap;
use std::sync::Arc;

use pagemap::MappingId;

use crate::error::VmError;
use crate::pagetable::VA_END;
use crate::region::{Advice, MapFlags, Prot, Vmr};

/// Where chosen (non-fixed) mappings start.
#[cfg(not(pagemap_loom))]
const MMAP_BASE: u64 = 0x1000_0000;
#[cfg(pagemap_loom)]
const MMAP_BASE: u64 = 0x1000;

pub(crate) struct Region {
    pub(crate) vmr: Arc<Vmr>,
    pub(crate) id: MappingId,
}

/// A region taken out of the map by [`Regions::split_range`]: the region,
/// the first and last address changed (`[lo, hi)`), and the new protection
/// of that part (`None`: unmapped).
pub(crate) type Replaced = (Region, u64, u64, Option<Prot>);

/// What a range change makes of the part of a region inside the range: its
/// new (protection, advice, flags), or `None` to unmap it.
pub(crate) type NewAttrs<'a> = &'a dyn Fn(&Vmr) -> Option<(Prot, Advice, MapFlags)>;

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

    pub(crate) fn overlapping(&self, start: u64, end: u64) -> Vec<u64> {
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

    /// Adds `vmr`, registered in its file's reverse map as `id`.
    pub(crate) fn insert(&mut self, vmr: Arc<Vmr>, id: MappingId) {
        self.map.insert(vmr.base, Region { vmr, id });
    }

    /// The first free `len` bytes from `MMAP_BASE` on.
    pub(crate) fn find_gap(&self, len: u64) -> Result<u64, VmError> {
        let mut candidate = MMAP_BASE;
        for r in self.map.values() {
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

    /// Every address of `[start, end)` is in some region.
    pub(crate) fn require_mapped(&self, start: u64, end: u64) -> Result<(), VmError> {
        let mut at = start;
        while at < end {
            match self.find(at) {
                Some(r) => at = r.vmr.end,
                None => return Err(VmError::NoMapping { addr: at }),
            }
        }
        Ok(())
    }

    /// Splits the regions overlapping `[start, end)` at its ends: the parts
    /// outside keep their attributes, the part inside gets `f`'s (prot,
    /// advice) or goes (`None`). The new pieces are in the map and in their
    /// file's reverse map; the old regions are out of the map but still in the
    /// reverse map (so no page is uncovered), returned for the caller to
    /// change their entries and then remove them. Empty if nothing overlaps
    /// (the generation is then unchanged).
    pub(crate) fn split_range(&mut self, start: u64, end: u64, f: NewAttrs<'_>) -> Vec<Replaced> {
        let bases = self.overlapping(start, end);
        if bases.is_empty() {
            return Vec::new();
        }
        // (old region, first and last address changed, its new prot)
        let mut olds = Vec::with_capacity(bases.len());
        for base in bases {
            let old = self.map.remove(&base).expect("overlapping region exists");
            let v = &old.vmr;
            let (lo, hi) = (start.max(v.base), end.min(v.end));
            let mut pieces = Vec::with_capacity(3);
            if v.base < lo {
                pieces.push(v.piece(v.base, lo, v.prot, v.advice));
            }
            let inner = f(v);
            if let Some((prot, advice, flags)) = inner {
                pieces.push(v.piece_with(lo, hi, prot, advice, flags));
            }
            if hi < v.end {
                pieces.push(v.piece(hi, v.end, v.prot, v.advice));
            }
            for p in pieces {
                let p = Arc::new(p);
                let id = v.file.add_mapping(p.clone());
                self.insert(p, id);
            }
            olds.push((old, lo, hi, inner.map(|(p, _, _)| p)));
        }
        self.generation += 1;
        olds
    }
}
