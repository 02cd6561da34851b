"""The lowering forms of Resize / Upsample (see rewrite.py for the identity).

    identity    every scale is 1: Identity
    broadcast   every resized axis has input size 1: Expand, no MACs
    shuffle     nearest at integer factors: one copy of x per output phase
                (a shifted slice of the edge-padded input), Concat,
                DepthToSpace; no MACs
    deconv      edge Pad + depthwise ConvTranspose with the interpolation
                kernel (integer upsampling of spatial axes, periodic
                coordinates, any mode); the convtranspose pass lowers the
                ConvTranspose afterwards
    matmul      (opt-in) one MatMul per resized axis with its interpolation
                matrix: any static Resize, align_corners and downsampling
                included

In this order (simplest first) they reproduce the pass's behaviour: identity
and broadcast where they apply, then shuffle for nearest, then deconv;
matmul only when the user asks for it, a target needs a lowering, or, for a
linear Resize without a target, where the chooser's cost model estimates it
faster than deconv (`weighed_by_estimate`; matmul is then no longer opt-in),
and for a nearest upsampling of small maps without a target, where a measured
favour puts it first (`nearest_favour`).

Variants (shuffle, deconv), offered where some axis needs edge padding: the
border replicated by Pad(mode=edge) (the default), or, for targets without
Pad edge, by Concat of edge Slices ("concat edge"), the same clamp:

    Pad_edge(x, lo, hi) = Concat(x[..., :1] * lo, x, x[..., -1:] * hi)   (per axis)
"""
from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from functools import cached_property, lru_cache
from math import prod
from typing import Optional

import numpy as np

from convrewrite.core import qdq
from convrewrite.core.builder import Builder
from convrewrite.core.forms import DEFAULT, Advice, Cost, Form, Variant
from convrewrite.core.rewrite import Skip
from convrewrite.emit.opset_ops import (NOTHING, Moved, gemm, movement, other_nodes, pad_axes, requantized,
                                       slice_axes, tensor_bytes)
from convrewrite.emit.pixel_shuffle import pixel_shuffle, pixel_shuffle_cost, shuffle_rank, square_blocks
from convrewrite.geometry import MAX_PHASES, join_pads

from .interpolation import (AxisKernel, ResizeSpec, Unsupported, depthwise_kernel, interpolation_matrix,
                            is_plain_nearest)

# Where the deconv form does not apply (or is passed over), the matmul form may lower the Resize:
# the reason says so where it does (core/lowering.py `advised`: without a target, the matmul
# option then builds it; never with a target, which tried the matmul form already).
MATMUL_ADVICE = Advice("resize_mode", "matmul", ("matmul",), "lowers it")
MATMUL_HINT = f"; {MATMUL_ADVICE.text}"
# Beside what the matmul and pointwise forms build (NONFINITE_NOTE): the deconv option's order,
# where it builds a form that keeps an Inf or NaN input value local.
LOCAL_ADVICE = Advice("resize_mode", "deconv", ("identity", "broadcast", "shuffle", "deconv"),
                      "keeps an Inf or NaN input value local")
CONCAT_EDGE = Variant("concat edge")
EXPAND_MIN_OPSET = 8


@dataclass(frozen=True)
class ResizeParams:
    """What match computed: the node's spec and what the forms share.

    `kernels` (one per spatial axis) hold the deconvolution geometry of the
    shuffle and deconv forms where the interpolation is a fixed kernel;
    otherwise they are empty and `fixed` says why (a reason without the
    node, and its code)."""

    spec: ResizeSpec
    dtype: np.dtype
    opset: int
    channels: Optional[int]             # C, when static
    kernels: tuple[AxisKernel, ...] = ()
    fixed: Optional[Skip] = None

    @property
    def rank(self) -> int:
        return len(self.spec.axes)

    @property
    def factors(self) -> list[int]:
        return [k.factor for k in self.kernels]

    @property
    def has_edge(self) -> bool:
        return any(k.edge != (0, 0) for k in self.kernels)

    @cached_property   # the matmul and pointwise forms ask for them several times per node
    def matrices(self) -> "tuple | str":
        """matrices(spec): looked up once per node, not once per question (the
        cache's lookup compares specs, Fractions and all, field by field)."""
        return matrices(self.spec, True) if self.dtype == np.float64 else matrices(self.spec)


