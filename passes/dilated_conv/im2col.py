"""The im2col form of a dilated Conv: the taps as input channels of one Conv,
or (variant "pixels") as a k x k grid of pixels under the original Conv.

Before:
    x [N, C, n...] --Conv(W [O, C/G, k...], B, dilations d, strides s, pads)--> y [N, O, out...]

After (default variant, "channels"; group 1):
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

It moves T times the input's bytes (T copies of the window).  The channels
variant needs group 1: a grouped Conv would need each group's channels
contiguous, which the tap-major Concat is not.

Variant "pixels" (2-D, both kernel sizes k; any group, depthwise included):
every tap of both axes sliced (T = k*k), the same tap-major Concat, then
DepthToSpace(blocksize k, DCR).  Per the spec, DCR reads channel
(a*k + b)*C + c into pixel (i*k + a, j*k + b) of channel c:

    X[(a*k + b)*C + c, i, j] = x_pad[c, i*s_h + a*d_h, j*s_w + b*d_w]      (Slices of step s)
    Z[c, i*k + a, j*k + b]   = X[(a*k + b)*C + c, i, j]                     (DepthToSpace)

so Z holds, for each output (i, j), its k x k window as a k x k block of
pixels, and the ORIGINAL Conv -- weight W untouched, its group, kernel k,
stride k, no dilation, no padding -- computes

    y[o, i, j] = B[o] + sum_(c in group(o)) sum_(a, b) W[o, c, a, b] Z[c, i*k + a, j*k + b]

one accumulation of the same products again, with the original weight and
bias (in a QDQ model the original DequantizeLinear outputs).  A stride s > 1
is taken by the Slices (step s, X is [T*C, out_h, out_w]) or, variant
"pixels, stride in the Conv" for targets with step-1 Slices only (tflite),
by the Conv: step-1 Slices give Z[c, i*k + a, ...] = x_pad[c, i + a*d, ...],
and stride k*s reads rows (i*s)*k + a = x_pad[i*s + a*d] -- the same
outputs from a Z s times larger per axis (floor((k*((out-1)*s + 1) - k) /
(k*s)) + 1 = out of them).  1-D and 3-D Convs and unequal kernel sizes have
no pixels variant: DepthToSpace is 4-D with one blocksize for both axes
(padding the kernel to a square would add taps, MACs and bytes).

Opt-in for float models: with a target it is the last resort after batch,
depth, slices and taps; for QDQ models it is the quantized form tried after
batch (no tensor above x's rank, batch N, Slice step 1, no Conv padding:
what tflite and the Ethos-N78 need).
"""
from __future__ import annotations

import itertools
from typing import Optional, Sequence

import numpy as np

from convrewrite.core.builder import Builder
from convrewrite.core.cost import grouped
from convrewrite.core.forms import DEFAULT, Cost, Variant
from convrewrite.emit.opset_ops import Moved, movement
from convrewrite.emit.pixel_shuffle import pixel_shuffle, pixel_shuffle_cost, shuffle_rank
from convrewrite.emit.space_to_batch import strided_slice, strided_slice_cost
from convrewrite.geometry import extent

from .build import _conv, _kept_weight, _sliced_weight
from .forms import Dilated, _DilatedForm, _itemsize, _window_moved, single_dilated_conv, streamed
from .phases import window

CHANNELS = DEFAULT                                   # the taps as input channels, tap-major weight (group 1)
PIXELS = Variant("pixels")                           # the taps as k x k pixels (DepthToSpace), the original Conv
PIXELS_CONV_STRIDE = Variant("pixels, stride in the Conv")   # step-1 Slices, Conv stride k*s

GROUPED = ("group {group}: the taps-as-channels Conv would need each group's channels contiguous, and the "
           "tap-major Concat interleaves them (a grouped Conv of T*C/G channels per group would not be depthwise "
           "either)")
NOT_2D = "pixels: {r}-D, and DepthToSpace is 4-D (2-D Convs only)"
UNEQUAL = "pixels: kernel {kernel}, and DepthToSpace has one blocksize for both axes (equal kernel sizes only)"


def dilated_axes(p: Dilated) -> list[int]:
    """The spatial axes (0-based) that keep a dilation: the ones sliced per tap."""
    return [k for k, a in enumerate(p.axes) if a.dilation > 1]


def tapped_axes(p: Dilated, variant: Variant) -> list[int]:
    """The axes sliced per tap: the dilated ones, or both (pixels)."""
    return dilated_axes(p) if variant == CHANNELS else list(range(len(p.axes)))


def taps(p: Dilated, axes: Optional[Sequence[int]] = None) -> list[tuple[int, ...]]:
    """The taps of `axes` (default: the dilated ones) in Concat order (row-major, as tap_major)."""
    axes = dilated_axes(p) if axes is None else axes
    return list(itertools.product(*[range(p.axes[k].kernel) for k in axes]))


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


