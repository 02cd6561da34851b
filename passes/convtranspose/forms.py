"""The lowering forms of ConvTranspose (see rewrite.py for the identity).

    single-conv   one Conv over the window shared by all phases, then the
                  pixel shuffle (needs a constant bias)
    phase-convs   one Conv per output phase with exactly its taps, Concat,
                  pixel shuffle (DCR)
    border-split  phase-convs with each phase cut into tiles where the taps
                  that reach the input change, so no tap multiplies padding;
                  offered only where phase-convs is above the MAC bound
    bias-only     the padding crops away every computed value: the bias

Each form's variants are the ways to emit it: the pixel shuffle as
DepthToSpace or Reshape/Transpose, in CRD or DCR layout (single-conv), and
zero padding as the Convs' own pads or as Pad nodes (for targets that take
only SAME or VALID padding).  With a constant bias, each also has a "bias
after the shuffle" variant: Convs without bias, the shuffle and crop, then
one Add of B [Cout] (ConvTranspose(x) + B computed in that order; phases no
tap reaches are zeros before the Add), for toolchains whose int8 quantizer
mis-scales a pixel shuffle (Profile.bias_after_shuffle).  Where the form crops
the shuffle's block grid, the "bias before the crop" variant puts that Add
between the shuffle and the crop Slice (a Slice commutes with adding B per
channel), so the Slice reads an operator that requantizes in int8, not the
shuffle's last Reshape: a target whose quantizer forces a Slice's scale onto
its input and whose compiler then refuses the Reshape's two scales
(`no_reshaped_inputs`, the Ethos-U profiles) runs that one.  It is listed
last (with Profile.bias_after_shuffle, after the "bias after the shuffle"
variants), so a target takes it only where those before it do not fit.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from math import gcd, prod
from typing import ClassVar, Optional

from onnx import helper

from convrewrite.core.builder import Builder
from convrewrite.core.cost import grouped
from convrewrite.core.forms import Cost, Form
from convrewrite.emit.bias_fill import bias_fill, bias_fill_cost, bias_fill_folds
from convrewrite.emit.opset_ops import NOTHING, ZEROS_MIN_OPSET, Moved, can_make_zeros, gemm, movement, other_nodes
from convrewrite.emit.pixel_shuffle import GATHERED, is_depth_to_space, pixel_shuffle_cost, shuffle_rank

from .batchnorm import Norm, fold
from .build import (Lowering, _any_taps, _bias_add, _crop, _phase_convs, _phase_counts, _runs,
                    _single_conv, crops)
from .geometry import (GEOMETRY_CACHE, Tiles, border_tiles, conv_weight, phases, plan_macs, shared_plan, split_plan,
                       split_tiles, tile_tree)

MAC_BOUND = 1.1  # a form within this factor of the ConvTranspose's MACs needs no more nodes
BIAS_AFTER = "bias after the shuffle"
BIAS_BEFORE_CROP = "bias before the crop"


@dataclass(frozen=True)
class Deconv:
    """What match computed: the node's geometry and tensors."""

    geometry: tuple                # AxisGeometry per spatial axis
    group: int
    cin: int
    cout: int
    weight: str
    bias: str                      # "" when there is none
    bias_is_constant: bool
    macs: int                      # the ConvTranspose's, per batch item
    opset: int
    norm: Optional[Norm] = field(default=None, kw_only=True)   # a BatchNormalization folded in

    @property
    def bias_term(self) -> str:
        """The name standing for the output's bias: the ConvTranspose's (""
        none), or with a folded BatchNormalization its B (a constant then; its
        values, B' of batchnorm.py, come from `weight_and_bias`)."""
        return self.bias or (self.norm.bias if self.norm else "")

    @cached_property   # asked by every form, several times per node (the params are frozen)
    def split(self) -> tuple:
        return tuple(split_plan(g) for g in self.geometry)

    @cached_property   # likewise: which phases no tap reaches
    def split_phases(self) -> tuple:
        return tuple(phases(self.split))

    @cached_property   # single-conv's plans: its variants, costs and build each ask
    def shared(self) -> tuple:
        return tuple(shared_plan(g) for g in self.geometry)

    @cached_property   # phase-convs' tiles (and border-split's measure): likewise
    def split_tiles(self) -> Tiles:
        return _split_tiles(self.geometry)

    @property
    def bias_pieces(self) -> bool:
        """Whether phases no tap reaches can be filled with the bias (zeros + B)."""
        return can_make_zeros(self.opset)


