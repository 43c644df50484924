//! Differential fuzz target: one to three page maps sharing a pool of 2-8
//! frames that reclaims on allocation; loads, holds, releases, writes,
//! write-backs, fsyncs, failing store writes, explicit reclaims, private
//! frames and dropped maps, against a model of the files and of what may
//! be evicted (see `pagemap_fuzz_harness::reclaim_run`). Any divergence
//! panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pagemap_fuzz_harness::reclaim_run::run(data);
});
