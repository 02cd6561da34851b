"""dilated-conv: dilated Conv -> space-to-batch / undilated Conv / batch-to-space.

Before:
    x [N, C, n...] --Conv(W [O, C/G, k...], B, dilations d, strides s, pads)--> y [N, O, out...]

After, batch form (default; mode "batch"):
    x --Slice?--Pad--Slice[::g]?--space_to_batch--> [P*N, C, m...]
      --Conv(W, B, strides s', group G)--> [P*N, O, q...] --batch_to_space--Slice?--> y
    (space_to_batch is SpaceToDepth + Reshape/Transpose/Reshape for 2-D equal
    rates, Reshape/Transpose/Reshape otherwise; batch_to_space its inverse)

After, depth form (mode "depth": batch stays N; weight tiled P times, group P*G):
    x --Slice?--Pad--Slice[::g]?--SpaceToDepth--Conv(tile(W), tile(B))--DepthToSpace--Slice?--> y

After, slices form (mode "slices": no tensor above rank max(4, rank of x)):
    x --Slice?--Pad--+--Slice[b*s::d]--Conv(W, B, strides s')--+--Concat--DepthToSpace--Slice?--> y
                     +--Slice[...]-----Conv(W, B, strides s')--+   (or Concat+Reshape per axis)

After, taps form (phase images below `taps_below` outputs, e.g. ASPP rates on
a 33x33 map, in every mode; or mode "taps"):
    x --Slice?--Pad--+--Slice[t*d::s]--Conv(W[..t..], B)--+--Add...--> y
                     +--Slice[...]-----Conv(W[..t..])-----+

After, subsample (d divides s: only x_pad[::d] is read) and plain (the
simplifications below leave no dilation):
    x --Slice?--Pad?--Slice[::d]--Conv(W, B, strides s/d)--> y
    x --Slice?--> Conv(W[taps], B, strides s, pads) --> y

Identity, per axis, with g = gcd(s, d), P = d/g phases, s' = s/g, i = a*P + b:

    y[a*P + b] = sum_t W[t] x_pad[i*s + t*d] = Conv_{s', undilated}(x_pad[b*s :: d], W)[a]

(convrewrite/space_to_batch.py).  When s divides d or d divides s the phases
are one block split of x_pad[::g] (batch and depth forms); otherwise only
strided Slices reach them and the slices form is used.  The taps form is the
same sum taken tap by tap: y = B + sum_t Conv_{undilated}(x_pad[t*d :: s], W[t]).

Exact simplifications first: a kernel of size 1 along an axis makes its
dilation meaningless; taps that, for the static input size, only ever read
padding are dropped (a sliced weight initializer), and an axis left with one
tap is undilated -- DeepLab's ASPP at rate 12/24/36 on an 8x8 map becomes a
1x1 Conv.

Chains (batch form, stride 1): later dilated Convs of the same rate reached
through spatially pointwise ops (BatchNorm, Relu, Add, 1x1 Conv, ...) stay in
batch form in one rewrite; see convrewrite/phase_chain.py.

With a target profile (options["target"]): a Conv the target runs as it is is
left alone; otherwise the forms are tried in order of preference (taps for
tiny phase images, the mode, then batch, depth, slices, taps) and the first
whose new nodes all fit the profile is built (convrewrite.target.pick_form);
a chain is kept only when its whole replacement fits.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from math import prod
from typing import ClassVar, Optional

import numpy as np
import onnx

from convrewrite.core.builder import Builder
from convrewrite.core.graph import GraphView, attributes
from convrewrite.geometry import conv_output_size, conv_pads, extent, geometry_problem, join_pads
from convrewrite.emit.pixel_shuffle import pixel_shuffle, pixel_unshuffle
from convrewrite.core.rewrite import Match, Replacement, Skip
Profile = needs_lowering = pick_form = replacement_violations = runs_as_is_reason = None  # TEMP
from convrewrite.emit.space_to_batch import batch_to_space, crop_to, interleave, space_to_batch, strided_slice, subsample
from .phases import (AxisPhases, live_taps, phase_images, trimmed, window, window_pads)
from convrewrite.emit.opset_ops import slice_axes
from .chain import (Grid, Region, copy_node, data_inputs, from_phase, grow, phase_window,
                                     to_phase, zero_garbage)

MODES = ("batch", "depth", "slices", "taps")
DEFAULT_DEPTH_WEIGHT_LIMIT = 16 << 20   # bytes of the tiled depth-form weight
DEFAULT_TAPS_BELOW = 64                 # phase images with fewer outputs: taps form
FLOAT_TYPES = (onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT)   # what onnxruntime's Conv runs
MIN_OPSET = 5                            # Reshape with a shape input


@dataclass(frozen=True)
class Lowering:
    """What build needs: the form, the simplified axes and the conv's tensors."""

    form: str                                   # plain | subsample | batch | depth | slices
    axes: tuple[AxisPhases, ...]
    channels: int                               # C
    out_channels: int                           # O
    group: int
    weight: str
    bias: str                                   # "" when absent
    taps: Optional[tuple[tuple[int, int], ...]]  # kept tap range per axis; None: all


