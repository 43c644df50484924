//! Fuzzer bytes -> operations, and back.
//!
//! Decoding goes through [`arbitrary::Unstructured`], one byte at a time, so
//! that the format is simple enough to write by hand: [`encode`] is the exact
//! inverse of decoding, which is how the checked-in seeds are generated (see
//! `tests/hand_seeds.rs`). Every byte string decodes to something; missing
//! trailing bytes read as zero.

use std::ops::Bound;

use arbitrary::{Arbitrary, Result, Unstructured};

/// Ops run per input at most (keeps each fuzz iteration short).
pub const MAX_OPS: usize = 512;

/// A page index, drawn from one of a few interesting regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idx {
    /// `v % 64`: a dense, single-leaf region.
    Small(u8),
    /// `2^40 + d`: a deep tree, around a 2^40 boundary.
    Large(i8),
    /// `u64::MAX - v % 64`: the very top of the index space.
    High(u8),
    /// `2^(s % 64) + d % 4`: powers of two (tree height changes).
    Pow(u8, i8),
}

impl Idx {
    /// The page index.
    pub fn get(self) -> u64 {
        match self {
            Idx::Small(v) => u64::from(v % 64),
            Idx::Large(d) => (1u64 << 40).wrapping_add_signed(i64::from(d)),
            Idx::High(v) => u64::MAX - u64::from(v % 64),
            Idx::Pow(s, d) => (1u64 << (s % 64)).wrapping_add_signed(i64::from(d % 4)),
        }
    }

    fn decode(u: &mut Unstructured<'_>) -> Result<Self> {
        Ok(match u8::arbitrary(u)? % 4 {
            0 => Idx::Small(u8::arbitrary(u)?),
            1 => Idx::Large(i8::arbitrary(u)?),
            2 => Idx::High(u8::arbitrary(u)?),
            _ => Idx::Pow(u8::arbitrary(u)?, i8::arbitrary(u)?),
        })
    }

    fn encode(self, out: &mut Vec<u8>) {
        match self {
            Idx::Small(v) => out.extend([0, v]),
            Idx::Large(d) => out.extend([1, d as u8]),
            Idx::High(v) => out.extend([2, v]),
            Idx::Pow(s, d) => out.extend([3, s, d as u8]),
        }
    }
}

/// A byte offset into a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Off {
    /// `v % 4096`.
    In(u16),
    /// `4096 - v` (ranges that cross the end of the page).
    Edge(u8),
    /// `usize::MAX - v` (offset + len overflows).
    Huge(u8),
}

impl Off {
    /// The offset.
    pub fn get(self) -> usize {
        match self {
            Off::In(v) => usize::from(v % 4096),
            Off::Edge(v) => 4096 - usize::from(v),
            Off::Huge(v) => usize::MAX - usize::from(v),
        }
    }

    fn decode(u: &mut Unstructured<'_>) -> Result<Self> {
        Ok(match u8::arbitrary(u)? % 3 {
            0 => {
                let lo = u8::arbitrary(u)?;
                let hi = u8::arbitrary(u)?;
                Off::In(u16::from_le_bytes([lo, hi]))
            }
            1 => Off::Edge(u8::arbitrary(u)?),
            _ => Off::Huge(u8::arbitrary(u)?),
        })
    }

    fn encode(self, out: &mut Vec<u8>) {
        match self {
            Off::In(v) => {
                out.push(0);
                out.extend(v.to_le_bytes());
            }
            Off::Edge(v) => out.extend([1, v]),
            Off::Huge(v) => out.extend([2, v]),
        }
    }
}

/// A range of page indices, in every shape `RangeBounds` allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    /// `..`
    Full,
    /// `a..b`
    Range(Idx, Idx),
    /// `a..=b`
    Incl(Idx, Idx),
    /// `a..`
    From(Idx),
    /// `..b`
    To(Idx),
    /// `..=b`
    ToIncl(Idx),
    /// `(Excluded(a), Excluded(b))`
    Excl(Idx, Idx),
    /// `(Excluded(a), Included(b))`
    ExclIncl(Idx, Idx),
}

impl Span {
    /// The bounds, as passed to the page map.
    pub fn bounds(self) -> (Bound<u64>, Bound<u64>) {
        use Bound::*;
        match self {
            Span::Full => (Unbounded, Unbounded),
            Span::Range(a, b) => (Included(a.get()), Excluded(b.get())),
            Span::Incl(a, b) => (Included(a.get()), Included(b.get())),
            Span::From(a) => (Included(a.get()), Unbounded),
            Span::To(b) => (Unbounded, Excluded(b.get())),
            Span::ToIncl(b) => (Unbounded, Included(b.get())),
            Span::Excl(a, b) => (Excluded(a.get()), Excluded(b.get())),
            Span::ExclIncl(a, b) => (Excluded(a.get()), Included(b.get())),
        }
    }

