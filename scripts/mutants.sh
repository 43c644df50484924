#!/usr/bin/env bash
# Mutation catalogue: applies each concurrency mutant of scripts/mutants.txt
# to a scratch copy of the committed tree (HEAD), builds and runs the loom
# models that mutant names, and reports which mutants survive.
#
#   scripts/mutants.sh                 # every mutant
#   scripts/mutants.sh M01 M07         # a subset, by id
#   scripts/mutants.sh --list          # ids and descriptions
#   scripts/mutants.sh --check [ID...] # only check that each mutant applies
#
# Environment:
#   MUTANTS_DIR      scratch dir (default target-mutants/ in the repo): the copy
#                    in src/, one cargo target dir in target/ reused across
#                    mutants and runs (incremental rebuilds)
#   MUTANT_TIMEOUT   seconds per model run and per build (default 600)
#   LOOM_MAX_PREEMPTIONS  as for scripts/loom.sh (default 2)
#
# A mutant's `tests:` entries name the loom models that should kill it, as
# BINARY::FILTER: BINARY is a loom test binary (`pagemap` or `vmr`, the
# directories of loom-tests/tests/), FILTER a substring of the test path,
# usually a module (one former model file) with its `::`, e.g.
# `vmr::vmr_fork_snapshot::` or `pagemap::removers::` (the `::` keeps it
# from also selecting `removers_remove`); plain:PKG:TEST is a non-loom test.
# Each entry is a separate run, in order; the first failure kills the
# mutant. A failing loom model aborts its binary, which is enough here.
#
# Results per mutant: KILLED (a named model failed, panicked or aborted),
# SURVIVED (all named models passed), DID-NOT-APPLY (search string not found
# exactly once), BUILD-FAILED, TIMEOUT (a model ran past MUTANT_TIMEOUT; not
# counted as killed). The script only reads the repository: the copy is
# taken with `git archive HEAD`, so uncommitted changes are not mutated.
# The score is killed / (killed + survived + timeout).
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
catalogue="$repo/scripts/mutants.txt"
work="${MUTANTS_DIR:-$repo/target-mutants}"
src="$work/src"
logs="$work/logs"
tmo="${MUTANT_TIMEOUT:-600}"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
export CARGO_TARGET_DIR="$work/target"
export RUSTFLAGS="${RUSTFLAGS:-} --cfg pagemap_loom --cfg crossbeam_loom -C debug-assertions"
export RUST_BACKTRACE=0

# The catalogue parser / applier (exact, literal, single occurrence).
py() {
    python3 - "$@" <<'PY'
import sys, os
def parse(path):
    muts, cur, field = [], None, None
    for line in open(path, encoding="utf-8"):
        s = line.rstrip("\n")
        if s.startswith("=== "):
            cur = {"id": s[4:].strip(), "search": [], "replace": []}
            muts.append(cur); field = None
        elif cur is None or (field is None and (s.startswith("#") or not s.strip())):
            continue
        elif s == "--- search":
            field = "search"
        elif s == "--- replace":
            field = "replace"
        elif s == "--- end":
            field = None
        elif field:
            cur[field].append(s)
        else:
            k, _, v = s.partition(":")
            cur[k.strip()] = v.strip()
    for m in muts:
        m["search"] = "\n".join(m["search"]); m["replace"] = "\n".join(m["replace"])
    return muts
cmd, cat = sys.argv[1], sys.argv[2]
muts = {m["id"]: m for m in parse(cat)}
if cmd == "ids":
    print("\n".join(muts))
elif cmd == "list":
    for m in muts.values():
        print(f'{m["id"]:5} {m.get("file","?")}: {m.get("desc","")}  [{m.get("tests","")}]')
elif cmd == "get":
    print(muts[sys.argv[3]].get(sys.argv[4], ""))
elif cmd == "apply":
    m, root = muts[sys.argv[3]], sys.argv[4]
    p = os.path.join(root, m["file"])
    text = open(p, encoding="utf-8").read()
    n = text.count(m["search"])
    if n != 1 or not m["search"]:
        print(f'search string found {n} times in {m["file"]}'); sys.exit(3)
    open(p, "w", encoding="utf-8").write(text.replace(m["search"], m["replace"], 1))
elif cmd == "sync":
    # Copy the extracted tree over the scratch copy, touching only files that
    # differ (keeps cargo's fingerprints of unchanged crates).
    import filecmp, shutil
    new, old = sys.argv[3], sys.argv[4]
    for d, _, files in os.walk(new):
        for f in files:
            a = os.path.join(d, f); b = os.path.join(old, os.path.relpath(a, new))
            if not os.path.exists(b) or not filecmp.cmp(a, b, shallow=False):
                os.makedirs(os.path.dirname(b), exist_ok=True); shutil.copy2(a, b)
    # Files that HEAD no longer has (a module moved into a folder) must go,
    # or the scratch copy holds both `map.rs` and `map/mod.rs`.
    for d, _, files in os.walk(old):
        for f in files:
            b = os.path.join(d, f)
            if not os.path.exists(os.path.join(new, os.path.relpath(b, old))):
                os.remove(b)
PY
}

