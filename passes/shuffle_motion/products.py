"""Phase products: an operand the moved ops read beside the shuffle's run,
computed directly in phase order.

A separable linear map of the last two axes -- two MatMuls with constant
matrices, the resize pass's matmul form of a linear Resize:

    v [N, C, Ho, Wo] = L · X · R,   L [Ho, Hi], X [N, C, Hi, Wi], R [Wi, Wo]

Its phase (p, q) image for block b is every b-th row from p and column from q:

    v[:, :, b*i + p, b*j + q] = (L[p::b] · X · R[:, q::b])[:, :, i, j]

so space_to_depth(v) in DCR order (channel (p*b + q)*C + c) costs the same
MACs as v itself: the phase rows of L and columns of R, stacked offline
(Lp [b, 1, 1, Ho/b, Hi], Rp [b, 1, Wi, Wo/b]), multiply X viewed as
[N, 1, 1, C, Hi, Wi] (at batch 1 [1, 1, C, Hi, Wi]); MatMul's broadcasting
puts the phases where DCR wants them, [N, b(p), b(q), C, Ho/b, Wo/b], and a
Reshape (a view) makes it [N, b*b*C, Ho/b, Wo/b] -- or [N*b*b, C, Ho/b, Wo/b],
a batch of phase images.  That is what lets a shuffle move through
`DepthToSpace(u) + v`
(`all_three`: a ConvTranspose's pixel shuffle plus a bilinear Resize):

    DepthToSpace(u) + v = DepthToSpace(u + space_to_depth(v))

with no copy of v.  The MatMuls keep their order (L first or R first), so
each output element sums the same products (onnxruntime may add them in
another order for the smaller matrices: equal to rounding, not always to the
bit).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from convrewrite.core import qdq
from convrewrite.core.builder import Builder
from convrewrite.emit.opset_ops import Moved, movement


@dataclass(frozen=True)
class PhaseProduct:
    """v = L · X · R: the value v, X and its shape [N, C, Hi, Wi] (N may be
    symbolic), the constant matrices L [Ho, Hi] and R [Wi, Wo], whether the
    MatMul with L comes first, and v's size (Ho, Wo)."""

    value: str
    x: str
    x_shape: tuple
    left: str
    right: str
    left_first: bool
    out_size: tuple


def phase_product(value: str, block: int, graph) -> Optional[tuple[PhaseProduct, tuple]]:
    """The PhaseProduct that computes `value` and its two MatMul nodes
    (first, second), or None: both MatMuls plain ONNX ops outside
    quantized regions, L and R constant 2-D matrices whose output sizes
    `block` divides, X 4-D with static channels and sizes, and the
    MatMuls' outputs read by nothing else (they are replaced)."""
    second = graph.producer(value)
    if not _plain_matmul(second, graph) or not _read_once(value, graph):
        return None
    for left_first in (True, False):
        data, matrix = (second.input[0], second.input[1]) if left_first else (second.input[1], second.input[0])
        first = graph.producer(data)
        if not _plain_matmul(first, graph) or not _read_once(data, graph) or not _is_matrix(matrix, graph):
            continue
        x, inner = (first.input[1], first.input[0]) if left_first else (first.input[0], first.input[1])
        left, right = (inner, matrix) if left_first else (matrix, inner)
        if _is_matrix(inner, graph) and _fits(x, left, right, block, graph):
            size = (graph.shape(left)[0], graph.shape(right)[1])
            product = PhaseProduct(value, x, tuple(graph.shape(x)), left, right, left_first, size)
            return product, (first, second)
    return None


def _plain_matmul(node, graph) -> bool:
    return (node is not None and node.op_type == "MatMul" and node.domain in ("", "ai.onnx")
            and qdq.region(node, graph) is None)


def _read_once(value: str, graph) -> bool:
    return (len(graph.consumers(value)) == 1 and value not in graph.graph_outputs
            and value not in graph.outer_references)


