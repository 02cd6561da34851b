"""convtranspose: ConvTranspose -> stride-1 Conv(s) + pixel shuffle (sub-pixel convolution).

Before:
    x [N, Cin, n...] --ConvTranspose(W [Cin, Cout/g, k...], B, strides s, pads, ...)--> y [N, Cout, out...]

After (single-conv: one Conv over the window shared by all phases):
    x --Slice?--> Conv(kernel [Cout*prod(s), Cin/g, window...]) --DepthToSpace(CRD or DCR)--Slice?--> y

After (phase-convs: one Conv per output phase, exact taps):
    x --Slice?--> Conv(phase kernel 0, own pads) --Pad?--+
    x --Slice?--> Conv(phase kernel 1, own pads) --Pad?--+--Concat(axis 1)--DepthToSpace(DCR)--Slice?--> y
    ...                       (phases that have no tap: zeros + B)

After (border-split: phase-convs with each phase cut into tiles along its axes):
    x --Slice--> Conv(border taps) --+
    x --Slice--> Conv(all taps)    --+--Concat(spatial axis)--> phase 0 ... as phase-convs
    x --Slice--> Conv(border taps) --+

DepthToSpace stands for the general Reshape/Transpose/Reshape pixel shuffle
when the rank is not 2 or the strides differ (3-D: one axis at a time, so no
tensor exceeds rank 6).  With stride 1 every form is
one Conv with the flipped, transposed kernel and complementary pads.

Identity (per axis, t = q*s + r, head = begin padding; see passes.convtranspose.geometry):

    y[q*s + r] = sum_{j : (r + head - j*d) % s == 0} x[q + (r + head - j*d)/s] * w[j]

so output phase r is a stride-1 correlation of x with the taps of residue r
(reversed), dilation d/gcd(d, s).  The ConvTranspose's padding becomes each
Conv's own padding (negative padding: a Slice of the input); a Slice of the
output is needed only when the output size is not a multiple of the stride.

Choice (at match time, from the MACs of each form): the simplest form whose
MACs are within MAC_BOUND of the ConvTranspose's (single-conv, then
phase-convs, then border-split, whose tiling is the one with the fewest
Convs within the bound); if none is, the fewest MACs.  With a target profile
the node is left alone when the target runs it, and otherwise the first form
in that order (and pixel shuffle layout) whose nodes the target runs is used.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from math import prod
from typing import ClassVar, Optional

import numpy as np
import onnx
from onnx import helper

from convrewrite.core.builder import Builder
from convrewrite.core.graph import GraphView, attributes
from convrewrite.emit.opset_ops import ZEROS_MIN_OPSET, can_make_zeros, pad_axes, slice_axes, zeros
from convrewrite.geometry import geometry_problem
from convrewrite.emit.pixel_shuffle import pixel_shuffle, shuffle_rank
from convrewrite.core.rewrite import Match, Replacement, Skip
from passes.convtranspose.geometry import (AxisConv, AxisPlan, SpecConflict, Tiles, border_tiles, conv_transpose_macs,
                                  conv_weight, output_geometry, phase_kernel, phases, plan_macs, shared_kernel,
                                  shared_plan, split_plan, split_tiles, tile_tree)
from convrewrite.target import Profile, needs_lowering, pick_form, runs_as_is_reason

# onnxruntime has no float64 Conv on CPU, so a double rewrite could not be verified.
FLOAT_TYPES = (onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT)
MIN_OPSET = 5  # Reshape with a shape input
MAC_BOUND = 1.1  # a form within this factor of the ConvTranspose's MACs needs no more nodes
SIMPLEST_FIRST = ("single-conv", "phase-convs", "border-split")


@dataclass(frozen=True)
class Lowering:
    """Everything build needs: the form, its per-axis plans (stride, blocks,
    crop) and, for the phase forms, the tiles of every phase."""

    form: str                      # "single-conv" | "phase-convs" | "border-split" | "bias-only"
    plans: tuple[AxisPlan, ...]
    tiles: Optional[Tiles]
    group: int
    cout: int
    weight: str
    bias: str                      # "" when there is none
    bias_is_constant: bool
    macs: int = 0
    layout: str = "DCR"            # channel order the pixel shuffle reads
    depth_to_space: bool = True    # False: Reshape/Transpose/Reshape even where DepthToSpace applies
    pad_nodes: bool = False        # True: a Pad node before each Conv, whose own pads are then zero
    max_rank: Optional[int] = None


FORMS = ("auto",) + SIMPLEST_FIRST


@dataclass(frozen=True)
class ConvTransposeToConv:
    """`form`: "auto" (see the module docstring) or a preferred form (used
    where it can express the node).  `target`: the profile the model is for."""

    form: str = "auto"
    target: Optional[Profile] = None

    name: ClassVar[str] = "convtranspose"
    description: ClassVar[str] = "ConvTranspose -> stride-1 Conv(s) + DepthToSpace (sub-pixel convolution), exact"

    def __post_init__(self):
        if self.form not in FORMS:
            raise ValueError(f"convtranspose_form must be one of {', '.join(FORMS)}, not {self.form!r}")

    @classmethod
    def from_options(cls, options: dict) -> "ConvTransposeToConv":
        return cls(options.get("convtranspose_form", "auto"), options.get("target"))

    def candidate(self, node: onnx.NodeProto, graph: GraphView) -> bool:
        return node.op_type == "ConvTranspose" and node.domain in ("", "ai.onnx")

    # --- match ------------------------------------------------------------

    def match(self, node: onnx.NodeProto, graph: GraphView) -> Match | Skip:
        where = f"ConvTranspose '{graph.label(node)}'"
        problem = _unsupported(node, graph)
        if problem:
            return Skip(f"{where}: {problem}")
        x, w = graph.shape(node.input[0])[2:], graph.shape(node.input[1])
        rank, a = len(x), attributes(node)
        try:
            geometry = output_geometry(x, w[2:], a.get("strides", [1] * rank), a.get("dilations", [1] * rank),
                                       a.get("auto_pad", "NOTSET"), a.get("pads"), a.get("output_padding"),
                                       a.get("output_shape"))
        except SpecConflict as e:
            return Skip(f"{where}: {e}")
        if any(g.out <= 0 for g in geometry):
            return Skip(f"{where}: the output would be empty ({[g.out for g in geometry]})")
        unfit = needs_lowering(node, graph, self.target) if self.target is not None else None
        if self.target is not None and unfit is None:
            return Skip(runs_as_is_reason(node, graph, self.target))
        found = _lowerings(node, graph, geometry, self.form, self.target)
        if isinstance(found, str):
            return Skip(f"{where}: {found}")
        lowerings, costs = found
        if self.target is None:
            chosen = next(iter(lowerings.values()))
            return Match(node, chosen, notes=_notes(chosen, costs, self.form))
        choice = pick_form(list(lowerings), lambda label: self._attempt(lowerings[label], node, graph),
                           graph, self.target)
        if choice.replacement is None:
            why = "; ".join(dict.fromkeys(reason for _, reason in choice.rejected))
            return Skip(f"{where}: no lowering can be built for target '{self.target.name}': {why}")
        chosen = lowerings[choice.form]
        why = (f"target {self.target.name} cannot run the ConvTranspose: {unfit.split('; ')[0]}",)
        return Match(node, chosen, notes=_notes(chosen, costs, self.form) + why + choice.notes(self.target))

    def _attempt(self, p: "Lowering", node, graph: GraphView) -> Replacement | str:
        """The replacement for `p`, or why it cannot be built."""
        rank = _shuffle_rank(p, graph.opset())
        if p.max_rank is not None and rank > p.max_rank:
            blocks = [pl.stride for pl in p.plans]
            return (f"its pixel shuffle of blocks {blocks} needs rank-{rank} tensors, above the target's "
                    f"max_rank {p.max_rank}")
        return self.build(Match(node, p), graph)

    # --- build ------------------------------------------------------------

    def build(self, match: Match, graph: GraphView) -> Replacement:
        p: Lowering = match.params
        b = Builder(graph, match.node, self.name)
        x = match.node.input[0]
        bias = graph.constant(p.bias) if p.bias and p.bias_is_constant else None
        if p.form == "bias-only":
            sizes = [pl.out for pl in p.plans]
            return b.replacement({match.node.output[0]: _bias_only(b, x, p.cout, p.bias, bias, sizes, 1)})
        wc = conv_weight(graph.constant(p.weight), p.group)
        if p.form == "single-conv":
            y = _single_conv(b, x, wc, bias, p)
        else:
            y = _phase_convs(b, x, wc, bias, p)
        return b.replacement({match.node.output[0]: _crop(b, y, p.plans)})


# --- match helpers ----------------------------------------------------------

def _unsupported(node, graph: GraphView) -> Optional[str]:
    """Why this ConvTranspose cannot be lowered, or None."""
    if graph.opset() < MIN_OPSET:
        return f"model opset {graph.opset()} is older than {MIN_OPSET}; upgrade the model's opset"
    xs = graph.shape(node.input[0])
    if xs is None or len(xs) < 3:
        return "the input's rank is unknown; run shape inference or give the input a shape"
    if not all(isinstance(d, int) for d in xs[2:]):
        return f"the input's spatial size {list(xs[2:])} is not static; fix the input's spatial dimensions"
    dtype = graph.dtype(node.input[0])
    if dtype not in FLOAT_TYPES:
        name = onnx.TensorProto.DataType.Name(dtype) if dtype else "unknown"
        return (f"element type {name} is not lowered: only float16 and float32 are, because onnxruntime "
                "has no Conv of other types to verify the rewrite against")
    w = node.input[1]
    if not graph.is_constant(w):
        kind = "a graph input" if graph.is_graph_input(w) else "computed at run time"
        return f"weight '{w}' is {kind}; make it an initializer to lower it"
    return _attribute_problem(node, graph, len(xs) - 2)


def _attribute_problem(node, graph: GraphView, rank: int) -> Optional[str]:
    a, ws = attributes(node), graph.shape(node.input[1])
    group = int(a.get("group", 1))
    problem = geometry_problem(a, rank, ws, ("strides", "dilations", "output_padding", "kernel_shape"))
    if problem:
        return problem
    cin = graph.shape(node.input[0])[1]
    if group < 1 or ws[0] % group or (isinstance(cin, int) and cin != ws[0]):
        return f"weight shape {list(ws)} does not fit {cin} input channels in {group} groups"
    if len(node.input) > 2 and node.input[2] and graph.shape(node.input[2]) not in (None, (ws[1] * group,)):
        return f"bias shape {list(graph.shape(node.input[2]))} is not [{ws[1] * group}]"
    return None


def _lowerings(node, graph: GraphView, geometry, preferred: str, target: Optional[Profile]):
    """({label: Lowering} in order of preference: forms by MACs, then pixel
    shuffle layouts; (MACs of each form, MACs of the ConvTranspose)), or why
    there is none."""
    ws = graph.shape(node.input[1])
    group = int(attributes(node).get("group", 1))
    cin, cout = ws[0], ws[1] * group
    bias = node.input[2] if len(node.input) > 2 else ""
    base = Lowering("", (), None, group, cout, node.input[1], bias, not bias or graph.is_constant(bias),
                    max_rank=target.max_rank if target is not None else None)
    before = conv_transpose_macs(cin, cout, group, [g.n for g in geometry], ws[2:])
    split = tuple(split_plan(g) for g in geometry)
    if not any(phases(split)):
        if not can_make_zeros(graph.opset()):
            return ("the padding crops away every computed value, so the output is the bias alone, which "
                    f"needs zeros (opset {ZEROS_MIN_OPSET}); upgrade the model's opset")
        return {"bias-only": replace(base, form="bias-only", plans=split)}, ({"bias-only": 0}, before)
    forms = _forms(geometry, split, base, cin, before, can_make_zeros(graph.opset()), preferred)
    if not forms:
        return ("the bias is computed at run time and some output phases have no tap, which needs "
                f"zeros (opset {ZEROS_MIN_OPSET}); upgrade the model's opset")
    macs = {f: low.macs for f, low in forms.items()}
    labelled = {}
    for f in _order(macs, before, preferred):
        for low in _variants(forms[f], graph.opset()):
            labelled[_label(low, graph.opset())] = low
    return labelled, (macs, before)


def _forms(geometry, split, base: Lowering, cin: int, before: int, bias_pieces: bool, preferred: str) -> dict:
    """The forms that can express the node, with their MACs.  border-split
    is worked out only where phase-convs is above MAC_BOUND (or asked for)."""
    unit = base.cout * (cin // base.group)  # MACs per unit of a plan's macs factor
    forms = {}
    if base.bias_is_constant:
        shared = tuple(shared_plan(g) for g in geometry)
        forms["single-conv"] = replace(base, form="single-conv", plans=shared,
                                       macs=plan_macs(shared, cin, base.cout, base.group))
    if bias_pieces or all(phases(split)):
        tiles = split_tiles(geometry)
        forms["phase-convs"] = replace(base, form="phase-convs", plans=split, tiles=tiles,
                                       macs=unit * tiles.macs_factor())
    phase_macs = forms["phase-convs"].macs if "phase-convs" in forms else None
    if preferred != "border-split" and phase_macs is not None and phase_macs <= MAC_BOUND * before:
        return forms
    tiles = border_tiles(geometry, int(MAC_BOUND * before) // unit, bias_pieces)
    if tiles is not None and (preferred == "border-split" or phase_macs is None
                              or unit * tiles.macs_factor() < phase_macs):
        forms["border-split"] = replace(base, form="border-split", plans=split, tiles=tiles,
                                        macs=unit * tiles.macs_factor())
    return forms


def _order(macs: dict, before: int, preferred: str) -> list[str]:
    """Forms within MAC_BOUND, simplest first, then the rest, fewest MACs
    first (simplest on a tie); a preferred form that exists goes first."""
    within = [f for f in SIMPLEST_FIRST if f in macs and macs[f] <= MAC_BOUND * before]
    rest = sorted((f for f in macs if f not in within), key=lambda f: (macs[f], SIMPLEST_FIRST.index(f)))
    order = within + rest
    return [preferred] + [f for f in order if f != preferred] if preferred in macs else order


def _variants(low: Lowering, opset: int) -> list[Lowering]:
    """The ways to emit one form, fewest nodes first: DepthToSpace where it
    applies before Reshape/Transpose, the Convs' own pads before Pad nodes
    (for targets that take only SAME or VALID padding), and the pixel
    shuffle layout (single-conv CRD or DCR, though a grouped Conv cannot
    produce DCR; the phase forms DCR)."""
    if low.form == "bias-only":
        return [low]
    strided = any(pl.stride > 1 for pl in low.plans)
    layouts = ["DCR"] if low.form != "single-conv" or not strided else ["CRD", "DCR"] if low.group == 1 else ["CRD"]
    out = []
    for depth_to_space, pad_nodes in itertools.product((True, False), (False, True)):
        for layout in layouts:
            v = replace(low, layout=layout, depth_to_space=depth_to_space, pad_nodes=pad_nodes)
            if (depth_to_space or _uses_depth_to_space(replace(v, depth_to_space=True), opset)) and \
                    (not pad_nodes or _has_pads(v)):
                out.append(v)
    return out


def _has_pads(low: Lowering) -> bool:
    if low.tiles is None:
        axes = [next(c for c in plan.phases if c is not None) for plan in low.plans]
        return any(a.begin > 0 or a.end > 0 for a in axes)
    return _tiles_have_pads(low.tiles)


def _tiles_have_pads(tiles: Tiles) -> bool:
    return any(p.taps and (p.begin > 0 or p.end > 0 or (t is not None and _tiles_have_pads(t)))
               for ps, ts in zip(tiles.pieces, tiles.inner) for p, t in zip(ps, ts))


def _shuffle_rank(low: Lowering, opset: int) -> int:
    """The highest rank the pixel shuffle produces (4 for DepthToSpace)."""
    if low.form == "bias-only":
        return 0
    return shuffle_rank([pl.stride for pl in low.plans], low.layout, opset, low.depth_to_space)


def _uses_depth_to_space(low: Lowering, opset: int) -> bool:
    blocks = [pl.stride for pl in low.plans]
    return (low.depth_to_space and len(blocks) == 2 and blocks[0] == blocks[1] > 1
            and (opset >= 11 or low.layout == "DCR"))


def _label(low: Lowering, opset: int) -> str:
    label = low.form
    if low.form != "bias-only" and any(pl.stride > 1 for pl in low.plans):
        label += f", {low.layout} " + ("DepthToSpace" if _uses_depth_to_space(low, opset) else "Reshape/Transpose")
    return label + (", Pad nodes" if low.pad_nodes else "")


def _notes(low: Lowering, costs: tuple, preferred: str) -> tuple[str, ...]:
    """The form, its MACs against the ConvTranspose's and the other forms'."""
    macs, before = costs
    notes = [f"form={low.form}", f"macs={low.macs} ({low.macs / before:.3f}x ConvTranspose {before})"]
    notes += [f"{f} macs={m}" for f, m in macs.items() if f != low.form]
    if low.form == "border-split":
        notes.append(f"tiles={low.tiles.tile_count()} (phase outputs cut where the taps that reach the input "
                     "change)")
    if low.form != "bias-only" and any(pl.stride > 1 for pl in low.plans):
        notes.append(f"pixel shuffle layout={low.layout}" + ("" if low.depth_to_space else ", Reshape/Transpose"))
    if low.pad_nodes:
        notes.append("zero padding as Pad nodes, the Convs unpadded")
    if preferred != "auto" and preferred != low.form:
        notes.append(f"preferred form {preferred} cannot express this node")
    return tuple(notes)


# --- build helpers ----------------------------------------------------------

def _conv(b: Builder, x: str, kernel: np.ndarray, bias, axes, group: int, what: str,
          shared: dict, pad_nodes: bool = False) -> str:
    """Conv of x with `kernel`; negative pads become a Slice of x, positive
    ones the Conv's pads or a Pad node (Slices and Pads reused via `shared`)."""
    x = _slice_input(b, x, axes, shared)
    pads = [max(a.begin, 0) for a in axes] + [max(a.end, 0) for a in axes]
    if pad_nodes and any(pads):
        key, r = ("pad", x, tuple(pads)), len(axes)
        if key not in shared:
            shared[key] = pad_axes(b, x, r + 2, range(2, r + 2), list(zip(pads[:r], pads[r:])), "input_pad")
        x, pads = shared[key], [0] * len(pads)
    inputs = [x, b.initializer(kernel, f"{what}_weight")]
    if isinstance(bias, np.ndarray):
        inputs.append(b.initializer(bias, f"{what}_bias"))
    elif bias:
        inputs.append(bias)
    return b.op("Conv", inputs, what, kernel_shape=[a.size for a in axes], dilations=[a.dilation for a in axes],
                pads=pads, strides=[1] * len(axes), group=group)


