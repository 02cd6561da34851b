"""Dilated Conv in a QDQ group, lowered without leaving the integers.

Before:
    DQ(x) -> Conv(DQ(w int8), DQ(b int32), dilations d) -> Q(y) -> ...

After (batch form; subsample and plain alike, without the phases):
    DQ(x) -> Pad -> Q/DQ -> space_to_batch (each op followed by Q -> DQ with x's grid)
          -> Conv(DQ(w int8), DQ(b int32))            (the same weight and bias, undilated)
          -> Q -> DQ (y's grid) -> batch_to_space (each op followed by Q -> DQ with y's grid)
          -> Slice -> Q(y) -> ...                     (the original QuantizeLinear)

The undilated Conv reads the very DequantizeLinear outputs the dilated one
read, so no weight changes at all; where taps that only read padding were
dropped, the int8 weight is sliced (the same integers, the same scales: the
slice keeps every output channel) behind a DequantizeLinear of its own.
A weight read as it is may be any QDQ weight (opset 21's blocked or int4
ones too: the same DequantizeLinear); one to slice must be 8-bit integers
quantized per tensor or per output channel, else the node is left alone
(`quantized`, the reason says which).  The integers are the folded constant
behind the DequantizeLinear: an int8 initializer, or a float weight behind
QuantizeLinear (a fake-quantized export), whose slice becomes an int8
initializer.  The
padding is float 0 between DQ(x) and a Q of x's grid: 0 = DQ(zero point) is
on every grid, so the padded integers are the zero point, as a quantized
Conv pads.  Data movement keeps values on their grid (core/qdq.py), so the
integers are the original's except where float summation order breaks a
rounding tie, and onnxruntime fuses the new group into QLinearConv.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

from onnx import helper

from convrewrite.core import qdq
from convrewrite.emit.pixel_shuffle import square_blocks

from .chain import Chain
from .build import _batch, _kept_weight, _plain
from .forms import Batch, BiasAlone, Plain, Subsample
from .im2col import CHANNELS, Im2col, dilated_axes, emit_columns, emit_conv, emit_pixels, pixels_note, tap_major, taps


def grids(node, graph) -> "tuple | str":
    """(x's grid, y's grid) of the Conv's QDQ group, or why it has none (core/qdq.py)."""
    return qdq.group_grids(node, graph)


def _slice_problem(graph, p) -> Optional[str]:
    """Why the weight cannot be sliced to its live taps in the integers (None:
    it can, or no tap was dropped).  Slicing keeps the integers and the
    scales of an 8-bit weight quantized per tensor or per output channel; a
    blocked weight's scales (opset 21) have the kernel's spatial axes too,
    and sub-byte (int4) weights are not sliced."""
    if p.taps is None:
        return None
    return _integer_problem(graph, p, "taps were dropped and", "slice", "sliced")


def _integer_problem(graph, p, why: str, verb: str, done: str) -> Optional[str]:
    """Why the weight's integers cannot be moved (sliced, rearranged) keeping
    their scales: they must be DequantizeLinear of 8-bit integer constants,
    per tensor or per output channel (axis 0)."""
    dq = graph.producer(p.weight)
    if dq is None or dq.op_type != qdq.DEQUANTIZE or not graph.is_constant(dq.input[0]):
        return (f"{why} the weight is not DequantizeLinear of integer constants to {verb} "
                "(an initializer, or QuantizeLinear of one)")
    params = qdq.qparams(dq, graph)
    if isinstance(params, str):
        return f"{why} the weight cannot be {done}: {params}"
    if params.dtype.kind not in "iu" or params.dtype.itemsize != 1:
        return f"{why} the weight is {params.dtype.name}: only 8-bit integer weights are {done}"
    if params.axis is not None and params.axis % len(graph.shape(dq.input[0])) != 0:
        return f"{why} the weight is quantized along axis {params.axis}, not per output channel"
    return None


