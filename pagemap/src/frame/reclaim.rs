//! Reclaim: the pool's registry of the page maps that draw on it, and the
//! reclaim of a batch of victims the eviction policy chooses among all of
//! their pages (Linux's `shrink_folio_list` after `isolate_lru_folios`,
//! without isolation: a victim stays on the policy's lists until the page
//! leaves its map).
//!
//! A batch: the policy's `select` looks at frames and asks the pool about
//! each ([`FramePool::check`]: the page's referenced bit, tested and cleared,
//! and the accessed bits of its page table entries); the victims are grouped
//! by page map, and each map evicts its group with the removal passes (mark,
//! revoke, one shootdown per address space, reap, write back the dirty ones,
//! yank), which free the frames. Nothing here allocates: the candidates and
//! victims live in one of a few reusable scratch buffers
//! ([`RECLAIMERS`]), each a mutex, so two reclaimers never share one.

use alloc::boxed::Box;
use core::ptr::NonNull;

use alloc::vec::Vec as AVec;
use alloc::vec::Vec;

use super::policy::{Check, PolicyFrames};
use super::{flags, FrameId, FramePool};
use crate::sync::{Mutex, MutexGuard, Ordering};

/// Victims a reclaim batch takes at most (Linux's `SWAP_CLUSTER_MAX`).
pub const RECLAIM_BATCH: usize = 32;

/// Reclaimers that can run at once without waiting for a scratch buffer.
pub const RECLAIMERS: usize = 4;

/// A page map as reclaim sees it (implemented by `PageMap`; the frame layer
/// does not know the type).
pub(crate) trait Evictor: Send + Sync {
    /// Whether the page `index` in `frame` may be evicted now, and whether it
    /// was referenced since the last look (which clears the bits).
    /// `hits_told`: the policy hears of every hit (exact LRU), so the slot's
    /// referenced bit must not count again (only the page table's do).
    /// The second half says whether a `Busy` page is in flight (being
    /// loaded, evicted or written back: it will be free or evictable soon)
    /// rather than held.
    fn check(&self, index: u64, frame: FrameId, hits_told: bool) -> (Check, bool);
    /// Evicts what it can of `victims` (sorted by index, all its own),
    /// adding to `report`. Must not wait for a remover of its own map
    /// (the allocating thread may be one).
    /// `wait`: whether to wait for the map's remover lock (else a busy
    /// remover means the victims are kept).
    fn evict(&self, victims: &[(u64, FrameId)], wait: bool, report: &mut ReclaimReport);
    /// The map's statistics.
    fn map_stats(&self) -> super::MapStats;
    /// The last map reference to private frame `frame` went while the swap
    /// cache keeps it (an [`AnonOwner`](crate::swap::AnonOwner) frees it if
    /// no swap entry needs it). Page maps have no private frames.
    fn cache_only(&self, frame: FrameId) {
        let _ = frame;
    }
    /// One more reclaimer uses the map (see [`MapPin`]).
    fn pin(&self);
    /// That reclaimer is done with it.
    fn unpin(&self);
}

/// A registered page map: a pointer to it, valid while the map is
/// registered and while a [`MapPin`] of it lives. The map's drop
/// unregisters it first (no new pin can be taken after that: pins are taken
/// under the registry's read lock) and then waits for its pins to go
/// before anything of it is freed. Reclaim thus never owns a map: a map's
/// last `Arc` is always its user's, so its drop (and write-back) runs where
/// the user drops it, not later in a reclaiming thread (break12 found a
/// reopened file reading old bytes through that delay).
#[derive(Clone, Copy)]
struct Registered(NonNull<dyn Evictor>);

// SAFETY: the pointee is a `PageMap`, which is Send + Sync; the pointer is
// only dereferenced under the protocol above.
unsafe impl Send for Registered {}
// SAFETY: as for Send.
unsafe impl Sync for Registered {}

/// A reclaimer's use of a registered map, taken under the registry's read
/// lock; the map's drop waits for it.
pub(crate) struct MapPin {
    map: NonNull<dyn Evictor>,
    id: u32,
}

impl MapPin {
    /// The map.
    pub(crate) fn get(&self) -> &dyn Evictor {
        // SAFETY: pinned (see `Registered`): the map's drop waits for this
        // pin before it frees anything, so the pointee is alive.
        unsafe { self.map.as_ref() }
    }
}

