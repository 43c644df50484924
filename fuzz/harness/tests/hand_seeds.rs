//! The hand-made seeds (`fuzz/seeds/<target>/hand_*`, `bug_*`, `fixed_*`)
//! as op lists: each named scenario is encoded, must equal its checked-in
//! file (`FUZZ_WRITE_SEEDS=1 cargo test --test hand_seeds` rewrites the
//! files after a change to a list) and is run through the target's runner.
//! `tests/replay.rs` requires the checked-in seeds together to cover every
//! op and error path; seeds picked from fuzzing (`fuzz_*`) sit beside them.

use pagemap_fuzz_harness::corpus::target;

/// `pagemap_ops`: together with the `fuzz_*` seeds, every op and every error path.
mod pagemap_ops {
    use super::target;
    use pagemap_fuzz_harness::{Idx::*, Input, Off, Op::*, Span};

    #[rustfmt::skip]
    #[test]
    fn hand_seeds() {
        let w = |r, off, len, byte| Write { r, off, len, byte };
        let rd = |r, off, len| Read { r, off, len };
        let seeds: Vec<(&str, usize, Vec<pagemap_fuzz_harness::Op>)> = vec![
            ("basic_write_writeback", 8, vec![
                Load(Small(1)), w(0, Off::In(100), 10, 7), rd(0, Off::In(95), 20),
                Dirty(Span::Full), Writeback(Span::Full), Dirty(Span::Full), Check,
            ]),
            ("load_read_error_discards", 8, vec![
                FailReads(Small(3), true), Load(Small(3)), Cached(Span::Full),
                NextPresent(Small(0)), Find(Small(3)), FailReads(Small(3), false),
                Load(Small(3)), Check,
            ]),
            ("pool_exhausted_then_freed", 2, vec![
                Load(Small(0)), Load(Small(1)), Load(Small(2)), FreeUnused, Put(0), FreeUnused,
                Load(Small(2)), LoadDrop(Small(5)), Check,
            ]),
            ("free_unused_write_error_keeps_dirty", 8, vec![
                Load(Small(5)), w(0, Off::In(0), 64, 1), Put(0), FailWrites(Small(5), true),
                FreeUnused, Dirty(Span::Full), Check, FailWrites(Small(5), false), FreeUnused,
                Cached(Span::Full), Load(Small(5)), rd(0, Off::In(0), 64),
            ]),
            ("writeback_write_error_stays_dirty", 8, vec![
                Load(Small(9)), MarkDirty(0), Load(Small(10)), MarkDirty(1),
                FailWrites(Small(9), true), Writeback(Span::Full), Dirty(Span::Full),
                NextDirty(Small(0)), FailWrites(Small(9), false), Writeback(Span::Full),
                Dirty(Span::Full), Check,
            ]),
            ("find_clone_put", 8, vec![
                Find(Small(4)), Load(Small(4)), Find(Small(4)), Clone(0), Clone(2), Put(1),
                Find(Small(4)), Check, Put(0), Put(0), Put(0), Put(0), FreeUnused,
                Find(Small(4)),
            ]),
            ("load_nowait_would_block", 8, vec![
                LoadNowait(Small(7)), LoadDrop(Small(7)), LoadNowait(Small(7)),
                LoadNowait(High(0)), Check,
            ]),
            ("clear_dirty_skips_writeback", 8, vec![
                Load(Small(2)), w(0, Off::In(10), 5, 9), ClearDirty(0), Writeback(Span::Full),
                Dirty(Span::Full), MarkDirty(0), ClearDirty(0), Put(0), FreeUnused,
                Load(Small(2)), rd(0, Off::In(10), 5),
            ]),
            ("top_of_index_space", 8, vec![
                Load(High(0)), Load(High(1)), w(0, Off::Edge(4), 4, 0xee),
                Cached(Span::From(High(1))), Cached(Span::Excl(High(1), High(0))),
                Cached(Span::ExclIncl(High(1), High(0))), Cached(Span::Excl(High(0), High(0))),
                NextPresent(High(0)), NextDirty(High(1)),
                Writeback(Span::ExclIncl(High(1), High(0))), Dirty(Span::Full), Check,
            ]),
            ("around_2_40", 8, vec![
                Load(Large(-1)), Load(Large(0)), Load(Large(1)), Load(Small(0)), MarkDirty(1),
                Cached(Span::Range(Large(-1), Large(1))),
                Cached(Span::Incl(Large(-1), Large(1))), Writeback(Span::To(Large(0))),
                Writeback(Span::ToIncl(Large(0))), NextPresent(Large(-2)), Check,
            ]),
            ("powers_of_two_heights", 16, vec![
                Load(Pow(0, 0)), Load(Pow(6, 0)), Load(Pow(12, -1)), Load(Pow(18, 0)),
                Load(Pow(30, 1)), Load(Pow(48, 0)), Load(Pow(63, 0)), Load(Pow(63, -1)),
                Cached(Span::Full), MarkDirty(3), MarkDirty(7), Dirty(Span::Full),
                NextDirty(Pow(19, 0)), Check,
            ]),
            ("out_of_bounds_access", 8, vec![
                Load(Small(1)), w(0, Off::Edge(3), 4, 1), w(0, Off::Huge(0), 1, 1),
                w(0, Off::Huge(5), 0, 1), rd(0, Off::Edge(0), 1), rd(0, Off::Huge(2), 3),
                Dirty(Span::Full), w(0, Off::Edge(4), 4, 1), rd(0, Off::Edge(8), 8), Check,
            ]),
            ("zero_length_write_stays_clean", 8, vec![
                Load(Small(6)), w(0, Off::Edge(0), 0, 0), Dirty(Span::Full),
                Writeback(Span::Full), Check,
            ]),
            ("store_contents_read_back", 8, vec![
                StoreSet(Small(11), 0x42), StoreSet(Large(3), 0x17), Load(Small(11)),
                Load(Large(3)), rd(0, Off::In(0), 200), rd(1, Off::Edge(100), 100), Check,
            ]),
            ("frame_reuse_is_zeroed", 1, vec![
                Load(Small(0)), w(0, Off::In(0), 255, 3), Writeback(Span::Full), Put(0),
                FreeUnused, Load(Small(1)), rd(0, Off::In(0), 255), Check,
            ]),
            ("frame_reuse_after_read_error", 1, vec![
                Load(Small(0)), w(0, Off::In(8), 16, 5), Put(0), FreeUnused,
                FailReads(Small(1), true), Load(Small(1)), Load(Small(0)),
                rd(0, Off::In(8), 16), Cached(Span::Full), Check,
            ]),
            ("drop_syncs_dirty_pages", 8, vec![
                Load(Small(20)), w(0, Off::In(1), 2, 3), Load(High(3)), MarkDirty(1), Put(0),
                FailWrites(High(3), true),
            ]),
            ("free_unused_mixed", 8, vec![
                Load(Small(1)), Load(Small(2)), LoadDrop(Small(3)), Load(Small(4)),
                MarkDirty(0), MarkDirty(1), Put(1), FailWrites(Small(4), true), MarkDirty(1),
                Put(1), FreeUnused, Cached(Span::Full), Dirty(Span::Full), Check,
            ]),
            ("writeback_held_and_partial_ranges", 8, vec![
                Load(Small(1)), Load(Small(2)), Load(Small(3)), MarkDirty(0), MarkDirty(1),
                MarkDirty(2), Writeback(Span::Range(Small(2), Small(3))), Dirty(Span::Full),
                Writeback(Span::From(Small(3))), Writeback(Span::Range(Small(3), Small(1))),
                Dirty(Span::Full), Check,
            ]),
            ("empty_and_inverted_ranges", 8, vec![
                Load(Small(0)), Load(High(0)), MarkDirty(0), MarkDirty(1),
                Cached(Span::Range(Small(5), Small(5))), Cached(Span::Incl(High(0), Small(0))),
                Dirty(Span::Excl(Small(0), Small(1))), Writeback(Span::To(Small(0))),
                Writeback(Span::Excl(High(0), High(0))), Dirty(Span::Full), Check,
            ]),
            ("read_error_then_pool_exhausted", 1, vec![
                FailReads(Small(1), true), Load(Small(1)), Load(Small(2)), Load(Small(3)),
                FreeUnused, Load(Small(3)), LoadNowait(Small(3)), Check,
            ]),
            ("redirty_after_failed_free", 4, vec![
                Load(Small(1)), w(0, Off::In(0), 8, 1), Put(0), FailWrites(Small(1), true),
                FreeUnused, Load(Small(1)), w(0, Off::In(4), 8, 9), FailWrites(Small(1), false),
                Put(0), FreeUnused, Load(Small(1)), rd(0, Off::In(0), 16), Check,
            ]),
            ("many_regions_churn", 32, {
                let mut v = Vec::new();
                for k in 0..12u8 {
                    v.push(Load(Small(k * 5)));
                    v.push(Load(Large(k as i8 * 10 - 60)));
                    v.push(Load(High(k)));
                    v.push(w(k, Off::In(u16::from(k) * 300), 40, k));
                    if k % 3 == 0 {
                        v.push(Put(k));
                        v.push(FreeUnused);
                    }
                }
                v.extend([
                    Cached(Span::Full), Dirty(Span::Full), Writeback(Span::Full), Check,
                ]);
                v
            }),
        ];
        for (name, frames, ops) in seeds {
            let bytes = Input { frames, ops }.encode();
            target("pagemap_ops").hand_seed(&format!("hand_{name}"), &bytes);
        }
    }
}

