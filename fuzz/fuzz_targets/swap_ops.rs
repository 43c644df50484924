//! Differential fuzz target: demand paging (issue 13) on a machine with a
//! tiny pool and a tiny swap store with injected I/O errors: anonymous,
//! private and shared file mappings, fork, CPU reads and writes, mlock,
//! page_out, page_in, evict_frame, MADV_DONTNEED and MADV_FREE, against a
//! model of every space's bytes (see `pagemap_fuzz_harness::swap_run`).
//! Any divergence panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pagemap_fuzz_harness::swap_run::run(data);
});
