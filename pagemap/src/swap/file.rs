//! [`FileSwap`]: a swap file, read and written with positional I/O.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::{Location, SwapStore};
use crate::error::StoreError;
use crate::PAGE_SIZE;

/// A swap file: slot `n` is the file's bytes `n * PAGE_SIZE .. (n + 1) *
/// PAGE_SIZE`, read and written with positional I/O (`pread` and `pwrite`
/// through [`FileExt`]), so calls from many threads need no lock of ours.
///
/// The file is as long as its slots from the start ([`FileSwap::create`]
/// sets it, sparse: a slot never written takes no disk space and reads as
/// zeroes), so a page-out never changes its length. A read past the end
/// of the file (a file someone shortened) reads zeroes.
/// [`discard`](SwapStore::discard) is the trait's default, nothing: the
/// slot's old page stays until it is written again (punching a hole would
/// give the space back, at the cost of a system call per freed slot).
///
/// ```
/// use pagemap::swap::{FileSwap, Location, SwapStore};
/// use pagemap::PAGE_SIZE;
///
/// // Unlinked at once: the space lives as long as the store.
/// let swap = FileSwap::temp(std::env::temp_dir(), 16)?; // 64 KiB
/// swap.page_out(Location::new(9), &[3; PAGE_SIZE])?;
/// let mut page = [0; PAGE_SIZE];
/// swap.page_in(Location::new(9), &mut page)?;
/// assert_eq!(page, [3; PAGE_SIZE]);
/// swap.page_in(Location::new(2), &mut page)?;
/// assert_eq!(page, [0; PAGE_SIZE]); // never written
/// assert_eq!((swap.reads(), swap.writes()), (2, 1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct FileSwap {
    file: File,
    slots: u32,
    reads: AtomicU64,
    writes: AtomicU64,
}

/// The bytes `slots` slots take (at most 2^44: no overflow).
fn bytes_of(slots: u32) -> u64 {
    u64::from(slots) * PAGE_SIZE as u64
}

impl FileSwap {
    /// Creates the file at `path` (truncating one that exists: a swap
    /// file's old contents mean nothing) and makes it `slots * PAGE_SIZE`
    /// bytes long, sparse, every slot reading as zeroes.
    ///
    /// # Errors
    /// What opening the file or setting its length returns (e.g. the
    /// directory does not exist, permission denied, no space).
    pub fn create(path: impl AsRef<Path>, slots: u32) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Self::with_file(file, slots)
    }

    /// Opens an existing swap file of `slots` slots, keeping its contents
    /// (what a previous store wrote reads back). A longer file is fine: the
    /// bytes past `slots * PAGE_SIZE` are left alone.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidInput`] if the file is shorter than `slots *
    /// PAGE_SIZE` bytes (nothing is changed); otherwise what opening it or
    /// reading its length returns (e.g. [`io::ErrorKind::NotFound`]).
    pub fn open(path: impl AsRef<Path>, slots: u32) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len();
        if len < bytes_of(slots) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "swap file is {len} bytes, shorter than its {slots} slots ({} bytes)",
                    bytes_of(slots)
                ),
            ));
        }
        Ok(Self::new(file, slots))
    }

    /// Creates a swap file of `slots` slots in `dir`, with a name no other
    /// file there has, and unlinks it at once: the space lives as long as
    /// the store (its handle), and nothing is left behind, even by a crash.
    /// For benchmarks and the CLI.
    ///
    /// # Errors
    /// What creating, sizing or unlinking the file returns (e.g. `dir`
    /// does not exist). If the unlink fails, the file is left in `dir`
    /// (under a `pagemap-swap-` name) and the error returned.
    pub fn temp(dir: impl AsRef<Path>, slots: u32) -> io::Result<Self> {
        // A name unique in this process (the counter) and among processes
        // (the pid); `create_new` refuses one that exists anyway (a file
        // left by an earlier process of the same pid), so try another.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = dir.as_ref();
        loop {
            let n = NEXT.fetch_add(1, Relaxed);
            let path = dir.join(format!("pagemap-swap-{}-{n}", std::process::id()));
            let file = match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            };
            // Unlinked before sizing: a failure below leaves nothing.
            std::fs::remove_file(&path)?;
            return Self::with_file(file, slots);
        }
    }

    /// `file` made `slots` slots long.
    fn with_file(file: File, slots: u32) -> io::Result<Self> {
        file.set_len(bytes_of(slots))?;
        Ok(Self::new(file, slots))
    }

    fn new(file: File, slots: u32) -> Self {
        Self {
            file,
            slots,
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        }
    }

    /// Successful [`page_in`](SwapStore::page_in)s so far (pages).
    pub fn reads(&self) -> u64 {
        self.reads.load(Relaxed)
    }

    /// Successful [`page_out`](SwapStore::page_out)s so far (pages).
    pub fn writes(&self) -> u64 {
        self.writes.load(Relaxed)
    }

    /// The byte offset of `loc`, if it is in range.
    fn offset(&self, loc: Location) -> Result<u64, StoreError> {
        if loc.get() < self.slots {
            Ok(bytes_of(loc.get()))
        } else {
            Err(StoreError::new(StoreError::EINVAL))
        }
    }
}

