//! Metadata bytes per cached page, dense and 1%-sparse, for the page map and
//! every baseline, measured with a counting global allocator.
//!
//! Counts requested bytes (live allocations after building minus before), so
//! allocator rounding and headers are not included. For the page map the
//! frame contents (`capacity * 4096`) are subtracted; what remains is tree
//! nodes, frame metadata and the pool's fixed parts. The baselines' figure
//! includes the `Arc<PageMeta>` allocation, their analogue of frame metadata.
//!
//! `cargo run --release -p benches --bin memory [N]`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use benches::{build, Dash, MutexHash, Ours, Papaya, RwTrie, SccIndex};
use pagemap::PAGE_SIZE;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, only counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Live bytes added by `f`'s result, kept alive until measured.
fn measure<T>(f: impl FnOnce() -> T) -> (isize, T) {
    let before = live();
    let t = f();
    (live() - before, t)
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(100_000, |a| a.parse().expect("N"));
    println!("Metadata bytes per cached page, {n} pages (requested bytes, counting allocator)");
    println!();
    println!("| structure | dense (0..N) | 1%-sparse (i*100) |");
    println!("| --- | ---: | ---: |");
    let layouts: [(&str, u64); 2] = [("dense", 1), ("sparse", 100)];
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut push = |name: &str, v: String| match rows.iter_mut().find(|r| r.0 == name) {
        Some(r) => r.1.push(v),
        None => rows.push((name.to_string(), vec![v])),
    };
    let mut checks = Vec::new();
    let mut dense_ours = 0.0;
    for &(layout, stride) in &layouts {
        let idx = (0..n).map(move |i| i * stride);
        let per = |b: isize| format!("{:.1}", b as f64 / n as f64);

        let (b, o) = measure(|| Ours::build(idx.clone()));
        let contents = o.map.pool().capacity() * PAGE_SIZE;
        let meta = b - contents as isize;
        let stats = o.map.memory();
        push("pagemap (ours)", per(meta));
        if stride == 1 {
            dense_ours = meta as f64 / n as f64;
        }
        checks.push(format!(
            "{layout}: pagemap counted {:.1} B/page; map.memory(): {} pages, {} nodes x {} B + {} B frame metadata = {:.1} B/page",
            meta as f64 / n as f64,
            stats.pages,
            stats.nodes,
            stats.node_bytes / stats.nodes.max(1),
            stats.frame_bytes,
            stats.bytes_per_page()
        ));
        drop(o);

        let (b, m) = measure(|| build::<MutexHash>(idx.clone()));
        push("Mutex<HashMap> (seed)", per(b));
        drop(m);
        let (b, m) = measure(|| build::<RwTrie>(idx.clone()));
        push("RwLock<radix_trie::Trie>", per(b));
        drop(m);
        let (b, m) = measure(|| build::<Dash>(idx.clone()));
        push("dashmap", per(b));
        drop(m);
        let (b, m) = measure(|| build::<Papaya>(idx.clone()));
        push("papaya", per(b));
        drop(m);
        let (b, m) = measure(|| build::<SccIndex>(idx.clone()));
        push("scc::HashIndex", per(b));
        drop(m);
        let b = (n * stride) as isize * 8;
        push("flat Vec<AtomicU64> over the index range", per(b));
    }
    for (name, v) in rows {
        println!("| {name} | {} | {} |", v[0], v[1]);
    }
    println!();
    for c in checks {
        println!("{c}");
    }
    println!(
        "target: pagemap metadata <= 32 B per cached page on a dense file: {:.1} B -> {}",
        dense_ours,
        if dense_ours <= 32.0 { "met" } else { "MISSED" }
    );
    println!(
        "(baselines include their Arc<PageMeta>, {} B requested each; papaya and scc may still \
         hold retired tables awaiting reclamation)",
        std::mem::size_of::<benches::PageMeta>() + 16
    );
}
