//! Differential fuzz target: an arbitrary op sequence against `PageMap` and a
//! sequential model (see `pagemap_fuzz_harness`). Any divergence panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pagemap_fuzz_harness::run(data);
});
