//! The memory-management core of an address space ([`MmCore`]): its page
//! table, ASID and CPU mask, shared by the space and by every region
//! (which the file's reverse map holds, so the page map can reach the
//! page table and the TLBs without the address space).
//!
//! Layer: above [`Machine`] (which delivers the shootdowns) and the page
//! table; below lazy MMU mode, regions and everything that changes entries.

use std::sync::Arc;

use pagemap::FlushTarget;

use crate::machine::Machine;
use crate::pagetable::PageTable;
use crate::sync::{AtomicU64, Ordering};

/// What an address space shares with its regions (which the reverse maps
/// hold): the page table, the ASID and the CPUs that may cache it.
pub(crate) struct MmCore {
    pub(crate) asid: u64,
    pub(crate) pt: PageTable,
    /// Bit i: CPU i may hold translations of this space.
    pub(crate) cpumask: AtomicU64,
    /// Unmappers of this space (munmap, mprotect, teardown) between their
    /// first entry change and the end of their shootdown: while non-zero, a
    /// CPU may still cache an entry that is already gone from the table
    /// (Linux's `mm->tlb_flush_pending`). Another path that finds an entry
    /// empty must then shoot the space down itself before it frees or cuts
    /// the page behind it (see `Vmr::add_to_batch`).
    pub(crate) flush_pending: AtomicU64,
    pub(crate) machine: Arc<Machine>,
    /// Entries of this space turned into swap entries.
    pub(crate) swapped_out: std::sync::atomic::AtomicU64,
}

impl MmCore {
    /// An empty page table on `machine`, with a fresh ASID (known to the
    /// machine's swap reverse map, if it has swap).
    pub(crate) fn new(machine: Arc<Machine>) -> Arc<MmCore> {
        let core = Arc::new(MmCore {
            asid: machine.new_asid(),
            pt: PageTable::new(),
            cpumask: AtomicU64::new(0),
            flush_pending: AtomicU64::new(0),
            machine,
            swapped_out: std::sync::atomic::AtomicU64::new(0),
        });
        if let Some(anon) = &core.machine.anon {
            // Swap's reverse map walks every space of the machine.
            let weak: std::sync::Weak<dyn crate::anon::AnonSpace> = Arc::downgrade(&core) as _;
            anon.rmap.add(weak);
        }
        core
    }

    /// A CPU is about to walk this space's page table.
    #[inline]
    pub(crate) fn note_cpu(&self, cpu: usize) {
        let bit = 1u64 << cpu;
        // SeqCst: pairs with the shootdown's SeqCst load (see Machine::shootdown).
        // When the bit is already set, it was set (SeqCst) by an earlier access
        // on this CPU, under the CPU's TLB lock that we hold now: that set
        // happens-before our SeqCst PTE read, which is all the pairing needs,
        // so no fence here (bits are never cleared).
        if self.cpumask.load(Ordering::Relaxed) & bit == 0 {
            self.cpumask.fetch_or(bit, Ordering::SeqCst);
        }
    }

    /// An unmapper is about to change entries of this space. SeqCst, before
    /// the entry changes: a path that reads an entry this unmapper cleared
    /// (its SeqCst load reads from our SeqCst swap, Release) then sees this
    /// count (see [`flush_pending`](Self::flush_pending)).
    pub(crate) fn begin_flush_pending(&self) {
        self.flush_pending.fetch_add(1, Ordering::SeqCst);
    }

    /// The unmapper's shootdown has completed. Release: its flush happens
    /// before a path that sees the count drop.
    pub(crate) fn end_flush_pending(&self) {
        let old = self.flush_pending.fetch_sub(1, Ordering::Release);
        assert!(old > 0, "flush_pending underflow");
    }

    /// Whether some unmapper's shootdown of this space may still be pending
    /// (read after the entries it looked at). SeqCst.
    pub(crate) fn flush_pending(&self) -> bool {
        self.flush_pending.load(Ordering::SeqCst) != 0
    }

    /// Shoots down pages `first..=last` of this space.
    pub(crate) fn shootdown(&self, first_vpn: u64, last_vpn: u64) {
        self.machine
            .shootdown(self.asid, &self.cpumask, first_vpn, last_vpn);
    }
}

/// A space as its machine's swap reverse map sees it.
impl crate::anon::AnonSpace for MmCore {
    fn entry(&self, vpn: u64) -> Option<&crate::pte::PteCell> {
        self.pt.get(vpn)
    }

    fn target(self: Arc<Self>) -> Arc<dyn FlushTarget> {
        self
    }

    fn swapped_out(&self) {
        self.swapped_out
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A space's TLBs, as the page map's shootdown batches see them.
impl FlushTarget for MmCore {
    fn id(&self) -> u64 {
        self.asid
    }

    fn flush(&self, vpns: Option<(u64, u64)>) {
        let (first, last) = vpns.unwrap_or((0, u64::MAX));
        self.machine
            .shootdown(self.asid, &self.cpumask, first, last);
    }
}
