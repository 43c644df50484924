//! The mappings of the file (the reverse map's registration, for the
//! unmapping protocols), and the tree's DIRTY mark kept in step with each
//! frame's DIRTY flag (what writers, unmappers and removers forward to).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::RangeBounds;

use crate::frame::{flags, FrameId};
use crate::mapper::Mapper;
use crate::radix::Mark;
use crate::rmap::MappingId;
use crate::slot;
use crate::sync::epoch;

use super::{inclusive, PageMap};

impl PageMap {
    /// Registers a mapping of this file. It must be fully initialised: from
    /// now on removal and free-unused treat the pages it covers as mapped.
    pub fn add_mapping(&self, mapper: Arc<dyn Mapper>) -> MappingId {
        self.rmap.write().add(mapper)
    }

    /// Unregisters a mapping (after its page table entries are gone and its
    /// dirty bits harvested). Returns it, or `None` if `id` is unknown here:
    /// removed already, or another page map's.
    pub fn remove_mapping(&self, id: MappingId) -> Option<Arc<dyn Mapper>> {
        self.rmap.write().remove(id)
    }

    /// Mappings registered now.
    pub fn nr_mappings(&self) -> usize {
        self.rmap.read().len()
    }

    /// The mappings overlapping file pages `range`, in order of first page.
    pub fn mappings(&self, range: impl RangeBounds<u64>) -> Vec<(MappingId, Arc<dyn Mapper>)> {
        let mut out = Vec::new();
        if let Some((first, last)) = inclusive(&range) {
            self.rmap
                .read()
                .for_each_overlapping(first, last, &mut |id, m| {
                    out.push((id, m.clone()));
                    true
                });
        }
        out
    }

    /// Whether any mapping covers page `index`.
    pub fn is_mapped(&self, index: u64) -> bool {
        self.rmap.read().covers(index)
    }

    /// Whether a pinned (MAP_LOCKED) mapping covers page `index`.
    pub fn is_pinned(&self, index: u64) -> bool {
        self.rmap.read().pinned_covers(index)
    }

    /// Sets a page's DIRTY flag under its page lock (see
    /// [`PageRef::mark_dirty`](crate::PageRef::mark_dirty)) and its tree
    /// mark. The caller holds the page or is the remover that owns it.
    pub(crate) fn mark_frame_dirty(&self, index: u64, frame: FrameId) {
        self.pool.lock(frame);
        if self.pool.flags(frame) & flags::DETACHED != 0 {
            // Cut off by a truncate (under this lock): no file data.
            self.pool.unlock(frame);
            return;
        }
        let old = self.pool.set_flags(frame, flags::DIRTY);
        self.pool.unlock(frame);
        if old & flags::DIRTY == 0 {
            self.sync_dirty_mark(index, frame);
        }
    }

    /// Brings the tree's DIRTY mark in line with the page's DIRTY flag.
    /// Every clean<->dirty flag change is followed by one of these, so the
    /// last one (under the writer lock) sees the final state. Nothing if
    /// the slot no longer holds `frame`: the page was detached, and the
    /// mark at `index` is a newer page's (or none).
    pub(crate) fn sync_dirty_mark(&self, index: u64, frame: FrameId) {
        let g = self.tree.lock();
        let guard = epoch::pin();
        if !self
            .tree
            .lookup(index, &guard)
            .is_some_and(|s| slot::holds(s.load(), frame))
        {
            return;
        }
        if self.pool.flags(frame) & flags::DIRTY != 0 {
            self.tree.set_mark(index, Mark::Dirty, &g);
        } else {
            self.tree.clear_mark(index, Mark::Dirty, &g);
        }
    }
}
