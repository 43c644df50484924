//! Fixtures for the `vmr` benchmarks: minor faults in the simulation and in
//! the real kernel, and reads through a warm TLB or a page-table walk.
//!
//! A minor fault here is a read of one byte of a page whose contents are
//! cached (in the page map, or in the kernel's page cache) but whose PTE is
//! absent, while the page-table page holding that PTE already exists.
//!
//! **Layout: one cached page in every 16.** Linux 6.x maps up to
//! `fault_around_bytes` (64 KiB, 16 pages) of cached neighbours on a read
//! fault, and `MADV_RANDOM` does *not* turn that off (measured here: 256
//! faults for 4096 pages touched with `MADV_RANDOM`). The knob is in debugfs
//! (root only). So the kernel file caches only pages `0, 16, 32, ...`
//! (written and read back in 4 KiB pieces, the rest holes never read): the
//! fault-around window of each touched page holds no other cached page, and
//! one fault maps exactly one page (checked with `ru_minflt`). The simulated
//! file uses the same layout ([`STRIDE`]) so both walk the same page-table
//! and cache footprint; `vmr` also gets a dense variant (stride 1).

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use pagemap::{FramePool, PageMap, PAGE_SIZE};
use vmr::{AddressSpace, Advice, Machine, MapFlags, MapRequest, Prot};

use crate::ZeroStore;

/// Bytes per page.
pub const PAGE: u64 = PAGE_SIZE as u64;
/// Distance in pages between two cached pages of the fault benchmarks
/// (the kernel's fault-around window, so no fault maps a neighbour).
pub const STRIDE: u64 = 16;
/// Pages faulted per batch, between two (untimed) resets of the mapping.
pub const FAULT_BATCH: u64 = 2048;

/// Something whose cached pages can be faulted in one at a time.
pub trait Faulter: Sync {
    /// Makes every PTE absent again (untimed); page-table pages stay.
    fn reset(&self);
    /// Reads one byte of each page in `pages` (indices of cached pages,
    /// `0..FAULT_BATCH`) on thread `thread`; returns their sum.
    fn touch(&self, thread: usize, pages: Range<u64>) -> u64;
    /// Counts of the faults taken by `touch` since the last call:
    /// `(faults that mapped one page, major faults, pages mapped by fault-around)`.
    fn take_counts(&self) -> (u64, u64, u64);
}

// ---- the simulation ---------------------------------------------------------

/// A file of cached pages mapped shared, read-only, `Advice::Random`, into an
/// address space of a 2-CPU machine.
pub struct SimFaults {
    /// The machine (CPU `t` is used by thread `t`).
    pub machine: Arc<Machine>,
    /// The file: pages `i * stride` for `i` in `0..FAULT_BATCH` are cached.
    pub file: Arc<PageMap>,
    /// The address space.
    pub space: Arc<AddressSpace>,
    stride: u64,
    va: u64,
    /// (minor, major, neighbours) already reported.
    seen: Mutex<(u64, u64, u64)>,
}

impl SimFaults {
    /// `FAULT_BATCH` cached pages, `stride` pages apart.
    pub fn new(stride: u64) -> Self {
        let pool = Arc::new(FramePool::new(FAULT_BATCH as usize).expect("frame pool"));
        let file = PageMap::new(pool.clone(), Arc::new(ZeroStore));
        for i in 0..FAULT_BATCH {
            drop(file.load(i * stride).expect("load"));
        }
        let machine = Machine::new(pool, 2);
        let space = AddressSpace::new(machine.clone());
        let mut s = Self {
            machine,
            file,
            space,
            stride,
            va: 0,
            seen: Mutex::new((0, 0, 0)),
        };
        s.va = s.space.mmap(s.request()).expect("mmap");
        s
    }

    /// Bytes mapped.
    pub fn mapped_bytes(&self) -> u64 {
        FAULT_BATCH * self.stride * PAGE
    }

    fn request(&self) -> MapRequest {
        MapRequest {
            advice: Advice::Random,
            ..MapRequest::new(
                self.file.clone(),
                self.mapped_bytes(),
                Prot::READ,
                MapFlags::SHARED,
            )
        }
    }

