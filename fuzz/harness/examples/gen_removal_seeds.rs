//! Writes the hand-made `removal_interleaved` and `removal` seeds to
//! `fuzz/seeds/<target>/hand_*` (run from anywhere:
//! `cargo run --manifest-path fuzz/Cargo.toml -p pagemap-fuzz-harness
//! --example gen_removal_seeds`). Each seed is a named scenario; together
//! they cover the paths `tests/removal_replay.rs` requires (a removal
//! aborted by a lookup, by a fault between Revoked and Reaped, by a
//! copy-on-write fault; a dirty PTE harvested by the reap and written back;
//! a write error that keeps the page dirty; msync, munmap and a teardown
//! during a removal; pinned pages; pages at `u64::MAX`).
//!
//! `gen_removal_seeds pick <target> <dir> <n>` instead copies up to `n`
//! inputs of `<dir>` (a fuzzing corpus) that add the most coverage stats to
//! `fuzz/seeds/<target>/fuzz_<name>` (greedy).

use std::collections::BTreeSet;
use std::path::PathBuf;

use pagemap_fuzz_harness::removal::{self, THREADS};
use pagemap_fuzz_harness::removal_interleaved::{self as ri, encode, kind::*};

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

const BIG: u8 = 0x80;
/// Header layout bits.
const S0_SHARED: u8 = 1;
const S0_PRIVATE: u8 = 2;
const S1_SHARED: u8 = 4;
const S1_PRIVATE: u8 = 8;
const S1_LOCKED: u8 = 0x10;

