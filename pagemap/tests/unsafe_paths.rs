//! The paths through pagemap's `unsafe` code, small enough for miri
//! (`scripts/miri.sh` runs this file under it; `cargo test` runs it too):
//! radix nodes allocated zeroed, grown and shrunk across every level, walked
//! lock-free while a remover unlinks them, and freed through the epoch; the
//! page reference that outlives its epoch guard; the zeroed frame pool; a
//! private frame handed to an owner as a raw id and taken back; an owned
//! page reference keeping its map alive.

use std::sync::Arc;
use std::thread;

use pagemap::{FramePool, MemStore, PageMap, PrivateFrame};

/// Indices that need one, two, ... eleven levels of the 64-way tree.
const SPREAD: [u64; 8] = [0, 63, 64, 4095, 1 << 20, 1 << 40, u64::MAX - 1, u64::MAX];

fn map(frames: usize) -> Arc<PageMap> {
    PageMap::new(
        Arc::new(FramePool::new(frames).unwrap()),
        Arc::new(MemStore::new()),
    )
}

#[test]
fn tree_grows_and_shrinks_across_every_level() {
    let map = map(16);
    for (n, &i) in SPREAD.iter().enumerate() {
        map.load(i).unwrap().write(0, &[n as u8 + 1]).unwrap();
    }
    assert_eq!(map.cached_indices(..), SPREAD.to_vec());
    let mut b = [0u8];
    for (n, &i) in SPREAD.iter().enumerate() {
        map.find(i).unwrap().unwrap().read(0, &mut b).unwrap();
        assert_eq!(b[0], n as u8 + 1);
    }
    // Remove from the top down, so the root shrinks level by level.
    for &i in SPREAD.iter().rev() {
        let r = map.remove(i..=i);
        assert_eq!(r.removed, 1, "{r:?}");
        assert!(map.find(i).unwrap().is_none());
    }
    assert_eq!(map.nr_pages(), 0);
    assert_eq!(map.memory().nodes, 0, "every node unlinked");
}

#[test]
fn lookups_race_a_remover_that_unlinks_nodes() {
    let map = Arc::new(map(8));
    for &i in &SPREAD[..4] {
        drop(map.load(i).unwrap());
    }
    let reader = {
        let map = map.clone();
        thread::spawn(move || {
            for _ in 0..3 {
                for &i in &SPREAD[..4] {
                    // A hit holds the page: its leaf cannot go meanwhile.
                    if let Some(p) = map.find(i).unwrap() {
                        assert_eq!(p.index(), i);
                    }
                    let _ = map.next_present(i);
                }
            }
        })
    };
    for _ in 0..2 {
        map.free_unused();
        for &i in &SPREAD[..4] {
            drop(map.load(i).unwrap());
        }
    }
    reader.join().unwrap();
    map.free_unused();
    // The unlinked nodes are freed by the epoch once no reader can see them.
    for _ in 0..4 {
        drop(map.find(0));
    }
}

#[test]
fn a_page_reference_outlives_its_lookup() {
    let map = map(4);
    let page = map.load(5).unwrap();
    let again = page.try_clone().unwrap();
    drop(page);
    // The slot reference was extended past the lookup's epoch guard: the
    // held slot keeps its leaf (only empty nodes are unlinked).
    assert_eq!(map.remove(..).referenced, 1);
    assert_eq!(again.holders(), 1);
    again.write(10, b"still here").unwrap();
    drop(again);
    assert_eq!(map.remove(..).removed, 1);
}

#[test]
fn a_private_frame_through_its_raw_id() {
    let pool = Arc::new(FramePool::new(2).unwrap());
    let mut page = [0u8; 4096];
    page[4095] = 9;
    let f = pool.alloc_private().unwrap();
    f.write_page(&page);
    let raw = f.into_raw();
    // SAFETY: `raw` came from into_raw on this pool, taken back once.
    let f = unsafe { PrivateFrame::from_raw(&pool, raw) };
    let mut back = [0u8; 4096];
    f.read_page(&mut back);
    assert_eq!(back[4095], 9);
    drop(f);
    assert_eq!(pool.free_frames(), 2);
}

#[test]
fn an_owned_page_reference_outlives_every_borrow_of_its_map() {
    let map = Arc::new(map(4));
    let owned = map.load(5).unwrap().into_owned(&map);
    owned.get().write(1, b"kept").unwrap();
    let weak = Arc::downgrade(&map);
    drop(map); // the owned reference keeps the map alive
    let t = thread::spawn(move || {
        let mut b = [0u8; 4];
        owned.get().read(1, &mut b).unwrap();
        assert_eq!(owned.get().holders(), 1);
        drop(owned); // the put, then the last Arc: the map drops here
        b
    });
    assert_eq!(&t.join().unwrap(), b"kept");
    assert!(
        weak.upgrade().is_none(),
        "the map went with its last owned reference"
    );
}
