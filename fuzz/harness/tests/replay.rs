//! Stable replay of every checked-in seed (`fuzz/seeds/<target>/`) through
//! the same runner the fuzz target uses: any divergence from the model
//! panics, every seed must round-trip through its decoder, and together the
//! seeds of a target must exercise every op and every error path listed
//! for it in `coverage.txt`.
//!
//! Seeds named `bug_*` reproduce known bugs (`KNOWN_BUGS` of the runner):
//! the replay steps around them as the fuzzer does, `known_bugs_reproduce`
//! runs them strictly and fails, naming each, while the bug is there; once
//! fixed it fails the other way round: rename the seed `fixed_*`.

use pagemap_fuzz_harness::corpus::{self, target, TARGETS};

/// The seeds of `name` replayed, with the minimum count and the coverage
/// `coverage.txt` gives it.
fn replay(name: &str) {
    let text = include_str!("coverage.txt");
    let mut section = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .skip_while(|l| !l.starts_with(&format!("{name}:")));
    let head = section.next().expect("target in coverage.txt");
    let min = head[name.len() + 1..].trim().parse().expect("seed count");
    let must: Vec<&str> = section.take_while(|l| !l.contains(':')).collect();
    assert!(must.len() > 2, "{name}: no coverage listed");
    target(name).replay_seeds(min, &must.join(" "));
}

#[test]
fn replay_pagemap_ops() {
    replay("pagemap_ops");
}

#[test]
fn replay_vmr_ops() {
    replay("vmr_ops");
}

#[test]
fn replay_removal_interleaved() {
    replay("removal_interleaved");
}

#[test]
fn replay_file_ops() {
    replay("file_ops");
}

#[test]
fn replay_reclaim_ops() {
    replay("reclaim_ops");
}

#[test]
fn replay_swap_ops() {
    replay("swap_ops");
}

#[test]
fn known_bugs_reproduce() {
    for t in &TARGETS {
        t.known_bugs_reproduce();
    }
}

#[test]
fn garbage_never_panics_the_harness() {
    // Cheap pseudo-random inputs through every runner (no fuzzer needed).
    for data in corpus::garbage(0x9e37_79b9_7f4a_7c15, 200, |len| len * 3) {
        for t in &TARGETS {
            (t.run)(&data);
        }
    }
}
