//! Soak test: threads fault, write, remove, write back and truncate real
//! files for a while; at the end every file is compared byte for byte with
//! an independent model.
//!
//! Not in the default run (`#[ignore]`): it runs for minutes.
//!
//! ```text
//! SOAK_SECONDS=120 cargo test --release -p vmr --test soak -- --ignored --nocapture
//! ```
//!
//! Each file has one owner thread, the only writer of its data (through a
//! shared mapping and through `PageRef::write`) and the only one to
//! truncate it, so the owner's model is exact; it checks every write by
//! reading it back at once. Around it, other threads remove ranges (both
//! batching strategies), free unused pages, invalidate, write back (msync,
//! sync, a periodic flusher), hold pages through lookups, read through
//! shared read-only mappings, and write private copy-on-write copies
//! (checked against their own model). Every race there must leave the
//! owners' data intact.
// Uses the Flusher (a real thread), which the loom build leaves out.
#![cfg(not(pagemap_loom))]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pagemap::{Batching, Error, FileStore, Flusher, FramePool, PageMap, PAGE_SIZE};
use vmr::{AddressSpace, Fault, Machine, MapFlags, Prot};

#[allow(dead_code)]
mod common;
use common::{map, PAGE};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

const FILES: usize = 2;
const PAGES: u64 = 48;
/// Truncates never cut below this page (private copies live below it).
const KEEP: u64 = 16;
const CPUS: usize = FILES + 2;

struct File {
    map: Arc<PageMap>,
    path: PathBuf,
}

#[derive(Default)]
struct Counts {
    ops: AtomicU64,
    removed: AtomicU64,
    raced: AtomicU64,
    shootdowns: AtomicU64,
    written: AtomicU64,
    truncates: AtomicU64,
    eof_faults: AtomicU64,
}

fn initial(f: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i * 7 + f * 13 + i / PAGE_SIZE) as u8)
        .collect()
}

/// Retries an operation that may meet a full pool or a busy refcount.
fn retry<T, E: std::fmt::Debug>(
    mut f: impl FnMut() -> Result<T, E>,
    ok: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let mut tries = 0;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if ok(&e) && tries < 10_000 => {
                tries += 1;
                std::thread::yield_now();
            }
            Err(e) => return Err(e),
        }
    }
}

fn transient_fault(e: &Fault) -> bool {
    matches!(
        e,
        Fault::OutOfMemory { .. }
            | Fault::Livelock { .. }
            | Fault::Io {
                source: Error::PoolExhausted { .. } | Error::RefcountOverflow { .. },
                ..
            }
    )
}

fn transient(e: &Error) -> bool {
    matches!(
        e,
        Error::PoolExhausted { .. } | Error::RefcountOverflow { .. }
    )
}

