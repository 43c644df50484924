//! System calls per page of the byte API over a real file, counted by the
//! kernel (`syscr`/`syscw` of `/proc/self/io`: read- and write-family calls,
//! `pwritev`/`preadv` included), against the same work done with `pwrite`
//! and `pread` of 4 KiB.
//!
//! * a sequential dirty run: `write_at` of `MIB` MiB in 4 KiB calls (no
//!   syscall: the pages are only dirtied), then `fsync` (writeback joins
//!   contiguous dirty pages into extents, one `pwritev` each);
//! * a cold sequential read of the same file in 4 KiB `read_at` calls
//!   (readahead: one `preadv` per window of missing pages).
//!
//! `cargo run --release -p benches --bin syscalls [MIB]` (default 64).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use pagemap::{FileStore, FramePool, PageMap, PAGE_SIZE};

/// (read-family, write-family) system calls of this process so far.
fn syscalls() -> (u64, u64) {
    let io = std::fs::read_to_string("/proc/self/io").expect("read /proc/self/io");
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .expect("a counter of /proc/self/io")
    };
    (field("syscr:"), field("syscw:"))
}

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(64);
    let bytes = mib << 20;
    let pages = (bytes / PAGE_SIZE) as f64;
    let path = std::env::temp_dir().join(format!("pagemap-syscalls-{}", std::process::id()));
    let open = |truncate: bool| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(truncate)
            .open(&path)
            .expect("open the file")
    };
    let chunk: Vec<u8> = (0..PAGE_SIZE).map(|i| i as u8).collect();
    let pool = Arc::new(FramePool::new(bytes / PAGE_SIZE + 64).expect("pool"));

    // The page map: a sequential dirty run, then fsync.
    let map = PageMap::new(
        pool.clone(),
        Arc::new(FileStore::new(open(true)).expect("store")),
    );
    let (_, w0) = syscalls();
    for off in (0..bytes).step_by(PAGE_SIZE) {
        map.write_at(off as u64, &chunk).expect("write_at");
    }
    let (_, w1) = syscalls();
    map.fsync().expect("fsync");
    let (_, w2) = syscalls();
    drop(map);

    // The page map: a cold sequential read.
    let map = PageMap::new(
        pool.clone(),
        Arc::new(FileStore::new(open(false)).expect("store")),
    );
    let mut buf = vec![0u8; PAGE_SIZE];
    let (r0, _) = syscalls();
    let mut off = 0u64;
    while map.read_at(off, &mut buf).expect("read_at") > 0 {
        off += PAGE_SIZE as u64;
    }
    let (r1, _) = syscalls();
    assert_eq!(off as usize, bytes);
    drop(map);

    // The baseline: pwrite and pread of 4 KiB.
    let file = open(true);
    let (_, b0) = syscalls();
    for off in (0..bytes).step_by(PAGE_SIZE) {
        file.write_all_at(&chunk, off as u64).expect("pwrite");
    }
    let (_, b1) = syscalls();
    let (p0, _) = syscalls();
    for off in (0..bytes).step_by(PAGE_SIZE) {
        file.read_exact_at(&mut buf, off as u64).expect("pread");
    }
    let (p1, _) = syscalls();
    let _ = std::fs::remove_file(&path);

    println!("{mib} MiB = {pages} pages");
    println!(
        "write_at (dirtying only): {:.4} write syscalls per page",
        (w1 - w0) as f64 / pages
    );
    println!(
        "fsync of the dirty run:   {:.4} write syscalls per page (target <= 0.125)",
        (w2 - w1) as f64 / pages
    );
    println!(
        "cold read_at:             {:.4} read syscalls per page",
        (r1 - r0) as f64 / pages
    );
    println!(
        "pwrite 4 KiB baseline:    {:.4} write syscalls per page",
        (b1 - b0) as f64 / pages
    );
    println!(
        "pread 4 KiB baseline:     {:.4} read syscalls per page",
        (p1 - p0) as f64 / pages
    );
}
