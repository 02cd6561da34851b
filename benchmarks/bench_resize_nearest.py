#!/usr/bin/env python3
"""Nearest Resize on onnxruntime CPU: the shuffle form against the matmul
form (and the original), one Resize per model.  Not a test.

    python benchmarks/bench_resize_nearest.py [--channels 16,32,64,256] [--sizes 8,16,32,64]
                                              [--factors 2,4] [--rounds 7]

The basis of the resize pass's `nearest_favour` (docs/resize.md, "Nearest on
small maps"): each case is a Resize of [1, C, n, n] by f on both spatial
axes (the ONNX defaults: half_pixel, round_prefer_floor; every phase a
plain copy at these factors, as with PyTorch's asymmetric floor), rewritten with
`resize_nearest=shuffle` (Concat of copies + DepthToSpace) and with
`resize_mode=matmul` (two MatMuls).  The three sessions (1 thread) are timed
round-robin, `--rounds` times after a warm-up; a sample is k consecutive
runs (k chosen for ~3 M output elements per sample); the figure is the
median CPU time of the calling thread per run, in microseconds, and the last
column matmul's time over shuffle's.  Cases above 8 M output elements are
skipped.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from convrewrite import optimize  # noqa: E402

MAX_OUTPUT = 8e6


def resize_model(c: int, n: int, f: int):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, n, n])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, n * f, n * f])
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, f, f])
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest")   # half_pixel, round_prefer_floor
    graph = helper.make_graph([node], "resize", [x], [y], [scales])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def session(model) -> ort.InferenceSession:
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    o.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), o, providers=["CPUExecutionProvider"])


def median_us(sessions: dict, feeds: dict, runs: int, rounds: int) -> dict:
    for s in sessions.values():
        s.run(None, feeds)
    times = {k: [] for k in sessions}
    for _ in range(rounds):
        for k, s in sessions.items():
            t0 = time.thread_time()
            for _ in range(runs):
                s.run(None, feeds)
            times[k].append((time.thread_time() - t0) / runs * 1e6)
    return {k: statistics.median(v) for k, v in times.items()}


def case(c: int, n: int, f: int, rounds: int) -> dict:
    model = resize_model(c, n, f)
    variants = {"original": model,
                "shuffle": optimize(model, verify=False, options={"resize_nearest": "shuffle"})[0],
                "matmul": optimize(model, verify=False, options={"resize_mode": "matmul"})[0]}
    feeds = {"x": np.random.default_rng(0).standard_normal((1, c, n, n)).astype(np.float32)}
    runs = max(5, int(3e6 / (c * n * n * f * f)))
    return median_us({k: session(m) for k, m in variants.items()}, feeds, runs, rounds)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", default="16,32,64,256")
    ap.add_argument("--sizes", default="8,16,32,64")
    ap.add_argument("--factors", default="2,4")
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args(argv)
    ints = lambda s: [int(v) for v in s.split(",")]  # noqa: E731
    print("| channels | input | factor | original us | shuffle us | matmul us | matmul / shuffle |")
    print("|---|---|---|---|---|---|---|")
    for c in ints(a.channels):
        for n in ints(a.sizes):
            for f in ints(a.factors):
                if c * n * n * f * f > MAX_OUTPUT:
                    continue
                t = case(c, n, f, a.rounds)
                print(f"| {c} | {n}x{n} | x{f} | {t['original']:.1f} | {t['shuffle']:.1f} | {t['matmul']:.1f} "
                      f"| {t['matmul'] / t['shuffle']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
