//! The sequential reference model of a `PageMap` over a `MemStore`.
//!
//! Written from the documented semantics, one operation at a time, with no
//! concurrency and an independent index (a `BTreeMap`: it shares nothing
//! with the page map's radix tree, and, being `std`'s, most of it runs
//! without the fuzzer's comparison tracing, which made the instrumented
//! `radix_trie` the harness's largest cost).

use std::cell::Cell;
use std::collections::btree_map;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;

use pagemap::Error;

/// Bytes in a page.
pub const PAGE_SIZE: usize = 4096;

/// A page's bytes.
pub type Page = Box<[u8; PAGE_SIZE]>;

/// An error as the harness compares it: the library's own value
/// (`pagemap::Error`, which has no `PartialEq`) in its `Debug` form, so the
/// kind, every field and the I/O source all count.
pub type E = String;

fn err(e: Error) -> E {
    format!("{e:?}")
}

/// The error `MemStore` injects for a read or a write of a page: EIO.
fn injected(_what: &'static str, _index: u64) -> pagemap::StoreError {
    pagemap::StoreError::new(pagemap::StoreError::EIO)
}

/// A cached page.
#[derive(Clone, Debug)]
pub struct ModelPage {
    /// Contents.
    pub data: Page,
    /// Differs from the store.
    pub dirty: bool,
    /// Live `PageRef`s.
    pub holders: u64,
    /// Contents valid. Always true in a sequential run: a failed read
    /// discards its page when nobody holds it, and a loading page cannot be
    /// held by anyone but its loader.
    pub uptodate: bool,
    /// Which version of the contents this is: new for every load and every
    /// write (the harness reads a page again only once it changes).
    pub version: u64,
}

/// The backing store.
#[derive(Debug, Default)]
pub struct ModelStore {
    /// Pages written (by writeback or set-up).
    pub pages: HashMap<u64, Page>,
    /// Indices whose reads fail.
    pub bad_reads: HashSet<u64>,
    /// Indices whose writes fail.
    pub bad_writes: HashSet<u64>,
    /// Successful reads.
    pub reads: u64,
    /// Successful writes.
    pub writes: u64,
}

impl ModelStore {
    fn read(&mut self, index: u64) -> Result<Page, E> {
        if self.bad_reads.contains(&index) {
            return Err(err(Error::Read {
                index,
                source: injected("read", index),
            }));
        }
        self.reads += 1;
        Ok(self
            .pages
            .get(&index)
            .cloned()
            .unwrap_or_else(|| Box::new([0; PAGE_SIZE])))
    }

    fn write(&mut self, index: u64, data: &Page) -> Result<(), E> {
        if self.bad_writes.contains(&index) {
            return Err(err(Error::Write {
                index,
                source: injected("write", index),
            }));
        }
        self.writes += 1;
        self.pages.insert(index, data.clone());
        Ok(())
    }
}

/// What `free_unused` should report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Freed {
    /// Pages removed.
    pub freed: u64,
    /// Dirty pages written before removal.
    pub written: u64,
    /// Held pages skipped.
    pub referenced: u64,
    /// Always 0 sequentially.
    pub raced: u64,
    /// Skipped because mapped: always 0 (the harness maps nothing).
    pub mapped: u64,
    /// Write errors, in index order.
    pub errors: Vec<E>,
}

/// The model page map.
pub struct Model {
    /// Frames in the pool (the map is the pool's only user).
    pub capacity: usize,
    /// Cached pages.
    pub pages: BTreeMap<u64, ModelPage>,
    /// The store.
    pub store: ModelStore,
    /// [`expected_nodes`](Self::expected_nodes), computed once per change
    /// of `pages`' keys (it is compared after every op).
    nodes: Cell<Option<usize>>,
    /// The last [`ModelPage::version`] handed out.
    versions: u64,
}

fn check_range(offset: usize, len: usize) -> Result<(), E> {
    match offset.checked_add(len) {
        Some(end) if end <= PAGE_SIZE => Ok(()),
        _ => Err(err(Error::OutOfBounds { offset, len })),
    }
}

