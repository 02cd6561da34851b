"""Builders of the ConvTranspose forms: Convs over phase kernels and tiles,
fillers for phases no tap reaches (convrewrite/emit/bias_fill.py), the pixel shuffle and the final crop
(forms.py says which form builds what; geometry.py has the arithmetic)."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from math import prod
from typing import Optional

import numpy as np

from convrewrite.core.builder import Builder
from convrewrite.emit.bias_fill import bias_fill
from convrewrite.emit.opset_ops import pad_axes, slice_axes
from convrewrite.emit.pixel_shuffle import pixel_shuffle

from .geometry import (AxisConv, AxisPlan, Tiles, phase_kernel, shared_kernel, tile_tree)


@dataclass(frozen=True)
class Lowering:
    """Everything the builders need: the form, its per-axis plans and, for
    the phase forms, the tiles of every phase."""

    form: str
    plans: tuple[AxisPlan, ...]
    tiles: Optional[Tiles]
    group: int
    cout: int
    weight: str
    bias: str
    bias_is_constant: bool
    layout: str = "DCR"
    depth_to_space: bool = True
    pad_nodes: bool = False
    bias_after: str = ""   # a constant bias added after the shuffle and crop (then `bias` is "")
    before_crop: bool = False   # with bias_after: the Add between the shuffle and the crop


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
    kernel = shared_kernel(wc, p.plans, dcr=p.layout == "DCR")
    if bias is None:
        b_rep = None
    else:
        b_rep = np.tile(bias, blocks) if p.layout == "DCR" else np.repeat(bias, blocks)
    y = _conv(b, x, kernel, b_rep, axes, p.group, "conv", {}, p.pad_nodes)
    return _shuffle(b, y, p, [pl.blocks for pl in p.plans])


def _shuffle(b: Builder, y: str, p: Lowering, sizes) -> str:
    return pixel_shuffle(b, y, p.cout, [pl.stride for pl in p.plans], sizes, p.layout,
                         allow_depth_to_space=p.depth_to_space)


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
        ctx.fillers[key] = bias_fill(ctx.b, ctx.x, ctx.p.cout, ctx.p.bias, ctx.bias, sizes, repeat)
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


def _bias_add(b: Builder, y: str, bias: np.ndarray, rank: int) -> str:
    """B + y, B [Cout] as [1, Cout, 1, ...].  The constant goes first:
    measured with onnx2tf 2.6.9, `Add(y, B)` after a DepthToSpace with a
    symbolic batch is mis-placed by tf_converter ([1, 1, Cout, 1] against
    NHWC, maskrcnn_mask_head), and a rank-3 B [Cout, 1, 1] makes
    flatbuffer_direct wrap the Add in TRANSPOSEs (unet_decoder, int8 error
    2.3e-1); `Add(B, y)` at rank 4 converts right with both."""
    return b.op("Add", [b.initializer(bias.reshape(1, -1, *[1] * (rank - 2)), "bias"), y], "bias_add")


def crops(plans) -> bool:
    """Whether the block grid the shuffle makes is larger than the output (a crop Slice follows)."""
    return any(pl.shift or pl.blocks * pl.stride != pl.out for pl in plans)


def _crop(b: Builder, y: str, plans) -> str:
    """Cut the block grid [-shift, blocks*s - shift) back to [0, out)."""
    if not crops(plans):
        return y
    cut = [(i + 2, pl.shift, pl.shift + pl.out) for i, pl in enumerate(plans)
           if pl.shift or pl.blocks * pl.stride != pl.out]
    axes, starts, ends = zip(*cut)
    return slice_axes(b, y, axes, starts, ends, "crop")
