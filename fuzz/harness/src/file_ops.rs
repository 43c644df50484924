//! `file_ops`: fuzzer bytes -> operations on a real file through the byte
//! API, and back.
//!
//! As for `pagemap_ops` (see `ops.rs`), decoding reads one byte at a time
//! and [`FileInput::encode`] is its exact inverse, so the hand-made seeds
//! are op lists (`tests/hand_seeds.rs`). Positions are drawn around page
//! boundaries and around the current end of the file, where the size
//! logic lives; the runner is `file_run.rs`.

use arbitrary::{Arbitrary, Result, Unstructured};

use crate::PAGE_SIZE;

/// Ops run per input at most: each may sync a real file, so inputs stay
/// short (the fuzzer finds depth through the positions, not the count).
pub const MAX_FILE_OPS: usize = 64;

/// No position goes past this (20 pages and a bit, not page aligned): the
/// file stays small enough to read whole after every op.
pub const MAX_POS: u64 = 20 * PAGE_SIZE as u64 + 100;

/// A byte position in the file, resolved against its current size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pos {
    /// `page % 8 * 4096 + delta`: around a page boundary.
    Edge(u8, i8),
    /// The current size `+ delta`: around (and past) the end of the file.
    End(i16),
    /// `v`: anywhere in the first 16 pages.
    At(u16),
}

impl Pos {
    /// The offset, for a file of `size` bytes (clamped to `0..=MAX_POS`).
    pub fn get(self, size: u64) -> u64 {
        let p = match self {
            Pos::Edge(page, d) => {
                (u64::from(page % 8) * PAGE_SIZE as u64).saturating_add_signed(i64::from(d))
            }
            Pos::End(d) => size.saturating_add_signed(i64::from(d)),
            Pos::At(v) => u64::from(v),
        };
        p.min(MAX_POS)
    }

    fn decode(u: &mut Unstructured<'_>) -> Result<Self> {
        Ok(match u8::arbitrary(u)? % 3 {
            0 => Pos::Edge(u8::arbitrary(u)?, i8::arbitrary(u)?),
            1 => Pos::End(i16::from_le_bytes([u8::arbitrary(u)?, u8::arbitrary(u)?])),
            _ => Pos::At(u16::from_le_bytes([u8::arbitrary(u)?, u8::arbitrary(u)?])),
        })
    }

    fn encode(self, out: &mut Vec<u8>) {
        match self {
            Pos::Edge(page, d) => out.extend([0, page, d as u8]),
            Pos::End(d) => {
                out.push(1);
                out.extend(d.to_le_bytes());
            }
            Pos::At(v) => {
                out.push(2);
                out.extend(v.to_le_bytes());
            }
        }
    }
}

/// A length in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Len {
    /// `v`: inside a page, or just across one boundary.
    Short(u8),
    /// `n % 4` pages `+ delta` (at least 0): up to about four pages.
    Pages(u8, i8),
}

impl Len {
    /// The length.
    pub fn get(self) -> usize {
        match self {
            Len::Short(v) => usize::from(v),
            Len::Pages(n, d) => {
                (usize::from(n % 4) * PAGE_SIZE).saturating_add_signed(isize::from(d))
            }
        }
    }

    fn decode(u: &mut Unstructured<'_>) -> Result<Self> {
        Ok(match u8::arbitrary(u)? % 2 {
            0 => Len::Short(u8::arbitrary(u)?),
            _ => Len::Pages(u8::arbitrary(u)?, i8::arbitrary(u)?),
        })
    }

    fn encode(self, out: &mut Vec<u8>) {
        match self {
            Len::Short(v) => out.extend([0, v]),
            Len::Pages(n, d) => out.extend([1, n, d as u8]),
        }
    }
}

/// Which pages a writeback covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pages {
    /// `..`
    All,
    /// `first % 24 ..= first % 24 + count % 8`.
    Some(u8, u8),
}

impl Pages {
    /// `(first, last)` page, inclusive.
    pub fn bounds(self) -> (u64, u64) {
        match self {
            Pages::All => (0, u64::MAX),
            Pages::Some(first, count) => {
                let first = u64::from(first % 24);
                (first, first + u64::from(count % 8))
            }
        }
    }

    fn decode(u: &mut Unstructured<'_>) -> Result<Self> {
        Ok(match u8::arbitrary(u)? % 2 {
            0 => Pages::All,
            _ => Pages::Some(u8::arbitrary(u)?, u8::arbitrary(u)?),
        })
    }

    fn encode(self, out: &mut Vec<u8>) {
        match self {
            Pages::All => out.push(0),
            Pages::Some(first, count) => out.extend([1, first, count]),
        }
    }
}

