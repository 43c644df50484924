//! Fixtures for the removal benchmarks (issue 4): removing mapped pages
//! with one shootdown per address space against one per page per mapping,
//! writeback against raw `pwrite`, and lookups while a remover runs.
//!
//! Every benchmark re-establishes its state outside the timed part
//! (`iter_custom` timing only the operation measured), and checks what it
//! measures: removal counts every page removed and the shootdowns issued,
//! writeback the pages written.

use std::fs::File;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pagemap::{Batching, FileStore, FramePool, PageMap, RemoveReport, WritebackReport, PAGE_SIZE};
use vmr::{AddressSpace, Machine, MapFlags, MapRequest, Prot};

use crate::{uniform_stream, ZeroStore};

/// Bytes per page.
pub const PAGE: u64 = PAGE_SIZE as u64;
/// Simulated CPUs of the removal machine: region `r` is faulted in by CPU
/// `r % CPUS`, so a space with several regions is cached by several CPUs
/// and its shootdown interrupts each of them.
pub const CPUS: usize = 4;

/// The directory of the benchmarks' files: `$VMR_BENCH_DIR`, else the temp
/// dir (it should be a disk file system, ext4 here, not tmpfs).
pub fn bench_dir() -> PathBuf {
    std::env::var_os("VMR_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

// ---- removal of mapped pages ----------------------------------------------

/// A file of `pages` cached pages mapped whole, shared and writable, by
/// `regions` regions spread round-robin over `spaces` address spaces of a
/// [`CPUS`]-CPU machine.
pub struct MappedFile {
    /// The machine.
    pub machine: Arc<Machine>,
    /// The file.
    pub map: Arc<PageMap>,
    /// The address spaces.
    pub spaces: Vec<Arc<AddressSpace>>,
    /// Each region: (its space's position in `spaces`, base address).
    pub regions: Vec<(usize, u64)>,
    /// Pages of the file (and of each region).
    pub pages: u64,
}

impl MappedFile {
    /// The file, mapped; nothing loaded yet (see [`populate`](Self::populate)).
    pub fn new(pages: u64, regions: usize, spaces: usize) -> Self {
        assert!(spaces >= 1 && regions >= spaces, "a region in every space");
        let pool = Arc::new(FramePool::new(pages as usize + 64).expect("frame pool"));
        let map = PageMap::new(pool.clone(), Arc::new(ZeroStore));
        let machine = Machine::new(pool, CPUS);
        let spaces: Vec<_> = (0..spaces)
            .map(|_| AddressSpace::new(machine.clone()))
            .collect();
        let regions = (0..regions)
            .map(|r| {
                let s = r % spaces.len();
                let req = MapRequest::new(map.clone(), pages * PAGE, Prot::RW, MapFlags::SHARED);
                (s, spaces[s].mmap(req).expect("mmap"))
            })
            .collect();
        Self {
            machine,
            map,
            spaces,
            regions,
            pages,
        }
    }

    /// Loads every page, then reads a byte of every page through every
    /// region (region `r` on CPU `r % CPUS`): every PTE is present.
    pub fn populate(&self) {
        for i in 0..self.pages {
            drop(self.map.load(i).expect("load"));
        }
        let mut b = [0u8; 1];
        for (r, &(s, va)) in self.regions.iter().enumerate() {
            let cpu = self.machine.cpu(r % CPUS);
            for i in 0..self.pages {
                cpu.read(&self.spaces[s], va + i * PAGE, &mut b)
                    .expect("read");
            }
        }
    }

    /// Shootdowns a removal of the whole file must issue with `batching`:
    /// one per address space, or one per page per region.
    pub fn expected_shootdowns(&self, batching: Batching) -> u64 {
        match batching {
            Batching::PerSpace => self.spaces.len() as u64,
            Batching::PerPage => self.pages * self.regions.len() as u64,
        }
    }

    /// Checks a removal of the whole populated file.
    pub fn check(&self, r: &RemoveReport, batching: Batching) {
        assert!(r.errors.is_empty(), "removal errors: {:?}", r.errors);
        assert_eq!(
            (r.removed, r.referenced, r.pinned, r.raced, r.written),
            (self.pages, 0, 0, 0, 0),
            "every (clean, unused) page removed: {r:?}"
        );
        assert_eq!(
            r.shootdowns,
            self.expected_shootdowns(batching),
            "{batching:?} shootdowns, {} regions in {} spaces, {} pages",
            self.regions.len(),
            self.spaces.len(),
            self.pages
        );
        assert_eq!(self.map.nr_pages(), 0);
    }

    /// `iters` times: populate (untimed), remove the whole file with
    /// `batching` (timed), check. Returns the time of the removals and
    /// adds their shootdowns to `shootdowns`.
    pub fn time_removals(
        &self,
        batching: Batching,
        iters: u64,
        shootdowns: &AtomicU64,
    ) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            self.populate();
            let t = Instant::now();
            let r = self.map.remove_with(0..self.pages, batching);
            total += t.elapsed();
            self.check(&r, batching);
            shootdowns.fetch_add(r.shootdowns, Ordering::Relaxed);
        }
        total
    }
}

