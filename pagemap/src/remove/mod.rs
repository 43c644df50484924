//! The removal layer: taking pages out of a page map whose pages may be
//! mapped, that is the multi-pass removal (`docs/design.md`, section 5.4;
//! Akaros's `pm_remove_contig`), best-effort invalidate, remove-or-zero,
//! truncate and destroy. It sits above the page map (`crate::map`) and may
//! use it (lookups, the reclaim steps: unmark, the remover's write-back,
//! the final yank; dirty marks) and what the page map uses (the slot word,
//! the radix tree, frames, the reverse map's [`Mapper`](crate::Mapper)s,
//! shootdown batches); the crate's users and `vmr` call it, nothing below
//! it does.
//!
//! Removal passes, for the pages of a range:
//! 1. mark every unreferenced page REMOVAL (a CAS on its slot), skipping the
//!    pages of pinned mappings; snapshot the mappings of the range;
//! 2. every mapping makes its entries for the marked pages not present
//!    ([`Mapper::revoke`](crate::Mapper::revoke)) and adds its address
//!    space to one [`ShootdownBatch`](crate::ShootdownBatch);
//! 3. the batch issues one acknowledged shootdown per address space;
//! 4. now that no CPU can write through a stale translation, every mapping
//!    clears those entries, handing their dirty bits to the pages
//!    ([`Mapper::reap`](crate::Mapper::reap));
//! 5. dirty pages are written back with no map lock held;
//! 6. what is still marked is yanked under the writer lock and its frame
//!    freed.
//!
//! Anyone who takes a reference meanwhile (a lookup, a fault, a write, a
//! copy-on-write fault, munmap harvesting a dirty bit) clears REMOVAL, so
//! that page's yank fails and the page stays, intact, its entries
//! refaultable. A mapping added after pass 1 can only reach a marked page
//! through such a lookup, which is why the snapshot is enough.
//!
//! Removers of one map are serialised by one mutex:
//! [`PageMap::remove`](crate::PageMap::remove) waits for another remover,
//! [`PageMap::try_remove`](crate::PageMap::try_remove) returns
//! [`Error::Busy`](crate::Error::Busy) instead (Akaros returned 0).
//!
//! One concept per file:
//! * `entry`: what a user calls (remove, try_remove, remove_or_zero,
//!   truncate, invalidate, destroy, begin_remove) and their reports;
//! * `passes`: the pass state machine (mark, revoke, shootdown, reap, write
//!   back, yank), stepped by [`Removal`];
//! * `zero`: zap and zero, the cache's half of truncate and hole punch
//!   around a run of the passes.

mod entry;
mod passes;
mod zero;

pub use entry::{Batching, DestroyReport, InvalidateReport, RemoveReport};
pub use passes::{Pass, Removal};