    fn decode(u: &mut Unstructured<'_>) -> Result<Self> {
        Ok(match u8::arbitrary(u)? % 8 {
            0 => Span::Full,
            1 => Span::Range(Idx::decode(u)?, Idx::decode(u)?),
            2 => Span::Incl(Idx::decode(u)?, Idx::decode(u)?),
            3 => Span::From(Idx::decode(u)?),
            4 => Span::To(Idx::decode(u)?),
            5 => Span::ToIncl(Idx::decode(u)?),
            6 => Span::Excl(Idx::decode(u)?, Idx::decode(u)?),
            _ => Span::ExclIncl(Idx::decode(u)?, Idx::decode(u)?),
        })
    }

    fn encode(self, out: &mut Vec<u8>) {
        let (tag, a, b) = match self {
            Span::Full => (0, None, None),
            Span::Range(a, b) => (1, Some(a), Some(b)),
            Span::Incl(a, b) => (2, Some(a), Some(b)),
            Span::From(a) => (3, Some(a), None),
            Span::To(b) => (4, Some(b), None),
            Span::ToIncl(b) => (5, Some(b), None),
            Span::Excl(a, b) => (6, Some(a), Some(b)),
            Span::ExclIncl(a, b) => (7, Some(a), Some(b)),
        };
        out.push(tag);
        for i in [a, b].into_iter().flatten() {
            i.encode(out);
        }
    }
}

/// One operation. `r` fields pick a held reference (`r % held.len()`; a
/// no-op when none is held).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `load(i)`, keeping the reference.
    Load(Idx),
    /// `load(i)`, dropping the reference at once.
    LoadDrop(Idx),
    /// `find(i)`, keeping the reference if any.
    Find(Idx),
    /// `load_nowait(i)`, keeping the reference if any.
    LoadNowait(Idx),
    /// Drop a held reference (the put).
    Put(u8),
    /// `try_clone` a held reference, keeping the clone.
    Clone(u8),
    /// `write(off, [byte, byte+1, ...; len])` through a held reference.
    Write {
        /// Which held reference.
        r: u8,
        /// Where.
        off: Off,
        /// How many bytes.
        len: u8,
        /// First byte of the pattern.
        byte: u8,
    },
    /// `read(off, len)` through a held reference, compared with the model.
    Read {
        /// Which held reference.
        r: u8,
        /// Where.
        off: Off,
        /// How many bytes.
        len: u8,
    },
    /// `mark_dirty` on a held reference.
    MarkDirty(u8),
    /// `clear_dirty` on a held reference.
    ClearDirty(u8),
    /// `MemStore::fail_reads(i, on)`.
    FailReads(Idx, bool),
    /// `MemStore::fail_writes(i, on)`.
    FailWrites(Idx, bool),
    /// `MemStore::set_page(i, [fill; 4096])` (stored contents to read back).
    StoreSet(Idx, u8),
    /// `free_unused()`.
    FreeUnused,
    /// `writeback(span)`.
    Writeback(Span),
    /// `cached_indices(span)`.
    Cached(Span),
    /// `dirty_indices(span)`.
    Dirty(Span),
    /// `next_present(i)`.
    NextPresent(Idx),
    /// `next_dirty(i)`.
    NextDirty(Idx),
    /// Compare every cached page's full contents, flags and holders.
    Check,
}

/// Number of [`Op`] variants (the tag byte is taken modulo this).
pub const NUM_OPS: u8 = 20;

