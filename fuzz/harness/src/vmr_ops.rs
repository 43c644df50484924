//! Fuzzer bytes -> `vmr` operations, and back (target `vmr_ops`).
//!
//! Same scheme as [`crate::ops`]: one byte at a time through
//! [`arbitrary::Unstructured`], every byte string decodes, missing trailing
//! bytes read as zero, and [`VmrInput::encode`] is the exact inverse of
//! decoding (the hand-made seeds are written with it, see
//! `tests/hand_seeds.rs`). Fields are kept raw (`u8`, `i8`, `u16`) and
//! interpreted by the runner, some relative to the model's state (the i-th
//! region of a space, the k-th page the model knows of a file), so that
//! short inputs hit existing mappings often.

use arbitrary::{Arbitrary, Result, Unstructured};

/// Ops run per input at most.
pub const MAX_OPS: usize = 256;

/// A virtual address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addr {
    /// `(k % 64)` pages from 0.
    Low(u8),
    /// `MMAP_BASE + (k % 64)` pages (where chosen mappings go).
    Base(u8),
    /// The base of the space's `i % n`-th region (address order) plus
    /// `d.rem_euclid(24) - 4` pages (`Base(0)` when the space has none).
    Region(u8, i8),
    /// `VA_END - (k % 16)` pages (`k % 16 == 0`: `VA_END` itself).
    Top(u8),
    /// The last page-aligned address `u64::MAX & !4095` minus `k % 16` pages.
    Max(u8),
    /// `Region(i, 0)` plus `1 + v % 4095` bytes: misaligned.
    Odd(u8, u16),
}

/// A length in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Len {
    /// `n % 20` pages (0: zero length).
    Pages(u8),
    /// `v` bytes (mostly misaligned).
    Bytes(u16),
    /// `(u64::MAX & !4095) - (k % 4)` pages: `addr + len` overflows.
    Huge(u8),
    /// `VA_END - (k % 4)` pages... plus one page when `k % 4 == 3`.
    VaEnd(u8),
}

/// A file page index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pg {
    /// `k % 32`.
    Small(u8),
    /// `2^40 + d`.
    Big(i8),
    /// `u64::MAX - k % 32`: file page ranges overflow.
    Top(u8),
    /// `u64::MAX / 4096 + d` (the byte offset of the page overflows u64).
    Div(i8),
    /// The `k % n`-th page the model knows of the file (mapped at some
    /// point), else 0.
    Known(u8),
}

/// A range of file pages for `writeback`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    /// `..`
    Full,
    /// `a..=b`
    Incl(Pg, Pg),
    /// `a..`
    From(Pg),
    /// `..b`
    To(Pg),
}

/// The arguments of [`Op::Mmap`]. `fixed`: `Some(addr)` or chosen.
/// `prot`: `% 8` through [`PROTS`]. `flags`: `& 7` in 0..=2 SHARED, 3..=5
/// PRIVATE, 6 both, 7 neither; `0x10` POPULATE, `0x20` LOCKED. `f % 8 ==
/// 7`: a file of another pool (`ForeignPool`). `advice % 3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmapArgs {
    /// Space.
    pub s: u8,
    /// Address, or chosen.
    pub fixed: Option<Addr>,
    /// Length.
    pub len: Len,
    /// Protection selector.
    pub prot: u8,
    /// Flag bits.
    pub flags: u8,
    /// File selector.
    pub f: u8,
    /// First file page.
    pub pgoff: Pg,
    /// Advice selector.
    pub advice: u8,
}

/// An address range of a space: what `munmap`, `mprotect` and `madvise`
/// act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Area {
    /// Space.
    pub s: u8,
    /// Start.
    pub addr: Addr,
    /// Length.
    pub len: Len,
}

/// Where a CPU access goes: `cpu c`, space `s`, `addr + off % 4096`,
/// `len % 8200` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    /// CPU.
    pub c: u8,
    /// Space.
    pub s: u8,
    /// Page-ish address.
    pub addr: Addr,
    /// Byte offset added.
    pub off: u16,
    /// Length selector.
    pub len: u16,
}