fn interleaved() -> Vec<(&'static str, Vec<u8>)> {
    let cat = |parts: Vec<Vec<[u8; 4]>>| parts.concat();
    vec![
        (
            "abort_by_lookup",
            encode(
                BIG,
                0,
                S0_SHARED,
                cat(vec![
                    vec![
                        rd(0, 0, 1),
                        rd(0, 0, 2),
                        rd(0, 0, 3),
                        step(0, 7),
                        step(0, 0),
                    ],
                    vec![op(FIND, 2, 0, 0), op(LOAD, 3, 0, 0)],
                    steps(5),
                    vec![
                        op(REF_READ, 0, 0, 0),
                        op(RELEASE, 0, 0, 0),
                        op(CHECK, 0, 0, 0),
                    ],
                ])
                .as_slice(),
            ),
        ),
        (
            "abort_by_fault_between_revoked_and_reaped",
            encode(
                BIG,
                1,
                S0_SHARED | S1_SHARED,
                cat(vec![
                    vec![rd(0, 0, 1), rd(1, 1, 1), rd(0, 0, 2), wr(1, 1, 2, 3)],
                    vec![step(0, 7), step(0, 0), step(0, 0)],
                    // Revoked: the entries are not present; these fault.
                    vec![rd(1, 0, 1), wr(0, 1, 2, 9)],
                    steps(4),
                    vec![rd(0, 0, 1), rd(1, 1, 2), op(CHECK, 0, 0, 0)],
                ])
                .as_slice(),
            ),
        ),
        (
            "dirty_pte_reaped_and_written",
            encode(
                BIG,
                1,
                S0_SHARED | S1_SHARED,
                cat(vec![
                    vec![wr(0, 0, 4, 5), wr(1, 1, 4, 77), wr(1, 1, 5, 200)],
                    vec![step(4, 5)],
                    steps(6),
                    vec![rd(0, 0, 4), rd(1, 1, 5), op(CHECK, 0, 0, 0)],
                ])
                .as_slice(),
            ),
        ),
        (
            "write_error_keeps_page_dirty",
            encode(
                BIG,
                0,
                S0_SHARED,
                cat(vec![
                    vec![op(FAIL_WRITES, 3, 1, 0), wr(0, 0, 3, 1), wr(0, 0, 2, 1)],
                    vec![step(0, 7)],
                    steps(6),
                    vec![rd(0, 0, 3), op(REF_WRITE, 0, 0, 0), op(LOAD, 3, 0, 0)],
                    vec![op(REF_WRITE, 0, 10, 5), op(REMOVE, 0, 7, 0)],
                    vec![
                        op(FAIL_WRITES, 3, 0, 0),
                        op(REMOVE, 0, 7, 0),
                        op(RELEASE, 0, 0, 0),
                    ],
                ])
                .as_slice(),
            ),
        ),
        (
            "msync_during_removal",
            encode(
                BIG,
                1,
                S0_SHARED | S1_SHARED,
                cat(vec![
                    vec![wr(0, 0, 0, 4), wr(1, 1, 1, 8), wr(0, 0, 2, 12)],
                    vec![step(0, 7), step(0, 0)],
                    vec![op(MSYNC, 0, 0, 3)],
                    vec![step(0, 0), wr(1, 1, 0, 33), op(MSYNC, 1, 0, 2), step(0, 0)],
                    vec![op(WRITEBACK, 0x50, 0, 0)],
                    steps(4),
                ])
                .as_slice(),
            ),
        ),
        (
            "cow_fault_during_removal",
            encode(
                BIG,
                1,
                S0_SHARED | S0_PRIVATE | S1_PRIVATE,
                cat(vec![
                    vec![rd(0, 0, 8), rd(0, 0, 9), rd(1, 1, 9), wr(0, 0, 1, 2)],
                    vec![step(0, 7), step(0, 0), step(0, 0)],
                    // Revoked: a private write copies a page being removed.
                    vec![wr(0, 0, 9, 40), wr(1, 1, 8, 41)],
                    steps(2),
                    vec![wr(1, 1, 9, 42)],
                    steps(2),
                    vec![rd(0, 0, 9), rd(0, 0, 1), rd(1, 1, 9), op(CHECK, 0, 0, 0)],
                ])
                .as_slice(),
            ),
        ),
        (
            "munmap_and_teardown_during_removal",
            encode(
                BIG,
                1,
                S0_SHARED | S0_PRIVATE | S1_SHARED,
                cat(vec![
                    vec![
                        wr(0, 0, 1, 2),
                        wr(0, 0, 9, 3),
                        wr(1, 1, 2, 4),
                        wr(1, 1, 3, 4),
                    ],
                    vec![step(0, 7), step(0, 0)],
                    vec![op(MUNMAP, 0, 0, 2), step(0, 0)],
                    vec![op(RESPAWN, 1, 0, 0), step(0, 0)],
                    vec![mmap(1, 0, 8, true, 0, 0), rd(1, 1, 2)],
                    steps(3),
                    vec![rd(1, 1, 1), rd(1, 1, 3), op(CHECK, 0, 0, 0)],
                ])
                .as_slice(),
            ),
        ),
        (
            "pinned_pages_stay",
            encode(
                BIG,
                1,
                S0_SHARED | S1_SHARED | S1_LOCKED,
                cat(vec![
                    vec![wr(0, 0, 1, 6), op(REMOVE, 0x50, 0, 0)],
                    vec![mmap(0, 8, 4, false, 2, 8), wr(0, 0, 9, 7)],
                    vec![op(STEP, 0x50, 0, 0)],
                    steps(6),
                    vec![op(MUNMAP, 1, 0, 4), op(REMOVE, 0x50, 0, 0)],
                ])
                .as_slice(),
            ),
        ),
        (
            "pages_at_u64_max",
            encode(
                BIG,
                0,
                0,
                cat(vec![
                    vec![mmap(0, 0, 4, true, 0, 8), mmap(1, 4, 4, false, 1, 8)],
                    vec![wr(0, 0, 3, 9), wr(0, 1, 7, 10), rd(0, 0, 2)],
                    // A removal of u64::MAX - 3..=u64::MAX.
                    vec![op(STEP, 0x63, 0, 0), step(0, 0), step(0, 0)],
                    vec![rd(0, 0, 3), op(FIND, 10, 0, 0)],
                    steps(4),
                    vec![op(REMOVE, 0x30, 0, 0), op(REMOVE, 0x88, 11, 0)],
                    vec![op(TRY_REMOVE, 0x70, 0, 0), op(WRITEBACK, 0x60, 0, 0)],
                ])
                .as_slice(),
            ),
        ),
        (
            "other_removers_while_one_runs",
            encode(
                BIG,
                0,
                S0_SHARED,
                cat(vec![
                    vec![rd(0, 0, 1), step(0, 7)],
                    vec![op(TRY_REMOVE, 0, 7, 0), op(REMOVE, 0x50, 0, 0)],
                    vec![op(FREE_UNUSED, 0, 0, 0), op(INVALIDATE, 0x50, 0, 0)],
                    vec![step(0, 0), op(FINISH, 0, 0, 0)],
                    vec![
                        rd(0, 0, 1),
                        op(FREE_UNUSED, 0, 0, 0),
                        op(INVALIDATE, 0x50, 0, 0),
                    ],
                    vec![op(SYNC, 0, 0, 0), op(FLUSH_TLB, 0, 0, 0)],
                ])
                .as_slice(),
            ),
        ),
        (
            "small_pool_exhaustion",
            encode(
                0,
                1,
                S0_SHARED | S0_PRIVATE,
                cat(vec![
                    (0..8).map(|s| wr(0, 0, 8 + s, s)).collect(),
                    vec![op(LOAD, 9, 0, 0), op(LOAD, 10, 0, 0), op(LOAD, 11, 0, 0)],
                    vec![step(0, 7)],
                    steps(6),
                    vec![op(RELEASE, 0, 0, 0), op(REMOVE, 0x50, 0, 0)],
                    (0..8).map(|s| rd(1, 0, 8 + s)).collect(),
                ])
                .as_slice(),
            ),
        ),
    ]
}