def _slice_input(b: Builder, x: str, axes: tuple[AxisConv, ...], slices: dict) -> str:
    n = b.graph.shape(x)[2:]
    cut = tuple((i + 2, max(-a.begin, 0), n[i] - max(-a.end, 0)) for i, a in enumerate(axes)
                if a.begin < 0 or a.end < 0)
    if not cut:
        return x
    if cut not in slices:
        axes_, starts, ends = zip(*cut)
        slices[cut] = slice_axes(b, x, axes_, starts, ends, "input_slice")
    return slices[cut]


def _single_conv(b: Builder, x: str, wc: np.ndarray, bias, p: Lowering) -> str:
    """One Conv; its output channel c*B + phase (CRD) or phase*Cout + c (DCR)."""
    axes = tuple(next(c for c in plan.phases if c is not None) for plan in p.plans)
    blocks = prod(plan.stride for plan in p.plans)
    kernel = shared_kernel(wc, p.plans)
    b_rep = None if bias is None else np.repeat(bias, blocks)
    if p.layout == "DCR":
        kernel = kernel.reshape(p.cout, blocks, *kernel.shape[1:]).swapaxes(0, 1).reshape(kernel.shape)
        b_rep = None if bias is None else np.tile(bias, blocks)
    y = _conv(b, x, kernel, b_rep, axes, p.group, "conv", {}, p.pad_nodes)
    return _shuffle(b, y, p, [pl.blocks for pl in p.plans])


