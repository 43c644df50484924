//! Issue 11: the byte API over a real file against the system calls a
//! storage engine would otherwise make, in the same process on the same
//! file system (the repository's temp directory: `std::env::temp_dir()`).
//!
//! * `seq_write_fsync`: write a whole file (`FILE_MIB`, default 256 MiB)
//!   sequentially in 64 KiB calls, then make it durable. `pagemap` is
//!   `PageMap::write_at` into a fresh map (over one pool, reused: its
//!   memory is touched once, as a running engine's is) over a fresh file and
//!   `PageMap::fsync` (writeback in extents with `pwritev`, then
//!   `fdatasync`); `pwrite` is `pwrite(2)` of the same 64 KiB buffers and
//!   `fdatasync(2)`. Target: pagemap at least 0.9x as fast.
//! * `cold_seq_read_4k`: read a file that was just written (so it is in the
//!   kernel's page cache) from start to end in 4 KiB calls. `pagemap` is a
//!   fresh map's `read_at`, which reads ahead a window of missing pages with
//!   one `preadv`; `pread` is one `pread(2)` per 4 KiB. Target: at least 1.0x.
//! * `random_read_{4k,64b}_{1,2}t`: random aligned reads of 4 KiB or 64 B
//!   with the whole file cached (a 64 MiB file, every page loaded before
//!   timing) from 1 and 2 threads: `read_at` (lock-free hit: no syscall)
//!   against `pread(2)`. Target: at least 5x.
//!
//! Both sides of a group run alternately in one process: read the ratio.

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use benches::SplitMix64;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use pagemap::{FileStore, FramePool, PageMap, PAGE_SIZE};

/// Size of the sequentially written file, in MiB (`FILE_MIB`, default 256).
fn file_mib() -> usize {
    std::env::var("FILE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Bytes per sequential write call.
const WRITE_CHUNK: usize = 64 << 10;
/// Size of the file read at random, in bytes (64 MiB, all cached).
const RANDOM_FILE: usize = 64 << 20;

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pagemap-bench-{}-{name}", std::process::id()))
}

fn open_rw(path: &PathBuf, truncate: bool) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate)
        .open(path)
        .expect("open the benchmark file")
}

/// A pool with room for a whole file of `bytes`.
fn pool_for(bytes: usize) -> Arc<FramePool> {
    Arc::new(FramePool::new(bytes.div_ceil(PAGE_SIZE) + 64).expect("frame pool"))
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

fn configure(g: &mut BenchmarkGroup<'_, WallTime>, samples: usize, secs: u64) {
    g.sample_size(samples);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(secs));
}

/// `iters` runs of `run` on what `setup` made, timing only `run` (the
/// setup, and the drop of what it made, are not timed).
fn timed<S>(iters: u64, mut setup: impl FnMut() -> S, mut run: impl FnMut(&S)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let s = setup();
        let t = Instant::now();
        run(&s);
        total += t.elapsed();
        drop(s);
    }
    total
}

/// Reads a `bytes`-long file from start to end in `buf`-sized calls of
/// `read(offset, buf) -> bytes read`.
fn read_through(bytes: usize, buf: &mut [u8], mut read: impl FnMut(u64, &mut [u8]) -> usize) {
    let mut off = 0u64;
    loop {
        let n = read(off, buf);
        if n == 0 {
            break;
        }
        black_box(&*buf);
        off += n as u64;
    }
    assert_eq!(off as usize, bytes);
}

fn seq_write_fsync(c: &mut Criterion) {
    let bytes = file_mib() << 20;
    let buf = pattern(WRITE_CHUNK);
    let path = temp_path("seq-write");
    let mut g = c.benchmark_group("seq_write_fsync");
    configure(&mut g, 10, 20);
    g.throughput(Throughput::Bytes(bytes as u64));
    // One pool for every run, as a long-running engine keeps its cache's
    // memory: a new pool per run would time the first touch of 256 MiB of
    // fresh anonymous memory (a page fault and the kernel zeroing each
    // frame), which the kernel's page cache, taking pages from its free
    // lists, does not pay either.
    let pool = pool_for(bytes);
    g.bench_function("pagemap", |b| {
        b.iter_custom(|iters| {
            timed(
                iters,
                || {
                    let store = FileStore::new(open_rw(&path, true)).expect("file store");
                    PageMap::new(pool.clone(), Arc::new(store))
                },
                |map| {
                    for off in (0..bytes).step_by(WRITE_CHUNK) {
                        map.write_at(off as u64, &buf).expect("write_at");
                    }
                    map.fsync().expect("fsync");
                },
            )
        })
    });
    g.bench_function("pwrite", |b| {
        b.iter_custom(|iters| {
            timed(
                iters,
                || open_rw(&path, true),
                |file| {
                    for off in (0..bytes).step_by(WRITE_CHUNK) {
                        file.write_all_at(&buf, off as u64).expect("pwrite");
                    }
                    file.sync_data().expect("fdatasync");
                },
            )
        })
    });
    g.finish();
    let _ = std::fs::remove_file(&path);
}

