//! The setup every integration test of vmr repeats: a frame pool, a store,
//! a page map over them, a machine, and address spaces mapping the file.
//!
//! Each test crate uses only part of it, hence the `dead_code` allowance at
//! its `mod common;`.

use std::sync::{Arc, Mutex, MutexGuard};

use pagemap::{BackingStore, FramePool, MemStore, PageMap, PAGE_SIZE};
use vmr::{AddressSpace, Advice, Fault, Machine, MapFlags, MapRequest, Prot};

/// A page, as an address-space length.
pub const PAGE: u64 = PAGE_SIZE as u64;

/// A machine and one file over a pool: what a test maps and runs CPUs on.
///
/// Holds no address space: a test makes its own (with [`Rig::space`]), so
/// that it decides when each is created and dropped. The fields are in the
/// order the tests used to drop their locals (machine first, pool last).
pub struct Rig<S: BackingStore + 'static = MemStore> {
    pub machine: Arc<Machine>,
    pub file: Arc<PageMap>,
    pub store: Arc<S>,
    pub pool: Arc<FramePool>,
}

impl Rig {
    /// `frames` frames, `cpus` CPUs, an empty store.
    pub fn new(frames: usize, cpus: usize) -> Rig {
        Rig::with_store(frames, cpus, Arc::new(MemStore::new()))
    }

    /// As [`Rig::new`], with pages `0..pages` of the store filled with
    /// `index + 0x10` (so that a read shows which page it reached).
    pub fn seeded(frames: usize, cpus: usize, pages: u64) -> Rig {
        let store = Arc::new(MemStore::new());
        for i in 0..pages {
            store.set_page(i, &[i as u8 + 0x10; PAGE_SIZE]);
        }
        Rig::with_store(frames, cpus, store)
    }
}

impl<S: BackingStore + 'static> Rig<S> {
    /// `frames` frames, `cpus` CPUs, the file over `store`.
    pub fn with_store(frames: usize, cpus: usize, store: Arc<S>) -> Rig<S> {
        let pool = Arc::new(FramePool::new(frames).unwrap());
        let file = PageMap::new(pool.clone(), store.clone());
        Rig {
            machine: Machine::new(pool.clone(), cpus),
            file,
            store,
            pool,
        }
    }

    /// A new address space on the machine.
    pub fn space(&self) -> Arc<AddressSpace> {
        AddressSpace::new(self.machine.clone())
    }

    /// A request for `pages` pages of the file from its start (for a test to
    /// adjust before mapping it).
    pub fn request(&self, pages: u64, prot: Prot, flags: MapFlags) -> MapRequest {
        MapRequest::new(self.file.clone(), pages * PAGE, prot, flags)
    }

    /// Maps `pages` pages of the file from its start into `s`; the address.
    pub fn mmap(&self, s: &AddressSpace, pages: u64, prot: Prot, flags: MapFlags) -> u64 {
        map(s, &self.file, pages, prot, flags)
    }

    /// Maps `pages` pages of the file from page `pgoff` into `s`; the address.
    pub fn map_at(
        &self,
        s: &AddressSpace,
        pgoff: u64,
        pages: u64,
        prot: Prot,
        flags: MapFlags,
    ) -> u64 {
        s.mmap(MapRequest {
            pgoff,
            ..self.request(pages, prot, flags)
        })
        .unwrap()
    }

    /// A new space with `pages` pages of the file mapped from its start: the
    /// space and the address.
    pub fn mapped(&self, pages: u64, prot: Prot, flags: MapFlags) -> (Arc<AddressSpace>, u64) {
        let space = self.space();
        let va = self.mmap(&space, pages, prot, flags);
        (space, va)
    }

    /// As [`Rig::mapped`], with `Advice::Random` (each fault maps its own
    /// page only, none around it).
    pub fn mapped_random(
        &self,
        pages: u64,
        prot: Prot,
        flags: MapFlags,
    ) -> (Arc<AddressSpace>, u64) {
        let space = self.space();
        let va = space
            .mmap(MapRequest {
                advice: Advice::Random,
                ..self.request(pages, prot, flags)
            })
            .unwrap();
        (space, va)
    }

    /// The byte at `va` of `s`, read through CPU `cpu`.
    pub fn read_byte(&self, cpu: usize, s: &AddressSpace, va: u64) -> Result<u8, Fault> {
        let mut b = [0u8];
        self.machine.cpu(cpu).read(s, va, &mut b)?;
        Ok(b[0])
    }

    /// Writes `v` at `va` of `s` through CPU `cpu`; it must succeed.
    pub fn write_byte(&self, cpu: usize, s: &AddressSpace, va: u64, v: u8) {
        self.machine.cpu(cpu).write(s, va, &[v]).unwrap();
    }
}

/// Maps `pages` pages of `file` from its start into `s`; the address.
pub fn map(s: &AddressSpace, file: &Arc<PageMap>, pages: u64, prot: Prot, flags: MapFlags) -> u64 {
    s.mmap(MapRequest::new(file.clone(), pages * PAGE, prot, flags))
        .unwrap()
}

/// One test of the crate at a time (for the races that need both cores).
static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the crate's test lock; a test that panicked does not poison it.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}
