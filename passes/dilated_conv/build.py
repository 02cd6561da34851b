"""Builders of the dilated-conv forms: the padded window, space-to-batch or
strided phase images, the undilated Conv(s), and back; chains in phase form
(forms.py says which form builds what; phases.py has the arithmetic)."""
from __future__ import annotations

import itertools
from math import prod
from typing import Optional

import numpy as np
import onnx

from convrewrite.core.builder import Builder
from convrewrite.core.graph import GraphView
from convrewrite.emit.opset_ops import add_all, slice_axes
from convrewrite.emit.pixel_shuffle import (pixel_shuffle, pixel_unshuffle)
from convrewrite.emit.space_to_batch import (axes_to_space, batch_to_space, crop_to, interleave, space_to_axes,
                                             space_to_batch, strided_slice, subsample)
from convrewrite.geometry import extent

from .chain import (Chain, Grid, copy_node, data_inputs, from_phase, is_side, phase_mean, phase_window, side_to_phase,
                    to_phase, zero_garbage)
from .phases import conv_padded, phase_images, tap_images, undilated_window, window, window_pads
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .forms import Dilated


def _kept_weight(w: np.ndarray, taps) -> np.ndarray:
    if taps is None:
        return w
    return np.ascontiguousarray(w[(slice(None), slice(None)) + tuple(slice(lo, hi + 1) for lo, hi in taps)])


def _sliced_weight(b: Builder, graph: GraphView, p: Dilated) -> str:
    """The Conv's weight, or a sliced copy when taps were dropped."""
    if p.taps is None:
        return p.weight
    return b.initializer(_kept_weight(graph.constant(p.weight), p.taps), "weight")


def _conv(b: Builder, x: str, weight: str, bias: str, p: Dilated, strides, what="conv",
          group: Optional[int] = None, pads=None) -> str:
    """Conv with dilation 1 (the attribute is omitted, and pads when all 0)."""
    inputs = [x, weight] + ([bias] if bias else [])
    return b.op("Conv", inputs, what, kernel_shape=[a.kernel for a in p.axes], strides=list(strides),
                group=group or p.group, pads=pads if pads and any(pads) else None)


def _plain(b, x, weight, p: Dilated) -> str:
    """No dilation left: crop the input where the offset is negative or the
    surplus is not absorbed by the stride, Conv with the remaining padding."""
    pads = [window_pads(a, (a.out - 1) * a.stride + extent(a.kernel, a.dilation), a.stride - 1)
            for a in p.axes]
    crop = [k for k, q in enumerate(pads) if q[0] or q[1]]
    if crop:
        x = slice_axes(b, x, [k + 2 for k in crop], [pads[k][0] for k in crop],
                       [p.axes[k].size - pads[k][1] for k in crop], "crop")
    conv_pads_ = [q[2] for q in pads] + [q[3] for q in pads]
    return _conv(b, x, weight, p.bias, p, [a.stride for a in p.axes], pads=conv_pads_)


class PhaseInput:
    """The block window with the zeros the Conv's pads supply left out
    (phases.conv_padded): per axis the shortened axis, the phase image size
    m' and the Conv's pads (c, e)."""

    def __init__(self, p: Dilated):
        split = [conv_padded(a) for a in p.axes]
        self.axes = [s[0] for s in split]
        self.sizes = [s[1] for s in split]
        self.lengths = [m * a.dilation for m, a in zip(self.sizes, p.axes)]
        self.pads = [s[2] for s in split] + [s[3] for s in split]


def _phase_input(b, x, p: Dilated, w: PhaseInput) -> str:
    """The padded window, subsampled by g: [N, C, m'_k*P_k ...]."""
    t = window(b, x, w.axes, w.lengths)
    return subsample(b, t, w.lengths, [a.common for a in p.axes])


def _blocks(p: Dilated):
    return (p.blocks, [a.phase_size for a in p.axes], [a.per_phase for a in p.axes])


def _batch_core(b, x, weight, p: Dilated, depth_ops: bool = True) -> str:
    """x -> the Conv's output in phase form [P*N, O, q...]."""
    return _batch_conv(b, _batch_input(b, x, p, depth_ops=depth_ops), weight, p)


def _batch_input(b, x, p: Dilated, batch_major: bool = True, depth_ops: bool = True) -> str:
    """x -> the Conv's phase images [P*N, C, m'...]; batch-major (2-D equal
    blocks, no block Transpose) unless a chain needs phase-major order;
    not `depth_ops`: Reshape/Transpose in place of SpaceToDepth (space_to_batch)."""
    w = p.phase_input
    return space_to_batch(b, _phase_input(b, x, p, w), p.channels, p.blocks, w.sizes, batch_major, depth_ops)


def _batch_conv(b, t, weight, p: Dilated) -> str:
    """The phase images -> the Conv's output in phase form [P*N, O, q...]."""
    return _conv(b, t, weight, p.bias, p, [a.inner_stride for a in p.axes], pads=p.phase_input.pads)