def slice_steps(p: Dilated, variant: Variant) -> list[int]:
    """Per spatial axis the tap Slices' step: the stride in the pixels
    variant (X holds the outputs' windows only), else 1 (the stride is the Conv's)."""
    return [a.stride if variant == PIXELS else 1 for a in p.axes]


def conv_strides(p: Dilated, variant: Variant) -> list[int]:
    """channels: s; pixels: k (one k x k block per output); pixels with the
    stride in the Conv: k*s (module docstring)."""
    if variant == CHANNELS:
        return [a.stride for a in p.axes]
    return [a.kernel * (1 if variant == PIXELS else a.stride) for a in p.axes]


def conv_attributes(p: Dilated) -> dict:
    return dict(kernel_shape=[1 if a.dilation > 1 else a.kernel for a in p.axes],
                strides=[a.stride for a in p.axes])


def emit_columns(b: Builder, x: str, p: Dilated, variant: Variant = CHANNELS) -> str:
    """x -> X [N, T*C, ...]: the window, one Slice per tap of the tapped axes, Concat."""
    axes, steps = tapped_axes(p, variant), slice_steps(p, variant)
    t = window(b, x, p.axes, window_lengths(p))
    columns = []
    for tap in taps(p, axes):
        starts = [tk * p.axes[k].dilation for tk, k in zip(tap, axes)]
        ends = [s0 + (p.axes[k].out - 1) * p.axes[k].stride + 1 for s0, k in zip(starts, axes)]
        columns.append(strided_slice(b, t, [k + 2 for k in axes], starts, ends, [steps[k] for k in axes],
                                     "tap_" + "_".join(map(str, tap))))
    return b.op("Concat", columns, "taps", axis=1)


def emit_conv(b: Builder, columns: str, weight: str, p: Dilated) -> str:
    return b.op("Conv", [columns, weight] + ([p.bias] if p.bias else []), "conv", **conv_attributes(p))


def emit_pixels(b: Builder, x: str, weight: str, p: Dilated, variant: Variant, depth_to_space: bool = True) -> str:
    """x -> X -> DepthToSpace(k, DCR) -> the original Conv (kernel k, stride
    k or k*s, its group, undilated, unpadded) reading `weight` [O, C/G, k, k].
    Not `depth_to_space`: the same pixel shuffle as Reshape/Transpose/Reshape
    (rank 6; a quantized Conv below opset 11: quantized.py)."""
    k = p.axes[0].kernel
    z = pixel_shuffle(b, emit_columns(b, x, p, variant), p.channels, [k, k], column_shape(p, variant)[2:], "DCR",
                      allow_depth_to_space=depth_to_space)
    return _conv(b, z, weight, p.bias, p, conv_strides(p, variant))


def column_shape(p: Dilated, variant: Variant) -> list[int]:
    """The shape of one tap's Slice (batch 1)."""
    shape = [1, p.channels, *window_lengths(p)]
    for k, step in zip(tapped_axes(p, variant), slice_steps(p, variant)):
        shape[k + 2] = len(range(0, (p.axes[k].out - 1) * p.axes[k].stride + 1, step))
    return shape


def columns_moved(p: Dilated, itemsize: int, opset: int, variant: Variant = CHANNELS) -> Moved:
    """What emit_columns moves: the window (Slice where x is cropped, Pad
    where it is padded), T Slices of it, the Concat."""
    moved, shape = _window_moved(p.axes, window_lengths(p), p.channels, itemsize)
    axes, steps = tapped_axes(p, variant), slice_steps(p, variant)
    column = column_shape(p, variant)
    for tap in taps(p, axes):
        starts = [tk * p.axes[k].dilation for tk, k in zip(tap, axes)]
        ends = [s0 + (p.axes[k].out - 1) * p.axes[k].stride + 1 for s0, k in zip(starts, axes)]
        moved += strided_slice_cost(shape, [k + 2 for k in axes], starts, ends, [steps[k] for k in axes],
                                    itemsize, opset)[0]
    n = len(taps(p, axes))
    return moved + movement([column] * n, [1, n * p.channels, *column[2:]], itemsize)


def im2col_moved(p: Dilated, itemsize: int, opset: int, variant: Variant = CHANNELS,
                 depth_to_space: bool = True) -> Moved:
    """The data movement before the one Conv: the columns (and for pixels the
    pixel shuffle: DepthToSpace, or not `depth_to_space` Reshape/Transpose/Reshape)."""
    moved = columns_moved(p, itemsize, opset, variant)
    if variant != CHANNELS:
        k = p.axes[0].kernel
        moved += pixel_shuffle_cost(p.channels, [k, k], column_shape(p, variant)[2:], itemsize, "DCR", opset,
                                    depth_to_space)
    return moved


