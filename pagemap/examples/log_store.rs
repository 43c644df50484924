//! A small append-only log store over the page map's byte API: what a
//! storage engine's write-ahead log does with a page cache.
//!
//! Records are `[payload length: u32 LE][FNV-1a 32 of the payload: u32 LE]
//! [payload]`, the payload naming its writer and sequence number. Writer
//! threads reserve space under one mutex-guarded tail offset, write their
//! record with `write_at` outside it (so writes land out of order and each
//! one past the size extends the file), publish it, and every so often
//! commit with `fsync`; reader threads read published records back with
//! `read_at` and check them. The pool is much smaller than the file: when a
//! load finds it exhausted, the thread frees unused pages (dirty ones are
//! written first) and retries. A `Flusher` writes back (and syncs) in the
//! background meanwhile. At the end the map is closed (which reports any
//! page it could not write), the file opened again in a new map, and
//! scanned from the start: every record of every writer must be there,
//! once, intact.
//!
//!     cargo run --release -p pagemap --example log_store -- \
//!         [--writers 4] [--readers 2] [--records 4000] [--frames 64] [--keep]
//!
//! (the file is in the temporary directory; `--keep` leaves it there).

use std::collections::HashSet;
use std::error::Error as StdError;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pagemap::{Error, FileStore, Flusher, FramePool, PageMap};

/// Header: payload length and checksum.
const HEADER: usize = 8;
/// A writer commits (fsync) after this many records.
const COMMIT_EVERY: u32 = 500;

