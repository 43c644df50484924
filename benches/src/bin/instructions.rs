//! A deterministic workload for instruction counts under callgrind, to
//! compare two builds of the hot paths where wall time is too noisy (the
//! 1-thread find+put is bimodal on some hosts):
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/instructions find_put 2000000     # and 0: the difference / N
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/instructions fault 65536          # and 0: the difference / N
//! ```
//!
//! `find_put N`: N lock-free find+put of pages of a 4,096-page map.
//! `fault N`: N minor faults (one read of each of the first N pages of a
//! 65,536-page shared mapping whose pages are all cached; no fault-around).
//! Both load the same pages and map the same range whatever N is, and exit
//! without tearing down, so the difference of two runs is the N operations.

use std::sync::Arc;

use benches::ZeroStore;
use pagemap::{FramePool, PageMap, PAGE_SIZE};
use vmr::{AddressSpace, Advice, Machine, MapFlags, MapRequest, Prot};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: instructions (find_put | fault) N";
    let mode = args.get(1).expect(usage).as_str();
    let n: u64 = args.get(2).expect(usage).parse().expect(usage);
    match mode {
        "find_put" => {
            const PAGES: u64 = 4096;
            let map = PageMap::new(
                Arc::new(FramePool::new(PAGES as usize).expect("pool")),
                Arc::new(ZeroStore),
            );
            for i in 0..PAGES {
                drop(map.load(i).expect("load"));
            }
            let mut i = 0u64;
            for _ in 0..n {
                // A fixed stride over the map: every page, no pattern a
                // branch predictor could make more of in one build.
                i = (i + 2_654_435_761) % PAGES;
                drop(std::hint::black_box(map.find(i).expect("find")));
            }
            std::process::exit(0);
        }
        "fault" => {
            const PAGES: u64 = 65_536;
            assert!(n <= PAGES, "at most {PAGES} faults");
            let pool = Arc::new(FramePool::new(PAGES as usize).expect("pool"));
            let file = PageMap::new(pool.clone(), Arc::new(ZeroStore));
            for i in 0..PAGES {
                drop(file.load(i).expect("load"));
            }
            let machine = Machine::new(pool, 1);
            let space = AddressSpace::new(machine.clone());
            let va = space
                .mmap(MapRequest {
                    advice: Advice::Random,
                    ..MapRequest::new(
                        file.clone(),
                        PAGES * PAGE_SIZE as u64,
                        Prot::READ,
                        MapFlags::SHARED,
                    )
                })
                .expect("mmap");
            let mut b = [0u8; 1];
            for i in 0..n {
                machine
                    .cpu(0)
                    .read(&space, va + i * PAGE_SIZE as u64, &mut b)
                    .expect("read");
            }
            std::process::exit(0);
        }
        _ => panic!("{usage}"),
    }
}
