//! CPUs writing through their TLBs while another thread harvests dirty bits:
//! no write may be lost on its way to the file.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use pagemap::{FramePool, MemStore, PageMap, PAGE_SIZE};
use vmr::{AddressSpace, Fault, Machine, MapFlags, MapRequest, Prot};

const PAGE: u64 = PAGE_SIZE as u64;

#[test]
fn no_lost_dirty_bit_under_mprotect_and_writeback() {
    let pool = Arc::new(FramePool::new(64).unwrap());
    let store = Arc::new(MemStore::new());
    let file = Arc::new(PageMap::new(pool.clone(), store.clone()));
    let machine = Machine::new(pool, 3);
    let space = AddressSpace::new(machine.clone());
    let va = space
        .mmap(MapRequest::new(
            file.clone(),
            2 * PAGE,
            Prot::RW,
            MapFlags::SHARED,
        ))
        .unwrap();
    let stop = AtomicBool::new(false);
    const WRITES: u64 = 3000;
    thread::scope(|s| {
        let mut writers = Vec::new();
        for t in 0..2usize {
            let (space, machine) = (&space, &machine);
            writers.push(s.spawn(move || {
                let cpu = machine.cpu(t);
                for n in 1..=WRITES {
                    // Both CPUs write the same two pages, each its own bytes.
                    for page in 0..2 {
                        let at = va + page * PAGE + t as u64 * 8;
                        loop {
                            match cpu.write(space, at, &n.to_le_bytes()) {
                                Ok(()) => break,
                                Err(Fault::Protection { .. }) => thread::yield_now(),
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                }
            }));
        }
        s.spawn(|| {
            let mut rounds = 0;
            while !stop.load(Ordering::Relaxed) || rounds < 10 {
                space.mprotect(va, 2 * PAGE, Prot::READ).unwrap();
                assert!(file.writeback(..).errors.is_empty());
                space.mprotect(va, 2 * PAGE, Prot::RW).unwrap();
                rounds += 1;
            }
        });
        // Let the writers finish, then stop the harvester.
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
    });
    space.munmap(va, 2 * PAGE).unwrap();
    assert!(file.sync().errors.is_empty());
    for page in 0..2u64 {
        let p = store.page(page).expect("written back");
        for t in 0..2usize {
            let v = u64::from_le_bytes(p[t * 8..t * 8 + 8].try_into().unwrap());
            assert_eq!(v, WRITES, "page {page} cpu {t}: a write was lost");
        }
    }
    let sd = machine.shootdown_stats();
    assert!(sd.shootdowns > 0 && sd.skipped == 0);
}