impl Drop for MapPin {
    fn drop(&mut self) {
        mine::forget(self.id);
        self.get().unpin();
    }
}

/// Which map the calling thread pins (std only): a map whose last handle is
/// dropped inside this thread's own reclaim (the eviction's snapshot of a
/// mapping held the map's last `Arc`) must not wait for this thread's pin.
pub(crate) mod mine {
    #[cfg(all(feature = "std", not(pagemap_loom)))]
    std::thread_local! {
        static PINNED: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
    }

    pub(super) fn set(id: u32) {
        #[cfg(all(feature = "std", not(pagemap_loom)))]
        PINNED.with(|p| p.set(id));
        #[cfg(not(all(feature = "std", not(pagemap_loom))))]
        let _ = id;
    }

    pub(super) fn forget(id: u32) {
        #[cfg(all(feature = "std", not(pagemap_loom)))]
        PINNED.with(|p| {
            if p.get() == id {
                p.set(0);
            }
        });
        #[cfg(not(all(feature = "std", not(pagemap_loom))))]
        let _ = id;
    }

    /// Pins of map `id` the calling thread holds (0 or 1).
    pub(crate) fn pins_of(id: u32) -> usize {
        #[cfg(all(feature = "std", not(pagemap_loom)))]
        return PINNED.with(|p| usize::from(p.get() == id));
        #[cfg(not(all(feature = "std", not(pagemap_loom))))]
        {
            let _ = id;
            0
        }
    }
}

/// What one reclaim did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReclaimReport {
    /// Frames the policy considered (each looked at once by the pool's check).
    pub scanned: u64,
    /// Victims chosen.
    pub selected: u64,
    /// Pages evicted whose frames went back to the pool.
    pub freed: u64,
    /// Of those, pages that were dirty and were written back first.
    pub dirty: u64,
    /// Of those, pages some mapping had mapped (unmapped first).
    pub mapped: u64,
    /// Victims kept: taken by someone meanwhile, pinned, a write error, or
    /// their map busy with another remover or being dropped.
    pub kept: u64,
    /// Victims kept because their write-back failed (they stay dirty).
    pub write_errors: u64,
    /// TLB shootdowns issued (one per address space mapping victims, per
    /// map's group of victims).
    pub shootdowns: u64,
    /// Frames the policy looked at that were busy for the moment (being
    /// loaded, evicted or written back by someone else, or just freed):
    /// a reclaim that found only these will find more soon.
    pub in_flight: u64,
}

/// The registry and the scratch buffers of reclaim, kept in the pool.
pub(crate) struct Reclaim {
    /// The page maps drawing on the pool, sorted by id.
    maps: crate::sync::RwLock<Vec<(u32, Registered)>>,
    scratch: Box<[Mutex<Scratch>]>,
}

/// One reclaimer's buffers: bounded, allocated once.
struct Scratch {
    candidates: [FrameId; RECLAIM_BATCH],
    /// (owner, index, frame) of the chosen victims.
    victims: Vec<(u32, u64, FrameId)>,
    /// One group's (index, frame) pairs.
    group: Vec<(u64, FrameId)>,
}

impl Reclaim {
    pub(crate) fn new() -> Self {
        let one = FrameId::new(1).expect("1 is a frame id");
        Self {
            maps: crate::sync::RwLock::new(Vec::new()),
            scratch: (0..RECLAIMERS)
                .map(|_| {
                    Mutex::new(Scratch {
                        candidates: [one; RECLAIM_BATCH],
                        victims: Vec::with_capacity(RECLAIM_BATCH),
                        group: Vec::with_capacity(RECLAIM_BATCH),
                    })
                })
                .collect(),
        }
    }

    fn scratch(&self) -> MutexGuard<'_, Scratch> {
        for s in self.scratch.iter() {
            if let Some(g) = s.try_lock() {
                return g;
            }
        }
        // All in use: wait for one (by a cheap per-thread choice; under
        // loom the first, as loom replays executions access by access).
        #[cfg(not(pagemap_loom))]
        let i = {
            let here = 0u8;
            (core::ptr::addr_of!(here) as usize >> 12) % self.scratch.len()
        };
        #[cfg(pagemap_loom)]
        let i = 0;
        self.scratch[i].lock()
    }

    /// A pin of map `id`, if it is registered.
    fn map(&self, id: u32) -> Option<MapPin> {
        let maps = self.maps.read();
        let at = maps.binary_search_by_key(&id, |e| e.0).ok()?;
        Some(Self::pin(&maps[at]))
    }

    /// Pins a registered map (the caller holds the registry's read lock).
    fn pin(e: &(u32, Registered)) -> MapPin {
        let pin = MapPin {
            map: e.1 .0,
            id: e.0,
        };
        pin.get().pin();
        mine::set(e.0);
        pin
    }
}

