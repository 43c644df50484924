//! A page cache page map modelled on Akaros, in Rust.
//!
//! A file (or block device) is cached in 4 KiB pages. Its [`PageMap`] is a
//! concurrent radix tree whose leaf slots are single atomic words packing a
//! holder count, a removal flag and a frame id, so lookups take no
//! lock. Pages live in [`FramePool`] frames, whose memory and addresses
//! come from a [`FrameSource`] (a kernel's physical allocator, or
//! [`RegionFrames`] over a memory region; [`FramePool::new`] makes a heap
//! one); misses are read straight into the frame from a [`BackingStore`]
//! ([`MemStore`], [`FileStore`]) or a completion-based [`SubmitStore`].
//!
//! ```
//! use std::sync::Arc;
//! use pagemap::{FramePool, MemStore, PageMap};
//!
//! let map = PageMap::new(Arc::new(FramePool::new(16)?), Arc::new(MemStore::new()));
//! let page = map.load(u64::MAX)?; // the whole 64-bit index space
//! page.write(4090, b"tail")?;
//! assert!(page.is_dirty());
//! # Ok::<(), pagemap::Error>(())
//! ```
//!
//! The design (layers, invariants, protocols, the races and the loom model
//! that checks each, a glossary of Linux names) is `docs/design.md` in the
//! repository.
//!
//! # For page-table code
//!
//! A file's users need only [`PageMap`], [`PageRef`], [`FramePool`] and a
//! [`BackingStore`]. What maps pages into address spaces (the `vmr` crate,
//! or a kernel implementing [`Mapper`] over real page tables) uses this
//! small interface besides, and nothing else. The `vmr` crate is the worked
//! example of all of it: its fault handler (`vmr/src/fault.rs`) of the
//! fault side, its `impl Mapper for Vmr` (`vmr/src/unmap.rs`) of the
//! contract, its munmap (`vmr/src/rework.rs`) of the dirty-bit rule.
//!
//! * registering: [`PageMap::add_mapping`], [`PageMap::remove_mapping`]
//!   (a [`Mapper`] per region; [`MappingId`]);
//! * the page map's calls into it: [`Mapper`] (`revoke` and `reap` over
//!   [`Victims`], `clean` handing dirty pages over through a [`Harvest`],
//!   `zap`), each adding its address space to a [`ShootdownBatch`] through
//!   a [`FlushTarget`] (its TLB shootdown, over virtual page numbers,
//!   [`Vpn`]); the trait's docs are the contract, method by method (locks
//!   held, end state, blocking, order against the shootdown);
//! * faults, the fault-side interface ([`fault`] tabulates the calls, the
//!   page table entry's states and who changes them): [`PageMap::map_page`] (install under a count
//!   that truncate waits for; [`Error::WouldBlock`]: drop the
//!   address-space lock and [`PageMap::load`]; [`Error::BeyondEof`]:
//!   SIGBUS), [`PageMap::map_pages`] (fault-around),
//!   [`PageMap::refault`] (an entry a removal revoked),
//!   [`PageMap::page_mkwrite`] (a write to a read-only shared entry);
//! * dirty bits taken out of entries by the kernel's own unmapping
//!   (munmap, mprotect): [`PageMap::find_frame`] (hold the page the entry
//!   named) before taking the bit, then [`PageRef::mark_dirty`] after the
//!   shootdown;
//! * private frames (copy-on-write copies): [`FramePool::alloc_private`],
//!   [`PrivateFrame::into_raw`] into an entry, `unsafe`
//!   [`PrivateFrame::from_raw`] when the entry is cleared, freed after the
//!   shootdown by [`ShootdownBatch::defer_free`];
//! * a CPU's stores through a translation: `unsafe` [`FramePool::mmu_write`]
//!   (loads: [`FramePool::read`]);
//! * fork's copy: [`PageMap::invalidate_lock_shared`].
//!
//! The lock order those calls must keep is below.
//!
//! # no_std
//!
//! The `std` feature is on by default. With default features off, `pagemap`
//! is `#![no_std]` and needs only `alloc` (built in CI for
//! `x86_64-unknown-none`):
//!
//! * `std` brings [`FileStore`], [`FileSwap`], [`MemSwap::with_latency`],
//!   the [`Flusher`] thread, `std::io::Error` conversions of [`StoreError`],
//!   and the std implementations the crate then uses directly, with no
//!   indirection: parking_lot's mutexes and reader-writer locks, hashed
//!   mutex + condition-variable buckets for page waiters, crossbeam-epoch's
//!   global collector;
//! * without it the locks are `lock_api` locks over the raw locks of
//!   [`sync::raw`] (one atomic word each), page waiters park on their frame's
//!   flags word, and both sleep and wake through a [`Platform`] the kernel
//!   installs once with [`set_platform`], which also pins the epoch. Nothing
//!   else differs: the page map, removal, writeback and the [`Mapper`]
//!   interface are the same code. Failures are the crate's own [`Error`].
//!
//! A kernel implements three methods: `park(key, should_park)` and
//! `unpark_all(key)` (Linux's `wait_var_event` / `wake_up_var`: sleep on an
//! address if a condition, checked in order with the wake-up, still holds;
//! wake everyone sleeping on it) and `pin()` (a crossbeam-epoch `Guard` from
//! the kernel's `Collector`, through the current task's `LocalHandle`). The
//! [`platform`] module has the contract, what to do with per-CPU handles,
//! how a kernel with RCU maps the epoch, and a runnable example over std
//! stand-ins. Its skeleton in a kernel:
//!
//! ```ignore
//! use pagemap::platform::{epoch, set_platform, Platform};
//!
//! struct Kernel;
//!
//! impl Platform for Kernel {
//!     fn park(&self, key: usize, should_park: &dyn Fn() -> bool) {
//!         let wq = wait_table::bucket(key);          // the kernel's hashed wait queues
//!         let mut q = wq.lock_irqsave();
//!         if !should_park() {                        // checked under the queue lock:
//!             return;                                // no wake-up can slip in between
//!         }
//!         q.enqueue(current_task(), key);
//!         set_current_state(TaskState::Uninterruptible);
//!         drop(q);
//!         schedule();                                // woken by unpark_all (or spuriously)
//!     }
//!
//!     fn unpark_all(&self, key: usize) {
//!         let wq = wait_table::bucket(key);
//!         wq.lock_irqsave().wake_all_with_key(key);  // always takes the lock
//!     }
//!
//!     fn pin(&self) -> epoch::Guard {
//!         current_task().epoch_handle.pin()          // a LocalHandle per task, registered
//!     }                                              // with the kernel's one Collector
//! }
//!
//! static KERNEL: Kernel = Kernel;
//!
//! fn mm_init() {
//!     set_platform(&KERNEL).expect("installed once");
//!     // from here on: FramePool, PageMap, ...
//! }
//! ```
//!
//! # Locking
//!
//! Lock order, in the style of the comment at the top of Linux's
//! `mm/rmap.c`: a lock may be taken while holding any of the locks above it
//! on its path to the root, never while holding one below it. Names marked
//! `vmr:` belong to the `vmr` crate (or to a kernel's own implementation of
//! [`Mapper`] and [`FlushTarget`]); page tables have no lock (their entries
//! are atomic words, changed by one atomic read-modify-write each).
//!
//! ```text
//! vmr: address-space lock       AddressSpace regions, RwLock (read: faults;
//!  |                            write: mmap munmap mprotect madvise fork teardown)
//!  +- invalidate lock           PageMap::invalidate_lock_shared (shared: fork's
//!  |   |                        copy, a load's miss from insert to read's end;
//!  |   |                        exclusive: truncate, remove_or_zero, set_size,
//!  |   |                        a write_at past the size, punch_hole)
//!  |   +- remover lock          one remover per map: free_unused, remove,
//!  |       |                    try_remove (try-lock), Removal, invalidate,
//!  |       |                    destroy, truncate, remove_or_zero
//!  |       +- WRITEBACK bit     page bit lock: one write-back of the page at a
//!  |       |   |                time, held across the store's write
//!  |       |   +- kept write error  a failed write's error, for the next fsync
//!  |       |   +- LOCKED bit    the page lock: held across the store's read, a
//!  |       |       |            write(), a write-back's clean, truncate's
//!  |       |       |            zeroing (a submitted request's submitter
//!  |       |       |            then sleeps on INFLIGHT, a leaf bit)
//!  |       |       +- wait buckets         hashed mutex + condvar of the bit locks
//!  |       |       |                       (no_std: the platform's park queue)
//!  |       |       +- the store's own locks (MemStore, FileStore)
//!  |       +- page-map writer lock  tree shape, slot publish and yank, marks,
//!  |       |                        end of file and size (a shrink's)
//!  |       +- reverse-map lock      RwLock over the Mappers (write: add/remove)
//!  |       +- vmr: TLB locks        a removal's pass 3, truncate's zaps (the
//!  |       |                        batch's shootdown, remover lock held)
//!  |       +- frame free list       a removal's frees, the batch's deferred
//!  |                                frees of private frames (truncate)
//!  +- (a fault's map_page callback: not a lock, but truncate waits for it)
//!  |   +- vmr: COW mutex       held while a PTE carries LOCK
//!  |       +- vmr: TLB locks   one CPU's at a time (shootdown)
//!  |       +- frame free list  FramePool alloc/free (lock-free: no lock at all)
//!  +- frame allocation with direct reclaim (a load's miss, readahead,
//!      |                    alloc_private; under at most an invalidate lock,
//!      |                    shared, or the address-space lock: never a
//!      |                    remover, writer or reverse-map lock or page bit)
//!      +- reclaim scratch   one of RECLAIMERS mutexes (leaf but for what follows)
//!      +- policy lock       S3-FIFO's / LRU's list mutex (a leaf; CLOCK: none)
//!      +- pool registry     RwLock of the maps' Weak handles (a leaf)
//!      +- any map's remover lock, as a removal takes it (waited for by a
//!      |                    load's reclaim, tried by alloc_private's), and
//!      |                    under it that map's locks as above
//!      +- BUSY bit          a private frame's swap-out (swap::Swap: from its
//!          |                start to its end, I/O included) or swap-in (across
//!          |                its read); faults that find it sleep on it holding
//!          |                nothing (they drop the address-space lock first)
//!          +- Swap's paging mutex  only in set_serialized mode (the seed's
//!          |                       z_mm_paging_lock); a swap-in takes it after
//!          |                       its frame allocation
//!          +- vmr: the machine's spaces list (the rmap walk; a leaf but for
//!              |            the TLB locks of its shootdowns)
//!              +- vmr: TLB locks
//! ```
//!
//! Demand paging takes no address-space lock on the swap-out side (direct
//! reclaim may run it inside a fault that holds one); a fault holds its
//! space's lock (read) only while it takes a reference from the swap cache
//! and installs the entry, never across a page-in or a wait on BUSY.
//!
//! Reading the tree:
//!
//! * The bottom locks are leaves: nothing is taken under the TLB locks, the
//!   free list, the wait buckets, the store's locks, the writer lock or the
//!   reverse-map lock. (A [`Flusher`]'s own two mutexes, its wake-up flag
//!   and its report, are leaves taken with nothing held: it writes back
//!   with neither held. A page map's kept write error, for the next
//!   [`PageMap::fsync`], is a leaf taken under a page's WRITEBACK bit.)
//!   The writer and reverse-map locks are taken with
//!   nothing held, or under the remover lock or the address-space lock
//!   (munmap registers pieces and marks harvested pages dirty under it),
//!   never under a page bit but for the exceptions below, and never
//!   together.
//! * Page bits are taken WRITEBACK first, then LOCKED, and released before
//!   the writer lock is taken (a dirty mark is synced after the unlock).
//!   Exceptions: a loader holds LOCKED on its new frame while it takes the
//!   writer lock to publish it (no one can wait on a frame before it is
//!   published); a writeback clears its page's TOWRITE tag holding
//!   WRITEBACK (so that an fsync whose tag it took finds the page under
//!   WRITEBACK and waits). The writer lock is a leaf: nobody holding it
//!   waits for a page bit.
//! * A fault installs inside [`PageMap::map_page`]'s callback, its page
//!   counted in the slot word's mapping field from before its end-of-file
//!   check until the callback returns; truncate, with the invalidate and
//!   remover locks held, waits for that count to drain on every page it
//!   zeroes. So inside the callback a fault may take its
//!   space's COW mutex, allocate a frame and shoot down TLBs, but must not
//!   wait for I/O, for a page lock, or for anything truncate holds.
//! * The address-space lock is never held across I/O: a fault under it uses
//!   [`PageMap::map_page`], which answers [`Error::WouldBlock`] instead of
//!   waiting, and loads blocking only after dropping it. The
//!   writer and reverse-map locks are never held across I/O, nor while
//!   calling a [`FlushTarget`] or a [`Mapper`]'s unmapping methods
//!   (`revoke`, `reap`, `clean`, `zap`); [`Mapper::file_pages`] and
//!   [`Mapper::is_pinned`] are called under the reverse-map lock and must
//!   take no lock. The remover lock is held across a removal's write-back.
//! * A failed load discards its page under the remover lock taken by
//!   try-lock only (a remover running will find the page).
//! * Locks of two page maps, or of two address spaces, are never held at
//!   once, but for direct reclaim: a load holding its map's invalidate lock
//!   (shared) may evict another map's pages under that map's remover lock
//!   (no cycle: a remover never allocates, nor waits for an invalidate
//!   lock). A background `Reclaimer` holds nothing when it reclaims. fork holds the parent's address-space lock while it fills the
//!   child's, which nobody else can see yet. One thread takes the
//!   invalidate lock once at a time (a waiting truncate would deadlock a
//!   second shared acquisition).
//!
//! What separates operations that conflict:
//!
//! | operations | what could go wrong | what separates them |
//! | --- | --- | --- |
//! | lookup ([`find`](PageMap::find), [`load`](PageMap::load)) vs a remover's final pass | freeing a held page | the slot word: a get adds a count and clears REMOVAL; the yank CAS needs no count and REMOVAL still set |
//! | two loads of one absent page | two reads, two frames | the writer lock around the insert (one publish); the other loader sleeps on LOCKED while LOADING is set |
//! | insert vs [`truncate`](PageMap::truncate) | a page beyond the end | the end is checked and moved under the writer lock |
//! | lock-free walk vs node unlink | use of a freed node | the epoch; a held slot keeps its leaf (only empty nodes are unlinked) |
//! | [`PageRef::write`] or [`mark_dirty`](PageRef::mark_dirty) vs a write-back | a clean page missing a write | LOCKED: copy then set DIRTY under it; the write-back clears DIRTY under it before the store reads the frame, so a write during the I/O (which may tear the store's image) leaves the page dirty, to be written again |
//! | a store's read into a frame vs anyone else touching it | a reader seeing, or a CPU writing, a frame being filled | the loader owns a LOCKED, LOADING frame: lookups refuse or sleep on it, no entry maps it, truncate's zeroing waits for LOCKED |
//! | a completion on another thread vs its sleeping submitter | a lost wake-up; a failed I/O taken for a good one | the request records its error in the frame's flags, then clears INFLIGHT (Release) and wakes the bit's waiters; the submitter sleeps until the bit is clear |
//! | write-back vs write-back of one page | an older snapshot stored last | WRITEBACK, held until the store returns |
//! | remover vs remover | double yank, wrong reports | the remover lock ([`try_remove`](PageMap::try_remove) says [`Error::Busy`]) |
//! | fault or lookup vs [`remove`](PageMap::remove) | a freed page still mapped or held | the get clears REMOVAL; [`Mapper::revoke`] and [`Mapper::reap`] re-check each entry in one CAS, and the reap leaves entries a fault made present again |
//! | remover's write-back vs a fault that maps the page and lets go | freeing a mapped frame | the remover holds with a count that keeps REMOVAL, so any other get still clears it |
//! | a CPU using a stale TLB entry vs revoke, clean, unmap | a lost write; an access to a reused frame | one acknowledged shootdown per address space ([`ShootdownBatch`]) before frames are freed and before harvested dirty bits are marked |
//! | an unmapper taking a dirty bit vs a remover | the bit reaching a freed page | the unmapper holds the page ([`PageMap::find_frame`]; for [`Mapper::clean`], [`Harvest::hold`], whose [`Held`] value is the only way to report the bit) until it is marked dirty; a remover's reap owns its [`Victims`] |
//! | a fault refaulting a revoked entry vs the removal's yank | a present entry on a freed frame | [`PageMap::refault`] takes the page only if still in the entry's frame, and its count clears REMOVAL (the yank fails); if the yank won, the reap cleared the entry first |
//! | [`add_mapping`](PageMap::add_mapping) / [`remove_mapping`](PageMap::remove_mapping) vs [`free_unused`](PageMap::free_unused), [`invalidate`](PageMap::invalidate), removal's pass 1 | removing a page a new mapping will use; an uncovered mapped page | the reverse-map lock; coverage checked after the mark (a new mapping reaches the page only by a lookup, which unmarks it); a split adds its pieces before the old region leaves |
//! | a fault installing an entry vs [`truncate`](PageMap::truncate) | an entry beyond the end after truncate returns | [`PageMap::map_page`]: the fault counts itself in the slot word, then checks the end (SeqCst pair with truncate's end store); truncate waits for every cut page's count to drain between two zaps |
//! | copy-on-write fault vs another update of the same entry | two copies; a read of the old page after a write to the copy | vmr: the PTE LOCK bit with the COW mutex; revoke, reap, clean and zap skip locked entries |
//! | fork's copy vs truncate or [`remove_or_zero`](PageMap::remove_or_zero) | a private frame freed while copied; a child entry beyond the end | the invalidate lock ([`invalidate_lock_shared`](PageMap::invalidate_lock_shared) for fork, exclusive for them) |
//! | fork's copy vs CPUs writing private pages | a torn copy | vmr: write-protect and one shootdown before copying; the address-space write lock holds off the faults |
//! | truncate's zeroing vs a write-back in flight | old bytes stored after the cut | truncate takes WRITEBACK before zeroing; a write-back of a page beyond the end drops it |
//! | [`punch_hole`](PageMap::punch_hole) vs a load or fault refilling the range, a write-back in flight | old bytes back in the cache or the store after the punch | the invalidate lock, exclusive across the cache's and the store's halves, shared on the miss path of a load; the punch takes WRITEBACK before zeroing and punches the store last |
//! | [`invalidate`](PageMap::invalidate) vs writers, reads, write-backs | dropping dirty or in-flight data | flags checked after the mark: dirty, LOCKED and WRITEBACK pages are skipped |
//! | eviction (reclaim) vs a lookup, a fault, a write of the victim | freeing a page someone uses; losing a write | the check reads the slot word; the eviction's mark (`slot::mark_evict`) needs no holder and no hit since the check, and any get clears it, as for a removal; dirty victims are written back before the yank |
//! | two reclaimers of one pool | one frame freed twice; one victim evicted twice | the victim's mark and yank CAS (one wins); the free list's tagged CAS |
//! | reclaim vs a map being dropped | evicting through a freed map | the registry's `Weak`: a failed upgrade makes the frame busy; an upgraded map cannot drop until reclaim lets go |
//! | munmap, mprotect vs faults of the same space | a fault on a region being replaced | vmr: the address-space lock; a fault that dropped it restarts if the regions' generation moved |
//! | kernel-side entry updates vs CPUs setting A/D bits | a lost dirty bit | vmr: every update is one atomic read-modify-write that re-checks the entry |
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

