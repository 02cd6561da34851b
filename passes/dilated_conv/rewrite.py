"""dilated-conv: dilated Conv -> space-to-batch / undilated Conv / batch-to-space.

Before:
    x [N, C, n...] --Conv(W [O, C/G, k...], B, dilations d, strides s, pads)--> y [N, O, out...]

After, batch form (the default where the phases are aligned):
    x --Slice?--Pad?--Slice[::g]?--space_to_batch--> [P*N, C, m'...]
      --Conv(W, B, strides s', group G, pads (c, e))--> [P*N, O, q...] --batch_to_space--Slice?--> y
    (the phase images' leading c and trailing e zeros come from the Conv's own
    pads, m' = m - c - e: phases.conv_padded; a Pad is left only where the
    offset or the size is not a multiple of d)
    (space_to_batch is SpaceToDepth + one Reshape for 2-D equal rates, the
    batch in batch-major order n*P*P + phase, which the Conv does not mind;
    Reshape/Transpose/Reshape otherwise; batch_to_space its inverse)

After, depth form (batch stays N; weight tiled P times, group P*G):
    x --Slice?--Pad?--Slice[::g]?--SpaceToDepth--Conv(tile(W), tile(B), pads (c, e))--DepthToSpace--Slice?--> y

After, slices form (the default where the phases are not aligned; no tensor above rank
max(4, rank of x)):
    x --Slice?--Pad--+--Slice[b*s::d]--Conv(W, B, strides s')--+--Concat--DepthToSpace--Slice?--> y
                     +--Slice[...]-----Conv(W, B, strides s')--+   (or Concat+Reshape per axis)

After, taps form (the default where phase images have fewer than `taps_below`
outputs, e.g. ASPP rates on a 33x33 map):
    x --Slice?--+--Slice[c_t::s]?--Conv(W[..t..], B, pads_t)--+--Add...--> y
                +--Slice[...]?-----Conv(W[..t..], pads_t)-----+
    (no padded copy of x: each tap slices the part of x it reads, its Conv's
    pads add the zeros; a tap that reads all of x has no Slice)

After, reshape form (1-D; the default without a target from 16 input
channels per group): the phases as a trailing axis, no Transpose:
    x --Pad?--Slice[::g]?--Reshape--> [N, C, m', P]
      --Conv(W as [O, C/G, k, 1], B, kernel (k, 1), pads (c, 0, e, 0))--> [N, O, q, P]
      --Reshape--> [N, O, q*P] --Slice?--> y
    (element j*P + b of the window is [j, b]: phase image b is column b)

After, subsample (d divides s: only x_pad[::d] is read) and plain (the
simplifications below leave no dilation):
    x --Slice?--Pad?--Slice[::d]--Conv(W, B, strides s/d)--> y
    x --Slice?--> Conv(W[taps], B, strides s, pads) --> y

Identity, per axis, with g = gcd(s, d), P = d/g phases, s' = s/g, i = a*P + b:

    y[a*P + b] = sum_t W[t] x_pad[i*s + t*d] = Conv_{s', undilated}(x_pad[b*s :: d], W)[a]

(phases.py, convrewrite/emit/space_to_batch.py).  When s divides d or d divides s the phases
are one block split of x_pad[::g] (batch and depth forms); otherwise only
strided Slices reach them and the slices form is used.  The taps form is the
same sum taken tap by tap: y = B + sum_t Conv_{undilated}(x_pad[t*d :: s], W[t]).

After, bias-only (every tap along some axis reads only padding: no output reads x):
    (x's batch) --zeros [N, O, out...]--Add(B as [O, 1, ...])?--> y
    (convrewrite/emit/bias_fill.py; the output size from convrewrite/geometry.py,
    nothing built that grows with the dilation or pads)

Exact simplifications first: a kernel of size 1 along an axis makes its
dilation meaningless; taps that, for the static input size, only ever read
padding are dropped (a sliced weight initializer), and an axis left with one
tap is undilated -- DeepLab's ASPP at rate 12/24/36 on an 8x8 map becomes a
1x1 Conv (the plain form).

Forms (forms.py), in the default order: bias-only, plain, subsample, batch,
depth, slices, reshape (opt-in), taps -- bias-only, plain and subsample where
the geometry leaves nothing else; without a target, reshape first for a 1-D Conv of 16+
input channels per group, and taps first where phase images have fewer than
`taps_below` outputs unless the cost model estimates it more than 1.5x
slower than the next form; then batch where the phases are aligned, else
slices.  `mode` (dilated_mode) puts one of batch, depth, slices, reshape,
taps, im2col first where it can express the Conv.
With a target profile the driver leaves a Conv the target runs as it is and
otherwise takes the first form, in that order, whose nodes the target runs.

Chains (batch form, stride 1): later dilated Convs of the same rate reached
through spatially pointwise ops (BatchNorm, Relu, Add, 1x1 Conv, ...) stay in
batch form in one rewrite, a Match of several nodes (see chain.py).  A chain
starts only where the Conv's default form is batch; one that a target does
not run is matched again node by node (`match_alone`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, NamedTuple, Optional

import onnx

from convrewrite.core import qdq
from convrewrite.core.folding import attribute
from convrewrite.core.forms import rank
from convrewrite.core.graph import GraphView, attributes
from convrewrite.core.preconditions import (attribute_key, first_problem, old_opset, read_once, unknown_spatial_size,
                                           unverifiable_type)
from convrewrite.core.rewrite import Code, Match, PassOptions, Skip
from convrewrite.emit.opset_ops import ZEROS_MIN_OPSET, can_make_zeros
from convrewrite.geometry import conv_output_size, conv_pads, geometry_problem, join_pads

from . import forms as _forms
from . import quantized
from .build import input_in_phase_form
from .chain import Chain, Grid, grow, may_grow
from .forms import MODES, BiasAlone, Dilated
from .im2col import Im2col
from .phases import AxisPhases, live_taps, trimmed

DEFAULT_DEPTH_WEIGHT_LIMIT = 16 << 20   # bytes of the tiled depth-form weight
DEFAULT_TAPS_BELOW = 64                 # phase images with fewer outputs favour the taps form
CHAIN_MIN_OPSET = 9                      # Where, to zero the garbage past each phase's real size


@dataclass(frozen=True)
class DilatedConvOptions(PassOptions):
    """`mode`: a form to put first where it can express the Conv (batch,
    depth, slices, taps), or None: the default order.  `depth_weight_limit`:
    the most bytes the depth form's tiled weight may take.  `taps_below`:
    phase images with fewer outputs favour the taps form (0: never).
    `chains`: keep consecutive dilated Convs of one rate in batch form.
    `estimates`: without a target, the chooser's cost model may overrule the
    taps favour and the reshape form is favoured (1-D, 16+ channels per
    group); False: the rules alone, as with a target."""

    mode: Optional[str] = None
    depth_weight_limit: int = DEFAULT_DEPTH_WEIGHT_LIMIT
    taps_below: int = DEFAULT_TAPS_BELOW
    chains: bool = True
    estimates: bool = True
    KEYS: ClassVar[dict] = {"dilated_mode": "mode", "depth_weight_limit": "depth_weight_limit",
                            "dilated_taps_below": "taps_below", "dilated_chains": "chains",
                            "dilated_estimates": "estimates"}
    CHOICES: ClassVar[dict] = {"dilated_mode": MODES}

    def __post_init__(self):
        if self.mode is not None and self.mode not in MODES:
            raise ValueError(f"dilated_mode must be one of {', '.join(MODES)} (or unset for the default "
                             f"order), not {self.mode!r}")
        for key in ("depth_weight_limit", "dilated_taps_below"):
            name = self.KEYS[key]
            object.__setattr__(self, name, _count(key, getattr(self, name)))
        for key in ("dilated_chains", "dilated_estimates"):
            if not isinstance(getattr(self, self.KEYS[key]), bool):
                raise ValueError(f"{key} must be true or false, not {getattr(self, self.KEYS[key])!r}")


def _count(key: str, value: Any) -> int:
    """An integer >= 0 (an int, or a string or float holding one)."""
    try:
        n = int(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        n = None
    if n is None or n < 0 or (isinstance(value, float) and value != n):
        raise ValueError(f"{key} must be an integer >= 0, not {value!r}")
    return n


@dataclass(frozen=True)
class DilatedConvToSpaceToBatch:
    options: DilatedConvOptions = field(default_factory=DilatedConvOptions)

    name: ClassVar[str] = "dilated-conv"
    description: ClassVar[str] = "dilated Conv -> SpaceToBatch / Conv / BatchToSpace from standard ops, exact"
    op_types: ClassVar[tuple] = ("Conv",)
    mac_bound: ClassVar[Optional[float]] = None
    Options: ClassVar[type] = DilatedConvOptions

    @property
    def forms(self) -> tuple:
        return (_forms.forms(self.options.depth_weight_limit, self.options.taps_below) + (Im2col(),)
                + quantized.FORMS)

    def preferred(self) -> tuple[str, ...]:
        return () if self.options.mode is None else (self.options.mode,)

    @property
    def estimates(self) -> bool:
        """Whether the chooser's cost model may weigh this pass's forms
        (core/lowering.cost_model_for): the dilated_estimates option."""
        return self.options.estimates

    def candidate(self, node: onnx.NodeProto, graph: GraphView) -> bool:
        return (node.op_type == "Conv" and node.domain in ("", "ai.onnx")
                and any(d > 1 for d in attribute(node, "dilations", [])))

    # --- match ------------------------------------------------------------

    def structure(self, match: Match, name_of) -> Optional[Any]:
        """The params with their names written by position (`name_of`,
        core/plans.py), a chain's nodes by their place in the match: what,
        beside the matched values' types, the forms' choice reads.  A
        quantized match: None (planned on its own)."""
        p = match.params
        if type(p) is Dilated:
            return _named(p, name_of)
        if type(p) is BiasAlone:
            return replace(p, bias=name_of(p.bias))
        if type(p) is not Chain or type(p.start) is not Dilated:
            return None
        place = {id(n): k for k, n in enumerate(match.nodes)}
        r = p.region
        if any(id(n) not in place for n in r.nodes) or any(type(c) is not Dilated for _, c in r.convs):
            return None
        region = replace(r, nodes=tuple(place[id(n)] for n in r.nodes), exits=tuple(map(name_of, r.exits)),
                         convs=tuple((k, _named(c, name_of)) for k, c in r.convs), shared=name_of(r.shared))
        return replace(p, start=_named(p.start, name_of), region=region)

    def match(self, node: onnx.NodeProto, graph: GraphView) -> Match | Skip:
        """The Conv alone, or with the options' `chains`, the chain of dilated
        Convs that starts at it when its default form is batch."""
        single = self.match_alone(node, graph)
        if not self.options.chains or isinstance(single, Skip) or not self._starts_chain(single, graph):
            return single
        p: Dilated = single.params
        grid = Grid(graph.shape(node.input[0])[0], tuple(a.out for a in p.axes), tuple(p.blocks))
        region = grow(graph, node, grid, lambda n: self._chain_conv(n, graph, grid),
                      share_input=input_in_phase_form(p, grid), admit_key=self)
        if region is None:
            return single
        notes = single.notes + (f"chain: {len(region.convs) + 1} dilated Convs and "
                                f"{len(region.nodes) - len(region.convs) - 1} other ops kept in batch form "
                                f"(exits: {', '.join(region.exits)})",)
        return Match(node, Chain(p, grid, region), nodes=region.nodes, notes=notes)

    def match_alone(self, node: onnx.NodeProto, graph: GraphView) -> Match | Skip:
        """The Conv by itself, never as part of a chain (the driver re-matches
        the members of a chain that does not fit or was rolled back)."""
        read = read_once(graph, _geometry, _geometry_key(node, graph), node)
        if isinstance(read, Skip):
            return Skip(f"Conv '{graph.label(node)}': {read.reason}", read.code)
        if read.dead is not None:
            return _bias_alone(node, graph, list(read.axes), read.dead, list(read.notes))
        (axes, more), taps = read.simple, None
        if read.trimmed is not None:
            if graph.is_constant(node.input[1]):
                axes, taps, more = read.trimmed
            else:
                more += ("weight is a runtime input: taps that only read padding were kept",)
        bias = node.input[2] if len(node.input) > 2 else ""
        params = Dilated(axes, *read.channels, node.input[1], bias, taps)
        return Match(node, params, notes=read.notes + more)

    def default_form(self, match: Match, graph: GraphView) -> Optional[str]:
        """The form the chooser takes for `match` without a target."""
        options = rank(self, match, graph, None, with_variants=False, with_opt_in=False).options
        return options[0].form.name if options else None

    def _starts_chain(self, single: Match, graph: GraphView) -> bool:
        """Whether a chain may start at the Conv (grow then says whether one
        does); the forms are ranked last, where a later dilated Conv is in reach."""
        return (all(a.stride == 1 for a in single.params.axes) and graph.opset() >= CHAIN_MIN_OPSET
                and qdq.region(single.node, graph) is None   # quantized Convs are lowered one by one
                and may_grow(graph, single.node) and not self._reshape_instead(single.params)
                and self.default_form(single, graph) == "batch")

    def _reshape_instead(self, p: Dilated) -> bool:
        """A 1-D Conv the reshape form would take without a target (one Conv
        between two Reshapes) is not chained: per Conv it measured faster than
        a chain in batch form (3 residual 32-channel Convs on 1,024: 259
        against 304 us; docs/dilated_conv.md).  A structural test, so a match
        is the same with a target or without (a target then lowers each
        Conv by its rules)."""
        return self.options.estimates and _forms.reshape_favoured(p) is not None

    def _chain_conv(self, node, graph: GraphView, grid: Grid) -> Optional[Dilated]:
        """A later dilated Conv that can read the chain's phase form: its
        default form is batch and its phases are the chain's."""
        params = read_once(graph, self._batch_alone, (id(node),), node)   # (the view's indexes hold its nodes)
        fits = params is not None and all(a.stride == 1 and a.phases == p and a.size == n and a.out == n
                                          and a.offset % p == 0
                                          for a, p, n in zip(params.axes, grid.blocks, grid.sizes))
        return params if fits else None

    def _batch_alone(self, node, graph: GraphView) -> Optional[Dilated]:
        """The Conv's params where alone it takes the batch form by default,
        else None.  Read once per view and Conv (read_once keyed by the
        node): every chain start whose region reaches the Conv asks, and
        where parallel branches read one input, each start reaches every
        branch (the forms ranked again for each would be starts x Convs)."""
        m = self.match_alone(node, graph)
        if (isinstance(m, Skip) or qdq.region(node, graph) is not None or self.default_form(m, graph) != "batch"
                or self._reshape_instead(m.params)):
            return None
        return m.params


