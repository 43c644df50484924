//! The loom models of `vmr` over `pagemap` (faults, TLB shootdowns, munmap,
//! mprotect, msync, fork and truncate against the page cache's protocols),
//! linked into one test binary: one binary per model file made the suite's
//! build mostly link time on 2 cores. Each module is one former model file,
//! under its old name, so `scripts/loom.sh -- vmr_fork_snapshot` (or
//! `fork_snapshot`) still selects that file's models.
//!
//! A failing loom model aborts the whole binary (loom panics again while
//! tearing the execution down), so the models after it in this binary do not
//! run: fix or filter the first failure to see the rest.
#![cfg(pagemap_loom)]

mod mutant_killers;
mod vmr_cow_shared_anon;
mod vmr_cow_shootdown;
mod vmr_dirty_harvest;
mod vmr_fault_vs_free;
mod vmr_fork_snapshot;
mod vmr_fork_truncate;
mod vmr_mprotect_truncate;
mod vmr_msync_write;
mod vmr_munmap_harvest;
mod vmr_munmap_remove;
mod vmr_remove_cow;
mod vmr_remove_fault;
mod vmr_remove_shootdown;
mod vmr_shootdown_reuse;
mod vmr_swap_fault_vs_page_out;
mod vmr_swap_fork_vs_page_out;
mod vmr_swap_location_reuse;
mod vmr_swap_madv_free;
mod vmr_swap_pin_vs_evict;
mod vmr_swap_two_faults;
mod vmr_truncate_access;
mod vmr_truncate_fault;
mod vmr_two_writebacks;
mod vmr_unmap_in_flight;
