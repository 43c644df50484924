//! The independent model of the writes: what every page must hold, derived
//! from the seed and a version counter per page, never from the engine.
//!
//! Version `v` of page `p` is a byte pattern of up to one page: a 16-byte
//! header (the page index, `v`, a tag) then pseudo-random bytes, all a pure
//! function of `(seed, p, v)`. Version 0 is written to the whole page before
//! the run; a write of version `v >= 1` replaces the first `op_size` bytes.
//! Each page is written by one thread only, so its last version, and the
//! file's final content, are known exactly.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use pagemap::PAGE_SIZE;

/// Bytes of the header at the start of every pattern: page index (u64 LE),
/// version (u32 LE), tag (u32 LE).
pub const HEADER: usize = 16;

/// The splitmix64 finaliser: a cheap bijective mix of 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `out` (16 to [`PAGE_SIZE`] bytes) with the first `out.len()` bytes
/// of version `version` of page `page`. A shorter fill is a prefix of a
/// longer one.
pub fn pattern(seed: u64, page: u64, version: u32, out: &mut [u8]) {
    debug_assert!(out.len() >= HEADER && out.len() <= PAGE_SIZE);
    let key = mix(seed ^ mix(page ^ mix(u64::from(version) ^ 0x5bd1_e995)));
    out[..8].copy_from_slice(&page.to_le_bytes());
    out[8..12].copy_from_slice(&version.to_le_bytes());
    out[12..16].copy_from_slice(&(key as u32).to_le_bytes());
    let mut state = key;
    for chunk in out[HEADER..].chunks_mut(8) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        chunk.copy_from_slice(&mix(state).to_le_bytes()[..chunk.len()]);
    }
}

/// The whole expected content of page `page` after its last write,
/// version `last`: version 0's page with version `last`'s first `op_size`
/// bytes over it.
pub fn expected_page(seed: u64, page: u64, last: u32, op_size: usize, out: &mut [u8; PAGE_SIZE]) {
    pattern(seed, page, 0, out);
    if last > 0 {
        pattern(seed, page, last, &mut out[..op_size]);
    }
}

/// Writes version 0 of every page of a `pages`-page file at `path`
/// (created or truncated), with plain buffered writes, then syncs it.
pub fn write_initial(path: &Path, seed: u64, pages: u64) -> io::Result<()> {
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut page = [0u8; PAGE_SIZE];
    for p in 0..pages {
        pattern(seed, p, 0, &mut page);
        w.write_all(&page)?;
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// The versions issued and completed, one pair of counters per page,
/// shared by the threads: the writer of a page (one thread) raises
/// `issued` before its write and `done` after it, so a read that saw the
/// same value in `done` before and `issued` after overlapped no write.
pub struct Model {
    issued: Vec<AtomicU32>,
    done: Vec<AtomicU32>,
}

/// What checking one read found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadCheck {
    /// No write overlapped it, and it held exactly the last version.
    Exact,
    /// Writes of the page overlapped it; every byte came from one of the
    /// versions written in that time.
    Overlapped,
    /// Neither: the read returned bytes no write put there.
    Bad,
}

impl Model {
    /// A model of a `pages`-page file at version 0 everywhere.
    pub fn new(pages: u64) -> Self {
        let counters = || (0..pages).map(|_| AtomicU32::new(0)).collect();
        Self {
            issued: counters(),
            done: counters(),
        }
    }

    /// Starts a write of page `page` by its one writer: the version to
    /// write, recorded as issued.
    pub fn begin_write(&self, page: u64) -> u32 {
        let slot = &self.issued[page as usize];
        // Only this thread writes the page: a load and a store suffice.
        let v = slot.load(Ordering::Relaxed) + 1;
        slot.store(v, Ordering::SeqCst);
        v
    }

    /// Ends the write of version `version` of page `page` (it returned).
    pub fn end_write(&self, page: u64, version: u32) {
        self.done[page as usize].store(version, Ordering::SeqCst);
    }

    /// Before a read of `page`: the last completed version.
    pub fn before_read(&self, page: u64) -> u32 {
        self.done[page as usize].load(Ordering::SeqCst)
    }

    /// Checks `got`, a read of the first `got.len()` bytes of `page` that
    /// began when `done` was `before`. `scratch` holds one op's pattern.
    pub fn check_read(
        &self,
        seed: u64,
        page: u64,
        before: u32,
        got: &[u8],
        scratch: &mut [u8],
    ) -> ReadCheck {
        let after = self.issued[page as usize].load(Ordering::SeqCst);
        let scratch = &mut scratch[..got.len()];
        if before == after {
            pattern(seed, page, before, scratch);
            return if scratch == got {
                ReadCheck::Exact
            } else {
                ReadCheck::Bad
            };
        }
        // A write overlapped: torn reads are allowed (as with pread), but
        // each byte must come from a version written meanwhile.
        // Every version written meanwhile: a reader preempted for a few ms
        // while a hot page's writer raced ahead (more than 64 versions, the
        // old cap) returns one of the newest, which a capped check called a
        // bad read (break12: about half the runs of --dist hotscan, 4
        // threads, 8 frames, on 2 busy cores, in both engines).
        let last = after;
        let mut ok = vec![false; got.len()];
        for v in before..=last {
            pattern(seed, page, v, scratch);
            for ((o, a), b) in ok.iter_mut().zip(scratch.iter()).zip(got) {
                *o |= a == b;
            }
        }
        if ok.iter().all(|&o| o) {
            ReadCheck::Overlapped
        } else {
            ReadCheck::Bad
        }
    }

    /// Every page's last issued version (call once the writers are done).
    pub fn final_versions(&self) -> Vec<u32> {
        self.issued
            .iter()
            .map(|v| v.load(Ordering::SeqCst))
            .collect()
    }
}

/// The outcome of comparing a file with the model.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Verified {
    /// Bytes compared (the expected file size, in bytes).
    pub bytes_checked: u64,
    /// Bytes that differ, counting missing or extra bytes when the file's
    /// length is wrong.
    pub bytes_differing: u64,
    /// Pages with at least one differing byte.
    pub pages_differing: u64,
    /// The byte offset of the first difference.
    pub first_difference: Option<u64>,
}

