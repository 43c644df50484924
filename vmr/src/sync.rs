//! `vmr`'s atomics and locks: pagemap's shim, which switches to loom under
//! plain `cfg(pagemap_loom)` (one shim for both crates, so both are model-checked
//! the same way).

pub(crate) use pagemap::sync::{
    thread_local, AtomicU64, Mutex, Ordering, RwLock, RwLockReadGuard, RwLockWriteGuard,
};
