//! `reclaim_ops`: fuzzer bytes -> operations on one to three page maps
//! sharing a small frame pool that reclaims on allocation, and back.
//!
//! As for the other targets, decoding reads one byte at a time and
//! [`ReclaimInput::encode`] is its exact inverse, so the hand-made seeds are
//! op lists (`tests/hand_seeds.rs`). The runner is `reclaim_run.rs`.

use arbitrary::{Arbitrary, Result, Unstructured};

/// Ops run per input at most.
pub const MAX_RECLAIM_OPS: usize = 96;

/// Pages each map's file has (indices `0..PAGES`): more than the largest
/// pool, so that even one map fills it and must evict.
pub const PAGES: u64 = 12;

/// One operation. `map` is taken modulo the number of maps, `page` modulo
/// [`PAGES`], `k` (a held reference) modulo the number held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReclaimOp {
    /// `load(page)` and keep the reference (a hold).
    Load {
        /// Which map.
        map: u8,
        /// Which page.
        page: u8,
    },
    /// Drop held reference `k`.
    Release {
        /// Which held reference.
        k: u8,
    },
    /// `load(page)`, read the whole page, compare with the model, let go.
    Read {
        /// Which map.
        map: u8,
        /// Which page.
        page: u8,
    },
    /// `load(page)`, write `len` bytes of a pattern at `off`, let go.
    Write {
        /// Which map.
        map: u8,
        /// Which page.
        page: u8,
        /// Offset in the page (modulo 4096).
        off: u16,
        /// Length: `1 + len * 17`, clipped to the page.
        len: u8,
        /// First byte of the pattern.
        byte: u8,
    },
    /// Write through held reference `k` (as `Write`), and read it back.
    WriteHeld {
        /// Which held reference.
        k: u8,
        /// Offset in the page (modulo 4096).
        off: u16,
        /// Length: `1 + len * 17`, clipped to the page.
        len: u8,
        /// First byte of the pattern.
        byte: u8,
    },
    /// `writeback(..)` of one map.
    Writeback {
        /// Which map.
        map: u8,
    },
    /// `fsync()` of one map.
    Fsync {
        /// Which map.
        map: u8,
    },
    /// Make the store's writes of one page fail (or succeed again).
    FailWrites {
        /// Which map.
        map: u8,
        /// Which page.
        page: u8,
        /// Fail from now on.
        on: bool,
    },
    /// `pool.reclaim(1 + n % 8)`.
    Reclaim {
        /// How many to ask for, less one.
        n: u8,
    },
    /// Drop the runner's handle of a map (and, unless `keep_refs`, the
    /// references held on it first: otherwise they keep the map alive, and
    /// its drop runs at the last one's release); a new map over a new
    /// store takes its place.
    DropMap {
        /// Which map.
        map: u8,
        /// Keep the held references.
        keep_refs: bool,
    },
    /// Take a private frame (`alloc_private`, which reclaims too) or drop
    /// the newest one.
    Private {
        /// Take rather than drop.
        alloc: bool,
    },
    /// Read every page of every map and compare.
    Check,
}

/// Number of [`ReclaimOp`] variants (the tag byte is taken modulo this).
pub const NUM_RECLAIM_OPS: u8 = 13;

impl ReclaimOp {
    /// Short name (for coverage statistics).
    pub fn name(&self) -> &'static str {
        match self {
            ReclaimOp::Load { .. } => "Load",
            ReclaimOp::Release { .. } => "Release",
            ReclaimOp::Read { .. } => "Read",
            ReclaimOp::Write { .. } => "Write",
            ReclaimOp::WriteHeld { .. } => "WriteHeld",
            ReclaimOp::Writeback { .. } => "Writeback",
            ReclaimOp::Fsync { .. } => "Fsync",
            ReclaimOp::FailWrites { .. } => "FailWrites",
            ReclaimOp::Reclaim { .. } => "Reclaim",
            ReclaimOp::DropMap { .. } => "DropMap",
            ReclaimOp::Private { .. } => "Private",
            ReclaimOp::Check => "Check",
        }
    }

    /// Appends this op's bytes (the inverse of decoding).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            ReclaimOp::Load { map, page } => out.extend([0, map, page]),
            ReclaimOp::Release { k } => out.extend([1, k]),
            ReclaimOp::Read { map, page } => out.extend([2, map, page]),
            ReclaimOp::Write {
                map,
                page,
                off,
                len,
                byte,
            } => {
                out.extend([3, map, page]);
                out.extend(off.to_le_bytes());
                out.extend([len, byte]);
            }
            ReclaimOp::WriteHeld { k, off, len, byte } => {
                out.extend([4, k]);
                out.extend(off.to_le_bytes());
                out.extend([len, byte]);
            }
            ReclaimOp::Writeback { map } => out.extend([5, map]),
            ReclaimOp::Fsync { map } => out.extend([6, map]),
            ReclaimOp::FailWrites { map, page, on } => out.extend([7, map, page, on as u8]),
            ReclaimOp::Reclaim { n } => out.extend([8, n]),
            ReclaimOp::DropMap { map, keep_refs } => out.extend([9, map, keep_refs as u8]),
            ReclaimOp::Private { alloc } => out.extend([10, alloc as u8]),
            ReclaimOp::Check => out.push(11),
        }
    }
}