@dataclass(frozen=True)
class Chain:
    """Several dilated Convs (and the pointwise ops between them) kept in
    batch form: the first one's lowering, the phase grid, the region."""

    start: Lowering
    grid: Grid
    region: Region


@dataclass(frozen=True)
class DilatedConvToSpaceToBatch:
    name: ClassVar[str] = "dilated-conv"
    description: ClassVar[str] = "dilated Conv -> SpaceToBatch / Conv / BatchToSpace from standard ops, exact"
    mode: str = "batch"
    depth_weight_limit: int = DEFAULT_DEPTH_WEIGHT_LIMIT
    taps_below: int = DEFAULT_TAPS_BELOW
    chains: bool = True
    target: Optional[Profile] = None        # lower only what it cannot run, in a form it can

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"dilated_mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if int(self.depth_weight_limit) < 0 or int(self.taps_below) < 0:
            raise ValueError(f"depth_weight_limit and dilated_taps_below must be >= 0, not "
                             f"{self.depth_weight_limit!r}, {self.taps_below!r}")

    @classmethod
    def from_options(cls, options: dict) -> "DilatedConvToSpaceToBatch":
        limit, below = options.get("depth_weight_limit"), options.get("dilated_taps_below")
        return cls(options.get("dilated_mode") or "batch",
                   DEFAULT_DEPTH_WEIGHT_LIMIT if limit is None else int(limit),
                   DEFAULT_TAPS_BELOW if below is None else int(below),
                   bool(options.get("dilated_chains", True)), options.get("target"))

    def candidate(self, node: onnx.NodeProto, graph: GraphView) -> bool:
        return (node.op_type == "Conv" and node.domain in ("", "ai.onnx")
                and any(d > 1 for d in attributes(node).get("dilations", [])))

    # --- match ------------------------------------------------------------

    def match(self, node: onnx.NodeProto, graph: GraphView) -> Match | Skip:
        single = self._single(node, graph)
        if not self.chains or isinstance(single, Skip) or not _starts_chain(single.params, graph):
            return single
        p: Lowering = single.params
        grid = Grid(graph.shape(node.input[0])[0], tuple(a.out for a in p.axes), tuple(a.phases for a in p.axes))
        region = grow(graph, node, grid, lambda n: self._chain_conv(n, graph, grid))
        if region is None:
            return single
        notes = single.notes + (f"chain: {len(region.convs) + 1} dilated Convs and "
                                f"{len(region.nodes) - len(region.convs) - 1} other ops kept in batch form "
                                f"(exits: {', '.join(region.exits)})",)
        chain = Match(node, Chain(p, grid, region), nodes=region.nodes, notes=notes)
        misfit = self._chain_misfit(chain, graph)
        if misfit:
            return Match(node, p, notes=single.notes + (f"target {self.target.name}: the chain of "
                                                        f"{len(region.convs) + 1} dilated Convs is not kept in "
                                                        f"batch form: {misfit}",))
        return chain

    def match_alone(self, node: onnx.NodeProto, graph: GraphView) -> Match | Skip:
        """The node by itself, never as part of a chain (for a driver that
        re-matches the members of a rolled-back chain)."""
        return self._single(node, graph)

    def _chain_misfit(self, chain: Match, graph: GraphView) -> Optional[str]:
        """With a target, the first rule the chain's replacement breaks (a
        chain is kept only when every node of it fits), else None."""
        if self.target is None:
            return None
        found = replacement_violations(self.build(chain, graph), graph, self.target)
        return found[0] + (f" (and {len(found) - 1} more)" if len(found) > 1 else "") if found else None

    def _chain_conv(self, node, graph: GraphView, grid: Grid) -> Optional[Lowering]:
        """A later dilated Conv that can read the chain's phase form."""
        m = self._single(node, graph)
        if isinstance(m, Skip) or m.params.form != "batch":
            return None
        fits = all(a.stride == 1 and a.phases == p and a.size == n and a.out == n and a.offset % p == 0
                   for a, p, n in zip(m.params.axes, grid.blocks, grid.sizes))
        return m.params if fits else None

    def _single(self, node: onnx.NodeProto, graph: GraphView) -> Match | Skip:
        where = f"Conv '{graph.label(node)}'"
        problem = _unsupported(node, graph)
        if problem:
            return Skip(f"{where}: {problem}")
        axes, notes = _axes(node, graph)
        if any(a.out < 1 for a in axes):
            return Skip(f"{where}: the output would be empty (size {[a.out for a in axes]})")
        if self.target is not None and needs_lowering(node, graph, self.target) is None:
            return Skip(runs_as_is_reason(node, graph, self.target))
        axes, taps, more = _simplify(node, graph, axes)
        ws = graph.shape(node.input[1])
        group = int(attributes(node).get("group", 1))
        bias = node.input[2] if len(node.input) > 2 else ""
        base = Lowering("", tuple(axes), ws[1] * group, ws[0], group, node.input[1], bias, taps)
        forms = self._forms(graph, base)
        chosen = self._choose(node, graph, base, forms)
        if isinstance(chosen, Skip):
            return chosen
        form, choice_notes = chosen
        params = replace(base, form=form)
        why = self._why(graph, params, forms[0][0])
        notes = [f"form={form}"] + notes + more + ([why] if why else []) + list(choice_notes)
        return Match(node, params, notes=tuple(notes))

    def _choose(self, node, graph: GraphView, base: Lowering, forms) -> tuple[str, tuple] | Skip:
        """The form to build and the notes on the forms passed over.  Without
        a target: the first form that can be built.  With one: the first
        whose replacement the target runs (pick_form), else the one with the
        fewest problems."""
        if self.target is None:
            k = next(k for k, (f, why) in enumerate(forms) if why is None)
            return forms[k][0], ((f"{forms[0][1]}; used the {forms[k][0]} form",) if k else ())
        reasons = dict(forms)
        choice = pick_form([f for f, _ in forms], lambda f: reasons[f] or self._attempt(node, graph, base, f),
                           graph, self.target)
        if choice.replacement is None:   # every form was refused with a reason
            why = "; ".join(f"{f}: {r}" for f, r in choice.rejected)
            return Skip(f"Conv '{graph.label(node)}': no lowering form can be built for target "
                        f"'{self.target.name}' ({why})")
        return choice.form, choice.notes(self.target)

    def _forms(self, graph: GraphView, p: Lowering) -> list[tuple[str, Optional[str]]]:
        """The forms that can lower `p`, in order of preference, each with why
        it cannot be built for this Conv (None: it can).  The order is the
        taps form first for tiny phase images, then the mode, then batch,
        depth, slices, taps; the slices form (or plain, subsample) can always
        be built."""
        if all(a.dilation == 1 for a in p.axes):
            return [("plain", None)]
        taps = None if graph.is_constant(p.weight) else "the taps form needs a constant weight to slice"
        if all(a.phases == 1 for a in p.axes):   # d divides s: only x_pad[::d] is read
            return [("subsample", None), ("taps", taps)]
        order = [self.mode, "batch", "depth", "slices", "taps"]
        if taps is None and _phase_outputs(p) < self.taps_below:
            order.insert(0, "taps")
        blocked = _unaligned(p)
        reasons = {"batch": blocked, "depth": blocked or self._depth_problem(graph, p), "slices": None,
                   "taps": taps}
        return [(f, reasons[f]) for f in dict.fromkeys(order)]

    def _why(self, graph: GraphView, p: Lowering, first: str) -> str:
        """Why the chosen form, when the geometry or a size decided it."""
        if p.form == "subsample":
            return "the dilation divides the stride: only every d-th input is read"
        if p.form == "taps" and first == "taps" and self.mode != "taps":
            return (f"phase images of {_phase_outputs(p)} outputs (below taps_below={self.taps_below}) convolve "
                    "inefficiently: one undilated Conv per tap, summed (taps form)")
        if p.form == "depth":
            blocks, tiled = _depth_tiling(graph, p)
            return f"depth form tiles the weight {blocks}x ({tiled // blocks} -> {tiled} bytes)"
        return ""

    def _depth_problem(self, graph: GraphView, p: Lowering) -> Optional[str]:
        if not graph.is_constant(p.weight):
            return "depth form needs a constant weight to tile"
        blocks, tiled = _depth_tiling(graph, p)
        if tiled > self.depth_weight_limit:
            return (f"depth form would tile the weight {blocks}x to {tiled} bytes, above "
                    f"depth_weight_limit={self.depth_weight_limit}")
        return None

    def _attempt(self, node, graph: GraphView, base: Lowering, form: str) -> Replacement:
        """The replacement in `form`, for the target check (build is pure)."""
        return self.build(Match(node, replace(base, form=form)), graph)

    # --- build ------------------------------------------------------------

    def build(self, match: Match, graph: GraphView) -> Replacement:
        b = Builder(graph, match.node, self.name)
        if isinstance(match.params, Chain):
            return b.replacement(_chain(b, graph, match.params))
        p: Lowering = match.params
        build = {"plain": _plain, "subsample": _batch, "batch": _batch, "depth": _depth, "slices": _slices,
                 "taps": _taps}[p.form]
        y = build(b, graph, match.node.input[0], _weight(b, graph, p), p)
        return b.replacement({match.node.output[0]: y})


