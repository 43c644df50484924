//! The page map's view of what maps its pages: the [`Mapper`] trait a VM
//! region (or a kernel's page-table code) implements, and the [`Victims`]
//! of a removal it is handed. The index of mappers by file-page range is
//! `crate::rmap`.
//!
//! The page map reaches its mappers only through this trait; the `vmr`
//! crate implements it for its VM regions, and a kernel linking `pagemap`
//! alone implements it over its real page tables.

use crate::frame::FrameId;
use crate::shootdown::ShootdownBatch;
use alloc::vec::Vec;

/// What the page map needs from something that maps its pages.
///
/// The page map calls the unmapping methods from its removal, writeback and
/// truncate protocols (`docs/design.md`, section 5), with no page-map lock held. Page
/// table entries are weak references: an implementation never holds a page
/// count for an entry, but whoever takes a dirty bit out of an entry of a
/// cached page must either hold a reference to that page while it does so
/// and mark the page dirty before letting go (munmap, `clean`), or be the
/// remover that owns the page (`reap`). Otherwise a remover could free the
/// page between the two steps and the write would be lost.
pub trait Mapper: Send + Sync {
    /// The file pages it covers, `(first, last)` inclusive (so a mapping can
    /// reach index `u64::MAX`). Must not change while it is in a reverse map.
    fn file_pages(&self) -> (u64, u64);

    /// Whether its pages are pinned (MAP_LOCKED): removal skips them.
    fn is_pinned(&self) -> bool;

    /// Removal pass 2: makes every page table entry of this mapping that
    /// maps one of `victims` (that frame, at that file page) not present,
    /// keeping its frame and dirty bit, and adds its address space to
    /// `batch` if it changed any entry. A concurrent fault that finds such
    /// an entry rebuilds it, keeping the dirty bit.
    fn revoke(&self, victims: &Victims, batch: &mut ShootdownBatch);

    /// Removal pass 4, after the batch has flushed: clears every entry that
    /// is still not present and maps a victim's frame, calling `dirty(index)`
    /// for each whose dirty bit was set. An entry a fault made present again
    /// meanwhile is left alone (that fault took a reference, so the page
    /// stays); an entry a copy-on-write fault holds locked is left to it.
    fn reap(&self, victims: &Victims, dirty: &mut dyn FnMut(u64));

    /// Writeback: write-protects and cleans the entries of file pages
    /// `[first, last]` that allow writing, and adds its address space to
    /// `batch` if it changed any entry. For each entry that was dirty it
    /// calls `dirty(index, frame)` while holding a reference to the page
    /// (the callback takes its own); the caller marks those pages dirty only
    /// after the batch has flushed, since until then a CPU may still write
    /// through a stale translation, and a writeback that snapshot the page
    /// in between would clean it without those writes. After the flush, a
    /// write faults or sets a dirty bit again.
    fn clean(
        &self,
        first: u64,
        last: u64,
        batch: &mut ShootdownBatch,
        dirty: &mut dyn FnMut(u64, FrameId),
    );

    /// Truncate: clears every entry of file pages `[first, last]`, private
    /// copy-on-write copies included (their frames are freed through
    /// `batch`, after the flush), and adds its address space to `batch` if
    /// it changed any. Dirty bits are dropped: the data is being discarded.
    fn zap(&self, first: u64, last: u64, batch: &mut ShootdownBatch);
}

/// The pages a removal is taking away: `(file page, frame)` pairs in page
/// order, as the removal's first pass marked them.
#[derive(Clone, Debug, Default)]
pub struct Victims {
    pages: Vec<(u64, FrameId)>,
}

impl Victims {
    /// Victims from pairs sorted by page, each page once.
    ///
    /// # Panics
    /// If the pages are not strictly increasing.
    pub fn new(pages: Vec<(u64, FrameId)>) -> Self {
        assert!(
            pages.windows(2).all(|w| w[0].0 < w[1].0),
            "victims must be sorted by page, each page once"
        );
        Self { pages }
    }

    /// Number of pages.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// All of them, in page order.
    pub fn pages(&self) -> &[(u64, FrameId)] {
        &self.pages
    }

    /// Where page `index` is in [`pages`](Self::pages), if it is a victim.
    pub(crate) fn position(&self, index: u64) -> Option<usize> {
        self.pages.binary_search_by_key(&index, |&(i, _)| i).ok()
    }

    /// Takes the pages out (the buffer goes back to the remover's scratch).
    pub(crate) fn take_pages(&mut self) -> alloc::vec::Vec<(u64, FrameId)> {
        core::mem::take(&mut self.pages)
    }

    /// The frame being removed at `index`, if that page is a victim.
    pub fn frame_at(&self, index: u64) -> Option<FrameId> {
        self.pages
            .binary_search_by_key(&index, |&(i, _)| i)
            .ok()
            .map(|at| self.pages[at].1)
    }

    /// The victims among file pages `[first, last]`, in page order.
    pub fn within(&self, first: u64, last: u64) -> &[(u64, FrameId)] {
        let lo = self.pages.partition_point(|&(i, _)| i < first);
        let hi = self.pages.partition_point(|&(i, _)| i <= last);
        &self.pages[lo..hi.max(lo)]
    }
}

#[cfg(all(test, not(pagemap_loom)))]
mod tests {
    use super::*;

    #[test]
    fn victims_lookup() {
        let f = |n| FrameId::new(n).unwrap();
        let v = Victims::new(vec![(2, f(7)), (5, f(8)), (9, f(9))]);
        assert_eq!(v.frame_at(5), Some(f(8)));
        assert_eq!(v.frame_at(4), None);
        assert_eq!(v.within(3, 9).len(), 2);
        assert_eq!(v.within(10, 20).len(), 0);
        assert_eq!(v.within(0, u64::MAX).len(), 3);
    }

    #[test]
    #[should_panic(expected = "sorted")]
    fn victims_must_be_sorted() {
        let f = |n| FrameId::new(n).unwrap();
        Victims::new(vec![(5, f(1)), (2, f(2))]);
    }
}