def broadcasts(spec: ResizeSpec, opset: int) -> bool:
    """Every resized axis has input size 1, so every output is x itself
    (all weights of a row add up to 1 once clamped); Expand needs opset 8."""
    return (bool(spec.resized) and opset >= EXPAND_MIN_OPSET
            and spec.interp.coordinate_mode != "tf_crop_and_resize"
            and all(ax.n_in == 1 and ax.n_out is not None for ax in spec.resized))


NOTHING_RESIZED = "every scale is 1 (the identity form)"


# --- identity, broadcast --------------------------------------------------------

class Identity(Form):
    name = "identity"
    first = True
    keeps_quantized = True   # data movement: values on a quantization grid stay on it

    def applies(self, match, graph):
        resized = match.params.spec.resized
        return None if not resized else f"axes {[ax.axis for ax in resized]} are resized"

    def cost(self, match, variant, graph) -> Cost:
        return Cost(macs=0, moved_bytes=0, nodes=1, max_rank=match.params.rank, grouped_macs=0, streamed_bytes=0)

    def build(self, match, variant, graph, b: Builder) -> dict:
        b.note("every scale is 1")
        return {match.node.output[0]: b.op("Identity", [match.node.input[0]], "identity")}


class Broadcast(Form):
    name = "broadcast"
    first = True
    keeps_quantized = True

    def applies(self, match, graph):
        p = match.params
        spec = p.spec
        if not spec.resized:
            return NOTHING_RESIZED
        if broadcasts(spec, p.opset):
            return None
        if spec.interp.coordinate_mode == "tf_crop_and_resize":
            return "tf_crop_and_resize can extrapolate, so outputs are not all copies of the input"
        if p.opset < EXPAND_MIN_OPSET:
            return f"Expand needs opset {EXPAND_MIN_OPSET}"
        wide = [(ax.axis, ax.n_in) for ax in spec.resized if ax.n_in != 1]
        if wide:
            axis, n = wide[0]
            return f"resized axis {axis} has {n if n is not None else 'a symbolic number of'} samples, not 1"
        return "the output size is not static"

    def cost(self, match, variant, graph) -> Cost:
        p = match.params
        dims = item_dims(p)
        out = [ax.n_out if not ax.identity else d for ax, d in zip(p.spec.axes, dims)]
        return _cost(0, p.rank, movement([dims], out, p.dtype.itemsize))

    def build(self, match, variant, graph, b: Builder) -> dict:
        b.note("every resized axis has size 1: Expand, no MACs")
        shape = [ax.n_out if not ax.identity else 1 for ax in match.params.spec.axes]
        y = b.op("Expand", [match.node.input[0], b.ints(shape, "shape")], "broadcast")
        return {match.node.output[0]: y}


# --- shuffle, deconv: the fixed-kernel forms ------------------------------------------

class _FixedKernel(Form):
    """The forms built from the per-axis kernels (interpolation.axis_kernel)."""

    def fixed_problem(self, match) -> Optional[str]:
        p = match.params
        if not p.spec.resized:
            return NOTHING_RESIZED
        return p.fixed.reason if p.fixed is not None else None

    def variants(self, match, graph):
        return (DEFAULT, CONCAT_EDGE) if match.params.has_edge else (DEFAULT,)


