//! `swap_ops`: fuzzer bytes -> demand-paging operations on up to three
//! address spaces of a machine with swap (issue 13), and back.
//!
//! As for the other targets, decoding reads one byte at a time and
//! [`SwapInput::encode`] is its exact inverse, so the hand-made seeds are
//! op lists (`tests/hand_seeds.rs`). Fields keep their raw bytes; the
//! runner (`swap_run.rs`) takes them modulo what they select from.

use arbitrary::{Arbitrary, Result, Unstructured};

/// Ops run per input at most.
pub const MAX_SWAP_OPS: usize = 80;

/// A page range of one space: `pages` (`1 + pages % 8`) pages from page
/// `first % 16` of area `area % 4` (areas are 16 pages apart, so a range
/// may run into the next area or past the last one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// Which area.
    pub area: u8,
    /// First page in it.
    pub first: u8,
    /// Pages, less one (modulo 8).
    pub pages: u8,
}

/// A byte address: area `area % 4`, page `page % 16`, offset `off % 4096`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    /// Which area.
    pub area: u8,
    /// Page in it.
    pub page: u8,
    /// Offset in the page.
    pub off: u16,
}

/// One operation. `space` is taken modulo 3 (a slot that may be empty: the
/// op is then skipped), `cpu` modulo 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwapOp {
    /// A fixed mapping at page `off % 8` of an area, `1 + pages % 8` pages:
    /// `kind % 3` anonymous, private file, shared file (`pgoff % 8`);
    /// protection `prot % 4`: RW, RW, READ, NONE.
    Mmap {
        /// Which space.
        space: u8,
        /// Which area.
        area: u8,
        /// First page in the area.
        off: u8,
        /// Pages, less one.
        pages: u8,
        /// Anonymous, private file or shared file.
        kind: u8,
        /// Protection selector.
        prot: u8,
        /// File page of the first page (file mappings).
        pgoff: u8,
    },
    /// `munmap` of a range.
    Munmap {
        /// Which space.
        space: u8,
        /// The range.
        range: Range,
    },
    /// `mprotect` of a range (`prot` as for `Mmap`).
    Mprotect {
        /// Which space.
        space: u8,
        /// The range.
        range: Range,
        /// Protection selector.
        prot: u8,
    },
    /// `mlock` (pin) of a range.
    Mlock {
        /// Which space.
        space: u8,
        /// The range.
        range: Range,
    },
    /// `munlock` (unpin) of a range.
    Munlock {
        /// Which space.
        space: u8,
        /// The range.
        range: Range,
    },
    /// `madvise(DontNeed)` of a range.
    DontNeed {
        /// Which space.
        space: u8,
        /// The range.
        range: Range,
    },
    /// `madvise(Free)` of a range.
    Free {
        /// Which space.
        space: u8,
        /// The range.
        range: Range,
    },
    /// `page_out` of a range.
    PageOut {
        /// Which space.
        space: u8,
        /// The range.
        range: Range,
    },
    /// `page_in` of a range.
    PageIn {
        /// Which space.
        space: u8,
        /// The range.
        range: Range,
    },
    /// `fork` of `space` into slot `into` (a space there is dropped first;
    /// `into == space` picks the next slot).
    Fork {
        /// Parent.
        space: u8,
        /// Child's slot.
        into: u8,
    },
    /// Drop a space (teardown).
    Drop {
        /// Which space.
        space: u8,
    },
    /// A new empty space in a slot (dropping the one there).
    New {
        /// Which slot.
        space: u8,
    },
    /// A CPU read of `len` bytes (`len == 255`: a whole page, else
    /// `1 + 16 * len`), compared with the model.
    Read {
        /// Which space.
        space: u8,
        /// Which CPU.
        cpu: u8,
        /// Where.
        at: At,
        /// Length selector.
        len: u8,
    },
    /// A CPU write of `len` bytes of a pattern seeded by `byte`, read back
    /// through the other CPU.
    Write {
        /// Which space.
        space: u8,
        /// Which CPU.
        cpu: u8,
        /// Where.
        at: At,
        /// Length selector (as for `Read`).
        len: u8,
        /// Pattern seed.
        byte: u8,
    },
    /// `Machine::evict_frame`: `how` even: the frame a PTE of the space
    /// names (skipped if none); odd: frame `1 + (how / 2) % capacity`.
    Evict {
        /// Frame selector.
        how: u8,
        /// Which space (even `how`).
        space: u8,
        /// Which page's PTE (even `how`; the offset is unused).
        at: At,
    },
    /// Swap reads of location `loc % (slots + 1)` fail (or succeed again);
    /// `loc % (slots + 1) == slots`: every location's.
    FailReads {
        /// Location selector.
        loc: u8,
        /// Fail from now on.
        on: bool,
    },
    /// As `FailReads`, for swap writes.
    FailWrites {
        /// Location selector.
        loc: u8,
        /// Fail from now on.
        on: bool,
    },
    /// `pool.reclaim(1 + n % 4)`.
    Reclaim {
        /// How many, less one.
        n: u8,
    },
    /// Flush a CPU's TLB.
    FlushTlb {
        /// Which CPU.
        cpu: u8,
    },
    /// Read every mapped page of every space and compare.
    Check,
}

