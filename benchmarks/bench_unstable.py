#!/usr/bin/env python3
"""How long `optimize` (verified) takes on issue 12's numerically chaotic model.

    python benchmarks/bench_unstable.py [--blocks 334] [--repeats 3]

The model is `chaotic_chain(blocks)` of tests/core/test_oracle.py: one chain
of random Tanh blocks, three candidates each (334 blocks: 1,002), whose
output moves by 20% when its input moves by one ulp.  The whole-model check
fails there for any rewrite, so the run measures the original's own noise
and accepts a result within it (README, "Deep and unstable models"); before
that rule bisection ran for minutes.  Each repeat is a fresh process (imports
included, as a user runs it); the table gives the median wall time, the
rewrites kept and what verification said.  The test suite checks the
outcome (no bisection, >= 99% kept); the time is measured only here.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = """
import json, sys, time
sys.path[:0] = [{root!r}, {tests!r}, {core_tests!r}]
t = time.perf_counter()
from convrewrite import optimize
from test_oracle import chaotic_chain
model = chaotic_chain({blocks})
new, report = optimize(model)
v = report.verification
# kept against rewritten or rolled back, as the test counts it: the optimization pass's
# records of nodes it leaves (shuffle-spelling's small DepthToSpaces) are no rewrite dropped
done = [r.status for r in report.rewrites if r.status in ("rewritten", "rolled_back")]
kept = done.count("rewritten") / len(done)
print(json.dumps({{"seconds": time.perf_counter() - t, "kept": kept, "equivalent": v.equivalent,
                  "within_noise": v.within_noise, "bisection_seconds": v.bisection_seconds}}))
"""


def run_once(blocks: int) -> dict:
    code = CHILD.format(root=ROOT, tests=os.path.join(ROOT, "tests"),
                        core_tests=os.path.join(ROOT, "tests", "core"), blocks=blocks)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - start
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=334)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    runs = [run_once(args.blocks) for _ in range(args.repeats)]
    seconds = statistics.median(r["process_seconds"] for r in runs)
    print(f"| blocks | candidates | optimize s (verified, median of {args.repeats}, whole process) "
          f"| kept | equivalent | within noise | bisection s |")
    print("|---|---|---|---|---|---|---|")
    last = runs[-1]
    print(f"| {args.blocks} | {3 * args.blocks} | {seconds:.2f} | {last['kept']:.1%} | {last['equivalent']} "
          f"| {last['within_noise']} | {last['bisection_seconds']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