class Shuffle(_FixedKernel):
    """Nearest only: every output phase is a copy of x (shifted), so the
    Resize is prod(s) channel copies and a pixel shuffle, no MACs."""

    name = "shuffle"
    keeps_quantized = True

    def applies(self, match, graph):
        p = match.params
        if p.spec.resized and p.spec.interp.mode != "nearest":
            return f"{p.spec.interp.mode} interpolation weighs several samples (nearest only)"
        problem = self.fixed_problem(match)
        if problem:
            return problem if problem == NOTHING_RESIZED else "no fixed per-phase copy (see deconv)"
        factors, sizes = p.factors, [ax.n_in for ax in p.spec.axes[2:]]
        if not (square_blocks(factors) and _depth_to_space(match, graph)) and not all(isinstance(n, int) for n in sizes):
            return "needs static spatial sizes here (a general pixel shuffle)"
        return None

    def cost(self, match, variant, graph) -> Cost:
        """Between Q/DQ (x from a per-tensor DequantizeLinear: build's
        requantize_movement), every data-movement node but the last gets a
        Q -> DQ pair of x's grid, and the Concat of copies of x a Tile."""
        p = match.params
        quantized, depth_to_space = bool(qdq.grids_around(match.node, graph)), _depth_to_space(match, graph)
        moved = _shuffle_moved(p, _edge_mode(variant), quantized, depth_to_space)
        return _cost(0, max(p.rank, shuffle_rank(p.factors, "DCR", p.opset, depth_to_space)),
                     requantized(moved) if quantized else moved)

    def rank_note(self, match, variant, graph):
        square = square_blocks(match.params.factors)
        return qdq.reshaped_shuffle_note(match.params.opset) if square and not _depth_to_space(match, graph) else None

    def build(self, match, variant, graph, b: Builder) -> dict:
        p = match.params
        plain = is_plain_nearest(p.kernels)
        depth_to_space = _depth_to_space(match, graph)
        b.note(f"factors={p.factors}")
        b.note(f"MAC-free: {prod(p.factors)} channel copies + "
               f"{'DepthToSpace' if depth_to_space else 'a Reshape/Transpose pixel shuffle'}"
               f"{'' if plain else ', each copy an edge-padded shifted slice'}")
        y = _build_shuffle(b, match.node.input[0], p, _edge_mode(variant), depth_to_space)
        qdq.requantize_movement(b, qdq.grids_around(match.node, graph), keep=(y,))
        return {match.node.output[0]: y}


def conv_type_problem(p, op: str) -> Optional[str]:
    """Why a form building `op` (ConvTranspose, Conv) does not apply to this
    Resize's element type: onnxruntime 1.32 CPU has no float64 Conv or
    ConvTranspose, so its rewrite could not be checked (rewrite.py RESIZE_TYPES)."""
    if p.dtype != np.float64:
        return None
    return (f"float64: onnxruntime has no {op} of that type to check this form's rewrite against (it has the matmul "
            "form's MatMul and the shuffle form's data movement)")


class Deconv(_FixedKernel):
    """Edge Pad + depthwise ConvTranspose with the outer product of the
    per-axis kernels (any mode at integer factors)."""

    name = "deconv"

    def applies(self, match, graph):
        problem = self.fixed_problem(match)
        if problem is None:
            return conv_type_problem(match.params, "ConvTranspose")
        return problem

    def advice(self, match, graph, built):
        return None if built else MATMUL_ADVICE

    def estimated(self, match, graph) -> bool:
        return weighed_by_estimate(match)

    def left_behind(self, match, graph, run_passes):
        """The ConvTranspose this form builds is lowered by the convtranspose
        pass only at a static spatial size: of a symbolic one it would stay,
        the Resize traded for a Pad and a ConvTranspose.  (With --passes
        resize alone the ConvTranspose is what was asked for.)  Nor beyond
        MAX_PHASES: its strides are the factors, and the convtranspose pass
        plans one Conv output channel per phase, prod(factors) of them."""
        if "convtranspose" not in run_passes:
            return None
        sizes = graph.shape(match.node.input[0])[2:]
        if not all(isinstance(n, int) for n in sizes):
            return (f"the ConvTranspose it builds would stay in the model: the convtranspose pass needs a static "
                    f"spatial size, and the input's is {list(sizes)}; fix the input's spatial dimensions")
        factors = [k.factor for k in match.params.kernels]
        if prod(factors) > MAX_PHASES:
            return (f"the ConvTranspose it builds would stay in the model: its strides {factors} make "
                    f"{prod(factors)} output phases, more than the {MAX_PHASES} the convtranspose pass plans")
        return None

    def cost(self, match, variant, graph) -> Cost:
        p = match.params
        padded = [ax.n_in + k.edge[0] + k.edge[1] if ax.n_in is not None else None
                  for ax, k in zip(p.spec.axes[2:], p.kernels)]
        macs = None
        if all(n is not None for n in padded):
            macs = p.channels * prod(padded) * prod(len(k.kernel) for k in p.kernels)
        # a depthwise ConvTranspose (one input channel per group): one column-buffer value per MAC
        moved = _edge_pad_moved(p, item_dims(p), _edge_mode(variant))[0] + \
            gemm(None if macs is None else macs * p.dtype.itemsize)
        return _cost(macs, p.rank, moved, grouped=True)

    def build(self, match, variant, graph, b: Builder) -> dict:
        p = match.params
        if p.spec.interp.mode == "nearest":
            passed = Shuffle().applies(match, graph)
            if passed:
                b.note(f"shuffle form not used: {passed}")
        deconv_notes(b, p)
        return {match.node.output[0]: _build_deconv(b, match.node.input[0], p, _edge_mode(variant))}


