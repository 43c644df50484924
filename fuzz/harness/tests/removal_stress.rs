//! The threaded removal stress test (`pagemap_fuzz_harness::removal`): six
//! threads (two CPUs, two lookups, a remover, a writeback thread) race over
//! one small file mapped shared and private by two address spaces; after
//! the join no page is lost or duplicated, no write is lost, no translation
//! is stale and every frame is accounted for.
//!
//! Its failures depend on the interleaving and do not replay, so it is not
//! a fuzz target (`removal_interleaved` is its deterministic sibling): a
//! fixed list of inputs (the hand-made op lists below, the inputs in
//! `fuzz/seeds/removal_stress/`, then pseudo-random ones from fixed seeds)
//! runs within a time bound, `REMOVAL_STRESS_SECONDS` (default 5) after
//! three rounds of the fixed inputs. A failure names its input; rerun it
//! with `--example replay -- -t removal_stress FILE` (a few times: the race
//! may need them).

use std::time::{Duration, Instant};

use pagemap_fuzz_harness::removal::{self, Input, THREADS};
use pagemap_fuzz_harness::{corpus, Stats};

/// Per-thread op lists (CPU 0, CPU 1, lookup 0, lookup 1, remover,
/// writeback), see `removal::Input`.
fn hand_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let mk = |frames: u8, config: u8, ops: [Vec<[u8; 3]>; THREADS]| {
        let ops = ops.to_vec();
        Input {
            frames,
            config,
            ops,
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
    let churn = |c: u8, kinds: [u8; 6]| -> Vec<[u8; 3]> {
        (0..30u8)
            .map(|i| [kinds[usize::from(i % 6)], ((i % 4) << 1) | c, i])
            .collect()
    };
    let (r, w) = (remover.clone(), wb.clone());
    let stepped = vec![[6, 0x50, 0], [6, 0x00, 0x87], [6, 0x63, 0]];
    let churn0 = churn(0, [0, 5, 6, 3, 5, 6]);
    vec![
        (
            "everyone",
            mk(
                0x80,
                0,
                [cpu(0), cpu(1), look(0), look(1), r.clone(), w.clone()],
            ),
        ),
        (
            "pinned_space_small_pool",
            mk(12, 1, [cpu(1), cpu(0), look(3), look(2), r, w.clone()]),
        ),
        (
            "shared_only_stepped_removals",
            mk(0x80, 2, [cpu(0), cpu(1), look(0), look(1), stepped, w]),
        ),
        (
            "munmap_mmap_churn",
            mk(
                0x80,
                0,
                [
                    churn0,
                    churn(1, [1, 5, 6, 4, 5, 6]),
                    look(0),
                    vec![],
                    remover,
                    wb,
                ],
            ),
        ),
    ]
}

#[test]
fn threaded_removal_stress() {
    let seconds = std::env::var("REMOVAL_STRESS_SECONDS").map_or(5, |s| s.parse().unwrap());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut fixed: Vec<(String, Vec<u8>)> = corpus::seeds("removal_stress");
    fixed.extend(
        hand_inputs()
            .into_iter()
            .map(|(n, d)| (format!("hand_{n}"), d)),
    );
    let random = corpus::garbage(0x9e37_79b9_7f4a_7c15, 2000, |n| 3 + (n * 37) % 700);
    let mut total = Stats::default();
    let mut runs = 0;
    let inputs = (0..3).flat_map(|_| fixed.iter().map(|(n, d)| (n.as_str(), d)));
    let random = random.iter().map(|d| ("random", d));
    for (k, (name, data)) in inputs.chain(random).enumerate() {
        if k >= 3 * fixed.len() && Instant::now() > deadline {
            break;
        }
        if let Some(msg) = corpus::panic_message(|| total.merge(&removal::run(data))) {
            let path = std::env::temp_dir().join("removal_stress_failed");
            std::fs::write(&path, data).unwrap();
            panic!(
                "removal stress input #{k} ({name}, saved as {}): {msg}",
                path.display()
            );
        }
        runs += 1;
    }
    eprintln!("{runs} threaded runs");
    // Only what every interleaving does.
    total.require(
        "removal stress",
        &"finished cpu.write.shared cpu.write.private cpu.cow cpu.read.shared \
          cpu.read.private ref.write ref.read munmap mmap msync remover.op remove.stepped \
          fail_writes writeback sync"
            .split_whitespace()
            .collect::<Vec<_>>(),
    );
}
