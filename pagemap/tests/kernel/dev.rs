//! A block device behind a completion-based store: requests are queued to
//! a device thread, which "DMAs" by physical address (through the
//! machine's direct map) and completes them from there, as an interrupt
//! handler would.

use std::collections::HashMap;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use pagemap::{PageBuf, ReadIo, StoreControl, SubmitStore, WriteIo, PAGE_SIZE};

use super::mmu::{self, Hw};

enum Req {
    Read(ReadIo),
    Write(WriteIo),
}

type Blocks = Arc<Mutex<HashMap<u64, Box<PageBuf>>>>;

/// The device: its blocks, and the thread that serves the queue.
pub struct Device {
    queue: Mutex<Option<Sender<Req>>>,
    blocks: Blocks,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Device {
    /// A device whose requests name frames of `hw`'s memory.
    pub fn new(hw: &Arc<Hw>) -> Self {
        let (tx, rx) = channel::<Req>();
        let blocks = Blocks::default();
        let (b, hw) = (blocks.clone(), hw.clone());
        let thread = std::thread::spawn(move || {
            for req in rx {
                match req {
                    Req::Read(mut io) => {
                        // The loader owns the frame until completion; the
                        // request's buffer is that frame, where the
                        // physical address says.
                        let mem = hw.mem.ptr_of_phys(io.phys_addr());
                        assert_eq!(io.buf().as_ptr(), mem.as_ptr().cast_const());
                        match b.lock().unwrap().get(&io.index()) {
                            Some(p) => io.buf().copy_from_slice(&p[..]),
                            None => io.buf().fill(0),
                        }
                        io.complete(Ok(()));
                    }
                    Req::Write(io) => {
                        // DMA out of the frame by its physical address:
                        // word loads, as the frame may be written meanwhile.
                        let mem = hw.frame_mem(io.phys_addr());
                        assert_eq!(mem, io.as_ptr());
                        let bytes = mmu::frame_bytes(mem);
                        let page: Box<PageBuf> = bytes.into_boxed_slice().try_into().unwrap();
                        b.lock().unwrap().insert(io.index(), page);
                        io.complete(Ok(()));
                    }
                }
            }
        });
        Self {
            queue: Mutex::new(Some(tx)),
            blocks,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Block `index` as stored (`None`: never written).
    pub fn page(&self, index: u64) -> Option<Box<PageBuf>> {
        self.blocks.lock().unwrap().get(&index).cloned()
    }

    /// Stores block `index` directly (set-up).
    pub fn set_page(&self, index: u64, bytes: &[u8; PAGE_SIZE]) {
        self.blocks.lock().unwrap().insert(index, Box::new(*bytes));
    }

    fn send(&self, req: Req) {
        let q = self.queue.lock().unwrap();
        q.as_ref()
            .expect("device running")
            .send(req)
            .expect("device thread alive");
    }
}

impl SubmitStore for Device {
    fn submit_read(&self, io: ReadIo) {
        self.send(Req::Read(io));
    }

    fn submit_write(&self, io: WriteIo) {
        self.send(Req::Write(io));
    }
}

impl StoreControl for Device {
    fn set_size(&self, bytes: u64) -> Result<(), pagemap::StoreError> {
        // A device without an end: whole blocks past the cut go (the map
        // never writes bytes past its size).
        let end = bytes.div_ceil(pagemap::PAGE_SIZE as u64);
        self.blocks.lock().unwrap().retain(|&i, _| i < end);
        Ok(())
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // Closing the queue ends the thread; join it so that no request
        // (holding the pool) outlives the device.
        drop(self.queue.get_mut().unwrap().take());
        if let Some(t) = self.thread.get_mut().unwrap().take() {
            t.join().expect("device thread panicked");
        }
    }
}