def _int8_weight(b, graph, p, rearrange=None) -> str:
    """The Conv's weight: the DequantizeLinear output it reads, or, where
    taps were dropped or `rearrange` (integers -> integers, a permutation
    that keeps axis 0) moves them, a DequantizeLinear of the new integer
    weight with the same scales and zero points (_integer_problem says when
    that cannot be)."""
    if p.taps is None and rearrange is None:
        return p.weight
    dq = graph.producer(p.weight)
    wq = _kept_weight(graph.constant(dq.input[0]), p.taps)
    if rearrange is not None:
        wq = rearrange(wq)
    axis = {a.name: helper.get_attribute_value(a) for a in dq.attribute}
    return b.op(qdq.DEQUANTIZE, [b.initializer(wq, "weight_q"), *dq.input[1:]], "weight_dequantize", **axis)


class _Quantized:
    """Mixin: the float form's nodes, then Q/DQ placed around them."""

    keeps_quantized = True
    quantized_only = True
    selectable = False   # chosen by the float form's name (dilated_mode batch puts it first too)

    def applies(self, match, graph) -> Optional[str]:
        if isinstance(match.params, Chain):
            return "a chain of dilated Convs is not lowered quantized"
        if isinstance(match.params, BiasAlone):
            # DQ(B) broadcast in float, then the Q after it: its rounding need not be the
            # fused QLinearConv's, which requantizes the int32 bias with sx*sw/sy in one step
            return "the output is the bias alone, which no quantized form builds"
        g = grids(match.node, graph)
        if isinstance(g, str):
            return g
        problem = self.weight_problem(graph, match.params)
        return problem if problem is not None else super().applies(match, graph)

    def weight_problem(self, graph, p) -> Optional[str]:
        return _slice_problem(graph, p)

    def cost(self, match, variant, graph):
        """The float form's figures, and the nodes the integers add: a Q -> DQ
        pair after the Conv and after every data-movement node, but the one
        whose output is the replacement's (the last data-movement node, or the
        Conv where nothing moves after it) -- as many pairs as data-movement
        nodes --, and a new weight DequantizeLinear where the integers move.
        Q and DQ move no bytes (core/cost.py: they compute)."""
        float_form = super().cost(match, variant, graph)
        pairs = self.moved(match, variant, graph).moves
        return replace(float_form, nodes=float_form.nodes + 2 * pairs + self.new_weight(match.params, variant))

    def new_weight(self, p, variant) -> bool:
        """Whether the integers move (taps dropped: a sliced weight), behind a DequantizeLinear of their own."""
        return p.taps is not None

    def int8_weight(self, b, graph, p, variant) -> str:
        return _int8_weight(b, graph, p)

    def build(self, match, variant, graph, b) -> dict:
        p = match.params
        x_grid, y_grid = grids(match.node, graph)
        x = match.node.input[0]
        weight = self.int8_weight(b, graph, p, variant)
        y = self.emit_with(b, x, weight, p, variant)
        conv = next(n for n in b.nodes if n.op_type == "Conv")
        grid = {x: x_grid}
        if conv.output[0] != y:
            grid[qdq.insert_qdq(b, conv.output[0], y_grid, conv.output[0].rsplit("/", 1)[-1])] = y_grid
        qdq.requantize_movement(b, grid, keep=(y,))
        b.note(self.weight_note(p, variant, graph) + ", Q/DQ around every op")
        return {match.node.output[0]: y}

    def weight_note(self, p, variant, graph) -> str:
        return "quantized: the int8 weight unchanged" + (" (sliced to its live taps)" if p.taps is not None else "")


class QuantizedPlain(_Quantized, Plain):
    def emit_with(self, b, x, weight, p, variant):
        return _plain(b, x, weight, p)


class QuantizedSubsample(_Quantized, Subsample):
    def emit_with(self, b, x, weight, p, variant):
        return _batch(b, x, weight, p)