def _shuffle(b: Builder, y: str, p: Lowering, sizes) -> str:
    return pixel_shuffle(b, y, p.cout, [pl.stride for pl in p.plans], sizes, p.layout,
                         allow_depth_to_space=p.depth_to_space, max_rank=p.max_rank)


@dataclass
class _Tiling:
    """Build state of the phase forms: the values shared between tiles."""

    b: Builder
    x: str
    wc: np.ndarray
    bias: Optional[np.ndarray]
    p: Lowering
    slices: dict
    fillers: dict
    convs: int = 0


def _phase_convs(b: Builder, x: str, wc: np.ndarray, bias, p: Lowering) -> str:
    """Every phase from its tiles (one Conv per tile; consecutive phases with
    equal tile geometry share their Convs when group == 1 and the bias is a
    constant), phases no tap reaches as bias, zero padding up to the block
    grid, Concat in phase order, DCR pixel shuffle."""
    blocks = [plan.blocks for plan in p.plans]
    combos = list(itertools.product(*[range(plan.stride) for plan in p.plans]))
    ctx = _Tiling(b, x, wc, bias, p, {}, {})
    parts = []
    for k, run in enumerate(_runs(p, combos, p.group == 1 and p.bias_is_constant)):
        trees = [tile_tree(p.tiles, combo) for combo in run]
        counts = _phase_counts(p, run[0])
        if not _any_taps(trees[0]):
            parts += [_filler(ctx, blocks, 1)] * len(run)
            continue
        y = _tiles(ctx, trees, [()] * len(run), counts)
        missing = [(0, n - c) for n, c in zip(blocks, counts)]
        if any(hi for _, hi in missing):
            y = pad_axes(b, y, len(blocks) + 2, range(2, len(blocks) + 2), missing, f"phase{k}_pad")
        parts.append(y)
    y = parts[0] if len(parts) == 1 else b.op("Concat", parts, "concat", axis=1)
    return _shuffle(b, y, p, blocks)