impl Model {
    /// An empty map over an empty store.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            pages: BTreeMap::new(),
            store: ModelStore::default(),
            nodes: Cell::new(None),
            versions: 0,
        }
    }

    /// Cached pages.
    pub fn nr_pages(&self) -> u64 {
        self.pages.len() as u64
    }

    /// The page at `index` (panics if absent: a harness bug).
    pub fn page(&self, index: u64) -> &ModelPage {
        self.pages.get(&index).expect("model: page not cached")
    }

    fn page_mut(&mut self, index: u64) -> &mut ModelPage {
        self.pages.get_mut(&index).expect("model: page not cached")
    }

    /// All cached indices, ascending.
    pub fn keys(&self) -> Vec<u64> {
        self.pages.keys().copied().collect()
    }

    /// The cached pages in `range` (any bounds: an empty or inverted range
    /// has none, where `BTreeMap::range` would panic).
    fn span(&self, range: (Bound<u64>, Bound<u64>)) -> btree_map::Range<'_, u64, ModelPage> {
        match crate::first_last(range) {
            Some((a, b)) => self.pages.range(a..=b),
            None => self.pages.range(0..0),
        }
    }

    /// Radix tree nodes a canonical 64-way tree over the cached indices has:
    /// just tall enough for the largest index (the tree grows on demand and
    /// shrinks when its root is a chain through child 0), and one node per
    /// distinct index prefix at every level (empty nodes are unlinked).
    pub fn expected_nodes(&self) -> usize {
        if let Some(n) = self.nodes.get() {
            return n;
        }
        let n = self.count_nodes();
        self.nodes.set(Some(n));
        n
    }

    fn count_nodes(&self) -> usize {
        let keys = self.keys();
        let Some(&max) = keys.last() else { return 0 };
        let mut levels = 1u32;
        while 6 * levels < 64 && max >> (6 * levels) != 0 {
            levels += 1;
        }
        (1..=levels)
            .map(|l| {
                let mut p: Vec<u64> = keys
                    .iter()
                    .map(|k| k.checked_shr(6 * l).unwrap_or(0))
                    .collect();
                p.dedup();
                p.len()
            })
            .sum()
    }

    /// `load`: a hit takes a reference; a miss needs a free frame, then a
    /// successful read; a failed read leaves nothing behind.
    pub fn load(&mut self, index: u64) -> Result<(), E> {
        if let Some(p) = self.pages.get_mut(&index) {
            assert!(p.uptodate);
            p.holders += 1;
            return Ok(());
        }
        if self.pages.len() >= self.capacity {
            return Err(err(Error::PoolExhausted {
                capacity: self.capacity,
                private: 0,
                // The census: every frame caches a page.
                unevictable: self.capacity as u32,
            }));
        }
        let data = self.store.read(index)?;
        self.pages.insert(
            index,
            ModelPage {
                data,
                dirty: false,
                holders: 1,
                uptodate: true,
                version: self.versions + 1,
            },
        );
        self.nodes.set(None);
        self.versions += 1;
        Ok(())
    }

    /// `find`: only up-to-date pages; takes a reference.
    pub fn find(&mut self, index: u64) -> bool {
        match self.pages.get_mut(&index) {
            Some(p) if p.uptodate => {
                p.holders += 1;
                true
            }
            _ => false,
        }
    }

    /// `load_nowait`: `find` or `WouldBlock`.
    pub fn load_nowait(&mut self, index: u64) -> Result<(), E> {
        if self.find(index) {
            Ok(())
        } else {
            Err(err(Error::WouldBlock { index }))
        }
    }

    /// Another reference.
    pub fn get(&mut self, index: u64) {
        self.page_mut(index).holders += 1;
    }

    /// Dropping a reference.
    pub fn put(&mut self, index: u64) {
        let p = self.page_mut(index);
        assert!(p.holders > 0, "model: put without holder");
        p.holders -= 1;
    }

    /// `PageRef::write`: bounds-checked; a successful write of at least one
    /// byte dirties the page (an empty write changes nothing).
    pub fn write(&mut self, index: u64, offset: usize, data: &[u8]) -> Result<(), E> {
        check_range(offset, data.len())?;
        self.versions += 1;
        let version = self.versions;
        let p = self.page_mut(index);
        p.data[offset..offset + data.len()].copy_from_slice(data);
        p.dirty |= !data.is_empty();
        p.version = version;
        Ok(())
    }

    /// `PageRef::read`.
    pub fn read(&self, index: u64, offset: usize, len: usize) -> Result<Vec<u8>, E> {
        check_range(offset, len)?;
        Ok(self.page(index).data[offset..offset + len].to_vec())
    }

    /// `mark_dirty` / `clear_dirty`.
    pub fn set_dirty(&mut self, index: u64, dirty: bool) {
        self.page_mut(index).dirty = dirty;
    }

    /// `free_unused`: held pages are skipped, dirty unheld pages are written
    /// first (a write error keeps the page, dirty, and is reported), the rest
    /// are removed.
    pub fn free_unused(&mut self) -> Freed {
        let mut r = Freed::default();
        for index in self.keys() {
            let p = self.pages.get(&index).expect("listed");
            if p.holders > 0 {
                r.referenced += 1;
                continue;
            }
            if p.dirty {
                let data = p.data.clone();
                match self.store.write(index, &data) {
                    Ok(()) => r.written += 1,
                    Err(e) => {
                        r.errors.push(e);
                        continue;
                    }
                }
            }
            self.pages.remove(&index);
            self.nodes.set(None);
            r.freed += 1;
        }
        r
    }

    /// `writeback(range)`: writes the dirty pages in range, in index order;
    /// a write error leaves the page dirty and is reported.
    pub fn writeback(&mut self, range: (Bound<u64>, Bound<u64>)) -> (u64, Vec<E>) {
        let mut written = 0;
        let mut errors = Vec::new();
        let dirty: Vec<u64> = self.dirty(range);
        for index in dirty {
            let p = self.page(index);
            let data = p.data.clone();
            match self.store.write(index, &data) {
                Ok(()) => {
                    written += 1;
                    self.page_mut(index).dirty = false;
                }
                Err(e) => errors.push(e),
            }
        }
        (written, errors)
    }

    /// `cached_indices(range)`.
    pub fn cached(&self, range: (Bound<u64>, Bound<u64>)) -> Vec<u64> {
        self.span(range).map(|(&i, _)| i).collect()
    }

    /// `dirty_indices(range)`.
    pub fn dirty(&self, range: (Bound<u64>, Bound<u64>)) -> Vec<u64> {
        self.span(range)
            .filter(|(_, p)| p.dirty)
            .map(|(&i, _)| i)
            .collect()
    }

    /// `next_present(from)`.
    pub fn next_present(&self, from: u64) -> Option<u64> {
        self.pages.range(from..).next().map(|(&i, _)| i)
    }

    /// `next_dirty(from)`.
    pub fn next_dirty(&self, from: u64) -> Option<u64> {
        self.pages
            .range(from..)
            .find(|(_, p)| p.dirty)
            .map(|(&i, _)| i)
    }

    /// `MemStore::fail_reads` / `fail_writes`.
    pub fn inject(&mut self, index: u64, reads: bool, on: bool) {
        let set = if reads {
            &mut self.store.bad_reads
        } else {
            &mut self.store.bad_writes
        };
        if on {
            set.insert(index);
        } else {
            set.remove(&index);
        }
    }
}