# --- match helpers ------------------------------------------------------------

def _unsupported(node, graph: GraphView) -> Optional[str]:
    """Why this Conv cannot be lowered, or None."""
    if graph.opset() < MIN_OPSET:
        return f"model opset {graph.opset()} is older than {MIN_OPSET}; upgrade the model's opset"
    xs, ws = graph.shape(node.input[0]), graph.shape(node.input[1])
    if xs is None or len(xs) < 3:
        return "the input's rank is unknown; run shape inference or give the input a shape"
    if not all(isinstance(d, int) for d in xs[2:]):
        return (f"the input's spatial size {list(xs[2:])} is not static; the phase split needs static "
                "spatial sizes: fix the input's spatial dimensions")
    if graph.dtype(node.input[0]) not in FLOAT_TYPES:
        name = onnx.TensorProto.DataType.Name(graph.dtype(node.input[0]) or 0).lower()
        return (f"the element type is {name}; onnxruntime's CPU Conv runs only float16 and float32, "
                "so the rewrite could not be verified")
    if ws is None or not all(isinstance(d, int) for d in ws):
        return "the weight's shape is unknown; make the weight an initializer"
    return _attribute_problem(node, graph, xs, ws)


def _attribute_problem(node, graph: GraphView, xs, ws) -> Optional[str]:
    a = attributes(node)
    problem = geometry_problem(a, len(xs) - 2, ws)
    if problem:
        return problem
    group = int(a.get("group", 1))
    if group < 1 or ws[0] % group or (isinstance(xs[1], int) and xs[1] != ws[1] * group):
        return f"weight shape {list(ws)} does not fit {xs[1]} input channels in {group} groups"
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        return f"unknown auto_pad {a['auto_pad']!r}"
    return None