# --- matmul ---------------------------------------------------------------------

class MatMul(Form):
    """One MatMul per resized axis with its interpolation matrix [m, n]:
    exact for any static Resize, but its MACs grow with n * m per axis."""

    name = "matmul"
    opt_in = True
    favour_needs_cost_model = True     # nearest_favour was measured on onnxruntime CPU

    def applies(self, match, graph):
        spec = match.params.spec
        if not spec.resized:
            return NOTHING_RESIZED
        first = min(ax.axis for ax in spec.resized)
        if any(ax.n_in is None for ax in spec.axes[first:]):
            return (f"the matmul form needs static sizes from the first resized axis on (input "
                    f"{[ax.n_in for ax in spec.axes]}); give the input static spatial dimensions")
        m = match.params.matrices
        return m if isinstance(m, str) else None

    def estimated(self, match, graph) -> bool:
        return weighed_by_estimate(match)

    def advice(self, match, graph, built):
        return LOCAL_ADVICE if built else None

    def favoured(self, match, graph) -> Optional[str]:
        if match.params.spec.interp.mode != "nearest" and conv_type_problem(match.params, "Conv"):
            # nothing to weigh it against: the deconv form builds what onnxruntime cannot check in float64
            return "float64: the one interpolating form whose rewrite onnxruntime can check (a MatMul)"
        return nearest_favour(match, graph)

    def cost(self, match, variant, graph) -> Cost:
        p = match.params
        dims = [ax.n_in for ax in p.spec.axes]
        if all(ax.axis != 0 for ax in p.spec.resized):
            dims[0] = 1   # per batch item
        macs = 0
        moved, rank, extrapolate = NOTHING, p.rank, False
        for axis, m, outside in in_build_order(p.matrices):
            # M @ x streams x; x @ M^T (the last axis) streams the constant M^T, packed once
            streamed = 0 if axis == rank - 1 else tensor_bytes(dims, p.dtype.itemsize)
            if axis < rank - 2:   # Reshape to [..., n, -1], MatMul, Reshape back
                before = list(dims)
                dims[axis] = m.shape[0]
                moved += movement([before], before, p.dtype.itemsize) + gemm(streamed)
                moved += movement([dims], dims, p.dtype.itemsize)
            else:
                dims[axis] = m.shape[0]
                moved += gemm(streamed)
            extrapolate = extrapolate or bool(outside.any())
            if macs is not None:
                macs = None if any(d is None for d in dims) else macs + prod(dims) * m.shape[1]
        if extrapolate and p.spec.interp.extrapolation_value != 0:
            moved += other_nodes(1)
        return _cost(macs, p.rank, moved)

    def build(self, match, variant, graph, b: Builder) -> dict:
        p = match.params
        mats = p.matrices
        sizes = [f"axis {a}: [{m.shape[0]}, {m.shape[1]}]" for a, m, _ in mats]
        b.note(f"matrices {', '.join(sizes)} ({sum(m.size for _, m, _ in mats)} weights)")
        b.note(NONFINITE_NOTE)
        return {match.node.output[0]: _build_matmul(b, match.node.input[0], p, mats)}


# A MatMul multiplies every input of a row (column) by its matrix entry, zeros
# included: exact to rounding for finite values, but 0 x Inf = NaN, and the
# second MatMul carries the first one's NaN column over the whole map.
NONFINITE_NOTE = ("exact for finite inputs; an Inf or NaN input value makes NaN of the rest of its channel's map "
                  "(0 x Inf = NaN; README, 'Non-finite values')")


