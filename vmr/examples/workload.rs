//! The main job, in two phases over one real file:
//!
//! 1. Page-cache phase: threads read and write the file through its page
//!    map with a frame pool smaller than the file (so pages are written back
//!    and evicted while in use); everything is written back and the file is
//!    verified byte for byte against what the threads wrote.
//! 2. Mapping phase: the file is mapped into two address spaces, shared in
//!    one and private in the other; threads on simulated CPUs fault pages in
//!    and write through their TLBs; the private view must keep its own
//!    writes and see the shared ones elsewhere. Meanwhile a remover thread
//!    takes mapped pages away (multi-pass removal: unmap in both spaces, one
//!    batched shootdown per space, dirty bits harvested and written back)
//!    and msyncs the shared view; after munmap and write-back the file must
//!    hold exactly the shared writes. Finally the file is truncated while
//!    mapped: its pages beyond the end are unmapped and a read there faults
//!    with SIGBUS (`Fault::BeyondEof`).
//!
//! ```text
//! cargo run --release -p vmr --example workload -- --threads 4 --pages 256 --frames 64
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use clap::Parser;
use pagemap::{Error, FileStore, FramePool, PageMap, PAGE_SIZE};
use vmr::{AddressSpace, Machine, MapFlags, MapRequest, Prot};

/// Cache a real file through the page map from several threads, then verify it.
#[derive(Parser, Debug)]
struct Args {
    /// Worker threads.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// File size in pages.
    #[arg(long, default_value_t = 256)]
    pages: u64,
    /// Frames in the pool (smaller than --pages forces eviction).
    #[arg(long, default_value_t = 64)]
    frames: usize,
    /// Page operations per thread.
    #[arg(long, default_value_t = 20_000)]
    ops: u64,
    /// The file to create (default: a temporary file, removed afterwards).
    #[arg(long)]
    file: Option<PathBuf>,
}

// The tests' generator (`below` is theirs only).
#[allow(dead_code)]
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