impl FramePool {
    /// Registers a page map (its constructor does).
    ///
    /// # Safety
    /// `map` points to a live map with id `id`, which unregisters itself in
    /// its drop and then waits for its pins before it frees anything.
    pub(crate) unsafe fn register(&self, id: u32, map: NonNull<dyn Evictor>) {
        let mut maps = self.reclaim.maps.write();
        // Ids are handed out in order but maps made on two threads may
        // register out of it: insert in place, keeping the list sorted.
        let at = match maps.binary_search_by_key(&id, |e| e.0) {
            Ok(_) => panic!("page map id {id} registered twice"),
            Err(at) => at,
        };
        maps.insert(at, (id, Registered(map)));
    }

    /// Forgets a page map (its drop does, before freeing its frames).
    pub(crate) fn unregister(&self, id: u32) {
        let mut maps = self.reclaim.maps.write();
        if let Ok(at) = maps.binary_search_by_key(&id, |e| e.0) {
            maps.remove(at);
        }
    }

    /// Pins of the registered maps (allocates: for statistics).
    pub(crate) fn registered_maps(&self) -> AVec<MapPin> {
        let maps = self.reclaim.maps.read();
        maps.iter().map(Reclaim::pin).collect()
    }

    /// Page maps registered now.
    pub fn nr_maps(&self) -> usize {
        self.reclaim.maps.read().len()
    }