/// Number of tags (taken modulo this): 20 ops, plus tags 20 and 21
/// decoding to `Read` and `Write` to give accesses a larger share.
pub const NUM_SWAP_OPS: u8 = 22;

impl SwapOp {
    /// Short name (for coverage statistics).
    pub fn name(&self) -> &'static str {
        match self {
            SwapOp::Mmap { .. } => "Mmap",
            SwapOp::Munmap { .. } => "Munmap",
            SwapOp::Mprotect { .. } => "Mprotect",
            SwapOp::Mlock { .. } => "Mlock",
            SwapOp::Munlock { .. } => "Munlock",
            SwapOp::DontNeed { .. } => "DontNeed",
            SwapOp::Free { .. } => "Free",
            SwapOp::PageOut { .. } => "PageOut",
            SwapOp::PageIn { .. } => "PageIn",
            SwapOp::Fork { .. } => "Fork",
            SwapOp::Drop { .. } => "Drop",
            SwapOp::New { .. } => "New",
            SwapOp::Read { .. } => "Read",
            SwapOp::Write { .. } => "Write",
            SwapOp::Evict { .. } => "Evict",
            SwapOp::FailReads { .. } => "FailReads",
            SwapOp::FailWrites { .. } => "FailWrites",
            SwapOp::Reclaim { .. } => "Reclaim",
            SwapOp::FlushTlb { .. } => "FlushTlb",
            SwapOp::Check => "Check",
        }
    }

    /// Appends this op's bytes (the inverse of decoding).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let range = |out: &mut Vec<u8>, r: Range| out.extend([r.area, r.first, r.pages]);
        let at = |out: &mut Vec<u8>, a: At| {
            out.extend([a.area, a.page]);
            out.extend(a.off.to_le_bytes());
        };
        match *self {
            SwapOp::Mmap {
                space,
                area,
                off,
                pages,
                kind,
                prot,
                pgoff,
            } => out.extend([0, space, area, off, pages, kind, prot, pgoff]),
            SwapOp::Munmap { space, range: r } => {
                out.extend([1, space]);
                range(out, r);
            }
            SwapOp::Mprotect {
                space,
                range: r,
                prot,
            } => {
                out.extend([2, space]);
                range(out, r);
                out.push(prot);
            }
            SwapOp::Mlock { space, range: r } => {
                out.extend([3, space]);
                range(out, r);
            }
            SwapOp::Munlock { space, range: r } => {
                out.extend([4, space]);
                range(out, r);
            }
            SwapOp::DontNeed { space, range: r } => {
                out.extend([5, space]);
                range(out, r);
            }
            SwapOp::Free { space, range: r } => {
                out.extend([6, space]);
                range(out, r);
            }
            SwapOp::PageOut { space, range: r } => {
                out.extend([7, space]);
                range(out, r);
            }
            SwapOp::PageIn { space, range: r } => {
                out.extend([8, space]);
                range(out, r);
            }
            SwapOp::Fork { space, into } => out.extend([9, space, into]),
            SwapOp::Drop { space } => out.extend([10, space]),
            SwapOp::New { space } => out.extend([11, space]),
            SwapOp::Read {
                space,
                cpu,
                at: a,
                len,
            } => {
                out.extend([12, space, cpu]);
                at(out, a);
                out.push(len);
            }
            SwapOp::Write {
                space,
                cpu,
                at: a,
                len,
                byte,
            } => {
                out.extend([13, space, cpu]);
                at(out, a);
                out.extend([len, byte]);
            }
            SwapOp::Evict { how, space, at: a } => {
                out.extend([14, how, space]);
                at(out, a);
            }
            SwapOp::FailReads { loc, on } => out.extend([15, loc, on as u8]),
            SwapOp::FailWrites { loc, on } => out.extend([16, loc, on as u8]),
            SwapOp::Reclaim { n } => out.extend([17, n]),
            SwapOp::FlushTlb { cpu } => out.extend([18, cpu]),
            SwapOp::Check => out.push(19),
        }
    }
}

