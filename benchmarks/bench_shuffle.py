#!/usr/bin/env python3
"""How fast onnxruntime CPU runs a 2x pixel shuffle, by the ops that can express it.

    python benchmarks/bench_shuffle.py [--shapes 16x128x128,64x64x64,256x14x14] [--repeats 25]

The rewritten forms end in a pixel shuffle (C*4, H, W) -> (C, 2H, 2W); this
times, for each shape, the ways to build one on onnxruntime CPU (1 thread,
default graph optimizations), and as yardsticks the ops the rewrites remove
(nearest Resize 2x of (C, H, W), a depthwise ConvTranspose 2x2 stride 2).
"per axis" is the spelling the shuffle-spelling pass gives each DepthToSpace
(one Reshape/Transpose/Reshape per spatial axis), built by that pass and
checked bit-identical to the DepthToSpace here.
Every graph is one node (or one Reshape/Transpose/Reshape chain) on a
seeded random input; times are medians of samples of the thread's CPU
time (bench_latency.measure), one op after the other.  `--profile` in bench_latency.py
shows how much of a real model's extra time these ops are.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_latency import measure  # noqa: E402

OPSET = 17


def graph_model(nodes, x_shape, inits=(), y_shape=None) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "shuffle", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])


def per_axis(mode: str, c: int, h: int, w: int) -> onnx.ModelProto:
    """The DepthToSpace respelled by the shuffle-spelling pass (verified: exact)."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import convrewrite
    d2s = graph_model([helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode=mode)], [1, 4 * c, h, w],
                      y_shape=[1, c, 2 * h, 2 * w])
    model, _ = convrewrite.optimize(d2s, passes=["shuffle-spelling"])
    assert not any(n.op_type == "DepthToSpace" for n in model.graph.node), "not respelled"
    x = np.random.default_rng(1).standard_normal([1, 4 * c, h, w]).astype(np.float32)
    import onnxruntime as ort
    run = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
           for m in (d2s, model)]
    assert np.array_equal(*run), "not bit-identical"
    return model


def shuffle_variants(c: int, h: int, w: int) -> dict:
    """name -> (model, input shape)."""
    big = [1, 4 * c, h, w]
    shape6 = numpy_helper.from_array(np.array([1, 2, 2, c, h, w], np.int64), "s6")   # DCR order
    out4 = numpy_helper.from_array(np.array([1, c, 2 * h, 2 * w], np.int64), "s4")
    rtr = [helper.make_node("Reshape", ["x", "s6"], ["a"]),
           helper.make_node("Transpose", ["a"], ["b"], perm=[0, 3, 4, 1, 5, 2]),
           helper.make_node("Reshape", ["b", "s4"], ["y"])]
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "sc")
    wt = numpy_helper.from_array(np.random.default_rng(0).standard_normal((c, 1, 2, 2)).astype(np.float32), "w")
    return {
        "DepthToSpace DCR": (graph_model([helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2)], big), big),
        "DepthToSpace CRD": (graph_model([helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode="CRD")],
                                         big), big),
        "DepthToSpace DCR per axis (shuffle-spelling)": (per_axis("DCR", c, h, w), big),
        "DepthToSpace CRD per axis (shuffle-spelling)": (per_axis("CRD", c, h, w), big),
        "Reshape/Transpose/Reshape": (graph_model(rtr, big, [shape6, out4]), big),
        "Resize nearest 2x (yardstick)": (graph_model([helper.make_node("Resize", ["x", "", "sc"], ["y"],
                                                                        mode="nearest")], [1, c, h, w], [scales]),
                                          [1, c, h, w]),
        "ConvTranspose dw 2x2/2 (yardstick)": (graph_model([helper.make_node("ConvTranspose", ["x", "w"], ["y"],
                                                                             group=c, strides=[2, 2],
                                                                             kernel_shape=[2, 2])],
                                                           [1, c, h, w], [wt]), [1, c, h, w]),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="16x128x128,64x64x64,21x128x128,256x14x14",
                    help="output channels x input height x input width, comma-separated")
    ap.add_argument("--repeats", type=int, default=25)
    args = ap.parse_args(argv)
    print("| C x H x W (input of the shuffle: 4C) | op | ms | ms per MB written |\n|---|---|---|---|")
    for spec in args.shapes.split(","):
        c, h, w = (int(v) for v in spec.split("x"))
        for name, (model, shape) in shuffle_variants(c, h, w).items():
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            ms = 1e3 * float(np.median([cpu for cpu, _ in measure([model], {"x": x}, args.repeats)[0]]))
            print(f"| {spec} | {name} | {ms:.3f} | {ms / (4 * c * h * w * 4 / 1e6):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