impl Op {
    /// Short name (for coverage statistics).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Load(_) => "Load",
            Op::LoadDrop(_) => "LoadDrop",
            Op::Find(_) => "Find",
            Op::LoadNowait(_) => "LoadNowait",
            Op::Put(_) => "Put",
            Op::Clone(_) => "Clone",
            Op::Write { .. } => "Write",
            Op::Read { .. } => "Read",
            Op::MarkDirty(_) => "MarkDirty",
            Op::ClearDirty(_) => "ClearDirty",
            Op::FailReads(..) => "FailReads",
            Op::FailWrites(..) => "FailWrites",
            Op::StoreSet(..) => "StoreSet",
            Op::FreeUnused => "FreeUnused",
            Op::Writeback(_) => "Writeback",
            Op::Cached(_) => "Cached",
            Op::Dirty(_) => "Dirty",
            Op::NextPresent(_) => "NextPresent",
            Op::NextDirty(_) => "NextDirty",
            Op::Check => "Check",
        }
    }

    /// Appends this op's bytes (the inverse of decoding).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Op::Load(i) => tagged(out, 0, |o| i.encode(o)),
            Op::LoadDrop(i) => tagged(out, 1, |o| i.encode(o)),
            Op::Find(i) => tagged(out, 2, |o| i.encode(o)),
            Op::LoadNowait(i) => tagged(out, 3, |o| i.encode(o)),
            Op::Put(r) => out.extend([4, r]),
            Op::Clone(r) => out.extend([5, r]),
            Op::Write { r, off, len, byte } => {
                out.extend([6, r]);
                off.encode(out);
                out.extend([len, byte]);
            }
            Op::Read { r, off, len } => {
                out.extend([7, r]);
                off.encode(out);
                out.push(len);
            }
            Op::MarkDirty(r) => out.extend([8, r]),
            Op::ClearDirty(r) => out.extend([9, r]),
            Op::FailReads(i, on) => tagged(out, 10, |o| {
                i.encode(o);
                o.push(on as u8);
            }),
            Op::FailWrites(i, on) => tagged(out, 11, |o| {
                i.encode(o);
                o.push(on as u8);
            }),
            Op::StoreSet(i, fill) => tagged(out, 12, |o| {
                i.encode(o);
                o.push(fill);
            }),
            Op::FreeUnused => out.push(13),
            Op::Writeback(s) => tagged(out, 14, |o| s.encode(o)),
            Op::Cached(s) => tagged(out, 15, |o| s.encode(o)),
            Op::Dirty(s) => tagged(out, 16, |o| s.encode(o)),
            Op::NextPresent(i) => tagged(out, 17, |o| i.encode(o)),
            Op::NextDirty(i) => tagged(out, 18, |o| i.encode(o)),
            Op::Check => out.push(19),
        }
    }
}

fn tagged(out: &mut Vec<u8>, tag: u8, f: impl FnOnce(&mut Vec<u8>)) {
    out.push(tag);
    f(out);
}

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u8::arbitrary(u)? % NUM_OPS {
            0 => Op::Load(Idx::decode(u)?),
            1 => Op::LoadDrop(Idx::decode(u)?),
            2 => Op::Find(Idx::decode(u)?),
            3 => Op::LoadNowait(Idx::decode(u)?),
            4 => Op::Put(u8::arbitrary(u)?),
            5 => Op::Clone(u8::arbitrary(u)?),
            6 => Op::Write {
                r: u8::arbitrary(u)?,
                off: Off::decode(u)?,
                len: u8::arbitrary(u)?,
                byte: u8::arbitrary(u)?,
            },
            7 => Op::Read {
                r: u8::arbitrary(u)?,
                off: Off::decode(u)?,
                len: u8::arbitrary(u)?,
            },
            8 => Op::MarkDirty(u8::arbitrary(u)?),
            9 => Op::ClearDirty(u8::arbitrary(u)?),
            10 => Op::FailReads(Idx::decode(u)?, u8::arbitrary(u)? & 1 == 1),
            11 => Op::FailWrites(Idx::decode(u)?, u8::arbitrary(u)? & 1 == 1),
            12 => Op::StoreSet(Idx::decode(u)?, u8::arbitrary(u)?),
            13 => Op::FreeUnused,
            14 => Op::Writeback(Span::decode(u)?),
            15 => Op::Cached(Span::decode(u)?),
            16 => Op::Dirty(Span::decode(u)?),
            17 => Op::NextPresent(Idx::decode(u)?),
            18 => Op::NextDirty(Idx::decode(u)?),
            _ => Op::Check,
        })
    }
}

/// A whole fuzz input: a frame pool size and the ops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// Frames in the pool: `1 + byte % 32` (small, so the pool runs out).
    pub frames: usize,
    /// The ops, in order.
    pub ops: Vec<Op>,
}

impl Input {
    /// Decodes fuzzer bytes (never fails: missing bytes read as zero).
    pub fn decode(data: &[u8]) -> Self {
        let mut u = Unstructured::new(data);
        let frames = 1 + usize::from(u8::arbitrary(&mut u).unwrap_or(0) % 32);
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < MAX_OPS {
            match Op::arbitrary(&mut u) {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        Input { frames, ops }
    }

    /// The bytes that decode to this input (`frames` must be in 1..=32).
    pub fn encode(&self) -> Vec<u8> {
        assert!((1..=32).contains(&self.frames), "frames must be in 1..=32");
        let mut out = vec![(self.frames - 1) as u8];
        for op in &self.ops {
            op.encode(&mut out);
        }
        out
    }
}