    fn stats(&self) -> (u64, u64, u64) {
        let f = self.space.fault_stats();
        (
            f.minor.load(Ordering::Relaxed),
            f.major.load(Ordering::Relaxed),
            f.neighbours.load(Ordering::Relaxed),
        )
    }
}

impl Faulter for SimFaults {
    fn reset(&self) {
        // munmap clears the PTEs (and shoots the TLBs down) but keeps the
        // page-table pages; the next mmap gets the same address back.
        self.space
            .munmap(self.va, self.mapped_bytes())
            .expect("munmap");
        let va = self.space.mmap(self.request()).expect("mmap");
        assert_eq!(va, self.va, "mmap again at the same address");
    }

    #[inline]
    fn touch(&self, thread: usize, pages: Range<u64>) -> u64 {
        let cpu = self.machine.cpu(thread);
        let mut sum = 0;
        let mut b = [0u8; 1];
        for i in pages {
            cpu.read(&self.space, self.va + i * self.stride * PAGE, &mut b)
                .expect("read");
            sum += u64::from(b[0]);
        }
        sum
    }

    fn take_counts(&self) -> (u64, u64, u64) {
        let now = self.stats();
        let mut seen = self.seen.lock().expect("counts");
        let d = (now.0 - seen.0, now.1 - seen.1, now.2 - seen.2);
        *seen = now;
        d
    }
}

// ---- the kernel ---------------------------------------------------------------

/// `getrusage(who)`: (minor, major) faults.
pub fn rusage_faults(who: libc::c_int) -> (u64, u64) {
    // SAFETY: getrusage fills the struct we pass; zeroed is a valid rusage.
    unsafe {
        let mut r: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(who, &mut r), 0, "getrusage");
        (r.ru_minflt as u64, r.ru_majflt as u64)
    }
}

/// A real file on disk (ext4 here), pages `i * STRIDE` cached, mapped
/// `MAP_SHARED`, `PROT_READ`, `MADV_RANDOM`.
pub struct KernelFaults {
    ptr: *mut u8,
    len: usize,
    _file: File,
    minflt: AtomicU64,
    majflt: AtomicU64,
}

// SAFETY: the mapping is read-only and lives as long as the struct.
unsafe impl Sync for KernelFaults {}
// SAFETY: as above.
unsafe impl Send for KernelFaults {}

impl KernelFaults {
    /// Creates (and unlinks) the file in `dir`, writes its cached pages in
    /// 4 KiB pieces (so the page cache holds no large folio), reads them
    /// back, and maps it.
    pub fn new(dir: &std::path::Path) -> io::Result<Self> {
        let path = dir.join(format!(
            "vmr-bench-kernel-faults-{}.dat",
            std::process::id()
        ));
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        std::fs::remove_file(&path)?; // the cached pages live while it is open
        let mut buf = [0u8; PAGE_SIZE];
        for i in 0..FAULT_BATCH {
            buf.fill(i as u8 | 1);
            file.write_all_at(&buf, i * STRIDE * PAGE)?;
        }
        let len = FAULT_BATCH * STRIDE * PAGE;
        file.set_len(len)?;
        for i in 0..FAULT_BATCH {
            file.read_exact_at(&mut buf, i * STRIDE * PAGE)?;
        }
        // SAFETY: a fresh shared read-only mapping of our own file.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: our mapping.
        if unsafe { libc::madvise(ptr, len as usize, libc::MADV_RANDOM) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            ptr: ptr.cast(),
            len: len as usize,
            _file: file,
            minflt: AtomicU64::new(0),
            majflt: AtomicU64::new(0),
        })
    }
}

impl Faulter for KernelFaults {
    fn reset(&self) {
        // Zaps the PTEs; page-table pages and the page cache stay.
        // SAFETY: our mapping.
        let r = unsafe { libc::madvise(self.ptr.cast(), self.len, libc::MADV_DONTNEED) };
        assert_eq!(r, 0, "madvise(MADV_DONTNEED)");
    }