/// The owner of file `f`: writes, reads back, msyncs and truncates.
fn owner(f: usize, file: &File, machine: &Arc<Machine>, stop: &AtomicBool, c: &Counts) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(0x9e37_79b9 + f as u64);
    let space = AddressSpace::new(machine.clone());
    let va = map(&space, &file.map, PAGES, Prot::RW, MapFlags::SHARED);
    let cpu = machine.cpu(f);
    let mut model = initial(f, (PAGES * PAGE) as usize);
    let mut seq = 0u32;
    let truncates = !std::env::var("SOAK_OFF")
        .unwrap_or_default()
        .contains("truncate");
    while !stop.load(Ordering::Relaxed) {
        c.ops.fetch_add(1, Ordering::Relaxed);
        let p = rng.random_range(0..PAGES);
        let off = rng.random_range(0..PAGE - 64) as usize;
        let len = 1 + rng.random_range(0..63) as usize;
        seq = seq.wrapping_add(1);
        let data: Vec<u8> = (0..len)
            .map(|i| (seq as usize * 31 + i + f) as u8)
            .collect();
        let at = (p * PAGE) as usize + off;
        let what = match rng.random_range(0..100) {
            94.. if !truncates => 0,
            w => w,
        };
        match what {
            0..=54 => {
                let addr = va + p * PAGE + off as u64;
                retry(|| cpu.write(&space, addr, &data), transient_fault)
                    .unwrap_or_else(|e| panic!("file {f}: write at page {p}: {e}"));
                model[at..at + len].copy_from_slice(&data);
                let mut back = vec![0u8; len];
                retry(|| cpu.read(&space, addr, &mut back), transient_fault).unwrap();
                assert_eq!(
                    back, data,
                    "file {f} page {p}: read-your-write through the mapping"
                );
            }
            55..=69 => {
                let page = retry(|| file.map.load(p), transient)
                    .unwrap_or_else(|e| panic!("file {f}: load {p}: {e}"));
                page.write(off, &data).unwrap();
                model[at..at + len].copy_from_slice(&data);
                let mut back = vec![0u8; len];
                page.read(off, &mut back).unwrap();
                assert_eq!(back, data);
            }
            70..=84 => {
                let mut buf = vec![0u8; PAGE_SIZE];
                retry(
                    || cpu.read(&space, va + p * PAGE, &mut buf),
                    transient_fault,
                )
                .unwrap();
                let want = &model[(p * PAGE) as usize..((p + 1) * PAGE) as usize];
                if let Some(i) = (0..PAGE_SIZE).find(|&i| buf[i] != want[i]) {
                    let n = (0..PAGE_SIZE).filter(|&i| buf[i] != want[i]).count();
                    panic!(
                        "file {f} page {p}: byte {i} is {:#x}, the model says {:#x} ({n} bytes differ, op {seq}, initial {:#x})",
                        buf[i], want[i], initial(f, (PAGES * PAGE) as usize)[(p * PAGE) as usize + i]
                    );
                }
            }
            85..=93 => {
                let r = space.msync(va, PAGES * PAGE).unwrap();
                assert!(r.errors.is_empty(), "{:?}", r.errors);
                c.written.fetch_add(r.written, Ordering::Relaxed);
            }
            _ => {
                let end = KEEP + rng.random_range(0..PAGES - KEEP);
                let r = file.map.truncate(end);
                assert!(r.errors.is_empty(), "{:?}", r.errors);
                c.truncates.fetch_add(1, Ordering::Relaxed);
                c.removed.fetch_add(r.removed, Ordering::Relaxed);
                model.truncate((end * PAGE) as usize);
                let mut b = [0u8];
                match cpu.read(&space, va + end * PAGE, &mut b) {
                    Err(Fault::BeyondEof { .. }) => {
                        c.eof_faults.fetch_add(1, Ordering::Relaxed);
                    }
                    other => panic!("file {f}: read beyond the end at {end}: {other:?}"),
                }
                // Grow back: the cut pages read as zeroes from now on.
                file.map.truncate(PAGES);
                model.resize((PAGES * PAGE) as usize, 0);
            }
        }
    }
    model
}

/// A new space with the first `pages` pages of each file mapped: the space
/// and each file's address.
fn map_each(
    files: &[File],
    machine: &Arc<Machine>,
    pages: u64,
    prot: Prot,
    flags: MapFlags,
) -> (Arc<AddressSpace>, Vec<u64>) {
    let space = AddressSpace::new(machine.clone());
    let vas = files
        .iter()
        .map(|f| map(&space, &f.map, pages, prot, flags))
        .collect();
    (space, vas)
}

/// Private copy-on-write writes below `KEEP`, checked against their own model.
fn private(files: &[File], machine: &Arc<Machine>, stop: &AtomicBool, c: &Counts) {
    let mut rng = StdRng::seed_from_u64(0x1234_5678);
    let (space, vas) = map_each(files, machine, KEEP, Prot::RW, MapFlags::PRIVATE);
    let cpu = machine.cpu(FILES);
    let mut mine: HashMap<(usize, u64), Vec<u8>> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        c.ops.fetch_add(1, Ordering::Relaxed);
        let f = rng.random_range(0..FILES as u64) as usize;
        let p = rng.random_range(0..KEEP);
        let addr = vas[f] + p * PAGE;
        if rng.random_range(0..2) == 0 {
            let v = rng.next_u64() as u8;
            retry(|| cpu.write(&space, addr + 100, &[v]), transient_fault).unwrap();
            let mut page = vec![0u8; PAGE_SIZE];
            retry(|| cpu.read(&space, addr, &mut page), transient_fault).unwrap();
            assert_eq!(page[100], v);
            mine.insert((f, p), page);
        } else if let Some(want) = mine.get(&(f, p)) {
            let mut page = vec![0u8; PAGE_SIZE];
            retry(|| cpu.read(&space, addr, &mut page), transient_fault).unwrap();
            assert!(&page == want, "private copy of file {f} page {p} changed");
        }
    }
}

