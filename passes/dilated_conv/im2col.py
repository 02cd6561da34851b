"""The im2col form of a dilated Conv: the taps as input channels of one Conv.

Before:
    x [N, C, n...] --Conv(W [O, C, k...], B, dilations d, strides s, pads)--> y [N, O, out...]

After:
    x --Slice?--Pad?--> x_pad --+--Slice[t_1*d : t_1*d + (out-1)*s + 1]--+--Concat(axis 1)--> [N, T*C, ...]
                                +--Slice[...] (one per tap t, step 1)-----+
      --Conv(W' [O, T*C, 1 | k...], B, strides s, undilated, unpadded)--> y

T is the number of taps of the dilated axes (the product of their kernel
sizes); an undilated axis keeps its kernel in the new Conv and is not
sliced.  Per dilated axis, with the window x_pad[p] = x[p - o]:

    y[i] = B + sum_c sum_t W[c, t] x_pad[c, i*s + t*d]
         = B + sum_(t, c) W'[t*C + c] X[t*C + c, i*s]       X[t*C + c, j] = x_pad[c, t*d + j]

so X is the tap-major Concat of T step-1 Slices of the window, and the Conv
reads it with kernel 1 and stride s: every output is ONE accumulation over
the same products as the dilated Conv, in a different order.  The weight
is the original's rearranged, W'[o, t*C + c] = W[o, c, t], a permutation of
its values (`tap_major`): in a QDQ model the same int8 integers with the
same per-output-channel scales and the same int32 bias, so the fused int8
result is the original's (passes/dilated_conv/quantized.py).  The taps form
sums per-tap Convs instead: in a QDQ model every tap would be requantized,
rounding T times.

It moves T times the input's bytes (T copies of the window) and needs group
1 (a grouped Conv would need each group's channels contiguous, which the
tap-major Concat is not).  Opt-in for float models: with a target it is the
last resort after batch, depth, slices and taps; for QDQ models it is the
quantized form tried after batch (no tensor above x's rank, batch N, Slice
step 1, no Conv padding: what tflite and the Ethos-N78 need).
"""
from __future__ import annotations

import itertools
import numpy as np

from convrewrite.core.builder import Builder
from convrewrite.core.cost import grouped
from convrewrite.core.forms import Cost
from convrewrite.emit.opset_ops import Moved, movement, slice_axes
from convrewrite.geometry import extent

from .build import _kept_weight
from .chain import Chain
from .forms import CHAIN_BATCH_ONLY, NO_DILATION, Dilated, _DilatedForm, _itemsize, _window_moved
from .phases import window

GROUPED = ("group {group}: the taps-as-channels Conv would need each group's channels contiguous, and the "
           "tap-major Concat interleaves them (a grouped Conv of T*C/G channels per group would not be depthwise "
           "either)")


def dilated_axes(p: Dilated) -> list[int]:
    """The spatial axes (0-based) that keep a dilation: the ones sliced per tap."""
    return [k for k, a in enumerate(p.axes) if a.dilation > 1]


def taps(p: Dilated) -> list[tuple[int, ...]]:
    """The taps of the dilated axes in Concat order (row-major, as tap_major)."""
    return list(itertools.product(*[range(p.axes[k].kernel) for k in dilated_axes(p)]))


def window_lengths(p: Dilated) -> list[int]:
    """Per axis the padded window every output reads: (out-1)*s + extent."""
    return [(a.out - 1) * a.stride + extent(a.kernel, a.dilation) for a in p.axes]


def tap_major(w: np.ndarray, dil: list[int]) -> np.ndarray:
    """W [O, C, k...] -> W' [O, T*C, k'...] with W'[o, t*C + c] = W[o, c, t]
    (t the row-major index over the dilated axes `dil`, which get size 1;
    the other axes keep their kernel).  A permutation of W's values: exact
    for int8 integers as for floats."""
    spatial = list(range(2, w.ndim))
    rest = [a for a in spatial if a - 2 not in dil]
    moved = w.transpose([0] + [k + 2 for k in dil] + [1] + rest)
    shape = [w.shape[0], -1] + [1 if k in dil else w.shape[k + 2] for k in range(w.ndim - 2)]
    return np.ascontiguousarray(moved.reshape(shape))


def conv_attributes(p: Dilated) -> dict:
    return dict(kernel_shape=[1 if a.dilation > 1 else a.kernel for a in p.axes],
                strides=[a.stride for a in p.axes])


def emit_columns(b: Builder, x: str, p: Dilated) -> str:
    """x -> X [N, T*C, ...]: the window, one step-1 Slice per tap, Concat."""
    dil = dilated_axes(p)
    t = window(b, x, p.axes, window_lengths(p))
    columns = []
    for tap in taps(p):
        starts = [tk * p.axes[k].dilation for tk, k in zip(tap, dil)]
        ends = [s0 + (p.axes[k].out - 1) * p.axes[k].stride + 1 for s0, k in zip(starts, dil)]
        columns.append(slice_axes(b, t, [k + 2 for k in dil], starts, ends, "tap_" + "_".join(map(str, tap))))
    return b.op("Concat", columns, "taps", axis=1)


def emit_conv(b: Builder, columns: str, weight: str, p: Dilated) -> str:
    return b.op("Conv", [columns, weight] + ([p.bias] if p.bias else []), "conv", **conv_attributes(p))


def columns_moved(p: Dilated, itemsize: int) -> Moved:
    """What emit_columns moves: the window (Slice where x is cropped, Pad
    where it is padded), T Slices of it, the Concat."""
    moved, shape = _window_moved(p.axes, window_lengths(p), p.channels, itemsize)
    dil = dilated_axes(p)
    column = list(shape)
    for k in dil:
        column[k + 2] = (p.axes[k].out - 1) * p.axes[k].stride + 1
    n = len(taps(p))
    moved += movement([shape], column, itemsize).times(n)
    return moved + movement([column] * n, [1, n * p.channels, *column[2:]], itemsize)


def im2col_cost(p: Dilated, itemsize: int, extra_nodes: int = 0) -> Cost:
    """MACs: the kept taps' products, O*T*C*prod(k undilated)*prod(out) --
    the dilated Conv's own; grouped when T*C input channels are few."""
    moved = columns_moved(p, itemsize)
    macs = p.exact_macs()
    return Cost(macs=macs, moved_bytes=moved.bytes, nodes=moved.nodes + 1 + extra_nodes, max_rank=p.rank,
                grouped_macs=macs if grouped(len(taps(p)) * p.channels) else 0)


class Im2col(_DilatedForm):
    """Taps as input channels of one undilated Conv (module docstring)."""

    name = "im2col"
    opt_in = True   # T copies of the input: only when asked for or a target needs it

    def applies(self, match, graph):
        p = match.params
        if isinstance(p, Chain):
            return CHAIN_BATCH_ONLY
        if not p.dilated:
            return NO_DILATION
        if p.group != 1:
            return GROUPED.format(group=p.group)
        return None if graph.is_constant(p.weight) else "the im2col form needs a constant weight to rearrange"

    def cost(self, match, variant, graph) -> Cost:
        return im2col_cost(match.params, _itemsize(graph, match))

    def emit(self, b, graph, x, p):
        w = tap_major(_kept_weight(graph.constant(p.weight), p.taps), dilated_axes(p))
        b.note(f"im2col: {len(taps(p))} taps as {len(taps(p)) * p.channels} input channels of one Conv")
        return emit_conv(b, emit_columns(b, x, p), b.initializer(w, "weight"), p)