fn cold_seq_read(c: &mut Criterion) {
    let bytes = 64 << 20;
    let path = temp_path("seq-read");
    {
        let file = open_rw(&path, true);
        file.write_all_at(&pattern(bytes), 0)
            .expect("write the file");
    }
    let mut g = c.benchmark_group("cold_seq_read_4k");
    configure(&mut g, 10, 10);
    g.throughput(Throughput::Bytes(bytes as u64));
    let pool = pool_for(bytes);
    let mut buf = vec![0u8; PAGE_SIZE];
    g.bench_function("pagemap", |b| {
        b.iter_custom(|iters| {
            timed(
                iters,
                || {
                    let store = FileStore::new(open_rw(&path, false)).expect("store");
                    PageMap::new(pool.clone(), Arc::new(store))
                },
                |map| {
                    read_through(bytes, &mut buf, |off, buf| {
                        map.read_at(off, buf).expect("read_at")
                    })
                },
            )
        })
    });
    g.bench_function("pread", |b| {
        b.iter_custom(|iters| {
            timed(
                iters,
                || open_rw(&path, false),
                |file| {
                    read_through(bytes, &mut buf, |off, buf| {
                        file.read_at(buf, off).expect("pread")
                    })
                },
            )
        })
    });
    g.finish();
    let _ = std::fs::remove_file(&path);
}

/// Times `iters` random reads of `len` bytes on each of `threads` threads
/// (the slowest thread's time, per read of one thread).
fn random_reads(
    iters: u64,
    threads: usize,
    len: usize,
    read: &(dyn Fn(u64, &mut [u8]) + Sync),
) -> Duration {
    let barrier = Barrier::new(threads);
    let slots = RANDOM_FILE / len;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut r = SplitMix64(0x5eed + t as u64);
                    let mut buf = vec![0u8; len];
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        let at = (r.next_u64() as usize % slots) * len;
                        read(at as u64, &mut buf);
                        black_box(&buf);
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("reader"))
            .max()
            .unwrap_or_default()
    })
}

fn random_read(c: &mut Criterion) {
    let path = temp_path("random-read");
    let file = open_rw(&path, true);
    file.write_all_at(&pattern(RANDOM_FILE), 0)
        .expect("write the file");
    let store = Arc::new(FileStore::new(open_rw(&path, false)).expect("store"));
    let map = PageMap::new(pool_for(RANDOM_FILE), store);
    // Every page cached before timing.
    let mut page = vec![0u8; PAGE_SIZE];
    for off in (0..RANDOM_FILE).step_by(PAGE_SIZE) {
        assert_eq!(map.read_at(off as u64, &mut page).expect("warm"), PAGE_SIZE);
    }
    for (len, name) in [(PAGE_SIZE, "4k"), (64, "64b")] {
        for threads in [1usize, 2] {
            let mut g = c.benchmark_group(format!("random_read_{name}_{threads}t"));
            configure(&mut g, 20, 3);
            g.throughput(Throughput::Elements(1));
            g.bench_function("pagemap", |b| {
                b.iter_custom(|iters| {
                    random_reads(iters, threads, len, &|at, buf| {
                        let n = map.read_at(at, buf).expect("read_at");
                        debug_assert_eq!(n, buf.len());
                    })
                })
            });
            g.bench_function("pread", |b| {
                b.iter_custom(|iters| {
                    random_reads(iters, threads, len, &|at, buf| {
                        file.read_exact_at(buf, at).expect("pread");
                    })
                })
            });
            g.finish();
        }
    }
    drop(map);
    let _ = std::fs::remove_file(&path);
}

criterion_group!(benches, seq_write_fsync, cold_seq_read, random_read);
criterion_main!(benches);
