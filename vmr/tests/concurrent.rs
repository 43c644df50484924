//! CPUs writing through their TLBs while another thread harvests dirty bits:
//! no write may be lost on its way to the file.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use vmr::{Fault, MapFlags, Prot};

#[allow(dead_code)]
mod common;
use common::{Rig, PAGE};

#[test]
fn no_lost_dirty_bit_under_mprotect_and_writeback() {
    let rig = Rig::new(64, 3);
    let (file, store, machine) = (&rig.file, &rig.store, &rig.machine);
    let (space, va) = rig.mapped(2, Prot::RW, MapFlags::SHARED);
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
    assert!(file.writeback(..).errors.is_empty());
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