def input_in_phase_form(p: Dilated, grid: Grid) -> bool:
    """The Conv's phase images are its input x in the grid's phase form
    (chain.to_phase): x has the grid's size, and the window only pads the
    end to q*P (the Conv's pads supply the rest), with no [::g] subsample."""
    w = p.phase_input
    return all(a.size == n and a.common == 1 and m == q and window_pads(wa, m * a.dilation) == (0, 0, 0, q * k - n)
               for a, wa, m, q, k, n in zip(p.axes, w.axes, w.sizes, grid.per_phase, grid.blocks, grid.sizes))


def _batch(b, x, weight, p: Dilated, depth_ops: bool = True) -> str:
    """The batch form (and subsample's, one phase); not `depth_ops`: no
    SpaceToDepth / DepthToSpace (a quantized Conv below opset 11: quantized.py)."""
    blocks, m, q = _blocks(p)
    t = batch_to_space(b, _batch_core(b, x, weight, p, depth_ops), p.out_channels, blocks, q, batch_major=True,
                       depth_ops=depth_ops)
    return crop_to(b, t, [a.per_phase * a.phases for a in p.axes], [a.out for a in p.axes])


def _reshape(b, graph, x, p: Dilated) -> str:
    """The phase split as a trailing axis: the window (subsampled by g) is
    [N, C, m'*P] = [N, C, m', P] by a Reshape, so phase image b is column b,
    and one Conv with kernel (k, 1) -- its own pads (c, e) on the m' axis,
    none on the phase axis -- convolves every column at once; [N, O, q, P]
    is the output in order y[a*P + b] after the inverse Reshape."""
    blocks, m, q = _blocks(p)
    w_in = p.phase_input
    t = space_to_axes(b, _phase_input(b, x, p, w_in), p.channels, blocks, w_in.sizes)
    w = _kept_weight(graph.constant(p.weight), p.taps)
    weight = b.initializer(w.reshape(w.shape + (1,)), "weight_phase_axis")
    (a,) = p.axes
    c, e = w_in.pads
    t = b.op("Conv", [t, weight] + ([p.bias] if p.bias else []), "conv", kernel_shape=[a.kernel, 1],
             strides=[a.inner_stride, 1], group=p.group, pads=[c, 0, e, 0] if c or e else None)
    t = axes_to_space(b, t, p.out_channels, blocks, q)
    return crop_to(b, t, [a.per_phase * a.phases], [a.out])


def _depth(b, graph, x, p: Dilated) -> str:
    blocks, m, q = _blocks(p)
    n = prod(blocks)
    w_in = p.phase_input
    t = pixel_unshuffle(b, _phase_input(b, x, p, w_in), p.channels, blocks, w_in.sizes)
    w = _kept_weight(graph.constant(p.weight), p.taps)
    tiled_w = b.initializer(np.tile(w, (n,) + (1,) * (w.ndim - 1)), "weight_tiled")
    tiled_b = ""
    if p.bias:
        bias = graph.constant(p.bias)
        tiled_b = (b.initializer(np.tile(bias, n), "bias_tiled") if bias is not None
                   else b.op("Tile", [p.bias, b.ints([n], "bias_repeats")], "bias_tiled"))
    # one group per (phase, original group): channel flat(phase)*C + c (DCR)
    t = _conv(b, t, tiled_w, tiled_b, p, [a.inner_stride for a in p.axes], group=n * p.group, pads=w_in.pads)
    t = pixel_shuffle(b, t, p.out_channels, blocks, q)
    return crop_to(b, t, [a.per_phase * a.phases for a in p.axes], [a.out for a in p.axes])


def _slices(b, x, weight, p: Dilated) -> str:
    blocks, m, q = _blocks(p)
    t = window(b, x, p.axes, [a.slice_window for a in p.axes])
    parts = {}
    for phase, image in phase_images(b, t, p.axes).items():
        tag = "conv_" + "_".join(map(str, phase))
        parts[phase] = _conv(b, image, weight, p.bias, p, [a.inner_stride for a in p.axes], tag)
    t = interleave(b, parts, p.out_channels, blocks, q)
    return crop_to(b, t, [a.per_phase * a.phases for a in p.axes], [a.out for a in p.axes])


def _taps(b, graph, x, p: Dilated) -> str:
    """One undilated Conv per tap t of the dilated axes (kernel size 1 there)
    on x shifted by t*d and strided by s, summed:

        y = B + sum_t Conv(x_pad[t*d :: s], W[..., t, ...])

    x_pad is never built: each tap slices x itself and its Conv's pads add
    the zeros (phases.tap_images); the bias rides on the first Conv, whose
    padded outputs are then B + 0, as they must be."""
    w = _kept_weight(graph.constant(p.weight), p.taps)
    dil = [k for k, a in enumerate(p.axes) if a.dilation > 1]
    x = _taps_crop(b, x, p)
    kernel = [1 if a.dilation > 1 else a.kernel for a in p.axes]
    strides = [1 if a.dilation > 1 else a.stride for a in p.axes]
    terms = []
    for image in tap_images(p.axes):
        tag = "tap_" + "_".join(map(str, image.tap))
        v = (strided_slice(b, x, [k + 2 for k in image.axes], image.starts, image.stops, image.steps, tag)
             if image.axes else x)
        terms.append(_tap_conv(b, v, w, image.tap, dil, p, kernel, strides, tag, bias=not terms,
                               pads=list(image.pads) if any(image.pads) else None))
    return add_all(b, terms, "sum_taps")


