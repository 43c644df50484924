//! The `pagecache` binary end to end, with small files and op counts.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

/// A fresh empty directory for one test's files.
fn scratch_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("pagecache-cli-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn pagecache(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pagecache"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// Runs a small job with `--json` in a scratch directory: its exit
/// success, its report, and whether the directory was left empty.
fn run_json(name: &str, extra: &[&str]) -> (bool, Value, bool) {
    let dir = scratch_dir(name);
    let dir_s = dir.to_str().unwrap().to_string();
    let mut args = vec![
        "--file-size",
        "2M",
        "--pool",
        "64",
        "--ops",
        "4000",
        "--json",
        "--dir",
        &dir_s,
    ];
    args.extend_from_slice(extra);
    let out = pagecache(&args);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let empty = std::fs::read_dir(&dir).unwrap().next().is_none();
    std::fs::remove_dir_all(&dir).unwrap();
    (out.status.success(), report, empty)
}

#[test]
fn a_run_verifies_every_byte_of_both_files() {
    let (ok, r, empty) = run_json("ok", &[]);
    assert!(ok, "{r:#}");
    assert_eq!(r["passed"], true);
    let engines = r["engines"].as_array().unwrap();
    assert_eq!(engines.len(), 2);
    for e in engines {
        assert_eq!(e["verify"]["bytes_checked"], 2 * 1024 * 1024, "{e:#}");
        assert_eq!(e["verify"]["bytes_differing"], 0, "{e:#}");
        assert_eq!(e["bad_reads"], 0);
        assert_eq!(e["lost_writes"], 0);
        assert_eq!(e["ops"], 4000);
    }
    // The same seed: the same operations through both engines.
    assert_eq!(engines[0]["reads"], engines[1]["reads"]);
    assert!(empty, "the files are removed without --keep");
}

/// `--anon`: the anonymous-memory workload, 8x the pool, paged to a swap
/// file, verified in both paging modes; the swap file leaves nothing behind.
#[test]
fn the_anonymous_workload_pages_and_verifies_every_byte() {
    let (ok, r, empty) = run_json("anon", &["--anon", "--threads", "2"]);
    assert!(ok, "{r:#}");
    assert_eq!(r["workload"], "anonymous");
    let engines = r["engines"].as_array().unwrap();
    assert_eq!(engines.len(), 2);
    for e in engines {
        assert_eq!(e["verify"]["bytes_checked"], 2 * 1024 * 1024, "{e:#}");
        assert_eq!(e["verify"]["bytes_differing"], 0, "{e:#}");
        assert_eq!(e["bad_reads"], 0);
        assert_eq!(e["failed_writes"], 0);
        assert!(
            e["cache"]["store_writes"].as_u64().unwrap() > 0,
            "paged out: {e:#}"
        );
        assert!(
            e["cache"]["store_reads"].as_u64().unwrap() > 0,
            "paged in: {e:#}"
        );
    }
    assert!(empty, "the swap file is unlinked");
}

#[test]
fn every_distribution_runs_and_verifies() {
    for dist in [
        &["--dist", "zipf", "--theta", "1.2"][..],
        &["--dist", "seq", "--read-ratio", "50%"],
        &[
            "--dist",
            "hotscan",
            "--hot",
            "16",
            "--scan-every",
            "100",
            "--scan-len",
            "25%",
        ],
        &["--threads", "3", "--op-size", "100", "--mix", "0.2"],
    ] {
        let (ok, r, _) = run_json("dists", dist);
        assert!(ok, "{dist:?}: {r:#}");
        assert_eq!(r["engines"][0]["verify"]["bytes_differing"], 0);
    }
}

#[test]
fn a_corrupted_byte_is_found_and_fails_the_run() {
    let (ok, r, _) = run_json("corrupt", &["--inject-corruption"]);
    assert!(!ok, "a flipped byte must fail the run");
    assert_eq!(r["passed"], false);
    assert_eq!(r["engines"][0]["verify"]["bytes_differing"], 1);
    assert_eq!(r["engines"][0]["verify"]["first_difference"], 1024 * 1024);
    assert_eq!(r["engines"][1]["verify"]["bytes_differing"], 0);
}

#[test]
fn bad_arguments_fail_with_a_message() {
    for (args, says) in [
        (&["--pool", "0"][..], "at least one"),
        (&["--file-size", "1000"], "whole number of 4096-byte pages"),
        (&["--file-size", "12Q"], "unknown size suffix"),
        (&["--op-size", "5000"], "must fit in a page"),
        (&["--ops", "10", "--duration", "1s"], "cannot be used with"),
        (&["--policy", "fifo"], "clock"),
        (&["--threads", "0"], "threads"),
        (&["--read-ratio", "120%"], "between 0 and 1"),
        (&["--duration", "0s"], "above zero"),
        (&["--dist", "gauss"], "uniform"),
        (
            &["--file-size", "8K", "--pool", "1", "--threads", "3"],
            "more threads",
        ),
        (&["--file-size", "8K"], "10% comes to 0 frames"),
        (&["--dir", "/nonexistent/pagecache"], "not a directory"),
    ] {
        let out = pagecache(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