def _axes(node, graph: GraphView) -> tuple[list[AxisPhases], list[str]]:
    """Per-axis geometry of the Conv as written (auto_pad resolved per the spec)."""
    a, sizes = attributes(node), graph.shape(node.input[0])[2:]
    kernel, rank = graph.shape(node.input[1])[2:], len(sizes)
    strides, dilations = a.get("strides", [1] * rank), a.get("dilations", [1] * rank)
    auto_pad = a.get("auto_pad", "NOTSET")
    pads = conv_pads(auto_pad, sizes, kernel, strides, dilations, a.get("pads"))
    axes = [AxisPhases(n, k, d, s, lo, conv_output_size(n, k, s, d, lo, hi))
            for n, k, s, d, (lo, hi) in zip(sizes, kernel, strides, dilations, pads)]
    notes = [f"auto_pad {auto_pad} -> pads {join_pads(pads)}"] if auto_pad != "NOTSET" else []
    return axes, notes


def _simplify(node, graph: GraphView, axes) -> tuple[list[AxisPhases], Optional[tuple], list[str]]:
    """Kernel-1 axes undilated; taps that only read padding dropped."""
    notes = []
    ones = [k for k, a in enumerate(axes) if a.kernel == 1 and a.dilation > 1]
    if ones:
        notes.append(f"kernel size 1 on axes {ones}: dilation set to 1")
        axes = [AxisPhases(a.size, 1, 1, a.stride, a.offset, a.out) if a.kernel == 1 else a for a in axes]
    spans = [live_taps(a) or (0, a.kernel - 1) for a in axes]
    if all(span == (0, a.kernel - 1) for span, a in zip(spans, axes)):
        return axes, None, notes
    if not graph.is_constant(node.input[1]):
        return axes, None, notes + ["weight is a runtime input: taps that only read padding were kept"]
    dropped = {k: (a.kernel, hi - lo + 1) for k, (a, (lo, hi)) in enumerate(zip(axes, spans))
               if (lo, hi) != (0, a.kernel - 1)}
    notes.append("dropped taps that only read padding: kernel " + ", ".join(
        f"axis {k} {old} -> {new}" for k, (old, new) in dropped.items()))
    new = [trimmed(a, lo, hi) for a, (lo, hi) in zip(axes, spans)]
    if all(a.dilation == 1 for a in new) and any(a.dilation > 1 for a in axes):
        notes.append("no dilation left: a plain Conv with the sliced weight")
    return new, tuple(spans), notes