/// One operation. `s` picks an address-space slot (`s % spaces`), `f` a
/// file (`f % files`), `c` a CPU (`c % cpus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `mmap`.
    Mmap(MmapArgs),
    /// `munmap(addr, len)`.
    Munmap(Area),
    /// `mprotect(addr, len, PROTS[prot % 8])`.
    Mprotect(Area, u8),
    /// `madvise(addr, len, advice % 3)`.
    Madvise(Area, u8),
    /// `fork` of space `src` into slot `dst` (whose space is dropped first).
    /// No-op if `src` is empty or equal to `dst`.
    Fork {
        /// Parent slot.
        src: u8,
        /// Child slot.
        dst: u8,
    },
    /// Drop the space (teardown) and empty the slot.
    Drop(u8),
    /// A fresh empty space in the slot (the old one, if any, dropped).
    New(u8),
    /// `cpu.read` (see [`At`]).
    Read(At),
    /// `cpu.write(...)` of a pattern derived from the seed and the op number.
    Write(At, u8),
    /// `file.free_unused()`.
    FreeUnused(u8),
    /// `file.writeback(span)`.
    Writeback(u8, Span),
    /// `file.writeback(..)`.
    Sync(u8),
    /// `MemStore::fail_reads(index, on)`.
    FailReads(u8, Pg, bool),
    /// `MemStore::fail_writes(index, on)`.
    FailWrites(u8, Pg, bool),
    /// `cpu.flush_tlb()`.
    FlushTlb(u8),
    /// Full comparison: every cached page's contents, every known store page.
    Check,
}

/// Number of [`Op`] variants (the tag byte is taken modulo this).
pub const NUM_OPS: u8 = 17;

/// Protections by selector (`prot % 8`): the usual ones first, then the
/// odd ones (write-only, exec-only, write+exec without read).
pub const PROTS: [u8; 8] = [0, 1, 3, 1 | 4, 3 | 4, 2, 4, 2 | 4];

impl Op {
    /// Short name (for coverage statistics).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Mmap { .. } => "Mmap",
            Op::Munmap { .. } => "Munmap",
            Op::Mprotect { .. } => "Mprotect",
            Op::Madvise { .. } => "Madvise",
            Op::Fork { .. } => "Fork",
            Op::Drop(_) => "Drop",
            Op::New(_) => "New",
            Op::Read { .. } => "Read",
            Op::Write { .. } => "Write",
            Op::FreeUnused(_) => "FreeUnused",
            Op::Writeback(..) => "Writeback",
            Op::Sync(_) => "Sync",
            Op::FailReads(..) => "FailReads",
            Op::FailWrites(..) => "FailWrites",
            Op::FlushTlb(_) => "FlushTlb",
            Op::Check => "Check",
        }
    }

    /// Appends this op's bytes (the inverse of decoding).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Op::Mmap(m) => {
                out.extend([0, m.s]);
                match m.fixed {
                    None => out.push(0),
                    Some(a) => {
                        out.push(1);
                        a.encode(out);
                    }
                }
                m.len.encode(out);
                out.extend([m.prot, m.flags, m.f]);
                m.pgoff.encode(out);
                out.push(m.advice);
            }
            Op::Munmap(area) => area.encode(1, out),
            Op::Mprotect(area, prot) => {
                area.encode(2, out);
                out.push(prot);
            }
            Op::Madvise(area, advice) => {
                area.encode(3, out);
                out.push(advice);
            }
            Op::Fork { src, dst } => out.extend([4, src, dst]),
            Op::Drop(s) => out.extend([5, s]),
            Op::New(s) => out.extend([6, s]),
            Op::Read(at) => at.encode(7, out),
            Op::Write(at, seed) => {
                at.encode(8, out);
                out.push(seed);
            }
            Op::FreeUnused(f) => out.extend([9, f]),
            Op::Writeback(f, span) => {
                out.extend([10, f]);
                span.encode(out);
            }
            Op::Sync(f) => out.extend([11, f]),
            Op::FailReads(f, pg, on) => {
                out.extend([12, f]);
                pg.encode(out);
                out.push(on as u8);
            }
            Op::FailWrites(f, pg, on) => {
                out.extend([13, f]);
                pg.encode(out);
                out.push(on as u8);
            }
            Op::FlushTlb(c) => out.extend([14, c]),
            Op::Check => out.push(15),
        }
    }
}

fn u16_(u: &mut Unstructured<'_>) -> Result<u16> {
    let lo = u8::arbitrary(u)?;
    let hi = u8::arbitrary(u)?;
    Ok(u16::from_le_bytes([lo, hi]))
}