/// Reads through shared read-only mappings and holds pages through lookups.
fn reader(files: &[File], machine: &Arc<Machine>, stop: &AtomicBool, c: &Counts) {
    let mut rng = StdRng::seed_from_u64(0xabcd_ef01);
    let (space, vas) = map_each(files, machine, PAGES, Prot::READ, MapFlags::SHARED);
    let cpu = machine.cpu(FILES + 1);
    let mut held = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        c.ops.fetch_add(1, Ordering::Relaxed);
        let f = rng.random_range(0..FILES as u64) as usize;
        let p = rng.random_range(0..PAGES);
        match rng.random_range(0..3) {
            0 => {
                let mut b = [0u8; 8];
                match retry(
                    || cpu.read(&space, vas[f] + p * PAGE, &mut b),
                    transient_fault,
                ) {
                    Ok(()) | Err(Fault::BeyondEof { .. }) => {}
                    Err(e) => panic!("reader: {e}"),
                }
            }
            1 => {
                if let Ok(Some(page)) = files[f].map.find(p) {
                    held.push(page);
                }
            }
            _ => {
                if !held.is_empty() {
                    held.swap_remove(rng.random_range(0..held.len() as u64) as usize);
                }
            }
        }
        if held.len() > 6 {
            held.clear();
        }
    }
}

