//! `file_ops`: the byte API of a `PageMap` over a real file (a
//! [`FileStore`] behind a wrapper that can fail writes), against a
//! `Vec<u8>` model of the file.
//!
//! Each run gets its own temporary file (in `$FILE_OPS_DIR`, else
//! `/dev/shm` when it exists, so that the many fsyncs of a fuzzing run do
//! not wait for a disk, else the system's temporary directory), removed at
//! the end. The pool is small (4 to 16 frames) and the file up to about 20
//! pages, so pages leave the cache and are read back; when a load finds the
//! pool exhausted, the runner frees unused pages and retries, as a user of
//! the byte API would.
//!
//! Checked after every op: the map's `size()` (and `end()`) equal the
//! model's length, and, when no page is dirty, the file on disk equals the
//! model byte for byte (a clean cache must have written everything). Each
//! read equals the model (short at the end, 0 past it). After an `fsync`
//! or a `close` that returns `Ok` (or fails only to report an earlier
//! write error) the file on disk equals the model. While writes fail, an
//! fsync that met dirty pages fails and keeps them dirty; once writes
//! succeed again the next fsync writes them. A `close` that loses pages
//! (writes failing) must have written every other page; the model then
//! becomes what is on disk, which is what the reopened map must read.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use pagemap::{
    BackingStore, Error, FileStore, FramePool, PageBuf, PageMap, PageSrc, StoreControl, StoreError,
};

use crate::file_ops::{FileInput, FileOp, MAX_POS};
use crate::{pools, Stats, PAGE_SIZE};

/// Runs fuzzer bytes. Panics on any divergence from the model. No known
/// bug to step around (a punch over an extending write's unwritten pages
/// was one, fixed: `punch.past_store_length`), so the strict run is this.
pub fn run(data: &[u8]) -> Stats {
    run_input(&FileInput::decode(data))
}

/// As [`run`]: the target has no known bug to step around.
pub fn run_strict(data: &[u8]) -> Stats {
    run(data)
}

/// A [`FileStore`] whose writes fail with EIO while `fail` is set.
pub struct FlakyFile {
    inner: FileStore,
    fail: AtomicBool,
}

impl FlakyFile {
    fn failing(&self) -> bool {
        // Relaxed: the runner sets it between ops, on the thread that then
        // calls the page map, which calls the store on that thread too.
        self.fail.load(Ordering::Relaxed)
    }

    fn eio() -> StoreError {
        StoreError::new(StoreError::EIO)
    }
}

impl BackingStore for FlakyFile {
    fn read_page(&self, index: u64, buf: &mut PageBuf) -> Result<(), StoreError> {
        self.inner.read_page(index, buf)
    }

    fn write_page(&self, index: u64, src: PageSrc<'_>) -> Result<(), StoreError> {
        if self.failing() {
            return Err(Self::eio());
        }
        self.inner.write_page(index, src)
    }

    fn write_pages(&self, first_index: u64, srcs: &[PageSrc<'_>]) -> Result<(), StoreError> {
        if self.failing() {
            return Err(Self::eio());
        }
        self.inner.write_pages(first_index, srcs)
    }

    fn read_pages(&self, first_index: u64, bufs: &mut [&mut PageBuf]) -> Result<(), StoreError> {
        self.inner.read_pages(first_index, bufs)
    }
}

impl StoreControl for FlakyFile {
    fn max_size(&self) -> u64 {
        self.inner.max_size()
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync()
    }

    fn punch_hole(&self, offset: u64, len: u64) -> Result<(), StoreError> {
        self.inner.punch_hole(offset, len)
    }

    fn size(&self) -> Result<Option<u64>, StoreError> {
        self.inner.size()
    }

