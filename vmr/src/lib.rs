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
//!
//! Layers, bottom to top: each module uses only modules listed before it
//! (and [`pagemap`]), so the module graph has no cycle, and nothing but
//! `access` uses `space`.
//!
//! 1. `sync` (std or loom atomics and locks, from pagemap's shim): nothing.
//! 2. `error` (errors and [`Access`]): nothing. [`pte`] (the PTE word and
//!    its transitions): `sync`.
//! 3. [`pagetable`] (the radix tree of PTE words): `pte`, `sync`.
//! 4. `machine` ([`Machine`], [`Cpu`] and its TLB, shootdown delivery to an
//!    ASID's CPU mask): `sync`.
//! 5. `mm` (`MmCore`: a space's page table, ASID, CPU mask and
//!    `flush_pending`, shared with its regions; the space's
//!    [`pagemap::FlushTarget`]): `machine`, `pagetable`, `sync`.
//! 6. [`lazy`] (lazy MMU mode, buffered PTE updates): `mm`, `sync`.
//!    `region` ([`Vmr`], [`Prot`], [`MapFlags`], [`Advice`]): `mm`.
//! 7. `unmap` (a region's side of the page map's removal, writeback and
//!    truncate: [`pagemap::Mapper`] for [`Vmr`]): `lazy`, `pte`, `region`.
//!    `regions` (a space's region map: find, overlap, gap, insert, split):
//!    `error`, `pagetable`, `region`.
//! 8. `fault` (the fault handler, on a space's parts lent as a `Faulter`;
//!    [`FaultCtx`], [`FaultStats`]): `error`, `machine`, `mm`, `pte`,
//!    `region`, `regions`, `sync`. `rework` (munmap, mprotect, madvise,
//!    teardown and fork's write protection: split, batched PTE changes, one
//!    shootdown, dirty bits settled): `lazy`, `mm`, `pte`, `region`,
//!    `regions`, `sync`.
//! 9. `space` ([`AddressSpace`]: owns the core, the region map and its lock,
//!    and has the public entry points): everything above but `lazy` and
//!    `unmap` directly.
//! 10. `access` ([`Cpu::read`], [`Cpu::write`]: a CPU's accesses through its
//!     TLB, page walks, faults): `space`, `machine`, `pagetable`, `pte`,
//!     `error`, `sync`.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod access;
mod advice;
mod anon;
mod error;
mod fault;
pub mod lazy;
mod machine;
mod mm;
pub mod pagetable;
mod paging;
pub mod pte;
mod region;
mod regions;
mod rework;
mod space;
mod sync;
mod unmap;

pub use error::{Access, Fault, VmError};
pub use fault::{CheckError, FaultCtx, FaultStats};
pub use machine::{Cpu, CpuStats, Machine, ShootdownStats, TLB_ENTRIES};
pub use paging::{PageOutReport, PagingStats};
pub use region::{Advice, MapFlags, Prot, Vmr};
pub use space::{AddressSpace, ForkMode, MapRequest};