def weighed_by_estimate(match) -> bool:
    """A linear Resize: deconv or matmul is the chooser's cost model's call
    (core/cost_model.py).  No rule has a measured basis there: on onnxruntime
    CPU the matmul form beat the deconv form by 1.3x to 4.6x in every case of
    benchmarks/calibrate_cost.py (docs/cost_model.md); how much depends on
    the sizes, which the estimate weighs.  Nearest keeps its rules (shuffle,
    or matmul on small maps: nearest_favour; the estimate prices the
    shuffle's DepthToSpace far too cheaply to decide it); cubic was not
    measured."""
    return match.params.spec.interp.mode == "linear"


NEAREST_MATMUL_MAX_INPUT = 48   # samples per resized axis (measured: docs/resize.md)


def nearest_favour(match, graph) -> Optional[str]:
    """A nearest upsampling that the shuffle form expresses, of a 4-D
    tensor's spatial axes with at most 48 input samples each: matmul first.
    On onnxruntime CPU the shuffle form's Concat of copies and DepthToSpace
    (a strided copy at ~1 GB/s) cost more there than the MatMuls' MACs,
    which grow with the input size (about W_in + H_in / f per output): in
    benchmarks/bench_resize_nearest.py matmul took 0.23-0.88x shuffle's time
    on every map of 4..48 samples (16..256 channels, x2..x8) and 0.83-1.30x
    on 64x64, where shuffle keeps its place."""
    p = match.params
    spec = p.spec
    if spec.interp.mode != "nearest" or p.rank != 4 or any(ax.axis < 2 for ax in spec.resized):
        return None
    if any(ax.n_in is None or ax.n_in > NEAREST_MATMUL_MAX_INPUT for ax in spec.resized):
        return None
    if Shuffle().applies(match, graph) is not None:
        return None
    return (f"nearest upsampling of at most {NEAREST_MATMUL_MAX_INPUT} samples per axis: the MatMuls measured "
            "faster than the shuffle form's copies on onnxruntime CPU")


@lru_cache(maxsize=256)
def matrices(spec: ResizeSpec, float64: bool = False) -> "tuple | str":
    """((axis, M [m, n], extrapolated rows), ...) per resized axis, or why
    the spec leaves a row undefined.  The coordinates are computed as the
    Resize's oracle computes them: onnxruntime in float32, or for a float64
    Resize (`float64`) onnx's reference evaluator in float64."""
    try:
        return tuple((ax.axis, *interpolation_matrix(spec.interp, ax, float64=float64)) for ax in spec.resized)
    except Unsupported as e:
        return str(e)


def in_build_order(mats) -> list:
    """Shrinking axes first (fewest MACs)."""
    return sorted(mats, key=lambda t: t[1].shape[0] / t[1].shape[1])


FORMS = (Identity(), Broadcast(), Shuffle(), Deconv(), MatMul())
FORM_NAMES = tuple(f.name for f in FORMS)


# --- nodes and bytes moved, mirroring the builders below ----------------------------

def _cost(macs, rank: int, moved: Moved, grouped: bool = False) -> Cost:
    """`grouped`: the MACs are a depthwise ConvTranspose's (the deconv form)."""
    return Cost(macs=macs, moved_bytes=moved.bytes, nodes=moved.nodes, max_rank=rank,
                grouped_macs=macs if grouped else 0, streamed_bytes=moved.streamed)


def item_dims(p: ResizeParams) -> list:
    """The input's dims per batch item: batch 1 unless the batch axis is
    resized (None where symbolic: the bytes are then unknown)."""
    dims = [ax.n_in for ax in p.spec.axes]
    if all(ax.axis != 0 for ax in p.spec.resized):
        dims[0] = 1
    return dims


def _edge_pad_moved(p: ResizeParams, dims: list, edge: str) -> tuple[Moved, list]:
    """`_edge_pad`: one Pad(edge), or per axis Slices of the first and last
    entries and a Concat; (cost, padded dims)."""
    kernels, size = p.kernels, p.dtype.itemsize
    if all(k.edge == (0, 0) for k in kernels):
        return NOTHING, list(dims)
    if edge != "concat":
        padded = dims[:2] + [_plus(n, sum(k.edge)) for n, k in zip(dims[2:], kernels)]
        return movement([dims], padded, size), padded
    moved, dims = NOTHING, list(dims)
    for axis, k in enumerate(kernels, start=2):
        lo, hi = k.edge
        if lo == hi == 0:
            continue
        one = list(dims)
        one[axis] = 1
        ends = [one] * (bool(lo) + bool(hi))
        moved += movement([dims], one, size).times(len(ends))
        out = list(dims)
        out[axis] = _plus(dims[axis], lo + hi)
        moved += movement([one] * lo + [dims] + [one] * hi, out, size)
        dims = out
    return moved, dims