impl SwapStore for FileSwap {
    fn slots(&self) -> u32 {
        self.slots
    }

    /// One `pwrite` of the page (more if the kernel writes part of it).
    fn page_out(&self, loc: Location, src: &[u8; PAGE_SIZE]) -> Result<(), StoreError> {
        let off = self.offset(loc)?;
        self.file.write_all_at(src, off)?;
        self.writes.fetch_add(1, Relaxed);
        Ok(())
    }

    /// One `pread` of the page (more if the kernel reads part of it);
    /// bytes past the end of the file read as zeroes.
    fn page_in(&self, loc: Location, dst: &mut [u8; PAGE_SIZE]) -> Result<(), StoreError> {
        let off = self.offset(loc)?;
        // Not `read_exact_at`: it fails at the end of the file, and a
        // short file should read as zeroes, as a hole does.
        let mut done = 0;
        while done < PAGE_SIZE {
            match self.file.read_at(&mut dst[done..], off + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        dst[done..].fill(0);
        self.reads.fetch_add(1, Relaxed);
        Ok(())
    }
}

#[cfg(all(test, not(pagemap_loom)))]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::Arc;

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("pagemap-swaptest-{name}-{}", std::process::id()))
    }

    fn loc(n: u32) -> Location {
        Location::new(n)
    }

    fn read(s: &FileSwap, n: u32) -> [u8; PAGE_SIZE] {
        let mut b = [0xEE; PAGE_SIZE];
        s.page_in(loc(n), &mut b).unwrap();
        b
    }

    #[test]
    fn swap_file_round_trip_and_reopen() {
        let path = tmp("rt");
        std::fs::write(&path, vec![0xFF; 3 * PAGE_SIZE]).unwrap();
        let s = FileSwap::create(&path, 8).unwrap();
        assert_eq!(s.slots(), 8);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            8 * PAGE_SIZE as u64
        );
        assert_eq!(read(&s, 1), [0; PAGE_SIZE], "create truncates: zeroes");
        let mut page = [0u8; PAGE_SIZE];
        for (i, b) in page.iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        s.page_out(loc(7), &page).unwrap();
        s.page_out(loc(0), &[1; PAGE_SIZE]).unwrap();
        assert_eq!(read(&s, 7), page);
        assert_eq!((s.reads(), s.writes()), (2, 2));
        drop(s);

        let s = FileSwap::open(&path, 8).unwrap();
        assert_eq!(read(&s, 7), page, "reopen keeps contents");
        assert_eq!(read(&s, 0), [1; PAGE_SIZE]);
        assert_eq!(read(&s, 3), [0; PAGE_SIZE]);
        // Fewer slots than the file holds: fine.
        assert_eq!(read(&FileSwap::open(&path, 1).unwrap(), 0), [1; PAGE_SIZE]);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn swap_file_open_short_file_is_invalid_input() {
        let path = tmp("short");
        std::fs::write(&path, vec![2u8; 2 * PAGE_SIZE + 1]).unwrap();
        let e = FileSwap::open(&path, 3).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(std::fs::read(&path).unwrap(), vec![2u8; 2 * PAGE_SIZE + 1]);
        let e = FileSwap::open(tmp("missing"), 1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn swap_file_out_of_range_is_einval_and_changes_nothing() {
        let s = FileSwap::temp(std::env::temp_dir(), 2).unwrap();
        s.page_out(loc(1), &[5; PAGE_SIZE]).unwrap();
        for bad in [2, 3, u32::MAX] {
            let e = s.page_out(loc(bad), &[6; PAGE_SIZE]).unwrap_err();
            assert_eq!(e.code(), StoreError::EINVAL);
            let mut b = [0xAB; PAGE_SIZE];
            let e = s.page_in(loc(bad), &mut b).unwrap_err();
            assert_eq!(e.code(), StoreError::EINVAL);
            assert_eq!(b, [0xAB; PAGE_SIZE], "dst untouched");
            s.discard(loc(bad));
        }
        assert_eq!(s.file.metadata().unwrap().len(), 2 * PAGE_SIZE as u64);
        assert_eq!(read(&s, 1), [5; PAGE_SIZE]);
        assert_eq!((s.reads(), s.writes()), (1, 1));
    }

    #[test]
    fn swap_file_past_eof_reads_zeroes() {
        let s = FileSwap::temp(std::env::temp_dir(), 4).unwrap();
        s.page_out(loc(2), &[8; PAGE_SIZE]).unwrap();
        // Someone cut the file in the middle of slot 2.
        s.file.set_len(2 * PAGE_SIZE as u64 + 100).unwrap();
        let b = read(&s, 2);
        assert_eq!(&b[..100], &[8; 100]);
        assert!(b[100..].iter().all(|&x| x == 0));
        assert_eq!(read(&s, 3), [0; PAGE_SIZE]);
    }

    #[test]
    fn swap_file_temp_is_unlinked_and_unique() {
        let dir = tmp("tempdir");
        std::fs::create_dir_all(&dir).unwrap();
        let a = FileSwap::temp(&dir, 2).unwrap();
        let b = FileSwap::temp(&dir, 2).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "unlinked");
        a.page_out(loc(0), &[1; PAGE_SIZE]).unwrap();
        b.page_out(loc(0), &[2; PAGE_SIZE]).unwrap();
        assert_eq!(read(&a, 0), [1; PAGE_SIZE], "two files, not one");
        assert_eq!(read(&b, 0), [2; PAGE_SIZE]);
        std::fs::remove_dir(&dir).unwrap();
        assert!(FileSwap::temp(&dir, 1).is_err(), "no such directory");
    }

    #[test]
    fn swap_file_concurrent_threads_on_own_slots() {
        const THREADS: u32 = 4;
        const PER: u32 = 8;
        let s = Arc::new(FileSwap::temp(std::env::temp_dir(), THREADS * PER).unwrap());
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut b = [0u8; PAGE_SIZE];
                    for r in 0..10u32 {
                        for i in 0..PER {
                            let n = t * PER + i;
                            let byte = (n * 3 + r) as u8;
                            s.page_out(loc(n), &[byte; PAGE_SIZE]).unwrap();
                            s.page_in(loc(n), &mut b).unwrap();
                            assert_eq!(b, [byte; PAGE_SIZE]);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let ops = u64::from(THREADS * PER * 10);
        assert_eq!((s.reads(), s.writes()), (ops, ops));
    }
}
