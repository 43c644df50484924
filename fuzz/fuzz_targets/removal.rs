//! Threaded removal fuzz target: lookup threads, CPU threads, a remover and
//! a writeback thread race over one small file mapped shared and private by
//! two address spaces; afterwards no page is lost or duplicated, no write is
//! lost, no translation is stale and every frame is accounted for (see
//! `pagemap_fuzz_harness::removal`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pagemap_fuzz_harness::removal::run(data);
});
