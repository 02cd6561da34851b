"""Transposed convolution as sub-pixel convolution: output size, padding,
phase kernels and their cost.

ConvTranspose along one spatial axis (input size n, kernel k, stride s,
dilation d, extent e = (k - 1) * d + 1) scatters every input through the
kernel, then crops:

    z[o] = sum_{i*s + j*d = o} x[i] * w[j],   full = (n - 1) * s + e + output_padding
    y[t] = z[t + head],                       t in [0, out)

(`head` is the begin padding; `out` and `head` follow the spec, see
`output_geometry`).  Splitting the output into its s phases t = q*s + r
gives the sub-pixel identity: every phase is an ordinary stride-1
correlation of x with the taps j whose residue fits,

    y[q*s + r] = sum_{j : (r + head - j*d) % s == 0} x[q + rho_j] * w[j],
    rho_j = (r + head - j*d) / s.

The rho_j of one phase are spaced d / gcd(d, s) apart, so a phase is a Conv
with the phase kernel (those taps, reversed), dilation d / gcd(d, s), begin
pad -min(rho) and end pad count - n + max(rho).  In N-D the identity holds per
axis, and a phase of the N-D output is a tuple of axis phases.

Two ways to assemble the phases (`AxisPlan`):

  split   one Conv per phase, each with its own taps, pads and output count
          (no zero taps at all; the outputs are padded to a common block
          count and moved to space by a DCR pixel shuffle);
  shared  one Conv over the union window of all phases, Cout * prod(s)
          outputs (CRD), zero where a phase lacks a tap; the block grid may
          start `shift` outputs before y[0], which a Slice crops again.

A third assembly removes the last waste, the zero padding a phase conv
reads at the borders (`Tiles`, `border_tiles`):

  tiles   each phase's outputs cut, axis by axis, into pieces q in [a, b);
          a piece is a Conv with only the taps that reach x for some q in
          [a, b) (a piece between neighbouring cuts reads no padding at
          all), the pieces concatenated back along their axis.

MACs per batch item, as the driver counts them (zero taps included):

    ConvTranspose   Cout * Cin/group * prod_i(n_i * k_i)
    split           Cout * Cin/group * prod_i(sum_r count_ir * taps_ir)
    shared          Cout * Cin/group * prod_i(s_i * blocks_i * window_i)
    tiles           Cout * Cin/group * sum_tiles prod_i((b_i - a_i) * taps_i(a_i, b_i))

With every piece cut where its set of reaching taps changes, each
(output, tap) pair the tiles compute reads x inside [0, n): the tiles then
cost exactly the pairs of the definition that land in [0, out), which is at
most prod_i(n_i * k_i), the ConvTranspose's own count.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, fields, replace
from functools import cached_property, lru_cache
from math import gcd, prod
from typing import Optional, Sequence

import numpy as np

from convrewrite.geometry import MAX_PHASES, extent, same_pads, split_pads


class SpecConflict(ValueError):
    """The ONNX spec and onnxruntime disagree on this ConvTranspose, or the
    spec forbids the attribute combination; no rewrite can match both."""


class SpecAmbiguous(SpecConflict):
    """The ONNX spec (and its reference evaluator) and onnxruntime compute
    different outputs for this node: no rewrite can match both."""


class TooLarge(SpecConflict):
    """The node is beyond what a rewrite can sensibly plan (an absurd output
    or number of phases).  A SpecConflict, so a caller that skips on one
    skips on this too, with the reason."""


# Planning loops over phases and outputs: bound them by sane tensor sizes,
# never by attribute magnitudes (a stride of 2**20 must not take hours).
MAX_OUTPUT_ELEMENTS = 1 << 31   # spatial outputs of one channel of one batch item
# MAX_PHASES (convrewrite/geometry.py): prod(strides), Conv output channels per output channel


# --- output size and padding ------------------------------------------------

@dataclass(frozen=True)
class AxisGeometry:
    """One spatial axis of a ConvTranspose: y[t] = z[t + head], t < out."""

    n: int
    k: int
    s: int
    d: int
    head: int
    out: int
    widen: bool = True   # a single input position may take a stride of the kernel extent (`_one_input`)

    @property
    def full(self) -> int:
        """Length of z that holds data: (n - 1) * s + e."""
        return (self.n - 1) * self.s + extent(self.k, self.d)


def output_geometry(sizes: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                    dilations: Sequence[int], auto_pad: str = "NOTSET",
                    pads: Optional[Sequence[int]] = None,
                    output_padding: Optional[Sequence[int]] = None,
                    output_shape: Optional[Sequence[int]] = None) -> tuple[AxisGeometry, ...]:
    """Begin padding and output size per axis, as the ONNX spec computes them.

        full  = s * (n - 1) + output_padding + e
        pads given (NOTSET):   out = full - begin - end
        VALID:                 begin = end = 0
        output_shape given:    total = max(0, full - output_shape)  (pads ignored)
        SAME_*, no shape:      total = full - n * s
        total split:           SAME_UPPER (total//2, rest), otherwise (rest, total//2)

    An output_shape beyond `full` is filled with zeros at the end (total
    clamped at 0), as onnxruntime and the conformance data do; onnxruntime
    rejects one beyond (n - 1) * s + e + s - 1.  Raises SpecConflict where the
    spec and onnxruntime disagree or either rejects the combination.
    """
    r = len(kernel)
    adj = list(output_padding or [0] * r)
    if pads and len(pads) != 2 * r or len(adj) != r or not len(sizes) == len(strides) == len(dilations) == r:
        raise SpecConflict(f"pads {list(pads or [])}, output_padding {adj}, strides {list(strides)} or dilations "
                           f"{list(dilations)} do not have one entry per spatial axis (two for pads) of "
                           f"the kernel {list(kernel)}")
    if any(n < 1 for n in sizes):
        raise SpecConflict(f"the input's spatial size {list(sizes)} is empty: there is nothing to transpose")
    explicit = split_pads(pads, r)
    if auto_pad != "NOTSET" and any(b or e for b, e in explicit):
        raise SpecConflict(f"both pads {list(pads)} and auto_pad={auto_pad} are set, which the spec forbids; "
                           "keep one of them")
    if output_shape is not None and len(output_shape) not in (r, r + 2):
        raise SpecConflict(f"output_shape {list(output_shape)} has neither {r} nor {r + 2} entries; give one size "
                           "per spatial axis")
    shape = list(output_shape)[-r:] if output_shape is not None else None
    axes = []
    for i in range(r):
        n, k, s, d = sizes[i], kernel[i], strides[i], dilations[i]
        full = (n - 1) * s + extent(k, d) + adj[i]
        wanted = shape[i] if shape else None
        if wanted is not None and wanted > full - adj[i] + s - 1:
            raise SpecConflict(f"output_shape {wanted} exceeds the largest output an input of size {n} "
                               f"gives ((n - 1) * s + e + s - 1 = {full - adj[i] + s - 1}); onnxruntime rejects it; "
                               "fix output_shape")
        head, out = _head_and_out(full, n * s, wanted, auto_pad, explicit[i])
        axes.append(AxisGeometry(n, k, s, d, head, out))
    axes = _keep_square_blocks(axes)
    _check_size(axes)
    return tuple(axes)


def _keep_square_blocks(axes: list[AxisGeometry]) -> list[AxisGeometry]:
    """A 2-D node whose strides are equal keeps them where `_one_input` would
    make them differ: DepthToSpace needs one block size for both axes (or,
    at stride 1, no shuffle at all), and a Reshape/Transpose shuffle of
    unequal blocks needs rank-6 tensors, which no rank-4 target runs.  A map
    of one row (1 x W) under a 3x3 stride-2 kernel would take strides (3, 2)
    and fit no form on tflite, though DepthToSpace(2) serves it; the one-row
    axis then convolves some zero padding (its phases' windows overhang),
    the price of the simpler shuffle."""
    strides = {g.s for g in axes}
    if len(axes) != 2 or len(strides) != 1 or len({_one_input(g).s for g in axes}) == 1:
        return axes
    return [replace(g, widen=False) for g in axes]


def _check_size(axes: Sequence[AxisGeometry]) -> None:
    """Raise TooLarge for an output or a phase count no rewrite should plan."""
    outs = [g.out for g in axes]
    if prod(max(o, 0) for o in outs) > MAX_OUTPUT_ELEMENTS:
        raise TooLarge(f"the output would be {outs} per channel, more than {MAX_OUTPUT_ELEMENTS} elements; "
                       "check the strides, dilations, pads and output_shape")
    strides = [_one_input(g).s for g in axes]
    if prod(strides) > MAX_PHASES:
        raise TooLarge(f"strides {strides} make {prod(strides)} output phases, more than the {MAX_PHASES} a "
                       "sub-pixel rewrite plans (each phase is a Conv output channel per output channel)")


def _head_and_out(full: int, same_out: int, wanted: Optional[int], auto_pad: str,
                  explicit: tuple[int, int]) -> tuple[int, int]:
    if wanted is None and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if full < same_out:
            raise SpecAmbiguous(f"auto_pad={auto_pad} asks for output size {same_out} but kernel extent + "
                                f"output_padding only reach {full}: the spec pads the output to "
                                f"{same_out}, onnxruntime returns {full}; give explicit pads instead")
        wanted = same_out
    if wanted is None:
        begin, end = (0, 0) if auto_pad == "VALID" else explicit
        return begin, full - begin - end
    # An output_shape beyond `full` gets zeros at the end (total padding is
    # clamped at 0), as onnxruntime and the conformance data have it.
    split = "SAME_UPPER" if auto_pad == "SAME_UPPER" else "SAME_LOWER"
    return same_pads(max(0, full - wanted), split)[0], wanted


def output_size(sizes: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                dilations: Sequence[int], auto_pad: str = "NOTSET",
                pads: Optional[Sequence[int]] = None, output_padding: Optional[Sequence[int]] = None,
                output_shape: Optional[Sequence[int]] = None) -> list[int]:
    """The spatial output size of a ConvTranspose (see `output_geometry`)."""
    geometry = output_geometry(sizes, kernel, strides, dilations, auto_pad, pads,
                               output_padding, output_shape)
    return [g.out for g in geometry]


# --- one axis: phases as ordinary convolutions -------------------------------

def _hash_once(self) -> int:
    """A frozen dataclass's hash, as the dataclass gives it (its fields in
    order), worked out once per object: the plans and tiles below are shared
    by the nodes of one geometry (the caches here), and every node's
    lowering, a key of the forms' caches, hashes them again."""
    try:
        return self.__dict__["_hash"]
    except KeyError:
        self.__dict__["_hash"] = h = hash(tuple(getattr(self, f.name) for f in fields(self)))
        return h


@dataclass(frozen=True)
class AxisConv:
    """Conv geometry along one axis: `taps` are (u, j) pairs, phase kernel
    index u <- ConvTranspose kernel index j.  Negative pads mean "slice the
    input" (a Conv cannot pad negatively)."""

    size: int
    dilation: int
    begin: int
    end: int
    count: int
    taps: tuple[tuple[int, int], ...]

    __hash__ = _hash_once


@dataclass(frozen=True)
class AxisPlan:
    """All phases of one axis: `blocks` conv outputs per phase, the block grid
    starting `shift` outputs before y[0]; `phases[r]` is None for a phase that
    is bias only.  For the shared form every phase has the same size,
    dilation, pads and count."""

    form: str
    stride: int
    shift: int
    blocks: int
    out: int
    phases: tuple[Optional[AxisConv], ...]

    __hash__ = _hash_once

    def macs_factor(self) -> int:
        if self.form == "shared":
            conv = next((p for p in self.phases if p is not None), None)
            return self.stride * self.blocks * conv.size if conv else 0
        return sum(p.count * len(p.taps) for p in self.phases if p is not None)


def phase_offsets(g: AxisGeometry, shift: int) -> list[list[tuple[int, int]]]:
    """For each output phase r: the (rho, j) pairs, y[q*s + r - shift]
    gathering x[q + rho] * w[j].  Tap j belongs to the one phase r with
    r + head - shift - j*d divisible by s, so this is O(s + k)."""
    phases = [[] for _ in range(g.s)]
    for j in range(g.k):
        base = g.head - shift - j * g.d
        r = -base % g.s
        phases[r].append(((r + base) // g.s, j))
    return phases


def _useful(offsets: list[tuple[int, int]], n: int, count: int) -> list[tuple[int, int]]:
    """Drop taps that read only padding: x[q + rho] must hit [0, n) for some q < count."""
    return sorted((rho, j) for rho, j in offsets if -(count - 1) <= rho <= n - 1) if count > 0 else []


def _span(rhos: Sequence[int]) -> tuple[int, int, int]:
    """(lowest offset, dilation, kernel size) of the window holding `rhos`."""
    lo = min(rhos)
    step = gcd(*[rho - lo for rho in rhos]) or 1
    return lo, step, (max(rhos) - lo) // step + 1


def _window(taps: list[tuple[int, int]], span: tuple[int, int, int], n: int, count: int) -> AxisConv:
    """The Conv reading x[q + rho]: begin pad -lo, end pad count - n + hi."""
    lo, step, size = span
    hi = lo + (size - 1) * step
    return AxisConv(size, step, -lo, count - n + hi, count, tuple(((rho - lo) // step, j) for rho, j in taps))


def _one_input(g: AxisGeometry) -> AxisGeometry:
    """With a single input position the stride never matters (z[i*s + j*d]
    has i = 0 only); a stride of at least the kernel extent puts every tap in
    a phase of its own, so no conv window reads zero padding (a 1x1 input,
    as in a DCGAN's first layer, becomes a 1x1 Conv and a pixel shuffle)."""
    return replace(g, s=max(g.s, extent(g.k, g.d))) if g.n == 1 and g.widen else g


# Plans are pure functions of an axis's geometry, and a model repeats a few
# geometries: each is worked out once (AxisGeometry and AxisPlan are frozen).
GEOMETRY_CACHE = 1024


@lru_cache(maxsize=GEOMETRY_CACHE)
def split_plan(g: AxisGeometry) -> AxisPlan:
    """One conv per phase, each computing exactly the outputs y needs."""
    g = _one_input(g)
    blocks = -(-g.out // g.s)
    phases = []
    for r, offsets in enumerate(phase_offsets(g, 0)):
        count = -(-(g.out - r) // g.s)
        taps = _useful(offsets, g.n, count)
        if not taps:
            phases.append(None)
            continue
        phases.append(_window(taps, _span([rho for rho, _ in taps]), g.n, count))
    return AxisPlan("split", g.s, 0, blocks, g.out, tuple(phases))


@lru_cache(maxsize=GEOMETRY_CACHE)
def shared_plan(g: AxisGeometry) -> AxisPlan:
    """One window for all phases; the grid shift that costs least (phases
    all None if no tap reaches the output)."""
    g = _one_input(g)
    plans = [p for p in (_shared_at(g, shift) for shift in _shift_candidates(g)) if p is not None]
    if not plans:
        return AxisPlan("shared", g.s, 0, -(-g.out // g.s), g.out, (None,) * g.s)
    return min(plans, key=AxisPlan.macs_factor)


def _shift_candidates(g: AxisGeometry) -> list[int]:
    """The grid shifts worth trying, ascending: the first of each run of
    shifts that cost the same.  A plan's cost depends on the shift only
    through the block count ceil((out + shift) / s), which grows at shift
    (1 - out) mod s, and the tap offsets rho_j = ceil((head - j*d - shift) / s),
    each dropping by one at shift (head - j*d) mod s: O(k) shifts, not s."""
    points = {0, (1 - g.out) % g.s}
    points.update((g.head - j * g.d) % g.s for j in range(g.k))
    return sorted(points)


def _shared_at(g: AxisGeometry, shift: int) -> Optional[AxisPlan]:
    blocks = -(-(g.out + shift) // g.s)
    useful = [_useful(offsets, g.n, blocks) for offsets in phase_offsets(g, shift)]
    rhos = [rho for taps in useful for rho, _ in taps]
    if not rhos:
        return None
    conv = [_window(taps, _span(rhos), g.n, blocks) for taps in useful]
    return AxisPlan("shared", g.s, shift, blocks, g.out, tuple(conv))


# --- N-D: phases, kernels, cost ----------------------------------------------

def conv_transpose_macs(cin: int, cout: int, group: int, sizes: Sequence[int],
                        kernel: Sequence[int]) -> int:
    """Cin * prod(n) * Cout/group * prod(k): every input pixel through the kernel."""
    return cin * prod(sizes) * (cout // group) * prod(kernel)


def plan_macs(plans: Sequence[AxisPlan], cin: int, cout: int, group: int) -> int:
    return cout * (cin // group) * prod(p.macs_factor() for p in plans)


def phases(plans: Sequence[AxisPlan]) -> list[tuple[Optional[AxisConv], ...]]:
    """N-D phases in row-major order over the strides (the pixel shuffle's
    order); each is a tuple of axis convs, or None if it is bias only."""
    out = []
    for combo in itertools.product(*[p.phases for p in plans]):
        out.append(None if any(c is None for c in combo) else combo)
    return out


def conv_weight(w: np.ndarray, group: int) -> np.ndarray:
    """ConvTranspose weight [Cin, Cout/g, k...] -> Conv layout [Cout, Cin/g, k...]."""
    cin, cout_g, kernel = w.shape[0], w.shape[1], w.shape[2:]
    t = w.reshape(group, cin // group, cout_g, *kernel).swapaxes(1, 2)
    return t.reshape(group * cout_g, cin // group, *kernel)


def phase_kernel(wc: np.ndarray, axes: Sequence[AxisConv]) -> np.ndarray:
    """The phase kernels [Cout, Cin/g, size...]: tap u of axis i is w[j]."""
    k = np.zeros(wc.shape[:2] + tuple(a.size for a in axes), wc.dtype)
    if not all(a.taps for a in axes):
        return k
    us, js = _tap_index(tuple(axes))
    k[(slice(None), slice(None)) + us] = wc[(slice(None), slice(None)) + js]
    return k


@lru_cache(maxsize=GEOMETRY_CACHE)
def _tap_index(axes: tuple) -> tuple:
    """The open-mesh indexes (np.ix_) of the phase kernel's taps u and of the
    ConvTranspose kernel's j, per axis: they depend on the taps alone, so
    nodes of one geometry share them (read-only)."""
    us = np.ix_(*[[u for u, _ in a.taps] for a in axes])
    js = np.ix_(*[[j for _, j in a.taps] for a in axes])
    for index in us + js:
        index.flags.writeable = False
    return us, js


def shared_kernel(wc: np.ndarray, plans: Sequence[AxisPlan], dcr: bool = False) -> np.ndarray:
    """One kernel for all phases, output channel c * prod(s) + phase (CRD),
    or with `dcr` phase * Cout + c: the phase kernels side by side, gathered
    from wc in one indexing."""
    cout, cin = wc.shape[:2]
    gather = _shared_gather(tuple(plans), wc.shape[2:])
    # wc's taps flattened, one zero after them: the gather's -1 (no tap)
    flat = np.concatenate([wc.reshape(cout, cin, -1), np.zeros((cout, cin, 1), wc.dtype)], axis=2)
    k = np.moveaxis(flat[:, :, gather], 2, 0 if dcr else 1)   # [phase, Cout, ...] or [Cout, phase, ...]
    return k.reshape(cout * gather.shape[0], cin, *gather.shape[1:])


@lru_cache(maxsize=GEOMETRY_CACHE)
def _shared_gather(plans: tuple, kernel: tuple) -> np.ndarray:
    """[phase, size...]: the flat ConvTranspose kernel index of each tap of
    every phase kernel (`phase_kernel` on the indexes 1.. less one), -1
    where no tap is.  A function of the geometry alone (read-only)."""
    taps = np.arange(1, prod(kernel) + 1).reshape((1, 1) + tuple(kernel))
    gather = np.stack([phase_kernel(taps, combo)[0, 0] - 1
                       for combo in itertools.product(*[p.phases for p in plans])])
    gather.flags.writeable = False
    return gather


# --- tiles: phase outputs cut where the taps that reach x change ---------------

@dataclass(frozen=True)
class Tiles:
    """Phase outputs cut into tiles, one axis at a time.

    Along this axis, output phase r is the concatenation of `pieces[r]`
    (AxisConvs over consecutive output ranges; a piece without taps is bias
    only); piece k of phase r spans the remaining axes as `inner[r][k]`
    (None on the last axis, and for pieces without taps)."""

    pieces: tuple[tuple[AxisConv, ...], ...]
    inner: tuple[tuple[Optional["Tiles"], ...], ...]

    __hash__ = _hash_once

    def macs_factor(self) -> int:
        """sum over tiles of prod_i(count_i * taps_i)."""
        return self._macs_factor

    @cached_property   # a tiling is shared by the nodes of one geometry, whose forms each ask
    def _macs_factor(self) -> int:
        return sum(p.count * len(p.taps) * (t.macs_factor() if t else 1)
                   for ps, ts in zip(self.pieces, self.inner) for p, t in zip(ps, ts) if p.taps)

    def tile_count(self) -> int:
        """Convs (and bias-only pieces) the tiles take."""
        return sum(t.tile_count() if t and p.taps else 1
                   for ps, ts in zip(self.pieces, self.inner) for p, t in zip(ps, ts))


def axis_piece(offsets: Sequence[tuple[int, int]], n: int, a: int, b: int) -> AxisConv:
    """The Conv computing phase outputs q in [a, b): the taps (rho, j) with
    0 <= q + rho < n for some q there, window shifted so its output 0 is q = a."""
    taps = sorted((rho + a, j) for rho, j in offsets if -(b - 1) <= rho <= n - 1 - a)
    if not taps or b <= a:
        return AxisConv(0, 1, 0, 0, b - a, ())
    return _window(taps, _span([rho for rho, _ in taps]), n, b - a)


def _cuts(offsets: Sequence[tuple[int, int]], n: int, count: int) -> list[int]:
    """0 = c_0 < ... < c_m = count: tap rho reaches x from q = -rho until
    q = n - rho, so between cuts every output reads x through the same taps."""
    inside = {q for rho, _ in offsets for q in (-rho, n - rho) if 0 < q < count}
    return [0, *sorted(inside), max(count, 0)]


def _axis_pieces(g: AxisGeometry) -> list[tuple[list[int], dict]]:
    """Per phase: its cuts and the piece between every two of them."""
    axis = []
    for r, offsets in enumerate(phase_offsets(g, 0)):
        cuts = _cuts(offsets, g.n, -(-(g.out - r) // g.s))
        pieces = {(a, b): axis_piece(offsets, g.n, a, b) for i, a in enumerate(cuts) for b in cuts[i + 1:]}
        axis.append((cuts, pieces))
    return axis


def split_tiles(geometry: Sequence[AxisGeometry]) -> Tiles:
    """The split form as tiles: one piece per phase and axis."""
    tiles = None
    for axis in reversed([_axis_pieces(_one_input(g)) for g in geometry]):
        tiles = Tiles(tuple((pieces[cuts[0], cuts[-1]],) for cuts, pieces in axis),
                      tuple((tiles,) for _ in axis))
    return tiles


FRONTIER_STEP = 0.01  # frontiers keep a point only for 1 % fewer MACs than the last one


def border_tiles(geometry: Sequence[AxisGeometry], budget: int, bias_pieces: bool = True) -> Optional[Tiles]:
    """The tiling with the fewest tiles whose MAC factor is at most `budget`
    (fewer MACs on a tie); None if none is (a piece without taps needs a
    bias piece, which `bias_pieces=False` forbids).

    Per axis and phase, a tiling is a choice of cuts; N-D tilings nest, each
    piece with its own tiling of the axes after it.  A dynamic programme over
    the cut points keeps, for every tile count, the fewest MACs (a Pareto
    frontier), axis by axis from the last.  Cutting at every cut point costs
    exactly the definition's pairs, at most the ConvTranspose's MACs, and is
    always kept, so any budget >= that count is met."""
    frontier: Optional[dict] = None
    for g in reversed(geometry):
        frontier = _axis_frontier(_axis_pieces(_one_input(g)), frontier, bias_pieces)
        if not frontier:
            return None
    fits = [(t, m, tiles) for t, (m, tiles) in frontier.items() if m <= budget]
    return min(fits, key=lambda p: (p[0], p[1]))[2] if fits else None


def _axis_frontier(axis, inner: Optional[dict], bias_pieces: bool) -> dict:
    """tiles -> (fewest MACs, Tiles) for this axis, nesting `inner`."""
    total = {0: (0, ())}
    for cuts, between in axis:
        phase = _phase_frontier(cuts, between, inner, bias_pieces)
        combined = {}
        for t1, (m1, done) in total.items():
            for t2, (m2, chosen) in phase.items():
                _keep(combined, t1 + t2, m1 + m2, done + (chosen,))
        total = _thin(combined)
    return {t: (m, Tiles(tuple(tuple(p for p, _ in ch) for ch in phases),
                         tuple(tuple(sub for _, sub in ch) for ch in phases)))
            for t, (m, phases) in total.items()}


def _phase_frontier(cuts: list[int], between: dict, inner: Optional[dict], bias_pieces: bool) -> dict:
    """tiles -> (fewest MACs, ((piece, inner Tiles), ...)) covering one phase."""
    best = {cuts[0]: {0: (0, ())}}
    for k, b in enumerate(cuts[1:], 1):
        here = {}
        for a in cuts[:k]:
            piece = between[a, b]
            for t_piece, m_piece, sub in _piece_options(piece, inner, bias_pieces):
                for t, (m, chosen) in best.get(a, {}).items():
                    _keep(here, t + t_piece, m + m_piece, chosen + ((piece, sub),))
        best[b] = _thin(here)
    return best[cuts[-1]]


def _piece_options(piece: AxisConv, inner: Optional[dict], bias_pieces: bool) -> list:
    """(tiles, MACs, inner Tiles) for each way to tile one piece."""
    if not piece.taps:
        return [(1, 0, None)] if bias_pieces else []
    w = piece.count * len(piece.taps)
    if inner is None:
        return [(1, w, None)]
    return [(t, w * m, sub) for t, (m, sub) in inner.items()]


def _keep(front: dict, t: int, m: int, value) -> None:
    if t not in front or m < front[t][0]:
        front[t] = (m, value)


def _thin(front: dict) -> dict:
    """The Pareto points (MACs falling as tiles grow), each kept one at
    least FRONTIER_STEP below the last kept; the fewest-MACs point always."""
    if not front:
        return {}
    kept, last = {}, None
    for t in sorted(front):
        if last is None or front[t][0] < last * (1 - FRONTIER_STEP):
            kept[t], last = front[t], front[t][0]
    low = min(front, key=lambda t: (front[t][0], t))
    kept[low] = front[low]
    return kept


def tile_tree(tiles: Tiles, combo: Sequence[int]) -> tuple:
    """The tiles of N-D phase `combo`: ((piece, subtree), ...) along the
    first axis, subtree None on the last axis or for a bias-only piece."""
    return tuple((p, tile_tree(t, combo[1:]) if t is not None and p.taps else None)
                 for p, t in zip(tiles.pieces[combo[0]], tiles.inner[combo[0]]))
