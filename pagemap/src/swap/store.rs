//! The swap store interface: [`SwapStore`] and its addresses, [`Location`].

use core::fmt;

use crate::error::StoreError;
use crate::PAGE_SIZE;

/// A swap location (the Zephyr seed's "location token", Linux's swap
/// offset): the index of a page-sized slot of a swap store, `0 ..
/// store.slots()`. Slot `n` covers bytes `n * PAGE_SIZE ..` of the store.
///
/// ```
/// use pagemap::swap::Location;
/// let loc = Location::new(7);
/// assert_eq!(loc.get(), 7);
/// assert!(Location::new(3) < loc);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Location(u32);

impl Location {
    /// The location of slot `slot` (a page index into the store; whether
    /// it is in range is the store's to check: a call with a slot at or
    /// past [`SwapStore::slots`] fails with [`StoreError::EINVAL`]).
    pub const fn new(slot: u32) -> Self {
        Self(slot)
    }

    /// The slot index (in pages from the start of the store).
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "swap slot {}", self.0)
    }
}

/// Where paged-out anonymous and private pages go: page-sized slots
/// addressed by [`Location`].
///
/// Implementations are called from many threads at once, for different
/// locations (the caller never has two requests in flight on one
/// location), with no lock of the caller held. Which slots are free is the
/// caller's business (the location allocator): a store only moves bytes.
///
/// Every method checks its location: one at or past
/// [`slots`](Self::slots) makes [`page_out`](Self::page_out) and
/// [`page_in`](Self::page_in) fail with [`StoreError::EINVAL`], changing
/// nothing, and [`discard`](Self::discard) do nothing. None of them panics
/// on bad input.
///
/// ```
/// use pagemap::swap::{Location, MemSwap, SwapStore};
/// use pagemap::{StoreError, PAGE_SIZE};
///
/// // Any store behind the interface: here the in-memory one.
/// fn round_trip(swap: &dyn SwapStore, loc: Location) -> Result<u8, StoreError> {
///     swap.page_out(loc, &[42; PAGE_SIZE])?;
///     let mut page = [0; PAGE_SIZE];
///     swap.page_in(loc, &mut page)?;
///     swap.discard(loc); // the slot is free again
///     Ok(page[0])
/// }
/// let swap = MemSwap::new(4);
/// assert_eq!(round_trip(&swap, Location::new(3)), Ok(42));
/// let e = round_trip(&swap, Location::new(4)).unwrap_err();
/// assert_eq!(e.code(), StoreError::EINVAL);
/// ```
pub trait SwapStore: Send + Sync {
    /// Slots (pages) the store holds; locations are `0..slots()`. The same
    /// for the store's whole life.
    fn slots(&self) -> u32;

    /// Writes one page (all [`PAGE_SIZE`] bytes of `src`) to `loc` (the
    /// seed's `page_out`, Linux's `swap_writepage`).
    ///
    /// # Errors
    /// * [`StoreError::EINVAL`] if `loc` is at or past
    ///   [`slots`](Self::slots): nothing is written.
    /// * The device's error (e.g. [`StoreError::EIO`]): the slot's old
    ///   contents may be partly overwritten; the caller keeps the page in
    ///   memory (and may retry, here or at another location).
    fn page_out(&self, loc: Location, src: &[u8; PAGE_SIZE]) -> Result<(), StoreError>;

    /// Reads one page from `loc` into all [`PAGE_SIZE`] bytes of `dst` (the
    /// seed's `page_in`, Linux's `swap_read_folio`). A slot never written
    /// (or discarded, in a store that drops discarded contents) reads as
    /// zeroes.
    ///
    /// # Errors
    /// * [`StoreError::EINVAL`] if `loc` is at or past
    ///   [`slots`](Self::slots): `dst` is untouched.
    /// * The device's error (e.g. [`StoreError::EIO`]): `dst` may hold
    ///   part of the page; the slot keeps its contents.
    fn page_in(&self, loc: Location, dst: &mut [u8; PAGE_SIZE]) -> Result<(), StoreError>;

    /// The slot at `loc` was freed: its contents may be dropped (Linux's
    /// swap discard, a TRIM of the slot), and a later
    /// [`page_in`](Self::page_in) before a new [`page_out`](Self::page_out)
    /// may read the old page or zeroes. A hint: it cannot fail, and a
    /// location out of range is ignored. The default does nothing.
    fn discard(&self, loc: Location) {
        let _ = loc;
    }
}
