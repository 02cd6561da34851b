"""Operators that act on each spatial position of a tensor alone.

A layout change that only moves positions around -- space_to_batch, a pixel
shuffle -- commutes with such an op f, as long as f sees the same values per
channel:

    f(move(v)) = move(f(v))

Passes use this to keep a tensor in another layout across a run of ops (the
dilated chains, the pixel-shuffle motion).  The sets below are the ops whose
outputs at a position depend only on the inputs at that position (and on
per-channel parameters): their other inputs (BatchNormalization's statistics,
Clip's bounds, PRelu's slope) must be constants or values from outside the
run, which each pass checks.  A BatchNormalization is such an op only with
its inference formula (batchnorm_not_inference): in training mode it
normalizes with statistics over the batch and every position.
"""
from __future__ import annotations

from typing import Optional, Sequence

import onnx

from .folding import attributes

POINTWISE_UNARY = frozenset({
    "Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Elu", "Selu", "Celu",
    "Softplus", "Softsign", "Identity", "Neg", "Abs", "Exp", "Erf", "Gelu", "Mish", "ThresholdedRelu",
    "Clip", "PRelu", "BatchNormalization", "Sqrt", "Reciprocal",
})
POINTWISE_BINARY = frozenset({"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum"})


def broadcasts_per_channel(shape: Sequence[int], rank: int) -> bool:
    """Whether a constant of `shape` broadcast against a tensor [N, C, n...]
    of `rank` varies at most along the channel axis: right-aligned, every
    axis but axis 1 has size 1 (a scalar, [C, 1, 1], [1, C, 1, 1])."""
    if len(shape) > rank:
        return False
    aligned = (1,) * (rank - len(shape)) + tuple(shape)
    return aligned[0] == 1 and all(d == 1 for d in aligned[2:])


def is_pointwise_conv(kernel: Sequence[int], attrs: dict) -> bool:
    """An undilated-in-effect 1x1 Conv: kernel all 1, stride 1, no padding
    (dilation does not matter for a 1x1 kernel)."""
    return (all(k == 1 for k in kernel) and all(s == 1 for s in attrs.get("strides", [1]))
            and not any(attrs.get("pads", [0])))


BATCHNORM_FIRST_OPSET = 7   # before it, is_test (default 0: training) and consumed_inputs


def batchnorm_not_inference(bn: onnx.NodeProto, graph) -> Optional[str]:
    """Why `bn` may not compute the inference formula, or None."""
    opset, a = graph.opset(), attributes(bn)
    extra = [o for o in bn.output[1:] if o]
    if opset < BATCHNORM_FIRST_OPSET:
        return f"opset {opset} (is_test, consumed_inputs) is not folded"
    if int(a.get("training_mode", 0)) != 0:
        return "training_mode=1 normalizes with the batch's own statistics"
    if opset < 14 and extra:
        return f"opset {opset}: its outputs {extra} make it run in training mode"
    if any(graph.consumers(o) or o in graph.graph_outputs for o in extra):
        return f"its outputs {extra} are read"
    if int(a.get("spatial", 1)) != 1:
        return "spatial=0 normalizes each position on its own"
    return None