/// `vmr_ops`: every op, every `VmError` and `Fault` the model predicts, and
/// the frame-exhaustion paths.
mod vmr_ops {
    use super::target;
    use pagemap_fuzz_harness::vmr_ops::{
        Addr, Area, At, Len, MmapArgs, Op, Op::*, Pg, Span, VmrInput, BIG_POOL,
    };

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
    const POP: u8 = 1 << 4;
    const LOCK: u8 = 1 << 5;

    fn mmap(s: u8, len: u8, prot: u8, flags: u8, f: u8, pgoff: Pg) -> Op {
        mmap_full(s, None, Len::Pages(len), prot, flags, f, pgoff, 0)
    }

    fn mmap_at(s: u8, at: Addr, len: Len, prot: u8, flags: u8, pgoff: Pg) -> Op {
        mmap_full(s, Some(at), len, prot, flags, 0, pgoff, 0)
    }

    #[allow(clippy::too_many_arguments)]
    fn mmap_full(
        s: u8,
        fixed: Option<Addr>,
        len: Len,
        prot: u8,
        flags: u8,
        f: u8,
        pgoff: Pg,
        advice: u8,
    ) -> Op {
        Mmap(MmapArgs {
            s,
            fixed,
            len,
            prot,
            flags,
            f,
            pgoff,
            advice,
        })
    }

    /// Page `p` (+ `off` bytes) of space `s`'s region `i`.
    fn at(i: u8, p: i8) -> Addr {
        Addr::Region(i, p + 4)
    }

    fn rd(c: u8, s: u8, addr: Addr, off: u16, len: u16) -> Op {
        Read(At {
            c,
            s,
            addr,
            off,
            len,
        })
    }

    fn wr(c: u8, s: u8, addr: Addr, off: u16, len: u16, seed: u8) -> Op {
        Write(
            At {
                c,
                s,
                addr,
                off,
                len,
            },
            seed,
        )
    }

    fn area(s: u8, addr: Addr, len: Len) -> Area {
        Area { s, addr, len }
    }

    fn munmap(s: u8, a: Addr, pages: u8) -> Op {
        Munmap(area(s, a, Len::Pages(pages)))
    }

    fn mprotect(s: u8, a: Addr, pages: u8, prot: u8) -> Op {
        Mprotect(area(s, a, Len::Pages(pages)), prot)
    }

    fn madvise(s: u8, a: Addr, len: Len, advice: u8) -> Op {
        Madvise(area(s, a, len), advice)
    }