/// Byte `i` of page `p` in the file as created.
fn initial_byte(p: u64, i: usize) -> u8 {
    (p as usize * 31 + i * 7) as u8
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.threads == 0 || args.threads > 512 || args.pages == 0 || args.frames == 0 {
        return Err("need 1..=512 threads, at least one page and one frame".into());
    }
    let temp = args.file.is_none();
    let path = args.file.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("pagemap-workload-{}", std::process::id()))
    });

    // 1. Create the file with known contents.
    let mut bytes = vec![0u8; args.pages as usize * PAGE_SIZE];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = initial_byte((i / PAGE_SIZE) as u64, i % PAGE_SIZE);
    }
    std::fs::write(&path, &bytes)?;
    println!(
        "created {} ({} pages, {} KiB); pool of {} frames; {} threads x {} ops",
        path.display(),
        args.pages,
        bytes.len() / 1024,
        args.frames,
        args.threads,
        args.ops
    );

    let store = Arc::new(FileStore::open(&path)?);
    let map = PageMap::new(Arc::new(FramePool::new(args.frames)?), store.clone());
    let loads = AtomicU64::new(0);
    let exhausted = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let start = Instant::now();

    // 2. Threads read and write. Thread t owns bytes [8t, 8t+8) of every
    //    page: it writes a counter there and checks, before each write, that
    //    its previous value survived (through eviction and re-reads).
    let (last, cleaner_stats) = thread::scope(|s| -> Result<_, Error> {
        let workers: Vec<_> = (0..args.threads)
            .map(|t| {
                let (map, loads, exhausted) = (&map, &loads, &exhausted);
                let (pages, ops) = (args.pages, args.ops);
                s.spawn(move || -> Result<Vec<u64>, Error> {
                    let mut rng = StdRng::seed_from_u64(0x5eed + t as u64);
                    let mut last = vec![0u64; pages as usize];
                    for n in 1..=ops {
                        let index = rng.next_u64() % pages;
                        let page = loop {
                            match map.load(index) {
                                Ok(p) => break p,
                                Err(Error::PoolExhausted { .. }) => {
                                    exhausted.fetch_add(1, Ordering::Relaxed);
                                    map.free_unused();
                                }
                                Err(e) => return Err(e),
                            }
                        };
                        loads.fetch_add(1, Ordering::Relaxed);
                        let mut cur = [0u8; 8];
                        page.read(t * 8, &mut cur)?;
                        let want = match last[index as usize] {
                            0 => std::array::from_fn(|i| initial_byte(index, t * 8 + i)),
                            v => v.to_le_bytes(),
                        };
                        assert_eq!(cur, want, "thread {t} page {index}: a write was lost");
                        page.write(t * 8, &n.to_le_bytes())?;
                        last[index as usize] = n;
                    }
                    Ok(last)
                })
            })
            .collect();
        // A background cleaner, as a kernel's flusher and reclaimer would run.
        let cleaner = s.spawn(|| {
            let (mut rounds, mut written, mut freed) = (0u64, 0u64, 0u64);
            while !done.load(Ordering::Relaxed) {
                let w = map.writeback(..);
                let f = map.free_unused();
                assert!(w.errors.is_empty() && f.errors.is_empty(), "I/O error");
                written += w.written + f.written;
                freed += f.freed;
                rounds += 1;
                thread::yield_now();
            }
            (rounds, written, freed)
        });
        let mut last = Vec::new();
        for w in workers {
            last.push(w.join().expect("worker panicked")?);
        }
        done.store(true, Ordering::Relaxed);
        Ok((last, cleaner.join().expect("cleaner panicked")))
    })?;
    let elapsed = start.elapsed();

    // 3. Write back everything still dirty, and drop the cache.
    let sync = map.writeback(..);
    if let Some(e) = sync.errors.first() {
        return Err(format!("writeback failed: {e}").into());
    }
    store.sync_data()?;
    let mem = map.memory();
    let cached = map.nr_pages();
    drop(map);

    // 4. Verify the file byte for byte.
    let on_disk = std::fs::read(&path)?;
    let mut expected = bytes;
    for (t, last) in last.iter().enumerate() {
        for (p, &v) in last.iter().enumerate() {
            if v != 0 {
                let off = p * PAGE_SIZE + t * 8;
                expected[off..off + 8].copy_from_slice(&v.to_le_bytes());
            }
        }
    }
    let mismatches = on_disk
        .iter()
        .zip(&expected)
        .filter(|(a, b)| a != b)
        .count();
    let total_ops = args.threads as u64 * args.ops;
    println!(
        "{} page operations in {:.2?} ({:.0} ns/op); pool exhausted {} times",
        total_ops,
        elapsed,
        elapsed.as_nanos() as f64 / total_ops as f64,
        exhausted.load(Ordering::Relaxed)
    );
    println!(
        "cleaner: {} rounds, {} pages written back, {} pages freed; final sync wrote {}",
        cleaner_stats.0, cleaner_stats.1, cleaner_stats.2, sync.written
    );
    println!(
        "at the end: {} pages cached, {} radix nodes, {:.1} metadata bytes per cached page",
        cached,
        mem.nodes,
        mem.bytes_per_page()
    );
    if on_disk.len() != expected.len() || mismatches != 0 {
        return Err(format!("VERIFY FAILED: {mismatches} bytes differ").into());
    }
    println!(
        "verified: the file holds exactly what the threads wrote ({} bytes)",
        on_disk.len()
    );
    mapping_phase(&args, &path, on_disk)?;
    if temp {
        std::fs::remove_file(&path)?;
    }
    Ok(())
}

