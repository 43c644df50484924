//! System calls per page of the byte API over a real file, counted by the
//! kernel (`syscr`/`syscw` of `/proc/self/io`: read- and write-family calls,
//! `pwritev`/`preadv` included), against the same work done with `pwrite`
//! and `pread` of 4 KiB.
//!
//! * a sequential dirty run: `write_at` of `MIB` MiB in 4 KiB calls (no
//!   syscall: the pages are only dirtied), then `fsync` (writeback joins
//!   contiguous dirty pages into extents, one `pwritev` each);
//! * whole-page overwrites of those pages once evicted (no read: the write
//!   replaces every byte);
//! * a cold sequential read of the same file in 4 KiB `read_at` calls
//!   (readahead: one `preadv` per window of missing pages).
//!
//! `cargo run --release -p benches --bin syscalls [MIB]` (default 64). The
//! counter's own read of `/proc/self/io` shows as about 0.0003 reads per
//! page at 64 MiB.

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

/// Runs `f` and prints the read- and write-family system calls it made,
/// per page of the `pages`-page file.
fn per_page(label: &str, pages: f64, f: impl FnOnce()) {
    let (r0, w0) = syscalls();
    f();
    let (r1, w1) = syscalls();
    println!(
        "{label:<44} {:>7.4} reads {:>7.4} writes per page",
        (r1 - r0) as f64 / pages,
        (w1 - w0) as f64 / pages
    );
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
    println!("{mib} MiB = {pages} pages");

    // The page map: a sequential dirty run (appends), then fsync.
    let map = PageMap::new(
        pool.clone(),
        Arc::new(FileStore::new(open(true)).expect("store")),
    );
    per_page("write_at, appending (dirtying only)", pages, || {
        for off in (0..bytes).step_by(PAGE_SIZE) {
            map.write_at(off as u64, &chunk).expect("write_at");
        }
    });
    per_page("fsync of the dirty run (target <= 0.125)", pages, || {
        map.fsync().expect("fsync");
    });
    // Whole-page overwrites of pages no longer cached: no read needed.
    assert_eq!(map.free_unused().freed as f64, pages);
    per_page("write_at, overwriting uncached whole pages", pages, || {
        for off in (0..bytes).step_by(PAGE_SIZE) {
            map.write_at(off as u64, &chunk).expect("write_at");
        }
    });
    map.fsync().expect("fsync");
    drop(map);

    // The page map: a cold sequential read.
    let map = PageMap::new(
        pool.clone(),
        Arc::new(FileStore::new(open(false)).expect("store")),
    );
    let mut buf = vec![0u8; PAGE_SIZE];
    per_page("cold read_at, 4 KiB calls (readahead)", pages, || {
        let mut off = 0u64;
        while map.read_at(off, &mut buf).expect("read_at") > 0 {
            off += PAGE_SIZE as u64;
        }
        assert_eq!(off as usize, bytes);
    });
    drop(map);

    // The baseline: pwrite and pread of 4 KiB.
    let file = open(true);
    per_page("pwrite 4 KiB baseline", pages, || {
        for off in (0..bytes).step_by(PAGE_SIZE) {
            file.write_all_at(&chunk, off as u64).expect("pwrite");
        }
    });
    per_page("pread 4 KiB baseline", pages, || {
        for off in (0..bytes).step_by(PAGE_SIZE) {
            file.read_exact_at(&mut buf, off as u64).expect("pread");
        }
    });
    let _ = std::fs::remove_file(&path);
}