    /// (name, cpus, files, spaces, frames, ops)
    type Seed = (&'static str, usize, usize, usize, usize, Vec<Op>);

    #[rustfmt::skip]
    #[test]
    fn hand_seeds() {
        let z = Pg::Small(0);
        let seeds: Vec<Seed> = vec![
            ("shared_write_visible_everywhere", 2, 1, 2, BIG_POOL, vec![
                mmap(0, 4, RW, SH, 0, z), mmap(1, 4, RW, SH, 0, z),
                wr(0, 0, at(0, 0), 4090, 20, 1), rd(1, 1, at(0, 0), 4080, 40),
                munmap(0, at(0, 0), 4), Sync(0), Check, rd(0, 1, at(0, 1), 0, 16), Check,
            ]),
            ("private_writes_stay_private", 2, 1, 2, BIG_POOL, vec![
                mmap(0, 2, RW, PR, 0, z), mmap(1, 2, RW, SH, 0, z), rd(0, 0, at(0, 0), 0, 8),
                wr(0, 0, at(0, 0), 0, 8, 2), rd(1, 1, at(0, 0), 0, 8),
                wr(1, 1, at(0, 1), 0, 8, 3), rd(0, 0, at(0, 1), 0, 8), rd(0, 0, at(0, 0), 0, 8),
                Drop(0), Sync(0), Check,
            ]),
            ("fork_copies_private_shares_shared", 2, 1, 3, BIG_POOL, vec![
                mmap(0, 1, RW, SH, 0, z), mmap(0, 1, RW, PR, 0, z), wr(0, 0, at(1, 0), 0, 6, 4),
                Fork { src: 0, dst: 1 }, rd(1, 1, at(1, 0), 0, 6), wr(1, 1, at(1, 0), 0, 6, 5),
                rd(0, 0, at(1, 0), 0, 6), wr(1, 1, at(0, 0), 0, 6, 6), rd(0, 0, at(0, 0), 0, 6),
                Fork { src: 1, dst: 2 }, rd(0, 2, at(1, 0), 0, 6), Fork { src: 2, dst: 2 },
                Drop(1), Drop(2), Check,
            ]),
            ("frames_run_out", 1, 1, 2, 8, vec![
                mmap_full(0, None, Len::Pages(8), RW, PR, 0, z, 1),
                rd(0, 0, at(0, 0), 0, 1), rd(0, 0, at(0, 1), 0, 1), rd(0, 0, at(0, 2), 0, 1),
                rd(0, 0, at(0, 3), 0, 1), rd(0, 0, at(0, 4), 0, 1), wr(0, 0, at(0, 0), 0, 1, 7),
                wr(0, 0, at(0, 1), 0, 1, 7), wr(0, 0, at(0, 2), 0, 1, 7),
                wr(0, 0, at(0, 3), 0, 1, 7), rd(0, 0, at(0, 5), 0, 1), Fork { src: 0, dst: 1 },
                FreeUnused(0), munmap(0, at(0, 0), 2), Fork { src: 0, dst: 1 }, FreeUnused(0),
                rd(0, 1, at(0, 3), 0, 4), Check,
            ]),
            ("mmap_errors", 1, 1, 2, BIG_POOL, vec![
                mmap(0, 4, RW, SH, 0, z), mmap(0, 1, R, BOTH, 0, z),
                mmap(0, 1, R, NEITHER, 0, z), mmap(0, 1, R, SH, 7, z), mmap(0, 0, R, SH, 0, z),
                mmap_full(0, None, Len::Bytes(100), R, SH, 0, z, 0),
                mmap(0, 2, R, SH, 0, Pg::Top(0)), mmap(0, 1, R, SH, 0, Pg::Top(0)),
                mmap_at(0, Addr::Odd(0, 7), Len::Pages(1), R, SH, z),
                mmap_at(0, Addr::Max(0), Len::Pages(2), R, SH, z),
                mmap_at(0, Addr::Top(0), Len::Pages(1), R, SH, z),
                mmap_at(0, Addr::Top(1), Len::Pages(1), R, SH, z),
                mmap_at(0, at(0, 1), Len::Pages(1), R, SH, z),
                mmap_at(0, at(0, -1), Len::Pages(2), R, SH, z),
                mmap_full(0, None, Len::VaEnd(0), R, SH, 0, z, 0),
                mmap_full(0, None, Len::VaEnd(3), R, SH, 0, z, 0),
                mmap_full(0, None, Len::Huge(0), R, SH, 0, z, 0),
                mmap_at(1, Addr::Low(0), Len::VaEnd(2), NONE, PR, z),
                rd(0, 1, Addr::Low(5), 0, 1), Check,
            ]),
            ("munmap_mprotect_madvise_errors", 1, 1, 2, BIG_POOL, vec![
                mmap(0, 4, RW, SH, 0, z),
                Munmap(area(0, Addr::Odd(0, 1), Len::Pages(1))),
                munmap(0, at(0, 0), 0),
                Munmap(area(0, at(0, 0), Len::Bytes(4097))),
                Munmap(area(0, Addr::Max(0), Len::Pages(2))),
                Munmap(area(0, at(0, 0), Len::Huge(1))),
                Munmap(area(0, Addr::Top(1), Len::Pages(2))),
                munmap(0, Addr::Low(3), 2), mprotect(0, at(0, 0), 8, R),
                mprotect(0, at(0, -1), 2, R),
                Mprotect(area(0, at(0, 0), Len::Bytes(4096 + 5)), R),
                madvise(0, at(0, 10), Len::Pages(1), 1), madvise(0, at(0, 0), Len::Pages(0), 1),
                madvise(0, Addr::Odd(0, 9), Len::Pages(1), 1), mprotect(1, Addr::Low(0), 1, R),
                Check,
            ]),
            ("populate_read_error", 1, 1, 2, BIG_POOL, vec![
                FailReads(0, Pg::Small(2), true), mmap(0, 4, R, SH | POP, 0, z), FreeUnused(0),
                mmap(0, 4, RW, PR | LOCK, 0, z), FailReads(0, Pg::Small(2), false),
                mmap(0, 4, R, SH | POP, 0, z), mmap(0, 4, RW, PR | POP, 0, z),
                mmap(0, 2, NONE, SH | POP, 0, z), mmap(0, 2, X, PR | LOCK, 0, z),
                wr(0, 0, at(0, 0), 0, 4, 9), rd(0, 0, at(1, 0), 0, 8),
                FailReads(0, Pg::Small(7), true), mmap(1, 8, R, SH, 0, z),
                rd(0, 1, at(0, 7), 0, 8), rd(0, 1, at(0, 6), 4000, 200), Check,
            ]),
            ("populate_out_of_frames", 1, 1, 2, 9, vec![
                mmap(0, 1, R, SH | POP, 0, z), mmap(0, 6, RW, PR | POP, 0, z),
                mmap(1, 12, R, SH | POP, 0, z), FreeUnused(0), Check,
            ]),
            ("mprotect_harvests_and_blocks", 2, 1, 2, BIG_POOL, vec![
                mmap(0, 2, RW, SH, 0, z), wr(1, 0, at(0, 0), 100, 6, 10),
                mprotect(0, at(0, 0), 1, R), wr(1, 0, at(0, 0), 0, 1, 11),
                wr(1, 0, at(0, 0), 4095, 2, 12), mprotect(0, at(0, 0), 1, NONE),
                rd(0, 0, at(0, 0), 0, 8), mprotect(0, at(0, 0), 1, RW),
                rd(0, 0, at(0, 0), 100, 6), wr(0, 0, at(0, 0), 0, 8, 13),
                mprotect(0, at(0, 0), 2, RX), Writeback(0, Span::Full),
                mprotect(0, at(0, 0), 1, RW), wr(0, 0, at(0, 0), 0, 8, 14),
                madvise(0, at(0, 0), Len::Pages(1), 2), Writeback(0, Span::Full), Check,
            ]),
            ("private_survives_prot_none", 1, 1, 2, BIG_POOL, vec![
                mmap(0, 1, RW, PR, 0, z), wr(0, 0, at(0, 0), 0, 4, 15),
                mprotect(0, at(0, 0), 1, NONE), rd(0, 0, at(0, 0), 0, 4),
                mprotect(0, at(0, 0), 1, R), rd(0, 0, at(0, 0), 0, 4),
                wr(0, 0, at(0, 0), 0, 4, 16), Fork { src: 0, dst: 1 },
                mprotect(1, at(0, 0), 1, RW), wr(0, 1, at(0, 0), 0, 4, 17),
                rd(0, 0, at(0, 0), 0, 4), Check,
            ]),
            ("teardown_harvests_write_errors", 1, 1, 2, BIG_POOL, vec![
                mmap(0, 3, RW, SH, 0, z), wr(0, 0, at(0, 2), 0, 4, 18),
                wr(0, 0, at(0, 1), 0, 4, 18), Drop(0), FailWrites(0, Pg::Small(2), true),
                Writeback(0, Span::Full), FreeUnused(0), FailWrites(0, Pg::Small(2), false),
                FreeUnused(0), New(0), mmap(0, 3, R, SH, 0, z), rd(0, 0, at(0, 1), 0, 8),
                rd(0, 0, at(0, 2), 0, 8), Check,
            ]),
            ("writeback_ranges", 1, 1, 2, BIG_POOL, vec![
                mmap(0, 8, RW, SH, 0, z), wr(0, 0, at(0, 0), 0, 8192 + 4096 * 2, 19),
                munmap(0, at(0, 0), 8), Writeback(0, Span::To(Pg::Small(0))),
                Writeback(0, Span::Incl(Pg::Small(3), Pg::Small(1))),
                Writeback(0, Span::To(Pg::Small(1))),
                Writeback(0, Span::Incl(Pg::Small(1), Pg::Small(2))),
                Writeback(0, Span::From(Pg::Small(3))), Sync(0), FreeUnused(0), Check,
            ]),
            ("top_of_the_file", 1, 1, 2, BIG_POOL, vec![
                mmap(0, 2, RW, SH, 0, Pg::Top(1)), wr(0, 0, at(0, 1), 0, 3, 20),
                mmap(0, 2, RW, SH, 0, Pg::Div(-1)), wr(0, 0, at(1, 0), 4094, 4, 21),
                mmap(0, 2, RW, PR, 0, Pg::Big(-1)), wr(0, 0, at(2, 0), 4090, 10, 22),
                mmap(0, 3, RW, SH, 0, Pg::Div(1)), munmap(0, at(0, 0), 2),
                Writeback(0, Span::From(Pg::Top(1))),
                Writeback(0, Span::Incl(Pg::Div(-1), Pg::Div(0))),
                mmap(1, 4, R, SH, 0, Pg::Known(5)), rd(0, 1, at(0, 0), 0, 16), Check,
            ]),
            ("splits", 1, 1, 2, BIG_POOL, vec![
                mmap(0, 8, RW, SH, 0, z), munmap(0, at(0, 2), 2), mprotect(0, at(1, 1), 1, R),
                madvise(0, at(0, 0), Len::Pages(2), 1), wr(0, 0, at(2, 0), 0, 4096 + 8, 23),
                wr(0, 0, at(1, 1), 0, 1, 24), wr(0, 0, at(0, 1), 4000, 200, 25),
                mmap_at(0, at(0, 2), Len::Pages(2), RW, PR, Pg::Small(2)),
                rd(0, 0, at(0, 0), 0, 8192 * 2), madvise(0, at(0, 0), Len::Pages(8), 2),
                munmap(0, at(0, 0), 8), Check,
            ]),
            ("two_files_two_cpus", 2, 2, 3, BIG_POOL, vec![
                mmap(0, 2, RW, SH, 0, z), mmap(1, 2, RW, SH, 1, z), mmap(2, 2, RW, PR, 1, z),
                wr(0, 0, at(0, 0), 10, 10, 26), wr(1, 1, at(0, 0), 10, 10, 27),
                rd(1, 2, at(0, 0), 0, 32), rd(0, 0, at(0, 0), 0, 32), FlushTlb(1),
                wr(1, 2, at(0, 1), 0, 10, 28), rd(0, 1, at(0, 1), 0, 16), New(1), Sync(0),
                Sync(1), FreeUnused(1), Check,
            ]),
            ("stale_tlb_after_cow_and_munmap", 2, 1, 2, BIG_POOL, vec![
                mmap(0, 1, RW, PR, 0, z), rd(1, 0, at(0, 0), 0, 1),
                wr(0, 0, at(0, 0), 0, 1, 29), rd(1, 0, at(0, 0), 0, 1),
                wr(1, 0, at(0, 0), 0, 1, 30), munmap(0, at(0, 0), 1), mmap(1, 1, RW, PR, 0, z),
                wr(0, 1, at(0, 0), 0, 1, 31), wr(1, 0, at(0, 0), 0, 1, 32),
                rd(0, 1, at(0, 0), 0, 1), Check,
            ]),
            // Fixed bug (odd_prot_read): a write-only mapping's page reads
            // fine once written, while an unwritten page of it faults.
            ("fixed_odd_prot_read", 1, 1, 2, BIG_POOL, vec![
                mmap(0, 2, W, SH, 0, z), rd(0, 0, at(0, 1), 0, 1), wr(0, 0, at(0, 0), 0, 1, 33),
                rd(0, 0, at(0, 0), 0, 1),
            ]),
        ];
        for (name, cpus, files, spaces, frames, ops) in seeds {
            let bytes = VmrInput { cpus, files, spaces, frames, ops }.encode();
            let file = if name.starts_with("bug_") || name.starts_with("fixed_") {
                name.to_string()
            } else {
                format!("hand_{name}")
            };
            target("vmr_ops").hand_seed(&file, &bytes);
        }
    }
}

/// `removal_interleaved`: a removal aborted by a lookup, by a fault between
/// Revoked and Reaped, by a copy-on-write fault; a dirty PTE harvested by the
/// reap and written back; a write error that keeps the page dirty; msync,
/// munmap and a teardown during a removal; pinned pages; pages at `u64::MAX`.
mod removal_interleaved {
    use super::target;
    use pagemap_fuzz_harness::removal_interleaved::{encode, kind::*};

