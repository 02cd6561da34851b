"""Multiply-accumulate counts of the nodes that compute, from their shapes.

Counts are per batch item (a symbolic or static batch counts as 1), so a
rewrite's cost can be compared with the node it replaces:

    Conv           Cout * prod(out spatial) * (Cin / group) * prod(kernel)
    ConvTranspose  Cin  * prod(in spatial)  * (Cout / group) * prod(kernel)
                   (every input pixel is scattered through the whole kernel)
    MatMul / Gemm  prod(output) * K

Zero taps inside a kernel count like any other tap: that is wasted work the
MAC figure must show.
"""
from __future__ import annotations

from math import prod
from typing import Callable, Optional

import onnx

from .graph import GraphView, attributes

Shape = Optional[tuple]


def _static(s: Shape) -> bool:
    """Static apart from the batch axis."""
    return s is not None and all(isinstance(d, int) for d in s[1:])


def conv_macs(x: Shape, w: Shape, y: Shape, group: int) -> Optional[int]:
    if not (_static(w) and _static(y)):
        return None
    cout, cin_per_group = w[0], w[1]
    return cout * prod(y[2:]) * cin_per_group * prod(w[2:])


def conv_transpose_macs(x: Shape, w: Shape, y: Shape, group: int) -> Optional[int]:
    if not (_static(x) and _static(w)):
        return None
    cin, cout_per_group = w[0], w[1]
    return cin * prod(x[2:]) * cout_per_group * prod(w[2:])


def matmul_macs(a: Shape, b: Shape, y: Shape) -> Optional[int]:
    if not (a and y and isinstance(a[-1], int) and _static(y)):
        return None
    per_item = y[1:] if len(y) > 2 else y  # rank <= 2: no batch axis
    if not all(isinstance(d, int) for d in per_item):
        return None
    return prod(per_item) * a[-1]


def node_macs(node: onnx.NodeProto, graph: GraphView) -> Optional[int]:
    """MACs of one node per batch item, or None when it does not compute
    (data movement) or its shapes are unknown."""
    shapes = [graph.shape(i) if i else None for i in node.input]
    y = graph.shape(node.output[0]) if node.output else None
    if node.op_type in ("Conv", "ConvTranspose") and len(shapes) >= 2:
        group = int(attributes(node).get("group", 1))
        fn: Callable = conv_macs if node.op_type == "Conv" else conv_transpose_macs
        return fn(shapes[0], shapes[1], y, group)
    if node.op_type in ("MatMul", "Gemm") and len(shapes) >= 2:
        a = shapes[0]
        if node.op_type == "Gemm" and a is not None and attributes(node).get("transA", 0):
            a = tuple(reversed(a))
        return matmul_macs(a, shapes[1], y)
    return None


def total_macs(nodes, graph: GraphView) -> Optional[int]:
    """Sum over the computing nodes; None if any computing node is unknown."""
    total = 0
    for node in nodes:
        if node.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
            m = node_macs(node, graph)
            if m is None:
                return None
            total += m
    return total