def _is_matrix(name: str, graph) -> bool:
    return graph.constant(name) is not None and len(graph.shape(name) or ()) == 2


def _fits(x: str, left: str, right: str, block: int, graph) -> bool:
    """X [N, C, Hi, Wi] (C, Hi, Wi static), L [Ho, Hi], R [Wi, Wo], b | Ho and b | Wo."""
    s, (ho, hi), (wi, wo) = graph.shape(x), graph.shape(left), graph.shape(right)
    return (s is not None and len(s) == 4 and all(isinstance(d, int) for d in s[1:])
            and (s[2], s[3]) == (hi, wi) and ho % block == 0 and wo % block == 0)


def phase_matrices(left: np.ndarray, right: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Lp [b, 1, 1, Ho/b, Hi]: L's rows p, p+b, ... for each phase p;
    Rp [b, 1, Wi, Wo/b]: R's columns q, q+b, ... for each phase q."""
    lp = np.stack([left[p::block] for p in range(block)])
    rp = np.stack([right[:, q::block] for q in range(block)])
    return np.ascontiguousarray(lp[:, None, None]), np.ascontiguousarray(rp[:, None])


def view_shape(product: PhaseProduct) -> list:
    """X viewed as [N, 1, 1, C, Hi, Wi] (0: N as it is), so the MatMuls
    broadcast to [N, b, b, C, h, w]; at batch 1 [1, 1, C, Hi, Wi], one axis
    fewer (rank 5: TFLite's BATCH_MATMUL takes no more), to [b, b, C, h, w]."""
    n, c, hi, wi = product.x_shape
    return [1, 1, c, hi, wi] if n == 1 else [0, 1, 1, c, hi, wi]


def phase_layout(product: PhaseProduct, block: int, batch: bool) -> tuple:
    """The Reshape of the phase images [N, b, b, C, h, w] to DCR channels
    [N, b*b*C, h, w] or, with `batch`, a phase batch [N*b*b, C, h, w]:
    -1 for N*b*b, 0 for N as it is (it may be symbolic), 1 at batch 1
    (where the images are [b, b, C, h, w])."""
    n, c, (ho, wo) = product.x_shape[0], product.x_shape[1], product.out_size
    if batch:
        return (-1, c, ho // block, wo // block)
    return (1 if n == 1 else 0, block * block * c, ho // block, wo // block)


def build_product(b: Builder, product: PhaseProduct, block: int, layout: tuple, graph, matrices: dict) -> str:
    """The phase images of v, Reshaped to `layout` (phase_layout).
    `matrices` keeps the phase matrices built so far by (L, R): products
    of the same matrices share them."""
    key = (product.left, product.right)
    if key not in matrices:
        lp, rp = phase_matrices(graph.constant(product.left), graph.constant(product.right), block)
        matrices[key] = b.initializer(lp, "phase_rows"), b.initializer(rp, "phase_columns")
    lp, rp = matrices[key]
    x = b.op("Reshape", [product.x, b.ints(view_shape(product), "product_view_shape")], "product_view")
    if product.left_first:
        y = b.op("MatMul", [b.op("MatMul", [lp, x], "phase_rows_matmul"), rp], "phase_columns_matmul")
    else:
        y = b.op("MatMul", [lp, b.op("MatMul", [x, rp], "phase_columns_matmul")], "phase_rows_matmul")
    return b.op("Reshape", [y, b.ints(list(layout), "product_phases_shape")], "product_phases")


def product_movement(product: PhaseProduct, block: int, itemsize: int) -> Moved:
    """The two Reshapes build_product adds, per batch item as every Cost
    counts (views on onnxruntime; the report counts every data-movement
    op's bytes alike)."""
    x = list(product.x_shape[1:])
    ho, wo = product.out_size
    phases = [block, block, x[0], ho // block, wo // block]
    return movement([x], x, itemsize) + movement([phases], phases, itemsize)


def product_rank(product: PhaseProduct) -> int:
    return len(view_shape(product))
