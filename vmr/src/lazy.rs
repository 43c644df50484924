//! Lazy MMU mode, with the nesting semantics of Linux's lazy_mmu_mode (the
//! 2025 patch "mm: enable lazy_mmu sections to nest"): a per-thread `count`
//! and `enabled` state.
//!
//! | call | architecture hook | count | enabled |
//! | --- | --- | --- | --- |
//! | outermost `enable` | enter | 1 | yes |
//! | nested `enable` | none | +1 | yes |
//! | `pause` (any depth) | leave | same | no |
//! | `resume` | enter | same | yes |
//! | nested `disable` | flush | -1 | yes |
//! | outermost `disable` | leave | 0 | no |
//!
//! While enabled, kernel-side PTE updates made through `queue` are buffered
//! and reach the page table only at a flush or a leave, so CPUs see the old
//! entries until then. munmap and mprotect run their PTE changes in a lazy
//! section and settle them (shootdown, dirty bits) after it ends.
//!
//! Misuse is caught: `disable` at depth 0 and `enable` past 255 levels panic
//! (Linux's VM_BUG_ON there); `enable` while paused, `pause` when not enabled
//! and `resume` when not paused are debug assertions (Linux's VM_WARN_ON).
//!
//! Layer (within the crate): above `mm`, the core of an address space, whose
//! page table the buffered updates go to; below the paths that change entries
//! in batches (the unmap paths, fork, the page map's removal protocols).

use std::cell::RefCell;
use std::sync::Arc;

use crate::mm::MmCore;

/// A PTE change that lazy mode can buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PteOp {
    /// Clear the entry.
    Clear,
    /// Apply `f(old)`; `None` leaves the entry as it is.
    Update(fn(u64, u64) -> Option<u64>, u64),
}

struct Pending {
    mm: Arc<MmCore>,
    vpn: u64,
    op: PteOp,
    /// Handed back with the old value when applied.
    tag: usize,
}

/// An applied change: `(tag, vpn, old PTE)`.
pub(crate) type Applied = (usize, u64, u64);

#[derive(Default)]
struct State {
    count: u8,
    enabled: bool,
    pending: Vec<Pending>,
    applied: Vec<Applied>,
    stats: LazyMmuStats,
}

/// How often this thread's lazy MMU hooks ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LazyMmuStats {
    /// Architecture enters (outermost enable, resume).
    pub enters: u64,
    /// Architecture leaves (outermost disable, pause).
    pub leaves: u64,
    /// Flushes (nested disable).
    pub flushes: u64,
    /// PTE updates buffered and then applied.
    pub batched: u64,
}

crate::sync::thread_local! {
    static STATE: RefCell<State> = RefCell::default();
}

/// This thread's lazy MMU state (loom's thread-local under `cfg(pagemap_loom)`, so
/// every model thread has its own).
fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

fn arch_enter(s: &mut State) {
    s.stats.enters += 1;
}

fn arch_leave(s: &mut State) {
    s.stats.leaves += 1;
    apply(s);
}

fn arch_flush(s: &mut State) {
    s.stats.flushes += 1;
    apply(s);
}

/// Makes the buffered updates visible, in order.
fn apply(s: &mut State) {
    for p in s.pending.drain(..) {
        let Some(pte) = p.mm.pt.get(p.vpn) else {
            continue;
        };
        // One atomic read-modify-write each (see `PteCell`).
        let old = match p.op {
            PteOp::Clear => pte.swap(0),
            PteOp::Update(f, arg) => match pte.update(|old| f(old, arg)) {
                Ok(old) => old,
                Err(_) => continue,
            },
        };
        s.stats.batched += 1;
        s.applied.push((p.tag, p.vpn, old));
    }
}

/// Enters lazy MMU mode, or nests one level deeper.
pub fn lazy_mmu_mode_enable() {
    with_state(|s| {
        assert!(s.count < u8::MAX, "lazy MMU mode nested too deep");
        debug_assert!(
            s.count == 0 || s.enabled,
            "lazy_mmu_mode_enable while paused"
        );
        if s.count == 0 {
            arch_enter(s);
            s.enabled = true;
        }
        s.count += 1;
    })
}

/// Leaves one level: the outermost leaves the mode, a nested one flushes.
pub fn lazy_mmu_mode_disable() {
    with_state(|s| {
        assert!(s.count > 0, "lazy_mmu_mode_disable without enable");
        debug_assert!(s.enabled, "lazy_mmu_mode_disable while paused");
        s.count -= 1;
        if s.count == 0 {
            s.enabled = false;
            arch_leave(s);
        } else {
            arch_flush(s);
        }
    })
}

/// Leaves the mode whatever the depth, until [`lazy_mmu_mode_resume`].
pub fn lazy_mmu_mode_pause() {
    with_state(|s| {
        debug_assert!(
            s.count > 0 && s.enabled,
            "lazy_mmu_mode_pause when not enabled"
        );
        s.enabled = false;
        arch_leave(s);
    })
}