    fn op(k: u8, a: u8, b: u8, c: u8) -> [u8; 4] {
        [k, a, b, c]
    }

    /// Begin a removal of pages `lo..=hi` (logical pages, small block), or
    /// advance the running one.
    fn step(lo: u8, hi: u8) -> [u8; 4] {
        op(STEP, lo & 15, hi, 0)
    }

    fn steps(n: usize) -> Vec<[u8; 4]> {
        vec![step(0, 0); n]
    }

    fn rd(cpu: u8, space: u8, slot: u8) -> [u8; 4] {
        op(CPU_READ, cpu | (space << 1), slot, 0)
    }

    fn wr(cpu: u8, space: u8, slot: u8, c: u8) -> [u8; 4] {
        op(CPU_WRITE, cpu | (space << 1), slot, c)
    }

    /// mmap at `slot` of `space`, `n` pages from logical page `lp`; `flags`:
    /// 1 POPULATE, 2 LOCKED.
    fn mmap(space: u8, slot: u8, n: u8, shared: bool, flags: u8, lp: u8) -> [u8; 4] {
        op(
            MMAP,
            space | if shared { 2 } else { 0 } | (flags << 2) | (lp << 4),
            slot,
            n - 1,
        )
    }

    const BIG: u8 = 1 << 7;
    /// Header layout bits.
    const S0_SHARED: u8 = 1 << 0;
    const S0_PRIVATE: u8 = 1 << 1;
    const S1_SHARED: u8 = 1 << 2;
    const S1_PRIVATE: u8 = 1 << 3;
    const S1_LOCKED: u8 = 1 << 4;

