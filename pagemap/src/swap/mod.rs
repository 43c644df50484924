//! Swap: where anonymous and private pages go when reclaim pages them out.
//!
//! A page-cache page has a file to return to; an anonymous page (or a
//! private copy-on-write copy) has none, so reclaim writes it to a swap
//! store first and keeps its [`Location`] (Linux's swap entry: a swap
//! slot's offset; the Zephyr seed's location token) where the page was.
//!
//! [`Swap`] is a swap space: the store, its swap map (which locations are
//! in use, and by how many swap entries) and the swap cache (the frame that
//! holds a location's page while it moves, or while a clean copy stays in
//! swap), with the swap-out and swap-in protocols; [`AnonOwner`] registers
//! an address-space layer's private frames with the pool's reclaim.
//!
//! The I/O half: the [`SwapStore`] interface, page-sized
//! slots addressed by [`Location`], and two stores, [`MemSwap`] (memory,
//! with injectable errors and, with `std`, an artificial device latency)
//! and [`FileSwap`] (a swap file, `std` only).

mod device;
mod mem;
mod owner;
mod slots;
pub(crate) mod state;
mod store;

#[cfg(feature = "std")]
mod file;

#[cfg(all(feature = "std", not(pagemap_loom)))]
pub use device::SwapHistograms;
pub use device::{AnonRmap, Lookup, Swap, SwapOut, SwapStats};
#[cfg(feature = "std")]
pub use file::FileSwap;
pub use mem::MemSwap;
pub use owner::AnonOwner;
pub use store::{Location, SwapStore};
