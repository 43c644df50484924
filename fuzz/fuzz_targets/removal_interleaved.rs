//! Deterministic removal fuzz target: one OS thread, the input interleaves a
//! stepped removal (`PageMap::begin_remove`, one pass per step) with
//! lookups, CPU reads and writes, copy-on-write faults, munmap, mmap, msync,
//! writeback and injected write errors, against a sequential model of the
//! contents (see `pagemap_fuzz_harness::removal_interleaved`). Any
//! divergence panics, and replays exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pagemap_fuzz_harness::removal_interleaved::run(data);
});
