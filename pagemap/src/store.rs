//! Backing stores: where pages come from and go to.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::StoreError;
use crate::PAGE_SIZE;

/// One page of bytes.
pub type PageBuf = [u8; PAGE_SIZE];

/// The storage behind a page map: a file, a block device, memory.
///
/// Implementations must be callable from many threads at once. The page map
/// never holds its locks across these calls.
pub trait BackingStore: Send + Sync {
    /// Fills `buf` with page `index`. Bytes past the end of the store read as zero.
    fn read_page(&self, index: u64, buf: &mut PageBuf) -> Result<(), StoreError>;

    /// Writes page `index`. On error the store may hold part of it; the page
    /// map keeps the page dirty and retries later.
    fn write_page(&self, index: u64, buf: &PageBuf) -> Result<(), StoreError>;

    /// Writes the contiguous pages `start, start + 1, ...` (an extent). The
    /// default writes them one by one; stores override it to batch I/O.
    /// On error, `Err((n, e))` says that the first `n` pages were written.
    fn write_extent(&self, start: u64, pages: &[&PageBuf]) -> Result<(), (usize, StoreError)> {
        for (i, p) in pages.iter().enumerate() {
            self.write_page(start + i as u64, p).map_err(|e| (i, e))?;
        }
        Ok(())
    }

    /// Drops every page from `end` on (a truncate). The default does nothing,
    /// for stores that cannot shrink.
    fn truncate(&self, end: u64) -> Result<(), StoreError> {
        let _ = end;
        Ok(())
    }
}

fn byte_offset(index: u64) -> Result<u64, StoreError> {
    index.checked_mul(PAGE_SIZE as u64).ok_or(StoreError::new(
        StoreError::EINVAL,
        "page beyond 2^64 bytes",
    ))
}

/// An in-memory store, with injectable errors for tests and fuzzers.
///
/// ```
/// use pagemap::{BackingStore, MemStore, PAGE_SIZE};
/// let store = MemStore::new();
/// store.write_page(3, &[7u8; PAGE_SIZE]).unwrap();
/// let mut buf = [0u8; PAGE_SIZE];
/// store.read_page(3, &mut buf).unwrap();
/// assert_eq!(buf[0], 7);
/// store.fail_reads(3, true);
/// assert!(store.read_page(3, &mut buf).is_err());
/// ```
#[derive(Debug, Default)]
pub struct MemStore {
    inner: parking_lot::Mutex<MemInner>,
}

#[derive(Debug, Default)]
struct MemInner {
    pages: HashMap<u64, Box<PageBuf>>,
    bad_reads: HashSet<u64>,
    bad_writes: HashSet<u64>,
    reads: u64,
    writes: u64,
}

impl MemStore {
    /// An empty store (every page reads as zeroes).
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes reads of `index` fail (or succeed again).
    pub fn fail_reads(&self, index: u64, fail: bool) {
        let mut g = self.inner.lock();
        if fail {
            g.bad_reads.insert(index)
        } else {
            g.bad_reads.remove(&index)
        };
    }

    /// Makes writes of `index` fail (or succeed again).
    pub fn fail_writes(&self, index: u64, fail: bool) {
        let mut g = self.inner.lock();
        if fail {
            g.bad_writes.insert(index)
        } else {
            g.bad_writes.remove(&index)
        };
    }

    /// A copy of page `index` as stored (`None` if never written).
    pub fn page(&self, index: u64) -> Option<Box<PageBuf>> {
        self.inner.lock().pages.get(&index).cloned()
    }

    /// Stores page `index` directly (test set-up).
    pub fn set_page(&self, index: u64, buf: &PageBuf) {
        self.inner.lock().pages.insert(index, Box::new(*buf));
    }

    /// Successful reads and writes so far.
    pub fn io_counts(&self) -> (u64, u64) {
        let g = self.inner.lock();
        (g.reads, g.writes)
    }
}

impl BackingStore for MemStore {
    fn read_page(&self, index: u64, buf: &mut PageBuf) -> Result<(), StoreError> {
        let mut g = self.inner.lock();
        if g.bad_reads.contains(&index) {
            return Err(StoreError::new(StoreError::EIO, "injected read error"));
        }
        g.reads += 1;
        match g.pages.get(&index) {
            Some(p) => buf.copy_from_slice(&p[..]),
            None => buf.fill(0),
        }
        Ok(())
    }

    fn truncate(&self, end: u64) -> Result<(), StoreError> {
        self.inner.lock().pages.retain(|&i, _| i < end);
        Ok(())
    }

    fn write_page(&self, index: u64, buf: &PageBuf) -> Result<(), StoreError> {
        let mut g = self.inner.lock();
        if g.bad_writes.contains(&index) {
            return Err(StoreError::new(StoreError::EIO, "injected write error"));
        }
        g.writes += 1;
        g.pages.insert(index, Box::new(*buf));
        Ok(())
    }
}