    #[inline]
    fn touch(&self, _thread: usize, pages: Range<u64>) -> u64 {
        let before = rusage_faults(libc::RUSAGE_THREAD);
        let mut sum = 0;
        for i in pages {
            // SAFETY: inside our read-only mapping.
            sum += u64::from(unsafe {
                std::ptr::read_volatile(self.ptr.add((i * STRIDE * PAGE) as usize))
            });
        }
        let after = rusage_faults(libc::RUSAGE_THREAD);
        self.minflt.fetch_add(after.0 - before.0, Ordering::Relaxed);
        self.majflt.fetch_add(after.1 - before.1, Ordering::Relaxed);
        sum
    }

    fn take_counts(&self) -> (u64, u64, u64) {
        (
            self.minflt.swap(0, Ordering::Relaxed),
            self.majflt.swap(0, Ordering::Relaxed),
            0,
        )
    }
}

impl Drop for KernelFaults {
    fn drop(&mut self) {
        // SAFETY: our mapping, unused from now on.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

// ---- the driver -------------------------------------------------------------

/// Totals of the faults a fault benchmark took, to check one fault = one page.
#[derive(Debug, Default)]
pub struct FaultTally {
    /// Pages touched (each one should fault once).
    pub touched: AtomicU64,
    /// Faults counted by the faulter (vmr: `minor`; kernel: `ru_minflt`).
    pub faults: AtomicU64,
    /// Major faults.
    pub major: AtomicU64,
    /// Pages mapped by fault-around (vmr only).
    pub neighbours: AtomicU64,
}

impl FaultTally {
    /// One line: faults per page touched.
    pub fn summary(&self) -> String {
        let t = self.touched.load(Ordering::Relaxed);
        let f = self.faults.load(Ordering::Relaxed);
        format!(
            "{t} pages touched, {f} minor faults ({:.4} per page), {} major, {} fault-around pages",
            f as f64 / t.max(1) as f64,
            self.major.load(Ordering::Relaxed),
            self.neighbours.load(Ordering::Relaxed)
        )
    }

    /// Panics unless every touched page took exactly one minor fault (vmr)
    /// or within 2% of one (kernel: other activity of the process counts).
    pub fn check(&self, exact: bool) {
        let t = self.touched.load(Ordering::Relaxed) as f64;
        let f = self.faults.load(Ordering::Relaxed) as f64;
        let ok = if exact {
            f == t
        } else {
            f >= 0.98 * t && f <= 1.02 * t
        };
        assert!(
            ok && self.major.load(Ordering::Relaxed) == 0
                && self.neighbours.load(Ordering::Relaxed) == 0,
            "one fault per page expected: {}",
            self.summary()
        );
    }
}

/// Runs `iters` minor faults on `threads` threads (1 or 2): batches of at
/// most `FAULT_BATCH` pages, the faulter reset (untimed) before each; with
/// 2 threads each takes half of the batch, released by a barrier, and a
/// batch's time is first start to last finish. Returns the total: per
/// iteration that is the aggregate time per fault.
pub fn run_faults<F: Faulter>(f: &F, threads: usize, iters: u64, tally: &FaultTally) -> Duration {
    assert!(threads == 1 || threads == 2);
    let mut total = Duration::ZERO;
    let mut left = iters;
    if threads == 1 {
        while left > 0 {
            let n = left.min(FAULT_BATCH);
            f.reset();
            let t = Instant::now();
            std::hint::black_box(f.touch(0, 0..n));
            total += t.elapsed();
            left -= n;
            tally.touched.fetch_add(n, Ordering::Relaxed);
        }
    } else {
        let start = Barrier::new(2);
        let done = Barrier::new(2);
        let helper_span: Mutex<Option<(Instant, Instant)>> = Mutex::new(None);
        let batches: Vec<u64> = {
            let mut v = Vec::new();
            while left > 0 {
                let n = left.min(FAULT_BATCH);
                v.push(n);
                left -= n;
            }
            v
        };
        std::thread::scope(|sc| {
            sc.spawn(|| {
                for &n in &batches {
                    start.wait();
                    let t0 = Instant::now();
                    std::hint::black_box(f.touch(1, n / 2..n));
                    *helper_span.lock().expect("span") = Some((t0, Instant::now()));
                    done.wait();
                }
            });
            for &n in &batches {
                f.reset();
                start.wait();
                let t0 = Instant::now();
                std::hint::black_box(f.touch(0, 0..n / 2));
                let t1 = Instant::now();
                done.wait();
                let (h0, h1) = helper_span
                    .lock()
                    .expect("span")
                    .take()
                    .expect("helper ran");
                total += t1.max(h1) - t0.min(h0);
                tally.touched.fetch_add(n, Ordering::Relaxed);
            }
        });
    }
    let (faults, major, neighbours) = f.take_counts();
    tally.faults.fetch_add(faults, Ordering::Relaxed);
    tally.major.fetch_add(major, Ordering::Relaxed);
    tally.neighbours.fetch_add(neighbours, Ordering::Relaxed);
    total
}

// ---- TLB hit vs page-table walk ---------------------------------------------

/// Pages of the TLB benchmarks' mapping (all cached and mapped).
pub const TLB_PAGES: u64 = 2 * vmr::TLB_ENTRIES as u64;

/// A shared read-only mapping of `TLB_PAGES` cached pages, every PTE present
/// (populated), on a 1-CPU machine.
pub struct TlbBench {
    /// The machine.
    pub machine: Arc<Machine>,
    /// The file.
    pub file: Arc<PageMap>,
    /// The address space.
    pub space: Arc<AddressSpace>,
    /// Address of the mapping.
    pub va: u64,
}

impl Default for TlbBench {
    fn default() -> Self {
        Self::new()
    }
}

impl TlbBench {
    /// Builds and populates the mapping.
    pub fn new() -> Self {
        let pool = Arc::new(FramePool::new(TLB_PAGES as usize).expect("frame pool"));
        let file = PageMap::new(pool.clone(), Arc::new(ZeroStore));
        let machine = Machine::new(pool, 1);
        let space = AddressSpace::new(machine.clone());
        let va = space
            .mmap(MapRequest::new(
                file.clone(),
                TLB_PAGES * PAGE,
                Prot::READ,
                MapFlags::SHARED | MapFlags::POPULATE,
            ))
            .expect("mmap");
        Self {
            machine,
            file,
            space,
            va,
        }
    }

    /// `iters` reads of 8 bytes (at offset 8 of each page) cycling over the
    /// first `pages` pages through CPU 0, from page `*cursor` on (left at
    /// the next page, so successive calls continue the cycle).
    #[inline]
    pub fn reads(&self, pages: u64, iters: u64, cursor: &mut u64) -> u64 {
        let cpu = self.machine.cpu(0);
        let mut b = [0u8; 8];
        let mut sum = 0;
        let mut p = *cursor % pages;
        for _ in 0..iters {
            cpu.read(&self.space, self.va + p * PAGE + 8, &mut b)
                .expect("read");
            sum += u64::from_ne_bytes(b);
            p += 1;
            if p == pages {
                p = 0;
            }
        }
        *cursor = p;
        sum
    }

    /// The floor: `iters` reads of 8 bytes straight from the frames (what a
    /// TLB hit does once translated), cycling over `pages` pages.
    #[inline]
    pub fn frame_reads(&self, frames: &[pagemap::FrameId], iters: u64) -> u64 {
        let pool = self.machine.pool();
        let mut b = [0u8; 8];
        let mut sum = 0;
        let mut p = 0;
        for _ in 0..iters {
            // SAFETY: the frames are the mapped, up-to-date pages the
            // benchmark translated (no store is filling them).
            unsafe { pool.read(frames[p], 8, &mut b) }.expect("read");
            sum += u64::from_ne_bytes(b);
            p += 1;
            if p == frames.len() {
                p = 0;
            }
        }
        sum
    }

    /// The frames of the first `pages` pages.
    pub fn frames(&self, pages: u64) -> Vec<pagemap::FrameId> {
        (0..pages)
            .map(|i| self.file.find(i).expect("find").expect("cached").frame())
            .collect()
    }

    /// `(tlb_hits, tlb_misses, faults)` of CPU 0 so far.
    pub fn cpu_counts(&self) -> (u64, u64, u64) {
        let s = self.machine.cpu(0).stats();
        (
            s.tlb_hits.load(Ordering::Relaxed),
            s.tlb_misses.load(Ordering::Relaxed),
            s.faults.load(Ordering::Relaxed),
        )
    }
}
