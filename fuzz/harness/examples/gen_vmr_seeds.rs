//! Writes the hand-made `vmr_ops` seeds to `fuzz/seeds/vmr_ops/` (run from
//! anywhere: `cargo run --manifest-path fuzz/Cargo.toml -p
//! pagemap-fuzz-harness --example gen_vmr_seeds`). Each seed is a named
//! scenario; together they cover every op, every `VmError` and `Fault` the
//! model predicts, and the frame-exhaustion paths (checked by
//! `tests/vmr_replay.rs`). `bug_*` seeds reproduce known bugs (see
//! `vmr_run::KNOWN_BUGS`). Seeds picked from fuzzing sit beside them.

use std::path::PathBuf;

use pagemap_fuzz_harness::vmr_ops::{Addr, Len, Op, Op::*, Pg, Span, VmrInput, BIG_POOL};

// Protection selectors (indices into PROTS).
const NONE: u8 = 0;
const R: u8 = 1;
const RW: u8 = 2;
const RX: u8 = 3;
const W: u8 = 5;
const X: u8 = 6;
// Flag selectors.
const SH: u8 = 0;
const PR: u8 = 3;
const BOTH: u8 = 6;
const NEITHER: u8 = 7;
const POP: u8 = 0x10;
const LOCK: u8 = 0x20;

fn mmap(s: u8, len: u8, prot: u8, flags: u8, f: u8, pgoff: Pg) -> Op {
    Mmap {
        s,
        fixed: None,
        len: Len::Pages(len),
        prot,
        flags,
        f,
        pgoff,
        advice: 0,
    }
}

fn mmap_at(s: u8, at: Addr, len: Len, prot: u8, flags: u8, pgoff: Pg) -> Op {
    Mmap {
        s,
        fixed: Some(at),
        len,
        prot,
        flags,
        f: 0,
        pgoff,
        advice: 0,
    }
}

/// Page `p` (+ `off` bytes) of space `s`'s region `i`.
fn at(i: u8, p: i8) -> Addr {
    Addr::Region(i, p + 4)
}

fn rd(c: u8, s: u8, a: Addr, off: u16, len: u16) -> Op {
    Read {
        c,
        s,
        addr: a,
        off,
        len,
    }
}

fn wr(c: u8, s: u8, a: Addr, off: u16, len: u16, seed: u8) -> Op {
    Write {
        c,
        s,
        addr: a,
        off,
        len,
        seed,
    }
}

fn munmap(s: u8, a: Addr, pages: u8) -> Op {
    Munmap {
        s,
        addr: a,
        len: Len::Pages(pages),
    }
}

fn mprotect(s: u8, a: Addr, pages: u8, prot: u8) -> Op {
    Mprotect {
        s,
        addr: a,
        len: Len::Pages(pages),
        prot,
    }
}

fn madvise(s: u8, a: Addr, len: Len, advice: u8) -> Op {
    Madvise {
        s,
        addr: a,
        len,
        advice,
    }
}