# --- match helpers ------------------------------------------------------------

def _geometry_key(node, graph: GraphView) -> Optional[tuple]:
    """All that _geometry reads of the Conv: its attributes and the types
    of x and the weight; None where x's rank is unknown (the reason names x)."""
    xs = graph.shape(node.input[0])
    if xs is None:
        return None
    return attribute_key(node), xs, graph.dtype(node.input[0]), graph.shape(node.input[1])


class _Read(NamedTuple):
    """What match_alone reads of a Conv's attributes and shapes (_geometry)."""

    axes: tuple             # as written, auto_pad resolved
    notes: tuple
    dead: Optional[int]     # the first axis whose taps all read padding (the bias alone), or None
    channels: tuple         # C, O, group
    simple: tuple           # (axes, notes): kernel-1 axes undilated
    trimmed: Optional[tuple]  # (axes, spans, notes): taps that only read padding dropped; None: none do


def _geometry(node, graph: GraphView) -> "Skip | _Read":
    """The Conv's geometry, or why it cannot be lowered (a reason without the node)."""
    problem = _unsupported(node, graph)
    if problem:
        return problem
    axes, notes = _axes(node, graph)
    if any(a.out < 0 for a in axes):   # no tensor has that shape (onnxruntime and the reference refuse it)
        return Skip("the dilated kernel spans more than the padded input, by more than a stride: "
                    f"the output would be of size {[a.out for a in axes]}", Code.INVALID_NODE)
    if any(a.out == 0 for a in axes):
        return Skip(f"the output would be empty (size {[a.out for a in axes]})", Code.EMPTY_OUTPUT)
    dead = next((k for k, a in enumerate(axes) if live_taps(a) is None), None)
    ws, group = graph.shape(node.input[1]), int(attributes(node).get("group", 1))
    simple, trimmed = _simplify(axes) if dead is None else ((), None)
    return _Read(tuple(axes), tuple(notes), dead, (ws[1] * group, ws[0], group), simple, trimmed)


