#!/usr/bin/env python3
"""Time per MAC of a Conv against its output channels, on onnxruntime CPU
(a benchmark, not a test): why the cost model prices the bytes a Conv
streams (convrewrite/core/cost.py, `streamed_bytes`; docs/cost_model.md,
"Streamed bytes").

    python benchmarks/bench_conv_channels.py [--repeats 15]

Single-Conv models, 1 thread, thread CPU time of interleaved runs
(round-robin after a warm-up), medians.  For each: MACs, the bytes it
streams (its im2col matrix: input channels x kernel taps x output
positions x 4) and the time per MAC and per streamed byte.  A GEMM-based
Conv streams the same matrix whatever its output channels, so with few of
them the time follows the streamed bytes, not the MACs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort
from onnx import helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from convrewrite.core.cost import model_cost  # noqa: E402

# (input channels, output channels, kernel, map side): an image generator's
# last layer, ConvTranspose 64 -> 3, 4x4/s2/p1 on 128x128 (pix2pix): one of
# its four phase Convs (64 -> 3, 2x2) and single-conv's one Conv (64 -> 12,
# 2x2 on the padded 130x130 map: 129x129 outputs); dense layers for comparison
CASES = [(64, 3, 2, 128), (64, 12, 2, 129), (64, 3, 1, 128), (16, 3, 3, 128),
         (64, 4, 2, 64), (64, 8, 2, 64), (64, 12, 2, 64), (64, 16, 2, 64), (64, 32, 2, 64), (64, 64, 2, 64),
         (32, 4, 2, 64), (32, 16, 3, 64), (64, 48, 3, 32)]


def conv_model(cin: int, cout: int, k: int, side: int):
    w = np.random.default_rng(0).standard_normal((cout, cin, k, k)).astype(np.float32) * 0.1
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[0, 0, k - 1, k - 1])
    g = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", 1, [1, cin, side, side])],
                          [helper.make_tensor_value_info("y", 1, None)], [numpy_helper.from_array(w, "w")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args(argv)
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    models = [conv_model(*c) for c in CASES]
    sessions = [ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]) for m in models]
    feeds = [{"x": np.random.default_rng(1).standard_normal((1, c[0], c[3], c[3])).astype(np.float32)}
             for c in CASES]
    for s, f in zip(sessions, feeds):       # warm-up
        s.run(None, f)
    times = [[] for _ in CASES]
    for _ in range(args.repeats):
        for i, (s, f) in enumerate(zip(sessions, feeds)):
            start = time.thread_time_ns()
            for _ in range(5):
                s.run(None, f)
            times[i].append((time.thread_time_ns() - start) / 5)
    print(f"onnxruntime {ort.__version__} CPU, 1 thread, median of {args.repeats} interleaved rounds")
    print("| Conv (in -> out, kernel, map) | us | MACs M | streamed MB | ps per MAC | ns per streamed byte |")
    print("|---|---|---|---|---|---|")
    for (cin, cout, k, side), m, t in zip(CASES, models, times):
        ns, cost = statistics.median(t), model_cost(m)
        print(f"| {cin} -> {cout}, {k}x{k}, {side}x{side} | {ns / 1e3:.0f} | {cost.macs / 1e6:.1f} | "
              f"{cost.streamed_bytes / 1e6:.1f} | {ns * 1e3 / cost.macs:.0f} | {ns / cost.streamed_bytes:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
