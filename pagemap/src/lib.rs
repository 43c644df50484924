//! A page cache page map modelled on Akaros, in Rust.
//!
//! A file (or block device) is cached in 4 KiB pages. Its [`PageMap`] is a
//! concurrent radix tree whose leaf slots are single atomic words packing a
//! holder count, a removal flag and a frame id ([`slot`]), so lookups take no
//! lock. Pages live in [`FramePool`] frames; misses are filled from a
//! [`BackingStore`] ([`MemStore`], [`FileStore`]).
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
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod error;
mod fault;
#[cfg(not(loom))]
mod flusher;
mod frame;
mod map;
pub mod radix;
mod remove;
mod rmap;
mod shootdown;
pub mod slot;
mod store;
pub mod sync;

pub use error::Error;
pub use fault::MapRef;
#[cfg(not(loom))]
pub use flusher::{Flusher, FlusherReport};
pub use frame::{flags, FrameId, FramePool};
pub use map::{FreeReport, MemoryStats, PageMap, PageRef, WritebackReport};
pub use radix::Mark;
pub use remove::{Batching, DestroyReport, InvalidateReport, Pass, Removal, RemoveReport};
pub use rmap::{Mapper, MappingId, Victims};
pub use shootdown::{BatchReport, FlushTarget, ShootdownBatch, DEFAULT_CEILING};
pub use store::{BackingStore, FileStore, MemStore, PageBuf};

/// Bytes in a page.
pub const PAGE_SIZE: usize = 4096;
