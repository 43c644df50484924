//! [`FileStore`]: a real file, with positional I/O straight from and into
//! frames.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{BackingStore, PageBuf, StoreControl};
use crate::error::StoreError;
use crate::frame::PageSrc;
use crate::PAGE_SIZE;

fn byte_offset(index: u64) -> Result<u64, StoreError> {
    index
        .checked_mul(PAGE_SIZE as u64)
        .ok_or(StoreError::new(StoreError::EINVAL))
}

/// A real file, read and written with positional, vectored I/O (`preadv`
/// and `pwritev` straight from and into the frames: one system call for a
/// write-back extent or a readahead window).
///
/// A read past the end of the file fills zeroes. A write writes exactly
/// [`PageSrc::len`] bytes at the page's offset, extending the file if they
/// reach past its end (as `pwrite` does): the page map decides how much of
/// a page is file data (its size, in bytes), and [`size`](StoreControl::size)
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
/// map.fsync().unwrap(); // written back, then fdatasync
/// assert_eq!(std::fs::read(&path).unwrap(), b"jello"); // length kept
/// # std::fs::remove_file(&path).unwrap();
/// ```
#[derive(Debug)]
pub struct FileStore {
    file: File,
    /// Logical length in bytes (writes of the partial last page stop here).
    len: parking_lot::RwLock<u64>,
    /// The largest length the file can have (see [`FileStore::new`]).
    max_size: u64,
}

/// At most this many pages per vectored system call (1 MiB): under Linux's
/// `IOV_MAX` (1024), and the iovec array (4 KiB) fits the stack.
const MAX_IOVECS: usize = 256;

/// Refuses a file not open for both reading and writing.
fn check_read_write(file: &File) -> io::Result<()> {
    // SAFETY: F_GETFL on a descriptor we own reads its status flags; no
    // memory is passed.
    let fl = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
    if fl < 0 {
        return Err(io::Error::last_os_error());
    }
    let mode = match fl & libc::O_ACCMODE {
        libc::O_RDWR => return Ok(()),
        libc::O_RDONLY => "read-only",
        libc::O_WRONLY => "write-only",
        _ => "not readable and writable",
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("FileStore needs a file open for reading and writing; this one is {mode}"),
    ))
}

/// The largest length `file` can have: the highest offset `lseek` accepts
/// (file systems refuse a seek past their largest file, as `pwrite` there
/// fails with `EFBIG`; a block device stops at its size), at most
/// `RLIMIT_FSIZE`'s soft limit. `i64::MAX` (off_t's) if it cannot seek.
fn probe_max_size(file: &File) -> u64 {
    let fd = file.as_raw_fd();
    // SAFETY: lseek on a descriptor we own moves its position only; no
    // memory is passed.
    let seek = |off: i64| unsafe { libc::lseek(fd, off, libc::SEEK_SET) } >= 0;
    // SAFETY: as the closure's: reads the position, passes no memory.
    let pos = unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) };
    let mut max = i64::MAX;
    if pos >= 0 && !seek(i64::MAX) {
        // Binary search: a seek to `lo` works, one past `hi` does not.
        let (mut lo, mut hi) = (0i64, i64::MAX - 1);
        while lo < hi {
            let mid = lo + (hi - lo + 1) / 2;
            if seek(mid) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        max = lo;
    }
    if pos >= 0 {
        seek(pos);
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass, which lives for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim) } == 0
        && lim.rlim_cur != libc::RLIM_INFINITY
    {
        max = max.min(i64::try_from(lim.rlim_cur).unwrap_or(i64::MAX));
    }
    max as u64
}

