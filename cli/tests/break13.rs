//! Break-it pass on issue 13: `pagecache --anon` with a pool as small as
//! its thread count. Every frame is at worst in transit (a page-in or
//! page-out of the other thread), so no access should fail; it does, now
//! and then, with "frame pool exhausted", and the run reports FAILED.

use std::process::Command;

#[test]
fn anon_two_frames_two_threads_never_fails_an_access() {
    let dir = std::env::temp_dir();
    let mut failures = Vec::new();
    for seed in 1..=6 {
        let out = Command::new(env!("CARGO_BIN_EXE_pagecache"))
            .args([
                "--anon",
                "--file-size",
                "1M",
                "--pool",
                "2",
                "--threads",
                "2",
                "--ops",
                "3000",
                "--seed",
                &seed.to_string(),
                "--dir",
                dir.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            let first = text
                .lines()
                .find(|l| l.contains("first error"))
                .unwrap_or("")
                .to_string();
            failures.push(format!("seed {seed}: {first}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