    /// The policy's view of the frames.
    pub(crate) fn with_policy_frames<R>(&self, f: impl FnOnce(&PolicyFrames<'_>) -> R) -> R {
        let key = |id: FrameId| {
            let (owner, index) = self.owner(id);
            (u64::from(owner) << 40) | (index & ((1 << 40) - 1))
        };
        f(&PolicyFrames::new(&self.policy_words, &key))
    }

    /// Reclaims up to `want` pages (at most [`RECLAIM_BATCH`]) chosen by the
    /// eviction policy among the pages of every page map drawing on the
    /// pool. Clean victims leave without I/O, dirty ones are written back
    /// first (a failed write keeps the page, dirty), mapped ones are unmapped
    /// with one shootdown per address space; pages that are held, locked,
    /// loading, under writeback or pinned are never chosen.
    ///
    /// A load that finds the pool empty calls it (direct reclaim); so does
    /// the background [`Reclaimer`](crate::Reclaimer). Safe to call from any
    /// number of threads at once. A write-back that fails here keeps its
    /// page dirty and cached, counts in
    /// [`ReclaimReport::write_errors`], and is reported once by the map's
    /// next [`fsync`](crate::PageMap::fsync), as any write-back failure is
    /// (Linux's `errseq` semantics), even if a later write-back succeeds.
    pub fn reclaim(&self, want: usize) -> ReclaimReport {
        self.reclaim_with(want, true)
    }

    /// [`reclaim`](Self::reclaim); `wait`: see [`alloc_with`](Self::alloc_with).
    pub(crate) fn reclaim_with(&self, want: usize, wait: bool) -> ReclaimReport {
        let want = want.clamp(1, RECLAIM_BATCH);
        let mut report = ReclaimReport::default();
        let mut scratch = self.reclaim.scratch();
        let Scratch {
            candidates,
            victims,
            group,
        } = &mut *scratch;
        // The last map resolved, kept across checks (frames of one map
        // often come together): one registry look-up per change of map.
        let mut last: Option<(u32, MapPin)> = None;
        #[cfg(all(feature = "std", not(pagemap_loom)))]
        let t = std::time::Instant::now();
        let n = {
            let mut check = |id: FrameId| {
                report.scanned += 1;
                let (c, in_flight) = self.check(id, &mut last);
                report.in_flight += u64::from(in_flight);
                c
            };
            self.with_policy_frames(|frames| {
                self.policy
                    .select(frames, &mut check, &mut candidates[..want])
            })
        };
        #[cfg(all(feature = "std", not(pagemap_loom)))]
        self.stats.select.record(t.elapsed());
        victims.clear();
        for &id in &candidates[..n] {
            let (owner, index) = self.owner(id);
            victims.push((owner, index, id));
        }
        report.selected = n as u64;
        victims.sort_unstable();
        let mut at = 0;
        while at < victims.len() {
            let owner = victims[at].0;
            group.clear();
            while at < victims.len() && victims[at].0 == owner {
                group.push((victims[at].1, victims[at].2));
                at += 1;
            }
            let map = match last.take() {
                Some((id, m)) if id == owner => Some(m),
                _ => self.reclaim.map(owner),
            };
            match map {
                Some(map) => {
                    map.get().evict(group, wait, &mut report);
                    last = Some((owner, map));
                }
                None => report.kept += group.len() as u64,
            }
        }
        // Unpin after the scratch buffer is back (a dropping map waits).
        drop(scratch);
        drop(last);
        self.stats.reclaimed(&report);
        report
    }

    /// Evicts the page in frame `id` now, whatever owns it, and frees the
    /// frame (the Zephyr seed's `k_mem_page_frame_evict`): a page map's page
    /// is written back first if dirty and unmapped from every mapping (the
    /// removal passes reclaim uses); a private frame goes to swap through
    /// its [`AnonOwner`](crate::swap::AnonOwner). A free frame is left
    /// free. The page's referenced bits are ignored (and cleared).
    ///
    /// # Errors
    /// [`Error::Busy`](crate::Error::Busy) if `id` is not one of the pool's
    /// frames, or the frame cannot be freed now (held, locked, loading, under write-back, pinned, a private frame
    /// without an owner, its owner being dropped) or its write-back failed
    /// (the page stays, dirty, and the failure is reported by its map's
    /// next fsync); nothing changed then.
    pub fn evict_frame(&self, id: FrameId) -> Result<(), crate::Error> {
        if id.slot() >= self.capacity() {
            return Err(crate::Error::Busy);
        }
        if self.flags(id) & flags::FREE != 0 {
            return Ok(());
        }
        let mut last = None;
        let (c, _) = self.check(id, &mut last);
        let Some((_, map)) = last.filter(|_| c != Check::Busy) else {
            return Err(crate::Error::Busy);
        };
        let (_, index) = self.owner(id);
        let mut report = ReclaimReport::default();
        map.get().evict(&[(index, id)], true, &mut report);
        drop(map);
        self.stats.reclaimed(&report);
        if report.freed == 1 {
            Ok(())
        } else {
            Err(crate::Error::Busy)
        }
    }

    /// A private frame that only the swap cache keeps now: its owner
    /// decides (see [`Evictor::cache_only`]).
    pub(crate) fn cache_only(&self, id: FrameId) {
        let (owner, _) = self.owner(id);
        if owner != 0 {
            if let Some(pin) = self.reclaim.map(owner) {
                pin.get().cache_only(id);
            }
        }
    }

    /// Reclaim's look at frame `id`: [`Check::Busy`] unless it is a page
    /// map's page that could be evicted now; otherwise whether it was
    /// referenced since the last look (the slot's bit and the accessed
    /// bits of its page table entries, cleared as they are read).
    fn check(&self, id: FrameId, last: &mut Option<(u32, MapPin)>) -> (Check, bool) {
        let f = self.flags_relaxed(id);
        let moving = flags::FREE | flags::LOCKED | flags::WRITEBACK | flags::INFLIGHT | flags::BUSY;
        if f & moving != 0 {
            return (Check::Busy, true);
        }
        let (owner, index) = self.owner(id);
        // A private frame is reclaimable through its owner (an
        // `AnonOwner`, which swaps it out) if it has one.
        if (f & flags::PAGEMAP == 0 && owner == 0) || f & flags::DETACHED != 0 {
            return (Check::Busy, false);
        }
        if last.as_ref().is_none_or(|l| l.0 != owner) {
            *last = self.reclaim.map(owner).map(|m| (owner, m));
        }
        match last {
            Some((_, map)) => map.get().check(index, id, self.policy_on_hit),
            // A map being dropped: its frames come back soon.
            None => (Check::Busy, true),
        }
    }

    /// The flags, Relaxed (a hint for reclaim's checks: the eviction's own
    /// CAS decides).
    fn flags_relaxed(&self, id: FrameId) -> u32 {
        self.frame(id).flags.load(Ordering::Relaxed)
    }
}