/// Runs `op` (a `pwritev` or `preadv` at an offset) until every byte of
/// `iov` is transferred, or it transfers nothing (end of file, for a read);
/// returns the bytes transferred. Short transfers and `EINTR` continue from
/// where they stopped.
fn transfer_all(
    mut off: u64,
    iov: &mut [libc::iovec],
    op: impl Fn(libc::off_t, &[libc::iovec]) -> isize,
) -> io::Result<usize> {
    let mut done = 0usize;
    let mut at = 0usize; // first iovec not yet transferred whole
    while at < iov.len() {
        let pos = libc::off_t::try_from(off)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset beyond off_t"))?;
        let n = op(pos, &iov[at..]);
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        let mut n = n as usize;
        done += n;
        off += n as u64;
        while n > 0 {
            let v = &mut iov[at];
            if n >= v.iov_len {
                n -= v.iov_len;
                at += 1;
            } else {
                // SAFETY: `n < iov_len`: still inside this iovec's buffer.
                v.iov_base = unsafe { v.iov_base.cast::<u8>().add(n) }.cast();
                v.iov_len -= n;
                n = 0;
            }
        }
    }
    Ok(done)
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

    /// Opens the file for reading and writing, creating it (empty) if it
    /// does not exist. An existing file keeps its bytes: unlike
    /// [`File::create`], nothing is truncated (a store is reopened far more
    /// often than it is made, and a truncating open would lose it).
    ///
    /// A file it creates survives a crash only once its directory entry is
    /// durable too: [`PageMap::fsync`](crate::PageMap::fsync) syncs the
    /// file's data and length, not its directory, so after creating a file
    /// sync the parent directory once (`File::open(dir)?.sync_all()`), as
    /// with any new file on Linux.
    pub fn open_or_create(path: impl AsRef<Path>) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Self::new(file)
    }

    /// Wraps an open file, which must be open for reading and writing: a
    /// read-only or write-only file is refused here
    /// ([`io::ErrorKind::InvalidInput`]) rather than failing with `EBADF`
    /// at its first load or write-back.
    ///
    /// It also learns the largest length the file can have
    /// ([`max_size`](StoreControl::max_size)): the file system's limit
    /// (16 TiB on ext4 with 4 KiB blocks), found by asking `lseek` where
    /// it stops (the position is restored; the store's own I/O is
    /// positional), and the process's `RLIMIT_FSIZE` if lower (a write past
    /// it would raise `SIGXFSZ`), as they are now.
    pub fn new(file: File) -> io::Result<Self> {
        check_read_write(&file)?;
        let len = file.metadata()?.len();
        let max_size = probe_max_size(&file);
        Ok(Self {
            file,
            len: parking_lot::RwLock::new(len),
            max_size,
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
        let r = unsafe { self.pwrite_all(off, src, len) };
        self.grew(&mut g, end, &r);
        r
    }

    /// Our view of the length after an extending write to `end` (`g`: the
    /// length, write-locked): `end` if it succeeded; else whatever the
    /// file's length now is, as the write may have extended it part of the
    /// way (a short write before the error), and a punch or a size check
    /// that believed the old length would miss those bytes.
    fn grew<T>(&self, g: &mut u64, end: u64, r: &io::Result<T>) {
        match r {
            Ok(_) => *g = (*g).max(end),
            Err(_) => {
                if let Ok(m) = self.file.metadata() {
                    *g = (*g).max(m.len());
                }
            }
        }
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

    /// Punches `[off, off + len)`, inside the file, with `fallocate`
    /// (keeping the size), or writes zeroes where the file system cannot.
    fn punch(&self, off: u64, len: u64) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let bad = || io::Error::new(io::ErrorKind::InvalidInput, "offset beyond off_t");
            let o = libc::off_t::try_from(off).map_err(|_| bad())?;
            let l = libc::off_t::try_from(len).map_err(|_| bad())?;
            loop {
                // SAFETY: a plain system call on our own open fd; no memory
                // is passed.
                let r = unsafe {
                    libc::fallocate(
                        self.file.as_raw_fd(),
                        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                        o,
                        l,
                    )
                };
                if r == 0 {
                    return Ok(());
                }
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // tmpfs before 3.5, some FUSE and network file systems:
                    // zeroes instead (the size is kept either way).
                    Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => break,
                    _ => return Err(e),
                }
            }
        }
        self.write_zeroes(off, len)
    }

    /// Writes `len` zero bytes at `off` (inside the file), 64 KiB per call.
    fn write_zeroes(&self, off: u64, len: u64) -> io::Result<()> {
        let zeroes = vec![0u8; 16 * PAGE_SIZE];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(zeroes.len() as u64) as usize;
            self.file.write_all_at(&zeroes[..n], off + done)?;
            done += n as u64;
        }
        Ok(())
    }
}

impl FileStore {
    /// Writes whole pages at `off` from their frames with `pwritev`, at
    /// most [`MAX_IOVECS`] per call.
    ///
    /// `libc::pwritev` on iovecs built from the frames' raw addresses, not
    /// rustix's or nix's `pwritev`: both take `IoSlice`s, which are `&[u8]`
    /// and would promise Rust that the bytes do not change during the call,
    /// and a frame being written back may change (see `pwrite_all`). The
    /// kernel reads them as a device's DMA would. No new crate: `libc` is
    /// already the single-page path's.
    fn pwritev_pages(&self, mut off: u64, srcs: &[PageSrc<'_>]) -> io::Result<()> {
        let fd = self.file.as_raw_fd();
        for chunk in srcs.chunks(MAX_IOVECS) {
            let mut iov = [libc::iovec {
                iov_base: core::ptr::null_mut(),
                iov_len: 0,
            }; MAX_IOVECS];
            for (v, src) in iov.iter_mut().zip(chunk) {
                v.iov_base = src.as_ptr().as_ptr().cast();
                // The page's valid bytes: only the extent's last page can
                // be short, so the iovecs cover one contiguous range.
                v.iov_len = src.len();
            }
            let want: usize = chunk.iter().map(PageSrc::len).sum();
            let n = transfer_all(off, &mut iov[..chunk.len()], |pos, v| {
                // SAFETY: every iovec names part of a frame the write-back
                // holds for this call (`PageSrc`'s borrow), valid for reads;
                // their changing meanwhile is allowed here.
                unsafe { libc::pwritev(fd, v.as_ptr(), v.len() as libc::c_int, pos) }
            })?;
            if n < want {
                return Err(io::Error::from(io::ErrorKind::WriteZero));
            }
            off += want as u64;
        }
        Ok(())
    }
}

impl BackingStore for FileStore {
    /// One `pread` (not the vectored path: a miss reads one page, and a
    /// 256-entry iovec array to clear, then `preadv`, cost it measurably).
    fn read_page(&self, index: u64, buf: &mut PageBuf) -> Result<(), StoreError> {
        let fd = self.file.as_raw_fd();
        let off = byte_offset(index)?;
        let mut iov = [libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: PAGE_SIZE,
        }];
        let n = transfer_all(off, &mut iov, |pos, v| {
            // SAFETY: the one iovec names (the rest of) `buf`, which we
            // borrow mutably for this call, valid for writes of its length.
            unsafe { libc::pread(fd, v[0].iov_base, v[0].iov_len, pos) }
        })?;
        // Past the end of the file: zeroes (the frame holds old bytes).
        buf[n.min(PAGE_SIZE)..].fill(0);
        Ok(())
    }

