"""Data-movement ops whose signature changed across opsets, emitted in the
form the model's opset expects (exported models still use opset 6 .. 9):

    Slice    starts/ends/axes are attributes before opset 10, inputs from 10
    Pad      pads/value are attributes before opset 11, inputs from 11
    zeros    ConstantOfShape exists from opset 9 (a symbolic batch needs Shape)

Axes are absolute tensor axes; pads are (begin, end) pairs for `axes`.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Optional, Sequence

import numpy as np
from onnx import numpy_helper

from ..core.builder import Builder
from ..core.folding import FOLD_MAX_ELEMENTS


def slice_axes(b: Builder, x: str, axes: Sequence[int], starts: Sequence[int],
               ends: Sequence[int], what: str = "slice") -> str:
    """x[..., starts[i]:ends[i] on axes[i], ...]."""
    axes, starts, ends = list(axes), list(starts), list(ends)
    if b.graph.opset() < 10:
        return b.op("Slice", [x], what, axes=axes, starts=starts, ends=ends)
    return b.op("Slice", [x, b.ints(starts, f"{what}_starts"), b.ints(ends, f"{what}_ends"),
                          b.ints(axes, f"{what}_axes")], what)


def pad_axes(b: Builder, x: str, rank: int, axes: Sequence[int],
             pairs: Sequence[tuple[int, int]], what: str = "pad", mode: str = "constant") -> str:
    """Padding of a rank-`rank` tensor: pairs[i] = (begin, end) on axes[i];
    zeros ("constant") or the border value repeated ("edge")."""
    begin, end = [0] * rank, [0] * rank
    for axis, (lo, hi) in zip(axes, pairs):
        begin[axis], end[axis] = lo, hi
    if b.graph.opset() < 11:
        return b.op("Pad", [x], what, pads=begin + end, mode=mode, value=0.0 if mode == "constant" else None)
    return b.op("Pad", [x, b.ints(begin + end, f"{what}_pads")], what, mode=mode)


def add_all(b: Builder, terms: Sequence[str], what: str = "sum") -> str:
    """terms[0] + terms[1] + ...: a chain of Adds (n - 1 nodes); before opset 7,
    whose Add has the old broadcast attribute, one Sum."""
    if len(terms) == 1:
        return terms[0]
    if b.graph.opset() < 7:
        return b.op("Sum", list(terms), what)
    total = terms[0]
    for k, y in enumerate(terms[1:], 1):
        total = b.op("Add", [total, y], f"{what}{k}")
    return total


def add_all_nodes(terms: int, opset: int) -> int:
    """How many nodes `add_all` emits for `terms` terms (none for one)."""
    return 0 if terms == 1 else 1 if opset < 7 else terms - 1


# Zeros plus a bias need Add, which onnxruntime implements from opset 7 (and
# Tile takes its repeats as an input from opset 6).
ZEROS_MIN_OPSET = 7


def can_make_zeros(opset: int) -> bool:
    return opset >= ZEROS_MIN_OPSET


def zeros(b: Builder, like: str, shape: Sequence, dtype: np.dtype, what: str = "zeros") -> str:
    """A zero tensor of `shape` (ints; a non-int first entry is taken from
    `like`'s batch dimension at run time), costing no MACs:

        opset >= 9   ConstantOfShape
        static shape an initializer of zeros
        opset 8      Expand of a batch-1 zeros initializer
        opset 7      Tile of a batch-1 zeros initializer
    """
    opset = b.graph.opset()
    if not can_make_zeros(opset):
        raise ValueError(f"zeros need opset {ZEROS_MIN_OPSET}")
    static = all(isinstance(d, int) for d in shape)
    if opset < 9 and static:
        return b.initializer(np.zeros(list(shape), dtype), what)
    if opset < 9:
        one = b.initializer(np.zeros([1, *shape[1:]], dtype), f"{what}_one")
        batch = slice_axes(b, b.op("Shape", [like], f"{what}_input_shape"), [0], [0], [1], f"{what}_batch")
        if opset >= 8:
            dims = b.op("Concat", [batch, b.ints(shape[1:], f"{what}_dims")], f"{what}_shape", axis=0)
            return b.op("Expand", [one, dims], what)
        repeats = b.op("Concat", [batch, b.ints([1] * (len(shape) - 1), f"{what}_ones")], f"{what}_repeats", axis=0)
        return b.op("Tile", [one, repeats], what)
    value = numpy_helper.from_array(np.zeros(1, dtype))
    if static:
        return b.op("ConstantOfShape", [b.ints(shape, f"{what}_shape")], what, value=value)
    batch = slice_axes(b, b.op("Shape", [like], f"{what}_input_shape"), [0], [0], [1], f"{what}_batch")
    dims = b.op("Concat", [batch, b.ints(shape[1:], f"{what}_dims")], f"{what}_shape", axis=0)
    return b.op("ConstantOfShape", [dims], what, value=value)


# --- costs: what the emitters build, known before building ----------------------

@dataclass(frozen=True)
class Moved:
    """What emitted nodes cost, worked out before they are built: how many
    nodes, and the bytes their data-movement nodes (convrewrite.core.cost's
    DATA_MOVEMENT_OPS) read and write -- non-constant inputs plus outputs, as
    `convrewrite.core.cost.moved_bytes` measures them at batch 1.  `bytes`
    is None when some tensor has a symbolic size.  `streamed`: the bytes its
    GEMM-based nodes stream besides their weights (`convrewrite.core.cost.
    streamed_bytes`: a Conv's im2col matrix), counted by `gemm`.  `moves`:
    how many of the nodes are data movement (`movement`), each of which a
    quantized form follows with a QuantizeLinear -> DequantizeLinear pair
    (`requantized`)."""

    nodes: int = 0
    bytes: Optional[int] = 0
    streamed: Optional[int] = 0
    moves: int = 0

    def __add__(self, other: "Moved") -> "Moved":
        return Moved(self.nodes + other.nodes, _sum(self.bytes, other.bytes), _sum(self.streamed, other.streamed),
                     self.moves + other.moves)

    def times(self, k: int) -> "Moved":
        return Moved(self.nodes * k, None if self.bytes is None else self.bytes * k,
                     None if self.streamed is None else self.streamed * k, self.moves * k)


def _sum(a: Optional[int], b: Optional[int]) -> Optional[int]:
    return None if a is None or b is None else a + b


NOTHING = Moved()
INT64_BYTES = 8


def tensor_bytes(shape: Sequence, itemsize: int) -> Optional[int]:
    """Bytes of a tensor of `shape` (None if a dim is not an int)."""
    if not all(isinstance(d, int) for d in shape):
        return None
    return prod(shape) * itemsize


def movement(inputs: Sequence[Sequence], output: Sequence, itemsize: int) -> Moved:
    """One data-movement node reading the non-constant `inputs` (shapes)
    and writing `output`."""
    sizes = [tensor_bytes(s, itemsize) for s in [*inputs, output]]
    return Moved(1, None if any(s is None for s in sizes) else sum(sizes), moves=1)


def other_nodes(count: int) -> Moved:
    """Nodes that move no data and stream none (Add, ConstantOfShape, ...)."""
    return Moved(count, 0)


def gemm(streamed: Optional[int], count: int = 1) -> Moved:
    """`count` GEMM-based nodes (Conv, ConvTranspose, MatMul) streaming
    `streamed` bytes in all: for a Conv, input channels x kernel taps x
    output positions x item size (its im2col matrix, whatever its output
    channels and groups); for a ConvTranspose, output channels x kernel taps
    x input positions; for a MatMul, its right operand's elements x the
    batch of products, none for a constant one (convrewrite.core.cost.
    streamed_bytes)."""
    return Moved(count, 0, streamed)


def qdq_pairs(count: int) -> Moved:
    """`count` QuantizeLinear -> DequantizeLinear pairs (core/qdq.py insert_qdq).
    They convert, they do not move data: convrewrite.core.cost counts them as
    nodes, with no bytes moved or streamed (like an Add)."""
    return other_nodes(2 * count)


def requantized(moved: Moved, outputs: int = 1) -> Moved:
    """`moved` as core/qdq.py `requantize_movement` leaves it: every
    data-movement node followed by a QuantizeLinear -> DequantizeLinear pair,
    but the `outputs` that produce the replacement's own output values (kept
    as they are).  The bytes do not change."""
    return moved + qdq_pairs(moved.moves - outputs)


def zeros_cost(shape: Sequence, opset: int, itemsize: int) -> Moved:
    """What `zeros` emits for `shape` (first entry None: a symbolic batch).
    Measured at batch 1, Shape of the input is a constant, and so is every
    value computed from it: only the outputs of Slice ([1] int64), Concat
    ([rank] int64) and Expand / Tile (the zeros) count."""
    static = all(isinstance(d, int) for d in shape)
    if opset < 9 and static:
        return NOTHING                      # an initializer
    if static:
        return other_nodes(1)               # ConstantOfShape
    shape_ints = movement([], [1], INT64_BYTES) + movement([], [len(shape)], INT64_BYTES)
    if opset >= 9:                          # Shape, Slice, Concat, ConstantOfShape
        return other_nodes(2) + shape_ints
    return other_nodes(1) + shape_ints + movement([], [1, *shape[1:]], itemsize)   # ..., Expand / Tile


def folds(elements: int) -> bool:
    """Whether a constant chain of this many elements is folded (so counts
    as constant where a data-movement node reads it)."""
    return elements <= FOLD_MAX_ELEMENTS