/// Phase 2: the same file mapped shared into one address space and private
/// into another, written by threads on simulated CPUs.
fn mapping_phase(
    args: &Args,
    path: &PathBuf,
    mut expected: Vec<u8>,
) -> Result<(), Box<dyn std::error::Error>> {
    let pages = args.pages;
    let len = pages * PAGE_SIZE as u64;
    let ncpus = args.threads.min(Machine::MAX_CPUS);
    // Room for the whole file plus a private copy of every page.
    let pool = Arc::new(FramePool::new(2 * pages as usize + 16)?);
    let store = Arc::new(FileStore::open(path)?);
    let file = PageMap::new(pool.clone(), store.clone());
    let machine = Machine::new(pool, ncpus);
    let shared = AddressSpace::new(machine.clone());
    let private = AddressSpace::new(machine.clone());
    let sva = shared.mmap(MapRequest::new(
        file.clone(),
        len,
        Prot::RW,
        MapFlags::SHARED,
    ))?;
    let pva = private.mmap(MapRequest::new(
        file.clone(),
        len,
        Prot::RW,
        MapFlags::PRIVATE,
    ))?;
    let tag = |p: u64, t: usize| (p << 8 | t as u64).to_le_bytes();
    let offset = |p: u64, t: usize| p * PAGE_SIZE as u64 + 64 + 16 * t as u64;
    let start = Instant::now();
    let writing = AtomicBool::new(true);
    let (mut removals, mut removed, mut raced, mut removal_shootdowns, mut synced) =
        (0, 0, 0, 0, 0);
    // CPU t writes a tag into page p at offset(p, t) through the shared view
    // for even p, and 8 bytes further through the private view for odd p.
    thread::scope(|s| -> Result<(), vmr::Fault> {
        let remover = s.spawn(|| {
            let mut rng = StdRng::seed_from_u64(0x5eed);
            let mut totals = (0u64, 0u64, 0u64, 0u64, 0u64);
            while writing.load(Ordering::Relaxed) {
                let a = rng.next_u64() % pages;
                let b = (a + 1 + rng.next_u64() % 32).min(pages);
                if rng.next_u64().is_multiple_of(4) {
                    let r = shared
                        .msync(sva + a * PAGE_SIZE as u64, (b - a) * PAGE_SIZE as u64)
                        .expect("msync of a mapped range");
                    assert!(r.errors.is_empty(), "msync: {:?}", r.errors);
                    totals.4 += r.written;
                } else {
                    let r = file.remove(a..b);
                    assert!(r.errors.is_empty(), "removal: {:?}", r.errors);
                    totals.0 += 1;
                    totals.1 += r.removed;
                    totals.2 += r.raced;
                    totals.3 += r.shootdowns;
                }
                thread::yield_now();
            }
            totals
        });
        let handles: Vec<_> = (0..ncpus)
            .map(|t| {
                let (machine, shared, private) = (&machine, &shared, &private);
                s.spawn(move || -> Result<(), vmr::Fault> {
                    let cpu = machine.cpu(t);
                    for p in 0..pages {
                        if p % 2 == 0 {
                            cpu.write(shared, sva + offset(p, t), &tag(p, t))?;
                        } else {
                            cpu.write(private, pva + offset(p, t) + 8, &tag(p, t))?;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        let mut result = Ok(());
        for h in handles {
            if let Err(e) = h.join().expect("cpu thread panicked") {
                result = Err(e);
            }
        }
        writing.store(false, Ordering::Relaxed);
        (removals, removed, raced, removal_shootdowns, synced) =
            remover.join().expect("remover panicked");
        result
    })?;
    let elapsed = start.elapsed();
    // Check both views through CPU 0.
    let cpu = machine.cpu(0);
    for p in 0..pages {
        for t in 0..ncpus {
            let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
            cpu.read(&shared, sva + offset(p, t), &mut a)?;
            cpu.read(&private, pva + offset(p, t), &mut b)?;
            if p % 2 == 0 {
                // The private view never wrote even pages: it shows the file,
                // so it sees the shared write too.
                assert_eq!(a[..8], tag(p, t), "shared write missing in the shared view");
                assert_eq!(
                    b[..8],
                    tag(p, t),
                    "shared write missing in the private view"
                );
            } else {
                assert_eq!(
                    b[8..],
                    tag(p, t),
                    "private write missing in the private view"
                );
                assert_ne!(
                    a[8..],
                    tag(p, t),
                    "a private write leaked into the shared view"
                );
            }
        }
    }
    let stat = |s: &AddressSpace| {
        let f = s.fault_stats();
        [&f.minor, &f.major, &f.cow].map(|c| c.load(Ordering::Relaxed))
    };
    let (fs, fp) = (stat(&shared), stat(&private));
    shared.munmap(sva, len)?;
    drop(private); // its private copies go back to the pool
    let sync = file.writeback(..);
    if let Some(e) = sync.errors.first() {
        return Err(format!("writeback failed: {e}").into());
    }
    store.sync_data()?;
    let sd = machine.shootdown_stats();
    drop(file);
    for p in (0..pages).step_by(2) {
        for t in 0..ncpus {
            let off = offset(p, t) as usize;
            expected[off..off + 8].copy_from_slice(&tag(p, t));
        }
    }
    let on_disk = std::fs::read(path)?;
    let mismatches = on_disk
        .iter()
        .zip(&expected)
        .filter(|(a, b)| a != b)
        .count();
    println!(
        "mapping phase: {ncpus} CPUs wrote {pages} pages through a shared and a private mapping in {elapsed:.2?}"
    );
    println!(
        "faults: {} minor, {} major, {} copy-on-write; {} shootdowns ({} CPU interrupts, {} TLB entries dropped); {} pages written back",
        fs[0] + fp[0],
        fs[1] + fp[1],
        fp[2],
        sd.shootdowns,
        sd.ipis,
        sd.invalidated,
        sync.written
    );
    println!(
        "removal under load: {removals} removals took {removed} mapped pages away ({raced} kept: a fault or lookup came first), {:.2} shootdowns per removal (2 address spaces map the file); msync wrote {synced} pages",
        removal_shootdowns as f64 / removals.max(1) as f64
    );
    if on_disk.len() != expected.len() || mismatches != 0 {
        return Err(format!("VERIFY FAILED (mapping phase): {mismatches} bytes differ").into());
    }
    println!("verified: the file holds exactly the shared writes; the private ones stayed private");
    truncate_phase(path, pages)
}

/// Phase 3: truncate the file to half while it is mapped.
fn truncate_phase(path: &PathBuf, pages: u64) -> Result<(), Box<dyn std::error::Error>> {
    let pool = Arc::new(FramePool::new(pages as usize + 16)?);
    let store = Arc::new(FileStore::open(path)?);
    let file = PageMap::new(pool.clone(), store.clone());
    let machine = Machine::new(pool, 1);
    let space = AddressSpace::new(machine.clone());
    let len = pages * PAGE_SIZE as u64;
    let va = space.mmap(MapRequest::new(
        file.clone(),
        len,
        Prot::READ,
        MapFlags::SHARED,
    ))?;
    let cpu = machine.cpu(0);
    let mut b = [0u8; 1];
    for p in 0..pages {
        cpu.read(&space, va + p * PAGE_SIZE as u64, &mut b)?;
    }
    let half = pages / 2;
    let r = file.truncate(half);
    if let Some(e) = r.errors.first() {
        return Err(format!("truncate failed: {e}").into());
    }
    let beyond = cpu.read(&space, va + half * PAGE_SIZE as u64, &mut b);
    if !matches!(beyond, Err(vmr::Fault::BeyondEof { .. })) {
        return Err(format!("VERIFY FAILED: a read beyond the end gave {beyond:?}").into());
    }
    cpu.read(&space, va + (half - 1) * PAGE_SIZE as u64, &mut b)?;
    let disk = std::fs::metadata(path)?.len();
    if disk != half * PAGE_SIZE as u64 {
        return Err(format!("VERIFY FAILED: the file is {disk} bytes after truncate").into());
    }
    println!(
        "truncate phase: {} mapped pages removed with {} shootdown(s); a read beyond the end faults (SIGBUS); the file is {disk} bytes",
        r.removed, r.shootdowns
    );
    Ok(())
}
