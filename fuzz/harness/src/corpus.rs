//! Inputs for the stable replay tests and the replay examples: the
//! checked-in seeds, files and directories named on a command line, and
//! cheap pseudo-random garbage (no fuzzer needed).

use std::path::{Path, PathBuf};

/// The checked-in seeds of `target` (`fuzz/seeds/<target>/`), as
/// `(file name, bytes)` sorted by name.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = seeds_dir(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), data)
        })
        .collect();
    out.sort();
    out
}

/// The files named by `paths`, a directory standing for its files (sorted),
/// as `(path, bytes)`.
pub fn read_inputs(paths: &[PathBuf]) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<_> = std::fs::read_dir(p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                .map(|e| e.unwrap().path())
                .collect();
            v.sort();
            files.extend(v);
        } else {
            files.push(p.clone());
        }
    }
    files
        .iter()
        .map(|f| (f.display().to_string(), std::fs::read(f).unwrap()))
        .collect()
}

/// `count` pseudo-random inputs from `seed` (xorshift), input `n` being
/// `len(n)` bytes long.
pub fn garbage(seed: u64, count: usize, len: impl Fn(usize) -> usize) -> Vec<Vec<u8>> {
    let mut x = seed;
    (0..count)
        .map(|n| {
            (0..len(n))
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        })
        .collect()
}

/// A fuzz target as the replay tests, the replay example and the fuzz
/// binaries see it.
pub struct Target {
    /// Its name (the seed directory, the fuzz binary).
    pub name: &'static str,
    /// Runs an input as the fuzzer does (stepping around known bugs).
    pub run: fn(&[u8]) -> crate::Stats,
    /// Runs an input without stepping around known bugs (`bug_*` seeds).
    pub strict: fn(&[u8]) -> crate::Stats,
    /// The input decoded and encoded again (its canonical bytes).
    pub canon: fn(&[u8]) -> Vec<u8>,
    /// The decoded input, one op a line (`-v`).
    pub describe: fn(&[u8]) -> String,
}

/// Every deterministic target.
pub const TARGETS: [Target; 6] = [
    Target {
        name: "pagemap_ops",
        run: crate::run,
        strict: crate::run,
        canon: |d| crate::Input::decode(d).encode(),
        describe: |d| format!("{:#?}", crate::Input::decode(d)),
    },
    Target {
        name: "vmr_ops",
        run: crate::vmr_run::run,
        strict: crate::vmr_run::run_strict,
        canon: |d| crate::vmr_ops::VmrInput::decode(d).encode(),
        describe: |d| format!("{:#?}", crate::vmr_ops::VmrInput::decode(d)),
    },
    Target {
        name: "removal_interleaved",
        run: crate::removal_interleaved::run,
        strict: crate::removal_interleaved::run_strict,
        canon: |d| crate::removal_interleaved::Input::decode(d).encode(),
        describe: crate::removal_interleaved::describe_input,
    },
    Target {
        name: "file_ops",
        run: crate::file_run::run,
        strict: crate::file_run::run_strict,
        canon: |d| crate::file_ops::FileInput::decode(d).encode(),
        describe: |d| format!("{:#?}", crate::file_ops::FileInput::decode(d)),
    },
    Target {
        name: "reclaim_ops",
        run: crate::reclaim_run::run,
        strict: crate::reclaim_run::run_strict,
        canon: |d| crate::reclaim_ops::ReclaimInput::decode(d).encode(),
        describe: |d| format!("{:#?}", crate::reclaim_ops::ReclaimInput::decode(d)),
    },
    Target {
        name: "swap_ops",
        run: crate::swap_run::run,
        strict: crate::swap_run::run_strict,
        canon: |d| crate::swap_ops::SwapInput::decode(d).encode(),
        describe: |d| format!("{:#?}", crate::swap_ops::SwapInput::decode(d)),
    },
];

/// The threaded removal stress test's inputs (`tests/removal_stress.rs`;
/// not a fuzz target: its failures do not replay).
pub const STRESS: Target = Target {
    name: "removal_stress",
    run: crate::removal::run,
    strict: crate::removal::run,
    canon: |d| crate::removal::Input::decode(d).encode(),
    describe: |d| format!("{:?}", crate::removal::Input::decode(d)),
};

/// The target (or [`STRESS`]) called `name`.
pub fn target(name: &str) -> &'static Target {
    TARGETS
        .iter()
        .chain([&STRESS])
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no target {name}"))
}

impl Target {
    /// Replays every checked-in seed (at least `min`), each canonical (it
    /// decodes and encodes back to itself), and requires the seeds together
    /// to exercise everything in `must` (names separated by white space).
    pub fn replay_seeds(&self, min: usize, must: &str) -> crate::Stats {
        let seeds = seeds(self.name);
        assert!(seeds.len() >= min, "{}: {} seeds", self.name, seeds.len());
        let mut total = crate::Stats::default();
        for (name, data) in &seeds {
            eprintln!("replaying {}/{name}", self.name);
            let canon = (self.canon)(data);
            assert_eq!((self.canon)(&canon), canon, "{name} does not round-trip");
            total.merge(&(self.run)(data));
        }
        total.require(self.name, &must.split_whitespace().collect::<Vec<_>>());
        total
    }

    /// Runs the `bug_*` seeds strictly: fails naming each bug that still
    /// reproduces, or each seed that no longer does (fixed: rename it
    /// `fixed_*` and drop it from the target's `KNOWN_BUGS`).
    pub fn known_bugs_reproduce(&self) {
        let (mut reproduced, mut fixed) = (Vec::new(), Vec::new());
        for (name, data) in seeds(self.name)
            .iter()
            .filter(|(n, _)| n.starts_with("bug_"))
        {
            match panic_message(|| {
                (self.strict)(data);
            }) {
                Some(msg) => reproduced.push(format!("{}/{name}:\n    {msg}", self.name)),
                None => fixed.push(name.clone()),
            }
        }
        assert!(fixed.is_empty(), "known-bug seeds pass now: {fixed:?}");
        assert!(
            reproduced.is_empty(),
            "KNOWN BUGS REPRODUCED (see KNOWN_BUGS and fuzz/README.md):\n{}",
            reproduced.join("\n")
        );
    }

    /// Checks a hand-made seed against its checked-in file
    /// `fuzz/seeds/<target>/<name>` (rewrites the file instead when
    /// `FUZZ_WRITE_SEEDS` is set), then runs it.
    pub fn hand_seed(&self, name: &str, bytes: &[u8]) -> crate::Stats {
        assert_eq!((self.canon)(bytes), bytes, "{name} does not round-trip");
        let path = seeds_dir(self.name).join(name);
        if std::env::var_os("FUZZ_WRITE_SEEDS").is_some() {
            std::fs::write(&path, bytes).unwrap();
        }
        let file = std::fs::read(&path).unwrap_or_default();
        assert!(
            file == bytes,
            "{} differs from its op list (FUZZ_WRITE_SEEDS=1 rewrites it)",
            path.display()
        );
        (self.run)(bytes)
    }
}

fn seeds_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../seeds")
        .join(target)
}

/// Runs `f`; its panic message (first three lines), if it panics.
pub fn panic_message(f: impl FnOnce()) -> Option<String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    let e = r.err()?;
    let msg = e
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    Some(msg.lines().take(3).collect::<Vec<_>>().join("\n    "))
}
