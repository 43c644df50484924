//! Removers work in batches of at most `REMOVE_BATCH` pages (bounded,
//! reused scratch space): ranges of several batches must give the same
//! results as one batch would, pass by pass.

use std::sync::Arc;

use pagemap::{Batching, FramePool, MemStore, PageMap, Pass, REMOVE_BATCH};

const N: u64 = (REMOVE_BATCH as u64) * 2 + 77;

fn filled() -> (Arc<MemStore>, Arc<PageMap>) {
    let store = Arc::new(MemStore::new());
    let map = PageMap::new(
        Arc::new(FramePool::new(N as usize + 8).unwrap()),
        store.clone(),
    );
    for i in 0..N {
        let page = map.load(i * 3).unwrap();
        if i % 7 == 0 {
            page.write(0, &[i as u8 | 1]).unwrap();
        }
    }
    (store, map)
}

fn dirty_count() -> u64 {
    (0..N).filter(|i| i % 7 == 0).count() as u64
}

#[test]
fn remove_over_several_batches() {
    let (store, map) = filled();
    let held: Vec<_> = (0..N)
        .step_by(100)
        .map(|i| map.find(i * 3).unwrap().unwrap())
        .collect();
    let r = map.remove(..);
    let held_dirty = (0..N).step_by(100).filter(|i| i % 7 == 0).count() as u64;
    assert_eq!(r.removed, N - held.len() as u64);
    assert_eq!(r.referenced, held.len() as u64);
    assert_eq!(r.written, dirty_count() - held_dirty);
    assert!(r.errors.is_empty());
    for i in (0..N).filter(|i| i % 7 == 0 && i % 100 != 0) {
        assert_eq!(store.page(i * 3).unwrap()[0], i as u8 | 1, "page {}", i * 3);
    }
    drop(held);
    assert_eq!(map.nr_pages(), (0..N).step_by(100).count() as u64);
}

#[test]
fn stepping_runs_the_passes_once_per_batch() {
    let (_store, map) = filled();
    let mut removal = map.begin_remove(.., Batching::PerSpace);
    let mut marked = 0;
    let mut victims = 0;
    loop {
        let pass = removal.step();
        if pass == Pass::Marked {
            marked += 1;
            assert!(removal.victims().len() <= REMOVE_BATCH);
            victims += removal.victims().len();
        }
        if pass == Pass::Done {
            break;
        }
    }
    assert_eq!(marked, 3, "three batches");
    assert_eq!(victims as u64, N);
    let r = removal.finish();
    assert_eq!(r.removed, N);
    assert_eq!(map.nr_pages(), 0);
}

#[test]
fn free_unused_invalidate_and_destroy_over_several_batches() {
    let (_store, map) = filled();
    let inv = map.invalidate(..);
    assert_eq!(inv.invalidated, N - dirty_count());
    assert_eq!(inv.dirty, dirty_count());
    let f = map.free_unused();
    assert_eq!((f.freed, f.written), (dirty_count(), dirty_count()));
    assert_eq!(map.nr_pages(), 0);
    let (_store, map) = filled();
    let d = map.destroy(false);
    assert_eq!((d.freed, d.written), (N, dirty_count()));
    let (_store, map) = filled();
    let t = map.truncate(1);
    assert_eq!(t.removed, N - 1);
    assert_eq!(map.nr_pages(), 1);
}
