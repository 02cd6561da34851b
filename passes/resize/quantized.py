"""Resize (linear, cubic) in a QDQ group, lowered without leaving the integers.

Before:
    DQ(x) -> Resize(linear | cubic, integer factors) -> Q(y) -> ...

After (deconv, quantized):
    DQ(x) -> Pad(edge) -> Q -> DQ (x's grid)
          -> ConvTranspose(DQ(w int8 | uint8, scale 1/D, zero point 0), group C, no bias) -> Q(y) -> ...

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
QLinearConv with uint8 and with int8 activations alike.  The edge Pad is
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
from convrewrite.geometry import join_pads

from .forms import Deconv, _edge_mode, _edge_pad, deconv_notes

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


class QuantizedDeconv(Deconv):
    """Deconv in a QDQ group: the interpolation kernel as an int8 weight."""

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

    def build(self, match, variant, graph, b) -> dict:
        p = match.params
        x_grid, _ = qdq.group_grids(match.node, graph)
        k = int_kernel(p.kernels, p.factors)
        deconv_notes(b, p)
        b.note("quantized: " + k.describe() + "; Q/DQ of x's grid after the edge pad")
        x = match.node.input[0]
        padded = _edge_pad(b, x, p.kernels, _edge_mode(variant))
        values = np.broadcast_to(k.values, (p.channels, 1, *k.values.shape)).copy()
        w = b.op(qdq.DEQUANTIZE, [b.initializer(values, "weight_q"),
                                  b.initializer(np.array(k.scale, np.float32), "weight_scale"),
                                  b.initializer(np.zeros((), k.values.dtype), "weight_zero_point")],
                 "weight_dequantize")
        y = b.op("ConvTranspose", [padded, w], "deconv", group=p.channels,
                 kernel_shape=[len(a.kernel) for a in p.kernels], strides=[a.factor for a in p.kernels],
                 pads=join_pads([a.pads for a in p.kernels]))
        qdq.requantize_movement(b, {x: x_grid}, keep=(y,))
        return {match.node.output[0]: y}


FORMS = (QuantizedDeconv(),)