def _plus(n: Optional[int], k: int) -> Optional[int]:
    return None if n is None else n + k


def _depth_to_space(match, graph) -> bool:
    """Whether the shuffle form's pixel shuffle may be a DepthToSpace: not
    between Q/DQ below opset 11, where onnxruntime fuses it into one of the
    integers that has no kernel (core/qdq.py `integer_depth_to_space`)."""
    return qdq.integer_depth_to_space(match.params.opset) or not qdq.grids_around(match.node, graph)


def _shuffle_moved(p: ResizeParams, edge: str, quantized: bool = False, depth_to_space: bool = True) -> Moved:
    """`_build_shuffle`: the edge pad, a Slice per distinct phase shift (on
    the edge-padded axes), Concat of the copies, the pixel shuffle.  Without
    edge padding every copy is x itself; `quantized`, that Concat becomes a
    Tile of x (core/qdq.py `_tile_copies`), which reads x once."""
    dims = item_dims(p)
    moved, padded = _edge_pad_moved(p, dims, edge)
    combos = list(itertools.product(*[k.phases for k in p.kernels]))
    if p.has_edge:
        shifts = {tuple(phase[0][0] for phase in combo) for combo in combos}
        moved += movement([padded], dims, p.dtype.itemsize).times(len(shifts))
    if len(combos) > 1:
        tiled = quantized and not p.has_edge
        moved += movement([dims] * (1 if tiled else len(combos)), [dims[0], _times(dims[1], len(combos)), *dims[2:]],
                          p.dtype.itemsize)
    return moved + pixel_shuffle_cost(p.channels, p.factors, dims[2:], p.dtype.itemsize, "DCR", p.opset,
                                      depth_to_space)


def _times(n: Optional[int], k: int) -> Optional[int]:
    return None if n is None else n * k


# --- build helpers ----------------------------------------------------------

def _edge_mode(variant) -> str:
    return "concat" if variant.label == CONCAT_EDGE.label else "pad"


def deconv_notes(b: Builder, p) -> None:
    """The deconv form's facts: factors, the kernel as an outer product, pads."""
    shape = [p.channels, 1, *[len(k.kernel) for k in p.kernels]]
    axes = "; ".join(" ".join(f"{w:.4g}" for w in k.kernel) for k in p.kernels)
    b.note(f"factors={p.factors}")
    b.note(f"kernel={shape} = outer product of [{axes}]")
    b.note(f"edge pad={[k.edge for k in p.kernels]}")
    b.note(f"convtranspose pads={[k.pads for k in p.kernels]}")


def _edge_pad(b: Builder, x: str, kernels, edge: str = "pad", what: str = "edge_pad") -> str:
    """Replicate the border: the spec's clamp of source indices.  `edge`
    "pad": one Pad(mode=edge); "concat": per axis, Concat of lo copies of the
    first slice, x, and hi copies of the last (for targets without Pad edge)."""
    if all(k.edge == (0, 0) for k in kernels):
        return x
    if edge == "concat":
        b.note("edge replicated by Concat of edge Slices (no Pad edge)")
        return _edge_concat(b, x, kernels, what)
    rank = len(kernels) + 2
    return pad_axes(b, x, rank, range(2, rank), [k.edge for k in kernels], what, mode="edge")


def _edge_concat(b: Builder, x: str, kernels, what: str) -> str:
    for axis, k in enumerate(kernels, start=2):
        lo, hi = k.edge
        if lo == hi == 0:
            continue
        first = [slice_axes(b, x, [axis], [0], [1], f"{what}{axis}_first")] * lo if lo else []
        last = [slice_axes(b, x, [axis], [-1], [sys.maxsize], f"{what}{axis}_last")] * hi if hi else []
        x = b.op("Concat", first + [x] + last, f"{what}{axis}", axis=axis)
    return x


