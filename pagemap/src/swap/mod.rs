//! Swap: where anonymous and private pages go when reclaim pages them out.
//!
//! A page-cache page has a file to return to; an anonymous page (or a
//! private copy-on-write copy) has none, so reclaim writes it to a swap
//! store first and keeps its [`Location`] (Linux's swap entry: a swap
//! slot's offset; the Zephyr seed's location token) where the page was.
//!
//! This module is the I/O half: the [`SwapStore`] interface, page-sized
//! slots addressed by [`Location`], and two stores, [`MemSwap`] (memory,
//! with injectable errors and, with `std`, an artificial device latency)
//! and [`FileSwap`] (a swap file, `std` only).

mod mem;
mod store;

#[cfg(feature = "std")]
mod file;

#[cfg(feature = "std")]
pub use file::FileSwap;
pub use mem::MemSwap;
pub use store::{Location, SwapStore};