/// Re-enters the mode at the depth it was paused at.
pub fn lazy_mmu_mode_resume() {
    with_state(|s| {
        debug_assert!(
            s.count > 0 && !s.enabled,
            "lazy_mmu_mode_resume when not paused"
        );
        arch_enter(s);
        s.enabled = true;
    })
}

/// Whether this thread is in lazy MMU mode now.
pub fn in_lazy_mmu_mode() -> bool {
    with_state(|s| s.enabled)
}

/// This thread's `(count, enabled)`.
pub fn lazy_mmu_state() -> (u8, bool) {
    with_state(|s| (s.count, s.enabled))
}

/// This thread's hook counters.
pub fn lazy_mmu_stats() -> LazyMmuStats {
    with_state(|s| s.stats)
}

/// Changes a PTE now, or, in lazy mode, at the next flush or leave. The old
/// value is handed back through [`take_applied`] with `tag`.
pub(crate) fn queue(mm: &Arc<MmCore>, vpn: u64, op: PteOp, tag: usize) {
    with_state(|s| {
        s.pending.push(Pending {
            mm: mm.clone(),
            vpn,
            op,
            tag,
        });
        if !s.enabled {
            apply(s);
        }
    })
}

/// The changes applied so far (and not yet taken) on this thread.
pub(crate) fn take_applied() -> Vec<Applied> {
    with_state(|s| std::mem::take(&mut s.applied))
}

#[cfg(all(test, not(pagemap_loom)))]
mod tests {
    use super::*;

    fn step(f: fn(), hook: &str, count: u8, enabled: bool) {
        let before = lazy_mmu_stats();
        f();
        let after = lazy_mmu_stats();
        let ran = match (
            after.enters - before.enters,
            after.leaves - before.leaves,
            after.flushes - before.flushes,
        ) {
            (1, 0, 0) => "enter",
            (0, 1, 0) => "leave",
            (0, 0, 1) => "flush",
            (0, 0, 0) => "none",
            other => panic!("several hooks ran: {other:?}"),
        };
        assert_eq!((ran, lazy_mmu_state()), (hook, (count, enabled)));
        assert_eq!(in_lazy_mmu_mode(), enabled);
    }

    /// The module docs' table (the Linux patch's summary), line by line.
    #[test]
    fn seed_table() {
        step(lazy_mmu_mode_enable, "enter", 1, true);
        step(lazy_mmu_mode_enable, "none", 2, true);
        step(lazy_mmu_mode_pause, "leave", 2, false);
        step(lazy_mmu_mode_resume, "enter", 2, true);
        step(lazy_mmu_mode_disable, "flush", 1, true);
        step(lazy_mmu_mode_disable, "leave", 0, false);
    }

    #[test]
    #[should_panic(expected = "without enable")]
    fn disable_at_depth_zero_panics() {
        lazy_mmu_mode_disable();
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "while paused")]
    fn enable_while_paused_is_caught() {
        lazy_mmu_mode_enable();
        lazy_mmu_mode_pause();
        lazy_mmu_mode_enable();
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "when not enabled")]
    fn pause_when_not_enabled_is_caught() {
        lazy_mmu_mode_pause();
    }

    #[test]
    fn updates_are_buffered_until_flush_or_leave() {
        use crate::pte;
        use pagemap::FramePool;
        let machine = crate::Machine::new(Arc::new(FramePool::new(1).unwrap()), 1);
        let mm = MmCore::new(machine);
        let p = mm.pt.get_or_alloc(5);
        p.store(pte::make(1, pte::PRESENT | pte::WRITABLE));
        fn ro(old: u64, _: u64) -> Option<u64> {
            Some(old & !pte::WRITABLE)
        }
        lazy_mmu_mode_enable();
        queue(&mm, 5, PteOp::Update(ro, 0), 7);
        assert_ne!(p.load() & pte::WRITABLE, 0, "buffered");
        lazy_mmu_mode_enable();
        queue(&mm, 5, PteOp::Clear, 8);
        lazy_mmu_mode_disable(); // nested: flush
        assert_eq!(p.load(), 0, "visible at the nested disable");
        let applied = take_applied();
        assert_eq!(applied.len(), 2);
        assert_eq!(applied[0].0, 7);
        assert_eq!(applied[1], (8, 5, pte::make(1, pte::PRESENT)));
        p.store(pte::make(1, pte::PRESENT));
        queue(&mm, 5, PteOp::Clear, 9);
        assert_ne!(p.load(), 0);
        lazy_mmu_mode_disable(); // outermost: leave
        assert_eq!(p.load(), 0, "visible at leave");
        assert_eq!(take_applied().len(), 1);
        queue(&mm, 5, PteOp::Clear, 10);
        assert_eq!(take_applied().len(), 1, "outside the mode: at once");
    }
}