def _unsupported(node, graph: GraphView) -> Optional[Skip]:
    """Why this Conv cannot be lowered (reason without the node), or None."""
    problem = first_problem(old_opset(graph),
                            unknown_spatial_size(graph, node.input[0], " (the phase split needs static sizes)"),
                            unverifiable_type(graph, node.input[0]))
    if problem:
        return problem
    xs, ws = graph.shape(node.input[0]), graph.shape(node.input[1])
    if ws is None or not all(isinstance(d, int) for d in ws):
        return Skip("the weight's shape is unknown; give the weight a static shape (make it an initializer)",
                    Code.DYNAMIC_SHAPE)
    problem = _attribute_problem(node, graph, xs, ws)
    return Skip(problem, Code.INVALID_NODE) if problem else None


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
    kernel, rank_ = graph.shape(node.input[1])[2:], len(sizes)
    strides, dilations = a.get("strides", [1] * rank_), a.get("dilations", [1] * rank_)
    auto_pad = a.get("auto_pad", "NOTSET")
    pads = conv_pads(auto_pad, sizes, kernel, strides, dilations, a.get("pads"))
    axes = [AxisPhases(n, k, d, s, lo, conv_output_size(n, k, s, d, lo, hi))
            for n, k, s, d, (lo, hi) in zip(sizes, kernel, strides, dilations, pads)]
    notes = [f"auto_pad {auto_pad} -> pads {join_pads(pads)}"] if auto_pad != "NOTSET" else []
    return axes, notes


