//! The machine's side of swap: its [`Swap`] space, the [`AnonOwner`] that
//! registers its private frames with the pool's reclaim, and the reverse
//! map from a private frame back to the entries that name it
//! ([`SpacesRmap`], the [`AnonRmap`] of the machine's address spaces).
//!
//! The reverse map of a private frame is its virtual page number (the
//! frame's rmap key, recorded when the frame is made): fork keeps addresses,
//! so every entry that can name the frame is at that page in one of the
//! machine's address spaces. The walk looks at that one entry of each live
//! space (Linux's `anon_vma` narrows it to the spaces of one fork tree;
//! here the machine's spaces are few). It takes no address-space lock (a
//! swap-out runs inside direct reclaim, in a faulting thread that holds
//! one): every entry change is one CAS that re-checks the entry.
//!
//! Layer: above `pte` (it knows a space only as an [`AnonSpace`], which
//! `mm`'s core implements); below `machine`, which owns it, `mm` and the
//! fault handler.

use std::sync::{Arc, Weak};

use pagemap::swap::{AnonOwner, AnonRmap, Location, Swap, SwapStore};
use pagemap::{FlushTarget, FrameId, FramePool, ShootdownBatch};

use crate::pte::{self, PteCell};
use crate::sync::Mutex;

/// An address space as the reverse map sees it: its entries and its
/// shootdowns (implemented by the space's core, `mm::MmCore`, above this
/// layer).
pub(crate) trait AnonSpace: Send + Sync {
    /// The entry of `vpn`, if its table page exists.
    fn entry(&self, vpn: u64) -> Option<&PteCell>;
    /// The space's TLBs, for a shootdown batch.
    fn target(self: Arc<Self>) -> Arc<dyn FlushTarget>;
    /// One of its entries became a swap entry (statistics).
    fn swapped_out(&self);
}

/// The machine's address spaces, as the reverse map of its private frames.
#[derive(Default)]
pub(crate) struct SpacesRmap {
    /// Every space made on the machine (dead ones pruned when a space is
    /// added). A leaf lock: held for a walk, which takes only TLB locks
    /// (its shootdowns), never while allocating.
    spaces: Mutex<Vec<Weak<dyn AnonSpace>>>,
}

impl SpacesRmap {
    pub(crate) fn add(&self, space: Weak<dyn AnonSpace>) {
        let mut spaces = self.spaces.lock();
        spaces.retain(|w| w.strong_count() > 0);
        spaces.push(space);
    }

    /// Calls `f` with each live space's entry at `vpn`.
    fn each(&self, vpn: u64, f: &mut dyn FnMut(&Arc<dyn AnonSpace>, &PteCell)) {
        let spaces = self.spaces.lock();
        for w in spaces.iter() {
            // An upgraded Arc is never the last here: the space's owner
            // keeps one while the space lives (and MmCore's drop takes no
            // lock of ours anyway).
            let Some(space) = w.upgrade() else { continue };
            if let Some(p) = space.entry(vpn) {
                f(&space, p);
            }
        }
    }
}

impl AnonRmap for SpacesRmap {
    fn referenced(&self, vpn: u64, frame: FrameId) -> bool {
        let mut young = false;
        self.each(vpn, &mut |_, p| {
            // Rule 3 of `PteCell`: CAS, never a blind store of A/D bits.
            young |= p
                .update(|old| {
                    // A locked entry (copy-on-write in flight) is left to
                    // its owner, who overwrites it.
                    (pte::frame(old) == frame.get()
                        && old & pte::ACCESSED != 0
                        && old & pte::LOCK == 0)
                        .then_some(old & !pte::ACCESSED)
                })
                .is_ok();
        });
        young
    }

    fn pinned(&self, vpn: u64, frame: FrameId) -> bool {
        let mut pinned = false;
        self.each(vpn, &mut |_, p| {
            let old = p.load();
            pinned |= pte::frame(old) == frame.get() && old & pte::MLOCKED != 0;
        });
        pinned
    }

    fn try_to_unmap(
        &self,
        vpn: u64,
        frame: FrameId,
        loc: Location,
        swap: &Swap,
        batch: &mut ShootdownBatch,
    ) -> bool {
        let mut locked = false;
        let swapped = pte::swap_entry(loc.get());
        self.each(vpn, &mut |core, p| loop {
            let old = p.load();
            if pte::frame(old) != frame.get() || old & pte::PRIVATE == 0 || old & pte::LOCK != 0 {
                return; // not this frame, or a copy-on-write in flight
            }
            if old & pte::MLOCKED != 0 {
                locked = true;
                return;
            }
            // The entry's count on the location before the entry names it.
            if swap.dup(loc).is_err() {
                return;
            }
            if p.cas(old, swapped).is_ok() {
                swap.unmapped(frame, old & pte::DIRTY != 0);
                core.swapped_out();
                if old & pte::PRESENT != 0 {
                    batch.add(core.clone().target(), vpn, vpn);
                }
                return;
            }
            swap.free_entry(loc); // a CPU set A/D meanwhile: look again
        });
        locked
    }
}

/// Swap for a machine: the space, its owner registration and the rmap.
pub(crate) struct AnonSide {
    pub(crate) owner: Arc<AnonOwner>,
    pub(crate) rmap: Arc<SpacesRmap>,
}

impl AnonSide {
    pub(crate) fn new(
        pool: &Arc<FramePool>,
        store: Arc<dyn SwapStore>,
    ) -> Result<Self, pagemap::Error> {
        if store.slots() > pte::MAX_SWAP_LOCATIONS {
            return Err(pagemap::Error::InvalidCapacity {
                requested: store.slots() as usize,
                max: pte::MAX_SWAP_LOCATIONS as usize,
            });
        }
        let swap = Swap::new(pool.clone(), store)?;
        let rmap = Arc::new(SpacesRmap::default());
        let owner = AnonOwner::new(swap, rmap.clone());
        Ok(Self { owner, rmap })
    }

    pub(crate) fn swap(&self) -> &Arc<Swap> {
        self.owner.swap()
    }
}
