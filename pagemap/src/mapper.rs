//! The page map's view of what maps its pages: the [`Mapper`] trait a VM
//! region (or a kernel's page-table code) implements, and the [`Victims`]
//! of a removal it is handed. The index of mappers by file-page range is
//! `crate::rmap`.
//!
//! The page map reaches its mappers only through this trait; the `vmr`
//! crate implements it for its VM regions, and a kernel linking `pagemap`
//! alone implements it over its real page tables.

use alloc::vec::Vec;

use crate::frame::FrameId;
use crate::map::{PageMap, PageRef};
use crate::shootdown::ShootdownBatch;

/// What the page map needs from something that maps its pages.
///
/// The page map calls the unmapping methods (`revoke`, `reap`, `clean`,
/// `zap`, `zap_shared`) from its removal, writeback, truncate and hole
/// punch protocols (`docs/design.md`, section 5); each method's docs say
/// its end state, the locks held when it runs, and its order against the
/// shootdown. Common to all of them:
///
/// * **Locks.** Neither the reverse-map lock nor the page-map writer lock
///   is held, nor any page lock. `revoke`, `reap`, `zap` and `zap_shared`
///   run under the map's remover lock, held for the whole removal (its
///   write-back I/O included), truncate or hole punch (these two with the
///   invalidate lock, exclusive), so they must not call anything of this
///   map that takes the remover lock ([`PageMap::remove`], `free_unused`,
///   `truncate`, `invalidate`, `destroy`, `remove_or_zero`, `punch_hole`)
///   or the invalidate lock (a [`PageMap::load`] that misses), nor take a
///   lock whose holder may be waiting in one of those calls: either
///   deadlocks. So they must not take the mapper's address-space lock,
///   which is above the remover lock in the crate's lock order (`crate`
///   docs, "Locking"). They may take the mapper's own lower locks
///   (page-table and TLB locks) and look pages up
///   ([`PageMap::find_frame`]).
/// * **Blocking, allocation.** They run in thread context and may allocate
///   their own scratch space and sleep on those lower locks; they must not
///   wait for I/O on this map's pages or for a page lock. Shootdowns go
///   through the [`ShootdownBatch`] passed in, which the page map flushes;
///   a method does not issue and wait for its own.
/// * **Entries.** Page table entries are weak references: an
///   implementation never holds a page count for an entry. Every entry
///   change is one atomic read-modify-write that re-checks the entry (a
///   CPU sets accessed and dirty bits concurrently; a fault may have
///   changed it), and one that loses a right is followed by the batch's
///   shootdown before anyone acts on the change: the page map flushes the
///   batch before it frees, zeroes or marks dirty. So a method adds its
///   address space to `batch` ([`ShootdownBatch::add`], virtual page
///   numbers) whenever it changed an entry, and also when a translation it
///   did not change may still be cached for a page it saw (`vmr`: an
///   unmapper's flush still pending).
/// * **Dirty bits.** Whoever takes a dirty bit out of an entry of a cached
///   page must either hold the page while it does so and until it is marked
///   dirty ([`clean`](Self::clean) through its [`Harvest`]; munmap through
///   [`PageMap::find_frame`]), or be the remover that owns the page
///   ([`reap`](Self::reap)). Otherwise a remover could free the page between
///   the two steps and the write would be lost.
///
/// `file_pages` and `is_pinned` are called under the reverse-map lock (read
/// or write): they must return at once, take no lock and call nothing of
/// the page map.
///
/// The fault side (what a fault does with entries in each state) is
/// [`crate::fault`], with the state machine of an entry; `vmr`'s `Vmr` is the worked example of both sides.
pub trait Mapper: Send + Sync {
    /// The file pages it covers, `(first, last)` inclusive (so a mapping can
    /// reach index `u64::MAX`). Must not change while it is in a reverse map.
    /// Called under the reverse-map lock (see the trait docs).
    fn file_pages(&self) -> (u64, u64);

    /// Whether its pages are pinned (MAP_LOCKED): removal skips them.
    /// Called under the reverse-map lock (see the trait docs).
    fn is_pinned(&self) -> bool;