def _bias_alone(node, graph: GraphView, axes: list[AxisPhases], dead: int, notes: list[str]) -> Match | Skip:
    """A Conv no output of which reads x (every tap along spatial axis `dead`
    reads only padding): its output is the bias alone, the bias-only form's
    params.  Only the output size is taken from the geometry: no form pads x
    out to where the taps read, a tensor that would grow with the dilation
    and pads, not with x or the output (dilation 4e7 on a 1x2x3x5 map: a
    1 GB Pad, 34 s to build and check)."""
    what = f"every tap along spatial axis {dead} reads only padding, so the output is the bias alone"
    if not can_make_zeros(graph.opset()):
        return Skip(f"Conv '{graph.label(node)}': {what} (zero without one), which the bias-only form builds from "
                    f"zeros and an Add: opset {ZEROS_MIN_OPSET} or later, and the model's is {graph.opset()}; "
                    "upgrade the model's opset", Code.OLD_OPSET)
    bias = node.input[2] if len(node.input) > 2 else ""
    params = BiasAlone(tuple(axes), dead, graph.shape(node.input[1])[0], bias)
    return Match(node, params, notes=tuple(notes + [what + ("" if bias else " (zero: no bias)")]))


def _simplify(axes) -> tuple[tuple, Optional[tuple]]:
    """Kernel-1 axes undilated: (axes, notes); and where some taps only
    read padding, the axes without them: (axes, spans, notes), which
    match_alone takes where the weight is a constant (it is sliced)."""
    notes = ()
    ones = [k for k, a in enumerate(axes) if a.kernel == 1 and a.dilation > 1]
    if ones:
        notes = (f"kernel size 1 on axes {ones}: dilation set to 1",)
        axes = [AxisPhases(a.size, 1, 1, a.stride, a.offset, a.out) if a.kernel == 1 else a for a in axes]
    spans = [live_taps(a) for a in axes]   # never None: a Conv with a dead axis is its bias alone (_bias_alone)
    if all(span == (0, a.kernel - 1) for span, a in zip(spans, axes)):
        return (tuple(axes), notes), None
    dropped = {k: (a.kernel, hi - lo + 1) for k, (a, (lo, hi)) in enumerate(zip(axes, spans))
               if (lo, hi) != (0, a.kernel - 1)}
    more = ("dropped taps that only read padding: kernel " + ", ".join(
        f"axis {k} {old} -> {new}" for k, (old, new) in dropped.items()),)
    new = [trimmed(a, lo, hi) for a, (lo, hi) in zip(axes, spans)]
    if all(a.dilation == 1 for a in new) and any(a.dilation > 1 for a in axes):
        more += ("no dilation left: a plain Conv with the sliced weight",)
    return (tuple(axes), notes), (tuple(new), tuple(spans), notes + more)


def _named(p: Dilated, name_of) -> Dilated:
    """A Conv's params with its weight and bias written by position (core/plans.py)."""
    return replace(p, weight=name_of(p.weight), bias=name_of(p.bias))