/// Removes, frees, invalidates at random.
fn remover(files: &[File], stop: &AtomicBool, c: &Counts) {
    let mut rng = StdRng::seed_from_u64(0x5151_5151);
    let only: u64 = std::env::var("SOAK_REMOVER_OP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(99);
    while !stop.load(Ordering::Relaxed) {
        c.ops.fetch_add(1, Ordering::Relaxed);
        let file = &files[rng.random_range(0..FILES as u64) as usize].map;
        let a = rng.random_range(0..PAGES);
        let b = a + rng.random_range(0..PAGES - a);
        let op = if only < 10 {
            only
        } else {
            rng.random_range(0..10)
        };
        let r = match op {
            0..=5 => file.remove(a..=b),
            6 => file.remove_with(a..=b, Batching::PerPage),
            7 => match file.try_remove(..) {
                Ok(r) => r,
                Err(Error::Busy) => continue,
                Err(e) => panic!("{e}"),
            },
            8 => {
                let r = file.free_unused();
                assert!(r.errors.is_empty(), "{:?}", r.errors);
                continue;
            }
            _ => {
                file.invalidate(a..=b);
                continue;
            }
        };
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        c.removed.fetch_add(r.removed, Ordering::Relaxed);
        c.raced.fetch_add(r.raced, Ordering::Relaxed);
        c.shootdowns.fetch_add(r.shootdowns, Ordering::Relaxed);
        std::thread::sleep(Duration::from_micros(rng.random_range(0..200)));
    }
}

/// Writes back ranges at random.
fn writer_back(files: &[File], stop: &AtomicBool, c: &Counts) {
    let mut rng = StdRng::seed_from_u64(0x7777);
    while !stop.load(Ordering::Relaxed) {
        c.ops.fetch_add(1, Ordering::Relaxed);
        let file = &files[rng.random_range(0..FILES as u64) as usize].map;
        let a = rng.random_range(0..PAGES);
        let r = file.writeback(a..a + 1 + rng.random_range(0..8));
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        c.written.fetch_add(r.written, Ordering::Relaxed);
        std::thread::sleep(Duration::from_micros(rng.random_range(0..300)));
    }
}

#[test]
#[ignore = "runs for minutes: SOAK_SECONDS=N cargo test --release -p vmr --test soak -- --ignored"]
fn soak() {
    let secs: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let pool = Arc::new(FramePool::new(1024).unwrap());
    let machine = Machine::new(pool.clone(), CPUS);
    let dir = std::env::temp_dir();
    let files: Vec<File> = (0..FILES)
        .map(|f| {
            let path = dir.join(format!("vmr-soak-{}-{f}", std::process::id()));
            std::fs::write(&path, initial(f, (PAGES * PAGE) as usize)).unwrap();
            let store = Arc::new(FileStore::open(&path).unwrap());
            File {
                map: PageMap::new(pool.clone(), store),
                path,
            }
        })
        .collect();
    let stop = AtomicBool::new(false);
    let counts = Counts::default();
    let off = std::env::var("SOAK_OFF").unwrap_or_default();
    let period = if off.contains("flusher") {
        3_600_000
    } else {
        3
    };
    let flusher = Flusher::spawn(
        files.iter().map(|f| f.map.clone()).collect(),
        Duration::from_millis(period),
    );
    let started = Instant::now();
    let models: Vec<Vec<u8>> = std::thread::scope(|s| {
        let owners: Vec<_> = (0..FILES)
            .map(|f| {
                let (file, machine, stop, counts) = (&files[f], &machine, &stop, &counts);
                s.spawn(move || owner(f, file, machine, stop, counts))
            })
            .collect();
        let off = std::env::var("SOAK_OFF").unwrap_or_default();
        if !off.contains("private") {
            s.spawn(|| private(&files, &machine, &stop, &counts));
        }
        if !off.contains("reader") {
            s.spawn(|| reader(&files, &machine, &stop, &counts));
        }
        if !off.contains("remover") {
            s.spawn(|| remover(&files, &stop, &counts));
        }
        if !off.contains("writeback") {
            s.spawn(|| writer_back(&files, &stop, &counts));
        }
        std::thread::sleep(Duration::from_secs(secs));
        stop.store(true, Ordering::Relaxed);
        owners.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let flushed = flusher.stop();
    assert_eq!(flushed.errors, 0, "{flushed:?}");
    // Every space is gone (their teardown harvested the dirty bits): write
    // back and compare each file with its owner's model, byte for byte.
    for (f, file) in files.iter().enumerate() {
        assert_eq!(file.map.nr_mappings(), 0);
        let r = file.map.writeback(..);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        let cached = file.map.cached_indices(..);
        assert_eq!(cached.len() as u64, file.map.nr_pages(), "page count");
        for &i in &cached {
            assert_eq!(file.map.holders(i), 0, "file {f} page {i} still held");
        }
        let mut on_disk = std::fs::read(&file.path).unwrap();
        let want = &models[f];
        on_disk.resize(on_disk.len().max(want.len()), 0);
        let mut want = want.clone();
        want.resize(on_disk.len(), 0);
        if let Some(i) = (0..want.len()).find(|&i| on_disk[i] != want[i]) {
            panic!(
                "file {f}: byte {i} (page {}) is {:#x} on disk, the model says {:#x}",
                i / PAGE_SIZE,
                on_disk[i],
                want[i]
            );
        }
        let d = file.map.destroy(false);
        assert!(d.errors.is_empty());
        std::fs::remove_file(&file.path).unwrap();
    }
    drop(files);
    assert_eq!(pool.free_frames(), pool.capacity(), "every frame returned");
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    eprintln!(
        "soak: {:.1} s, {} ops, {} pages removed ({} raced), {} shootdowns, {} written, {} flusher rounds ({} written), {} truncates, {} SIGBUS checked, machine {:?}",
        started.elapsed().as_secs_f64(),
        get(&counts.ops),
        get(&counts.removed),
        get(&counts.raced),
        get(&counts.shootdowns),
        get(&counts.written),
        flushed.rounds,
        flushed.written,
        get(&counts.truncates),
        get(&counts.eof_faults),
        machine.shootdown_stats()
    );
}