// The loom build models std threads; it has no no_std form.
#[cfg(all(pagemap_loom, not(feature = "std")))]
compile_error!("cfg(pagemap_loom) needs pagemap's `std` feature");

mod error;
pub mod fault;
#[cfg(all(feature = "std", not(pagemap_loom)))]
mod flusher;
pub(crate) mod frame;
mod map;
mod mapper;
pub mod platform;
mod radix;
#[cfg(all(feature = "std", not(pagemap_loom)))]
mod reclaimer;
mod remove;
mod rmap;
mod shootdown;
mod slot;
mod store;
pub mod swap;
pub mod sync;

pub use error::{Error, StoreError};
#[cfg(all(feature = "std", not(pagemap_loom)))]
pub use flusher::{Flusher, FlusherBuilder, FlusherReport};
pub use frame::policy;
pub use frame::{
    flags, Check, EvictionPolicy, FrameId, FramePool, FrameSource, MapStats, PageSrc, PolicyFrames,
    PoolStats, PrivateFrame, ReclaimReport, RegionFrames, RECLAIMERS, RECLAIM_BATCH,
};
pub use map::{
    CloseError, FreeReport, FsyncError, MemoryStats, OwnedPageRef, PageMap, PageRef,
    WritebackReport, HARVEST_CAP, MAX_REPORTED_ERRORS, READAHEAD_WINDOW, REMOVE_BATCH,
};
pub use mapper::{Harvest, Held, Mapper, Victims};
pub use platform::{set_platform, Platform};
pub use radix::Mark;
#[cfg(all(feature = "std", not(pagemap_loom)))]
pub use reclaimer::{Reclaimer, ReclaimerReport, Watermarks};
pub use remove::{Batching, DestroyReport, InvalidateReport, Pass, Removal, RemoveReport};
pub use rmap::MappingId;
pub use shootdown::{BatchReport, FlushTarget, ShootdownBatch, Vpn, DEFAULT_CEILING};
pub use slot::{MAX_HELD, MAX_REFS};
#[cfg(feature = "std")]
pub use store::FileStore;
pub use store::{
    BackingStore, MemStore, PageBuf, ReadIo, StoreControl, SubmitStore, WriteIo, MAX_EXTENT,
};
#[cfg(feature = "std")]
pub use swap::FileSwap;
pub use swap::{Location, MemSwap, SwapStore};

/// Bytes in a page.
pub const PAGE_SIZE: usize = 4096;

/// The repository README's usage snippet, compiled and run as a doctest so
/// that it stays true to the API (`cargo test --doc -p pagemap`).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
