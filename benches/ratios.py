#!/usr/bin/env python3
"""Ratio table from criterion's results: medians of the page map and of each
baseline in the same group, and how many times faster the page map is.

usage: ratios.py [CRITERION_DIR]   (default: $CARGO_TARGET_DIR/criterion or
                                    target-bench/criterion next to this repo)
Prints markdown; the target checks at the end say met/MISSED.
"""
import json
import os
import sys
from pathlib import Path

OURS = "pagemap"
FLOOR = "flat_floor"
ORDER = [OURS, FLOOR, "frame_fill_floor", "mutex_hashmap", "rwlock_radix_trie", "dashmap", "papaya", "scc_hashindex"]
INSERT_N = 1 << 16  # pages per insert iteration (benches/benches/pagemap.rs)


def load(root):
    groups = {}
    for est in sorted(root.glob("*/*/new/estimates.json")):
        bench = json.loads((est.parent / "benchmark.json").read_text())
        median = json.loads(est.read_text())["median"]["point_estimate"]
        groups.setdefault(bench["group_id"], {})[bench["function_id"]] = median
    return groups


def fmt_ns(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.1f} ns"


def main():
    if len(sys.argv) > 1:
        root = Path(sys.argv[1])
    else:
        target = os.environ.get("CARGO_TARGET_DIR") or Path(__file__).resolve().parent.parent / "target-bench"
        root = Path(target) / "criterion"
    groups = load(root)
    if not groups:
        sys.exit(f"no criterion results under {root}")
    checks = []
    print("| group | implementation | median | vs pagemap |")
    print("| --- | --- | ---: | ---: |")
    for g in sorted(groups, key=lambda g: (not g.startswith("find_put"), not g.startswith("hot"), g)):
        res = groups[g]
        ours = res.get(OURS)
        insert = g.startswith("insert")
        for name in sorted(res, key=lambda n: ORDER.index(n) if n in ORDER else 99):
            t = res[name]
            shown = fmt_ns(t)
            if insert:
                shown += f" ({t / INSERT_N:.0f} ns/insert)"
            if name == OURS or ours is None:
                rel = "—"
            elif name in (FLOOR, "frame_fill_floor"):
                rel = f"pagemap is {ours / t:.2f}x the floor"
            else:
                rel = f"pagemap {t / ours:.2f}x faster" if t >= ours else f"pagemap {ours / t:.2f}x slower"
            print(f"| {g} | {name} | {shown} | {rel} |")
        if ours is None:
            continue
        if g.startswith("find_put"):
            if FLOOR in res:
                checks.append((g, "within 2.5x of the flat-array floor", ours / res[FLOOR], "<=", 2.5))
            for b in ("papaya", "scc_hashindex", "dashmap"):
                if b in res:
                    checks.append((g, f">= 5x faster than {b}", res[b] / ours, ">=", 5.0))
            for b in ("mutex_hashmap", "rwlock_radix_trie"):
                if b in res:
                    checks.append((g, f">= 20x faster than {b}", res[b] / ours, ">=", 20.0))
        if g.startswith("hot_slot") and "scc_hashindex" in res:
            checks.append((g, "at least as fast as scc_hashindex", res["scc_hashindex"] / ours, ">=", 1.0))
    print()
    print("| group | target | measured | met? |")
    print("| --- | --- | ---: | --- |")
    for g, what, v, op, lim in checks:
        ok = v <= lim if op == "<=" else v >= lim
        print(f"| {g} | {what} | {v:.2f}x | {'met' if ok else 'MISSED'} |")


if __name__ == "__main__":
    main()
