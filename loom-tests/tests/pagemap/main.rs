//! The loom models of `pagemap` (page cache, slots, radix tree, removal
//! protocols), linked into one test binary: one binary per model file made
//! the suite's build mostly link time on 2 cores. Each module is one former
//! model file, under its old name, so `scripts/loom.sh -- load_vs_load`
//! still selects that file's models (`cargo test` filters by test path).
//!
//! A failing loom model aborts the whole binary (loom panics again while
//! tearing the execution down), so the models after it in this binary do not
//! run: fix or filter the first failure to see the rest.
#![cfg(pagemap_loom)]

mod detach;
mod dirty_removal;
mod fault_iface;
mod file_size;
mod find_vs_remove;
mod free_list;
mod fsync;
mod load_vs_load;
mod mutant_killers;
mod node_reclaim;
mod nowait;
mod punch;
mod raw_locks;
mod readahead;
mod reclaim;
mod refcount_overflow;
mod remove_vs_lookup;
mod removers;
mod removers_remove;
mod report_accounting;
mod stale_read_error;
mod submit_store;
mod writeback;
