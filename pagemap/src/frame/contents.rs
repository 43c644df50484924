//! A frame's 4 KiB of contents: reads, writes, whole pages, and the
//! simulated MMU's write.

use super::{FrameId, FramePool};
use crate::error::Error;
use crate::sync::Ordering;
use crate::PAGE_SIZE;

impl FramePool {
    // ---- contents ---------------------------------------------------------

    /// Copies `buf.len()` bytes at `offset` out of the frame (what a CPU
    /// does through a translation to it; reading changes nothing).
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] if the range leaves the page.
    pub fn read(&self, id: FrameId, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        check_range(offset, buf.len())?;
        let words = self.words(id);
        let mut pos = offset;
        let mut out = 0;
        while out < buf.len() {
            let w = pos / 8;
            let b = pos % 8;
            let n = (8 - b).min(buf.len() - out);
            // Relaxed: contents are ordered by the slot word, the flags or the page lock.
            let bytes = words[w].load(Ordering::Relaxed).to_le_bytes();
            buf[out..out + n].copy_from_slice(&bytes[b..b + n]);
            pos += n;
            out += n;
        }
        Ok(())
    }

    /// Copies `data` into the frame at `offset`. Partial words are merged by
    /// CAS, so concurrent writers to other bytes of a word are not lost.
    pub(crate) fn write(&self, id: FrameId, offset: usize, data: &[u8]) -> Result<(), Error> {
        check_range(offset, data.len())?;
        let words = self.words(id);
        let mut pos = offset;
        let mut inp = 0;
        while inp < data.len() {
            let w = pos / 8;
            let b = pos % 8;
            let n = (8 - b).min(data.len() - inp);
            if n == 8 {
                let v = u64::from_le_bytes(data[inp..inp + 8].try_into().expect("8 bytes"));
                words[w].store(v, Ordering::Relaxed);
            } else {
                let mut mask_bytes = [0u8; 8];
                let mut val_bytes = [0u8; 8];
                mask_bytes[b..b + n].fill(0xff);
                val_bytes[b..b + n].copy_from_slice(&data[inp..inp + n]);
                let mask = u64::from_le_bytes(mask_bytes);
                let val = u64::from_le_bytes(val_bytes);
                let _ = words[w].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                    Some((old & !mask) | val)
                });
            }
            pos += n;
            inp += n;
        }
        Ok(())
    }

    /// Copies the whole page out.
    pub fn read_page(&self, id: FrameId, buf: &mut [u8; PAGE_SIZE]) {
        for (chunk, w) in buf.chunks_exact_mut(8).zip(self.words(id)) {
            chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
    }

    /// Overwrites the whole page.
    pub(crate) fn write_page(&self, id: FrameId, buf: &[u8; PAGE_SIZE]) {
        for (chunk, w) in buf.chunks_exact(8).zip(self.words(id)) {
            w.store(
                u64::from_le_bytes(chunk.try_into().expect("8 bytes")),
                Ordering::Relaxed,
            );
        }
    }
}

impl FramePool {
    /// Stores `data` at `offset` in frame `id` as a CPU does through a
    /// writable translation (the simulated MMU's write).
    ///
    /// # Safety
    /// Not memory safety (contents are atomics) but the page cache's
    /// invariants: the caller must hold a writable translation of `id` that
    /// the owner of the frame handed out (a page table entry and TLB entry
    /// of the page map's page or of a [`PrivateFrame`](crate::PrivateFrame) turned into an
    /// entry), so that the owner knows the frame may change (the entry's
    /// dirty bit says so). Writing any other frame corrupts another page.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] if the range leaves the page.
    pub unsafe fn mmu_write(&self, id: FrameId, offset: usize, data: &[u8]) -> Result<(), Error> {
        self.write(id, offset, data)
    }
}

fn check_range(offset: usize, len: usize) -> Result<(), Error> {
    match offset.checked_add(len) {
        Some(end) if end <= PAGE_SIZE => Ok(()),
        _ => Err(Error::OutOfBounds { offset, len }),
    }
}