impl Area {
    fn decode(u: &mut Unstructured<'_>) -> Result<Self> {
        let (s, addr, len) = (u8::arbitrary(u)?, Addr::decode(u)?, Len::decode(u)?);
        Ok(Area { s, addr, len })
    }

    fn encode(&self, tag: u8, out: &mut Vec<u8>) {
        out.extend([tag, self.s]);
        self.addr.encode(out);
        self.len.encode(out);
    }
}

impl At {
    fn decode(u: &mut Unstructured<'_>) -> Result<Self> {
        let (c, s, addr) = (u8::arbitrary(u)?, u8::arbitrary(u)?, Addr::decode(u)?);
        let (off, len) = (u16_(u)?, u16_(u)?);
        Ok(At {
            c,
            s,
            addr,
            off,
            len,
        })
    }

    fn encode(&self, tag: u8, out: &mut Vec<u8>) {
        out.extend([tag, self.c, self.s]);
        self.addr.encode(out);
        out.extend(self.off.to_le_bytes());
        out.extend(self.len.to_le_bytes());
    }
}

impl Addr {
    fn decode(u: &mut Unstructured<'_>) -> Result<Self> {
        Ok(match u8::arbitrary(u)? % 6 {
            0 => Addr::Low(u8::arbitrary(u)?),
            1 => Addr::Base(u8::arbitrary(u)?),
            2 => Addr::Region(u8::arbitrary(u)?, i8::arbitrary(u)?),
            3 => Addr::Top(u8::arbitrary(u)?),
            4 => Addr::Max(u8::arbitrary(u)?),
            _ => Addr::Odd(u8::arbitrary(u)?, u16_(u)?),
        })
    }

    fn encode(self, out: &mut Vec<u8>) {
        match self {
            Addr::Low(k) => out.extend([0, k]),
            Addr::Base(k) => out.extend([1, k]),
            Addr::Region(i, d) => out.extend([2, i, d as u8]),
            Addr::Top(k) => out.extend([3, k]),
            Addr::Max(k) => out.extend([4, k]),
            Addr::Odd(i, v) => {
                out.extend([5, i]);
                out.extend(v.to_le_bytes());
            }
        }
    }
}

impl Len {
    fn decode(u: &mut Unstructured<'_>) -> Result<Self> {
        // Mostly page counts.
        Ok(match u8::arbitrary(u)? % 8 {
            0..=4 => Len::Pages(u8::arbitrary(u)?),
            5 => Len::Bytes(u16_(u)?),
            6 => Len::Huge(u8::arbitrary(u)?),
            _ => Len::VaEnd(u8::arbitrary(u)?),
        })
    }

    fn encode(self, out: &mut Vec<u8>) {
        match self {
            Len::Pages(n) => out.extend([0, n]),
            Len::Bytes(v) => {
                out.push(5);
                out.extend(v.to_le_bytes());
            }
            Len::Huge(k) => out.extend([6, k]),
            Len::VaEnd(k) => out.extend([7, k]),
        }
    }
}

impl Pg {
    fn decode(u: &mut Unstructured<'_>) -> Result<Self> {
        Ok(match u8::arbitrary(u)? % 8 {
            0 | 1 => Pg::Small(u8::arbitrary(u)?),
            2 => Pg::Big(i8::arbitrary(u)?),
            3 => Pg::Top(u8::arbitrary(u)?),
            4 => Pg::Div(i8::arbitrary(u)?),
            _ => Pg::Known(u8::arbitrary(u)?),
        })
    }

    fn encode(self, out: &mut Vec<u8>) {
        match self {
            Pg::Small(k) => out.extend([0, k]),
            Pg::Big(d) => out.extend([2, d as u8]),
            Pg::Top(k) => out.extend([3, k]),
            Pg::Div(d) => out.extend([4, d as u8]),
            Pg::Known(k) => out.extend([5, k]),
        }
    }
}

impl Span {
    fn decode(u: &mut Unstructured<'_>) -> Result<Self> {
        Ok(match u8::arbitrary(u)? % 4 {
            0 => Span::Full,
            1 => Span::Incl(Pg::decode(u)?, Pg::decode(u)?),
            2 => Span::From(Pg::decode(u)?),
            _ => Span::To(Pg::decode(u)?),
        })
    }