    /// One `preadv` per 256 pages, straight into the frames;
    /// bytes past the end of the file read as zeroes.
    fn read_pages(&self, first_index: u64, bufs: &mut [&mut PageBuf]) -> Result<(), StoreError> {
        let fd = self.file.as_raw_fd();
        let mut off = byte_offset(first_index)?;
        for chunk in bufs.chunks_mut(MAX_IOVECS) {
            let mut iov = [libc::iovec {
                iov_base: core::ptr::null_mut(),
                iov_len: 0,
            }; MAX_IOVECS];
            for (v, buf) in iov.iter_mut().zip(chunk.iter_mut()) {
                v.iov_base = buf.as_mut_ptr().cast();
                v.iov_len = PAGE_SIZE;
            }
            let n = transfer_all(off, &mut iov[..chunk.len()], |pos, v| {
                // SAFETY: every iovec names part of a buffer we borrow
                // mutably for this call, valid for writes.
                unsafe { libc::preadv(fd, v.as_ptr(), v.len() as libc::c_int, pos) }
            })?;
            // Past the end of the file: zeroes (the frames hold old bytes).
            for (i, buf) in chunk.iter_mut().enumerate() {
                let from = n.saturating_sub(i * PAGE_SIZE).min(PAGE_SIZE);
                buf[from..].fill(0);
            }
            off += (chunk.len() * PAGE_SIZE) as u64;
        }
        Ok(())
    }

    /// One `pwritev` per 256 pages, straight from the frames, of exactly
    /// each source's [`len`](PageSrc::len) bytes, extending the file if
    /// they reach past its end (as [`write_page`](BackingStore::write_page)).
    fn write_pages(&self, first_index: u64, srcs: &[PageSrc<'_>]) -> Result<(), StoreError> {
        let off = byte_offset(first_index)?;
        let bytes: u64 = srcs.iter().map(|s| s.len() as u64).sum();
        let end = off
            .checked_add(bytes)
            .ok_or(StoreError::new(StoreError::EINVAL))?;
        if end <= *self.len.read() {
            // Inside the file: the length does not change.
            self.pwritev_pages(off, srcs)?;
            return Ok(());
        }
        // Extending: under the write lock, as `write_at`.
        let mut g = self.len.write();
        let r = self.pwritev_pages(off, srcs);
        self.grew(&mut g, end, &r);
        Ok(r?)
    }

    fn write_page(&self, index: u64, src: PageSrc<'_>) -> Result<(), StoreError> {
        let off = byte_offset(index)?;
        // SAFETY: `src` names a frame's PAGE_SIZE bytes, valid for the call
        // (the write-back holds the page), and `len() <= PAGE_SIZE`; their
        // changing is allowed here.
        unsafe { self.write_at(off, src.as_ptr().as_ptr(), src.len())? };
        Ok(())
    }
}

impl StoreControl for FileStore {
    fn max_size(&self) -> u64 {
        self.max_size
    }

    /// `fdatasync` ([`File::sync_data`]): the data written so far and the
    /// file's length (which `fdatasync` flushes too, being needed to read
    /// the data back), not the other metadata (times) that `fsync` would.
    fn sync(&self) -> Result<(), StoreError> {
        self.file.sync_data()?;
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

    /// `fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)` of the part
    /// of the range inside the file (past its length bytes already read as
    /// zeroes, and the size must not change); zeroes written instead where
    /// the file system does not support it (`EOPNOTSUPP`).
    fn punch_hole(&self, offset: u64, len: u64) -> Result<(), StoreError> {
        // Read-locked: a write past the end (which takes it for writing)
        // does not move the length meanwhile.
        let cur = self.len.read();
        let end = offset.saturating_add(len).min(*cur);
        if offset < end {
            self.punch(offset, end - offset)?;
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
