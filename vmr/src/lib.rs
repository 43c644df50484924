//! Address spaces, VM regions, simulated CPUs with TLBs, and a fault handler,
//! over the [`pagemap`] page cache.
//!
//! * [`Machine`]: a frame pool (physical memory) and [`Cpu`]s. A CPU caches
//!   translations in its own TLB and uses them without walking the page
//!   table, setting ACCESSED and DIRTY bits as hardware does, so a missing
//!   or early shootdown shows up as a stale read or a lost write.
//! * [`AddressSpace`]: immutable [`Vmr`]s over a page table of atomic PTE
//!   words; `mmap`, `munmap`, `mprotect`, `madvise`, `fork`.
//! * The fault handler ([`AddressSpace::handle_fault`]) follows UVM's split
//!   into a check phase ([`AddressSpace::check_fault`]) and resolution.
//! * [`lazy`]: lazy MMU mode that nests (as Linux's does); munmap and mprotect
//!   batch their PTE changes in it.
//! * Every region is registered in its file's reverse map
//!   ([`pagemap::Mapper`]), so the page cache knows who maps what.
//!
//! Lock order (the whole tree is in [`pagemap`'s crate docs](pagemap#locking)):
//! address-space lock -> a file's invalidate lock (fork);
//! address-space lock -> (a fault's [`pagemap::PageMap::map_page`]
//! callback, which truncate waits for) -> copy-on-write mutex -> TLB locks; the
//! page-map writer and reverse-map locks are taken under the address-space
//! lock but never under a page lock. Page tables have no lock: every entry
//! change is one atomic read-modify-write. The design, with the races and
//! their loom models, is `docs/design.md` in the repository.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod error;
mod fault;
pub mod lazy;
mod machine;
pub mod pagetable;
pub mod pte;
mod region;
mod space;
mod sync;
mod unmap;

pub use error::{Access, Fault, VmError};
pub use fault::{CheckError, FaultCtx};
pub use machine::{Cpu, CpuStats, Machine, ShootdownStats, TLB_ENTRIES};
pub use region::{Advice, MapFlags, Prot, Vmr};
pub use space::{AddressSpace, FaultStats, MapRequest};