def _tiles(ctx: _Tiling, trees: list, paths: list, counts: list) -> str:
    """The tiles of `trees` (one per phase of a run, equal geometry) along
    the next axis, concatenated; `paths` hold each phase's outer pieces."""
    axis, parts = len(paths[0]), []
    for column in zip(*trees):
        piece, sub = column[0]
        deeper = [path + (pc,) for path, (pc, _) in zip(paths, column)]
        if not piece.taps:
            sizes = [a.count for a in deeper[0]] + counts[axis + 1:]
            parts.append(_filler(ctx, sizes, len(trees)))
        elif sub is None:
            parts.append(_tile_conv(ctx, deeper))
        else:
            parts.append(_tiles(ctx, [s for _, s in column], deeper, counts))
    return parts[0] if len(parts) == 1 else ctx.b.op("Concat", parts, "tile_concat", axis=axis + 2)


def _tile_conv(ctx: _Tiling, paths: list) -> str:
    kernel = np.concatenate([phase_kernel(ctx.wc, path) for path in paths])
    bias = np.tile(ctx.bias, len(paths)) if ctx.bias is not None else ctx.p.bias
    ctx.convs += 1
    return _conv(ctx.b, ctx.x, kernel, bias, paths[0], ctx.p.group, f"tile{ctx.convs - 1}_conv", ctx.slices,
                 ctx.p.pad_nodes)