fn byte(u: &mut Unstructured<'_>) -> Result<u8> {
    u8::arbitrary(u)
}

fn flag(u: &mut Unstructured<'_>) -> Result<bool> {
    Ok(byte(u)? & 1 == 1)
}

fn range(u: &mut Unstructured<'_>) -> Result<Range> {
    Ok(Range {
        area: byte(u)?,
        first: byte(u)?,
        pages: byte(u)?,
    })
}

fn at(u: &mut Unstructured<'_>) -> Result<At> {
    Ok(At {
        area: byte(u)?,
        page: byte(u)?,
        off: u16::from_le_bytes([byte(u)?, byte(u)?]),
    })
}

impl<'a> Arbitrary<'a> for SwapOp {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match byte(u)? % NUM_SWAP_OPS {
            0 => SwapOp::Mmap {
                space: byte(u)?,
                area: byte(u)?,
                off: byte(u)?,
                pages: byte(u)?,
                kind: byte(u)?,
                prot: byte(u)?,
                pgoff: byte(u)?,
            },
            1 => SwapOp::Munmap {
                space: byte(u)?,
                range: range(u)?,
            },
            2 => SwapOp::Mprotect {
                space: byte(u)?,
                range: range(u)?,
                prot: byte(u)?,
            },
            3 => SwapOp::Mlock {
                space: byte(u)?,
                range: range(u)?,
            },
            4 => SwapOp::Munlock {
                space: byte(u)?,
                range: range(u)?,
            },
            5 => SwapOp::DontNeed {
                space: byte(u)?,
                range: range(u)?,
            },
            6 => SwapOp::Free {
                space: byte(u)?,
                range: range(u)?,
            },
            7 => SwapOp::PageOut {
                space: byte(u)?,
                range: range(u)?,
            },
            8 => SwapOp::PageIn {
                space: byte(u)?,
                range: range(u)?,
            },
            9 => SwapOp::Fork {
                space: byte(u)?,
                into: byte(u)?,
            },
            10 => SwapOp::Drop { space: byte(u)? },
            11 => SwapOp::New { space: byte(u)? },
            12 | 20 => SwapOp::Read {
                space: byte(u)?,
                cpu: byte(u)?,
                at: at(u)?,
                len: byte(u)?,
            },
            13 | 21 => SwapOp::Write {
                space: byte(u)?,
                cpu: byte(u)?,
                at: at(u)?,
                len: byte(u)?,
                byte: byte(u)?,
            },
            14 => SwapOp::Evict {
                how: byte(u)?,
                space: byte(u)?,
                at: at(u)?,
            },
            15 => SwapOp::FailReads {
                loc: byte(u)?,
                on: flag(u)?,
            },
            16 => SwapOp::FailWrites {
                loc: byte(u)?,
                on: flag(u)?,
            },
            17 => SwapOp::Reclaim { n: byte(u)? },
            18 => SwapOp::FlushTlb { cpu: byte(u)? },
            _ => SwapOp::Check,
        })
    }
}

/// A whole `swap_ops` input: the pool, the swap store, the ops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwapInput {
    /// Frames in the pool: `2 + byte % 7` (2 to 8).
    pub frames: usize,
    /// Slots of the swap store: `2 + byte % 15` (2 to 16).
    pub slots: u32,
    /// The ops, in order.
    pub ops: Vec<SwapOp>,
}

impl SwapInput {
    /// Decodes fuzzer bytes (never fails: missing bytes read as zero).
    pub fn decode(data: &[u8]) -> Self {
        let mut u = Unstructured::new(data);
        let frames = 2 + usize::from(byte(&mut u).unwrap_or(0) % 7);
        let slots = 2 + u32::from(byte(&mut u).unwrap_or(0) % 15);
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < MAX_SWAP_OPS {
            match SwapOp::arbitrary(&mut u) {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        SwapInput { frames, slots, ops }
    }

    /// The bytes that decode to this input (`frames` in 2..=8, `slots` in
    /// 2..=16).
    pub fn encode(&self) -> Vec<u8> {
        assert!((2..=8).contains(&self.frames), "frames must be in 2..=8");
        assert!((2..=16).contains(&self.slots), "slots must be in 2..=16");
        let mut out = vec![(self.frames - 2) as u8, (self.slots - 2) as u8];
        for op in &self.ops {
            op.encode(&mut out);
        }
        out
    }
}