    #[rustfmt::skip]
    #[test]
    fn hand_seeds() {
        let cat = |parts: Vec<Vec<[u8; 4]>>| parts.concat();
        let seeds = vec![
            ("abort_by_lookup", encode(BIG, 0, S0_SHARED, &cat(vec![
                vec![
                    rd(0, 0, 1), rd(0, 0, 2), rd(0, 0, 3), step(0, 7), step(0, 0),
                ],
                vec![op(FIND, 2, 0, 0), op(LOAD, 3, 0, 0)], steps(5),
                vec![
                    op(REF_READ, 0, 0, 0), op(RELEASE, 0, 0, 0), op(CHECK, 0, 0, 0),
                ],
            ]))),
            ("abort_by_fault_between_revoked_and_reaped", encode(BIG, 1, S0_SHARED | S1_SHARED, &cat(vec![
                vec![rd(0, 0, 1), rd(1, 1, 1), rd(0, 0, 2), wr(1, 1, 2, 3)],
                vec![step(0, 7), step(0, 0), step(0, 0)],
                // Revoked: the entries are not present; these fault.
                vec![rd(1, 0, 1), wr(0, 1, 2, 9)], steps(4),
                vec![rd(0, 0, 1), rd(1, 1, 2), op(CHECK, 0, 0, 0)],
            ]))),
            ("dirty_pte_reaped_and_written", encode(BIG, 1, S0_SHARED | S1_SHARED, &cat(vec![
                vec![wr(0, 0, 4, 5), wr(1, 1, 4, 77), wr(1, 1, 5, 200)], vec![step(4, 5)], steps(6),
                vec![rd(0, 0, 4), rd(1, 1, 5), op(CHECK, 0, 0, 0)],
            ]))),
            ("write_error_keeps_page_dirty", encode(BIG, 0, S0_SHARED, &cat(vec![
                vec![op(FAIL_WRITES, 3, 1, 0), wr(0, 0, 3, 1), wr(0, 0, 2, 1)], vec![step(0, 7)],
                steps(6), vec![rd(0, 0, 3), op(REF_WRITE, 0, 0, 0), op(LOAD, 3, 0, 0)],
                vec![op(REF_WRITE, 0, 10, 5), op(REMOVE, 0, 7, 0)],
                vec![
                    op(FAIL_WRITES, 3, 0, 0), op(REMOVE, 0, 7, 0), op(RELEASE, 0, 0, 0),
                ],
            ]))),
            ("msync_during_removal", encode(BIG, 1, S0_SHARED | S1_SHARED, &cat(vec![
                vec![wr(0, 0, 0, 4), wr(1, 1, 1, 8), wr(0, 0, 2, 12)], vec![step(0, 7), step(0, 0)],
                vec![op(MSYNC, 0, 0, 3)],
                vec![step(0, 0), wr(1, 1, 0, 33), op(MSYNC, 1, 0, 2), step(0, 0)],
                vec![op(WRITEBACK, 0x50, 0, 0)], steps(4),
            ]))),
            ("cow_fault_during_removal", encode(BIG, 1, S0_SHARED | S0_PRIVATE | S1_PRIVATE, &cat(vec![
                vec![rd(0, 0, 8), rd(0, 0, 9), rd(1, 1, 9), wr(0, 0, 1, 2)],
                vec![step(0, 7), step(0, 0), step(0, 0)],
                // Revoked: a private write copies a page being removed.
                vec![wr(0, 0, 9, 40), wr(1, 1, 8, 41)], steps(2), vec![wr(1, 1, 9, 42)], steps(2),
                vec![rd(0, 0, 9), rd(0, 0, 1), rd(1, 1, 9), op(CHECK, 0, 0, 0)],
            ]))),
            ("munmap_and_teardown_during_removal", encode(BIG, 1, S0_SHARED | S0_PRIVATE | S1_SHARED, &cat(vec![
                vec![
                    wr(0, 0, 1, 2), wr(0, 0, 9, 3), wr(1, 1, 2, 4), wr(1, 1, 3, 4),
                ],
                vec![step(0, 7), step(0, 0)], vec![op(MUNMAP, 0, 0, 2), step(0, 0)],
                vec![op(RESPAWN, 1, 0, 0), step(0, 0)],
                vec![mmap(1, 0, 8, true, 0, 0), rd(1, 1, 2)], steps(3),
                vec![rd(1, 1, 1), rd(1, 1, 3), op(CHECK, 0, 0, 0)],
            ]))),
            ("pinned_pages_stay", encode(BIG, 1, S0_SHARED | S1_SHARED | S1_LOCKED, &cat(vec![
                vec![wr(0, 0, 1, 6), op(REMOVE, 0x50, 0, 0)],
                vec![mmap(0, 8, 4, false, 2, 8), wr(0, 0, 9, 7)], vec![op(STEP, 0x50, 0, 0)],
                steps(6), vec![op(MUNMAP, 1, 0, 4), op(REMOVE, 0x50, 0, 0)],
            ]))),
            ("pages_at_u64_max", encode(BIG, 0, 0, &cat(vec![
                vec![mmap(0, 0, 4, true, 0, 8), mmap(1, 4, 4, false, 1, 8)],
                vec![wr(0, 0, 3, 9), wr(0, 1, 7, 10), rd(0, 0, 2)],
                // A removal of u64::MAX - 3..=u64::MAX.
                vec![op(STEP, 0x63, 0, 0), step(0, 0), step(0, 0)],
                vec![rd(0, 0, 3), op(FIND, 10, 0, 0)], steps(4),
                vec![op(REMOVE, 0x30, 0, 0), op(REMOVE, 0x88, 11, 0)],
                vec![op(TRY_REMOVE, 0x70, 0, 0), op(WRITEBACK, 0x60, 0, 0)],
            ]))),
            ("other_removers_while_one_runs", encode(BIG, 0, S0_SHARED, &cat(vec![
                vec![rd(0, 0, 1), step(0, 7)],
                vec![op(TRY_REMOVE, 0, 7, 0), op(REMOVE, 0x50, 0, 0)],
                vec![op(FREE_UNUSED, 0, 0, 0), op(INVALIDATE, 0x50, 0, 0)],
                vec![step(0, 0), op(FINISH, 0, 0, 0)],
                vec![
                    rd(0, 0, 1), op(FREE_UNUSED, 0, 0, 0), op(INVALIDATE, 0x50, 0, 0),
                ],
                vec![op(SYNC, 0, 0, 0), op(FLUSH_TLB, 0, 0, 0)],
            ]))),
            ("small_pool_exhaustion", encode(0, 1, S0_SHARED | S0_PRIVATE, &cat(vec![
                (0..8).map(|s| wr(0, 0, 8 + s, s)).collect(),
                vec![op(LOAD, 9, 0, 0), op(LOAD, 10, 0, 0), op(LOAD, 11, 0, 0)], vec![step(0, 7)],
                steps(6), vec![op(RELEASE, 0, 0, 0), op(REMOVE, 0x50, 0, 0)],
                (0..8).map(|s| rd(1, 0, 8 + s)).collect(),
            ]))),
        ];
        for (name, bytes) in seeds {
            target("removal_interleaved").hand_seed(&format!("hand_{name}"), &bytes);
        }
    }
}

/// `file_ops`: every op of the byte API over a real file, the issue's
/// scenarios (an append past a 10,000-byte end, appending after a reopen),
/// failing writes through writeback, fsync, free_unused and close.
mod file_ops {
    use super::target;
    use pagemap_fuzz_harness::file_ops::{
        FileInput,
        FileOp::{self, *},
        Len, Pages,
        Pos::*,
    };