def _phase_outputs(p: Lowering) -> int:
    """Outputs of one phase image."""
    return prod(a.per_phase for a in p.axes)


def _unaligned(p: Lowering) -> Optional[str]:
    """Why no block split reaches the phases (batch and depth forms), or None."""
    bad = next((a for a in p.axes if not a.aligned), None)
    if bad is None:
        return None
    return (f"stride {bad.stride} and dilation {bad.dilation} share no factor beyond {bad.common}, so the "
            "phases start at shifted offsets that no block split reaches (only strided Slices do)")


def _depth_tiling(graph: GraphView, p: Lowering) -> tuple[int, int]:
    """(phases P, bytes of the kept weight [O, C/G, k...] tiled P times) for
    the depth form; the weight must be constant."""
    blocks = prod(a.phases for a in p.axes)
    w = graph.constant(p.weight)
    kept = w.itemsize * w.shape[0] * w.shape[1] * prod(a.kernel for a in p.axes)
    return blocks, kept * blocks


def _kept_weight(w: np.ndarray, taps) -> np.ndarray:
    if taps is None:
        return w
    return np.ascontiguousarray(w[(slice(None), slice(None)) + tuple(slice(lo, hi + 1) for lo, hi in taps)])


# --- build helpers ------------------------------------------------------------

def _conv(b: Builder, x: str, weight: str, bias: str, p: Lowering, strides, what="conv",
          group: Optional[int] = None, pads=None) -> str:
    """Conv with dilation 1 (the attribute is omitted)."""
    inputs = [x, weight] + ([bias] if bias else [])
    return b.op("Conv", inputs, what, kernel_shape=[a.kernel for a in p.axes], strides=list(strides),
                group=group or p.group, pads=pads)


def _plain(b, graph, x, weight, p: Lowering) -> str:
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


def _phase_input(b, x, p: Lowering) -> str:
    """The padded window, subsampled by g: [N, C, m_k*P_k ...]."""
    t = window(b, x, p.axes, [a.block_window for a in p.axes])
    return subsample(b, t, [a.block_window for a in p.axes], [a.common for a in p.axes])


def _batch_core(b, x, weight, p: Lowering) -> str:
    """x -> the Conv's output in phase form [P*N, O, q...]."""
    blocks, m, q = _blocks(p)
    t = space_to_batch(b, _phase_input(b, x, p), p.channels, blocks, m)
    return _conv(b, t, weight, p.bias, p, [a.inner_stride for a in p.axes])


def _batch(b, graph, x, weight, p: Lowering) -> str:
    blocks, m, q = _blocks(p)
    t = batch_to_space(b, _batch_core(b, x, weight, p), p.out_channels, blocks, q)
    return crop_to(b, t, [a.per_phase * a.phases for a in p.axes], [a.out for a in p.axes])


def _weight(b, graph, p: Lowering) -> str:
    """The Conv's weight, or a sliced copy when taps were dropped (forms that
    use it whole)."""
    if p.taps is None or p.form in ("depth", "taps"):
        return p.weight
    return b.initializer(_kept_weight(graph.constant(p.weight), p.taps), "weight")


def _starts_chain(p: Lowering, graph: GraphView) -> bool:
    return p.form == "batch" and all(a.stride == 1 for a in p.axes) and graph.opset() >= 9