def _taps_window(b, graph, x, p: Dilated) -> str:
    """The taps form over one padded copy of x: the window x_pad, then per
    tap its strided Slice x_pad[t*d :: s] and an unpadded Conv, summed."""
    w = _kept_weight(graph.constant(p.weight), p.taps)
    dil = [k for k, a in enumerate(p.axes) if a.dilation > 1]
    lengths = [(a.out - 1) * a.stride + extent(a.kernel, a.dilation) for a in p.axes]
    t = window(b, x, p.axes, lengths)
    kernel = [1 if a.dilation > 1 else a.kernel for a in p.axes]
    strides = [1 if a.dilation > 1 else a.stride for a in p.axes]
    terms = []
    for tap in itertools.product(*[range(p.axes[k].kernel) for k in dil]):
        tag = "tap_" + "_".join(map(str, tap))
        starts = [tk * p.axes[k].dilation for tk, k in zip(tap, dil)]
        ends = [s0 + (p.axes[k].out - 1) * p.axes[k].stride + 1 for s0, k in zip(starts, dil)]
        image = strided_slice(b, t, [k + 2 for k in dil], starts, ends, [p.axes[k].stride for k in dil], tag)
        terms.append(_tap_conv(b, image, w, tap, dil, p, kernel, strides, tag, bias=not terms))
    return add_all(b, terms, "sum_taps")


def _tap_conv(b, image, w, tap, dil, p: Dilated, kernel, strides, tag, bias: bool, pads=None) -> str:
    """One tap's Conv: the weight at that tap (kernel 1 on the dilated axes);
    the bias on the first tap only."""
    index = [slice(None)] * w.ndim
    for tk, k in zip(tap, dil):
        index[k + 2] = slice(tk, tk + 1)
    wt = b.initializer(np.ascontiguousarray(w[tuple(index)]), f"weight_{tag}")
    return b.op("Conv", [image, wt] + ([p.bias] if p.bias and bias else []), f"conv_{tag}", kernel_shape=kernel,
                strides=strides, group=p.group, pads=pads)


def _taps_crop(b, x, p: Dilated) -> str:
    """x cropped on the undilated axes where the Conv never reads it."""
    crop = [(k, undilated_window(a)) for k, a in enumerate(p.axes) if a.dilation == 1]
    crop = [(k, q) for k, q in crop if q[0] or q[1]]
    if not crop:
        return x
    return slice_axes(b, x, [k + 2 for k, _ in crop], [q[0] for _, q in crop],
                      [p.axes[k].size - q[1] for k, q in crop], "crop")


def _chain(b: Builder, graph: GraphView, c: Chain) -> dict:
    """Every region value in phase form; the exits back through batch_to_space."""
    nodes, grid = c.region.nodes, c.grid
    images = _batch_input(b, nodes[0].input[0], c.start, c.grid.unit_batch)
    phase = {nodes[0].output[0]: _batch_conv(b, images, _sliced_weight(b, graph, c.start), c.start)}
    if c.region.shared:   # the first Conv's phase images are its input's phase form (input_in_phase_form)
        phase[c.region.shared] = images
    convs, cache, masked, pools, pooled = dict(c.region.convs), {}, {}, set(c.region.pools), {}
    dtype = onnx.helper.tensor_dtype_to_np_dtype(graph.dtype(nodes[0].input[0]))

    def value(name: str) -> str:   # a region value, or an outside or side one converted once
        if name not in phase and name not in cache:
            if is_side(graph, name, grid):
                cache[name] = side_to_phase(b, pooled.get(name, name), grid)
            else:
                cache[name] = to_phase(b, name, graph.shape(name)[1], grid)
        return phase.get(name) or cache[name]

    for k, node in enumerate(nodes[1:], 1):
        if k in pools:
            pooled[node.output[0]] = phase_mean(b, phase[node.input[0]], graph.shape(node.input[0])[1], grid)
            continue
        if k in convs:
            p = convs[k]
            if node.input[0] not in masked:
                masked[node.input[0]] = zero_garbage(b, phase[node.input[0]], p.channels, grid, dtype)
            v, pads = phase_window(b, masked[node.input[0]], grid, [a.offset for a in p.axes],
                                   [a.kernel for a in p.axes])
            phase[node.output[0]] = _conv(b, v, _sliced_weight(b, graph, p), p.bias, p, [1] * len(p.axes),
                                          pads=pads)
            continue
        data = data_inputs(node)
        inputs = [value(i) if i in data and not graph.is_constant(i) else i for i in node.input]
        phase[node.output[0]] = copy_node(b, node, inputs)
    return {e: pooled[e] if e in pooled else from_phase(b, phase[e], graph.shape(e)[1], grid)
            for e in c.region.exits}