    #[rustfmt::skip]
    #[test]
    fn hand_seeds() {
        let w = |at, len, byte| Write { at, len, byte };
        let rd = |at, len| Read { at, len };
        let punch = |at, len| Punch { at, len };
        let short = Len::Short;
        let pages = Len::Pages;
        let seeds: Vec<(&str, usize, u64, Vec<FileOp>)> = vec![
            // Issue 11: 100 bytes at byte 10,000 of a 10,000-byte file, and
            // 50 appends after reopening: none may be lost.
            ("append_past_10000", 8, 10_000, vec![
                w(End(0), short(100), 1), rd(End(-150), short(200)), Fsync,
                Reopen { close: true }, rd(At(9990), short(200)), w(End(0), short(50), 2),
                w(End(0), short(50), 3), w(End(3), short(50), 4), Reopen { close: false },
                rd(At(10_000), short(255)), Check,
            ]),
            ("page_boundaries", 4, 4096, vec![
                w(Edge(1, -3), pages(1, 10), 5), w(Edge(3, 0), short(7), 6),
                rd(Edge(1, -1), short(2)), rd(Edge(2, -5), pages(1, 9)), rd(End(0), short(9)),
                rd(End(10), short(9)), rd(End(-1), short(9)), Writeback(Pages::Some(0, 2)),
                FreeUnused, Check, Fsync,
            ]),
            ("set_size_partial_pages", 8, 20_000, vec![
                SetSize(Edge(2, 100)), rd(End(-10), short(50)), SetSize(End(5000)),
                rd(Edge(2, 90), short(50)), w(End(0), short(10), 7), SetSize(End(-1)), Fsync,
                Check, SetSize(At(0)), Fsync, SetSize(Edge(1, 0)), w(At(17), short(3), 8),
                SetSize(Edge(1, 0)), Check,
            ]),
            ("failing_writes_stay_dirty", 4, 8192, vec![
                w(At(100), pages(2, 0), 9), FailWrites(true), Writeback(Pages::All), Fsync,
                FreeUnused, w(At(9000), pages(3, 0), 10), rd(At(0), pages(3, 0)),
                FailWrites(false), Fsync, Fsync, Check,
            ]),
            // A write-back (not an fsync) fails; it is written later, and
            // the next fsync still reports the failure, once.
            ("earlier_error_reported_once", 8, 4096, vec![
                w(At(10), short(20), 11), FailWrites(true), Writeback(Pages::All),
                FailWrites(false), Writeback(Pages::All), Fsync, Fsync, Check,
            ]),
            ("close_loses_then_reopens", 4, 0, vec![
                w(At(0), pages(2, 5), 12), Fsync, w(At(5000), short(100), 13),
                w(End(100), short(10), 14), FailWrites(true), Reopen { close: true }, Check,
                FailWrites(false), w(End(0), short(30), 15), Reopen { close: false }, Check,
            ]),
            ("punch_holes", 8, 16_384, vec![
                punch(Edge(1, -100), pages(1, 100)), rd(Edge(1, -110), short(120)),
                punch(End(-10), short(100)), punch(End(10), short(10)), Fsync,
                Reopen { close: false }, w(Edge(2, 0), short(10), 16),
                punch(Edge(2, 5), pages(2, 0)), Check, Fsync,
            ]),
            // An append's dirty pages (past the store's length) punched
            // before any write-back: the file must still be as long as the
            // size (it was short: the punch dropped what would extend it).
            ("punch_over_an_append", 8, 5_000, vec![
                w(End(0), pages(2, 100), 18), punch(End(-3000), pages(1, 0)), Check,
                w(End(0), short(10), 19), punch(Edge(2, 0), pages(1, 0)), Fsync,
                Reopen { close: true }, Check,
            ]),
            ("small_pool_many_pages", 4, 24_576, vec![
                rd(At(0), pages(3, 100)), rd(Edge(5, 0), short(10)),
                w(Edge(2, 7), pages(3, 50), 17), Check,
                Writeback(Pages::Some(1, 3)), rd(Edge(5, 0), pages(3, 0)),
                Reopen { close: true }, Check,
            ]),
        ];
        for (name, frames, initial, ops) in seeds {
            let bytes = FileInput { frames, initial, ops }.encode();
            target("file_ops").hand_seed(&format!("hand_{name}"), &bytes);
        }
    }
}

/// `reclaim_ops`: the scenarios of issue 12: a pool full of clean pages,
/// of dirty pages (evicted after their write-back), all held
/// (`PoolExhausted`, nothing changed), pages whose write-back fails (kept,
/// dirty, never lost), a map dropped while another loads (reclaim meets the
/// drop), three maps competing, private frames.
mod reclaim_ops {
    use super::target;
    use pagemap_fuzz_harness::reclaim_ops::{
        ReclaimInput,
        ReclaimOp::{self, *},
    };

    fn ld(map: u8, page: u8) -> ReclaimOp {
        Load { map, page }
    }
    fn rd(map: u8, page: u8) -> ReclaimOp {
        Read { map, page }
    }
    fn wr(map: u8, page: u8, byte: u8) -> ReclaimOp {
        Write {
            map,
            page,
            off: u16::from(byte) * 13,
            len: 40,
            byte,
        }
    }
    fn fail(map: u8, page: u8, on: bool) -> ReclaimOp {
        FailWrites { map, page, on }
    }

