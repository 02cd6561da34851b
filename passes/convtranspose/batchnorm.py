"""An inference BatchNormalization after a ConvTranspose, folded into its kernels.

Before:
    x --ConvTranspose(W [Cin, Cout/g, k...], B)--> y --BatchNormalization(gamma, beta, mean, var, eps)--> z

After (then lowered by any form of the pass, the BatchNormalization gone):
    x --ConvTranspose(W', B')--> z

BatchNormalization in inference mode is an affine map per channel o:

    z[o] = (y[o] - mean[o]) / sqrt(var[o] + eps) * gamma[o] + beta[o] = y[o] * s[o] + t[o]
    s = gamma / sqrt(var + eps),  t = beta - mean * s

and output channel o of a ConvTranspose is linear in the taps that write it, so

    W'[i, j, ...] = W[i, j, ...] * s[o],  o = (i // (Cin/g)) * (Cout/g) + j
    B' = B * s + t                        (B = 0 when absent)

(W is [Cin, Cout/g, k...]: input channel i of group i // (Cin/g) writes
output channels (i // (Cin/g)) * (Cout/g) + j.)  Folded in float64, cast to
W's type.  Where the ConvTranspose is lowered, its output is one pass over
the tensor fewer; and a DepthToSpace straight before a BatchNormalization is
what onnx2tf 2.6.9 mis-converts when C == H == W (docs/tflite.md,
reproducer 7), so the fold also keeps the pixel shuffle away from it.

Only the inference semantics are folded: training_mode 0 (opset 14+), no
output but Y declared (opsets 7-13: extra outputs mean training mode),
spatial 1 (opset 7, 8); earlier opsets (is_test, consumed_inputs) are left.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import onnx

from convrewrite.core.graph import GraphView, attributes
from convrewrite.core.pointwise import batchnorm_not_inference

NORM = "BatchNormalization"


@dataclass(frozen=True)
class Norm:
    """A BatchNormalization folded into the ConvTranspose before it: its
    name (for the report), output and constant inputs."""

    label: str
    output: str                    # Y: the output the lowering replaces
    scale: str                     # gamma
    bias: str                      # beta
    mean: str
    var: str
    epsilon: float


def read_norm(node: onnx.NodeProto, graph: GraphView) -> Union[Norm, str, None]:
    """The BatchNormalization that alone reads the ConvTranspose `node`'s
    output, as a Norm when it can be folded; why not (a str) when it cannot;
    None when there is none."""
    y = node.output[0]
    readers = graph.consumers(y)
    if len(readers) != 1 or readers[0].op_type != NORM or readers[0].domain not in ("", "ai.onnx"):
        return None
    bn, where = readers[0], f"BatchNormalization '{graph.label(readers[0])}' not folded"
    if y in graph.graph_outputs:
        return f"{where}: the ConvTranspose's output is a graph output"
    if y in graph.outer_references:
        return f"{where}: a subgraph (If/Loop/Scan body) reads the ConvTranspose's output"
    problem = batchnorm_not_inference(bn, graph) or _parameter_problem(node, bn, graph)
    if problem:
        return f"{where}: {problem}"
    a = attributes(bn)
    norm = Norm(graph.label(bn), bn.output[0], *bn.input[1:5], float(a.get("epsilon", 1e-5)))
    problem = _value_problem(node, norm, graph)
    return f"{where}: {problem}" if problem else norm


def _parameter_problem(node: onnx.NodeProto, bn: onnx.NodeProto, graph: GraphView) -> Optional[str]:
    """Why the ConvTranspose's weight and bias or `bn`'s parameters cannot
    be folded offline, or None."""
    w = graph.shape(node.input[1])
    cout = w[1] * int(attributes(node).get("group", 1)) if w else None
    bias = node.input[2] if len(node.input) > 2 else ""
    if not graph.is_constant(node.input[1]) or (bias and not graph.is_constant(bias)):
        return "the ConvTranspose's weight or bias is computed at run time"
    if len(bn.input) < 5 or not all(bn.input[1:5]):
        return "it lacks one of scale, B, mean, var"
    for name in bn.input[1:5]:
        if not graph.is_constant(name):
            return f"its input '{name}' is computed at run time"
        if graph.shape(name) != (cout,):
            return f"its input '{name}' has shape {graph.shape(name)}, not [{cout}]"
    return None


def _affine(norm: Norm, graph: GraphView) -> tuple[np.ndarray, np.ndarray]:
    """(s, t) of the module docstring, in float64."""
    scale, beta, mean, var = (np.asarray(graph.constant(n), np.float64)
                              for n in (norm.scale, norm.bias, norm.mean, norm.var))
    with np.errstate(all="ignore"):   # var + eps <= 0 or Inf/NaN parameters: judged by _value_problem
        s = scale / np.sqrt(var + np.float64(np.float32(norm.epsilon)))
        return s, beta - mean * s


def _value_problem(node: onnx.NodeProto, norm: Norm, graph: GraphView) -> Optional[str]:
    """Why the fold would not be exact for these values, or None.  The fold
    is exact where s and t are finite and W' and B' stay within W's type.
    Otherwise the Inf and NaN land elsewhere: var + eps = 0 makes s infinite,
    and the BatchNormalization's (y - mean) * s, Inf where y != mean, becomes
    a sum of infinite taps, NaN wherever their signs differ; a W * s beyond
    float16's range is Inf where y * s need not be."""
    s, t = _affine(norm, graph)
    if not (np.isfinite(s).all() and np.isfinite(t).all()):
        return ("scale / sqrt(var + epsilon) or B - mean * that is not finite (var + epsilon <= 0, or an Inf or "
                "NaN parameter), where the fold would put Inf and NaN elsewhere than the BatchNormalization does")
    w = np.asarray(graph.constant(node.input[1]))
    bias = node.input[2] if len(node.input) > 2 else ""
    b = np.asarray(graph.constant(bias), np.float64) if bias else np.zeros(1)
    limit = float(np.finfo(w.dtype).max) if w.dtype.kind == "f" else 0.0
    with np.errstate(all="ignore"):
        w_max = float(np.abs(w.astype(np.float64)).max(initial=0.0)) * float(np.abs(s).max(initial=0.0))
        b_max = float(np.abs(b * s + t).max(initial=0.0))
    if not (w_max <= limit and b_max <= limit):   # NaN compares false: refused too
        return (f"the folded kernels or bias would not be finite in {w.dtype} (W * s up to {w_max:.3g}, B * s + t "
                f"up to {b_max:.3g}, largest {limit:.3g}), where the BatchNormalization's output may be")
    return None


def fold(weight: np.ndarray, bias: Optional[np.ndarray], group: int, norm: Norm, graph: GraphView):
    """(W', B') of the module docstring, in W's type."""
    s, t = _affine(norm, graph)
    cin, cout_g = weight.shape[:2]
    per_tap = s.reshape(group, 1, cout_g, *[1] * (weight.ndim - 2))     # [g, 1, Cout/g, 1...]
    w = (weight.astype(np.float64).reshape(group, cin // group, *weight.shape[1:]) * per_tap).reshape(weight.shape)
    b = (0.0 if bias is None else np.asarray(bias, np.float64)) * s + t
    return w.astype(weight.dtype), b.astype(weight.dtype)
