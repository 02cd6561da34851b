"""ONNX Resize / Upsample as fixed linear maps, from the spec's formulas.

Resize is separable.  Along one resized axis of input length n and output
length m it computes, for every output index t,

    x_original = transform(t)                    coordinate_transformation_mode
    base       = ceil(x_original) - 1            the sample left of x_original
    ratio      = x_original - base               in (0, 1]
    y[t]       = sum_j  w_j(ratio) * x[clamp(base + j, 0, n - 1)]            (1)

where the weights w_j are the mode's: nearest rounding (one tap), linear
(1 - ratio, ratio), cubic (Keys' kernel with cubic_coeff_a), or their
antialiased, stretched versions when downsampling.  The clamp is the spec's
edge replication.  (This is onnx/reference/ops/op_resize.py's choice of "the
n nearest samples, ties to the left", written in closed form.)

Two forms of (1) are built here:

* `interpolation_matrix`: y = M @ x with M [m, n], for any static axis
  (align_corners, downsampling, antialias, exclude_outside included).
* `phase_taps` / `axis_kernel`: with an integer factor s and a periodic
  transform, x_original(t + s) = x_original(t) + 1, so output t = q*s + r
  uses phase r's taps shifted by q:

      y[q*s + r] = sum_{(d, w) in phase_taps[r]}  w * x[clamp(q + d, 0, n - 1)]   (2)

  After an edge Pad of (lo, hi) samples, clamp(q + d) = q + d + lo, and (2) is
  a stride-s transposed convolution with the 1-D kernel

      kernel[r + pad_begin - (d + lo) * s] = w                               (3)

  and ConvTranspose pads (pad_begin, pad_end) that crop its output to n*s.
  The N-D kernel is the outer product of the per-axis kernels.

How a node states all this (Upsample 7-9, Resize 10, 11-13 with roi, 18+
with axes / antialias / keep_aspect_ratio_policy) is read by `read_resize`.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property, lru_cache
from math import ceil, floor, prod
from typing import Optional, Sequence

import numpy as np

from convrewrite.core.graph import attributes
from convrewrite.core.preconditions import unknown_rank
from convrewrite.core.rewrite import Code

# Transforms with x_original(t + s) = x_original(t) + 1 at an integer scale s.
PERIODIC_MODES = ("half_pixel", "pytorch_half_pixel", "asymmetric", "half_pixel_symmetric",
                  "tf_half_pixel_for_nn")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "legacy")


class Unsupported(Exception):
    """The spec leaves the result undefined (e.g. all weights excluded), or
    the form would be too large to build (see the budgets below)."""


# Budgets that keep the work bounded by sane tensor sizes, never by the
# magnitude of a scale or a size (a scale of 1e9 must not hang or exhaust
# memory): the output, the matmul form's matrices and row loop, and the
# phases of the deconvolution form (the convtranspose pass plans as many).
MAX_OUTPUT_ELEMENTS = 1 << 31
MAX_MATRIX_ELEMENTS = 1 << 24   # one interpolation matrix [m, n], built in float64
MAX_MATRIX_ROWS = 1 << 16       # rows are computed one by one, in Python
MAX_FACTOR = 1 << 12


@dataclass(frozen=True)
class Unreadable:
    """Why a node's spec cannot be known before run time, or is not a
    well-defined resize: a reason without the node, and a code from Code."""

    reason: str
    code: str = Code.INVALID_NODE


@dataclass(frozen=True)
class Interpolation:
    """The attributes that decide the weights of (1)."""

    mode: str = "nearest"                      # nearest | linear | cubic
    coordinate_mode: str = "half_pixel"
    nearest_mode: str = "round_prefer_floor"   # "legacy": Resize-10 / Upsample
    cubic_a: float = -0.75
    exclude_outside: bool = False
    antialias: bool = False
    extrapolation_value: float = 0.0


WHOLE_AXIS = (Fraction(0), Fraction(1))   # the roi of an axis not cropped


@dataclass(frozen=True)
class AxisResize:
    """One axis: input and output length (an int, or None when symbolic),
    the scale the transform uses, and the roi (tf_crop_and_resize only)."""

    axis: int
    n_in: Optional[int]
    n_out: Optional[int]
    scale: Fraction
    roi: tuple = WHOLE_AXIS

    @cached_property   # asked for tens of times per node (the spec is frozen)
    def identity(self) -> bool:
        """Scale 1 and no crop: onnxruntime and the reference copy the axis
        (even for tf_half_pixel_for_nn, whose formula would shift it)."""
        return self.scale == 1 and self.n_out == self.n_in and self.roi == (0, 1)

    @property
    def factor(self) -> Optional[int]:
        """The integer upsampling factor, or None."""
        return int(self.scale) if self.scale.denominator == 1 and self.scale >= 1 else None


# --- coordinate transforms --------------------------------------------------

def source_coordinate(interp: Interpolation, t: int, ax: AxisResize, exact: bool = True,
                      float64: bool = False) -> Fraction:
    """x_original of output index t: exactly (the spec's formulas), or as
    its oracle evaluates them (exact=False): onnxruntime in float32, or for a
    float64 Resize, which onnxruntime does not run, onnx's reference
    evaluator in float64 (`float64`).  They differ only in the last bits,
    which can move a nearest sample when x_original is within rounding of a
    tie or an integer, and a linear or cubic weight by that rounding (1e-7
    in float32: beyond float64's tolerance); at integer factors they agree."""
    if not exact:
        if float64:
            return Fraction(_coordinate_f64(interp.coordinate_mode, t, ax))
        return Fraction(float(_coordinate_f32(interp.coordinate_mode, t, ax)))
    mode, s, n, m = interp.coordinate_mode, ax.scale, ax.n_in, ax.n_out
    half = Fraction(1, 2)
    if mode == "half_pixel":
        return (t + half) / s - half
    if mode == "pytorch_half_pixel":
        return (t + half) / s - half if m > 1 else Fraction(0)
    if mode == "half_pixel_symmetric":  # offset is 0 when m == s * n
        offset = Fraction(n, 2) * (1 - Fraction(m) / (s * n))
        return offset + (t + half) / s - half
    if mode == "asymmetric":
        return t / s
    if mode == "tf_half_pixel_for_nn":
        return (t + half) / s
    if mode == "align_corners":
        return Fraction(t * (n - 1), m - 1) if m > 1 else Fraction(0)
    if mode == "tf_crop_and_resize":
        start, end = ax.roi
        if m > 1:
            return start * (n - 1) + t * (end - start) * (n - 1) / (m - 1)
        return (start + end) / 2 * (n - 1)
    raise ValueError(f"unknown coordinate_transformation_mode {mode!r}")


def _coordinate_f32(mode: str, t: int, ax: AxisResize):
    """onnxruntime's float32 arithmetic for the same formulas, operation by operation."""
    f = np.float32
    s, n, m, x = f(ax.scale), f(ax.n_in), f(ax.n_out), f(t)
    half = f(0.5)
    if mode in ("half_pixel", "pytorch_half_pixel"):
        return (x + half) / s - half if mode == "half_pixel" or ax.n_out > 1 else f(0)
    if mode == "asymmetric":
        return x / s
    if mode == "tf_half_pixel_for_nn":
        return (x + half) / s
    if mode == "align_corners":
        return f(0) if ax.n_out == 1 else x * (n - f(1)) / (m - f(1))
    if mode == "half_pixel_symmetric":
        offset = n / f(2) * (f(1) - m / (s * n))
        return f(float(offset) + (t + 0.5) / float(s) - 0.5)
    start, end = f(ax.roi[0]), f(ax.roi[1])
    if ax.n_out > 1:
        return start * (n - f(1)) + x * (end - start) * (n - f(1)) / (m - f(1))
    return f(0.5 * float(start + end) * float(n - f(1)))


def _coordinate_f64(mode: str, t: int, ax: AxisResize) -> float:
    """onnx's reference evaluator's float64 arithmetic (the oracle of a
    float64 Resize), operation by operation: its scale is the float64 of
    the spec's (sizes: m / n), its output width scale * n.  Where it departs
    from the spec (pytorch_half_pixel of one output: -0.5, not 0), the spec's
    value is kept: the check then rolls such a rewrite back."""
    s, n, x = float(ax.scale), ax.n_in, float(t)
    width = s * n
    if mode in ("half_pixel", "pytorch_half_pixel"):
        return (x + 0.5) / s - 0.5 if mode == "half_pixel" or ax.n_out > 1 else 0.0
    if mode == "asymmetric":
        return x / s
    if mode == "tf_half_pixel_for_nn":
        return (x + 0.5) / s
    if mode == "align_corners":
        return 0.0 if width == 1 else x * (n - 1) / (width - 1)
    if mode == "half_pixel_symmetric":
        offset = n / 2 * (1 - ax.n_out / width)
        return offset + (x + 0.5) / s - 0.5
    start, end = float(ax.roi[0]), float(ax.roi[1])
    if width == 1:
        return (end - start) * (n - 1) / 2 + start * (n - 1)
    return x * (end - start) * (n - 1) / (width - 1) + start * (n - 1)


# --- weights ----------------------------------------------------------------

def keys_kernel(x: float, a: float) -> float:
    """Keys' cubic convolution kernel (Keys 1981, eq. 4) with coefficient a."""
    x = abs(x)
    if x <= 1:
        return ((a + 2) * x - (a + 3)) * x * x + 1
    if x < 2:
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return 0.0


def _nearest_up(ratio: Fraction, mode: str) -> bool:
    """Does nearest pick base + 1 (rather than base)?  ratio == 1 means
    x_original is an integer, which every mode keeps."""
    if ratio == 1 or mode == "ceil":
        return True
    if mode == "round_prefer_floor":
        return ratio > Fraction(1, 2)
    if mode == "round_prefer_ceil":
        return ratio >= Fraction(1, 2)
    return False  # floor


def taps(interp: Interpolation, x: Fraction, scale: Fraction) -> list[tuple[int, float]]:
    """The (unclamped source index, weight) pairs of (1) at x_original = x."""
    base = ceil(x) - 1
    ratio = x - base
    if interp.mode == "nearest":
        mode = interp.nearest_mode
        if mode == "legacy":  # onnxruntime's Resize-10 / Upsample rounding
            mode = "floor" if scale >= 1 else "ceil"
        return [(base + int(_nearest_up(ratio, mode)), 1.0)]
    support = 1 if interp.mode == "linear" else 2
    if interp.antialias and scale < 1:  # the filter stretched by 1 / scale
        start = floor(-support / scale) + 1
        args = [float(scale * (j - ratio)) for j in range(start, 2 - start)]
    else:
        start = 1 - support
        args = [float(j - ratio) for j in range(start, 2 - start)]
    if interp.mode == "linear":
        w = [max(0.0, 1.0 - abs(v)) for v in args]
    else:
        w = [keys_kernel(v, interp.cubic_a) for v in args]
    if interp.antialias and scale < 1:
        total = sum(w)
        w = [v / total for v in w]
    return [(base + start + k, v) for k, v in enumerate(w)]


# --- matrix form ------------------------------------------------------------

def interpolation_matrix(interp: Interpolation, ax: AxisResize,
                         exact: bool = False, float64: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(M [m, n] float64, extrapolated [m] bool) with y = M @ x along the axis,
    except that rows marked extrapolated (tf_crop_and_resize outside the
    input) are zero in M and hold extrapolation_value in y.  Coordinates are
    onnxruntime's float32 ones (`float64`: the reference evaluator's float64
    ones, a float64 Resize's oracle) unless `exact`."""
    n, m = ax.n_in, ax.n_out
    if m > MAX_MATRIX_ROWS or m * n > MAX_MATRIX_ELEMENTS:
        raise Unsupported(f"the interpolation matrix of axis {ax.axis} would be [{m}, {n}], beyond the "
                          f"{MAX_MATRIX_ROWS} rows and {MAX_MATRIX_ELEMENTS} entries the matmul form builds")
    if ax.identity:
        return np.eye(n), np.zeros(n, bool)
    matrix, outside = np.zeros((m, n)), np.zeros(m, bool)
    for t in range(m):
        x = source_coordinate(interp, t, ax, exact, float64)
        if interp.coordinate_mode == "tf_crop_and_resize" and not 0 <= x <= n - 1:
            outside[t] = True
            continue
        row = taps(interp, x, ax.scale)
        if interp.exclude_outside:
            row = _renormalized([(i, w) for i, w in row if 0 <= i < n], t)
        for i, w in row:
            matrix[t, min(max(i, 0), n - 1)] += w
    return matrix, outside


def _renormalized(row, t: int):
    total = sum(w for _, w in row)
    if total == 0:
        raise Unsupported(f"exclude_outside=1 leaves output {t} without any weight")
    return [(i, w / total) for i, w in row]


# --- deconvolution form -----------------------------------------------------

def phase_taps(interp: Interpolation, factor: int) -> tuple:
    """Per output phase r in [0, factor): ((d, w), ...) of (2), equal source
    offsets merged and zero weights dropped.  Needs a periodic transform."""
    if interp.coordinate_mode not in PERIODIC_MODES:
        raise ValueError(f"{interp.coordinate_mode} is not periodic")
    if factor > MAX_FACTOR:  # one phase per output position of a period
        raise Unsupported(f"upsampling factor {factor} has more phases than the {MAX_FACTOR} the "
                          "deconvolution form builds")
    one_period = AxisResize(0, 1, factor, Fraction(factor))  # n = 1, m = s: offset terms vanish
    phases = []
    for r in range(factor):
        merged: dict[int, float] = {}
        for d, w in taps(interp, source_coordinate(interp, r, one_period), Fraction(factor)):
            merged[d] = merged.get(d, 0.0) + w
        phases.append(tuple((d, w) for d, w in sorted(merged.items()) if w != 0.0))
    return tuple(phases)


@dataclass(frozen=True)
class AxisKernel:
    """(3) on one axis: edge pad (lo, hi), ConvTranspose stride / pads / kernel."""

    factor: int
    edge: tuple[int, int]
    pads: tuple[int, int]
    kernel: tuple[float, ...]
    phases: tuple            # phase_taps, kept for the MAC-free nearest form


def axis_kernel(phases: Sequence, factor: int) -> AxisKernel:
    """The ConvTranspose geometry of (3) for one axis's phase taps."""
    offsets = [d for phase in phases for d, _ in phase]
    lo, hi = max(0, -min(offsets)), max(0, max(offsets))
    # kernel index k = r + pad_begin - (d + lo) * s must be >= 0 for every tap
    pad_begin = max((d + lo) * factor - r for r, phase in enumerate(phases) for d, _ in phase)
    size = max(r - (d + lo) * factor for r, phase in enumerate(phases) for d, _ in phase) + pad_begin + 1
    kernel = [0.0] * size
    for r, phase in enumerate(phases):
        for d, w in phase:
            kernel[r + pad_begin - (d + lo) * factor] = w
    # full output (n + lo + hi - 1) * s + size, cropped to n * s
    pad_end = (lo + hi - 1) * factor + size - pad_begin
    return AxisKernel(factor, (lo, hi), (pad_begin, pad_end), tuple(kernel), tuple(phases))


def depthwise_kernel(kernels: Sequence[AxisKernel], channels: int, dtype) -> np.ndarray:
    """The outer product of the per-axis kernels, as a ConvTranspose weight
    [C, 1, k_1, ..., k_r] for group = C."""
    w = np.ones(())
    for k in kernels:
        w = np.multiply.outer(w, np.asarray(k.kernel))
    with np.errstate(over="ignore"):   # a huge cubic_coeff_a: inf, as in the runtime's own float weights
        return np.broadcast_to(w, (channels, 1, *w.shape)).astype(dtype)


def is_plain_nearest(kernels: Sequence[AxisKernel]) -> bool:
    """Every phase reads x[q] with weight 1: the kernel is all ones (floor(t / s))."""
    return all(phase == ((0, 1.0),) for k in kernels for phase in k.phases)



@lru_cache(maxsize=256)
def resize_kernel(interp: Interpolation, factor: int) -> AxisKernel:
    """axis_kernel(phase_taps(interp, factor), factor), worked out once per
    interpolation and factor (every Resize of a model usually shares one)."""
    return axis_kernel(phase_taps(interp, factor), factor)


def identity_kernel() -> AxisKernel:
    """An axis left as it is: kernel [1], stride 1."""
    return AxisKernel(1, (0, 0), (0, 0), (1.0,), (((0, 1.0),),))


# --- reading a node ---------------------------------------------------------
#
#   Upsample-7        X; attributes scales, mode (nearest | linear)
#   Upsample-9, Resize-10
#                     X, scales
#   Resize-11         X, roi, scales, sizes (scales may be empty)
#   Resize-13         roi, scales optional
#   Resize-18         attributes axes, antialias, keep_aspect_ratio_policy
#   Resize-19         coordinate mode half_pixel_symmetric
#
# Upsample and Resize-10 have no coordinate or rounding attribute: both are
# asymmetric, and onnxruntime rounds down when upsampling (so Upsample is
# np.repeat, as in the reference) and up when downsampling ("legacy").

COORDINATE_MODES = {
    11: ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn",
         "tf_crop_and_resize"),
    13: ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_crop_and_resize"),
    19: ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
         "tf_crop_and_resize"),
}
POLICIES = ("stretch", "not_larger", "not_smaller")
UNSCALED = Fraction(1)


@dataclass(frozen=True)
class ResizeSpec:
    """A Resize / Upsample node as numbers: its interpolation and, for every
    input axis in order, the axis's sizes and scale."""

    interp: Interpolation
    axes: tuple[AxisResize, ...]

    @cached_property
    def resized(self) -> tuple[AxisResize, ...]:
        return tuple(ax for ax in self.axes if not ax.identity)

    def __hash__(self) -> int:
        """The fields' hash, as the dataclass would give it, worked out once:
        a spec is the key of the forms' caches, asked several times per
        node, and its Fractions hash slowly."""
        try:
            return self.__dict__["_hash"]
        except KeyError:
            self.__dict__["_hash"] = h = hash((self.interp, self.axes))
            return h


def resize_version(op_type: str, opset: int) -> int:
    """The version of the operator's schema in effect at `opset`."""
    versions = (7, 9, 10) if op_type == "Upsample" else (10, 11, 13, 18, 19)
    return max([v for v in versions if v <= opset], default=versions[0])


def read_resize(node, graph) -> "ResizeSpec | Unreadable":
    """The node's spec, or why it cannot be known before run time or is not
    well defined (a reason without the leading node name, and its code)."""
    shape = graph.shape(node.input[0])
    if shape is None:
        return Unreadable(unknown_rank(graph, node.input[0]), Code.DYNAMIC_SHAPE)
    interp = read_interpolation(node, graph.opset())
    if isinstance(interp, str):
        return Unreadable(interp)
    targets = _targets(node, graph, len(shape))
    if isinstance(targets, Unreadable):
        return targets
    kind, values, axes = targets
    roi = _roi(node, graph, interp, len(axes))
    if isinstance(roi, Unreadable):
        return roi
    dims = [d if isinstance(d, int) else None for d in shape]
    per_axis = _axis_resizes(node, kind, values, axes, roi, dims)
    if isinstance(per_axis, Unreadable):
        return per_axis
    return _checked(ResizeSpec(interp, per_axis), graph.shape(node.output[0]))


def read_interpolation(node, opset: int) -> "Interpolation | str":
    a, version = attributes(node), resize_version(node.op_type, opset)
    mode = a.get("mode", "nearest")
    if node.op_type == "Upsample" or version == 10:
        if mode not in ("nearest", "linear"):
            return f"mode {mode!r} is not defined for {node.op_type}-{version}"
        return Interpolation(mode, "asymmetric", "legacy")
    if mode not in ("nearest", "linear", "cubic"):
        return f"mode {mode!r} is not one of nearest, linear, cubic"
    ctm = a.get("coordinate_transformation_mode", "half_pixel")
    allowed = COORDINATE_MODES[max(v for v in COORDINATE_MODES if v <= version)]
    if ctm not in allowed:
        return (f"coordinate_transformation_mode {ctm!r} is not defined in Resize-{version}; "
                f"use one of {', '.join(allowed)} or change the model's opset")
    nearest = a.get("nearest_mode", "round_prefer_floor")
    if nearest not in NEAREST_MODES[:4]:
        return f"nearest_mode {nearest!r} is not one of {', '.join(NEAREST_MODES[:4])}"
    if mode == "nearest" and a.get("antialias", 0):
        return "antialias=1 is defined for linear and cubic only, not nearest"
    return Interpolation(mode, ctm, nearest, float(a.get("cubic_coeff_a", -0.75)),
                         bool(a.get("exclude_outside", 0)), bool(a.get("antialias", 0)),
                         float(a.get("extrapolation_value", 0.0)))


def _targets(node, graph, rank: int):
    """("scales" | "sizes", values, axes), or why not (Unreadable)."""
    a, opset = attributes(node), graph.opset()
    own: list = []   # entries of sizes that copy the input's own dim
    if node.op_type == "Upsample" and resize_version("Upsample", opset) < 9:
        values, kind = a.get("scales"), "scales"
        if values is None:
            return Unreadable("has no scales attribute")
    else:
        first = 1 if node.op_type == "Upsample" or resize_version("Resize", opset) == 10 else 2
        named = [(k, node.input[i]) for k, i in (("scales", first), ("sizes", first + 1))
                 if len(node.input) > i and node.input[i]]
        known = []
        for k, name in named:
            v = graph.constant(name)
            if v is None and k == "sizes":
                v, own = _sizes_with_own_dims(node, graph, name, rank)
            if v is None:
                return _runtime_reason(graph, name, k)
            if v.size:
                known.append((k, v))
        if len(known) != 1:
            return Unreadable("needs exactly one of scales and sizes" if known else "has neither scales nor sizes")
        kind, values = known[0]
    axes = [int(v) + rank if int(v) < 0 else int(v) for v in a.get("axes", range(rank))]
    if sorted(set(axes)) != sorted(axes) or not all(0 <= v < rank for v in axes):
        return Unreadable(f"axes {a.get('axes')} are not distinct axes of a rank-{rank} input")
    values = np.asarray(values).reshape(-1)
    if len(values) != len(axes):
        return Unreadable(f"has {len(values)} {kind} for {len(axes)} axes")
    if own:  # sizes[k] is the input's own dim k: the axis is not resized
        keep = [k for k in range(len(axes)) if k not in own]
        values, axes = values[keep], [axes[k] for k in keep]
    if node.op_type == "Upsample" and not all(values >= 1):
        return Unreadable(f"Upsample scales {values.tolist()} must be >= 1 (the operator only upsamples)")
    return kind, values, axes


def _sizes_with_own_dims(node, graph, name: str, rank: int):
    """(sizes, [k...]) when the only non-constant entries k of `sizes` copy
    the input's own symbolic dim on that axis (dynamo's dynamic-batch
    exports: Concat(Shape(x)[0:2], [H, W])), so those axes keep their size;
    else (None, []).  Each symbolic dim takes its own probe values
    (GraphView.probe_value), so an entry is traced to the dim it copies."""
    partial = graph.partial_constant(name)
    dims = graph.shape(node.input[0])
    if partial is None or dims is None or attributes(node).get("keep_aspect_ratio_policy", "stretch") != "stretch":
        return None, []
    values, known = (np.asarray(v).reshape(-1) for v in partial)
    axes = [int(v) + rank if int(v) < 0 else int(v) for v in attributes(node).get("axes", range(rank))]
    if len(values) != len(axes) or any(not 0 <= ax < rank for ax in axes):
        return None, []
    own = [k for k in range(len(values)) if not known[k]]
    for k in own:
        symbol = dims[axes[k]]
        if not isinstance(symbol, str) or values[k] != graph.probe_value(0, symbol):
            return None, []
    return values, own


def _runtime_reason(graph, name: str, what: str) -> Unreadable:
    """A scales / sizes / roi input that is not a constant: from a Shape
    chain, the input's dimensions are not static (fix them); otherwise the
    value itself is computed at run time (make it an initializer)."""
    if graph.is_graph_input(name):
        return Unreadable(f"{what} '{name}' is a graph input; make it an initializer to lower the node",
                          Code.RUNTIME_WEIGHT)
    if graph.is_sparse_initializer(name):
        return Unreadable(f"{what} '{name}' is a sparse_initializer; make it a dense initializer to lower the node",
                          Code.RUNTIME_WEIGHT)
    if _reads_shape(graph, name, depth=12):
        return Unreadable(f"{what} '{name}' is computed from a tensor's shape, which is not static; give the "
                          "model static input shapes so the Shape chain folds to a constant", Code.DYNAMIC_SHAPE)
    return Unreadable(f"{what} '{name}' is computed at run time; make it a constant to lower the node",
                      Code.RUNTIME_WEIGHT)


def _reads_shape(graph, name: str, depth: int) -> bool:
    node = graph.producer(name)
    if node is None or depth == 0:
        return False
    return node.op_type == "Shape" or any(_reads_shape(graph, i, depth - 1) for i in node.input if i)


def _roi(node, graph, interp: Interpolation, count: int):
    """Per listed axis (start, end) for tf_crop_and_resize, else None."""
    if interp.coordinate_mode != "tf_crop_and_resize":
        return None
    name = node.input[1] if len(node.input) > 1 else ""
    value = graph.constant(name) if name else None
    if value is None:
        return _runtime_reason(graph, name, "roi") if name else Unreadable("tf_crop_and_resize needs a roi")
    value = np.asarray(value).reshape(-1)
    if len(value) != 2 * count:
        return Unreadable(f"roi has {len(value)} values for {count} axes")
    if not np.isfinite(value.astype(np.float64)).all():
        return Unreadable(f"roi {value.tolist()} is not finite")
    return [(Fraction(float(value[k])), Fraction(float(value[k + count]))) for k in range(count)]


def _axis_resizes(node, kind, values, axes, roi, dims):
    scales = {ax: UNSCALED for ax in range(len(dims))}
    outs = {ax: n for ax, n in enumerate(dims)}
    if kind == "scales":
        for ax, v in zip(axes, values):
            if not 0 < v < float("inf"):
                return Unreadable(f"scale {float(v)} on axis {ax} is not a positive, finite number")
            if dims[ax] is not None and float(v) * dims[ax] > MAX_OUTPUT_ELEMENTS:  # before float32 overflows
                return _too_large([None if a != ax else float(v) * dims[ax] for a in range(len(dims))])
            scales[ax] = Fraction(float(v))
            # onnxruntime: static_cast<int64_t>(float(scale) * float(n))
            outs[ax] = None if dims[ax] is None else int(np.float32(v) * np.float32(dims[ax]))
    else:
        if values.dtype.kind not in "iu":  # the spec's sizes are int64; a float one may even hold NaN
            return Unreadable(f"sizes {values.tolist()} are not integers")
        if any(dims[ax] is None for ax in axes):
            return Unreadable("sizes need the input's static size on every resized axis; give the input a static shape",
                              Code.DYNAMIC_SHAPE)
        if any(int(v) < 0 or dims[ax] == 0 for ax, v in zip(axes, values)):
            return Unreadable(f"sizes {values.tolist()} do not fit the input shape {dims}")
        ratios = {ax: Fraction(int(v), dims[ax]) for ax, v in zip(axes, values)}
        policy = attributes(node).get("keep_aspect_ratio_policy", "stretch")
        if policy not in POLICIES:
            return Unreadable(f"keep_aspect_ratio_policy {policy!r} is not one of {', '.join(POLICIES)}")
        written = attributes(node).get("axes")
        if policy != "stretch" and written is not None and any(a < 0 for a in written):
            # onnxruntime (1.32) then computes another size (axes [-2, -1]: the input's; [-1, 2]: the sizes
            # as if stretched, on the wrong axis) and onnx's reference evaluator raises
            return Unreadable(f"keep_aspect_ratio_policy {policy} with negative axes {list(written)}: onnxruntime "
                              "computes another output size there than the spec and onnx's reference evaluator "
                              "fails on it, so no engine computes what the spec says to check a rewrite against; "
                              f"write the axes as {list(axes)}", Code.SPEC_AMBIGUOUS)
        if policy != "stretch":
            s = (min if policy == "not_larger" else max)(ratios.values())
            ratios = {ax: s for ax in ratios}
        for ax, s in ratios.items():
            scales[ax] = s
            outs[ax] = floor(s * dims[ax] + Fraction(1, 2)) if policy != "stretch" else int(s * dims[ax])
    rois = dict(zip(axes, roi)) if roi else {}
    return tuple(AxisResize(ax, dims[ax], outs[ax], scales[ax], rois.get(ax, WHOLE_AXIS))
                 for ax in range(len(dims)))


def _too_large(shape) -> Unreadable:
    shown = ["?" if n is None else f"{n:g}" if isinstance(n, float) else n for n in shape]
    return Unreadable(f"the output would be [{', '.join(map(str, shown))}], more than {MAX_OUTPUT_ELEMENTS} "
                      "elements; check the scales or sizes", Code.TOO_LARGE)


def _checked(spec: ResizeSpec, inferred) -> "ResizeSpec | Unreadable":
    """Refuse nodes whose result depends on the implementation: the output
    size, or an axis onnxruntime copies where the spec resamples it; and
    outputs too large to lower at all."""
    computed = [ax.n_out for ax in spec.axes]
    if 0 in computed or 0 in [ax.n_in for ax in spec.axes]:
        return Unreadable(f"the input or the output is empty (output shape {computed}); there is nothing to resize",
                          Code.EMPTY_OUTPUT)
    if prod(n for n in computed if n is not None) > MAX_OUTPUT_ELEMENTS:
        return _too_large(computed)
    if inferred is not None and len(inferred) == len(spec.axes) and any(
            isinstance(i, int) and c is not None and i != c for i, c in zip(inferred, computed)):
        return Unreadable(f"shape inference gives the output shape {list(inferred)} but onnxruntime computes "
                          f"{computed} from the scales (float32 rounding); the output size is ambiguous, give sizes "
                          "instead", Code.SPEC_AMBIGUOUS)
    uses_length = spec.interp.coordinate_mode in ("align_corners", "tf_crop_and_resize", "pytorch_half_pixel")
    for ax in spec.resized:
        fractional = ax.n_in is not None and ax.scale * ax.n_in != ax.n_out
        if uses_length and fractional and (spec.interp.coordinate_mode != "pytorch_half_pixel" or ax.n_out == 1):
            return Unreadable(f"{spec.interp.coordinate_mode} on axis {ax.axis} uses length_resized, which the "
                              f"ONNX reference reads as scale * n = {float(ax.scale * ax.n_in):g} and onnxruntime as "
                              f"the output size {ax.n_out}, so the node's result is implementation-defined; give "
                              "sizes instead of scales", Code.SPEC_AMBIGUOUS)
        if spec.interp.coordinate_mode == "pytorch_half_pixel" and ax.n_out == 1 and spec.interp.mode == "cubic":
            return Unreadable(f"pytorch_half_pixel on axis {ax.axis} resizes to a single sample, whose coordinate "
                              "is 0 in the spec and onnxruntime but -0.5 in the ONNX reference; with cubic weights "
                              "the two differ, so the node's result is implementation-defined", Code.SPEC_AMBIGUOUS)
    for ax in spec.axes:
        keeps_size = ax.n_in is not None and ax.n_out == ax.n_in > 1 and ax.scale != 1
        if ax.scale == 1 and ax.roi != (0, 1) or keeps_size:
            return Unreadable(f"axis {ax.axis} keeps its size {ax.n_in} at scale {float(ax.scale):g} with roi "
                              f"{[float(v) for v in ax.roi]}: onnxruntime copies such an axis while the ONNX "
                              "reference resamples it, so the node's result is implementation-defined",
                              Code.SPEC_AMBIGUOUS)
    return spec