    #[rustfmt::skip]
    #[test]
    fn hand_seeds() {
        let seeds: Vec<(&str, usize, usize, Vec<ReclaimOp>)> = vec![
            // Twelve pages read through four frames, twice, then reclaimed
            // by hand: clean evictions, no I/O.
            ("clean_full", 4, 1, vec![
                rd(0, 0), rd(0, 1), rd(0, 2), rd(0, 3), rd(0, 4), rd(0, 5), rd(0, 6),
                rd(0, 7), rd(0, 8), rd(0, 9), rd(0, 10), rd(0, 11), Check,
                Reclaim { n: 1 }, Reclaim { n: 7 }, Reclaim { n: 7 }, rd(0, 3),
            ]),
            // Every page written: each load past the third evicts a dirty
            // page, written back first; reading them back finds the data.
            ("dirty_full", 3, 1, vec![
                wr(0, 0, 1), wr(0, 1, 2), wr(0, 2, 3), wr(0, 3, 4), wr(0, 4, 5),
                wr(0, 5, 6), wr(0, 6, 7), rd(0, 0), rd(0, 1), wr(0, 1, 8),
                Reclaim { n: 7 }, wr(0, 2, 9), wr(0, 3, 10), Writeback { map: 0 }, Check,
                wr(0, 4, 11), Fsync { map: 0 }, Reclaim { n: 7 }, Check,
            ]),
            // All frames held: loads, writes and a private frame fail with
            // PoolExhausted and change nothing; a release lets them work.
            ("all_held", 3, 2, vec![
                ld(0, 0), ld(0, 1), WriteHeld { k: 1, off: 4000, len: 9, byte: 9 },
                ld(1, 0), ld(1, 5), rd(0, 7), wr(1, 3, 10), Private { alloc: true },
                Reclaim { n: 3 }, Check, Release { k: 1 }, ld(1, 5), rd(0, 1),
                Release { k: 0 }, Private { alloc: true }, rd(0, 0), Private { alloc: false },
                Private { alloc: false }, Check,
            ]),
            // Pages whose write-back fails stay dirty and are never evicted;
            // once every frame is held or failing, loads fail; writeback and
            // fsync report them; when writes work again they are written.
            ("failing_writes_unevictable", 3, 1, vec![
                wr(0, 0, 11), wr(0, 1, 12), fail(0, 0, true), fail(0, 1, true), rd(0, 5),
                rd(0, 6), wr(0, 2, 13), ld(0, 2), rd(0, 7), Writeback { map: 0 },
                Fsync { map: 0 }, Reclaim { n: 7 }, Release { k: 0 }, rd(0, 8),
                fail(0, 0, false), rd(0, 9), Fsync { map: 0 }, Fsync { map: 0 },
                fail(0, 1, false), Check, Fsync { map: 0 },
            ]),
            // A map full of dirty pages, one held, is dropped by the runner:
            // the held reference keeps it alive while the other map loads
            // and reclaim evicts the dropped map's pages; the release then
            // runs the drop. Then a map dropped with a failing page.
            ("drop_while_loading", 4, 2, vec![
                wr(0, 0, 14), wr(0, 1, 15), wr(0, 2, 16), wr(0, 3, 17), ld(0, 1),
                DropMap { map: 0, keep_refs: true }, rd(1, 0), rd(1, 1), wr(1, 2, 18),
                rd(1, 3), rd(1, 4), Release { k: 0 }, rd(1, 5), wr(0, 0, 19),
                fail(0, 0, true), DropMap { map: 0, keep_refs: false }, rd(0, 0), Check,
                DropMap { map: 1, keep_refs: false }, Check,
            ]),
            // Three maps competing for five frames: holds, writes, reads,
            // failing writes, a private frame, explicit reclaim.
            ("three_maps", 5, 3, vec![
                wr(0, 0, 20), wr(1, 0, 21), wr(2, 0, 22), ld(0, 1), rd(1, 1), rd(2, 1),
                wr(0, 2, 23), wr(1, 2, 24), ld(2, 2), fail(1, 2, true), wr(2, 3, 25),
                Private { alloc: true }, rd(0, 4), rd(1, 4), rd(2, 4), Reclaim { n: 2 },
                Writeback { map: 1 }, WriteHeld { k: 1, off: 0, len: 255, byte: 26 },
                Check, fail(1, 2, false), Fsync { map: 1 }, Release { k: 0 },
                DropMap { map: 2, keep_refs: true }, rd(0, 9), rd(1, 9), Release { k: 0 },
                Check,
            ]),
        ];
        for (name, frames, maps, ops) in seeds {
            let bytes = ReclaimInput { frames, maps, ops }.encode();
            target("reclaim_ops").hand_seed(&format!("hand_{name}"), &bytes);
        }
        // Known bug: `PoolExhausted::unevictable` exceeds the frames (the
        // replay runs it strictly: `known_bugs_reproduce`).
        let bug = ReclaimInput { frames: 2, maps: 1, ops: vec![ld(0, 0), ld(0, 1), ld(0, 2)] };
        target("reclaim_ops").hand_seed("fixed_unevictable_miscounts", &bug.encode());
    }
}

/// `swap_ops`: the scenarios of issue 13: fork, page-out and copy-on-write
/// writes; MADV_FREE then a write; a swap read error healed; swap full; a
/// swap write error (the page stays); private and shared file mappings
/// beside anonymous memory; everything pinned; a two-frame pool.
mod swap_ops {
    use super::target;
    use pagemap_fuzz_harness::swap_ops::{
        At, Range, SwapInput,
        SwapOp::{self, *},
    };

    /// `pages` pages (1..=8) from page `first` of `area`.
    fn rg(area: u8, first: u8, pages: u8) -> Range {
        Range {
            area,
            first,
            pages: pages - 1,
        }
    }
    fn at(area: u8, page: u8, off: u16) -> At {
        At { area, page, off }
    }
    fn anon(space: u8, area: u8, pages: u8) -> SwapOp {
        Mmap {
            space,
            area,
            off: 0,
            pages: pages - 1,
            kind: 0,
            prot: 0,
            pgoff: 0,
        }
    }
    /// `kind` 1: private, 2: shared.
    fn file(space: u8, area: u8, pages: u8, kind: u8, pgoff: u8) -> SwapOp {
        Mmap {
            space,
            area,
            off: 0,
            pages: pages - 1,
            kind,
            prot: 0,
            pgoff,
        }
    }
    fn wr(space: u8, area: u8, page: u8, byte: u8) -> SwapOp {
        Write {
            space,
            cpu: byte,
            at: at(area, page, u16::from(byte) * 7),
            len: 20,
            byte,
        }
    }
    fn rd(space: u8, area: u8, page: u8) -> SwapOp {
        Read {
            space,
            cpu: page,
            at: at(area, page, 0),
            len: 255,
        }
    }
    fn out(space: u8, area: u8, first: u8, pages: u8) -> SwapOp {
        PageOut {
            space,
            range: rg(area, first, pages),
        }
    }
    /// The frame the PTE of `space`'s page names.
    fn evict(space: u8, area: u8, page: u8) -> SwapOp {
        Evict {
            how: 0,
            space,
            at: at(area, page, 0),
        }
    }