if [ "${1:-}" = "--list" ]; then py list "$catalogue"; exit 0; fi
check=0; if [ "${1:-}" = "--check" ]; then check=1; shift; fi
if [ $# -gt 0 ]; then ids=("$@"); else mapfile -t ids < <(py ids "$catalogue"); fi

mkdir -p "$src" "$logs"
tmp=$(mktemp -d)
git -C "$repo" archive HEAD | tar -x -C "$tmp"
py sync "$catalogue" "$tmp" "$src"
rm -rf "$tmp"
start=$(date +%s)
echo "mutants.sh: ${#ids[@]} mutants, copy of $(git -C "$repo" rev-parse --short HEAD) in $src, target $CARGO_TARGET_DIR, LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS, timeout ${tmo}s, $(nproc) cores"

declare -A result detail
for id in "${ids[@]}"; do
    file=$(py get "$catalogue" "$id" file) || { result[$id]="UNKNOWN-ID"; continue; }
    tests=$(py get "$catalogue" "$id" tests)
    log="$logs/$id.log"; : > "$log"; detail[$id]=""
    t0=$(date +%s)
    cp -p "$src/$file" "$work/orig"
    if ! msg=$(py apply "$catalogue" "$id" "$src" 2>&1); then
        result[$id]="DID-NOT-APPLY"; detail[$id]="$msg"
    elif [ $check = 1 ]; then
        result[$id]="APPLIES"
    else
        # Build the named loom binaries once, then run each (first failure kills).
        # Each binary once (several entries usually name the same one).
        targs=(); for t in $tests; do case "$t" in plain:*) ;; *) case " ${targs[*]} " in *" ${t%%::*} "*) ;; *) targs+=(--test "${t%%::*}");; esac;; esac; done
        status=SURVIVED; why=""
        if [ ${#targs[@]} -gt 0 ] && ! (cd "$src" && timeout "$tmo" cargo test -p loom-tests --release --no-run "${targs[@]}") >>"$log" 2>&1; then
            status=BUILD-FAILED
        else
            for t in $tests; do
                if [ "${t#plain:}" != "$t" ]; then
                    # plain:PKG:TEST -> cargo test -p PKG --test TEST, without the loom cfgs
                    spec=${t#plain:}; pkg=${spec%%:*}; tt=${spec#*:}
                    (cd "$src" && RUSTFLAGS= CARGO_TARGET_DIR="$work/target-plain" timeout "$tmo" cargo test -p "$pkg" --release --test "$tt") >>"$log" 2>&1
                else
                    bin=${t%%::*}; filt=(); [ "$bin" != "$t" ] && filt=(-- "${t#*::}")
                    (cd "$src" && timeout "$tmo" cargo test -p loom-tests --release --test "$bin" "${filt[@]}") >>"$log" 2>&1
                fi
                rc=$?
                if [ $rc -eq 124 ]; then status=TIMEOUT; why="$t"; break
                elif [ $rc -ne 0 ]; then
                    # A build error of a plain test is not a kill.
                    if grep -q "^error\(\[E[0-9]*\]\)\?: could not compile\|^error: could not compile" "$log"; then status=BUILD-FAILED; else status=KILLED; fi
                    at=$(grep -o -m1 "panicked at [^ ]*tests/[^ ]*" "$log" | sed 's/panicked at //; s/:$//')
                    # The test thread that panicked first: the model's path
                    # in its binary (an entry may select several models).
                    model=$(grep -o -m1 "^thread '[^']*'.* panicked at" "$log" | sed "s/^thread '//; s/'.*//")
                    why="$t${model:+ [$model]}${at:+ ($at)}"; break
                fi
            done
        fi
        result[$id]=$status; detail[$id]="$why"
    fi
    cp -p "$work/orig" "$src/$file"   # revert
    secs=$(( $(date +%s) - t0 ))
    printf '%-5s %-13s %4ss %s\n' "$id" "${result[$id]}" "$secs" "${detail[$id]}"
    detail[$id]="${secs}s ${detail[$id]}"
done

echo
echo "| id | result | time, by | description |"
echo "|---|---|---|---|"
killed=0; scored=0
for id in "${ids[@]}"; do
    r=${result[$id]:-UNKNOWN-ID}
    case $r in KILLED) killed=$((killed+1)); scored=$((scored+1));; SURVIVED|TIMEOUT) scored=$((scored+1));; esac
    echo "| $id | $r | ${detail[$id]:-} | $(py get "$catalogue" "$id" desc 2>/dev/null) |"
done
echo
echo "mutants.sh: score $killed / $scored killed; $(( $(date +%s) - start )) s; logs in $logs"
[ $check = 1 ] && exit 0
for id in "${ids[@]}"; do [ "${result[$id]:-}" = KILLED ] || exit 1; done