/// FNV-1a, 32 bits: enough to catch a torn or misplaced record here (not a
/// defence against deliberate tampering); a few lines, no dependency.
fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Record `seq` of writer `writer`: header and payload (writer, sequence,
/// then bytes derived from both; 6 to 605 bytes).
fn record(writer: u16, seq: u32) -> Vec<u8> {
    let mix = (u32::from(writer) << 20) ^ seq.wrapping_mul(2_654_435_761);
    let len = 6 + (mix % 600) as usize;
    let mut payload = Vec::with_capacity(len);
    payload.extend_from_slice(&writer.to_le_bytes());
    payload.extend_from_slice(&seq.to_le_bytes());
    payload.extend((6..len).map(|i| (mix as usize).wrapping_add(i * 7) as u8));
    let mut rec = Vec::with_capacity(HEADER + len);
    rec.extend_from_slice(&(len as u32).to_le_bytes());
    rec.extend_from_slice(&fnv1a(&payload).to_le_bytes());
    rec.extend_from_slice(&payload);
    rec
}

/// Checks a payload read back against its header: `(writer, seq)`.
fn check(header: [u8; HEADER], payload: &[u8], at: u64) -> Result<(u16, u32), String> {
    let sum = u32::from_le_bytes(header[4..].try_into().unwrap());
    if fnv1a(payload) != sum || payload.len() < 6 {
        return Err(format!("record at byte {at}: bad checksum"));
    }
    let writer = u16::from_le_bytes([payload[0], payload[1]]);
    let seq = u32::from_le_bytes(payload[2..6].try_into().unwrap());
    if record(writer, seq)[HEADER..] != *payload {
        return Err(format!(
            "record at byte {at}: not record {seq} of writer {writer}"
        ));
    }
    Ok((writer, seq))
}

/// The pool ran out: free what is unused (writing dirty pages first).
fn make_room(map: &PageMap) -> Result<(), Error> {
    let r = map.free_unused();
    match r.errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `write_at` until all of `data` is written at `off`.
fn write_all(map: &PageMap, mut off: u64, mut data: &[u8]) -> Result<(), Error> {
    while !data.is_empty() {
        match map.write_at(off, data) {
            Ok(n) => {
                off += n as u64;
                data = &data[n..];
            }
            Err(Error::PoolExhausted { .. }) => make_room(map)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `read_at` until `buf` is full; an error at the end of the file.
fn read_exact(map: &PageMap, mut off: u64, mut buf: &mut [u8]) -> Result<(), Box<dyn StdError>> {
    while !buf.is_empty() {
        match map.read_at(off, buf) {
            Ok(0) => return Err(format!("unexpected end of the log at byte {off}").into()),
            Ok(n) => {
                off += n as u64;
                buf = &mut buf[n..];
            }
            Err(Error::PoolExhausted { .. }) => make_room(map)?,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads and checks the record at `off`: `(writer, seq, its length)`.
fn read_record(map: &PageMap, off: u64) -> Result<(u16, u32, u64), Box<dyn StdError>> {
    let mut header = [0u8; HEADER];
    read_exact(map, off, &mut header)?;
    let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
    let mut payload = vec![0u8; len];
    read_exact(map, off + HEADER as u64, &mut payload)?;
    let (writer, seq) = check(header, &payload, off)?;
    Ok((writer, seq, (HEADER + len) as u64))
}

struct Args {
    writers: u16,
    readers: usize,
    records: u32,
    frames: usize,
    keep: bool,
}

fn args() -> Args {
    let mut a = Args {
        writers: 4,
        readers: 2,
        records: 4000,
        frames: 64,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = || -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{flag} takes a number"))
        };
        match flag.as_str() {
            "--writers" => a.writers = num() as u16,
            "--readers" => a.readers = num(),
            "--records" => a.records = num() as u32,
            "--frames" => a.frames = num(),
            "--keep" => a.keep = true,
            _ => panic!("unknown argument {flag} (see the example's doc comment)"),
        }
    }
    a
}

fn main() -> Result<(), Box<dyn StdError>> {
    let a = args();
    let path = std::env::temp_dir().join(format!("pagemap-log-store-{}.log", std::process::id()));
    let pool = Arc::new(FramePool::new(a.frames)?);
    let store = FileStore::open_or_create(&path)?;
    let map = PageMap::try_new(pool.clone(), Arc::new(store))?;
    map.set_size(0)?; // a new log
    let flusher = Flusher::builder()
        .period(Duration::from_millis(50))
        .fsync(true)
        .spawn(vec![map.clone()]);

    let start = Instant::now();
    let tail = Mutex::new(0u64);
    // Records written (their offsets), for the readers.
    let published = Mutex::new(Vec::<u64>::new());
    let writing = AtomicBool::new(true);
    let (reads, commits) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|s| -> Result<(), Box<dyn StdError + Send + Sync>> {
        let writers: Vec<_> = (0..a.writers)
            .map(|w| {
                let (map, tail, published, commits) = (&map, &tail, &published, &commits);
                s.spawn(move || -> Result<(), Error> {
                    for seq in 0..a.records {
                        let rec = record(w, seq);
                        let off = {
                            let mut t = tail.lock().unwrap();
                            let off = *t;
                            *t += rec.len() as u64;
                            off
                        };
                        write_all(map, off, &rec)?;
                        published.lock().unwrap().push(off);
                        if seq % COMMIT_EVERY == COMMIT_EVERY - 1 {
                            map.fsync()?; // a group commit
                                          // Relaxed: a statistic.
                            commits.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        let readers: Vec<_> = (0..a.readers)
            .map(|r| {
                let (map, published, writing, reads) = (&map, &published, &writing, &reads);
                s.spawn(move || -> Result<(), String> {
                    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ r as u64;
                    // Relaxed: the flag only ends the loop.
                    while writing.load(Ordering::Relaxed) {
                        let off = {
                            let p = published.lock().unwrap();
                            if p.is_empty() {
                                continue;
                            }
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            p[(x % p.len() as u64) as usize]
                        };
                        read_record(map, off).map_err(|e| e.to_string())?;
                        // Relaxed: a statistic.
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap()?;
        }
        // Relaxed: see the readers.
        writing.store(false, Ordering::Relaxed);
        for r in readers {
            r.join().unwrap()?;
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    let wrote = start.elapsed();
    let size = *tail.lock().unwrap();
    assert_eq!(map.size(), size, "the file ends at the last record");

    // Close: the flusher's last round, then every dirty page written and
    // the file synced; an error lists the pages lost.
    let fl = flusher.stop();
    map.close()?;

    // Reopen and scan the whole log.
    let map = PageMap::try_new(pool, Arc::new(FileStore::open(&path)?))?;
    assert_eq!(map.size(), size, "the reopened file's size");
    let mut seen = HashSet::new();
    let mut off = 0;
    while off < size {
        let (writer, seq, len) = read_record(&map, off)?;
        assert!(
            seen.insert((writer, seq)),
            "record {seq} of writer {writer} twice"
        );
        off += len;
    }
    let want = usize::from(a.writers) * a.records as usize;
    assert_eq!(seen.len(), want, "every record of every writer");
    map.close()?;
    println!(
        "log_store: {} writers appended {want} records ({size} bytes, {} pages) through a \
         pool of {} frames in {wrote:?}, {} group commits; {} readers checked {} records \
         meanwhile; the flusher ran {} rounds ({} pages, {} syncs); reopened and scanned \
         every record in {:?} in all",
        a.writers,
        size.div_ceil(pagemap::PAGE_SIZE as u64),
        a.frames,
        commits.load(Ordering::Relaxed),
        a.readers,
        reads.load(Ordering::Relaxed),
        fl.rounds,
        fl.written,
        fl.syncs,
        start.elapsed()
    );
    if !a.keep {
        std::fs::remove_file(&path)?;
    }
    Ok(())
}
