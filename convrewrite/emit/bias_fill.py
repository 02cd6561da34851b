"""Outputs of a convolution that no tap computes: the bias alone, broadcast.

Where the padding decides that no product reaches an output -- a
ConvTranspose output phase no tap reaches, the outputs its padding crops
everything from, a dilated Conv whose taps along some axis all read padding
-- the output is B[c] at every position (zero without a bias):

    fill[n, c, i...] = B[c mod Cout]          c < Cout * repeat

built as zeros of the output's shape (`opset_ops.zeros`: an initializer,
ConstantOfShape, or a batch-1 Expand / Tile where the batch is symbolic) plus
B as a column [Cout * repeat, 1, ...] broadcast by one Add.  No MACs; the
work is the output's size, whatever the kernel, dilation or pads.  Needs
opset ZEROS_MIN_OPSET (`can_make_zeros`).  `bias_fill_cost` is what
`bias_fill` emits, known before building (the forms' Cost).
"""
from __future__ import annotations

from math import prod
from typing import Optional, Sequence

import numpy as np
from onnx import helper

from ..core.builder import Builder
from .opset_ops import Moved, folds, movement, other_nodes, zeros, zeros_cost


def bias_fill(b: Builder, like: str, cout: int, bias_name: str, bias: Optional[np.ndarray], sizes: Sequence[int],
              repeat: int = 1, what: str = "no_tap") -> str:
    """[N, Cout * repeat, sizes...] holding the bias repeated `repeat` times
    along the channels (zeros where `bias_name` is ""), N being `like`'s
    batch (read from `like` at run time where it is symbolic).  `bias`: the
    bias's constant values, or None where it is computed at run time (then
    reshaped to a column, which takes `repeat` 1)."""
    dtype = helper.tensor_dtype_to_np_dtype(b.graph.dtype(like))
    batch = b.graph.shape(like)[0]
    z = zeros(b, like, [batch if isinstance(batch, int) else None, cout * repeat, *sizes], dtype, f"{what}_zeros")
    if not bias_name:
        return z
    column = [cout * repeat] + [1] * len(sizes)
    if bias is not None:
        col = b.initializer(np.tile(bias, repeat).reshape(column), f"{what}_bias")
    elif repeat == 1:
        col = b.op("Reshape", [bias_name, b.ints(column, f"{what}_bias_shape")], f"{what}_bias")
    else:
        raise ValueError("a bias computed at run time is reshaped, not repeated: repeat must be 1")
    return b.op("Add", [z, col], what)


def bias_fill_cost(batch, cout: int, sizes: Sequence[int], repeat: int, bias: bool, bias_is_constant: bool,
                   opset: int, itemsize: int, bias_itemsize: int) -> Moved:
    """What `bias_fill` emits (batch: an int, or anything else for a
    symbolic one): the zeros, the run-time bias's Reshape (a data-movement
    node reading [Cout], writing the column), the Add (no bytes moved)."""
    channels = cout * repeat
    moved = zeros_cost([batch if isinstance(batch, int) else None, channels, *sizes], opset, itemsize)
    if bias and not bias_is_constant:
        moved += movement([[cout]], [channels] + [1] * len(sizes), bias_itemsize)
    if bias:
        moved += other_nodes(1)
    return moved


def bias_fill_folds(cout: int, sizes: Sequence[int], repeat: int, bias: bool, bias_is_constant: bool) -> bool:
    """Whether the cost measure folds the fill to a constant (computed from
    constants only, and small enough), so a data-movement node reading it
    does not count its bytes."""
    channels = cout * repeat
    return (not bias or bias_is_constant) and folds(channels * prod(sizes) + (channels if bias else 0))
