//! Differential fuzz target: an arbitrary sequence of address-space
//! operations (mmap, munmap, mprotect, madvise, fork, teardown, CPU reads and
//! writes, free_unused, writeback, injected I/O errors) against `vmr` over
//! `pagemap` and a sequential model (see `pagemap_fuzz_harness::vmr_run`).
//! Any divergence panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pagemap_fuzz_harness::vmr_run::run(data);
});