/// Reads the file at `path` with plain reads (not through any cache of
/// ours) and compares every byte with the model: page `p` must be
/// [`expected_page`] of `versions[p]`.
pub fn verify_file(
    path: &Path,
    seed: u64,
    versions: &[u32],
    op_size: usize,
) -> io::Result<Verified> {
    let mut file = File::open(path)?;
    let expected_len = versions.len() as u64 * PAGE_SIZE as u64;
    let actual_len = file.metadata()?.len();
    let mut out = Verified {
        bytes_checked: expected_len,
        ..Verified::default()
    };
    let mut want = [0u8; PAGE_SIZE];
    let mut got = vec![0u8; PAGE_SIZE * 256];
    let mut page = 0u64;
    for chunk in versions.chunks(256) {
        let buf = &mut got[..chunk.len() * PAGE_SIZE];
        let n = read_full(&mut file, buf)?;
        for (i, &v) in chunk.iter().enumerate() {
            expected_page(seed, page, v, op_size, &mut want);
            let start = i * PAGE_SIZE;
            let have = &buf[start.min(n)..(start + PAGE_SIZE).min(n)];
            let mut diff = (PAGE_SIZE - have.len()) as u64; // missing bytes
            let mut first = (diff > 0).then_some(have.len());
            for (j, (a, b)) in have.iter().zip(want.iter()).enumerate() {
                if a != b {
                    diff += 1;
                    first = Some(first.map_or(j, |f: usize| f.min(j)));
                }
            }
            if diff > 0 {
                out.bytes_differing += diff;
                out.pages_differing += 1;
                if out.first_difference.is_none() {
                    out.first_difference =
                        Some(page * PAGE_SIZE as u64 + first.unwrap_or(0) as u64);
                }
            }
            page += 1;
        }
    }
    if actual_len > expected_len {
        out.bytes_differing += actual_len - expected_len;
        out.first_difference.get_or_insert(expected_len);
    }
    Ok(out)
}

/// Reads page `index` into the buffer (for [`verify_pages`]).
pub type ReadPage<'a> = &'a mut dyn FnMut(u64, &mut [u8; PAGE_SIZE]) -> Result<(), String>;

/// Compares pages read by `read` (page index, buffer) with the model, as
/// [`verify_file`] does a file's (for memory that is not a file: the
/// anonymous workload reads its pages back through a CPU).
pub fn verify_pages(
    seed: u64,
    versions: &[u32],
    op_size: usize,
    read: ReadPage<'_>,
) -> Result<Verified, String> {
    let mut out = Verified {
        bytes_checked: versions.len() as u64 * PAGE_SIZE as u64,
        ..Verified::default()
    };
    let (mut want, mut got) = ([0u8; PAGE_SIZE], [0u8; PAGE_SIZE]);
    for (page, &v) in (0u64..).zip(versions) {
        expected_page(seed, page, v, op_size, &mut want);
        read(page, &mut got)?;
        let diff = want.iter().zip(&got).filter(|(a, b)| a != b).count() as u64;
        if diff > 0 {
            out.bytes_differing += diff;
            out.pages_differing += 1;
            let j = want.iter().zip(&got).position(|(a, b)| a != b).unwrap_or(0);
            out.first_difference
                .get_or_insert(page * PAGE_SIZE as u64 + j as u64);
        }
    }
    Ok(out)
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shorter_pattern_is_a_prefix_and_versions_differ() {
        let mut a = [0u8; PAGE_SIZE];
        let mut b = [0u8; 100];
        pattern(7, 3, 2, &mut a);
        pattern(7, 3, 2, &mut b);
        assert_eq!(&a[..100], &b[..]);
        pattern(7, 3, 3, &mut b);
        assert_ne!(&a[..100], &b[..]);
        assert_eq!(u64::from_le_bytes(a[..8].try_into().unwrap()), 3);
    }

    #[test]
    fn reads_are_classified() {
        let m = Model::new(4);
        let mut got = [0u8; 64];
        let mut scratch = [0u8; 64];
        pattern(1, 2, 0, &mut got);
        let before = m.before_read(2);
        assert_eq!(
            m.check_read(1, 2, before, &got, &mut scratch),
            ReadCheck::Exact
        );
        // A write of version 1 in flight: a half-old, half-new read passes.
        let v = m.begin_write(2);
        let mut new = [0u8; 64];
        pattern(1, 2, v, &mut new);
        got[32..].copy_from_slice(&new[32..]);
        assert_eq!(
            m.check_read(1, 2, before, &got, &mut scratch),
            ReadCheck::Overlapped
        );
        m.end_write(2, v);
        got[40] ^= 1;
        if got[40] != new[40]
            && got[40] != {
                let mut old = [0u8; 64];
                pattern(1, 2, 0, &mut old);
                old[40]
            }
        {
            assert_eq!(
                m.check_read(1, 2, before, &got, &mut scratch),
                ReadCheck::Bad
            );
        }
        // No write in flight now: only version 1 exactly passes.
        assert_eq!(m.check_read(1, 2, 1, &new, &mut scratch), ReadCheck::Exact);
        assert_eq!(m.check_read(1, 2, 1, &got, &mut scratch), ReadCheck::Bad);
    }
}
