//! A simulated CPU's loads and stores ([`Cpu::read`], [`Cpu::write`]): each
//! page-sized access looks up the CPU's TLB, walks the page table on a miss
//! (setting ACCESSED and DIRTY as hardware does), and on a fault calls the
//! address space's fault handler and retries.
//!
//! Layer: the top, above [`AddressSpace`] (whose fault handler it calls and
//! whose core, `mm`, it walks and announces itself in) and `machine` (the
//! CPUs and their TLBs).

use pagemap::{FrameId, PAGE_SIZE};

use crate::error::{Access, Fault};
use crate::machine::{Cpu, Tlb, TlbEntry};
use crate::pte;
use crate::space::AddressSpace;
use crate::sync::Ordering;

/// How many times one access may fault before giving up.
const MAX_FAULTS: u32 = 1000;

impl Cpu {
    /// Loads `buf.len()` bytes at `va` in `space`, faulting pages in as needed.
    pub fn read(&self, space: &AddressSpace, va: u64, buf: &mut [u8]) -> Result<(), Fault> {
        let pool = space.machine().pool();
        self.access(
            space,
            va,
            buf.len(),
            Access::Read,
            &mut |frame, off, range| {
                // SAFETY: `access` calls this with the frame of a present,
                // readable translation this CPU holds (its TLB entry, under
                // its TLB lock): the owner handed it out, and no store fills
                // a frame an entry maps (only up-to-date pages are mapped).
                unsafe { pool.read(frame, off, &mut buf[range]) }.expect("in-page range");
            },
        )
    }

    /// Stores `data` at `va` in `space`, faulting pages in as needed.
    pub fn write(&self, space: &AddressSpace, va: u64, data: &[u8]) -> Result<(), Fault> {
        let pool = space.machine().pool();
        self.access(
            space,
            va,
            data.len(),
            Access::Write,
            &mut |frame, off, range| {
                // SAFETY: `frame` comes from a TLB entry that allows this
                // write (`try_access` checked it, holding the TLB lock that
                // every shootdown of it waits for), so its owner handed out
                // this writable translation and the entry's dirty bit tells
                // it the frame changed.
                unsafe { pool.mmu_write(frame, off, &data[range]) }.expect("in-page range");
            },
        )
    }

    fn access(
        &self,
        space: &AddressSpace,
        va: u64,
        len: usize,
        access: Access,
        f: &mut dyn FnMut(FrameId, usize, std::ops::Range<usize>),
    ) -> Result<(), Fault> {
        let page = PAGE_SIZE as u64;
        if va.checked_add(len as u64).is_none() {
            return Err(Fault::NoMapping { va });
        }
        let mut done = 0usize;
        while done < len {
            let cur = va + done as u64;
            let off = (cur % page) as usize;
            let n = (PAGE_SIZE - off).min(len - done);
            let mut faults = 0;
            while !self.try_access(space, cur / page, access == Access::Write, &mut |frame| {
                f(frame, off, done..done + n)
            }) {
                self.stats.faults.fetch_add(1, Ordering::Relaxed);
                space.handle_fault(cur, access)?;
                faults += 1;
                if faults >= MAX_FAULTS {
                    return Err(Fault::Livelock { va: cur });
                }
            }
            done += n;
        }
        Ok(())
    }

    /// One access to one page, as the hardware does it. `false`: it faults.
    #[inline]
    fn try_access(
        &self,
        space: &AddressSpace,
        vpn: u64,
        write: bool,
        f: &mut dyn FnMut(FrameId),
    ) -> bool {
        let mm = space.core();
        if vpn >= crate::pagetable::VA_END / PAGE_SIZE as u64 {
            return false;
        }
        // Held for the whole access: shootdowns wait for it to finish.
        let mut tlb = self.tlb.lock();
        if let Some(e) = tlb.lookup(mm.asid, vpn) {
            if write && !e.writable {
                e.valid = false;
                return false;
            }
            if write && !e.dirty {
                // First write through this entry: the hardware sets DIRTY in
                // the PTE atomically, re-checking that it still allows it.
                let frame = e.frame;
                let set = mm.pt.get(vpn).is_some_and(|p| {
                    p.update(|old| {
                        (pte::frame(old) == frame)
                            .then(|| pte::touched(old, true))
                            .flatten()
                    })
                    .is_ok()
                });
                if !set {
                    e.valid = false;
                    return false;
                }
                e.dirty = true;
            }
            let frame = FrameId::new(e.frame).expect("TLB entry has a frame");
            self.stats.tlb_hits.fetch_add(1, Ordering::Relaxed);
            f(frame);
            return true;
        }
        // Miss: announce ourselves before reading the PTE (see `shootdown`).
        mm.note_cpu(self.id);
        let Some(p) = mm.pt.get(vpn) else {
            return false;
        };
        // SeqCst read (the pairing with shootdowns needs a read, not a write).
        // The fault handler installs entries with ACCESSED (and DIRTY for a
        // write), so the access that follows a fault needs no write here.
        let seen = p.load();
        let new = match pte::touched(seen, write) {
            None => return false,
            Some(new) if new == seen => new,
            Some(_) => match p.update(|old| pte::touched(old, write)) {
                Ok(old) => pte::touched(old, write).expect("checked by fetch_update"),
                Err(_) => return false,
            },
        };
        let e = TlbEntry {
            valid: true,
            writable: new & pte::WRITABLE != 0,
            dirty: new & pte::DIRTY != 0,
            frame: pte::frame(new),
            asid: mm.asid,
            vpn,
        };
        tlb.entries[Tlb::slot(mm.asid, vpn)] = e;
        self.stats.tlb_misses.fetch_add(1, Ordering::Relaxed);
        f(FrameId::new(e.frame).expect("present PTE has a frame"));
        true
    }
}
