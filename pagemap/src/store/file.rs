//! [`FileStore`]: a real file, with positional I/O straight from and into
//! frames.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{BackingStore, PageBuf};
use crate::error::StoreError;
use crate::frame::PageSrc;
use crate::PAGE_SIZE;

fn byte_offset(index: u64) -> Result<u64, StoreError> {
    index
        .checked_mul(PAGE_SIZE as u64)
        .ok_or(StoreError::new(StoreError::EINVAL))
}

/// A real file, read and written with positional I/O (`pread`/`pwrite`).
///
/// A read past the end of the file fills zeroes. A write writes exactly
/// [`PageSrc::len`] bytes at the page's offset, extending the file if they
/// reach past its end (as `pwrite` does): the page map decides how much of
/// a page is file data (its size, in bytes), and [`size`](BackingStore::size)
/// tells it the file's length when it is created.
///
/// ```
/// use std::sync::Arc;
/// use pagemap::{BackingStore, FileStore, FramePool, PageMap, PAGE_SIZE};
/// let path = std::env::temp_dir().join(format!("pagemap-doc-{}", std::process::id()));
/// std::fs::write(&path, b"hello").unwrap();
/// let store = FileStore::open(&path).unwrap();
/// let mut buf = [1u8; PAGE_SIZE];
/// store.read_page(0, &mut buf).unwrap();
/// assert_eq!(&buf[..6], b"hello\0"); // short read: zero filled
/// // Writes come from a page map's write-back, straight from the frame.
/// let map = PageMap::new(Arc::new(FramePool::new(1).unwrap()), Arc::new(store));
/// map.load(0).unwrap().write(0, b"j").unwrap();
/// assert!(map.sync().errors.is_empty());
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

    /// Writes `len` bytes at `src` to file offset `off`, extending the file
    /// (and our view of its length) to `off + len` if that is past its end.
    ///
    /// # Safety
    /// `src` must be valid for reads of `len` bytes for the call. They may
    /// change meanwhile: the kernel reads them, not Rust (see [`PageSrc`]).
    unsafe fn write_at(&self, off: u64, src: *const u8, len: usize) -> io::Result<()> {
        let end = off.checked_add(len as u64).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "write beyond 2^64 bytes")
        })?;
        if end <= *self.len.read() {
            // Inside the file: the length does not change.
            // SAFETY: the caller's range.
            return unsafe { self.pwrite_all(off, src, len) };
        }
        // Extending: under the write lock, so that a concurrent `set_len`
        // and our length update do not interleave.
        let mut g = self.len.write();
        // SAFETY: the caller's range.
        unsafe { self.pwrite_all(off, src, len)? };
        *g = (*g).max(end);
        Ok(())
    }

    /// `pwrite` until all `len` bytes at `src` are at `off`.
    ///
    /// A raw `pwrite(2)` (the `libc` crate), not `FileExt::write_all_at` or
    /// rustix's `pwrite`: both take a `&[u8]`, which would promise Rust that
    /// the bytes do not change during the call, and a mapped page's bytes
    /// may (a CPU writing through its entry; the page is then dirty again).
    /// The kernel copies them as a device's DMA would, outside Rust's model.
    ///
    /// # Safety
    /// As [`write_at`](Self::write_at).
    unsafe fn pwrite_all(&self, off: u64, src: *const u8, len: usize) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut done = 0usize;
        while done < len {
            let at = off + done as u64;
            let at = libc::off_t::try_from(at)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset beyond off_t"))?;
            // SAFETY: `src + done .. src + len` is inside the caller's range,
            // valid for reads (this fn's contract); the fd is ours and open.
            let n = unsafe {
                libc::pwrite(self.file.as_raw_fd(), src.add(done).cast(), len - done, at)
            };
            match n {
                0 => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                n if n > 0 => done += n as usize,
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
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

    fn write_page(&self, index: u64, src: PageSrc<'_>) -> Result<(), StoreError> {
        let off = byte_offset(index)?;
        // SAFETY: `src` names a frame's PAGE_SIZE bytes, valid for the call
        // (the write-back holds the page), and `len() <= PAGE_SIZE`; their
        // changing is allowed here.
        unsafe { self.write_at(off, src.as_ptr().as_ptr(), src.len())? };
        Ok(())
    }

    fn size(&self) -> Result<Option<u64>, StoreError> {
        Ok(Some(self.len()))
    }

    fn set_size(&self, bytes: u64) -> Result<(), StoreError> {
        // `u64::MAX` is "no end": there is nothing to cut.
        if bytes != u64::MAX {
            self.set_len(bytes)?;
        }
        Ok(())
    }
}

#[cfg(all(test, not(pagemap_loom)))]
mod tests {
    use super::*;
    use crate::frame::{FrameId, FramePool};

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("pagemap-store-{name}-{}", std::process::id()))
    }

    /// A frame of `pool` filled with `byte`.
    fn frame_of(pool: &FramePool, byte: u8) -> FrameId {
        let id = pool.alloc().unwrap();
        pool.write_page(id, &[byte; PAGE_SIZE]);
        id
    }

    #[test]
    fn file_store_round_trip_and_extend() {
        let pool = FramePool::new(4).unwrap();
        let path = tmp("rt");
        std::fs::write(&path, vec![5u8; PAGE_SIZE + 10]).unwrap();
        let s = FileStore::open(&path).unwrap();
        let mut b = [0u8; PAGE_SIZE];
        s.read_page(1, &mut b).unwrap();
        assert_eq!(&b[..10], &[5u8; 10]);
        assert!(b[10..].iter().all(|&x| x == 0));
        let nines = frame_of(&pool, 9);
        s.write_page(1, pool.page_src_len(nines, 10)).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            PAGE_SIZE as u64 + 10,
            "exactly the source's length is written"
        );
        s.read_page(1, &mut b).unwrap();
        assert_eq!(&b[..10], &[9u8; 10]);
        let fours = frame_of(&pool, 4);
        s.write_page(3, pool.page_src(fours)).unwrap();
        assert_eq!(s.len(), 4 * PAGE_SIZE as u64);
        s.read_page(2, &mut b).unwrap();
        assert!(b.iter().all(|&x| x == 0), "hole reads as zeroes");
        s.read_page(3, &mut b).unwrap();
        assert!(b.iter().all(|&x| x == 4), "written straight from the frame");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn huge_index_is_a_typed_error() {
        let pool = FramePool::new(1).unwrap();
        let path = tmp("huge");
        std::fs::write(&path, b"").unwrap();
        let s = FileStore::open(&path).unwrap();
        let mut b = [0u8; PAGE_SIZE];
        let e = s.read_page(u64::MAX, &mut b).unwrap_err();
        assert_eq!(e.code(), StoreError::EINVAL);
        let f = frame_of(&pool, 0);
        assert!(s.write_page(u64::MAX, pool.page_src(f)).is_err());
        std::fs::remove_file(&path).unwrap();
    }
}