fn byte(u: &mut Unstructured<'_>) -> Result<u8> {
    u8::arbitrary(u)
}

fn flag(u: &mut Unstructured<'_>) -> Result<bool> {
    Ok(byte(u)? & 1 == 1)
}

fn off(u: &mut Unstructured<'_>) -> Result<u16> {
    Ok(u16::from_le_bytes([byte(u)?, byte(u)?]))
}

impl<'a> Arbitrary<'a> for ReclaimOp {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        // Tags 11 and 12 are both Check's decoding, so the tag byte of an
        // encoded Check (11) decodes to it; NUM_RECLAIM_OPS is 13 to give
        // loads a larger share (12 would do; a tag of 12 decodes to Load).
        Ok(match byte(u)? % NUM_RECLAIM_OPS {
            0 | 12 => ReclaimOp::Load {
                map: byte(u)?,
                page: byte(u)?,
            },
            1 => ReclaimOp::Release { k: byte(u)? },
            2 => ReclaimOp::Read {
                map: byte(u)?,
                page: byte(u)?,
            },
            3 => ReclaimOp::Write {
                map: byte(u)?,
                page: byte(u)?,
                off: off(u)?,
                len: byte(u)?,
                byte: byte(u)?,
            },
            4 => ReclaimOp::WriteHeld {
                k: byte(u)?,
                off: off(u)?,
                len: byte(u)?,
                byte: byte(u)?,
            },
            5 => ReclaimOp::Writeback { map: byte(u)? },
            6 => ReclaimOp::Fsync { map: byte(u)? },
            7 => ReclaimOp::FailWrites {
                map: byte(u)?,
                page: byte(u)?,
                on: flag(u)?,
            },
            8 => ReclaimOp::Reclaim { n: byte(u)? },
            9 => ReclaimOp::DropMap {
                map: byte(u)?,
                keep_refs: flag(u)?,
            },
            10 => ReclaimOp::Private { alloc: flag(u)? },
            _ => ReclaimOp::Check,
        })
    }
}

/// A whole `reclaim_ops` input: the pool, the maps, the ops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReclaimInput {
    /// Frames in the pool: `2 + byte % 7` (2 to 8).
    pub frames: usize,
    /// Page maps sharing it: `1 + byte % 3` (1 to 3).
    pub maps: usize,
    /// The ops, in order.
    pub ops: Vec<ReclaimOp>,
}

impl ReclaimInput {
    /// Decodes fuzzer bytes (never fails: missing bytes read as zero).
    pub fn decode(data: &[u8]) -> Self {
        let mut u = Unstructured::new(data);
        let frames = 2 + usize::from(byte(&mut u).unwrap_or(0) % 7);
        let maps = 1 + usize::from(byte(&mut u).unwrap_or(0) % 3);
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < MAX_RECLAIM_OPS {
            match ReclaimOp::arbitrary(&mut u) {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        ReclaimInput { frames, maps, ops }
    }

    /// The bytes that decode to this input (`frames` in 2..=8, `maps` in
    /// 1..=3).
    pub fn encode(&self) -> Vec<u8> {
        assert!((2..=8).contains(&self.frames), "frames must be in 2..=8");
        assert!((1..=3).contains(&self.maps), "maps must be in 1..=3");
        let mut out = vec![(self.frames - 2) as u8, (self.maps - 1) as u8];
        for op in &self.ops {
            op.encode(&mut out);
        }
        out
    }
}