/// One operation on the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileOp {
    /// `write_at(at, [byte, byte + 1, ...; len])` (the pattern repeats
    /// every 251 bytes, so a byte copied to the wrong place shows).
    Write {
        /// Where.
        at: Pos,
        /// How many bytes.
        len: Len,
        /// First byte of the pattern.
        byte: u8,
    },
    /// `read_at(at, len)`, compared with the model.
    Read {
        /// Where.
        at: Pos,
        /// How many bytes.
        len: Len,
    },
    /// `set_size(at)`: shrink, extend, to a partial page.
    SetSize(Pos),
    /// `writeback(pages)` (no store sync).
    Writeback(Pages),
    /// `fsync()`.
    Fsync,
    /// `free_unused()`: clean pages go, dirty ones are written first.
    FreeUnused,
    /// `punch_hole(at, len)`.
    Punch {
        /// Where.
        at: Pos,
        /// How many bytes.
        len: Len,
    },
    /// Close the map (`close()`, or a plain drop when `close` is false and
    /// writes do not fail) and open a new one over the same file.
    Reopen {
        /// `close()` rather than a drop.
        close: bool,
    },
    /// Make every store write (`write_page`, `write_pages`) fail with EIO
    /// from now on (`true`), or succeed again.
    FailWrites(bool),
    /// Read the whole file through the cache and compare.
    Check,
}

/// Number of [`FileOp`] variants (the tag byte is taken modulo this).
pub const NUM_FILE_OPS: u8 = 10;

impl FileOp {
    /// Short name (for coverage statistics).
    pub fn name(&self) -> &'static str {
        match self {
            FileOp::Write { .. } => "Write",
            FileOp::Read { .. } => "Read",
            FileOp::SetSize(_) => "SetSize",
            FileOp::Writeback(_) => "Writeback",
            FileOp::Fsync => "Fsync",
            FileOp::FreeUnused => "FreeUnused",
            FileOp::Punch { .. } => "Punch",
            FileOp::Reopen { .. } => "Reopen",
            FileOp::FailWrites(_) => "FailWrites",
            FileOp::Check => "Check",
        }
    }

    /// Appends this op's bytes (the inverse of decoding).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            FileOp::Write { at, len, byte } => {
                out.push(0);
                at.encode(out);
                len.encode(out);
                out.push(byte);
            }
            FileOp::Read { at, len } => {
                out.push(1);
                at.encode(out);
                len.encode(out);
            }
            FileOp::SetSize(at) => {
                out.push(2);
                at.encode(out);
            }
            FileOp::Writeback(p) => {
                out.push(3);
                p.encode(out);
            }
            FileOp::Fsync => out.push(4),
            FileOp::FreeUnused => out.push(5),
            FileOp::Punch { at, len } => {
                out.push(6);
                at.encode(out);
                len.encode(out);
            }
            FileOp::Reopen { close } => out.extend([7, close as u8]),
            FileOp::FailWrites(on) => out.extend([8, on as u8]),
            FileOp::Check => out.push(9),
        }
    }
}

impl<'a> Arbitrary<'a> for FileOp {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u8::arbitrary(u)? % NUM_FILE_OPS {
            0 => FileOp::Write {
                at: Pos::decode(u)?,
                len: Len::decode(u)?,
                byte: u8::arbitrary(u)?,
            },
            1 => FileOp::Read {
                at: Pos::decode(u)?,
                len: Len::decode(u)?,
            },
            2 => FileOp::SetSize(Pos::decode(u)?),
            3 => FileOp::Writeback(Pages::decode(u)?),
            4 => FileOp::Fsync,
            5 => FileOp::FreeUnused,
            6 => FileOp::Punch {
                at: Pos::decode(u)?,
                len: Len::decode(u)?,
            },
            7 => FileOp::Reopen {
                close: u8::arbitrary(u)? & 1 == 1,
            },
            8 => FileOp::FailWrites(u8::arbitrary(u)? & 1 == 1),
            _ => FileOp::Check,
        })
    }
}

/// A whole `file_ops` input: the pool, the file's first contents, the ops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInput {
    /// Frames in the pool: `4 + byte % 13` (4 to 16: smaller than the
    /// file, so pages are dropped and read again).
    pub frames: usize,
    /// The file's length when the run starts (`v % 24577`, up to six
    /// pages), filled with a pattern: reads must find it.
    pub initial: u64,
    /// The ops, in order.
    pub ops: Vec<FileOp>,
}

/// Largest initial length (six pages and one byte, exclusive).
const INITIAL_MOD: u16 = 6 * PAGE_SIZE as u16 + 1;

impl FileInput {
    /// Decodes fuzzer bytes (never fails: missing bytes read as zero).
    pub fn decode(data: &[u8]) -> Self {
        let mut u = Unstructured::new(data);
        let frames = 4 + usize::from(u8::arbitrary(&mut u).unwrap_or(0) % 13);
        let lo = u8::arbitrary(&mut u).unwrap_or(0);
        let hi = u8::arbitrary(&mut u).unwrap_or(0);
        let initial = u64::from(u16::from_le_bytes([lo, hi]) % INITIAL_MOD);
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < MAX_FILE_OPS {
            match FileOp::arbitrary(&mut u) {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        FileInput {
            frames,
            initial,
            ops,
        }
    }

    /// The bytes that decode to this input (`frames` in 4..=16, `initial`
    /// below 24577).
    pub fn encode(&self) -> Vec<u8> {
        assert!((4..=16).contains(&self.frames), "frames must be in 4..=16");
        assert!(self.initial < u64::from(INITIAL_MOD), "initial too large");
        let mut out = vec![(self.frames - 4) as u8];
        out.extend((self.initial as u16).to_le_bytes());
        for op in &self.ops {
            op.encode(&mut out);
        }
        out
    }
}
