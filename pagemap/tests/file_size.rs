//! The file size in bytes and the byte API (issue 11's reproductions): no
//! byte below the size is ever dropped, none past it is ever written, and
//! a page write that would be dropped is refused instead.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use pagemap::{Error, FileStore, FramePool, MemStore, PageMap, StoreControl, PAGE_SIZE};

/// A fresh temp file path, unique in this process and run.
fn tmp(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "pagemap-size-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A page map over the file at `path` (opened afresh: a reopen).
fn open(path: &PathBuf, frames: usize) -> Arc<PageMap> {
    let store = FileStore::open(path).unwrap();
    PageMap::new(Arc::new(FramePool::new(frames).unwrap()), Arc::new(store))
}

#[test]
fn the_10000_byte_append_reaches_the_file() {
    let path = tmp("append");
    let old: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    std::fs::write(&path, &old).unwrap();
    let map = open(&path, 4);
    assert_eq!((map.size(), map.end()), (10_000, 3));
    // The page write the issue lost: refused now, nothing changed.
    let page = map.load(2).unwrap();
    let e = page.write(1808, &[b'x'; 100]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::BeyondSize {
                offset: 10_000,
                size: 10_000
            }
        ),
        "{e}"
    );
    assert!(!page.is_dirty());
    // A write that ends below the size in the partial page is fine.
    page.write(1800, b"12345678").unwrap();
    drop(page);
    // The byte API appends.
    assert_eq!(map.write_at(10_000, &[b'x'; 100]).unwrap(), 100);
    assert_eq!(map.size(), 10_100);
    let r = map.writeback(..);
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(map.free_unused().freed, 1); // page 2 only
    drop(map);
    let mut want = old;
    want[2 * PAGE_SIZE + 1800..][..8].copy_from_slice(b"12345678");
    want.extend_from_slice(&[b'x'; 100]);
    assert_eq!(std::fs::read(&path).unwrap(), want);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn appending_50_records_after_reopen_keeps_all_of_them() {
    let path = tmp("log");
    std::fs::write(&path, b"").unwrap();
    let record = |i: u32| format!("record {i:05} of a small append-only log\n").into_bytes();
    let mut want = Vec::new();
    {
        let map = open(&path, 3);
        for i in 0..20 {
            let r = record(i);
            assert_eq!(map.write_at(map.size(), &r).unwrap(), r.len());
            want.extend_from_slice(&r);
        }
        assert!(map.writeback(..).errors.is_empty());
    }
    {
        // Reopen: the size comes from the file.
        let map = open(&path, 3);
        assert_eq!(map.size(), want.len() as u64);
        for i in 20..70 {
            let r = record(i);
            assert_eq!(map.write_at(map.size(), &r).unwrap(), r.len());
            want.extend_from_slice(&r);
            if i % 10 == 0 {
                // A pool smaller than the file: clean pages go.
                map.writeback(..);
                map.free_unused();
            }
        }
        assert!(map.writeback(..).errors.is_empty());
        let mut back = vec![0u8; want.len() + 10];
        assert_eq!(map.read_at(0, &mut back).unwrap(), want.len());
        assert_eq!(&back[..want.len()], &want[..]);
    }
    assert_eq!(std::fs::read(&path).unwrap(), want);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn load_beyond_the_size_fails_and_uses_no_frame() {
    let path = tmp("beyond");
    std::fs::write(&path, vec![1u8; 3 * PAGE_SIZE]).unwrap();
    let map = open(&path, 2);
    assert!(matches!(
        map.load(100),
        Err(Error::BeyondEof { index: 100, end: 3 })
    ));
    assert!(matches!(
        map.load(3),
        Err(Error::BeyondEof { index: 3, end: 3 })
    ));
    assert_eq!(map.nr_pages(), 0);
    assert_eq!(map.pool().free_frames(), 2);
    drop(map);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn the_new_errors_keep_error_three_words() {
    assert_eq!(std::mem::size_of::<Error>(), 3 * std::mem::size_of::<u64>());
}

#[test]
fn a_store_without_an_end_keeps_none() {
    let map = PageMap::new(
        Arc::new(FramePool::new(2).unwrap()),
        Arc::new(MemStore::new()),
    );
    assert_eq!((map.size(), map.end()), (u64::MAX, u64::MAX));
    assert_eq!(map.valid_bytes(1 << 50), PAGE_SIZE);
    assert_eq!(map.write_at(1 << 20, b"abc").unwrap(), 3);
    assert_eq!(
        map.size(),
        u64::MAX,
        "write_at never changes a size without end"
    );
    assert!(map.load(u64::MAX).is_ok());
}

#[test]
fn valid_bytes_and_partial_writeback() {
    let store = Arc::new(MemStore::with_size(100));
    let map = PageMap::new(Arc::new(FramePool::new(2).unwrap()), store.clone());
    assert_eq!((map.valid_bytes(0), map.valid_bytes(1)), (100, 0));
    assert_eq!(map.write_at(0, &[9; 100]).unwrap(), 100);
    assert!(matches!(
        map.write_at(u64::MAX - 1, b"x"),
        Err(Error::FileTooLarge { .. })
    ));
    assert!(map.writeback(..).errors.is_empty());
    assert_eq!(
        store.size().unwrap(),
        Some(100),
        "never written past the size"
    );
    let p = store.page(0).unwrap();
    assert!(p[..100].iter().all(|&b| b == 9) && p[100..].iter().all(|&b| b == 0));
}

#[test]
fn a_hole_reads_as_zeroes_and_set_size_cuts_and_extends_the_file() {
    let path = tmp("hole");
    std::fs::write(&path, b"head").unwrap();
    let map = open(&path, 4);
    assert_eq!(map.write_at(3 * PAGE_SIZE as u64 + 7, b"far").unwrap(), 3);
    let mut buf = vec![1u8; 3 * PAGE_SIZE + 10];
    assert_eq!(map.read_at(0, &mut buf).unwrap(), 3 * PAGE_SIZE + 10);
    assert_eq!(&buf[..4], b"head");
    assert!(buf[4..3 * PAGE_SIZE + 7].iter().all(|&b| b == 0));
    assert_eq!(&buf[3 * PAGE_SIZE + 7..], b"far");
    assert!(map.writeback(..).errors.is_empty());
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        3 * PAGE_SIZE as u64 + 10
    );
    // Cut into page 0 while it is held and dirty: its tail is zeroed.
    let held = map.load(0).unwrap();
    held.write(2, b"ad!").unwrap();
    let r = map.set_size(3).unwrap();
    assert_eq!(r.removed, 3, "{r:?}"); // pages 1 to 3 (read_at loaded the hole)
    assert_eq!(std::fs::read(&path).unwrap(), b"hea");
    // Extend over it: the bytes past the old size come back as zeroes.
    map.set_size(10).unwrap();
    let mut b = [1u8; 10];
    assert_eq!(map.read_at(0, &mut b).unwrap(), 10);
    assert_eq!(&b, b"hea\0\0\0\0\0\0\0");
    assert!(matches!(
        held.write(8, b"xyz"),
        Err(Error::BeyondSize {
            offset: 10,
            size: 10
        })
    ));
    drop(held);
    assert!(map.writeback(..).errors.is_empty());
    assert_eq!(std::fs::read(&path).unwrap(), b"hea\0\0\0\0\0\0\0");
    drop(map);
    std::fs::remove_file(&path).unwrap();
}
