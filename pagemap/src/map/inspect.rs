//! Read-only views of a page map: holders and metadata memory, iteration
//! over cached and dirty pages, and the debugging dump.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;
use core::ops::RangeBounds;

use crate::frame::flags;
use crate::radix::{Mark, RadixTree};
use crate::sync::epoch;

use super::{inclusive, PageMap};

/// Metadata memory of a page map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryStats {
    /// Cached pages.
    pub pages: u64,
    /// Radix tree nodes.
    pub nodes: usize,
    /// Bytes of radix tree nodes.
    pub node_bytes: usize,
    /// Bytes of frame metadata for the cached pages.
    pub frame_bytes: usize,
}

impl MemoryStats {
    /// Metadata bytes per cached page (tree plus frame metadata, contents excluded).
    pub fn bytes_per_page(&self) -> f64 {
        if self.pages == 0 {
            return 0.0;
        }
        (self.node_bytes + self.frame_bytes) as f64 / self.pages as f64
    }
}

impl PageMap {
    /// Holders of the page at `index` now (0 if absent): a debugging aid.
    pub fn holders(&self, index: u64) -> u64 {
        let guard = epoch::pin();
        self.tree.lookup(index, &guard).map_or(0, |s| {
            if s.load().is_present() {
                s.load().refs()
            } else {
                0
            }
        })
    }

    /// Metadata memory now.
    pub fn memory(&self) -> MemoryStats {
        let pages = self.nr_pages();
        let nodes = self.tree.nodes();
        MemoryStats {
            pages,
            nodes,
            node_bytes: nodes * RadixTree::NODE_BYTES,
            frame_bytes: pages as usize * self.pool.metadata_bytes_per_frame(),
        }
    }

    /// The first cached index `>= from` (loading pages included).
    pub fn next_present(&self, from: u64) -> Option<u64> {
        let guard = epoch::pin();
        self.tree.next_present(from, &guard).map(|(i, _)| i)
    }

    /// The first index `>= from` whose page is marked dirty.
    pub fn next_dirty(&self, from: u64) -> Option<u64> {
        let guard = epoch::pin();
        self.tree
            .next_marked(from, Mark::Dirty, &guard)
            .map(|(i, _)| i)
    }

    /// The cached indices in `range`, in order (a snapshot).
    pub fn cached_indices(&self, range: impl RangeBounds<u64>) -> Vec<u64> {
        self.collect(range, None)
    }

    /// The dirty indices in `range`, in order (a snapshot).
    pub fn dirty_indices(&self, range: impl RangeBounds<u64>) -> Vec<u64> {
        self.collect(range, Some(Mark::Dirty))
    }

    fn collect(&self, range: impl RangeBounds<u64>, mark: Option<Mark>) -> Vec<u64> {
        let mut out = Vec::new();
        let Some((first, last)) = inclusive(&range) else {
            return out;
        };
        let guard = epoch::pin();
        let mut from = first;
        loop {
            let hit = match mark {
                None => self.tree.next_present(from, &guard),
                Some(m) => self.tree.next_marked(from, m, &guard),
            };
            match hit {
                Some((i, _)) if i <= last => {
                    out.push(i);
                    match i.checked_add(1) {
                        Some(n) => from = n,
                        None => break,
                    }
                }
                _ => break,
            }
        }
        out
    }

    /// A human-readable dump of the map: every page with its slot and frame state.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        let guard = epoch::pin();
        let _ = writeln!(
            s,
            "PageMap #{}: {} pages, {} nodes, height {}, pool {}/{} free, mappings {:?}",
            self.id,
            self.nr_pages(),
            self.tree.nodes(),
            self.tree.height(&guard),
            self.pool.free_frames(),
            self.pool.capacity(),
            self.rmap.read()
        );
        let mut from = 0;
        while let Some((index, slot)) = self.tree.next_present(from, &guard) {
            let w = slot.load();
            let frame = w.present_frame();
            let f = self.pool.flags(frame);
            let _ = writeln!(
                s,
                "  [{index:#x}] {w:?} mark={} frame={}",
                if self.tree.has_mark(index, Mark::Dirty, &guard) {
                    "D"
                } else {
                    "-"
                },
                flag_names(f)
            );
            match index.checked_add(1) {
                Some(n) => from = n,
                None => break,
            }
        }
        s
    }
}

pub(super) fn flag_names(f: u32) -> String {
    let names = [
        (flags::LOCKED, "LOCKED"),
        (flags::UPTODATE, "UPTODATE"),
        (flags::DIRTY, "DIRTY"),
        (flags::PAGEMAP, "PAGEMAP"),
        (flags::WRITEBACK, "WRITEBACK"),
        (flags::ERROR, "ERROR"),
        (flags::PINNED, "PINNED"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(b, _)| f & b != 0)
        .map(|(_, n)| *n)
        .collect();
    v.join("|")
}
