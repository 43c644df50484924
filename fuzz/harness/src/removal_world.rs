//! What the `removal` and `removal_interleaved` drivers share: one small
//! file (a `PageMap` over a `MemStore`) of [`NPAGES`] logical pages, indices
//! `0..8` and `u64::MAX - 3..=u64::MAX`, mapped through a window of
//! [`WINDOW`] virtual pages in each address space; and the structural checks
//! run after every step and at the end.
//!
//! The structural checks ([`check_structure`]): every cached index appears
//! once, is one of the file's pages, and `nr_pages` counts them; every frame
//! is free or owned by exactly one place (a cached page or one private
//! copy-on-write copy), so `free + cached + private copies == capacity`; no
//! page table entry outside a mapping; no stale translation: every shared
//! (non-private) entry maps the frame of the page now cached at its index,
//! and, when no removal is in progress, is present; `holders(i)` is exactly
//! the number of references the driver holds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use pagemap::{FrameId, MemStore, PageMap, PAGE_SIZE};
use vmr::{pte, AddressSpace};

/// A page of bytes.
pub type Page = [u8; PAGE_SIZE];

/// Bytes in a page, as `u64`.
pub const PAGE: u64 = PAGE_SIZE as u64;
/// Logical pages of the file: `0..8` are indices `0..8`, `8..12` are
/// `u64::MAX - 3..=u64::MAX` (so removals of ranges ending at `u64::MAX`
/// find mapped pages).
pub const NPAGES: usize = 12;
/// Virtual pages per address space that mappings use.
pub const WINDOW: usize = 16;
/// Where the window starts (fixed mappings only).
pub const VA_BASE: u64 = 0x4000_0000;

/// The file index of logical page `lp`.
pub fn index_of(lp: usize) -> u64 {
    if lp < 8 {
        lp as u64
    } else {
        u64::MAX - 3 + (lp - 8) as u64
    }
}

/// The logical page of a file index, if it is one.
pub fn lp_of(index: u64) -> Option<usize> {
    if index < 8 {
        Some(index as usize)
    } else if index >= u64::MAX - 3 {
        Some(8 + (index - (u64::MAX - 3)) as usize)
    } else {
        None
    }
}

/// The last logical page of `lp`'s contiguous block of indices.
pub fn block_end(lp: usize) -> usize {
    if lp < 8 {
        8
    } else {
        NPAGES
    }
}

/// The virtual address of window slot `slot`.
pub fn va(slot: usize) -> u64 {
    VA_BASE + slot as u64 * PAGE
}

/// The initial store contents of logical page `lp`: recognisable per page,
/// never equal to a stamp.
pub fn pattern(lp: usize) -> Box<Page> {
    let mut p = Box::new([0u8; PAGE_SIZE]);
    p.fill((lp as u8).wrapping_mul(17).wrapping_add(3));
    p[..8].copy_from_slice(&index_of(lp).to_le_bytes());
    p
}

/// The file, its pool and store.
pub struct World {
    pub pool: Arc<pagemap::FramePool>,
    pub store: Arc<MemStore>,
    pub map: Arc<PageMap>,
    pub machine: Arc<vmr::Machine>,
}

impl World {
    pub fn new(frames: usize, cpus: usize) -> World {
        let pool = crate::pools::pool(frames);
        let store = Arc::new(MemStore::new());
        for lp in 0..NPAGES {
            store.set_page(index_of(lp), &pattern(lp));
        }
        let map = PageMap::new(pool.clone(), store.clone());
        let machine = vmr::Machine::new(pool.clone(), cpus);
        World {
            pool,
            store,
            map,
            machine,
        }
    }
}

/// What a window slot of a space maps, as the driver knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotMap {
    /// Logical file page.
    pub lp: usize,
    /// MAP_SHARED (else MAP_PRIVATE).
    pub shared: bool,
    /// MAP_LOCKED.
    pub pinned: bool,
}

/// The frame of the page cached at `index` now, taking (and dropping) a
/// reference: only call it when no removal is in progress.
pub fn cached_frame(map: &PageMap, index: u64) -> Option<FrameId> {
    match map.find(index) {
        Ok(Some(p)) => Some(p.frame()),
        _ => None,
    }
}

