//! The anonymous-memory workload (`--anon`): the working set is an
//! anonymous mapping of `--file-size` bytes in one address space of vmr's
//! simulated machine, over a frame pool of `--pool` frames, paged to a swap
//! file in `--dir`; every thread touches it through its own CPU (faults page
//! pages in, reclaim pages others out). The same run is made twice: with
//! per-page BUSY paging (this library's), and with every page-in and
//! page-out behind one mutex (the Zephyr seed's `z_mm_paging_lock`), and
//! both are verified byte for byte against the model.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use pagemap::swap::FileSwap;
use pagemap::PAGE_SIZE;
use vmr::{AddressSpace, Machine, MapFlags, Prot};

use crate::engine::{make_pool, Counters, Engine};
use crate::model::pattern;

/// The address space and its machine; each worker thread takes a CPU of
/// its own at its first access.
pub struct AnonEngine {
    /// The machine (pool, CPUs, swap).
    pub machine: Arc<Machine>,
    /// The space holding the mapping.
    pub space: Arc<AddressSpace>,
    /// The mapping's first address.
    pub base: u64,
    next_cpu: AtomicUsize,
}

std::thread_local! {
    /// This thread's CPU, per engine (an engine's address).
    static CPU: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((0, usize::MAX)) };
}

impl AnonEngine {
    /// A machine with `cpus` CPUs, a pool of `frames` frames replaced by
    /// `policy`, swap in a fresh unlinked file in `dir` large enough for the
    /// whole mapping, and a `bytes`-long anonymous mapping; `serialized`:
    /// all paging behind one mutex.
    pub fn new(
        dir: &std::path::Path,
        bytes: u64,
        frames: usize,
        policy: &str,
        cpus: usize,
        serialized: bool,
    ) -> Result<Self, String> {
        let pool = make_pool(frames, policy)?;
        let pages = bytes / PAGE_SIZE as u64;
        // A location for every page, and room for clean copies of the
        // resident ones.
        let slots = u32::try_from(pages + frames as u64)
            .map_err(|_| format!("{pages} pages: too many for a swap file"))?;
        let swap = FileSwap::temp(dir, slots)
            .map_err(|e| format!("a swap file in {}: {e}", dir.display()))?;
        let machine = Machine::with_swap(pool, cpus.clamp(1, Machine::MAX_CPUS), Arc::new(swap))
            .map_err(|e| format!("swap of {slots} pages: {e}"))?;
        machine
            .swap()
            .expect("made with swap")
            .set_serialized(serialized);
        let space = AddressSpace::new(machine.clone());
        let base = space
            .mmap_anonymous(None, bytes, Prot::RW, MapFlags::PRIVATE)
            .map_err(|e| format!("mapping {bytes} bytes of anonymous memory: {e}"))?;
        Ok(Self {
            machine,
            space,
            base,
            next_cpu: AtomicUsize::new(0),
        })
    }

    /// This thread's CPU.
    fn cpu(&self) -> &vmr::Cpu {
        let me = self as *const Self as usize;
        let id = CPU.with(|c| {
            let (cpu, owner) = c.get();
            if owner == me {
                return cpu;
            }
            let cpu = self.next_cpu.fetch_add(1, Ordering::Relaxed) % self.machine.cpus().len();
            c.set((cpu, me));
            cpu
        });
        self.machine.cpu(id)
    }

    /// Writes version 0 of every page (the run's starting content), through
    /// CPU 0: most of it is paged out on the way (the set is larger than
    /// the pool).
    pub fn fill(&self, seed: u64, pages: u64) -> Result<(), String> {
        let mut page = [0u8; PAGE_SIZE];
        for p in 0..pages {
            pattern(seed, p, 0, &mut page);
            self.write(p * PAGE_SIZE as u64, &page)?;
        }
        Ok(())
    }

    /// Counters: faults on paged-out pages that found them in memory (the
    /// swap cache) and page-ins as hits/misses, swap reads and writes as
    /// store reads and writes, swap-outs clean and dirty as evictions.
    pub fn counters(&self) -> Counters {
        let swap = self.machine.swap().expect("made with swap").stats();
        let pool = self.machine.pool().stats();
        Counters {
            hits: swap.cache_hits.saturating_sub(swap.page_ins),
            misses: swap.page_ins,
            evictions_clean: swap.evicted_clean + swap.lazy_freed,
            evictions_dirty: swap.evicted_dirty,
            store_reads: swap.page_ins,
            store_writes: swap.page_outs,
            direct_reclaims: pool.direct_reclaims,
            reclaimed: pool.reclaimed,
        }
    }
}

impl Engine for AnonEngine {
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
        self.cpu()
            .read(&self.space, self.base + offset, buf)
            .map_err(|e| format!("read at {offset}: {e}"))
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), String> {
        self.cpu()
            .write(&self.space, self.base + offset, data)
            .map_err(|e| format!("write at {offset}: {e}"))
    }
}

/// The counters of a run: `after - before`.
pub fn delta(before: Counters, after: Counters) -> Counters {
    Counters {
        hits: after.hits - before.hits,
        misses: after.misses - before.misses,
        evictions_clean: after.evictions_clean - before.evictions_clean,
        evictions_dirty: after.evictions_dirty - before.evictions_dirty,
        store_reads: after.store_reads - before.store_reads,
        store_writes: after.store_writes - before.store_writes,
        direct_reclaims: after.direct_reclaims - before.direct_reclaims,
        reclaimed: after.reclaimed - before.reclaimed,
    }
}

/// Seconds since `t`.
pub fn since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}
