//! Differential fuzz target: the byte API of a page map over a real file
//! (`write_at`, `read_at`, `set_size`, writeback, `fsync`, `free_unused`,
//! `punch_hole`, close and reopen, failing writes) against a `Vec<u8>`
//! model of the file (see `pagemap_fuzz_harness::file_run`). Any divergence
//! panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pagemap_fuzz_harness::file_run::run(data);
});