def im2col_cost(p: Dilated, itemsize: int, opset: int, variant: Variant = CHANNELS,
                depth_to_space: bool = True) -> Cost:
    """MACs: the kept taps' products, O*(C/G)*prod(k)*prod(out) -- the
    dilated Conv's own; grouped when the Conv's input channels per group
    are few (T*C for channels, the original C/G for pixels).  The largest
    rank: the Conv's, or pixels spelled Reshape/Transpose, the shuffle's 6."""
    moved = im2col_moved(p, itemsize, opset, variant, depth_to_space)
    macs = p.exact_macs()
    few = grouped(len(taps(p)) * p.channels) if variant == CHANNELS else p.grouped
    rank = p.rank if variant == CHANNELS else max(p.rank, shuffle_rank([p.axes[0].kernel] * 2, "DCR", opset,
                                                                       depth_to_space))
    return Cost(macs=macs, moved_bytes=moved.bytes, nodes=moved.nodes + 1, max_rank=rank,
                grouped_macs=macs if few else 0, streamed_bytes=streamed(p, macs, itemsize))


class Im2col(_DilatedForm):
    """Taps as input channels of one undilated Conv, or as pixels of the
    original Conv (module docstring)."""

    name = "im2col"
    opt_in = True   # T copies of the input: only when asked for or a target needs it

    def applies(self, match, graph):
        p = match.params
        unfit = single_dilated_conv(p)
        if unfit:
            return unfit
        problems = self.problems(p, graph)
        if any(why is None for why in problems.values()):
            return None
        return "; ".join(problems.values())

    def problems(self, p: Dilated, graph) -> dict:
        """Why each variant cannot express the Conv (None: it can)."""
        return {CHANNELS: self.channels_problem(p, graph), PIXELS: self.pixels_problem(p, graph)}

    def channels_problem(self, p: Dilated, graph) -> Optional[str]:
        if p.group != 1:
            return GROUPED.format(group=p.group)
        return None if graph.is_constant(p.weight) else "the channels spelling needs a constant weight to rearrange"

    def pixels_problem(self, p: Dilated, graph) -> Optional[str]:
        if len(p.axes) != 2:
            return NOT_2D.format(r=len(p.axes))
        kernel = [a.kernel for a in p.axes]
        return None if kernel[0] == kernel[1] else UNEQUAL.format(kernel=kernel)

    def variants(self, match, graph):
        """channels (group 1) first: it moves no DepthToSpace; then pixels,
        and where a stride is above 1, pixels with the stride in the Conv
        (step-1 Slices: tflite)."""
        p = match.params
        problems = self.problems(p, graph)
        out = [v for v in (CHANNELS, PIXELS) if problems[v] is None]
        if problems[PIXELS] is None and any(a.stride > 1 for a in p.axes):
            out.append(PIXELS_CONV_STRIDE)
        return tuple(out)

    def depth_to_space(self, graph) -> bool:
        """Whether pixels' shuffle is a DepthToSpace (the quantized form says
        no below opset 11: core/qdq.py `integer_depth_to_space`)."""
        return True

    def moved(self, match, variant, graph) -> Moved:
        return im2col_moved(match.params, _itemsize(graph, match), graph.opset(), variant, self.depth_to_space(graph))

    def cost(self, match, variant, graph) -> Cost:
        return im2col_cost(match.params, _itemsize(graph, match), graph.opset(), variant, self.depth_to_space(graph))

    def build(self, match, variant, graph, b: Builder) -> dict:
        p, x = match.params, match.node.input[0]
        if variant == CHANNELS:
            w = tap_major(_kept_weight(graph.constant(p.weight), p.taps), dilated_axes(p))
            b.note(f"im2col: {len(taps(p))} taps as {len(taps(p)) * p.channels} input channels of one Conv")
            y = emit_conv(b, emit_columns(b, x, p), b.initializer(w, "weight"), p)
        else:
            b.note(pixels_note(p, variant, self.depth_to_space(graph)))
            y = emit_pixels(b, x, _sliced_weight(b, graph, p), p, variant, self.depth_to_space(graph))
        return {match.node.output[0]: y}


def pixels_note(p: Dilated, variant: Variant, depth_to_space: bool = True) -> str:
    k = p.axes[0].kernel
    shuffle = f"DepthToSpace {k}, DCR" if depth_to_space else "a DCR Reshape/Transpose pixel shuffle"
    return (f"im2col, pixels: {k * k} taps as {k}x{k} pixels ({shuffle}) under the original Conv "
            f"(group {p.group}, stride {conv_strides(p, variant)})")