def _build_deconv(b: Builder, x: str, p: ResizeParams, edge: str) -> str:
    x = _edge_pad(b, x, p.kernels, edge)
    w = b.initializer(depthwise_kernel(p.kernels, p.channels, p.dtype), "weight")
    return b.op("ConvTranspose", [x, w], "deconv", group=p.channels,
                kernel_shape=[len(k.kernel) for k in p.kernels], strides=[k.factor for k in p.kernels],
                pads=join_pads([k.pads for k in p.kernels]))


def _build_shuffle(b: Builder, x: str, p: ResizeParams, edge: str, depth_to_space: bool = True) -> str:
    """One copy of x per output phase (x shifted by the phase's source offset
    d, read from the edge-padded input), in DCR order, then DepthToSpace (not
    `depth_to_space`: Reshape/Transpose/Reshape)."""
    padded = _edge_pad(b, x, p.kernels, edge)
    copies, slices = [], {}
    for combo in itertools.product(*[k.phases for k in p.kernels]):
        shifts = tuple(phase[0][0] for phase in combo)
        if shifts not in slices:
            slices[shifts] = _shifted(b, padded, p.kernels, shifts)
        copies.append(slices[shifts])
    y = copies[0] if len(copies) == 1 else b.op("Concat", copies, "copies", axis=1)
    sizes = [ax.n_in for ax in p.spec.axes[2:]]
    return pixel_shuffle(b, y, p.channels, p.factors, sizes, "DCR", allow_depth_to_space=depth_to_space)


def _shifted(b: Builder, padded: str, kernels, shifts) -> str:
    """padded[..., lo + d : lo + d + n] on each spatial axis (ends counted
    from the back, so symbolic sizes work)."""
    cut = [(i + 2, k.edge[0] + d, -(k.edge[1] - d) if k.edge[1] > d else sys.maxsize)
           for i, (k, d) in enumerate(zip(kernels, shifts)) if k.edge != (0, 0)]
    if not cut:
        return padded
    axes, starts, ends = zip(*cut)
    return slice_axes(b, padded, axes, starts, ends, "shift")


def _build_matmul(b: Builder, x: str, p: ResizeParams, mats) -> str:
    """One MatMul per resized axis, shrinking axes first (fewest MACs)."""
    dims = [ax.n_in for ax in p.spec.axes]
    rank = len(dims)
    masks = []
    value = p.spec.interp.extrapolation_value
    for axis, m, outside in in_build_order(mats):
        x = _matmul_axis(b, x, axis, m.astype(p.dtype), dims, rank)
        dims[axis] = m.shape[0]
        if value != 0 and outside.any():   # a zero extrapolation value needs no mask
            masks.append((axis, outside))
    if masks:
        x = b.op("Add", [x, b.initializer(_extrapolation(masks, rank, value).astype(p.dtype), "extrapolation")],
                 "extrapolate")
    return x


def _matmul_axis(b: Builder, x: str, axis: int, m: np.ndarray, dims, rank: int) -> str:
    """y = M applied along `axis` of x (current sizes `dims`)."""
    if axis == rank - 1:
        return b.op("MatMul", [x, b.initializer(np.ascontiguousarray(m.T), f"axis{axis}_matrix")],
                    f"axis{axis}_matmul")
    w = b.initializer(m, f"axis{axis}_matrix")
    if axis == rank - 2:
        return b.op("MatMul", [w, x], f"axis{axis}_matmul")
    folded = b.op("Reshape", [x, b.ints([0] * axis + [dims[axis], -1], f"axis{axis}_fold_shape")],
                  f"axis{axis}_fold")
    y = b.op("MatMul", [w, folded], f"axis{axis}_matmul")
    back = [0] * axis + [m.shape[0]] + list(dims[axis + 1:])
    return b.op("Reshape", [y, b.ints(back, f"axis{axis}_unfold_shape")], f"axis{axis}_unfold")


def _extrapolation(masks, rank: int, value: float) -> np.ndarray:
    """value where any axis's source coordinate falls outside the input."""
    shape = [1] * rank
    for axis, outside in masks:
        shape[axis] = len(outside)
    out = np.zeros(shape, bool)
    for axis, outside in masks:
        view = [1] * rank
        view[axis] = len(outside)
        out = out | outside.reshape(view)
    return out * value