def _filler(ctx: _Tiling, sizes, repeat: int) -> str:
    key = (tuple(sizes), repeat)
    if key not in ctx.fillers:
        ctx.fillers[key] = _bias_only(ctx.b, ctx.x, ctx.p.cout, ctx.p.bias, ctx.bias, sizes, repeat)
    return ctx.fillers[key]


def _phase_counts(p: Lowering, combo) -> list[int]:
    return [max(-(-(plan.out - r) // plan.stride), 0) for plan, r in zip(p.plans, combo)]


def _any_taps(tree) -> bool:
    return any(piece.taps and (sub is None or _any_taps(sub)) for piece, sub in tree)


def _runs(p: Lowering, combos: list, merge: bool) -> list[list]:
    """Consecutive phases with equal tile geometry (and bias-only ones) grouped."""
    def geometry(tree):
        return tuple(((pc.size, pc.dilation, pc.begin, pc.end, pc.count, bool(pc.taps)),
                      None if sub is None else geometry(sub)) for pc, sub in tree)

    def key(combo):
        tree = tile_tree(p.tiles, combo)
        return (tuple(_phase_counts(p, combo)), geometry(tree)) if _any_taps(tree) else None

    runs, keys = [], []
    for combo in combos:
        k = key(combo)
        if runs and (merge or k is None) and keys[-1] == k:
            runs[-1].append(combo)
        else:
            runs.append([combo])
            keys.append(k)
    return runs


def _bias_only(b: Builder, x: str, cout: int, bias_name: str, bias, sizes, repeat: int) -> str:
    """[N, Cout*repeat, sizes...] holding the bias (or zeros): outputs no tap reaches."""
    dtype = helper.tensor_dtype_to_np_dtype(b.graph.dtype(x))
    batch = b.graph.shape(x)[0]
    z = zeros(b, x, [batch if isinstance(batch, int) else None, cout * repeat, *sizes], dtype, "no_tap_zeros")
    if not bias_name:
        return z
    column = [cout * repeat] + [1] * len(sizes)
    if bias is not None:
        col = b.initializer(np.tile(bias, repeat).reshape(column), "no_tap_bias")
    else:
        col = b.op("Reshape", [bias_name, b.ints(column, "no_tap_bias_shape")], "no_tap_bias")
    return b.op("Add", [z, col], "no_tap")


def _crop(b: Builder, y: str, plans) -> str:
    """Cut the block grid [-shift, blocks*s - shift) back to [0, out)."""
    cut = [(i + 2, pl.shift, pl.shift + pl.out) for i, pl in enumerate(plans)
           if pl.shift or pl.blocks * pl.stride != pl.out]
    if not cut:
        return y
    axes, starts, ends = zip(*cut)
    return slice_axes(b, y, axes, starts, ends, "crop")
