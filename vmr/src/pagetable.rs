//! A page table of atomic PTE words: a 4-level radix tree over virtual page
//! numbers (9 bits a level: 48-bit virtual addresses; under loom, 2 bits a
//! level and 20-bit addresses so that models stay small).
//!
//! Table pages are installed by CAS and never freed before the page table is
//! dropped, so walks (by CPUs and the kernel side) need no lock and no epoch.

use crate::pte::PteCell;
use crate::sync::Ordering;

#[cfg(not(pagemap_loom))]
const BITS: u32 = 9;
#[cfg(pagemap_loom)]
const BITS: u32 = 2;
const LEVELS: u32 = 4;
const FANOUT: usize = 1 << BITS;

/// Bits of a user virtual address.
pub const VA_BITS: u32 = 12 + BITS * LEVELS;
/// The first address past user space.
pub const VA_END: u64 = 1 << VA_BITS;

/// A table page: leaf entries are PTEs; an interior entry holds the address
/// of the next table page (in the same word type, through `raw`, with its
/// own Acquire/Release orderings).
struct Table {
    entries: [PteCell; FANOUT],
}

impl Table {
    fn alloc() -> *mut Table {
        Box::into_raw(Box::new(Table {
            entries: std::array::from_fn(|_| PteCell::new()),
        }))
    }
}

/// A page table. PTE words follow [`crate::pte`].
pub struct PageTable {
    root: *mut Table,
}

// SAFETY: the raw root is owned by the page table; all shared access goes
// through atomics, and tables are freed only in `drop` (`&mut self`).
unsafe impl Send for PageTable {}
// SAFETY: as above.
unsafe impl Sync for PageTable {}

impl Default for PageTable {
    fn default() -> Self {
        Self::new()
    }
}

impl PageTable {
    /// An empty page table.
    pub fn new() -> Self {
        Self {
            root: Table::alloc(),
        }
    }

    #[inline]
    fn offset(vpn: u64, level: u32) -> usize {
        ((vpn >> (BITS * level)) & (FANOUT as u64 - 1)) as usize
    }

    /// The PTE of virtual page `vpn`, if its table page exists. Lock-free.
    #[inline]
    pub fn get(&self, vpn: u64) -> Option<&PteCell> {
        debug_assert!(vpn < VA_END >> 12);
        let mut t = self.root;
        for level in (1..LEVELS).rev() {
            // SAFETY: tables are never freed while `self` lives.
            let e = unsafe { (*t).entries[Self::offset(vpn, level)].raw() };
            // Acquire: pairs with the Release CAS that installed the table.
            let next = e.load(Ordering::Acquire) as usize as *mut Table;
            if next.is_null() {
                return None;
            }
            t = next;
        }
        // SAFETY: as above.
        Some(unsafe { &(*t).entries[Self::offset(vpn, 0)] })
    }

    /// The PTE of `vpn`, creating table pages on the way (the only
    /// allocation a fault can make, once per 512 pages).
    pub fn get_or_alloc(&self, vpn: u64) -> &PteCell {
        debug_assert!(vpn < VA_END >> 12);
        let mut t = self.root;
        for level in (1..LEVELS).rev() {
            // SAFETY: tables are never freed while `self` lives.
            let e = unsafe { (*t).entries[Self::offset(vpn, level)].raw() };
            let mut next = e.load(Ordering::Acquire) as usize as *mut Table;
            if next.is_null() {
                let fresh = Table::alloc();
                // Release: the zeroed table before its link; Acquire on failure
                // to see the winner's table.
                match e.compare_exchange(
                    0,
                    fresh as usize as u64,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => next = fresh,
                    Err(won) => {
                        // SAFETY: `fresh` was never published.
                        drop(unsafe { Box::from_raw(fresh) });
                        next = won as usize as *mut Table;
                    }
                }
            }
            t = next;
        }
        // SAFETY: as above.
        unsafe { &(*t).entries[Self::offset(vpn, 0)] }
    }

    /// Calls `f(vpn, pte)` for every non-zero PTE with `first <= vpn <= last`.
    pub fn for_each(&self, first: u64, last: u64, f: &mut dyn FnMut(u64, &PteCell)) {
        fn walk(
            t: *mut Table,
            level: u32,
            base: u64,
            first: u64,
            last: u64,
            f: &mut dyn FnMut(u64, &PteCell),
        ) {
            let span = 1u64 << (BITS * level);
            for i in 0..FANOUT {
                let lo = base + i as u64 * span;
                let hi = lo + (span - 1);
                if hi < first || lo > last {
                    continue;
                }
                // SAFETY: tables live as long as the page table.
                let e = unsafe { &(*t).entries[i] };
                // Acquire: a link's pairing (see `get`); a leaf is read SeqCst
                // by its users (see `PteCell`).
                let v = if level == 0 {
                    e.load()
                } else {
                    e.raw().load(Ordering::Acquire)
                };
                if v == 0 {
                    continue;
                }
                if level == 0 {
                    f(lo, e);
                } else {
                    walk(v as usize as *mut Table, level - 1, lo, first, last, f);
                }
            }
        }
        walk(self.root, LEVELS - 1, 0, first, last, f);
    }
}

impl Drop for PageTable {
    fn drop(&mut self) {
        fn free(t: *mut Table, level: u32) {
            // SAFETY: `&mut self`: we own every table, each reachable once.
            let table = unsafe { Box::from_raw(t) };
            if level > 0 {
                for e in table.entries.iter() {
                    let v = e.raw().load(Ordering::Relaxed);
                    if v != 0 {
                        free(v as usize as *mut Table, level - 1);
                    }
                }
            }
        }
        free(self.root, LEVELS - 1);
    }
}

#[cfg(all(test, not(pagemap_loom)))]
mod tests {
    use super::*;

    #[test]
    fn sparse_entries_and_iteration() {
        let pt = PageTable::new();
        let top = (VA_END >> 12) - 1;
        for vpn in [0, 1, 511, 512, 1 << 20, top] {
            pt.get_or_alloc(vpn).store(vpn + 1);
        }
        assert!(pt.get(2).is_some_and(|p| p.load() == 0));
        assert!(pt.get(1 << 30).is_none());
        let mut seen = Vec::new();
        pt.for_each(1, top, &mut |vpn, p| seen.push((vpn, p.load())));
        assert_eq!(
            seen,
            vec![
                (1, 2),
                (511, 512),
                (512, 513),
                (1 << 20, (1 << 20) + 1),
                (top, top + 1)
            ]
        );
    }
}
