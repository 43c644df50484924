//! Writes the hand-made seeds to `fuzz/seeds/pagemap_ops/` (run from
//! anywhere: `cargo run --manifest-path fuzz/Cargo.toml -p
//! pagemap-fuzz-harness --example gen_seeds`). Each seed is a named scenario;
//! together they cover every op and every error path (checked by
//! `tests/replay.rs`). Seeds minimised from fuzzing sit beside them.

use std::path::PathBuf;

use pagemap_fuzz_harness::{Idx::*, Input, Off, Op::*, Span};

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../seeds/pagemap_ops");
    std::fs::create_dir_all(&dir).unwrap();
    let w = |r, off, len, byte| Write { r, off, len, byte };
    let rd = |r, off, len| Read { r, off, len };
    let seeds: Vec<(&str, usize, Vec<pagemap_fuzz_harness::Op>)> = vec![
        (
            "basic_write_writeback",
            8,
            vec![
                Load(Small(1)),
                w(0, Off::In(100), 10, 7),
                rd(0, Off::In(95), 20),
                Dirty(Span::Full),
                Writeback(Span::Full),
                Dirty(Span::Full),
                Check,
            ],
        ),
        (
            "load_read_error_discards",
            8,
            vec![
                FailReads(Small(3), true),
                Load(Small(3)),
                Cached(Span::Full),
                NextPresent(Small(0)),
                Find(Small(3)),
                FailReads(Small(3), false),
                Load(Small(3)),
                Check,
            ],
        ),
        (
            "pool_exhausted_then_freed",
            2,
            vec![
                Load(Small(0)),
                Load(Small(1)),
                Load(Small(2)),
                FreeUnused,
                Put(0),
                FreeUnused,
                Load(Small(2)),
                LoadDrop(Small(5)),
                Check,
            ],
        ),
        (
            "free_unused_write_error_keeps_dirty",
            8,
            vec![
                Load(Small(5)),
                w(0, Off::In(0), 64, 1),
                Put(0),
                FailWrites(Small(5), true),
                FreeUnused,
                Dirty(Span::Full),
                Check,
                FailWrites(Small(5), false),
                FreeUnused,
                Cached(Span::Full),
                Load(Small(5)),
                rd(0, Off::In(0), 64),
            ],
        ),
        (
            "writeback_write_error_stays_dirty",
            8,
            vec![
                Load(Small(9)),
                MarkDirty(0),
                Load(Small(10)),
                MarkDirty(1),
                FailWrites(Small(9), true),
                Writeback(Span::Full),
                Dirty(Span::Full),
                NextDirty(Small(0)),
                FailWrites(Small(9), false),
                Writeback(Span::Full),
                Dirty(Span::Full),
                Check,
            ],
        ),
        (
            "find_clone_put",
            8,
            vec![
                Find(Small(4)),
                Load(Small(4)),
                Find(Small(4)),
                Clone(0),
                Clone(2),
                Put(1),
                Find(Small(4)),
                Check,
                Put(0),
                Put(0),
                Put(0),
                Put(0),
                FreeUnused,
                Find(Small(4)),
            ],
        ),
        (
            "load_nowait_would_block",
            8,
            vec![
                LoadNowait(Small(7)),
                LoadDrop(Small(7)),
                LoadNowait(Small(7)),
                LoadNowait(High(0)),
                Check,
            ],
        ),
        (
            "clear_dirty_skips_writeback",
            8,
            vec![
                Load(Small(2)),
                w(0, Off::In(10), 5, 9),
                ClearDirty(0),
                Writeback(Span::Full),
                Dirty(Span::Full),
                MarkDirty(0),
                ClearDirty(0),
                Put(0),
                FreeUnused,
                Load(Small(2)),
                rd(0, Off::In(10), 5),
            ],
        ),
        (
            "top_of_index_space",
            8,
            vec![
                Load(High(0)),
                Load(High(1)),
                w(0, Off::Edge(4), 4, 0xee),
                Cached(Span::From(High(1))),
                Cached(Span::Excl(High(1), High(0))),
                Cached(Span::ExclIncl(High(1), High(0))),
                Cached(Span::Excl(High(0), High(0))),
                NextPresent(High(0)),
                NextDirty(High(1)),
                Writeback(Span::ExclIncl(High(1), High(0))),
                Dirty(Span::Full),
                Check,
            ],
        ),
        (
            "around_2_40",
            8,
            vec![
                Load(Large(-1)),
                Load(Large(0)),
                Load(Large(1)),
                Load(Small(0)),
                MarkDirty(1),
                Cached(Span::Range(Large(-1), Large(1))),
                Cached(Span::Incl(Large(-1), Large(1))),
                Writeback(Span::To(Large(0))),
                Writeback(Span::ToIncl(Large(0))),
                NextPresent(Large(-2)),
                Check,
            ],
        ),
        (
            "powers_of_two_heights",
            16,
            vec![
                Load(Pow(0, 0)),
                Load(Pow(6, 0)),
                Load(Pow(12, -1)),
                Load(Pow(18, 0)),
                Load(Pow(30, 1)),
                Load(Pow(48, 0)),
                Load(Pow(63, 0)),
                Load(Pow(63, -1)),
                Cached(Span::Full),
                MarkDirty(3),
                MarkDirty(7),
                Dirty(Span::Full),
                NextDirty(Pow(19, 0)),
                Check,
            ],
        ),
        (
            "out_of_bounds_access",
            8,
            vec![
                Load(Small(1)),
                w(0, Off::Edge(3), 4, 1),
                w(0, Off::Huge(0), 1, 1),
                w(0, Off::Huge(5), 0, 1),
                rd(0, Off::Edge(0), 1),
                rd(0, Off::Huge(2), 3),
                Dirty(Span::Full),
                w(0, Off::Edge(4), 4, 1),
                rd(0, Off::Edge(8), 8),
                Check,
            ],
        ),
        (
            "zero_length_write_stays_clean",
            8,
            vec![
                Load(Small(6)),
                w(0, Off::Edge(0), 0, 0),
                Dirty(Span::Full),
                Writeback(Span::Full),
                Check,
            ],
        ),
        (
            "store_contents_read_back",
            8,
            vec![
                StoreSet(Small(11), 0x42),
                StoreSet(Large(3), 0x17),
                Load(Small(11)),
                Load(Large(3)),
                rd(0, Off::In(0), 200),
                rd(1, Off::Edge(100), 100),
                Check,
            ],
        ),
        (
            "frame_reuse_is_zeroed",
            1,
            vec![
                Load(Small(0)),
                w(0, Off::In(0), 255, 3),
                Writeback(Span::Full),
                Put(0),
                FreeUnused,
                Load(Small(1)),
                rd(0, Off::In(0), 255),
                Check,
            ],
        ),
        (
            "frame_reuse_after_read_error",
            1,
            vec![
                Load(Small(0)),
                w(0, Off::In(8), 16, 5),
                Put(0),
                FreeUnused,
                FailReads(Small(1), true),
                Load(Small(1)),
                Load(Small(0)),
                rd(0, Off::In(8), 16),
                Cached(Span::Full),
                Check,
            ],
        ),
        (
            "drop_syncs_dirty_pages",
            8,
            vec![
                Load(Small(20)),
                w(0, Off::In(1), 2, 3),
                Load(High(3)),
                MarkDirty(1),
                Put(0),
                FailWrites(High(3), true),
            ],
        ),
        (
            "free_unused_mixed",
            8,
            vec![
                Load(Small(1)),
                Load(Small(2)),
                LoadDrop(Small(3)),
                Load(Small(4)),
                MarkDirty(0),
                MarkDirty(1),
                Put(1),
                FailWrites(Small(4), true),
                MarkDirty(1),
                Put(1),
                FreeUnused,
                Cached(Span::Full),
                Dirty(Span::Full),
                Check,
            ],
        ),
        (
            "writeback_held_and_partial_ranges",
            8,
            vec![
                Load(Small(1)),
                Load(Small(2)),
                Load(Small(3)),
                MarkDirty(0),
                MarkDirty(1),
                MarkDirty(2),
                Writeback(Span::Range(Small(2), Small(3))),
                Dirty(Span::Full),
                Writeback(Span::From(Small(3))),
                Writeback(Span::Range(Small(3), Small(1))),
                Dirty(Span::Full),
                Check,
            ],
        ),
        (
            "empty_and_inverted_ranges",
            8,
            vec![
                Load(Small(0)),
                Load(High(0)),
                MarkDirty(0),
                MarkDirty(1),
                Cached(Span::Range(Small(5), Small(5))),
                Cached(Span::Incl(High(0), Small(0))),
                Dirty(Span::Excl(Small(0), Small(1))),
                Writeback(Span::To(Small(0))),
                Writeback(Span::Excl(High(0), High(0))),
                Dirty(Span::Full),
                Check,
            ],
        ),
        (
            "read_error_then_pool_exhausted",
            1,
            vec![
                FailReads(Small(1), true),
                Load(Small(1)),
                Load(Small(2)),
                Load(Small(3)),
                FreeUnused,
                Load(Small(3)),
                LoadNowait(Small(3)),
                Check,
            ],
        ),
        (
            "redirty_after_failed_free",
            4,
            vec![
                Load(Small(1)),
                w(0, Off::In(0), 8, 1),
                Put(0),
                FailWrites(Small(1), true),
                FreeUnused,
                Load(Small(1)),
                w(0, Off::In(4), 8, 9),
                FailWrites(Small(1), false),
                Put(0),
                FreeUnused,
                Load(Small(1)),
                rd(0, Off::In(0), 16),
                Check,
            ],
        ),
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
                Cached(Span::Full),
                Dirty(Span::Full),
                Writeback(Span::Full),
                Check,
            ]);
            v
        }),
    ];
    for (name, frames, ops) in seeds {
        let bytes = Input {
            frames,
            ops: ops.clone(),
        }
        .encode();
        assert_eq!(Input::decode(&bytes).ops, ops, "{name} does not round-trip");
        std::fs::write(dir.join(format!("hand_{name}")), bytes).unwrap();
    }
}