    /// Removal pass 2, under the remover lock: makes every present entry of
    /// this mapping that maps one of `victims` (that frame, at that file
    /// page) not present, keeping its frame and dirty bit ("revoked"), and
    /// adds its address space to `batch` if it changed any entry. Leaves
    /// every other entry alone, private copies and entries of other frames
    /// included. The page map flushes `batch` (pass 3) before
    /// [`reap`](Self::reap). A fault that finds a revoked entry refaults it
    /// ([`PageMap::refault`]), keeping the dirty bit.
    fn revoke(&self, victims: &Victims, batch: &mut ShootdownBatch);

    /// Removal pass 4, under the remover lock, after pass 3's shootdown:
    /// clears every entry that is still revoked (not present, mapping a
    /// victim's frame at its page), calling `dirty(index, frame)` for each
    /// whose dirty bit was set. No shootdown: the entries have not been
    /// present since pass 2. An entry a fault made present again meanwhile
    /// is left alone (that fault held the page, so it stays); an entry in a
    /// multi-step update of the mapper's own (`vmr`: a copy-on-write fault's
    /// locked entry) is left to it.
    ///
    /// A `dirty` report of a page that is not a victim (a mapper bug) is
    /// counted in [`RemoveReport::not_victims`](crate::RemoveReport) and
    /// handed to that page if it is still cached in that frame: never a
    /// panic, and no data lost that can still be kept.
    fn reap(&self, victims: &Victims, dirty: &mut dyn FnMut(u64, FrameId));

    /// Writeback: write-protects and cleans the entries of file pages
    /// `[first, last]` that allow writing or are dirty (the end state:
    /// present, read-only, clean), and adds its address space to `batch` if
    /// it changed any entry. No page-map lock is held (not even the remover
    /// lock: a removal may run concurrently, which is why the pages are
    /// held).
    ///
    /// For each entry, **before** the atomic update that takes its dirty
    /// bit, the mapper holds the page the entry names with
    /// [`harvest.hold`](Harvest::hold) (`None`: the page is gone and a
    /// removal's reap owns the entry: leave it); if the bit was set, it
    /// hands that hold over with [`harvest.dirty`](Harvest::dirty). The
    /// types make the hand-over the only way to report a dirty page: a
    /// mapper that forgot to hold has nothing to hand over. (They cannot
    /// check it is *that entry's* hold: hand over the [`Held`] of the page
    /// whose bit was taken, once per entry.) The page map
    /// marks the pages dirty only after the batch has flushed, since until
    /// then a CPU may still write through a stale translation, and a
    /// write-back that snapshot the page in between would clean it without
    /// those writes. After the flush, a write faults
    /// ([`PageMap::page_mkwrite`]) or sets a dirty bit again.
    fn clean(&self, first: u64, last: u64, batch: &mut ShootdownBatch, harvest: &mut Harvest<'_>);

    /// Truncate and [`PageMap::remove_or_zero`], under the invalidate lock
    /// (exclusive) and the remover lock (a hole punch calls
    /// [`zap_shared`](Self::zap_shared) instead): clears every entry of file pages `[first, last]`
    /// (the end state: empty), private copy-on-write copies included (their
    /// frames are freed through `batch`, after the flush), and adds its
    /// address space to `batch` if it changed any. Dirty bits are dropped:
    /// the data is being discarded. An entry in a multi-step update of the
    /// mapper's own may be left: such an update runs inside a fault's
    /// [`PageMap::map_page`] callback, which truncate waits for before it
    /// zaps a second time.
    fn zap(&self, first: u64, last: u64, batch: &mut ShootdownBatch);

    /// Reclaim asks whether file page `index`, cached in `frame`, was
    /// accessed through this mapping since it last asked: test-and-clear of
    /// the ACCESSED bit of the entry that maps `frame` there, if any (Linux's
    /// `ptep_clear_young_notify` inside `folio_referenced`). No shootdown is
    /// needed: a CPU that keeps using a cached translation without setting
    /// the bit again only makes the page look colder; its eviction still
    /// revokes and shoots down first. Called under the reverse-map read
    /// lock; must not block.
    ///
    /// The default answers `false` (a mapping without accessed bits: its
    /// pages look unreferenced to the policy, so only hits through the page
    /// map keep them).
    fn test_and_clear_young(&self, index: u64, frame: FrameId) -> bool {
        let _ = (index, frame);
        false
    }

    /// Hole punch ([`PageMap::punch_hole`]), under the same locks as
    /// [`zap`](Self::zap): clears every entry of file pages `[first, last]`
    /// that maps the file's page itself (the end state: empty), and
    /// **keeps** private copy-on-write copies (their entries, frames and
    /// contents): a punch changes the file, not a process's copy of it
    /// (Linux: a punch unmaps without `zap_details.even_cows`; only truncate
    /// discards private copies). Otherwise as `zap`: dirty bits dropped,
    /// the address space added to `batch` if an entry changed, an entry in
    /// a multi-step update of the mapper's own may be left.
    ///
    /// The default calls `zap`, which is right only for a mapper that never
    /// makes private copies; one that does must override it.
    fn zap_shared(&self, first: u64, last: u64, batch: &mut ShootdownBatch) {
        self.zap(first, last, batch);
    }
}

/// Writeback's side of [`Mapper::clean`]: the holds of pages whose entries
/// a mapper is cleaning, and the hand-over of those whose dirty bit it took.
///
/// A dirty page can only be reported as a [`Held`] page, which only
/// [`hold`](Self::hold) makes: so the mapper holds the page (a remover
/// cannot free it) from before it takes the bit until the page map marks
/// the page dirty, after the shootdown.
///
/// ```compile_fail
/// # use pagemap::{Harvest, PageRef};
/// fn report(harvest: &mut Harvest<'_>, page: PageRef<'_>) {
///     harvest.dirty(page); // only a `Held` from `harvest.hold` will do
/// }
/// ```
pub struct Harvest<'a> {
    map: &'a PageMap,
    dirty: Vec<PageRef<'a>>,
}

