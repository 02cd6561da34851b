#!/usr/bin/env python3
"""Benchmark of the convtranspose pass (not a test): onnxruntime CPU latency of
a ConvTranspose and of its rewrite, on realistic decoder shapes, and MACs.

    python benchmarks/bench_convtranspose.py [--repeats 50] [--threads 1] [--forms]

Each case is one ConvTranspose node (batch 1, float32) rewritten by the pass
in its default form (`auto`); with --forms the single-conv, phase-convs and
border-split forms are timed as well where they differ.  Latency is the median of
interleaved runs (original, rewrite, original, ...), one session per model.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from convrewrite import optimize  # noqa: E402
from passes.convtranspose.rewrite import ConvTransposeOptions, ConvTransposeToConv  # noqa: E402

# label, input spatial size, Cin, Cout, kernel, stride, pads (per side), output_padding, group
CASES = [
    ("U-Net up 2x2/s2", (64, 64), 64, 32, 2, 2, 0, 0, 1),
    ("U-Net up 2x2/s2", (32, 32), 128, 64, 2, 2, 0, 0, 1),
    ("DCGAN 4x4/s2/p1", (16, 16), 256, 128, 4, 2, 1, 0, 1),
    ("DCGAN 4x4/s2/p1", (32, 32), 128, 64, 4, 2, 1, 0, 1),
    ("DCGAN 4x4/s2/p1", (64, 64), 64, 32, 4, 2, 1, 0, 1),
    ("4x4/s2/p0 (borders kept)", (32, 32), 64, 32, 4, 2, 0, 0, 1),
    ("3x3/s2/p1/op1", (32, 32), 64, 64, 3, 2, 1, 1, 1),
    ("3x3/s2/p1 (odd output)", (32, 32), 64, 64, 3, 2, 1, 0, 1),
    ("3x3/s1/p1", (32, 32), 64, 64, 3, 1, 1, 0, 1),
    ("3x3/s1/p0 (full)", (32, 32), 64, 64, 3, 1, 0, 0, 1),
    ("7x7/s1/p0 (full)", (16, 16), 32, 32, 7, 1, 0, 0, 1),
    ("depthwise 4x4/s2/p1", (32, 32), 64, 64, 4, 2, 1, 0, 64),
    ("grouped 2x2/s2 (g=4)", (32, 32), 64, 64, 2, 2, 0, 0, 4),
    ("3-D 2x2x2/s2", (8, 16, 16), 32, 16, 2, 2, 0, 0, 1),
    ("1-D 16/s8/p4 (vocoder)", (256,), 128, 64, 16, 8, 4, 0, 1),
]


def conv_transpose_model(sizes, cin, cout, k, s, p, op, group) -> onnx.ModelProto:
    r = len(sizes)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((cin, cout // group, *[k] * r)).astype(np.float32) * 0.05
    bias = rng.standard_normal(cout).astype(np.float32)
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], name="up", strides=[s] * r,
                            pads=[p] * 2 * r, output_padding=[op] * r, group=group)
    graph = helper.make_graph([node], "bench", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, *sizes])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * (r + 2))],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(bias, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def session(model: onnx.ModelProto, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def interleaved_medians(sessions, feeds, repeats: int) -> list[float]:
    """Median milliseconds per session, the sessions run in turn each round."""
    for s in sessions:  # warm-up
        s.run(None, feeds)
    times = [[] for _ in sessions]
    for _ in range(repeats):
        for k, s in enumerate(sessions):
            t = time.perf_counter()
            s.run(None, feeds)
            times[k].append(time.perf_counter() - t)
    return [1e3 * statistics.median(t) for t in times]


def rewrites(model, forms):
    """(form, model, macs_before, macs_after, op summary) for each requested
    form; a forced form whose graph equals an earlier one is left out."""
    out, seen = [], set()
    for form in forms:
        new, report = optimize(model, passes=[ConvTransposeToConv(ConvTransposeOptions(form))])
        rec = report.rewrites[0]
        chosen = rec.form
        ops = {}
        for n in new.graph.node:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
        summary = " ".join(f"{k}x{v}" if v > 1 else k for k, v in ops.items())
        if rec.status != "rewritten" or (summary, rec.macs_after) in seen:
            continue
        seen.add((summary, rec.macs_after))
        out.append((("auto: " if form == "auto" else "") + chosen, new, rec.macs_before, rec.macs_after, summary))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--forms", action="store_true", help="also time the forms auto did not choose")
    args = ap.parse_args(argv)
    forms = ["auto", "single-conv", "phase-convs", "border-split"] if args.forms else ["auto"]
    print(f"onnxruntime CPU, {args.threads} thread(s), median of {args.repeats} interleaved runs\n")
    header = f"{'case':24} {'input':>12} {'Cin>Cout':>9} {'form':22} {'orig ms':>8} {'new ms':>8} " \
             f"{'speed':>6} {'MACs':>7}  nodes"
    print(header)
    print("-" * len(header))
    for label, sizes, cin, cout, k, s, p, op, group in CASES:
        model = conv_transpose_model(sizes, cin, cout, k, s, p, op, group)
        feeds = {"x": np.random.default_rng(1).standard_normal((1, cin, *sizes)).astype(np.float32)}
        variants = rewrites(model, forms)
        times = interleaved_medians([session(model, args.threads)] + [session(v[1], args.threads) for v in variants],
                                    feeds, args.repeats)
        for (form, _, before, after, summary), t in zip(variants, times[1:]):
            print(f"{label:24} {'x'.join(map(str, sizes)):>12} {f'{cin}>{cout}':>9} {form:22} {times[0]:8.3f} "
                  f"{t:8.3f} {times[0] / t:5.2f}x {after / before:6.3f}x  {summary}")


if __name__ == "__main__":
    main()