def weight_and_bias(d: Deconv, graph) -> tuple:
    """The values the Convs compute with: the ConvTranspose's weight and
    constant bias (None: none, or computed at run time), with the
    BatchNormalization folded in when there is one (batchnorm.py)."""
    w = graph.constant(d.weight)
    b = graph.constant(d.bias) if d.bias and d.bias_is_constant else None
    if d.norm:
        w, b = fold(w, b, d.group, d.norm, graph)
    return w, b


def replaced_output(match) -> str:
    """The value a lowering replaces: the folded BatchNormalization's output, or the ConvTranspose's."""
    norm = match.params.norm
    return norm.output if norm else match.node.output[0]


@dataclass(frozen=True)
class Emit:
    """A variant: how the pixel shuffle and the zero padding are emitted."""

    layout: str = "DCR"
    depth_to_space: bool = True
    pad_nodes: bool = False
    label: str = ""
    bias_after: bool = False
    before_crop: bool = False   # with bias_after: the Add between the shuffle and the crop


# --- the forms -----------------------------------------------------------------

class _ConvTransposeForm(Form):
    bias_after_variants: ClassVar[bool] = True   # the quantized forms keep the bias in their integer Convs

    def plans(self, d: Deconv) -> tuple:
        return d.split

    def tiles(self, d: Deconv) -> Optional[Tiles]:
        return None

    def lowering(self, d: Deconv, v: Emit, named: bool = True) -> Lowering:
        """What the builders emit for `d` in variant `v`.  Not `named`: without
        the value names (the bias only as present or not), which is all the
        variants and the costs depend on, so that nodes of one geometry share
        them (the caches below)."""
        weight, bias, after = d.weight, *(("", d.bias_term) if v.bias_after else (d.bias_term, ""))
        if not named:
            weight, bias, after = "", "b" if bias else "", "a" if after else ""
        return Lowering(self.name, self.plans(d), self.tiles(d), d.group, d.cout, weight, bias,
                        d.bias_is_constant, v.layout, v.depth_to_space, v.pad_nodes, after, v.before_crop)

    def variants(self, match, graph):
        """The structure variants, then with a constant bias each again with
        the bias after the shuffle and, where the form crops, each again with
        it before the crop (the module docstring)."""
        d = match.params
        low = self.lowering(d, Emit(), named=False)
        emits = list(_structure_variants(low, d.opset))
        if not (self.bias_after_variants and d.bias_term and d.bias_is_constant):
            return emits

        def labelled(e, what):
            return ", ".join(filter(None, [e.label, what]))

        after = [replace(e, bias_after=True, label=labelled(e, BIAS_AFTER)) for e in emits]
        if not crops(low.plans):
            return emits + after
        return emits + after + [replace(e, bias_after=True, before_crop=True, label=labelled(e, BIAS_BEFORE_CROP))
                                for e in emits]

    def nested(self, match, graph) -> Optional[str]:
        """Output phase r is a correlation of dilation d / gcd(d, s) (rewrite.py):
        where that is above 1 on an axis of more than one tap, the Convs
        this form builds are dilated, and a dilated-conv pass in the run
        lowers each of them again."""
        left = [g.d // gcd(g.d, g.s) for g in match.params.geometry if g.k > 1]
        if not any(r > 1 for r in left):
            return None
        return (f"its Convs keep dilation {'x'.join(map(str, left))}, which the run's passes lower again")

    def cost(self, match, variant, graph) -> Cost:
        low = self.lowering(match.params, variant, named=False)
        moved = _Costing.of(match, graph, low).cached_total() + (other_nodes(1) if low.bias_after else NOTHING)
        macs = self.macs(match.params)
        return Cost(macs=macs, moved_bytes=moved.bytes, nodes=moved.nodes, streamed_bytes=moved.streamed,
                    grouped_macs=macs if grouped(match.params.cin // match.params.group) else 0,
                    max_rank=max(len(low.plans) + 2, _shuffle_rank(low, match.params.opset)))

    def build(self, match, variant, graph, b: Builder) -> dict:
        p = self.lowering(match.params, variant)
        x = match.node.input[0]
        weight, bias = weight_and_bias(match.params, graph)
        wc = conv_weight(weight, p.group)
        conv_bias = None if p.bias_after else bias
        y = _single_conv(b, x, wc, conv_bias, p) if p.form == "single-conv" else _phase_convs(b, x, wc, conv_bias, p)
        if p.form == "border-split":
            b.note(f"tiles={p.tiles.tile_count()} (phase outputs cut where the taps that reach the input change)")
        if p.bias_after and p.before_crop:
            b.note("bias added after the pixel shuffle, before the crop")
            y = _bias_add(b, y, bias, len(p.plans) + 2)
        y = _crop(b, y, p.plans)
        if p.bias_after and not p.before_crop:
            b.note("bias added after the pixel shuffle")
            y = _bias_add(b, y, bias, len(p.plans) + 2)
        return {replaced_output(match): y}

    def macs(self, d: Deconv) -> int:
        raise NotImplementedError


class SingleConv(_ConvTransposeForm):
    name = "single-conv"

    def applies(self, match, graph):
        d = match.params
        if not any(d.split_phases):
            return "every computed value is cropped away (the bias-only form)"
        return None if d.bias_is_constant else "the bias is computed at run time and cannot be repeated per phase"

    def plans(self, d):
        return d.shared

    def macs(self, d):
        return plan_macs(self.plans(d), d.cin, d.cout, d.group)


class PhaseConvs(_ConvTransposeForm):
    name = "phase-convs"

    def applies(self, match, graph):
        d = match.params
        if not any(d.split_phases):
            return "every computed value is cropped away (the bias-only form)"
        if d.bias_pieces or all(d.split_phases):
            return None
        return ("the bias is computed at run time and some output phases have no tap, which needs zeros "
                f"(opset {ZEROS_MIN_OPSET}); upgrade the model's opset")

    def tiles(self, d):
        return d.split_tiles

    def macs(self, d):
        return _unit(d) * self.tiles(d).macs_factor()


@dataclass(frozen=True)
class BorderSplit(_ConvTransposeForm):
    """`asked`: the user prefers this form, so it is worked out even where
    phase-convs is within the MAC bound."""

    asked: bool = False
    name = "border-split"

    def applies(self, match, graph):
        d = match.params
        if not any(d.split_phases):
            return "every computed value is cropped away (the bias-only form)"
        phase_macs = PhaseConvs().macs(d) if PhaseConvs().applies(match, graph) is None else None
        if not self.asked and phase_macs is not None and phase_macs <= MAC_BOUND * d.macs:
            return "phase-convs is within the MAC bound already, so no tiling is needed"
        tiles = self.tiles(d)
        if tiles is None:
            return f"no tiling keeps the MACs within {MAC_BOUND}x the ConvTranspose's"
        if not self.asked and phase_macs is not None and _unit(d) * tiles.macs_factor() >= phase_macs:
            return "tiling saves no MACs over phase-convs here"
        return None

    def tiles(self, d):
        return _border_tiles(d.geometry, int(MAC_BOUND * d.macs) // _unit(d), d.bias_pieces)

    def macs(self, d):
        return _unit(d) * self.tiles(d).macs_factor()


class BiasOnly(Form):
    name = "bias-only"

    def applies(self, match, graph):
        d = match.params
        if any(d.split_phases):
            return "some output is computed from the input"
        if not d.bias_pieces:
            return ("the padding crops away every computed value, so the output is the bias alone, which "
                    f"needs zeros (opset {ZEROS_MIN_OPSET}); upgrade the model's opset")
        return None

    def cost(self, match, variant, graph) -> Cost:
        d = match.params
        low = Lowering(self.name, d.split, None, d.group, d.cout, d.weight, d.bias_term, d.bias_is_constant)
        moved, _ = _Costing.of(match, graph, low).filler([g.out for g in d.geometry], 1)
        # no node at all where the zeros are an initializer and there is no bias to add
        return Cost(macs=0, moved_bytes=moved.bytes, nodes=moved.nodes, grouped_macs=0, streamed_bytes=0,
                    max_rank=len(d.geometry) + 2 if moved.nodes else None)

    def build(self, match, variant, graph, b: Builder) -> dict:
        d, x = match.params, match.node.input[0]
        _, bias = weight_and_bias(d, graph)
        sizes = [g.out for g in d.geometry]
        return {replaced_output(match): bias_fill(b, x, d.cout, d.bias_term, bias, sizes)}


def forms(asked: Optional[str]) -> tuple[Form, ...]:
    """The pass's forms, simplest first."""
    return (SingleConv(), PhaseConvs(), BorderSplit(asked=asked == "border-split"), BiasOnly())


FORM_NAMES = ("single-conv", "phase-convs", "border-split", "bias-only")
SELECTABLE = FORM_NAMES[:3]  # bias-only is what is left when the padding crops everything


def _unit(d: Deconv) -> int:
    """MACs per unit of a plan's or a tiling's macs factor."""
    return d.cout * (d.cin // d.group)


@lru_cache(maxsize=64)
def _split_tiles(geometry) -> Tiles:
    return split_tiles(geometry)


@lru_cache(maxsize=64)
def _border_tiles(geometry, budget: int, bias_pieces: bool) -> Optional[Tiles]:
    return border_tiles(geometry, budget, bias_pieces)


# --- variants ------------------------------------------------------------------

@lru_cache(maxsize=GEOMETRY_CACHE)
def _structure_variants(low: Lowering, opset: int) -> tuple:
    return tuple(_variants(low, opset))


def _variants(low: Lowering, opset: int, gathered: bool = False) -> list[Emit]:
    """The ways to emit one form, fewest nodes first: DepthToSpace where it
    applies before Reshape/Transpose, the Convs' own pads before Pad nodes,
    and the pixel shuffle layout (single-conv CRD or DCR, though a grouped
    Conv cannot produce DCR -- with `gathered` its CRD channels may be put
    in DCR order by a Gather; the phase forms DCR)."""
    strided = any(pl.stride > 1 for pl in low.plans)
    layouts = (["DCR"] if low.form != "single-conv" or not strided else ["CRD", "DCR"] if low.group == 1
               else ["CRD", GATHERED] if gathered else ["CRD"])
    out = []
    for depth_to_space, pad_nodes in itertools.product((True, False), (False, True)):
        for layout in layouts:
            v = replace(low, layout=layout, depth_to_space=depth_to_space, pad_nodes=pad_nodes)
            if (depth_to_space or _uses_depth_to_space(replace(v, depth_to_space=True), opset)) and \
                    (not pad_nodes or _has_pads(v)):
                out.append(Emit(layout, depth_to_space, pad_nodes, _label(v, opset)))
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
    return shuffle_rank([pl.stride for pl in low.plans], low.layout, opset, low.depth_to_space)


def _uses_depth_to_space(low: Lowering, opset: int) -> bool:
    return is_depth_to_space([pl.stride for pl in low.plans], low.layout, opset, low.depth_to_space)


def _label(low: Lowering, opset: int) -> str:
    """"DCR DepthToSpace", "CRD Reshape/Transpose, Pad nodes", ... ("" for an
    unstrided form with the Convs' own pads)."""
    parts = []
    if any(pl.stride > 1 for pl in low.plans):
        parts.append(f"{low.layout} " + ("DepthToSpace" if _uses_depth_to_space(low, opset) else "Reshape/Transpose"))
    if low.pad_nodes:
        parts.append("Pad nodes")
    return ", ".join(parts)


# --- nodes and bytes moved, mirroring the builders below (batch 1) ----------------

@dataclass
class _Costing:
    """Walks a lowering the way the builders do, counting nodes and the
    bytes of data movement instead of emitting them: the Slices and Pads of
    the input shared between Convs, the bias-only fillers built once per
    shape, the Pads up to the block grid, the Concats, the pixel shuffle and
    the crop.  A filler computed from constants only is folded by the cost
    measure, so a Concat reading it does not count its bytes."""

    low: Lowering
    sizes: tuple              # x's spatial sizes
    cin: int
    itemsize: int
    bias_itemsize: int
    opset: int
    batch: object             # x's batch dim (an int, or symbolic)
    seen: set = field(default_factory=set)

    @classmethod
    def of(cls, match, graph, low: Lowering) -> "_Costing":
        x = match.node.input[0]
        d: Deconv = match.params

        def itemsize(name):
            return helper.tensor_dtype_to_np_dtype(graph.dtype(name)).itemsize

        return cls(low, tuple(g.n for g in d.geometry), d.cin, itemsize(x),
                   itemsize(d.bias_term) if d.bias_term else 0, d.opset, graph.shape(x)[0])

    def cached_total(self) -> Moved:
        """total(), worked out once per structure (a fresh walk: `seen` empty):
        shared by the nodes of one geometry where `low` has no value names
        (_ConvTransposeForm.lowering, not `named`; total() reads none)."""
        return _structure_total(self.low, self.sizes, self.cin, self.itemsize, self.bias_itemsize,
                                self.opset, self.batch)

    def total(self) -> Moved:
        p = self.low
        blocks = [plan.blocks for plan in p.plans]
        if p.form == "single-conv":
            axes = tuple(next(c for c in plan.phases if c is not None) for plan in p.plans)
            moved = self.conv(axes)
        else:
            moved = self.phases(blocks)
        moved += pixel_shuffle_cost(p.cout, [pl.stride for pl in p.plans], blocks, self.itemsize, p.layout,
                                    self.opset, p.depth_to_space)
        return moved + self.crop()

    def conv(self, axes) -> Moved:
        """`_conv`: a Slice of x where a pad is negative, a Pad node where
        one is positive (with pad_nodes), each once per distinct geometry."""
        moved, shape = NOTHING, [1, self.cin, *self.sizes]
        cut = tuple((i, max(-a.begin, 0), n - max(-a.end, 0)) for i, (a, n) in enumerate(zip(axes, self.sizes))
                    if a.begin < 0 or a.end < 0)
        if cut:
            sliced = list(shape)
            for i, start, end in cut:
                sliced[i + 2] = end - start
            if ("slice", cut) not in self.seen:
                self.seen.add(("slice", cut))
                moved += movement([shape], sliced, self.itemsize)
            shape = sliced
        pads = [max(a.begin, 0) for a in axes] + [max(a.end, 0) for a in axes]
        if self.low.pad_nodes and any(pads) and ("pad", cut, tuple(pads)) not in self.seen:
            self.seen.add(("pad", cut, tuple(pads)))
            r = len(axes)
            padded = shape[:2] + [n + lo + hi for n, lo, hi in zip(shape[2:], pads[:r], pads[r:])]
            moved += movement([shape], padded, self.itemsize)
        # the Conv's im2col matrix: input channels x kernel taps x output positions
        im2col = self.cin * prod(a.size * a.count for a in axes) * self.itemsize
        return moved + gemm(im2col)

    def filler(self, sizes, repeat: int) -> tuple[Moved, bool]:
        """`bias_fill` (once per shape): (its cost, whether it is constant)."""
        p = self.low
        key = ("filler", tuple(sizes), repeat)
        constant = bias_fill_folds(p.cout, sizes, repeat, bool(p.bias), p.bias_is_constant)
        if key in self.seen:
            return NOTHING, constant
        self.seen.add(key)
        return bias_fill_cost(self.batch, p.cout, sizes, repeat, bool(p.bias), p.bias_is_constant, self.opset,
                              self.itemsize, self.bias_itemsize), constant

    def phases(self, blocks) -> Moved:
        """`_phase_convs`: per run of phases its tiles (or a filler) and a
        Pad up to the block grid; a Concat of the parts."""
        p = self.low
        combos = list(itertools.product(*[range(plan.stride) for plan in p.plans]))
        moved, parts = NOTHING, []
        for run in _runs(p, combos, p.group == 1 and p.bias_is_constant):
            trees = [tile_tree(p.tiles, combo) for combo in run]
            counts = _phase_counts(p, run[0])
            if not _any_taps(trees[0]):
                cost, constant = self.filler(blocks, 1)
                moved += cost
                parts += [None if constant else [1, p.cout, *blocks]] * len(run)
                continue
            cost, shape = self.tiles(trees, [()] * len(run), counts)
            moved += cost
            if any(n > c for n, c in zip(blocks, counts)):
                grid = shape[:2] + list(blocks)
                moved, shape = moved + movement([shape], grid, self.itemsize), grid
            parts.append(shape)
        if len(parts) > 1:
            moved += movement([s for s in parts if s is not None], [1, p.cout * len(combos), *blocks],
                              self.itemsize)
        return moved

    def tiles(self, trees, paths, counts) -> tuple[Moved, list]:
        """`_tiles`: (cost, output shape) of the tiles along the next axis."""
        axis, moved, parts, shapes = len(paths[0]), NOTHING, [], []
        channels = self.low.cout * len(trees)
        for column in zip(*trees):
            piece, sub = column[0]
            deeper = [path + (pc,) for path, (pc, _) in zip(paths, column)]
            if not piece.taps:
                sizes = [a.count for a in deeper[0]] + list(counts[axis + 1:])
                cost, constant = self.filler(sizes, len(trees))
                moved += cost
                shape = [1, channels, *sizes]
                parts.append(None if constant else shape)
            elif sub is None:
                moved += self.conv(deeper[0])
                shape = [1, channels, *[a.count for a in deeper[0]]]
                parts.append(shape)
            else:
                cost, shape = self.tiles([s for _, s in column], deeper, counts)
                moved += cost
                parts.append(shape)
            shapes.append(shape)
        if len(shapes) == 1:
            return moved, shapes[0]
        out = list(shapes[0])
        out[axis + 2] = sum(s[axis + 2] for s in shapes)
        return moved + movement([s for s in parts if s is not None], out, self.itemsize), out

    def crop(self) -> Moved:
        """`_crop`: a Slice back from the block grid to the output."""
        plans = self.low.plans
        if not crops(plans):
            return NOTHING
        grid = [1, self.low.cout, *[pl.blocks * pl.stride for pl in plans]]
        out = grid[:2] + [pl.out if pl.shift or pl.blocks * pl.stride != pl.out else pl.blocks * pl.stride
                          for pl in plans]
        return movement([grid], out, self.itemsize)


@lru_cache(maxsize=GEOMETRY_CACHE)
def _structure_total(low: Lowering, sizes: tuple, cin: int, itemsize: int, bias_itemsize: int, opset: int,
                     batch) -> Moved:
    return _Costing(low, sizes, cin, itemsize, bias_itemsize, opset, batch).total()
