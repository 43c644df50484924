//! Threads writing through the page map while others free and write back,
//! on a real file, with a pool smaller than the working set. No write may be
//! lost: every (thread, page) ends with the last value that thread wrote.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use pagemap::{Error, FileStore, FramePool, PageMap, PAGE_SIZE};

const THREADS: usize = 4;
const PAGES: u64 = 48;
const OPS: u64 = 4000;

fn load_retrying(map: &PageMap, index: u64) -> pagemap::PageRef<'_> {
    loop {
        match map.load(index) {
            Ok(p) => return p,
            Err(Error::PoolExhausted { .. }) => {
                map.free_unused();
                thread::yield_now();
            }
            Err(e) => panic!("load {index}: {e}"),
        }
    }
}

#[test]
fn no_lost_writes_under_eviction_and_writeback() {
    let path = std::env::temp_dir().join(format!("pagemap-stress-{}", std::process::id()));
    std::fs::write(&path, vec![0u8; PAGES as usize * PAGE_SIZE]).unwrap();
    let store = Arc::new(FileStore::open(&path).unwrap());
    let map = PageMap::new(Arc::new(FramePool::new(24).unwrap()), store.clone());
    let done = AtomicBool::new(false);
    let expected: Vec<Vec<u64>> = thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let map = &map;
                s.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(0x9e37_79b9 + t as u64);
                    let mut last = vec![0u64; PAGES as usize];
                    for n in 1..=OPS {
                        let index = rng.next_u64() % PAGES;
                        let page = load_retrying(map, index);
                        let mut cur = [0u8; 8];
                        page.read(t * 8, &mut cur).unwrap();
                        assert_eq!(u64::from_le_bytes(cur), last[index as usize], "lost write");
                        page.write(t * 8, &n.to_le_bytes()).unwrap();
                        last[index as usize] = n;
                    }
                    last
                })
            })
            .collect();
        let cleaner = s.spawn(|| {
            let mut rounds = 0u64;
            while !done.load(Ordering::Relaxed) {
                let r = map.free_unused();
                assert!(r.errors.is_empty());
                let w = map.writeback(..);
                assert!(w.errors.is_empty());
                rounds += 1;
            }
            rounds
        });
        // Stop the cleaner even if a worker panicked, so the panic is reported
        // instead of the scope waiting forever.
        let results: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        done.store(true, Ordering::Relaxed);
        assert!(cleaner.join().unwrap() > 0);
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    assert!(map.writeback(..).errors.is_empty());
    map.free_unused();
    drop(map);
    let bytes = std::fs::read(&path).unwrap();
    for (t, last) in expected.iter().enumerate() {
        for (index, &v) in last.iter().enumerate() {
            let off = index * PAGE_SIZE + t * 8;
            let got = u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap());
            assert_eq!(got, v, "thread {t} page {index}");
        }
    }
    std::fs::remove_file(&path).unwrap();
}