    #[rustfmt::skip]
    #[test]
    fn hand_seeds() {
        // Swap slot selector `slots` means every location.
        let seeds: Vec<(&str, usize, u32, Vec<SwapOp>)> = vec![
            // Four written pages forked, paged out, then written by each
            // space: the child's copy-on-write must not reach the parent,
            // whose paged-out pages come back intact, and the other way.
            ("fork_page_out_write", 4, 8, vec![
                anon(0, 0, 4), wr(0, 0, 0, 1), wr(0, 0, 1, 2), wr(0, 0, 2, 3), wr(0, 0, 3, 4),
                out(0, 0, 0, 4), Fork { space: 0, into: 1 }, wr(1, 0, 1, 5), rd(0, 0, 1),
                out(1, 0, 0, 4), wr(0, 0, 2, 6), rd(1, 0, 2), rd(1, 0, 1), Check,
                out(0, 0, 0, 4), Fork { space: 1, into: 2 }, wr(2, 0, 3, 7), rd(1, 0, 3),
                rd(0, 0, 3), Drop { space: 1 }, rd(2, 0, 1), Check,
            ]),
            // MADV_FREE of three pages, page 1 written again: the page-out
            // drops pages 0 and 2 (they read zeroes) and keeps page 1's data.
            ("free_then_write", 4, 8, vec![
                anon(0, 0, 3), wr(0, 0, 0, 1), wr(0, 0, 1, 2), wr(0, 0, 2, 3),
                Free { space: 0, range: rg(0, 0, 3) }, wr(0, 0, 1, 4), out(0, 0, 0, 3),
                rd(0, 0, 0), rd(0, 0, 1), rd(0, 0, 2), wr(0, 0, 2, 5), Free { space: 0, range: rg(0, 0, 3) },
                Fork { space: 0, into: 1 }, out(0, 0, 0, 3), rd(1, 0, 2), wr(1, 0, 2, 6),
                rd(0, 0, 2), Check,
            ]),
            // Every swap read fails: a fault on a paged-out page and a
            // page_in fail, typed; healed, the data is still there; then
            // one location's reads fail.
            ("read_error_then_heal", 3, 4, vec![
                anon(0, 0, 2), wr(0, 0, 0, 1), wr(0, 0, 1, 2), out(0, 0, 0, 2),
                FailReads { loc: 4, on: true }, rd(0, 0, 0),
                PageIn { space: 0, range: rg(0, 0, 2) }, FailReads { loc: 4, on: false },
                rd(0, 0, 0), out(0, 0, 0, 2), FailReads { loc: 0, on: true },
                FailReads { loc: 1, on: true }, wr(0, 0, 1, 3), rd(0, 0, 0),
                FailReads { loc: 0, on: false }, FailReads { loc: 1, on: false }, Check,
            ]),
            // Two slots for four written pages: page_out and evict_frame
            // fail with SwapFull, changing nothing; MADV_DONTNEED frees a
            // location, and the page-out goes on.
            ("swap_full", 8, 2, vec![
                anon(0, 0, 4), wr(0, 0, 0, 1), wr(0, 0, 1, 2), wr(0, 0, 2, 3), wr(0, 0, 3, 4),
                out(0, 0, 0, 4), evict(0, 0, 3), Check, out(0, 0, 0, 2),
                DontNeed { space: 0, range: rg(0, 0, 1) }, out(0, 0, 2, 2), rd(0, 0, 0),
                rd(0, 0, 3), Check,
            ]),
            // Swap writes fail (all, then one location): page_out and
            // evict_frame report them and the pages keep their data; a
            // two-frame pool then cannot evict them (out of memory).
            ("write_error_keeps_page", 3, 8, vec![
                anon(0, 0, 3), wr(0, 0, 0, 1), wr(0, 0, 1, 2), FailWrites { loc: 8, on: true },
                out(0, 0, 0, 2), rd(0, 0, 0), wr(0, 0, 0, 3), evict(0, 0, 1), wr(0, 0, 2, 4),
                FailWrites { loc: 8, on: false }, out(0, 0, 0, 3), rd(0, 0, 1),
                FailWrites { loc: 0, on: true }, FailWrites { loc: 1, on: true },
                FailWrites { loc: 2, on: true }, out(0, 0, 0, 3), Check,
                FailWrites { loc: 0, on: false }, FailWrites { loc: 1, on: false },
                FailWrites { loc: 2, on: false }, out(0, 0, 0, 3), Check,
            ]),
            // A private and a shared mapping of the file beside anonymous
            // memory in three frames: a private page reads the file until
            // written (a shared write shows through), keeps its copy after,
            // returns to the file after MADV_DONTNEED; MADV_FREE of file
            // memory is refused; evict_frame of each kind of frame.
            ("private_and_shared_file", 3, 8, vec![
                file(0, 1, 4, 2, 0), file(0, 2, 4, 1, 0), anon(0, 0, 2), rd(0, 2, 1),
                wr(0, 1, 1, 1), rd(0, 2, 1), wr(0, 2, 1, 2), wr(0, 1, 1, 3), rd(0, 2, 1),
                wr(0, 0, 0, 4), evict(0, 1, 1), evict(0, 2, 1), evict(0, 0, 0),
                Evict { how: 1, space: 0, at: at(0, 0, 0) }, rd(0, 1, 1), rd(0, 2, 1),
                Free { space: 0, range: rg(2, 0, 2) }, DontNeed { space: 0, range: rg(2, 1, 1) },
                rd(0, 2, 1), Fork { space: 0, into: 1 }, wr(1, 2, 2, 5), wr(0, 1, 2, 6),
                rd(1, 2, 2), rd(0, 2, 2), out(1, 2, 0, 4), Check,
            ]),
            // Three frames all pinned by mlock: a new anonymous page
            // cannot get one, page_out keeps them, evict_frame is refused,
            // MADV_DONTNEED is refused on the locked range; munlock lets
            // everything go on. Also PROT_NONE and read-only pages, and a
            // write that faults half-way.
            ("all_pinned", 3, 8, vec![
                anon(0, 0, 3), wr(0, 0, 0, 1), Mlock { space: 0, range: rg(0, 0, 3) },
                anon(0, 1, 1), wr(0, 1, 0, 2), out(0, 0, 0, 3), evict(0, 0, 1),
                DontNeed { space: 0, range: rg(0, 0, 2) }, Munlock { space: 0, range: rg(0, 0, 3) },
                wr(0, 1, 0, 3), Mprotect { space: 0, range: rg(0, 0, 1), prot: 3 },
                rd(0, 0, 0), Mprotect { space: 0, range: rg(0, 0, 1), prot: 2 },
                wr(0, 0, 0, 4), rd(0, 0, 0), Mprotect { space: 0, range: rg(0, 0, 1), prot: 0 },
                Write { space: 0, cpu: 0, at: at(0, 2, 4000), len: 20, byte: 5 },
                Mmap { space: 0, area: 0, off: 1, pages: 0, kind: 0, prot: 0, pgoff: 0 },
                Munmap { space: 0, range: rg(0, 1, 1) }, Mlock { space: 0, range: rg(0, 0, 3) },
                Check,
            ]),
            // Two frames for ten pages of anonymous and private file memory
            // in two spaces: every fault reclaims (page-cache pages and
            // private frames alike), swap nearly full.
            ("two_frames", 2, 16, vec![
                anon(0, 0, 6), file(0, 1, 4, 1, 2), wr(0, 0, 0, 1), wr(0, 0, 1, 2),
                wr(0, 0, 2, 3), wr(0, 1, 0, 4), wr(0, 1, 1, 5), rd(0, 1, 2), wr(0, 0, 3, 6),
                Fork { space: 0, into: 1 }, wr(1, 0, 0, 7), wr(1, 1, 1, 8), rd(0, 0, 0),
                rd(0, 1, 1), Reclaim { n: 3 }, FlushTlb { cpu: 1 }, rd(1, 1, 3),
                PageIn { space: 1, range: rg(0, 0, 4) }, New { space: 0 }, anon(0, 0, 2),
                wr(0, 0, 1, 9), Check, Drop { space: 1 }, Check,
            ]),
        ];
        for (name, frames, slots, ops) in seeds {
            let bytes = SwapInput { frames, slots, ops }.encode();
            target("swap_ops").hand_seed(&format!("hand_{name}"), &bytes);
        }
        // `fork_loses_write_after_free` (found by fuzzing, minimised; fixed):
        // a page written after MADV_FREE, forked, the parent's page
        // unmapped, the child's paged out: the child read zeroes.
        let bug = SwapInput { frames: 4, slots: 8, ops: vec![
            anon(0, 0, 1), wr(0, 0, 0, 1), Free { space: 0, range: rg(0, 0, 1) },
            wr(0, 0, 0, 2), Fork { space: 0, into: 1 }, Munmap { space: 0, range: rg(0, 0, 1) },
            out(1, 0, 0, 1), rd(1, 0, 0),
        ] };
        target("swap_ops").hand_seed("fixed_fork_loses_write_after_free", &bug.encode());
    }
}