/// A page held by [`Harvest::hold`] for a [`Mapper::clean`]; handed over
/// with [`Harvest::dirty`] if its entry's dirty bit was taken, dropped (the
/// put) otherwise.
#[derive(Debug)]
pub struct Held<'a>(PageRef<'a>);

impl Held<'_> {
    /// The page's index in the file.
    pub fn index(&self) -> u64 {
        self.0.index()
    }

    /// The frame holding it.
    pub fn frame(&self) -> FrameId {
        self.0.frame()
    }
}

impl<'a> Harvest<'a> {
    /// An empty harvest for `map`.
    pub(crate) fn new(map: &'a PageMap) -> Self {
        Self {
            map,
            dirty: Vec::new(),
        }
    }

    /// Holds the page at `index` if it is still in `frame` (the entry
    /// names it): call it before the update that may take the entry's dirty
    /// bit. `None`: the page is gone; a removal's reap owns the entry, leave
    /// it. Never waits (a hold from the reserve, as
    /// [`PageMap::find_frame`]).
    pub fn hold(&self, index: u64, frame: FrameId) -> Option<Held<'a>> {
        self.map.find_frame(index, frame).map(Held)
    }

    /// Hands over a page whose entry's dirty bit was taken: the page map
    /// marks it dirty after the shootdown, then lets it go.
    pub fn dirty(&mut self, page: Held<'a>) {
        self.dirty.push(page.0);
    }

    /// Entries handed over so far.
    pub fn len(&self) -> usize {
        self.dirty.len()
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.dirty.is_empty()
    }

    /// After the shootdown that covers every entry handed over so far:
    /// marks those pages dirty and lets them go, keeping the buffer for the
    /// next ones. Returns how many there were.
    pub(crate) fn settle(&mut self) -> u64 {
        let n = self.dirty.len() as u64;
        for page in self.dirty.drain(..) {
            page.mark_dirty();
        }
        n
    }
}

impl core::fmt::Debug for Harvest<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Harvest")
            .field("dirty", &self.dirty.len())
            .finish()
    }
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
