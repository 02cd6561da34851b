"""The lowering forms of a dilated Conv (see rewrite.py for the identity).

    bias-only   every tap along some axis reads only padding, so no output
                reads x: the bias broadcast to the output shape (zeros
                without one), no Conv (convrewrite/emit/bias_fill.py)
    plain       the simplifications left no dilation: one Conv (the weight
                sliced to its live taps), a Slice where the input is cropped
    subsample   every axis has one phase (the dilation divides the stride):
                x_pad[::d] and one undilated Conv with stride s/d
    batch       aligned phases: space_to_batch, one Conv, batch_to_space
                (the only form of a chain of dilated Convs)
    depth       aligned phases: SpaceToDepth, one grouped Conv with the weight
                tiled P times (the batch stays N), DepthToSpace
    slices      one strided Slice and one Conv per phase, interleaved; no
                tensor above rank max(4, rank of x)
    reshape     1-D: the phases as a trailing axis by a Reshape, one Conv
                with kernel (k, 1), the inverse Reshape; opt-in, favoured
                without a target from 16 input channels per group
    taps        one strided Slice and one undilated Conv per tap of the
                dilated axes, summed; favoured when phase images are tiny
    im2col      the taps as input channels of one Conv: step-1 Slices of
                the padded window, Concat, a kernel-1 Conv with the weight
                in tap-major order (im2col.py); opt-in, group 1; the
                quantized form where batch does not fit (one accumulation)

The list order is the default order.  bias-only, plain and subsample are the
only forms where they apply; batch, depth, slices, reshape, taps and im2col are the ones a user
selects (`MODES`, the choices of `dilated_mode`).  im2col lives in its own
module and rewrite.py appends it after the others.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from math import prod
from typing import ClassVar, Optional

import onnx

from convrewrite.core.builder import Builder
from convrewrite.core.cost import grouped
from convrewrite.core.forms import Cost, Form, Variant
from convrewrite.core.graph import GraphView, attributes
from convrewrite.emit.bias_fill import bias_fill, bias_fill_cost
from convrewrite.emit.opset_ops import (NOTHING, ZEROS_MIN_OPSET, Moved, add_all_nodes, can_make_zeros, movement,
                                       other_nodes)
from convrewrite.emit.pixel_shuffle import (MAX_GENERAL_RANK, pixel_shuffle_cost, pixel_unshuffle_cost, shuffle_rank,
                                             square_blocks)
from convrewrite.emit.space_to_batch import (batch_to_space_cost, crop_to_cost, interleave_cost, space_to_axes_cost,
                                             space_to_batch_cost, strided_slice_cost, subsample_cost)
from convrewrite.geometry import extent

from .build import (PhaseInput, _batch, _blocks, _chain, _depth, _plain, _reshape, _sliced_weight, _slices, _taps,
                    _taps_window)
from .chain import Chain, data_inputs, is_side, static_batch, window_shift
from .phases import AxisPhases, tap_images, undilated_window, window_pads


@dataclass(frozen=True)
class Dilated:
    """What match computed for one Conv: the simplified axes and its tensors."""

    axes: tuple[AxisPhases, ...]
    channels: int                               # C
    out_channels: int                           # O
    group: int
    weight: str
    bias: str                                   # "" when absent
    taps: Optional[tuple[tuple[int, int], ...]]  # kept tap range per axis; None: all

    @cached_property   # asked by every form, several times per node (the params are frozen)
    def dilated(self) -> bool:
        """Some dilation is left after the simplifications."""
        return any(a.dilation > 1 for a in self.axes)

    @cached_property
    def one_phase(self) -> bool:
        """Every axis has one phase: only x_pad[::d] is read."""
        return all(a.phases == 1 for a in self.axes)

    @property
    def blocks(self) -> list[int]:
        return [a.phases for a in self.axes]

    @cached_property   # the batch form's builders ask twice per node, a chain's match once more
    def phase_input(self) -> PhaseInput:
        """The block window (build.PhaseInput), worked out once: read-only."""
        return PhaseInput(self)

    @property
    def phase_outputs(self) -> int:
        """Outputs of one phase image."""
        return prod(a.per_phase for a in self.axes)

    @property
    def rank(self) -> int:
        """The rank of x."""
        return len(self.axes) + 2

    def unaligned(self) -> Optional[str]:
        """Why no block split reaches the phases (batch and depth forms), or None."""
        bad = next((a for a in self.axes if not a.aligned), None)
        if bad is None:
            return None
        return (f"stride {bad.stride} and dilation {bad.dilation} share no factor beyond {bad.common}, so the "
                "phases start at shifted offsets that no block split reaches (only strided Slices do)")

    def conv_macs(self, outputs) -> int:
        """MACs per batch item of an undilated Conv with this kernel computing `outputs` per axis."""
        return self.out_channels * (self.channels // self.group) * prod(a.kernel for a in self.axes) * prod(outputs)

    def phase_macs(self) -> int:
        """MACs per batch item of the phase forms: q*P >= out outputs per axis."""
        return self.conv_macs([a.per_phase * a.phases for a in self.axes])

    def exact_macs(self) -> int:
        """MACs per batch item of the Conv's own products (kept taps)."""
        return self.conv_macs([a.out for a in self.axes])

    @property
    def grouped(self) -> bool:
        """Few input channels per group (depthwise): every form keeps that."""
        return grouped(self.channels // self.group)


@dataclass(frozen=True)
class BiasAlone:
    """What match computed for a Conv no output of which reads x: along
    spatial axis `axis` every tap reads only padding (phases.live_taps), so
    every product is 0 * W and y[n, o, ...] = B[o] (zero without a bias)."""

    axes: tuple[AxisPhases, ...]   # as written, auto_pad resolved: a.out is the output size
    axis: int                      # the first spatial axis whose taps all read padding
    out_channels: int              # O
    bias: str                      # "" when absent

    @property
    def out(self) -> list[int]:
        return [a.out for a in self.axes]

    @property
    def rank(self) -> int:
        return len(self.axes) + 2


# --- the forms -----------------------------------------------------------------

CHAIN_BATCH_ONLY = "a chain of dilated Convs is lowered in batch form only"
WINDOW = Variant("padded window")
OWN_PADS = Variant("", pads_convs=True)   # the taps form's default: its Convs pad their own zeros
NO_DILATION = "no dilation is left after the simplifications (the plain form)"
ONE_PHASE = ("every axis has one phase (the dilation divides the stride), so only x_pad[::d] is read "
             "(the subsample form)")
BIAS_ALONE = "no output reads the input: the output is the bias alone (the bias-only form)"


def single_dilated_conv(p) -> Optional[str]:
    """Why `p` is not one dilated Conv (a chain, no output reading x, or no
    dilation left), or None: what every form but bias-only, batch and plain
    asks first."""
    if isinstance(p, Chain):
        return CHAIN_BATCH_ONLY
    if isinstance(p, BiasAlone):
        return BIAS_ALONE
    return None if p.dilated else NO_DILATION


class BiasOnly(Form):
    """The output is B broadcast to [N, O, out...] (zeros without a bias):
    no Conv, nothing read from x but its batch where that is symbolic.  The
    work is the output's size; the dilation and pads enter only through the
    output size (convrewrite/geometry.py), never as a tensor.  Before opset
    ZEROS_MIN_OPSET match leaves the node alone (old-opset)."""

    name = "bias-only"
    selectable: ClassVar[bool] = False

    def applies(self, match, graph) -> Optional[str]:
        if not isinstance(match.params, BiasAlone):
            return "some output reads the input"
        if not can_make_zeros(graph.opset()):
            return f"the bias broadcast needs zeros and Add (opset {ZEROS_MIN_OPSET}); upgrade the model's opset"
        return None

    def cost(self, match, variant, graph) -> Cost:
        p: BiasAlone = match.params
        batch = graph.shape(match.node.input[0])[0]
        constant = not p.bias or graph.is_constant(p.bias)
        bias_size = _itemsize_of(graph, p.bias) if p.bias else 0
        moved = bias_fill_cost(batch, p.out_channels, p.out, 1, bool(p.bias), constant, graph.opset(),
                               _itemsize(graph, match), bias_size)
        # no node at all where the zeros are an initializer (before opset 9, static) and there is no bias
        return Cost(macs=0, moved_bytes=moved.bytes, nodes=moved.nodes, grouped_macs=0, streamed_bytes=0,
                    max_rank=p.rank if moved.nodes else None)

    def build(self, match, variant, graph, b: Builder) -> dict:
        p: BiasAlone = match.params
        bias = graph.constant(p.bias) if p.bias else None
        shape = f"[N, {p.out_channels}, {', '.join(map(str, p.out))}]"
        b.note(f"B broadcast to {shape} (zeros + B)" if p.bias else f"zeros {shape}")
        return {match.node.output[0]: bias_fill(b, match.node.input[0], p.out_channels, p.bias, bias, p.out,
                                                what="bias_only")}


class _DilatedForm(Form):
    """A form of a single Conv (never of a chain)."""

    selectable: ClassVar[bool] = True   # a dilated_mode choice

    def applies(self, match, graph) -> Optional[str]:
        p = match.params
        unfit = single_dilated_conv(p)
        if unfit:
            return unfit
        if p.one_phase:
            return ONE_PHASE
        return self.problem(p, graph)

    def problem(self, p: Dilated, graph: GraphView) -> Optional[str]:
        return None

    def build(self, match, variant, graph, b: Builder) -> dict:
        p: Dilated = match.params
        return {match.node.output[0]: self.emit(b, graph, match.node.input[0], p)}

    def emit(self, b: Builder, graph: GraphView, x: str, p: Dilated) -> str:
        raise NotImplementedError


class Plain(_DilatedForm):
    name = "plain"
    selectable = False

    def applies(self, match, graph):
        p = match.params
        if isinstance(p, (Chain, BiasAlone)):
            return CHAIN_BATCH_ONLY if isinstance(p, Chain) else BIAS_ALONE
        return "dilation is left after the simplifications" if p.dilated else None

    def moved(self, match, variant, graph) -> Moved:
        return _plain_moved(match.params, _itemsize(graph, match))

    def cost(self, match, variant, graph) -> Cost:
        p, size = match.params, _itemsize(graph, match)
        return _cost(p, p.exact_macs(), p.rank, self.moved(match, variant, graph), size)

    def emit(self, b, graph, x, p):
        return _plain(b, x, _sliced_weight(b, graph, p), p)


class Subsample(_DilatedForm):
    name = "subsample"
    selectable = False

    def applies(self, match, graph):
        p = match.params
        unfit = single_dilated_conv(p)
        if unfit:
            return unfit
        return None if p.one_phase else "some axis has more than one phase (the dilation does not divide the stride)"

    def moved(self, match, variant, graph) -> Moved:
        return _batch_moved(match.params, _itemsize(graph, match), graph.opset())

    def cost(self, match, variant, graph) -> Cost:
        p, size = match.params, _itemsize(graph, match)
        return _cost(p, p.exact_macs(), p.rank, self.moved(match, variant, graph), size)

    def emit(self, b, graph, x, p):
        b.note("the dilation divides the stride: only every d-th input is read")
        return _batch(b, x, _sliced_weight(b, graph, p), p)


class Batch(_DilatedForm):
    name = "batch"

    def applies(self, match, graph):
        if isinstance(match.params, Chain):
            return None
        return super().applies(match, graph)

    def problem(self, p, graph):
        return p.unaligned()

    def depth_ops(self, graph) -> bool:
        """Whether 2-D equal blocks move by SpaceToDepth / DepthToSpace (the
        quantized form says no below opset 11: core/qdq.py `integer_depth_to_space`)."""
        return True

    def moved(self, match, variant, graph) -> Moved:
        """One dilated Conv's (a chain's: _chain_cost)."""
        return _batch_moved(match.params, _itemsize(graph, match), graph.opset(), self.depth_ops(graph))

    def cost(self, match, variant, graph) -> Cost:
        p = match.params
        if isinstance(p, Chain):
            return _chain_cost(p, graph)
        size = _itemsize(graph, match)
        return _cost(p, p.phase_macs(), batch_rank(p, batch_major=True, depth_ops=self.depth_ops(graph)),
                     self.moved(match, variant, graph), size)

    def build(self, match, variant, graph, b):
        if isinstance(match.params, Chain):
            return _chain(b, graph, match.params)
        return super().build(match, variant, graph, b)

    def emit(self, b, graph, x, p):
        return _batch(b, x, _sliced_weight(b, graph, p), p)


@dataclass(frozen=True)
class Depth(_DilatedForm):
    """`weight_limit`: the most bytes the tiled weight may take."""

    weight_limit: int = 16 << 20
    name = "depth"

    def problem(self, p, graph):
        blocked = p.unaligned()
        if blocked:
            return blocked
        if not graph.is_constant(p.weight):
            return "depth form needs a constant weight to tile"
        blocks, tiled = depth_tiling(graph, p)
        if tiled > self.weight_limit:
            return (f"depth form would tile the weight {blocks}x to {tiled} bytes, above "
                    f"depth_weight_limit={self.weight_limit}")
        return None

    def cost(self, match, variant, graph) -> Cost:
        p, size = match.params, _itemsize(graph, match)
        return _cost(p, p.phase_macs(), max(p.rank, shuffle_rank(p.blocks, "DCR", graph.opset())),
                     _depth_moved(p, graph, size), size)

    def emit(self, b, graph, x, p):
        blocks, tiled = depth_tiling(graph, p)
        b.note(f"depth form tiles the weight {blocks}x ({tiled // blocks} -> {tiled} bytes)")
        return _depth(b, graph, x, p)


class Slices(_DilatedForm):
    name = "slices"

    def cost(self, match, variant, graph) -> Cost:
        p, size = match.params, _itemsize(graph, match)
        return _cost(p, p.phase_macs(), max(p.rank, 4), _slices_moved(p, size, graph.opset()), size)

    def emit(self, b, graph, x, p):
        return _slices(b, x, _sliced_weight(b, graph, p), p)


@dataclass(frozen=True)
class Taps(_DilatedForm):
    """`below`: phase images with fewer outputs favour this form (0: never)."""

    below: int = 64
    name = "taps"
    favour_weighed = True   # where per-node overhead outweighs the phase split's copies (docs/cost_model.md)

    def applies(self, match, graph):
        p = match.params
        unfit = single_dilated_conv(p)
        if unfit:
            return unfit
        if not tap_images(p.axes):
            return "no tap reads the input for any output (the output is the bias alone)"
        return None if graph.is_constant(p.weight) else "the taps form needs a constant weight to slice"

    def favoured(self, match, graph):
        p = match.params
        if isinstance(p, Chain) or p.one_phase or p.phase_outputs >= self.below:
            return None
        return (f"phase images of {p.phase_outputs} outputs (below taps_below={self.below}) convolve "
                "inefficiently: one undilated Conv per tap, summed")

    def variants(self, match, graph):
        """Default: each tap's Conv pads its own zeros (no padded copy of x).
        WINDOW: one padded copy of x, each tap's Conv unpadded -- for targets
        whose toolchain makes Conv padding a PAD op of its own (TFLite: one
        PAD per tap otherwise)."""
        return (OWN_PADS, WINDOW)

    def cost(self, match, variant, graph) -> Cost:
        p = match.params
        size = _itemsize(graph, match)
        moved = (_taps_window_moved if variant == WINDOW else _taps_moved)(p, size, graph.opset())
        return _cost(p, p.exact_macs(), p.rank, moved, size)

    def build(self, match, variant, graph, b: Builder) -> dict:
        p: Dilated = match.params
        x = match.node.input[0]
        return {match.node.output[0]: _taps_window(b, graph, x, p) if variant == WINDOW else _taps(b, graph, x, p)}


class Reshape(_DilatedForm):
    """1-D only.  The phase split as a trailing axis: [N, C, m*P] is
    [N, C, m, P] by a Reshape alone, and one Conv with kernel (k, 1)
    convolves every phase column at once (build._reshape).  Opt-in (a
    target gets it only where no other form fits); favoured without a
    target where the Conv has at least RESHAPE_MIN_CHANNELS input channels
    per group: the fastest form in every such case measured on onnxruntime
    CPU (docs/dilated_conv.md)."""

    name = "reshape"
    opt_in = True
    favour_needs_cost_model = True

    def problem(self, p, graph):
        if p.rank != 3:
            return ("the reshape form is for 1-D Convs: in 2-D its Conv would be 4-D (rank 6), which "
                    "onnxruntime runs about 4x slower than the dilated Conv (measured)")
        blocked = p.unaligned()
        if blocked:
            return blocked
        return None if graph.is_constant(p.weight) else "the reshape form needs a constant weight to reshape"

    def favoured(self, match, graph):
        return reshape_favoured(match.params)

    def cost(self, match, variant, graph) -> Cost:
        p, size = match.params, _itemsize(graph, match)
        return _cost(p, p.phase_macs(), max(p.rank, 4), _reshape_moved(p, size, graph.opset()), size)

    def emit(self, b, graph, x, p):
        return _reshape(b, graph, x, p)


# Fewer input channels per group than this, the reshape form's (k, 1) Conv
# over a P-wide phase axis is slow on long maps: measured (155 1-D cases, 4..64
# channels, lengths 64..4096, rates 2..8, kernels 3 and 7) it was the fastest
# form in all 93 cases of 16 channels and more, but up to 2.7x slower than the
# fastest on 4 and 8 channels of 1,024 and more.
RESHAPE_MIN_CHANNELS = 16


def reshape_favoured(p) -> Optional[str]:
    """Why the reshape form goes first for `p` without a target, or None."""
    if isinstance(p, Chain) or p.rank != 3 or p.channels // p.group < RESHAPE_MIN_CHANNELS:
        return None
    return (f"a 1-D Conv of {p.channels // p.group} input channels per group (at least {RESHAPE_MIN_CHANNELS}; "
            "measured on onnxruntime CPU, so without a target): its phases as a trailing axis, one Conv, "
            "no Transpose")


FORM_NAMES = ("bias-only", "plain", "subsample", "batch", "depth", "slices", "reshape", "taps", "im2col")
MODES = ("batch", "depth", "slices", "reshape", "taps", "im2col")   # the user-selectable forms (dilated_mode)


def forms(depth_weight_limit: int, taps_below: int) -> tuple[Form, ...]:
    """The pass's forms in the default order."""
    return (BiasOnly(), Plain(), Subsample(), Batch(), Depth(depth_weight_limit), Slices(), Reshape(),
            Taps(taps_below))


# --- costs ---------------------------------------------------------------------

def batch_rank(p: Dilated, batch_major: bool = False, depth_ops: bool = True) -> int:
    """The highest rank space_to_batch and batch_to_space create: 5 for 2-D
    equal blocks (SpaceToDepth + a rank-5 block Transpose; 4 batch-major, a
    Reshape alone), unless not `depth_ops`; else one Reshape/Transpose/Reshape
    of rank 2 + r + (axes with P > 1), or above rank 6 one rank-5 step per blocked axis."""
    blocks, r = p.blocks, len(p.axes)
    if all(k == 1 for k in blocks):
        return p.rank
    if depth_ops and square_blocks(blocks):
        return p.rank if batch_major else max(p.rank, 5)
    general = 2 + r + sum(1 for k in blocks if k > 1)
    return max(p.rank, general if general <= MAX_GENERAL_RANK else 5)


def chain_macs(c: Chain, graph: GraphView) -> tuple[int, int, int]:
    """(MACs, of them in grouped Convs, their im2col elements) per batch
    item: every dilated Conv of the chain in batch form, and its 1x1 Convs,
    over the phase grid (q*P positions per axis)."""
    positions = prod(q * k for q, k in zip(c.grid.per_phase, c.grid.blocks))
    convs = dict(c.region.convs)
    parts = [(c.start.phase_macs(), c.start.grouped, c.start.out_channels // c.start.group)]
    for k, node in enumerate(c.region.nodes[1:], 1):
        if k in convs:
            parts.append((convs[k].phase_macs(), convs[k].grouped, convs[k].out_channels // convs[k].group))
        elif node.op_type == "Conv":
            ws = graph.shape(node.input[1])
            group = int(attributes(node).get("group", 1))
            parts.append((ws[0] * prod(ws[1:]) * positions, grouped(ws[1]), ws[0] // group))
    return (sum(m for m, _, _ in parts), sum(m for m, g, _ in parts if g),
            sum(m // rows for m, _, rows in parts))


def depth_tiling(graph: GraphView, p: Dilated) -> tuple[int, int]:
    """(phases P, bytes of the kept weight [O, C/G, k...] tiled P times) for
    the depth form; the weight must be constant."""
    blocks = prod(p.blocks)
    w = graph.constant(p.weight)
    kept = w.itemsize * w.shape[0] * w.shape[1] * prod(a.kernel for a in p.axes)
    return blocks, kept * blocks


# --- nodes and bytes moved, mirroring the builders below (batch 1) ----------------

def _cost(p: Dilated, macs: int, rank: int, moved: Moved, itemsize: int) -> Cost:
    return Cost(macs=macs, moved_bytes=moved.bytes, nodes=moved.nodes, max_rank=rank,
                grouped_macs=macs if p.grouped else 0, streamed_bytes=streamed(p, macs, itemsize))


def streamed(p: Dilated, macs: int, itemsize: int) -> int:
    """Every form's Convs keep the original's O / G output channels per
    group: their im2col matrices hold MACs / (O / G) elements."""
    return macs * itemsize * p.group // p.out_channels


def _chain_cost(c: Chain, graph: GraphView) -> Cost:
    macs, grouped_part, im2col = chain_macs(c, graph)
    moved = _chain_moved(c, graph)
    itemsize = onnx.helper.tensor_dtype_to_np_dtype(graph.dtype(c.region.nodes[0].input[0])).itemsize
    return Cost(macs=macs, moved_bytes=moved.bytes, nodes=moved.nodes,
                max_rank=batch_rank(c.start, c.grid.unit_batch), grouped_macs=grouped_part,
                streamed_bytes=im2col * itemsize)


def _itemsize(graph: GraphView, match) -> int:
    return _itemsize_of(graph, match.node.input[0])


def _itemsize_of(graph: GraphView, name: str) -> int:
    return onnx.helper.tensor_dtype_to_np_dtype(graph.dtype(name)).itemsize


def _window_moved(axes, lengths, channels: int, itemsize: int) -> tuple[Moved, list]:
    """`phases.window`: a Pad where x is padded, then a Slice where it is cropped."""
    shape = [1, channels, *[a.size for a in axes]]
    pads = [window_pads(a, n) for a, n in zip(axes, lengths)]
    moved = NOTHING
    if any(q[2] or q[3] for q in pads):
        padded = shape[:2] + [n + q[2] + q[3] for n, q in zip(shape[2:], pads)]
        moved, shape = movement([shape], padded, itemsize), padded
    if any(q[0] or q[1] for q in pads):
        cropped = shape[:2] + [n - q[0] - q[1] for n, q in zip(shape[2:], pads)]
        moved, shape = moved + movement([shape], cropped, itemsize), cropped
    return moved, shape


def _plain_moved(p: Dilated, itemsize: int) -> Moved:
    pads = [window_pads(a, (a.out - 1) * a.stride + extent(a.kernel, a.dilation), a.stride - 1)
            for a in p.axes]
    moved = other_nodes(1)
    if any(q[0] or q[1] for q in pads):
        shape = [1, p.channels, *[a.size for a in p.axes]]
        moved += movement([shape], shape[:2] + [a.size - q[0] - q[1] for a, q in zip(p.axes, pads)], itemsize)
    return moved


def _phase_input_moved(p: Dilated, w: PhaseInput, itemsize: int, opset: int) -> Moved:
    moved, shape = _window_moved(w.axes, w.lengths, p.channels, itemsize)
    return moved + subsample_cost(shape, [a.common for a in p.axes], itemsize, opset)[0]


def _out_crop_moved(p: Dilated, itemsize: int) -> Moved:
    have = [a.per_phase * a.phases for a in p.axes]
    return crop_to_cost([1, p.out_channels, *have], [a.out for a in p.axes], itemsize)


def _batch_core_moved(p: Dilated, itemsize: int, opset: int, batch_major: bool = True,
                      depth_ops: bool = True) -> Moved:
    w = p.phase_input
    return (_phase_input_moved(p, w, itemsize, opset)
            + space_to_batch_cost(p.channels, p.blocks, w.sizes, itemsize, batch_major, depth_ops)
            + other_nodes(1))


# The batch, slices and reshape forms' data movement depends on the Conv's
# structure alone -- its axes and channels, not its value names -- and on the
# item size and the opset: worked out once per distinct structure (the Conv
# without its names is the key, so every field it keeps is part of it).

def _structure(p: Dilated) -> Dilated:
    """`p` without its value names (the bias only as present or not)."""
    return replace(p, weight="", bias="b" if p.bias else "")


def _batch_moved(p: Dilated, itemsize: int, opset: int, depth_ops: bool = True) -> Moved:
    return _batch_moved_of(_structure(p), itemsize, opset, depth_ops)


def _slices_moved(p: Dilated, itemsize: int, opset: int) -> Moved:
    return _slices_moved_of(_structure(p), itemsize, opset)


def _reshape_moved(p: Dilated, itemsize: int, opset: int) -> Moved:
    return _reshape_moved_of(_structure(p), itemsize, opset)


@lru_cache(maxsize=1024)
def _batch_moved_of(p: Dilated, itemsize: int, opset: int, depth_ops: bool = True) -> Moved:
    blocks, m, q = _blocks(p)
    return (_batch_core_moved(p, itemsize, opset, depth_ops=depth_ops)
            + batch_to_space_cost(p.out_channels, blocks, q, itemsize, batch_major=True, depth_ops=depth_ops)
            + _out_crop_moved(p, itemsize))


@lru_cache(maxsize=1024)
def _reshape_moved_of(p: Dilated, itemsize: int, opset: int) -> Moved:
    """`_reshape`: the window, a Reshape, the Conv, the inverse Reshape, the crop."""
    blocks, m, q = _blocks(p)
    w = p.phase_input
    return (_phase_input_moved(p, w, itemsize, opset) + space_to_axes_cost(p.channels, blocks, w.sizes, itemsize)
            + other_nodes(1) + space_to_axes_cost(p.out_channels, blocks, q, itemsize) + _out_crop_moved(p, itemsize))


def _depth_moved(p: Dilated, graph: GraphView, itemsize: int) -> Moved:
    blocks, m, q = _blocks(p)
    opset = graph.opset()
    w = p.phase_input
    moved = _phase_input_moved(p, w, itemsize, opset) + pixel_unshuffle_cost(p.channels, blocks, w.sizes, itemsize)
    if p.bias and graph.constant(p.bias) is None:   # the bias Tiled at run time
        bias_size = onnx.helper.tensor_dtype_to_np_dtype(graph.dtype(p.bias)).itemsize
        moved += movement([[p.out_channels]], [p.out_channels * prod(blocks)], bias_size)
    return (moved + other_nodes(1) + pixel_shuffle_cost(p.out_channels, blocks, q, itemsize, "DCR", opset)
            + _out_crop_moved(p, itemsize))


@lru_cache(maxsize=1024)
def _slices_moved_of(p: Dilated, itemsize: int, opset: int) -> Moved:
    """`phases.phase_images` (a strided Slice per phase unless it is the
    whole window), a Conv per phase, interleave, crop."""
    blocks, m, q = _blocks(p)
    moved, shape = _window_moved(p.axes, [a.slice_window for a in p.axes], p.channels, itemsize)
    for phase in itertools.product(*[range(a.phases) for a in p.axes]):
        starts = [a.phase_start(k) for a, k in zip(p.axes, phase)]
        ends = [s + (a.phase_size - 1) * a.dilation + 1 for s, a in zip(starts, p.axes)]
        keep = [k for k, a in enumerate(p.axes) if a.dilation > 1 or starts[k] > 0 or ends[k] < a.slice_window]
        if keep:
            moved += strided_slice_cost(shape, [k + 2 for k in keep], [starts[k] for k in keep],
                                        [ends[k] for k in keep], [p.axes[k].dilation for k in keep],
                                        itemsize, opset)[0]
        moved += other_nodes(1)
    return moved + interleave_cost(p.out_channels, blocks, q, itemsize, opset) + _out_crop_moved(p, itemsize)


def _taps_window_moved(p: Dilated, itemsize: int, opset: int) -> Moved:
    return _taps_window_moved_of(p.axes, p.channels, itemsize, opset)


def _taps_moved(p: Dilated, itemsize: int, opset: int) -> Moved:
    return _taps_moved_of(p.axes, p.channels, itemsize, opset)


# The taps forms' data movement depends on the axes, C, the item size and the
# opset alone (their arguments): worked out once per distinct geometry.

@lru_cache(maxsize=1024)
def _taps_window_moved_of(axes: tuple, channels: int, itemsize: int, opset: int) -> Moved:
    """`_taps_window`: the window, a strided Slice and a Conv per tap, Sum or Adds."""
    dil = [k for k, a in enumerate(axes) if a.dilation > 1]
    lengths = [(a.out - 1) * a.stride + extent(a.kernel, a.dilation) for a in axes]
    moved, shape = _window_moved(axes, lengths, channels, itemsize)
    taps = list(itertools.product(*[range(axes[k].kernel) for k in dil]))
    for tap in taps:
        starts = [tk * axes[k].dilation for tk, k in zip(tap, dil)]
        ends = [s0 + (axes[k].out - 1) * axes[k].stride + 1 for s0, k in zip(starts, dil)]
        moved += strided_slice_cost(shape, [k + 2 for k in dil], starts, ends, [axes[k].stride for k in dil],
                                    itemsize, opset)[0]
    return moved + other_nodes(len(taps) + add_all_nodes(len(taps), opset))


@lru_cache(maxsize=1024)
def _taps_moved_of(axes: tuple, channels: int, itemsize: int, opset: int) -> Moved:
    """`_taps`: a crop of the undilated axes, per tap a strided Slice of x
    (unless it is all of x) and a Conv, then Sum or Adds."""
    shape = [1, channels, *[a.size for a in axes]]
    moved = NOTHING
    crop = [undilated_window(a) if a.dilation == 1 else (0, 0, 0, 0) for a in axes]
    if any(q[0] or q[1] for q in crop):
        cropped = shape[:2] + [n - q[0] - q[1] for n, q in zip(shape[2:], crop)]
        moved, shape = movement([shape], cropped, itemsize), cropped
    images = tap_images(axes)
    for image in images:
        if image.axes:
            moved += strided_slice_cost(shape, [k + 2 for k in image.axes], image.starts, image.stops, image.steps,
                                        itemsize, opset)[0]
    return moved + other_nodes(len(images) + add_all_nodes(len(images), opset))


def _chain_moved(c: Chain, graph: GraphView) -> Moved:
    """`_chain`: the first Conv's batch core; per later dilated Conv its
    input masked once (Where or Mul, between Reshapes for a symbolic batch) and windowed (Slice,
    Pad); every other node copied; outside inputs Padded and moved to phase
    form once; every exit back through batch_to_space and a crop."""
    nodes, grid, opset = c.region.nodes, c.grid, graph.opset()
    q, blocks = list(grid.per_phase), list(grid.blocks)
    phases = prod(blocks)

    def size(name: str) -> int:
        return onnx.helper.tensor_dtype_to_np_dtype(graph.dtype(name)).itemsize

    moved = _batch_core_moved(c.start, size(nodes[0].input[0]), opset, grid.unit_batch)
    phase, converted, masked = {nodes[0].output[0]} | ({c.region.shared} if c.region.shared else set()), set(), set()
    convs, pools = dict(c.region.convs), set(c.region.pools)
    pool_exits = {nodes[k].output[0] for k in pools}
    for k, node in enumerate(nodes[1:], 1):
        if k in pools:   # GlobalAveragePool, Reshape [P, N, C, 1...] (not for a batch of 1), ReduceMean
            means = [phases, graph.shape(node.input[0])[1]] + [1] * len(q)
            split = NOTHING if grid.unit_batch else movement([means], means, size(node.input[0]))
            moved += other_nodes(1) + split + other_nodes(1)
            continue
        if k in convs:
            p, v = convs[k], node.input[0]
            form = [phases, p.channels, *q]
            if v not in masked:
                masked.add(v)
                if not grid.exact:
                    # Where (mask and zero constant; Mul before opset 9), with a symbolic batch
                    # between Reshapes to [P, N*C, q...] and back
                    moved += movement([form], form, size(v)) if opset >= 9 else other_nodes(1)
                    if not static_batch(grid):
                        moved += movement([form], form, size(v)) + movement([form], form, size(v))
            front, back = window_shift(grid, [a.offset for a in p.axes], [a.kernel for a in p.axes])
            if any(f < 0 or e < 0 for f, e in zip(front, back)):   # a crop; the Conv's pads extend
                cropped = form[:2] + [n - max(0, -f) - max(0, -e) for n, f, e in zip(q, front, back)]
                moved += movement([form], cropped, size(v))
            moved += other_nodes(1)
        else:
            data = data_inputs(node)
            for i in node.input:
                if i in data and not graph.is_constant(i) and i not in phase and i not in converted:
                    converted.add(i)
                    channels = graph.shape(i)[1]
                    if is_side(graph, i, grid):   # Tile [P, 1, ...]
                        ones = [1] * len(q)
                        moved += movement([[1, channels, *ones]], [phases, channels, *ones], size(i))
                        continue
                    shape = [1, channels, *grid.sizes]
                    full = [1, channels, *[n * b for n, b in zip(q, blocks)]]
                    if full != shape:
                        moved += movement([shape], full, size(i))
                    moved += space_to_batch_cost(channels, blocks, q, size(i), grid.unit_batch)
            moved += other_nodes(1)
        phase.add(node.output[0])
    for e in (e for e in c.region.exits if e not in pool_exits):
        channels = graph.shape(e)[1]
        moved += batch_to_space_cost(channels, blocks, q, size(e), grid.unit_batch)
        moved += crop_to_cost([1, channels, *[n * b for n, b in zip(q, blocks)]], grid.sizes, size(e))
    return moved
