#!/usr/bin/env bash
# Installs what the test scripts need, on a fresh machine with rustup and a C
# compiler: every install step of the project lives here. Idempotent: each
# tool is installed only if missing. `.ci/run` calls it before scripts/test.sh.
#
#   scripts/setup.sh            # everything below
#
# * rustfmt and clippy on the default (stable) toolchain;
# * the workspace's minimum Rust version (rust-version in Cargo.toml), a
#   minimal profile, to check that the libraries build with it;
# * nightly with miri and rust-src, for the miri run over the unsafe code
#   (miri exists only on nightly; nothing else uses nightly);
# * the x86_64-unknown-none target on the stable toolchain, for the build
#   of pagemap without std (a no_std target: no std library to link);
# * cargo-fuzz (built from crates.io with the stable toolchain) and a C++
#   compiler for libFuzzer.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'setup.sh: %s\n' "$*"; }

rustup component add rustfmt clippy >/dev/null 2>&1 || say "rustfmt/clippy: rustup could not add them"

msrv=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml | head -1)
# The two extra toolchains come from rustup's own server, not a package
# registry: where it cannot be reached, say so and go on (test.sh then skips
# the MSRV build and miri, loudly) rather than fail everything else.
if ! rustup run "$msrv" rustc --version >/dev/null 2>&1; then
    say "installing Rust $msrv (the workspace's rust-version)"
    rustup toolchain install "$msrv" --profile minimal \
        || say "WARNING: could not install Rust $msrv: the MSRV check will be skipped"
fi

if ! cargo +nightly miri --version >/dev/null 2>&1; then
    say "installing nightly with miri"
    rustup toolchain install nightly --profile minimal --component miri,rust-src \
        || say "WARNING: could not install nightly with miri: miri will be skipped"
fi

if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-none; then
    say "adding the x86_64-unknown-none target (pagemap's no_std build)"
    rustup target add x86_64-unknown-none \
        || say "WARNING: could not add x86_64-unknown-none: the no_std build will be skipped"
fi

if ! command -v c++ >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        say "installing g++ (libFuzzer is C++)"
        apt-get update -qq && apt-get install -y -qq g++ >/dev/null
    else
        say "a C++ compiler (c++) is needed to build libFuzzer" >&2
        exit 1
    fi
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

say "stable $(rustc --version | cut -d' ' -f2), msrv $msrv, $(cargo +nightly miri --version 2>/dev/null | head -1 || echo 'no miri'), $(cargo fuzz --version)"
