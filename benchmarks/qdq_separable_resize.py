#!/usr/bin/env python3
"""Would a separable form keep a quantized bilinear x8 Resize exact?  (not a test)

The quantized deconv form (passes/resize/quantized.py) writes the 2-D
bilinear kernel as one 8-bit weight.  At x8 its taps are multiples of 1/256
up to 225/256, more than int8 holds.  Each axis's 1-D taps alone are
multiples of 1/16 up to 15/16, which int8 holds exactly, so the Resize could
be two depthwise ConvTransposes, one per axis:

    DQ(x) -> Pad(edge) -> Q/DQ (x's grid)
          -> ConvTranspose along H (w int8 / 16) -> Q/DQ (the intermediate's grid)
          -> ConvTranspose along W (w int8 / 16) -> Q(y)

The intermediate is quantized again, so the result is rounded twice where
the original (DQ -> Resize -> Q) rounds once.  This script builds that form
by hand on the x8 test block (tests/qdq_models.py), for uint8 and int8
activations and three intermediate grids -- x's own, one twice as fine
(s_x / 2, same zero point) and int16 on s_x / 16 (which holds every
per-axis sum exactly) --, lets convrewrite's convtranspose pass lower both
ConvTransposes into QDQ Convs as a run would, and compares the Resize's
quantized output with the original's in steps, under the spec semantics
(onnxruntime, optimizations off) and onnxruntime's fused int8 execution,
over 400 random inputs.  It also counts the float Convs left after
onnxruntime's fusion.

    python benchmarks/qdq_separable_resize.py

Result (onnxruntime 1.32), uint8 and int8 activations alike: x's grid, mean
0.09 step, p99 1, in both executions (above the 0.05 mean the verification
accepts); s_x / 2 clips (up to 64 steps); int16 is exact up to ties (mean
0.005) but onnxruntime runs both per-axis Convs in float.  (With int8
activations one per-axis Conv stays float after fusion even on 8-bit grids.)
"""
from __future__ import annotations

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from convrewrite import optimize  # noqa: E402
from convrewrite.core.graph import GraphView  # noqa: E402
from passes import make_passes  # noqa: E402
from passes.resize.rewrite import ResizeToConvTranspose  # noqa: E402
from qdq_models import FLOAT_COMPUTE, fused_counts, quantized  # noqa: E402

RUNS = 400
GRIDS = ("x's grid", "s_x / 2", "int16, s_x / 16")