    fn set_size(&self, bytes: u64) -> Result<(), StoreError> {
        self.inner.set_size(bytes)
    }
}

/// A store over the file at `path`, failing writes if `failing`.
fn open_store(path: &std::path::Path, failing: bool) -> Arc<FlakyFile> {
    let inner = FileStore::open(path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    Arc::new(FlakyFile {
        inner,
        fail: AtomicBool::new(failing),
    })
}

/// The run's file, removed when the run ends (or panics).
struct TempFile(PathBuf);

impl TempFile {
    fn new(contents: &[u8]) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // Relaxed: only uniqueness matters.
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("pagemap-file-ops-{}-{n}", std::process::id());
        let dirs: Vec<PathBuf> = match std::env::var_os("FILE_OPS_DIR") {
            Some(d) => vec![d.into()],
            None => vec!["/dev/shm".into(), std::env::temp_dir()],
        };
        for dir in dirs {
            let path = dir.join(&name);
            if std::fs::write(&path, contents).is_ok() {
                return TempFile(path);
            }
        }
        panic!("file_ops: cannot create a temporary file (set FILE_OPS_DIR)");
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What a run works on, and the model.
struct World {
    file: TempFile,
    pool: Arc<FramePool>,
    frames: usize,
    /// The map over the file; `None` only inside a reopen.
    map: Option<Arc<PageMap>>,
    /// The current store (the map's), for its failure switch.
    store: Arc<FlakyFile>,
    /// Whether writes fail now.
    failing: bool,
    /// The file as the byte API must show it.
    model: Vec<u8>,
    /// A write error was reported by some op since the last fsync (the map
    /// may keep one for its next fsync to report).
    error_since_fsync: bool,
    stats: Stats,
    step: usize,
    op: Option<FileOp>,
}

/// `pattern(byte, len)`: `byte, byte + 1, ...`, repeating every 251 bytes
/// (a prime, so a copy landing a page away shows).
fn pattern(byte: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| byte.wrapping_add((i % 251) as u8))
        .collect()
}

/// The first index where `a` and `b` differ (or the shorter length).
fn first_diff(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

impl World {
    fn map(&self) -> &PageMap {
        self.map.as_ref().expect("a map is open")
    }

    #[track_caller]
    fn diverged(&self, what: String) -> ! {
        panic!(
            "DIVERGENCE at op #{} ({:?}): {what}\n  file size (model) {}",
            self.step,
            self.op,
            self.model.len()
        );
    }

    fn disk(&self) -> Vec<u8> {
        std::fs::read(&self.file.0).expect("reading the file back")
    }

    /// The file on disk is the model, byte for byte.
    fn disk_is_model(&self, when: &str) {
        let disk = self.disk();
        if disk != self.model {
            let at = first_diff(&disk, &self.model);
            self.diverged(format!(
                "{when}: the file on disk ({} bytes) differs from the model ({} bytes) \
                 at byte {at}: disk {:?}, model {:?}",
                disk.len(),
                self.model.len(),
                disk.get(at),
                self.model.get(at)
            ));
        }
    }

    /// Write errors an op reported: only while writes fail, and each a
    /// write error; remembered for the next fsync.
    fn write_errors(&mut self, errors: &[Error], dropped: u64, what: &'static str) {
        if errors.is_empty() && dropped == 0 {
            return;
        }
        if !self.failing {
            self.diverged(format!(
                "{what}: write errors while writes succeed: {errors:?}"
            ));
        }
        if let Some(e) = errors.iter().find(|e| !matches!(e, Error::Write { .. })) {
            self.diverged(format!("{what}: not a write error: {e:?}"));
        }
        self.error_since_fsync = true;
        self.stats.hit(what);
    }

    /// Frees unused pages (the user's answer to an exhausted pool).
    fn evict(&mut self) {
        let r = self.map().free_unused();
        if r.freed > 0 {
            self.stats.hit("free_unused.freed");
        }
        if r.written > 0 {
            self.stats.hit("free_unused.written");
        }
        self.write_errors(&r.errors, r.errors_dropped, "free_unused.write_error");
    }

    /// `read_at` from `off` into `buf`, freeing pages when the pool runs
    /// out: the bytes read, and whether the pool stayed exhausted.
    fn read(&mut self, off: u64, buf: &mut [u8]) -> (usize, bool) {
        let size = self.model.len() as u64;
        let (mut done, mut tries) = (0usize, 0);
        loop {
            let at = off + done as u64;
            match self.map().read_at(at, &mut buf[done..]) {
                Ok(n) => {
                    if n > buf.len() - done {
                        self.diverged(format!("read_at({at}) returned {n} > the buffer"));
                    }
                    done += n;
                    let eof = off + done as u64 >= size;
                    if done == buf.len() || eof {
                        return (done, false);
                    }
                    if n == 0 {
                        self.diverged(format!("read_at({at}) returned 0 below the size {size}"));
                    }
                    // Short below the size: a page after the first could
                    // not be loaded, so it stops at that page's start.
                    if !(off + done as u64).is_multiple_of(PAGE_SIZE as u64) {
                        self.diverged(format!("read_at({at}) stopped mid-page at {n} bytes"));
                    }
                    self.stats.hit("read.short");
                }
                Err(Error::PoolExhausted { .. }) => self.stats.hit("read.pool_exhausted"),
                Err(e) => self.diverged(format!("read_at({at}, {}) failed: {e:?}", buf.len())),
            }
            tries += 1;
            if tries > 2 {
                return (done, true);
            }
            self.evict();
        }
    }

    /// `write_at(off, data)`, freeing pages when the pool runs out: the
    /// bytes written (a prefix of `data`), and whether the pool stayed
    /// exhausted.
    fn write(&mut self, off: u64, data: &[u8]) -> (usize, bool) {
        let (mut done, mut tries) = (0usize, 0);
        while done < data.len() {
            let at = off + done as u64;
            match self.map().write_at(at, &data[done..]) {
                Ok(n) => {
                    if n == 0 || n > data.len() - done {
                        self.diverged(format!("write_at({at}) wrote {n} bytes"));
                    }
                    done += n;
                    if done < data.len() {
                        // Short: a page after the first could not be
                        // loaded; the write stops at that page's start.
                        if !(off + done as u64).is_multiple_of(PAGE_SIZE as u64) {
                            self.diverged(format!("write_at({at}) stopped mid-page"));
                        }
                        self.stats.hit("write.short");
                    }
                }
                Err(Error::PoolExhausted { .. }) => self.stats.hit("write.pool_exhausted"),
                Err(e) => self.diverged(format!(
                    "write_at({at}, {}) failed: {e:?}",
                    data.len() - done
                )),
            }
            if done == data.len() {
                break;
            }
            tries += 1;
            if tries > 2 {
                return (done, true);
            }
            self.evict();
        }
        (done, false)
    }

    /// Reads the whole file (and a page past it) through the cache.
    fn check_all(&mut self) {
        let size = self.model.len();
        let chunk = 3 * PAGE_SIZE;
        let mut off = 0usize;
        while off <= size {
            let mut buf = vec![0xa5u8; chunk];
            let (n, stuck) = self.read(off as u64, &mut buf);
            let want = size.saturating_sub(off).min(chunk);
            if stuck {
                if !self.failing {
                    self.diverged(format!("check: the pool stays exhausted at {off}"));
                }
                self.stats.hit("check.stuck");
                return;
            }
            if n != want || buf[..n] != self.model[off..off + n] {
                let at = off + first_diff(&buf[..n], &self.model[off..off + want]);
                self.diverged(format!(
                    "check: read_at({off}) returned {n} bytes (want {want}); first difference \
                     at byte {at}: read {:?}, model {:?}",
                    buf.get(at - off),
                    self.model.get(at)
                ));
            }
            off += chunk;
        }
    }

    /// After every op: the size, and a clean cache means the disk is the
    /// file.
    fn cheap_checks(&mut self) {
        let size = self.model.len() as u64;
        let map = self.map();
        let (got, end) = (map.size(), map.end());
        if got != size || end != size.div_ceil(PAGE_SIZE as u64) {
            self.diverged(format!("size {got} (end {end} pages), model {size}"));
        }
        if self.map().dirty_indices(..).is_empty() {
            self.disk_is_model("no page is dirty");
            self.stats.hit("clean.disk_is_model");
        }
    }

    fn set_failing(&mut self, on: bool) {
        self.failing = on;
        // Relaxed: see `FlakyFile::failing`.
        self.store.fail.store(on, Ordering::Relaxed);
    }

    /// Closes (or drops) the map and opens a new one over the same file.
    fn reopen(&mut self, close: bool) {
        let map = self.map.take().expect("a map is open");
        if close || self.failing {
            self.stats.hit("reopen.close");
            match map.close() {
                Ok(()) => {
                    self.disk_is_model("after close() returned Ok");
                    self.stats.hit("close.ok");
                }
                Err(e) if e.lost.is_empty() && e.sync.is_none() => {
                    // Only an earlier write error, reported once.
                    if e.earlier.is_none() || !self.error_since_fsync {
                        self.diverged(format!("close failed with no error to report: {e}"));
                    }
                    self.disk_is_model("after close() reported an earlier error");
                    self.stats.hit("close.earlier");
                }
                Err(e) => {
                    if !self.failing || e.sync.is_some() {
                        self.diverged(format!("close failed while writes succeed: {e}"));
                    }
                    // Every page not lost is on disk; the lost ones are
                    // what the file will read from now on.
                    let lost: BTreeSet<u64> = e.lost.iter().map(|(i, _)| *i).collect();
                    let disk = self.disk();
                    if disk.len() > self.model.len() {
                        self.diverged(format!(
                            "after a failed close the file is {} bytes, the model {}",
                            disk.len(),
                            self.model.len()
                        ));
                    }
                    for (i, &b) in self.model.iter().enumerate() {
                        let page = (i / PAGE_SIZE) as u64;
                        if !lost.contains(&page) && disk.get(i).copied().unwrap_or(0) != b {
                            self.diverged(format!(
                                "close lost {lost:?}, but byte {i} (page {page}) is {:?} on \
                                 disk, {b} in the model",
                                disk.get(i)
                            ));
                        }
                    }
                    self.model = disk;
                    self.stats.hit("close.lost");
                }
            }
        } else {
            // A drop writes back (no sync): with writes succeeding, all of it.
            drop(map);
            self.disk_is_model("after the map was dropped");
            self.stats.hit("reopen.drop");
        }
        self.error_since_fsync = false;
        if self.pool.free_frames() != self.frames {
            self.diverged(format!(
                "{} of {} frames free after closing the map",
                self.pool.free_frames(),
                self.frames
            ));
        }
        self.store = open_store(&self.file.0, self.failing);
        let map = PageMap::try_new(self.pool.clone(), self.store.clone())
            .unwrap_or_else(|e| panic!("reopening: {e}"));
        self.map = Some(map);
    }

    fn fsync(&mut self) {
        match self.map().fsync() {
            Ok(_) => {
                self.disk_is_model("after fsync() returned Ok");
                self.stats.hit("fsync.ok");
            }
            Err(e) => {
                if e.sync.is_some() {
                    self.diverged(format!("the store's sync failed: {e}"));
                }
                if e.report.errors.is_empty() && e.report.errors_dropped == 0 {
                    // Every page written: only an earlier error to report,
                    // once.
                    if e.earlier.is_none() || !self.error_since_fsync {
                        self.diverged(format!("fsync failed with no error to report: {e}"));
                    }
                    self.disk_is_model("after an fsync that reported an earlier error");
                    self.stats.hit("fsync.earlier");
                } else {
                    if !self.failing {
                        self.diverged(format!("fsync failed while writes succeed: {e}"));
                    }
                    let dirty = self.map().dirty_indices(..);
                    for err in &e.report.errors {
                        match err {
                            Error::Write { index, .. } if dirty.contains(index) => {}
                            _ => self.diverged(format!(
                                "fsync error {err:?}: not a write error of a page kept dirty \
                                 ({dirty:?})"
                            )),
                        }
                    }
                    self.stats.hit("fsync.write_error");
                }
            }
        }
        self.error_since_fsync = false;
    }

    fn op(&mut self, op: FileOp) {
        let size = self.model.len() as u64;
        match op {
            FileOp::Write { at, len, byte } => {
                let off = at.get(size);
                let data = pattern(byte, len.get());
                if data.is_empty() {
                    match self.map().write_at(off, &data) {
                        Ok(0) => {}
                        r => self.diverged(format!("an empty write_at({off}) returned {r:?}")),
                    }
                    return;
                }
                let (n, stuck) = self.write(off, &data);
                if stuck {
                    if !self.failing {
                        self.diverged("write_at: the pool stays exhausted".into());
                    }
                    self.stats.hit("write.stuck");
                }
                if n > 0 {
                    let (off, end) = (off as usize, off as usize + n);
                    if off > self.model.len() {
                        self.stats.hit("write.hole");
                    }
                    if end > self.model.len() {
                        self.model.resize(end, 0);
                        self.stats.hit("write.extend");
                    }
                    self.model[off..end].copy_from_slice(&data[..n]);
                }
            }
            FileOp::Read { at, len } => {
                let off = at.get(size);
                let len = len.get();
                let mut buf = vec![0xa5u8; len];
                let (n, stuck) = self.read(off, &mut buf);
                let want = (size.saturating_sub(off) as usize).min(len);
                if stuck {
                    if !self.failing {
                        self.diverged("read_at: the pool stays exhausted".into());
                    }
                    self.stats.hit("read.stuck");
                } else if n != want {
                    self.diverged(format!("read_at({off}, {len}) returned {n}, want {want}"));
                }
                let off = off as usize;
                if n > 0 && buf[..n] != self.model[off..off + n] {
                    let at = first_diff(&buf[..n], &self.model[off..off + n]);
                    self.diverged(format!(
                        "read_at({off}, {len}): byte {} is {}, the model's {}",
                        off + at,
                        buf[at],
                        self.model[off + at]
                    ));
                }
                if buf[n..].iter().any(|&b| b != 0xa5) {
                    self.diverged(format!(
                        "read_at({off}, {len}) wrote past the {n} it returned"
                    ));
                }
                self.stats.hit(match (want, n < len) {
                    (0, _) => "read.past_end",
                    (_, true) => "read.short_at_end",
                    _ => "read.full",
                });
            }
            FileOp::SetSize(at) => {
                let bytes = at.get(size);
                match self.map().set_size(bytes) {
                    Ok(r) => self.write_errors(&r.errors, r.errors_dropped, "set_size.write_error"),
                    Err(e) => self.diverged(format!("set_size({bytes}) failed: {e:?}")),
                }
                self.stats.hit(match bytes.cmp(&size) {
                    std::cmp::Ordering::Less => "set_size.shrink",
                    std::cmp::Ordering::Equal => "set_size.same",
                    std::cmp::Ordering::Greater => "set_size.extend",
                });
                if bytes % PAGE_SIZE as u64 != 0 {
                    self.stats.hit("set_size.partial_page");
                }
                self.model.resize(bytes as usize, 0);
            }
            FileOp::Writeback(pages) => {
                let (first, last) = pages.bounds();
                let r = self.map().writeback(first..=last);
                if r.written > 0 {
                    self.stats.hit("writeback.written");
                }
                self.write_errors(&r.errors, r.errors_dropped, "writeback.write_error");
                if !self.failing && !self.map().dirty_indices(first..=last).is_empty() {
                    self.diverged("writeback left dirty pages while writes succeed".into());
                }
            }
            FileOp::Fsync => self.fsync(),
            FileOp::FreeUnused => self.evict(),
            FileOp::Punch { at, len } => {
                let off = at.get(size);
                let len = len.get() as u64;
                let stored = std::fs::metadata(&self.file.0).map_or(0, |m| m.len());
                if off.saturating_add(len).min(size) > stored {
                    // Over pages past the store's length (an extending
                    // write_at not yet written back): once a bug (the file
                    // stayed short of the size after fsync), now the case
                    // that fsync's `persist_size` covers.
                    self.stats.hit("punch.past_store_length");
                }
                match self.map().punch_hole(off, len) {
                    Ok(r) => self.write_errors(&r.errors, r.errors_dropped, "punch.write_error"),
                    Err(e) => self.diverged(format!("punch_hole({off}, {len}) failed: {e:?}")),
                }
                let end = (off + len).min(size);
                if off < end {
                    self.model[off as usize..end as usize].fill(0);
                    self.stats.hit("punch.inside");
                } else {
                    self.stats.hit("punch.past_end");
                }
            }
            FileOp::Reopen { close } => self.reopen(close),
            FileOp::FailWrites(on) => {
                self.set_failing(on);
                self.stats.hit(if on {
                    "fail_writes.on"
                } else {
                    "fail_writes.off"
                });
            }
            FileOp::Check => self.check_all(),
        }
    }
}

/// Runs a decoded input. Panics on any divergence from the model.
pub fn run_input(input: &FileInput) -> Stats {
    let initial = pattern(0x3c, input.initial as usize);
    let file = TempFile::new(&initial);
    let pool = pools::pool(input.frames);
    let store = open_store(&file.0, false);
    let map = PageMap::try_new(pool.clone(), store.clone()).expect("opening the map");
    let mut w = World {
        file,
        pool,
        frames: input.frames,
        map: Some(map),
        store,
        failing: false,
        model: initial,
        error_since_fsync: false,
        stats: Stats::default(),
        step: 0,
        op: None,
    };
    debug_assert!(w.model.len() as u64 <= MAX_POS);
    for (step, &op) in input.ops.iter().enumerate() {
        w.step = step;
        w.op = Some(op);
        w.stats.hit(op.name());
        w.op(op);
        w.cheap_checks();
    }
    // The end: writes succeed, close, reopen and read it all, close again.
    w.step = input.ops.len();
    w.op = None;
    w.set_failing(false);
    w.reopen(true);
    w.check_all();
    w.cheap_checks();
    let map = w.map.take().expect("a map is open");
    if let Err(e) = map.close() {
        w.diverged(format!("the last close failed: {e}"));
    }
    w.disk_is_model("at the end");
    w.stats.hit("finished");
    w.stats
}