// ---- writeback vs raw pwrite ----------------------------------------------

/// A temp file of `pages` zero pages (written, so its blocks are allocated),
/// removed on drop.
pub struct TempFile {
    /// Its path.
    pub path: PathBuf,
    /// The file, open for reading and writing.
    pub file: File,
}

impl TempFile {
    /// Creates `dir/removal-bench-<pid>-<name>` with `pages` zero pages.
    pub fn new(dir: &Path, name: &str, pages: u64) -> std::io::Result<Self> {
        let path = dir.join(format!("removal-bench-{}-{name}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        let zeros = vec![0u8; 64 * PAGE_SIZE];
        let mut off = 0;
        while off < pages * PAGE {
            let n = (pages * PAGE - off).min(zeros.len() as u64) as usize;
            file.write_all_at(&zeros[..n], off)?;
            off += n as u64;
        }
        Ok(Self { path, file })
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The baseline: the same pages written with one 4 KiB `pwrite` each
/// (`write_all_at`) from a user buffer, no `fsync` (nor does writeback).
pub struct RawWriter {
    file: TempFile,
    buf: Vec<u8>,
    pages: u64,
}

impl RawWriter {
    /// A file of `pages` pages in `dir` and a buffer of as many.
    pub fn new(dir: &Path, pages: u64) -> Self {
        let file = TempFile::new(dir, &format!("raw-{pages}"), pages).expect("raw file");
        Self {
            file,
            buf: vec![0; (pages * PAGE) as usize],
            pages,
        }
    }

    /// "Dirties" the buffer (untimed): a new byte at the start of each page.
    pub fn dirty(&mut self, gen: u8) {
        for p in self.buf.chunks_mut(PAGE_SIZE) {
            p[0] = gen;
        }
    }

    /// Writes every page, one `pwrite` each.
    pub fn write(&self) {
        for i in 0..self.pages {
            let off = (i * PAGE) as usize;
            self.file
                .file
                .write_all_at(&self.buf[off..off + PAGE_SIZE], i * PAGE)
                .expect("pwrite");
        }
    }
}

/// A page map over a [`FileStore`] on a temp file of `pages` pages, every
/// page cached; if `mapped`, also mapped whole (shared, writable) into an
/// address space of a 2-CPU machine, so that pages are dirtied by CPU
/// writes and writeback must harvest and clean PTEs first.
pub struct WritebackFile {
    /// The page map.
    pub map: Arc<PageMap>,
    /// Pages.
    pub pages: u64,
    /// The machine and space of the mapped variant.
    mapping: Option<(Arc<Machine>, Arc<AddressSpace>, u64)>,
    _file: TempFile,
}

impl WritebackFile {
    /// The file in `dir`, every page loaded.
    pub fn new(dir: &Path, pages: u64, mapped: bool) -> Self {
        let name = format!("pagemap-{pages}{}", if mapped { "-mapped" } else { "" });
        let file = TempFile::new(dir, &name, pages).expect("page map file");
        let store = FileStore::open(&file.path).expect("file store");
        let pool = Arc::new(FramePool::new(pages as usize + 16).expect("frame pool"));
        let map = PageMap::new(pool.clone(), Arc::new(store));
        for i in 0..pages {
            drop(map.load(i).expect("load"));
        }
        let mapping = mapped.then(|| {
            let machine = Machine::new(pool, 2);
            let space = AddressSpace::new(machine.clone());
            let req = MapRequest::new(map.clone(), pages * PAGE, Prot::RW, MapFlags::SHARED);
            let va = space.mmap(req).expect("mmap");
            (machine, space, va)
        });
        Self {
            map,
            pages,
            mapping,
            _file: file,
        }
    }

    /// Whether the pages are dirtied through a mapping.
    pub fn is_mapped(&self) -> bool {
        self.mapping.is_some()
    }

    /// Dirties every page (untimed): a CPU write of one byte through the
    /// mapping (the write faults: writeback left the PTE read-only), or a
    /// [`PageRef::write`](pagemap::PageRef::write) if unmapped.
    pub fn dirty(&self, gen: u8) {
        match &self.mapping {
            Some((machine, space, va)) => {
                let cpu = machine.cpu(0);
                for i in 0..self.pages {
                    cpu.write(space, va + i * PAGE, &[gen]).expect("cpu write");
                }
            }
            None => {
                for i in 0..self.pages {
                    let page = self.map.find(i).expect("find").expect("resident");
                    page.write(0, &[gen]).expect("write");
                }
            }
        }
    }

    /// Writes back the whole file and checks every page was written (and,
    /// mapped, harvested from the PTEs with one shootdown).
    pub fn writeback(&self) -> WritebackReport {
        let r = self.map.writeback(0..self.pages);
        self.check(&r);
        r
    }

    /// Checks a writeback of the whole, wholly dirty, file.
    pub fn check(&self, r: &WritebackReport) {
        assert!(r.errors.is_empty(), "writeback errors: {:?}", r.errors);
        assert_eq!(r.written, self.pages, "every page written: {r:?}");
        if self.is_mapped() {
            assert_eq!(r.shootdowns, 1, "one shootdown for the one space: {r:?}");
        } else {
            assert_eq!((r.shootdowns, r.harvested), (0, 0), "{r:?}");
        }
    }
}

// ---- lookups while a remover runs -----------------------------------------

/// Resident pages of the lookup benchmark.
pub const LOOKUP_PAGES: u64 = 1 << 16;
/// Pages the remover removes and reloads per round.
pub const REMOVE_SLICE: u64 = 512;

/// What runs on the second thread while the lookups are timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Background {
    /// Nothing: the lookup thread alone.
    None,
    /// Removes `REMOVE_SLICE` pages of the looked-up map, reloads them,
    /// moves to the next slice, round and round.
    RemoverSameMap,
    /// The same loop on another map (a control: the cost of sharing the
    /// machine's 2 cores and memory bandwidth, without touching the map).
    RemoverOtherMap,
}

/// Counters of the remover and of the lookups.
#[derive(Debug, Default)]
pub struct LookupTally {
    /// Lookups timed.
    pub lookups: AtomicU64,
    /// Of those, lookups that found no page (removed at that moment).
    pub misses: AtomicU64,
    /// Remover rounds (remove + reload of one slice) during timed lookups.
    pub rounds: AtomicU64,
    /// Pages the remover removed.
    pub removed: AtomicU64,
    /// Pages the remover skipped because a lookup held them, or lost to a
    /// lookup that took them during the removal.
    pub kept: AtomicU64,
}

impl LookupTally {
    /// One line for the log.
    pub fn summary(&self) -> String {
        let l = self.lookups.load(Ordering::Relaxed);
        let m = self.misses.load(Ordering::Relaxed);
        format!(
            "{l} lookups, {m} found no page ({:.3}%), {} remover rounds, {} pages removed, {} kept by a lookup",
            100.0 * m as f64 / l.max(1) as f64,
            self.rounds.load(Ordering::Relaxed),
            self.removed.load(Ordering::Relaxed),
            self.kept.load(Ordering::Relaxed)
        )
    }
}

/// A map of [`LOOKUP_PAGES`] resident pages, a random stream of indices
/// over them, and a small second map for the control remover.
pub struct LookupBench {
    /// The looked-up map.
    pub map: Arc<PageMap>,
    other: Arc<PageMap>,
    stream: Vec<u32>,
    /// Set while lookups are timed (the remover counts its rounds then).
    timing: AtomicBool,
    pages: u64,
}

impl Default for LookupBench {
    fn default() -> Self {
        Self::new()
    }
}

impl LookupBench {
    /// Builds both maps (every page loaded) and the stream.
    pub fn new() -> Self {
        Self::with_pages(LOOKUP_PAGES)
    }

    /// The same with `pages` pages (a power of two, a multiple of
    /// [`REMOVE_SLICE`]) in the looked-up map.
    pub fn with_pages(pages: u64) -> Self {
        assert!(pages.is_power_of_two() && pages.is_multiple_of(REMOVE_SLICE));
        let pool = Arc::new(FramePool::new(pages as usize + 16).expect("frame pool"));
        let map = PageMap::new(pool, Arc::new(ZeroStore));
        for i in 0..pages {
            drop(map.load(i).expect("load"));
        }
        let pool = Arc::new(FramePool::new(REMOVE_SLICE as usize + 16).expect("frame pool"));
        let other = PageMap::new(pool, Arc::new(ZeroStore));
        Self {
            map,
            other,
            stream: uniform_stream(pages, 1 << 20, 0x5eed_0004),
            timing: AtomicBool::new(false),
            pages,
        }
    }

    fn remover(
        &self,
        map: &PageMap,
        pages: u64,
        stop: &AtomicBool,
        started: &AtomicBool,
        tally: &LookupTally,
    ) {
        let mut a = 0;
        let (mut rounds, mut removed, mut kept) = (0, 0, 0);
        started.store(true, Ordering::SeqCst);
        while !stop.load(Ordering::Relaxed) {
            let timed = self.timing.load(Ordering::Relaxed);
            let r = map.remove(a..a + REMOVE_SLICE);
            assert!(r.errors.is_empty(), "remover: {:?}", r.errors);
            for i in a..a + REMOVE_SLICE {
                drop(map.load(i).expect("reload"));
            }
            if timed {
                rounds += 1;
                removed += r.removed;
                kept += r.referenced + r.raced;
            }
            a = (a + REMOVE_SLICE) % pages;
        }
        tally.rounds.fetch_add(rounds, Ordering::Relaxed);
        tally.removed.fetch_add(removed, Ordering::Relaxed);
        tally.kept.fetch_add(kept, Ordering::Relaxed);
    }

    /// Times `iters` find+puts on this thread, following the stream from
    /// `offset` (with whatever [`with_background`](Self::with_background)
    /// runs meanwhile).
    pub fn lookups(&self, iters: u64, offset: usize, tally: &LookupTally) -> Duration {
        let mask = self.stream.len() - 1;
        let mut misses = 0;
        self.timing.store(true, Ordering::Relaxed);
        let t = Instant::now();
        for k in 0..iters as usize {
            let i = u64::from(self.stream[(offset.wrapping_add(k)) & mask]);
            // Dropping the PageRef is the put.
            let page = self.map.find(i).expect("find");
            misses += u64::from(page.is_none());
            black_box(page);
        }
        let d = t.elapsed();
        self.timing.store(false, Ordering::Relaxed);
        tally.lookups.fetch_add(iters, Ordering::Relaxed);
        tally.misses.fetch_add(misses, Ordering::Relaxed);
        d
    }

    /// Runs `f` while `bg` runs on a second thread (started before `f`,
    /// stopped after it: one thread for a whole criterion benchmark, not
    /// one per sample). At the end every page of the map is resident again.
    pub fn with_background<R>(
        &self,
        bg: Background,
        tally: &LookupTally,
        f: impl FnOnce() -> R,
    ) -> R {
        let (target, pages) = match bg {
            Background::None => return f(),
            Background::RemoverSameMap => (&self.map, self.pages),
            Background::RemoverOtherMap => (&self.other, REMOVE_SLICE),
        };
        let stop = AtomicBool::new(false);
        let started = AtomicBool::new(false);
        let r = std::thread::scope(|s| {
            s.spawn(|| self.remover(target, pages, &stop, &started, tally));
            while !started.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
            let r = f();
            stop.store(true, Ordering::Relaxed);
            r
        });
        assert_eq!(
            self.map.nr_pages(),
            self.pages,
            "remover reloaded its slice"
        );
        r
    }
}

/// The median of the per-iteration times of the last `samples` of `runs`
/// (`(iterations, total time)` per `iter_custom` call; criterion's
/// measurement samples are its last calls, after the warm-up), in ns.
pub fn median_ns(runs: &[(u64, Duration)], samples: usize) -> Option<f64> {
    let tail = &runs[runs.len().saturating_sub(samples)..];
    let mut per: Vec<f64> = tail
        .iter()
        .filter(|r| r.0 > 0)
        .map(|&(n, d)| d.as_nanos() as f64 / n as f64)
        .collect();
    if per.is_empty() {
        return None;
    }
    per.sort_by(f64::total_cmp);
    let m = per.len() / 2;
    Some(if per.len() % 2 == 1 {
        per[m]
    } else {
        (per[m - 1] + per[m]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_counts_per_space_and_per_page() {
        let f = MappedFile::new(8, 4, 2);
        let n = AtomicU64::new(0);
        f.time_removals(Batching::PerSpace, 2, &n);
        assert_eq!(n.load(Ordering::Relaxed), 2 * 2);
        let n = AtomicU64::new(0);
        f.time_removals(Batching::PerPage, 1, &n);
        assert_eq!(n.load(Ordering::Relaxed), 8 * 4);
    }

    #[test]
    fn writeback_writes_every_page_mapped_or_not() {
        let dir = bench_dir();
        for mapped in [false, true] {
            let f = WritebackFile::new(&dir, 16, mapped);
            for gen in 1..3 {
                f.dirty(gen);
                f.writeback();
            }
        }
        let mut raw = RawWriter::new(&dir, 4);
        raw.dirty(7);
        raw.write();
        assert_eq!(std::fs::read(&raw.file.path).unwrap()[PAGE_SIZE], 7);
    }

    #[test]
    fn lookups_with_a_remover() {
        let b = LookupBench::with_pages(4 * REMOVE_SLICE);
        let t = LookupTally::default();
        for bg in [
            Background::None,
            Background::RemoverSameMap,
            Background::RemoverOtherMap,
        ] {
            let rounds = t.rounds.load(Ordering::Relaxed);
            b.with_background(bg, &t, || {
                // Long enough for the remover to run a few rounds (the
                // tally gets them when it stops).
                let start = Instant::now();
                while start.elapsed() < Duration::from_millis(300) {
                    b.lookups(10_000, 0, &t);
                }
            });
            let ran = t.rounds.load(Ordering::Relaxed) > rounds;
            assert_eq!(ran, bg != Background::None, "{bg:?}");
        }
        assert!(t.lookups.load(Ordering::Relaxed) >= 30_000);
    }

    #[test]
    fn median_of_the_last_samples() {
        let ms = Duration::from_millis;
        let runs = [(1, ms(100)), (2, ms(2)), (1, ms(3)), (4, ms(4))];
        assert_eq!(median_ns(&runs, 3), Some(1e6));
        assert_eq!(median_ns(&[], 3), None);
    }
}