/// Threaded seeds: per-thread op lists (CPU 0, CPU 1, lookup 0, lookup 1,
/// remover, writeback), see `removal::Input`.
fn threaded() -> Vec<(&'static str, Vec<u8>)> {
    let mk = |frames: u8, config: u8, ops: [Vec<[u8; 3]>; THREADS]| {
        removal::Input {
            frames,
            config,
            ops: ops.to_vec(),
        }
        .encode()
    };
    // CPU ops: [op, x (bit 0 space / kind, bits 1.. page), y (slot)].
    let cpu = |t: u8| -> Vec<[u8; 3]> {
        (0..24u8)
            .map(|i| match i % 6 {
                0 | 1 => [0, (i % 2) | ((i % 8) << 1), i + t],
                2 => [2, (i % 2) | ((i % 8) << 1), 0],
                3 => [3, (i % 8) << 1, i],
                4 => [4, (i % 8) << 1, 0],
                _ => [7, 0, i],
            })
            .collect()
    };
    let look = |l: u8| -> Vec<[u8; 3]> {
        (0..24u8)
            .map(|i| match i % 6 {
                0 => [1, i + l, 0],
                1 => [3, 0, i],
                2 => [5, 0, 40],
                3 => [4, i, 0],
                4 => [0, i * 3, 0],
                _ => [2, i, 0],
            })
            .collect()
    };
    let remover: Vec<[u8; 3]> = (0..16u8)
        .map(|i| [i % 8, [0x00, 0x50, 0x30, 0x63][usize::from(i % 4)], 7 + i])
        .collect();
    let wb: Vec<[u8; 3]> = (0..16u8)
        .map(|i| match i % 5 {
            0 => [0, 0x50, 0],
            1 => [3, i, i * 17],
            2 => [4, i, 1],
            3 => [2, 0, 0],
            _ => [4, i - 2, 0],
        })
        .collect();
    vec![
        (
            "everyone",
            mk(
                BIG,
                0,
                [
                    cpu(0),
                    cpu(1),
                    look(0),
                    look(1),
                    remover.clone(),
                    wb.clone(),
                ],
            ),
        ),
        (
            "pinned_space_small_pool",
            mk(
                12,
                1,
                [
                    cpu(1),
                    cpu(0),
                    look(3),
                    look(2),
                    remover.clone(),
                    wb.clone(),
                ],
            ),
        ),
        (
            "shared_only_stepped_removals",
            mk(
                BIG,
                2,
                [
                    cpu(0),
                    cpu(1),
                    look(0),
                    look(1),
                    vec![[6, 0x50, 0], [6, 0x00, 0x87], [6, 0x63, 0]],
                    wb.clone(),
                ],
            ),
        ),
        (
            "munmap_mmap_churn",
            mk(
                BIG,
                0,
                [
                    (0..30u8)
                        .map(|i| [[0, 5, 6, 3, 5, 6][usize::from(i % 6)], (i % 4) << 1, i])
                        .collect(),
                    (0..30u8)
                        .map(|i| {
                            [
                                [1, 5, 6, 4, 5, 6][usize::from(i % 6)],
                                ((i % 4) << 1) | 1,
                                i,
                            ]
                        })
                        .collect(),
                    look(0),
                    vec![],
                    remover,
                    wb,
                ],
            ),
        ),
    ]
}

fn seeds_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../seeds")
        .join(target)
}

fn pick(target: &str, dir: &str, n: usize) {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let run = |d: &[u8]| {
        if target == "removal" {
            removal::run(d)
        } else {
            ri::run(d)
        }
    };
    let mut have: BTreeSet<String> = BTreeSet::new();
    for e in std::fs::read_dir(seeds_dir(target)).unwrap() {
        have.extend(
            run(&std::fs::read(e.unwrap().path()).unwrap())
                .0
                .keys()
                .map(|k| k.to_string()),
        );
    }
    let cands: Vec<(PathBuf, BTreeSet<String>)> = files
        .into_iter()
        .map(|f| {
            let s = run(&std::fs::read(&f).unwrap());
            (f, s.0.keys().map(|k| k.to_string()).collect())
        })
        .collect();
    let mut taken = 0;
    let mut used = BTreeSet::new();
    while taken < n {
        // Most new stats, then the largest input (most ops).
        let best = cands
            .iter()
            .enumerate()
            .filter(|(i, _)| !used.contains(i))
            .max_by_key(|(_, (f, s))| {
                (
                    s.difference(&have).count(),
                    std::fs::metadata(f).unwrap().len(),
                )
            });
        let Some((i, (f, s))) = best else { break };
        used.insert(i);
        let name = f.file_name().unwrap().to_string_lossy();
        let short = &name[name.len().saturating_sub(12)..];
        let to = seeds_dir(target).join(format!("fuzz_{short}"));
        std::fs::copy(f, &to).unwrap();
        println!(
            "{} (+{:?})",
            to.display(),
            s.difference(&have).collect::<Vec<_>>()
        );
        have.extend(s.iter().cloned());
        taken += 1;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("pick") {
        pick(&args[1], &args[2], args[3].parse().expect("n"));
        return;
    }
    for (target, seeds) in [
        ("removal_interleaved", interleaved()),
        ("removal", threaded()),
    ] {
        let dir = seeds_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, data) in seeds {
            let path = dir.join(format!("hand_{name}"));
            std::fs::write(&path, data).unwrap();
            println!("{}", path.display());
        }
    }
}