class QuantizedBatch(_Quantized, Batch):
    """Below opset 11 the phase split and merge of 2-D equal blocks are
    Reshape/Transpose/Reshape, not SpaceToDepth / DepthToSpace: onnxruntime
    fuses the DepthToSpace between Q/DQ into one of the integers, which has
    no kernel there (core/qdq.py `integer_depth_to_space`)."""

    def depth_ops(self, graph) -> bool:
        return qdq.integer_depth_to_space(graph.opset())

    def rank_note(self, match, variant, graph):
        square = square_blocks(match.params.blocks)
        return qdq.reshaped_shuffle_note(graph.opset()) if square and not self.depth_ops(graph) else None

    def emit_with(self, b, x, weight, p, variant):
        return _batch(b, x, weight, p, self.depth_ops(b.graph))


class QuantizedIm2col(_Quantized, Im2col):
    """The taps of one QDQ Conv in one accumulation (im2col.py): the window's
    Pad, the tap Slices, the Concat (and DepthToSpace) each between Q/DQ of
    x's grid (a Concat of inputs on one grid keeps it, and data movement
    keeps every integer), then one Conv.  channels (group 1): its int8
    weight is the original's integers in tap-major order, W'[o, t*C + c] =
    W[o, c, t], read through a DequantizeLinear with the original's scales
    and zero points (per output channel: axis 0 does not move).  pixels (any
    group, depthwise included; 2-D, equal kernels): the original Conv reads
    the original weight and bias DequantizeLinear outputs as they are.
    Either way the same integer products in one accumulation with the
    original int32 bias: the fused QLinearConv computes the original's int8
    result.  Not opt-in: for a QDQ node it is the quantized form after
    batch, taken where batch does not apply (unaligned phases) or a target
    rejects it (tflite, the Ethos-N78: batch P*N; subsample: Slice
    step d)."""

    opt_in = False

    def applies(self, match, graph) -> Optional[str]:
        g = grids(match.node, graph)
        problem = None if isinstance(g, str) else qdq.fused_concat_problem(graph, g[0])
        return problem if problem is not None else super().applies(match, graph)

    def new_weight(self, p, variant) -> bool:
        """channels: the integers in tap-major order, always; pixels: where taps were dropped."""
        return variant == CHANNELS or p.taps is not None

    def weight_problem(self, graph, p):
        return None   # per variant: channels_problem, pixels_problem

    def channels_problem(self, p, graph):
        return super().channels_problem(p, graph) or _integer_problem(
            graph, p, "the channels spelling rearranges the weight's integers, and", "rearrange", "rearranged")

    def pixels_problem(self, p, graph):
        return super().pixels_problem(p, graph) or _slice_problem(graph, p)

    def int8_weight(self, b, graph, p, variant):
        if variant != CHANNELS:
            return _int8_weight(b, graph, p)
        return _int8_weight(b, graph, p, lambda wq: tap_major(wq, dilated_axes(p)))

    def depth_to_space(self, graph) -> bool:
        return qdq.integer_depth_to_space(graph.opset())

    def rank_note(self, match, variant, graph):
        pixels = variant != CHANNELS and match.params.axes[0].kernel > 1
        return qdq.reshaped_shuffle_note(graph.opset()) if pixels and not self.depth_to_space(graph) else None

    def weight_note(self, p, variant, graph):
        if variant != CHANNELS:
            return (pixels_note(p, variant, self.depth_to_space(graph)) + "; quantized: the int8 weight and int32 bias unchanged"
                    + (" (sliced to its live taps)" if p.taps is not None else ""))
        return (f"quantized: the int8 weight's integers in tap-major order ({len(taps(p))} taps as input channels), "
                "the same scales and int32 bias")

    def emit_with(self, b, x, weight, p, variant):
        if variant != CHANNELS:
            return emit_pixels(b, x, weight, p, variant, self.depth_to_space(b.graph))
        return emit_conv(b, emit_columns(b, x, p), weight, p)


FORMS = (QuantizedPlain(), QuantizedSubsample(), QuantizedBatch(), QuantizedIm2col())