    fn encode(self, out: &mut Vec<u8>) {
        match self {
            Span::Full => out.push(0),
            Span::Incl(a, b) => {
                out.push(1);
                a.encode(out);
                b.encode(out);
            }
            Span::From(a) => {
                out.push(2);
                a.encode(out);
            }
            Span::To(b) => {
                out.push(3);
                b.encode(out);
            }
        }
    }
}

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        // Tag 16 is a second Write (writes are what the model checks most).
        Ok(match u8::arbitrary(u)? % NUM_OPS {
            0 => Op::Mmap(MmapArgs {
                s: u8::arbitrary(u)?,
                fixed: match u8::arbitrary(u)? & 1 {
                    0 => None,
                    _ => Some(Addr::decode(u)?),
                },
                len: Len::decode(u)?,
                prot: u8::arbitrary(u)?,
                flags: u8::arbitrary(u)?,
                f: u8::arbitrary(u)?,
                pgoff: Pg::decode(u)?,
                advice: u8::arbitrary(u)?,
            }),
            1 => Op::Munmap(Area::decode(u)?),
            2 => Op::Mprotect(Area::decode(u)?, u8::arbitrary(u)?),
            3 => Op::Madvise(Area::decode(u)?, u8::arbitrary(u)?),
            4 => Op::Fork {
                src: u8::arbitrary(u)?,
                dst: u8::arbitrary(u)?,
            },
            5 => Op::Drop(u8::arbitrary(u)?),
            6 => Op::New(u8::arbitrary(u)?),
            7 => Op::Read(At::decode(u)?),
            8 | 16 => Op::Write(At::decode(u)?, u8::arbitrary(u)?),
            9 => Op::FreeUnused(u8::arbitrary(u)?),
            10 => Op::Writeback(u8::arbitrary(u)?, Span::decode(u)?),
            11 => Op::Sync(u8::arbitrary(u)?),
            12 => Op::FailReads(
                u8::arbitrary(u)?,
                Pg::decode(u)?,
                u8::arbitrary(u)? & 1 == 1,
            ),
            13 => Op::FailWrites(
                u8::arbitrary(u)?,
                Pg::decode(u)?,
                u8::arbitrary(u)? & 1 == 1,
            ),
            14 => Op::FlushTlb(u8::arbitrary(u)?),
            _ => Op::Check,
        })
    }
}

/// A whole fuzz input: the machine's shape and the ops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmrInput {
    /// CPUs: 1 or 2.
    pub cpus: usize,
    /// Files: 1 or 2.
    pub files: usize,
    /// Address-space slots: 2 or 3 (all start with an empty space).
    pub spaces: usize,
    /// Frames in the pool: 8..=71 (runs out; modelled), or [`BIG_POOL`].
    pub frames: usize,
    /// The ops, in order.
    pub ops: Vec<Op>,
}

/// The frame count of the big pool.
/// (Big enough that hand-made seeds never run out; small enough that a
/// populated giant mapping stays cheap to compare.)
pub const BIG_POOL: usize = 256;

impl VmrInput {
    /// Decodes fuzzer bytes (never fails: missing bytes read as zero).
    pub fn decode(data: &[u8]) -> Self {
        let mut u = Unstructured::new(data);
        let shape = u8::arbitrary(&mut u).unwrap_or(0);
        let fb = u8::arbitrary(&mut u).unwrap_or(0);
        let frames = if fb & 0x80 != 0 {
            BIG_POOL
        } else {
            8 + usize::from(fb & 0x3f)
        };
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < MAX_OPS {
            match Op::arbitrary(&mut u) {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        VmrInput {
            cpus: 1 + usize::from(shape & 1),
            files: 1 + usize::from((shape >> 1) & 1),
            spaces: 2 + usize::from((shape >> 2) & 1),
            frames,
            ops,
        }
    }

    /// The bytes that decode to this input.
    pub fn encode(&self) -> Vec<u8> {
        assert!((1..=2).contains(&self.cpus) && (1..=2).contains(&self.files));
        assert!((2..=3).contains(&self.spaces));
        let fb = match self.frames {
            BIG_POOL => 0x80,
            n @ 8..=71 => (n - 8) as u8,
            n => panic!("frames must be 8..=71 or {BIG_POOL}, not {n}"),
        };
        let shape = (self.cpus - 1) | (self.files - 1) << 1 | (self.spaces - 2) << 2;
        let mut out = vec![shape as u8, fb];
        for op in &self.ops {
            op.encode(&mut out);
        }
        out
    }
}