/// The structural checks of the module docs. `spaces[s][slot]` says what
/// the driver believes slot `slot` of space `s` maps; `held` counts the
/// references the driver holds per index; `victims` are the pages marked by
/// a removal in progress (`None`: no removal in progress, and lookups are
/// then harmless). Returns the cached indices (one radix scan serves the
/// caller too), or what is wrong.
pub fn check_structure(
    map: &PageMap,
    pool: &pagemap::FramePool,
    spaces: &[(&AddressSpace, [Option<SlotMap>; WINDOW])],
    held: &BTreeMap<u64, u64>,
    victims: Option<&[(u64, FrameId)]>,
) -> Result<Vec<u64>, String> {
    let cached = map.cached_indices(..);
    if cached.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!(
            "cached indices not strictly increasing: {cached:?}"
        ));
    }
    if cached.len() as u64 != map.nr_pages() {
        return Err(format!(
            "nr_pages {} but {} cached indices {cached:?}",
            map.nr_pages(),
            cached.len()
        ));
    }
    if let Some(i) = cached.iter().find(|&&i| lp_of(i).is_none()) {
        return Err(format!("index {i} cached, never named"));
    }
    let cached_set: BTreeSet<u64> = cached.iter().copied().collect();
    for (&i, &n) in held {
        if n > 0 && !cached_set.contains(&i) {
            return Err(format!("page {i} held {n} times but not cached"));
        }
    }
    // Frames of cached pages (only without a removal in progress: a lookup
    // would abort a victim's removal).
    let mut cache_frames: BTreeMap<u64, FrameId> = BTreeMap::new();
    if victims.is_none() {
        for &i in &cached {
            let Some(f) = cached_frame(map, i) else {
                return Err(format!("page {i} cached but find gives nothing"));
            };
            cache_frames.insert(i, f);
        }
        let owners: BTreeSet<FrameId> = cache_frames.values().copied().collect();
        if owners.len() != cache_frames.len() {
            return Err(format!("two cached pages share a frame: {cache_frames:?}"));
        }
        for lp in 0..NPAGES {
            let i = index_of(lp);
            let want = held.get(&i).copied().unwrap_or(0);
            let h = map.holders(i);
            if h != want {
                return Err(format!("holders({i}) is {h}, the driver holds {want}"));
            }
        }
    }
    let victim_frames: BTreeMap<u64, FrameId> = victims
        .unwrap_or(&[])
        .iter()
        .map(|&(i, f)| (i, f))
        .collect();
    let mut private: BTreeSet<u32> = BTreeSet::new();
    for (s, (space, slots)) in spaces.iter().enumerate() {
        for (slot, m) in slots.iter().enumerate() {
            let p = space.pte(va(slot));
            let Some(m) = m else {
                if p != 0 {
                    return Err(format!(
                        "space {s} slot {slot}: PTE {p:#x} but nothing mapped"
                    ));
                }
                continue;
            };
            if p == 0 {
                continue;
            }
            if p & pte::LOCK != 0 {
                return Err(format!("space {s} slot {slot}: PTE {p:#x} left locked"));
            }
            let frame = pte::frame(p);
            if p & pte::PRIVATE != 0 {
                if m.shared {
                    return Err(format!(
                        "space {s} slot {slot}: private PTE {p:#x} in a shared mapping"
                    ));
                }
                if !private.insert(frame) {
                    return Err(format!("private frame {frame} mapped twice"));
                }
                continue;
            }
            let index = index_of(m.lp);
            if !m.shared && p & pte::WRITABLE != 0 {
                return Err(format!(
                    "space {s} slot {slot}: private mapping's PTE {p:#x} writes the page cache"
                ));
            }
            if let Some(v) = victim_frames.get(&index) {
                if v.get() != frame {
                    return Err(format!(
                        "space {s} slot {slot}: PTE {p:#x} of page {index} maps frame {frame}, \
                         the page (a victim) is frame {}",
                        v.get()
                    ));
                }
            }
            if victims.is_none() {
                if p & pte::PRESENT == 0 {
                    return Err(format!(
                        "space {s} slot {slot}: PTE {p:#x} of page {index} left not present \
                         after the removal"
                    ));
                }
                match cache_frames.get(&index) {
                    Some(f) if f.get() == frame => {}
                    other => {
                        return Err(format!(
                            "STALE TRANSLATION: space {s} slot {slot}: PTE {p:#x} of page {index} \
                             maps frame {frame}, the page cache has {other:?}"
                        ))
                    }
                }
            }
        }
    }
    if let Some(f) = private
        .iter()
        .find(|&&f| cache_frames.values().any(|c| c.get() == f))
    {
        return Err(format!(
            "frame {f} is both a private copy and a cached page"
        ));
    }
    let used = map.nr_pages() as usize + private.len();
    if used + pool.free_frames() != pool.capacity() {
        return Err(format!(
            "frames: {} cached + {} private + {} free != capacity {}",
            map.nr_pages(),
            private.len(),
            pool.free_frames(),
            pool.capacity()
        ));
    }
    Ok(cached)
}

/// Counts what a removal report says happened (`remove.removed`,
/// `remove.referenced`, ...; write errors are the caller's).
pub fn report_stats(r: &pagemap::RemoveReport, stats: &mut crate::Stats) {
    for (n, what) in [
        (r.removed, "remove.removed"),
        (r.referenced, "remove.referenced"),
        (r.pinned, "remove.pinned"),
        (r.raced, "remove.raced"),
        (r.written, "remove.written"),
        (r.shootdowns, "remove.shootdowns"),
    ] {
        if n > 0 {
            stats.hit(what);
        }
    }
}

/// Errors of a removal report other than write errors (which keep the page).
pub fn non_write_errors(errors: &[pagemap::Error]) -> Vec<String> {
    errors
        .iter()
        .filter(|e| !matches!(e, pagemap::Error::Write { .. }))
        .map(|e| format!("{e:?}"))
        .collect()
}