def _chain(b, graph, c: Chain) -> dict:
    """Every region value in phase form; the exits back through batch_to_space."""
    nodes, grid = c.region.nodes, c.grid
    phase = {nodes[0].output[0]: _batch_core(b, nodes[0].input[0], _weight(b, graph, c.start), c.start)}
    convs, cache, masked = dict(c.region.convs), {}, {}
    dtype = onnx.helper.tensor_dtype_to_np_dtype(graph.dtype(nodes[0].input[0]))

    def value(name: str) -> str:   # a region value, or an outside one converted once
        if name not in phase and name not in cache:
            cache[name] = to_phase(b, name, graph.shape(name)[1], grid)
        return phase.get(name) or cache[name]

    for k, node in enumerate(nodes[1:], 1):
        if k in convs:
            p = convs[k]
            if node.input[0] not in masked:
                masked[node.input[0]] = zero_garbage(b, phase[node.input[0]], p.channels, grid, dtype)
            v = phase_window(b, masked[node.input[0]], grid, [a.offset for a in p.axes],
                             [a.kernel for a in p.axes])
            phase[node.output[0]] = _conv(b, v, _weight(b, graph, p), p.bias, p, [1] * len(p.axes))
            continue
        data = data_inputs(node)
        inputs = [value(i) if i in data and not graph.is_constant(i) else i for i in node.input]
        phase[node.output[0]] = copy_node(b, node, inputs)
    return {e: from_phase(b, phase[e], graph.shape(e)[1], grid) for e in c.region.exits}


def _depth(b, graph, x, weight, p: Lowering) -> str:
    blocks, m, q = _blocks(p)
    n = prod(blocks)
    t = pixel_unshuffle(b, _phase_input(b, x, p), p.channels, blocks, m)
    w = _kept_weight(graph.constant(p.weight), p.taps)
    tiled_w = b.initializer(np.tile(w, (n,) + (1,) * (w.ndim - 1)), "weight_tiled")
    tiled_b = ""
    if p.bias:
        bias = graph.constant(p.bias)
        tiled_b = (b.initializer(np.tile(bias, n), "bias_tiled") if bias is not None
                   else b.op("Tile", [p.bias, b.ints([n], "bias_repeats")], "bias_tiled"))
    # one group per (phase, original group): channel flat(phase)*C + c (DCR)
    t = _conv(b, t, tiled_w, tiled_b, p, [a.inner_stride for a in p.axes], group=n * p.group)
    t = pixel_shuffle(b, t, p.out_channels, blocks, q)
    return crop_to(b, t, [a.per_phase * a.phases for a in p.axes], [a.out for a in p.axes])


def _slices(b, graph, x, weight, p: Lowering) -> str:
    blocks, m, q = _blocks(p)
    t = window(b, x, p.axes, [a.slice_window for a in p.axes])
    parts = {}
    for phase, image in phase_images(b, t, p.axes).items():
        tag = "conv_" + "_".join(map(str, phase))
        parts[phase] = _conv(b, image, weight, p.bias, p, [a.inner_stride for a in p.axes], tag)
    t = interleave(b, parts, p.out_channels, blocks, q)
    return crop_to(b, t, [a.per_phase * a.phases for a in p.axes], [a.out for a in p.axes])


def _taps(b, graph, x, weight, p: Lowering) -> str:
    """One undilated Conv per tap t of the dilated axes (kernel size 1 there)
    on the window shifted by t*d and strided by s, summed:

        y = B + sum_t Conv(x_pad[t*d :: s], W[..., t, ...])
    """
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
        index = [slice(None)] * w.ndim
        for tk, k in zip(tap, dil):
            index[k + 2] = slice(tk, tk + 1)
        wt = b.initializer(np.ascontiguousarray(w[tuple(index)]), f"weight_{tag}")
        bias = [p.bias] if p.bias and not terms else []
        terms.append(b.op("Conv", [image, wt] + bias, f"conv_{tag}", kernel_shape=kernel, strides=strides,
                          group=p.group))
    if b.graph.opset() < 7:   # Add before 7 has the old broadcast attribute; Sum is plain
        return b.op("Sum", terms, "sum_taps")
    total = terms[0]
    for k, y in enumerate(terms[1:], 1):
        total = b.op("Add", [total, y], f"sum_tap{k}")
    return total


def _blocks(p: Lowering):
    return ([a.phases for a in p.axes], [a.phase_size for a in p.axes], [a.per_phase for a in p.axes])