/// A real file, read and written with positional I/O (`pread`/`pwrite`).
///
/// A read past the end of the file fills zeroes. A write of the file's last,
/// partial page writes only up to the file's length; a write of a page wholly
/// past the end extends the file to cover that page.
///
/// ```
/// use pagemap::{BackingStore, FileStore, PAGE_SIZE};
/// let path = std::env::temp_dir().join(format!("pagemap-doc-{}", std::process::id()));
/// std::fs::write(&path, b"hello").unwrap();
/// let store = FileStore::open(&path).unwrap();
/// let mut buf = [1u8; PAGE_SIZE];
/// store.read_page(0, &mut buf).unwrap();
/// assert_eq!(&buf[..6], b"hello\0"); // short read: zero filled
/// buf[0] = b'j';
/// store.write_page(0, &buf).unwrap();
/// assert_eq!(std::fs::read(&path).unwrap(), b"jello"); // length kept
/// # std::fs::remove_file(&path).unwrap();
/// ```
#[derive(Debug)]
pub struct FileStore {
    file: File,
    /// Logical length in bytes (writes of the partial last page stop here).
    len: parking_lot::RwLock<u64>,
}

impl FileStore {
    /// Opens an existing file for reading and writing.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        Self::new(file)
    }

    /// Wraps an open file (it must be readable and writable).
    pub fn new(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(Self {
            file,
            len: parking_lot::RwLock::new(len),
        })
    }

    /// The file's length in bytes as this store sees it.
    pub fn len(&self) -> u64 {
        *self.len.read()
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Truncates or extends the file.
    pub fn set_len(&self, len: u64) -> io::Result<()> {
        let mut g = self.len.write();
        self.file.set_len(len)?;
        *g = len;
        Ok(())
    }

    /// Flushes the file's data to stable storage (`fdatasync`).
    pub fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn write_at(&self, off: u64, bytes: &[u8]) -> io::Result<()> {
        let end = off.checked_add(bytes.len() as u64).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "write beyond 2^64 bytes")
        })?;
        let len = *self.len.read();
        if off < len {
            // Inside the file: never extend it past its length.
            let n = (len - off).min(bytes.len() as u64) as usize;
            return self.file.write_all_at(&bytes[..n], off);
        }
        let mut g = self.len.write();
        self.file.write_all_at(bytes, off)?;
        *g = (*g).max(end);
        Ok(())
    }
}

impl BackingStore for FileStore {
    fn read_page(&self, index: u64, buf: &mut PageBuf) -> Result<(), StoreError> {
        let off = byte_offset(index)?;
        let mut done = 0;
        while done < PAGE_SIZE {
            match self.file.read_at(&mut buf[done..], off + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        buf[done..].fill(0);
        Ok(())
    }

    fn write_page(&self, index: u64, buf: &PageBuf) -> Result<(), StoreError> {
        Ok(self.write_at(byte_offset(index)?, buf)?)
    }

    fn truncate(&self, end: u64) -> Result<(), StoreError> {
        // An end beyond 2^64 bytes drops nothing.
        let Ok(bytes) = byte_offset(end) else {
            return Ok(());
        };
        if bytes < self.len() {
            self.set_len(bytes)?;
        }
        Ok(())
    }

    fn write_extent(&self, start: u64, pages: &[&PageBuf]) -> Result<(), (usize, StoreError)> {
        let off = byte_offset(start).map_err(|e| (0, e))?;
        let mut joined = Vec::with_capacity(pages.len() * PAGE_SIZE);
        for p in pages {
            joined.extend_from_slice(&p[..]);
        }
        // One pwrite for the extent; on error, report none as written.
        self.write_at(off, &joined).map_err(|e| (0, e.into()))
    }
}

#[cfg(all(test, not(pagemap_loom)))]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("pagemap-store-{name}-{}", std::process::id()))
    }

    #[test]
    fn file_store_round_trip_and_extend() {
        let path = tmp("rt");
        std::fs::write(&path, vec![5u8; PAGE_SIZE + 10]).unwrap();
        let s = FileStore::open(&path).unwrap();
        let mut b = [0u8; PAGE_SIZE];
        s.read_page(1, &mut b).unwrap();
        assert_eq!(&b[..10], &[5u8; 10]);
        assert!(b[10..].iter().all(|&x| x == 0));
        s.write_page(1, &[9u8; PAGE_SIZE]).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            PAGE_SIZE as u64 + 10
        );
        s.write_page(3, &[4u8; PAGE_SIZE]).unwrap();
        assert_eq!(s.len(), 4 * PAGE_SIZE as u64);
        s.read_page(2, &mut b).unwrap();
        assert!(b.iter().all(|&x| x == 0), "hole reads as zeroes");
        s.write_extent(0, &[&[1u8; PAGE_SIZE], &[2u8; PAGE_SIZE]])
            .unwrap();
        s.read_page(1, &mut b).unwrap();
        assert_eq!(b[0], 2);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn huge_index_is_a_typed_error() {
        let path = tmp("huge");
        std::fs::write(&path, b"").unwrap();
        let s = FileStore::open(&path).unwrap();
        let mut b = [0u8; PAGE_SIZE];
        let e = s.read_page(u64::MAX, &mut b).unwrap_err();
        assert_eq!(e.code(), StoreError::EINVAL);
        assert!(s.write_page(u64::MAX, &b).is_err());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn mem_store_injection() {
        let s = MemStore::new();
        s.fail_writes(1, true);
        assert!(s.write_page(1, &[0; PAGE_SIZE]).is_err());
        s.fail_writes(1, false);
        s.write_page(1, &[3; PAGE_SIZE]).unwrap();
        assert_eq!(s.page(1).unwrap()[0], 3);
        assert_eq!(s.io_counts(), (0, 1));
    }
}
