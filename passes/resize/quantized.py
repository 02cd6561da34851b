"""Resize (linear, cubic) in a QDQ group, lowered without leaving the integers.

Before:
    DQ(x) -> Resize(linear | cubic, integer factors) -> Q(y) -> ...

After (deconv, quantized):
    DQ(x) -> Pad(edge) -> Q -> DQ (x's grid)
          -> ConvTranspose(DQ(w int8 | uint8, scale 1/D, zero point 0), group C, no bias) -> Q(y) -> ...

After (its variant "int8 weights in 2 parts", for targets taking int8 weights only):
    DQ(x) -> Pad(edge) -> Reshape -> Concat(copies) -> Reshape     (each op followed by Q -> DQ, x's grid)
          -> ConvTranspose(DQ(w_1, w_2 int8 [2C, 1, k...], scale 1/D), group C) -> Q(y) -> ...

w = D * kernel, the interpolation kernel (the outer product of the per-axis
kernels, forms.Deconv) in integers: its taps are rationals (bilinear at
factor s: multiples of 1/(2s) per axis), D the least common denominator of
the N-D kernel.  Where every D * tap fits int8 the weight is int8 and exact:
with a power-of-two D (bilinear at power-of-two factors up to x4, where the
2-D product's taps are multiples of 1/(4s^2) and the largest is below 1)
the scale 1/D is exact in float too; otherwise the integer ratios are exact
and the scale is 1/D rounded to float32, as the original's float taps are
rounded (odd factors: D = s^2, the taps sit at whole offsets).  Where int8
cannot hold them but the kernel is nonnegative with every D * tap <= 255
(bilinear x8: 2-D taps up to 225/256; x13, x15), the weight is uint8 with
zero point 0, as exact; onnxruntime fuses a Conv with uint8 weights into
QLinearConv with uint8 and with int8 activations alike.  For a target that
takes int8 weights only (`int8_only`), the variant Int8Parts splits every
such weight into int8 parts summing to it, applied to copies of its channel
by a ConvTranspose with as many input channels per group: one int32
accumulation, the uint8 form's integers, twice the MACs.  The edge Pad is
data movement between DQ and Q of x's grid (no integer changes), so the
group computes what the original does up to float summation order.  The
convtranspose pass (in the same run, through the driver's worklist) then
lowers the new ConvTranspose group into DQ -> Conv(DQ(w)) -> Q ->
DepthToSpace, which onnxruntime fuses into a QLinearConv.  onnxruntime runs
a QDQ ConvTranspose in float, so without the convtranspose pass in the run
(`--passes resize`) the form does not apply (`lowered_by`) and the Resize
stays as it is.

Where the kernel does not fit 8 bits exactly (bilinear at even factors from
x10 and odd ones from x17; cubic, whose taps are negative too and whose 2-D
taps need 12 to 22 bits), the form does not apply and says by how much the
best power-of-two scale would be off, in weights and in output steps.  A
separable form (one axis at a time, each with exact 1-D taps; for cubic at
x2 and x4 not even those fit 8 bits: up to 225/256 and 1981/2048, some
negative) does not help: its intermediate is requantized, so the result is
rounded twice where the original rounds once.  Measured on bilinear x8
(benchmarks/qdq_separable_resize.py: the x8 test block, 400 inputs, against
the original in both onnxruntime modes): an int8 intermediate on x's grid
differs by a mean of 0.09 step (p99 1), above the 0.05 the verification
accepts; a finer 8-bit grid (s_x / 2) clips (up to 64 steps off); an int16
intermediate on s_x / 16 is exact (mean 0.005 step: ties) but onnxruntime
runs both 16-bit Convs in float.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from math import gcd, prod
from typing import Optional

import numpy as np

from convrewrite.core import qdq
from convrewrite.core.forms import DEFAULT, Cost, Variant
from convrewrite.emit.opset_ops import NOTHING, Moved, movement, requantized
from convrewrite.geometry import join_pads

from .forms import Deconv, _edge_mode, _edge_pad, _edge_pad_moved, item_dims, deconv_notes

INT8_MAX = 127
UINT8_MAX = 255   # a nonnegative kernel's weights may be uint8 (zero point 0)
MAX_DENOMINATOR = 1 << 12
POWER_OF_TWO_LIMIT = 30


@dataclass(frozen=True)
class IntKernel:
    """The N-D interpolation kernel as 8-bit integers times `scale` (exact), or
    why it is not exact and by how much the best power-of-two scale is off."""

    values: Optional[np.ndarray]    # int8 (uint8 where only that holds it), the N-D kernel's shape; None when not exact
    denominator: Optional[int]      # D: kernel = values / D; None if a tap is no small rational
    largest: int = 0                # max |D * tap| (int8 holds 127; uint8 255 of a nonnegative kernel)
    error: float = 0.0              # not exact: max |weight error| at the best power-of-two scale
    phase_error: float = 0.0        # ... and the largest sum of |errors| over one output phase's taps
    best_shift: int = 0             # that scale: 2^-best_shift

    @property
    def exact(self) -> bool:
        return self.values is not None

    @property
    def scale(self) -> float:
        return 1.0 / self.denominator

    def describe(self) -> str:
        d = self.denominator
        kind = np.dtype(self.values.dtype).name
        why = (f" (taps up to {self.largest}/{d}: int8 cannot hold {self.largest}, uint8 with zero point 0 can)"
               if kind == "uint8" else "")
        if d & (d - 1) == 0:
            return f"weights exact in {kind}: kernel = w / {d} (power-of-two scale 2^-{d.bit_length() - 1}){why}"
        return (f"weights exact in {kind}: kernel = w / {d} (the integer ratios are exact; the scale is 1/{d} "
                f"rounded to float32){why}")


def _axis_rational(kernel) -> "tuple[np.ndarray, int] | None":
    """Integers n and D with kernel = n / D exactly (to float64 rounding), D the
    least common denominator; None if a tap is no rational with D <= 4096."""
    fracs = []
    for w in kernel:
        f = Fraction(float(w)).limit_denominator(MAX_DENOMINATOR)
        if abs(float(f) - float(w)) > 1e-9 * max(1.0, abs(float(w))):
            return None
        fracs.append(f)
    d = 1
    for f in fracs:
        d = d * f.denominator // gcd(d, f.denominator)
    return np.array([int(f * d) for f in fracs], np.int64), d


def int_kernel(kernels, factors) -> IntKernel:
    """The interpolation kernel (outer product of `kernels`' 1-D kernels) in
    int8, or in uint8 where int8 cannot hold it but uint8 can (no negative tap)."""
    axes = [_axis_rational(k.kernel) for k in kernels]
    if all(a is not None for a in axes):
        d = prod(a[1] for a in axes)
        g = gcd(prod(int(np.gcd.reduce(np.abs(a[0]))) for a in axes), d)
        largest = prod(int(np.abs(a[0]).max()) for a in axes) // g
        nonnegative = all(np.all(a[0] >= 0) for a in axes)
        if largest <= INT8_MAX or (nonnegative and largest <= UINT8_MAX):
            values = np.ones((), np.int64)
            for a in axes:
                values = np.multiply.outer(values, a[0])
            dtype = np.int8 if largest <= INT8_MAX else np.uint8
            return IntKernel((values // g).astype(dtype), d // g, largest)
        denominator = d // g
    else:
        denominator, largest = None, 0
    # not exact: the finest power-of-two scale that fits, and its error
    w = np.ones(())
    for k in kernels:
        w = np.multiply.outer(w, np.asarray(k.kernel, np.float64))
    top = float(np.abs(w).max())
    shift = max(s for s in range(-POWER_OF_TWO_LIMIT, POWER_OF_TWO_LIMIT) if top * 2.0 ** s <= INT8_MAX + 0.5)
    err = np.abs(np.round(w * 2.0 ** shift) / 2.0 ** shift - w)
    phase = err
    for axis, s in enumerate(factors):   # taps of one output phase: equal index modulo the factor
        n = phase.shape[axis]
        pad = (-n) % s
        widths = [(0, 0)] * phase.ndim
        widths[axis] = (0, pad)
        phase = np.pad(phase, widths)
        shape = list(phase.shape)
        shape[axis:axis + 1] = [(n + pad) // s, s]
        phase = phase.reshape(shape).sum(axis=axis)
    return IntKernel(None, denominator, largest, float(err.max()), float(phase.max()), shift)


def _x_range(node, graph) -> Optional[float]:
    """max |x| over the grid x's DequantizeLinear puts it on (None if unknown)."""
    dq = graph.producer(node.input[0])
    p = qdq.qparams(dq, graph) if dq is not None else "none"
    if isinstance(p, str) or p.dtype.kind not in "iu":
        return None
    info = np.iinfo(p.dtype)
    z = int(np.asarray(p.zero_point).reshape(-1)[0])
    return float(np.asarray(p.scale).reshape(-1)[0]) * max(z - info.min, info.max - z)


def _y_scale(node, graph) -> Optional[float]:
    q = graph.consumers(node.output[0])[0]
    p = qdq.qparams(q, graph)
    return None if isinstance(p, str) else float(np.asarray(p.scale).reshape(-1)[0])


def not_exact(k: IntKernel, node, graph) -> str:
    """Why the kernel has no exact int8 form, and by how much the best one is off."""
    if k.denominator is None:
        what = f"a tap is no multiple of 1/D for any D <= {MAX_DENOMINATOR}"
    else:
        what = (f"its taps are multiples of 1/{k.denominator}, up to {k.largest}/{k.denominator} (int8 holds 127, "
                "uint8 255 where no tap is negative)")
    x, sy = _x_range(node, graph), _y_scale(node, graph)
    steps = (f", an output by up to {k.phase_error * x / sy:.3g} step(s) of its QuantizeLinear"
             if x is not None and sy else "")
    return (f"the interpolation kernel does not fit 8 bits exactly ({what}): at the finest power-of-two "
            f"scale 2^-{k.best_shift} a weight would be off by up to {k.error:.3g}{steps}; a separable form "
            "would round twice (an 8-bit intermediate) or compute in float (a 16-bit one)")


# --- int8 weights in parts --------------------------------------------------------------

@dataclass(frozen=True)
class Int8Parts(Variant):
    """The quantized deconv form with int8 weights where its kernel needs
    uint8 (bilinear x8, x13, x15): every weight w = w_1 + ... + w_k with each
    w_i in int8 (`int8_parts`), applied to k copies of its channel, so that
    one ConvTranspose group sums them in one int32 accumulation, rounded once:

        y_c = sum_taps (w / D) x_c = sum_taps sum_i (w_i / D) x_c

    the same integers as the uint8 form (up to float summation order in the
    spec semantics) at k times its MACs, for compilers that take int8
    weights only (an `int8_only` target).  `edge` is the edge variant it
    builds on."""

    edge: Variant = DEFAULT
    parts: int = 2


def parts_needed(k: IntKernel) -> int:
    """How many int8 weights each of the kernel's weights needs: ceil(max |w| / 127)."""
    return -(-k.largest // INT8_MAX)


def int8_parts(values: np.ndarray, parts: int) -> np.ndarray:
    """[parts, *values.shape] int8 weights summing to `values` exactly:
    part i = floor((w + i) / parts).  By Hermite's identity these sum to w
    for every integer w, and each lies between floor(w / parts) and
    ceil(w / parts), so |w| <= 127 * parts fits int8 -- the symmetric range
    [-127, 127] that int8-only toolchains (TFLite) require of weights."""
    w = np.asarray(values, np.int64)
    out = np.stack([np.floor_divide(w + i, parts) for i in range(parts)])
    if np.any(out.sum(axis=0) != w) or out.min() < -INT8_MAX or out.max() > INT8_MAX:
        raise AssertionError(f"int8 parts: {parts} parts cannot hold weights up to {np.abs(w).max()}")
    return out.astype(np.int8)


def _padded_sizes(p) -> Optional[list]:
    """The edge-padded spatial sizes (None where one is symbolic)."""
    sizes = [ax.n_in + sum(k.edge) if ax.n_in is not None else None for ax, k in zip(p.spec.axes[2:], p.kernels)]
    return None if None in sizes else sizes


def _copies(b, x: str, channels: int, spatial, parts: int) -> str:
    """x [N, C, *spatial] -> [N, C * parts, *spatial] with channel c * parts + i
    = x's channel c (each channel's copies side by side, as a ConvTranspose
    group reads them): Reshape to [N, C, 1, H*W], Concat of `parts` copies on
    axis 2, Reshape back.  (A Concat of copies on the channel axis would put
    x's channel c at c and C + c: a group of adjacent channels would read two
    different channels.)"""
    flat = b.op("Reshape", [x, b.ints([0, channels, 1, prod(spatial)], "copies_shape")], "copies_flat")
    side = b.op("Concat", [flat] * parts, "copies", axis=2)
    return b.op("Reshape", [side, b.ints([0, channels * parts, *spatial], "copies_out_shape")], "copies_out")


def _copies_moved(p, parts: int) -> Moved:
    """What `_copies` moves per batch item (float32 between DQ and Q)."""
    spatial, size = _padded_sizes(p), p.dtype.itemsize
    x = [1, p.channels, *spatial]
    flat = [1, p.channels, 1, prod(spatial)]
    side = [1, p.channels, parts, prod(spatial)]
    out = [1, p.channels * parts, *spatial]
    return movement([x], flat, size) + movement([flat] * parts, side, size) + movement([side], out, size)


class QuantizedDeconv(Deconv):
    """Deconv in a QDQ group: the interpolation kernel as an 8-bit weight
    (variants: the float form's edge variants, then, where that weight is
    uint8, each of them with int8 weights in parts: Int8Parts)."""

    keeps_quantized = True
    quantized_only = True
    lowered_by = "convtranspose"

    def applies(self, match, graph):
        problem = super().applies(match, graph)
        if problem is not None:
            return problem
        p = match.params
        if p.spec.interp.mode == "nearest":
            return "nearest is data movement: the shuffle form keeps it quantized"
        g = qdq.group_grids(match.node, graph)
        if isinstance(g, str):
            return g
        k = int_kernel(p.kernels, p.factors)
        return None if k.exact else not_exact(k, match.node, graph)

    def variants(self, match, graph):
        edges = tuple(super().variants(match, graph))
        p = match.params
        k = int_kernel(p.kernels, p.factors)
        parts = parts_needed(k) if k.exact else 1
        if parts == 1 or _padded_sizes(p) is None:   # int8 already; or the copies' Reshape needs static sizes
            return edges
        if qdq.fused_concat_problem(graph, qdq.group_grids(match.node, graph)[0]):   # the copies' Concat
            return edges
        return edges + tuple(Int8Parts(", ".join(filter(None, [e.label, f"int8 weights in {parts} parts"])),
                                       edge=e, parts=parts) for e in edges)

    def cost(self, match, variant, graph) -> Cost:
        """Every data-movement op (the edge pad, the copies) followed by Q -> DQ
        (none is the output: the ConvTranspose is), the weight's
        DequantizeLinear, the ConvTranspose with `parts` times the MACs."""
        p = match.params
        edge, parts = getattr(variant, "edge", variant), getattr(variant, "parts", 1)
        moved = _edge_pad_moved(p, item_dims(p), _edge_mode(edge))[0]
        moved += _copies_moved(p, parts) if parts > 1 else NOTHING
        float_form = super().cost(match, edge, graph)
        macs = float_form.macs * parts if float_form.macs is not None else None
        return Cost(macs=macs, moved_bytes=moved.bytes, nodes=requantized(moved, outputs=0).nodes + 2,
                    max_rank=max(p.rank, 4 if parts > 1 else 0), grouped_macs=macs,
                    streamed_bytes=float_form.streamed_bytes)   # the parts are input channels of each group

    def build(self, match, variant, graph, b) -> dict:
        p = match.params
        edge, parts = getattr(variant, "edge", variant), getattr(variant, "parts", 1)
        x_grid, _ = qdq.group_grids(match.node, graph)
        k = int_kernel(p.kernels, p.factors)
        deconv_notes(b, p)
        b.note("quantized: " + k.describe() + "; Q/DQ of x's grid after the edge pad")
        x = match.node.input[0]
        padded = _edge_pad(b, x, p.kernels, _edge_mode(edge))
        shape = k.values.shape
        if parts > 1:
            b.note(f"int8 weights: each weight split into {parts} int8 parts (floor((w + i) / {parts})), applied to "
                   f"{parts} copies of its channel, summed in one accumulation (x{parts} MACs)")
            padded = _copies(b, padded, p.channels, _padded_sizes(p), parts)
            values = np.broadcast_to(int8_parts(k.values, parts)[None, :, None], (p.channels, parts, 1, *shape))
            values = values.reshape(p.channels * parts, 1, *shape)
        else:
            values = np.broadcast_to(k.values, (p.channels, 1, *shape)).copy()
        w = b.op(qdq.DEQUANTIZE, [b.initializer(values, "weight_q"),
                                  # the scale has the model's float type: DequantizeLinear's output, the
                                  # ConvTranspose's T, is the scale's type (float16 in a float16 model)
                                  b.initializer(np.array(k.scale, qdq.real_type(graph, x)), "weight_scale"),
                                  b.initializer(np.zeros((), values.dtype), "weight_zero_point")],
                 "weight_dequantize")
        y = b.op("ConvTranspose", [padded, w], "deconv", group=p.channels,
                 kernel_shape=[len(a.kernel) for a in p.kernels], strides=[a.factor for a in p.kernels],
                 pads=join_pads([a.pads for a in p.kernels]))
        qdq.requantize_movement(b, {x: x_grid}, keep=(y,))
        return {match.node.output[0]: y}


FORMS = (QuantizedDeconv(),)