/// (name, cpus, files, spaces, frames, ops)
type Seed = (&'static str, usize, usize, usize, usize, Vec<Op>);

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../seeds/vmr_ops");
    std::fs::create_dir_all(&dir).unwrap();
    let z = Pg::Small(0);
    let seeds: Vec<Seed> = vec![
        (
            "shared_write_visible_everywhere",
            2,
            1,
            2,
            BIG_POOL,
            vec![
                mmap(0, 4, RW, SH, 0, z),
                mmap(1, 4, RW, SH, 0, z),
                wr(0, 0, at(0, 0), 4090, 20, 1),
                rd(1, 1, at(0, 0), 4080, 40),
                munmap(0, at(0, 0), 4),
                Sync(0),
                Check,
                rd(0, 1, at(0, 1), 0, 16),
                Check,
            ],
        ),
        (
            "private_writes_stay_private",
            2,
            1,
            2,
            BIG_POOL,
            vec![
                mmap(0, 2, RW, PR, 0, z),
                mmap(1, 2, RW, SH, 0, z),
                rd(0, 0, at(0, 0), 0, 8),
                wr(0, 0, at(0, 0), 0, 8, 2),
                rd(1, 1, at(0, 0), 0, 8),
                wr(1, 1, at(0, 1), 0, 8, 3),
                rd(0, 0, at(0, 1), 0, 8),
                rd(0, 0, at(0, 0), 0, 8),
                Drop(0),
                Sync(0),
                Check,
            ],
        ),
        (
            "fork_copies_private_shares_shared",
            2,
            1,
            3,
            BIG_POOL,
            vec![
                mmap(0, 1, RW, SH, 0, z),
                mmap(0, 1, RW, PR, 0, z),
                wr(0, 0, at(1, 0), 0, 6, 4),
                Fork { src: 0, dst: 1 },
                rd(1, 1, at(1, 0), 0, 6),
                wr(1, 1, at(1, 0), 0, 6, 5),
                rd(0, 0, at(1, 0), 0, 6),
                wr(1, 1, at(0, 0), 0, 6, 6),
                rd(0, 0, at(0, 0), 0, 6),
                Fork { src: 1, dst: 2 },
                rd(0, 2, at(1, 0), 0, 6),
                Fork { src: 2, dst: 2 },
                Drop(1),
                Drop(2),
                Check,
            ],
        ),
        (
            "frames_run_out",
            1,
            1,
            2,
            8,
            vec![
                Mmap {
                    s: 0,
                    fixed: None,
                    len: Len::Pages(8),
                    prot: RW,
                    flags: PR,
                    f: 0,
                    pgoff: z,
                    advice: 1,
                },
                rd(0, 0, at(0, 0), 0, 1),
                rd(0, 0, at(0, 1), 0, 1),
                rd(0, 0, at(0, 2), 0, 1),
                rd(0, 0, at(0, 3), 0, 1),
                rd(0, 0, at(0, 4), 0, 1),
                wr(0, 0, at(0, 0), 0, 1, 7),
                wr(0, 0, at(0, 1), 0, 1, 7),
                wr(0, 0, at(0, 2), 0, 1, 7),
                wr(0, 0, at(0, 3), 0, 1, 7),
                rd(0, 0, at(0, 5), 0, 1),
                Fork { src: 0, dst: 1 },
                FreeUnused(0),
                munmap(0, at(0, 0), 2),
                Fork { src: 0, dst: 1 },
                FreeUnused(0),
                rd(0, 1, at(0, 3), 0, 4),
                Check,
            ],
        ),
        (
            "mmap_errors",
            1,
            1,
            2,
            BIG_POOL,
            vec![
                mmap(0, 4, RW, SH, 0, z),
                mmap(0, 1, R, BOTH, 0, z),
                mmap(0, 1, R, NEITHER, 0, z),
                mmap(0, 1, R, SH, 7, z),
                mmap(0, 0, R, SH, 0, z),
                Mmap {
                    s: 0,
                    fixed: None,
                    len: Len::Bytes(100),
                    prot: R,
                    flags: SH,
                    f: 0,
                    pgoff: z,
                    advice: 0,
                },
                mmap(0, 2, R, SH, 0, Pg::Top(0)),
                mmap(0, 1, R, SH, 0, Pg::Top(0)),
                mmap_at(0, Addr::Odd(0, 7), Len::Pages(1), R, SH, z),
                mmap_at(0, Addr::Max(0), Len::Pages(2), R, SH, z),
                mmap_at(0, Addr::Top(0), Len::Pages(1), R, SH, z),
                mmap_at(0, Addr::Top(1), Len::Pages(1), R, SH, z),
                mmap_at(0, at(0, 1), Len::Pages(1), R, SH, z),
                mmap_at(0, at(0, -1), Len::Pages(2), R, SH, z),
                Mmap {
                    s: 0,
                    fixed: None,
                    len: Len::VaEnd(0),
                    prot: R,
                    flags: SH,
                    f: 0,
                    pgoff: z,
                    advice: 0,
                },
                Mmap {
                    s: 0,
                    fixed: None,
                    len: Len::VaEnd(3),
                    prot: R,
                    flags: SH,
                    f: 0,
                    pgoff: z,
                    advice: 0,
                },
                Mmap {
                    s: 0,
                    fixed: None,
                    len: Len::Huge(0),
                    prot: R,
                    flags: SH,
                    f: 0,
                    pgoff: z,
                    advice: 0,
                },
                mmap_at(1, Addr::Low(0), Len::VaEnd(2), NONE, PR, z),
                rd(0, 1, Addr::Low(5), 0, 1),
                Check,
            ],
        ),
        (
            "munmap_mprotect_madvise_errors",
            1,
            1,
            2,
            BIG_POOL,
            vec![
                mmap(0, 4, RW, SH, 0, z),
                Munmap {
                    s: 0,
                    addr: Addr::Odd(0, 1),
                    len: Len::Pages(1),
                },
                munmap(0, at(0, 0), 0),
                Munmap {
                    s: 0,
                    addr: at(0, 0),
                    len: Len::Bytes(4097),
                },
                Munmap {
                    s: 0,
                    addr: Addr::Max(0),
                    len: Len::Pages(2),
                },
                Munmap {
                    s: 0,
                    addr: at(0, 0),
                    len: Len::Huge(1),
                },
                Munmap {
                    s: 0,
                    addr: Addr::Top(1),
                    len: Len::Pages(2),
                },
                munmap(0, Addr::Low(3), 2),
                mprotect(0, at(0, 0), 8, R),
                mprotect(0, at(0, -1), 2, R),
                Mprotect {
                    s: 0,
                    addr: at(0, 0),
                    len: Len::Bytes(4096 + 5),
                    prot: R,
                },
                madvise(0, at(0, 10), Len::Pages(1), 1),
                madvise(0, at(0, 0), Len::Pages(0), 1),
                madvise(0, Addr::Odd(0, 9), Len::Pages(1), 1),
                mprotect(1, Addr::Low(0), 1, R),
                Check,
            ],
        ),
        (
            "populate_read_error",
            1,
            1,
            2,
            BIG_POOL,
            vec![
                FailReads(0, Pg::Small(2), true),
                mmap(0, 4, R, SH | POP, 0, z),
                FreeUnused(0),
                mmap(0, 4, RW, PR | LOCK, 0, z),
                FailReads(0, Pg::Small(2), false),
                mmap(0, 4, R, SH | POP, 0, z),
                mmap(0, 4, RW, PR | POP, 0, z),
                mmap(0, 2, NONE, SH | POP, 0, z),
                mmap(0, 2, X, PR | LOCK, 0, z),
                wr(0, 0, at(0, 0), 0, 4, 9),
                rd(0, 0, at(1, 0), 0, 8),
                FailReads(0, Pg::Small(7), true),
                mmap(1, 8, R, SH, 0, z),
                rd(0, 1, at(0, 7), 0, 8),
                rd(0, 1, at(0, 6), 4000, 200),
                Check,
            ],
        ),
        (
            "populate_out_of_frames",
            1,
            1,
            2,
            9,
            vec![
                mmap(0, 1, R, SH | POP, 0, z),
                mmap(0, 6, RW, PR | POP, 0, z),
                mmap(1, 12, R, SH | POP, 0, z),
                FreeUnused(0),
                Check,
            ],
        ),
        (
            "mprotect_harvests_and_blocks",
            2,
            1,
            2,
            BIG_POOL,
            vec![
                mmap(0, 2, RW, SH, 0, z),
                wr(1, 0, at(0, 0), 100, 6, 10),
                mprotect(0, at(0, 0), 1, R),
                wr(1, 0, at(0, 0), 0, 1, 11),
                wr(1, 0, at(0, 0), 4095, 2, 12),
                mprotect(0, at(0, 0), 1, NONE),
                rd(0, 0, at(0, 0), 0, 8),
                mprotect(0, at(0, 0), 1, RW),
                rd(0, 0, at(0, 0), 100, 6),
                wr(0, 0, at(0, 0), 0, 8, 13),
                mprotect(0, at(0, 0), 2, RX),
                Writeback(0, Span::Full),
                mprotect(0, at(0, 0), 1, RW),
                wr(0, 0, at(0, 0), 0, 8, 14),
                madvise(0, at(0, 0), Len::Pages(1), 2),
                Writeback(0, Span::Full),
                Check,
            ],
        ),
        (
            "private_survives_prot_none",
            1,
            1,
            2,
            BIG_POOL,
            vec![
                mmap(0, 1, RW, PR, 0, z),
                wr(0, 0, at(0, 0), 0, 4, 15),
                mprotect(0, at(0, 0), 1, NONE),
                rd(0, 0, at(0, 0), 0, 4),
                mprotect(0, at(0, 0), 1, R),
                rd(0, 0, at(0, 0), 0, 4),
                wr(0, 0, at(0, 0), 0, 4, 16),
                Fork { src: 0, dst: 1 },
                mprotect(1, at(0, 0), 1, RW),
                wr(0, 1, at(0, 0), 0, 4, 17),
                rd(0, 0, at(0, 0), 0, 4),
                Check,
            ],
        ),
        (
            "teardown_harvests_write_errors",
            1,
            1,
            2,
            BIG_POOL,
            vec![
                mmap(0, 3, RW, SH, 0, z),
                wr(0, 0, at(0, 2), 0, 4, 18),
                wr(0, 0, at(0, 1), 0, 4, 18),
                Drop(0),
                FailWrites(0, Pg::Small(2), true),
                Writeback(0, Span::Full),
                FreeUnused(0),
                FailWrites(0, Pg::Small(2), false),
                FreeUnused(0),
                New(0),
                mmap(0, 3, R, SH, 0, z),
                rd(0, 0, at(0, 1), 0, 8),
                rd(0, 0, at(0, 2), 0, 8),
                Check,
            ],
        ),
        (
            "writeback_ranges",
            1,
            1,
            2,
            BIG_POOL,
            vec![
                mmap(0, 8, RW, SH, 0, z),
                wr(0, 0, at(0, 0), 0, 8192 + 4096 * 2, 19),
                munmap(0, at(0, 0), 8),
                Writeback(0, Span::To(Pg::Small(0))),
                Writeback(0, Span::Incl(Pg::Small(3), Pg::Small(1))),
                Writeback(0, Span::To(Pg::Small(1))),
                Writeback(0, Span::Incl(Pg::Small(1), Pg::Small(2))),
                Writeback(0, Span::From(Pg::Small(3))),
                Sync(0),
                FreeUnused(0),
                Check,
            ],
        ),
        (
            "top_of_the_file",
            1,
            1,
            2,
            BIG_POOL,
            vec![
                mmap(0, 2, RW, SH, 0, Pg::Top(1)),
                wr(0, 0, at(0, 1), 0, 3, 20),
                mmap(0, 2, RW, SH, 0, Pg::Div(-1)),
                wr(0, 0, at(1, 0), 4094, 4, 21),
                mmap(0, 2, RW, PR, 0, Pg::Big(-1)),
                wr(0, 0, at(2, 0), 4090, 10, 22),
                mmap(0, 3, RW, SH, 0, Pg::Div(1)),
                munmap(0, at(0, 0), 2),
                Writeback(0, Span::From(Pg::Top(1))),
                Writeback(0, Span::Incl(Pg::Div(-1), Pg::Div(0))),
                mmap(1, 4, R, SH, 0, Pg::Known(5)),
                rd(0, 1, at(0, 0), 0, 16),
                Check,
            ],
        ),
        (
            "splits",
            1,
            1,
            2,
            BIG_POOL,
            vec![
                mmap(0, 8, RW, SH, 0, z),
                munmap(0, at(0, 2), 2),
                mprotect(0, at(1, 1), 1, R),
                madvise(0, at(0, 0), Len::Pages(2), 1),
                wr(0, 0, at(2, 0), 0, 4096 + 8, 23),
                wr(0, 0, at(1, 1), 0, 1, 24),
                wr(0, 0, at(0, 1), 4000, 200, 25),
                mmap_at(0, at(0, 2), Len::Pages(2), RW, PR, Pg::Small(2)),
                rd(0, 0, at(0, 0), 0, 8192 * 2),
                madvise(0, at(0, 0), Len::Pages(8), 2),
                munmap(0, at(0, 0), 8),
                Check,
            ],
        ),
        (
            "two_files_two_cpus",
            2,
            2,
            3,
            BIG_POOL,
            vec![
                mmap(0, 2, RW, SH, 0, z),
                mmap(1, 2, RW, SH, 1, z),
                mmap(2, 2, RW, PR, 1, z),
                wr(0, 0, at(0, 0), 10, 10, 26),
                wr(1, 1, at(0, 0), 10, 10, 27),
                rd(1, 2, at(0, 0), 0, 32),
                rd(0, 0, at(0, 0), 0, 32),
                FlushTlb(1),
                wr(1, 2, at(0, 1), 0, 10, 28),
                rd(0, 1, at(0, 1), 0, 16),
                New(1),
                Sync(0),
                Sync(1),
                FreeUnused(1),
                Check,
            ],
        ),
        (
            "stale_tlb_after_cow_and_munmap",
            2,
            1,
            2,
            BIG_POOL,
            vec![
                mmap(0, 1, RW, PR, 0, z),
                rd(1, 0, at(0, 0), 0, 1),
                wr(0, 0, at(0, 0), 0, 1, 29),
                rd(1, 0, at(0, 0), 0, 1),
                wr(1, 0, at(0, 0), 0, 1, 30),
                munmap(0, at(0, 0), 1),
                mmap(1, 1, RW, PR, 0, z),
                wr(0, 1, at(0, 0), 0, 1, 31),
                wr(1, 0, at(0, 0), 0, 1, 32),
                rd(0, 1, at(0, 0), 0, 1),
                Check,
            ],
        ),
        // Fixed bug (odd_prot_read): a write-only mapping's page reads
        // fine once written, while an unwritten page of it faults.
        (
            "fixed_odd_prot_read",
            1,
            1,
            2,
            BIG_POOL,
            vec![
                mmap(0, 2, W, SH, 0, z),
                rd(0, 0, at(0, 1), 0, 1),
                wr(0, 0, at(0, 0), 0, 1, 33),
                rd(0, 0, at(0, 0), 0, 1),
            ],
        ),
    ];
    for (name, cpus, files, spaces, frames, ops) in seeds {
        let input = VmrInput {
            cpus,
            files,
            spaces,
            frames,
            ops,
        };
        let bytes = input.encode();
        assert_eq!(VmrInput::decode(&bytes), input, "{name} round-trips");
        let file = if name.starts_with("bug_") {
            name.to_string()
        } else {
            format!("hand_{name}")
        };
        std::fs::write(dir.join(&file), bytes).unwrap();
        println!("{file}");
    }
}
