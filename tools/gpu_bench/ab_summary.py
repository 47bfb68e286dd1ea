#!/usr/bin/env python3
"""Summarises alternating runs of two gpu_bench builds (A = this build, B = the
other): decode b1 and batch 64 tokens/s and the GRPO step's completions/s per
round, their medians and the ratio A / B.

Usage: ab_summary.py DIR  (DIR holds a_<round>.json and b_<round>.json, each
from `gpu_bench --only decode,batch,grpo --grpo-settings default --json ...`)
"""
import glob
import json
import os
import sys


def dig(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


MEASUREMENTS = [
    ("decode b1, tok/s", ("decode", "tokens_per_s")),
    ("batch 8, tok/s", ("batch", "8", "tokens_per_s")),
    ("batch 64, tok/s", ("batch", "64", "tokens_per_s")),
    ("GRPO step, compl/s", ("grpo", "completions_per_s")),
    ("GRPO step peak, GiB", ("grpo", "peak_gib")),
]


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def main():
    directory = sys.argv[1]
    runs = {"a": [], "b": []}
    for side in runs:
        for path in sorted(glob.glob(os.path.join(directory, f"{side}_*.json"))):
            with open(path) as f:
                runs[side].append(json.load(f))
    print(f"rounds: {len(runs['a'])} (A) / {len(runs['b'])} (B)")
    print(f"{'measurement':<24}{'A per round':>28}{'B per round':>28}{'A med':>10}{'B med':>10}{'A/B':>7}")
    summary = {}
    for name, keys in MEASUREMENTS:
        a = [dig(r, *keys) for r in runs["a"]]
        b = [dig(r, *keys) for r in runs["b"]]
        ma, mb = median(a), median(b)
        ratio = ma / mb if ma and mb else None
        summary[name] = {"a": a, "b": b, "a_median": ma, "b_median": mb, "ratio": ratio}
        cells = lambda xs: ", ".join("-" if x is None else f"{x:,.1f}" for x in xs)
        print(f"{name:<24}{cells(a):>28}{cells(b):>28}"
              f"{'-' if ma is None else f'{ma:,.1f}':>10}{'-' if mb is None else f'{mb:,.1f}':>10}"
              f"{'-' if ratio is None else f'{ratio:.3f}':>7}")
    with open(os.path.join(directory, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