def separable(act: str, grid: str) -> tuple:
    """(the original x8 test block with the Resize's quantized output as a
    graph output, the same with the Resize as two per-axis ConvTransposes)."""
    model = quantized("resize_linear_x8", act)
    graph = GraphView(model)
    resize = next(n for n in model.graph.node if n.op_type == "Resize")
    p = ResizeToConvTranspose().match(resize, graph).params
    dq = graph.producer(resize.input[0])
    q = graph.consumers(resize.output[0])[0]
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    x_scale, x_zero = consts[dq.input[1]], consts[dq.input[2]]
    if grid == "x's grid":
        mid_scale, mid_zero = x_scale, x_zero
    elif grid == "s_x / 2":
        mid_scale, mid_zero = x_scale / 2, x_zero
    else:
        mid_scale, mid_zero = x_scale / 16, np.zeros((), np.int16)
    h, w = p.kernels
    inits = [numpy_helper.from_array(np.array([0, 0, h.edge[0], w.edge[0], 0, 0, h.edge[1], w.edge[1]], np.int64),
                                     "sep_pads"),
             numpy_helper.from_array(np.asarray(mid_scale, np.float32), "sep_mid_scale"),
             numpy_helper.from_array(np.asarray(mid_zero), "sep_mid_zero")]
    nodes = [helper.make_node("Pad", [resize.input[0], "sep_pads"], ["sep_padded"], mode="edge"),
             helper.make_node("QuantizeLinear", ["sep_padded", dq.input[1], dq.input[2]], ["sep_padded_q"]),
             helper.make_node("DequantizeLinear", ["sep_padded_q", dq.input[1], dq.input[2]], ["sep_padded_dq"])]
    value = "sep_padded_dq"
    for axis, k in enumerate((h, w)):
        taps = np.asarray(k.kernel) * 2 * k.factor          # multiples of 1/(2f): integers
        assert np.array_equal(taps, np.round(taps)) and np.abs(taps).max() <= 127
        shape = [p.channels, 1, len(taps), 1] if axis == 0 else [p.channels, 1, 1, len(taps)]
        inits += [numpy_helper.from_array(np.broadcast_to(taps.astype(np.int8).reshape(shape[2:]), shape).copy(),
                                          f"sep_w{axis}"),
                  numpy_helper.from_array(np.array(1 / (2 * k.factor), np.float32), f"sep_w{axis}_scale"),
                  numpy_helper.from_array(np.zeros((), np.int8), f"sep_w{axis}_zero")]
        strides = [k.factor, 1] if axis == 0 else [1, k.factor]
        pads = [k.pads[0], 0, k.pads[1], 0] if axis == 0 else [0, k.pads[0], 0, k.pads[1]]
        out = "sep_mid" if axis == 0 else resize.output[0]
        nodes += [helper.make_node("DequantizeLinear", [f"sep_w{axis}", f"sep_w{axis}_scale", f"sep_w{axis}_zero"], [f"sep_w{axis}_dq"]),
                  helper.make_node("ConvTranspose", [value, f"sep_w{axis}_dq"], [out], group=p.channels,
                                   kernel_shape=shape[2:], strides=strides, pads=pads)]
        if axis == 0:
            nodes += [helper.make_node("QuantizeLinear", ["sep_mid", "sep_mid_scale", "sep_mid_zero"], ["sep_mid_q"]),
                      helper.make_node("DequantizeLinear", ["sep_mid_q", "sep_mid_scale", "sep_mid_zero"], ["sep_mid_dq"])]
            value = "sep_mid_dq"
    split = onnx.ModelProto()
    split.CopyFrom(model)
    at = [n.name for n in split.graph.node].index(resize.name)
    del split.graph.node[at]
    for i, n in enumerate(nodes):
        split.graph.node.insert(at + i, n)
    split.graph.initializer.extend(inits)
    if grid.startswith("int16"):
        split.opset_import[0].version = 21     # 16-bit QuantizeLinear / DequantizeLinear
    x_dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]   # 1x1 Conv: the Resize's input
    y_shape = x_dims[:2] + [n * k.factor for n, k in zip(x_dims[2:], p.kernels)]
    y_type = TensorProto.INT8 if act == "int8" else TensorProto.UINT8
    for m in (model, split):
        m.graph.output.append(helper.make_tensor_value_info(q.output[0], y_type, y_shape))
    return model, split, q.output[0]


def outputs(model, name: str, xs: list, fused: bool) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if fused
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return np.stack([session.run([name], {"x": x})[0] for x in xs]).astype(np.int64)


def main() -> int:
    rng = np.random.default_rng(5)
    shape = [d.dim_value for d in quantized("resize_linear_x8").graph.input[0].type.tensor_type.shape.dim]
    xs = [rng.standard_normal(shape).astype(np.float32) for _ in range(RUNS)]
    print("| activations | intermediate | spec: steps mean / p99 / max | fused int8: steps mean / p99 / max "
          "| float Convs after fusion |")
    print("| --- | --- | --- | --- | --- |")
    for act in ("uint8", "int8"):
        for grid in GRIDS:
            original, split, name = separable(act, grid)
            lowered, _ = optimize(split, passes=make_passes(["convtranspose"]))
            floats = sum(fused_counts(lowered).get(op, 0) for op in FLOAT_COMPUTE)
            cells = []
            for fused in (False, True):
                d = np.abs(outputs(original, name, xs, fused) - outputs(lowered, name, xs, fused))
                cells.append(f"{d.mean():.3f} / {np.percentile(d, 99):.0f} / {d.max()}")
            print(f"| {act} | {grid} | {cells[0]} | {cells[1]} | {floats} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
