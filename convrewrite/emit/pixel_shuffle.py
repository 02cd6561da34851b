"""Pixel shuffle (depth -> space) and its inverse, for any spatial rank.

With blocks b = (b_1..b_r), B = prod(b) and phase index p = (p_1..p_r) in
row-major order over b, pixel_shuffle moves channels to space:

    y[n, c, i_1*b_1 + p_1, ..., i_r*b_r + p_r] = x[n, channel(c, p), i_1, ..., i_r]

    CRD layout:  channel(c, p) = c * B + flat(p)      (PyTorch PixelShuffle)
    DCR layout:  channel(c, p) = flat(p) * C + c      (ONNX DepthToSpace default)

pixel_unshuffle is the exact inverse (space -> depth; in DCR layout it is
ONNX SpaceToDepth).  For 4-D tensors with equal blocks the single ONNX
operator is emitted; otherwise Reshape -> Transpose -> Reshape, with 0 in the
Reshape shapes so a symbolic batch dimension passes through.

That general form splits every block axis out at once: rank 2 + 2r.  Above
rank 6 (3-D blocks: rank 8) the shuffle runs one axis at a time instead, since
TFLite's TRANSPOSE and most NPU compilers stop at rank 6 (and onnx2tf
mis-converts the rank-8 Reshape).  The phase index of the axis being moved is
the outermost block left in the channel (DCR) or the one right after C (CRD):

    DCR  channel = p_i * (B_rest * C) + rest     [N, b_i, B_rest*C, (pre, n_i), post]
    CRD  channel = (c * b_i + p_i) * B_rest + rest   [N, C, b_i, B_rest, (pre, n_i), post]

Moving b_i behind n_i turns axis i into n_i * b_i and leaves the remaining
blocks in the same layout, so one such step per axis with a block above 1
(ranks 5 and 6) makes the shuffle.

`per_axis` asks for those steps also where the shuffle would be a
DepthToSpace (2-D, equal blocks, static sizes): onnxruntime's CPU
DepthToSpace is a generic 6-D strided copy (about 1 GB/s), while a Transpose
moving one axis copies whole blocks; on onnxruntime 1.32 CPU, one thread, a
2x2 shuffle ran 2-3.6x faster per axis, DCR and CRD (C=16 on 128x128: 5.24
against 2.40 ms; docs/latency.md).  Only for the runtime without a target
(the shuffle-spelling pass): NPUs want DEPTH_TO_SPACE and rank <= 4.
"""
from __future__ import annotations

from math import prod
from typing import Optional, Sequence

from ..core.builder import Builder
from .opset_ops import Moved, tensor_bytes

# CRD channels put into DCR order by one Gather on the channel axis, then the
# DCR shuffle: for targets whose DepthToSpace is DCR only, behind a grouped
# Conv that can only produce CRD (its groups' outputs must stay contiguous).
GATHERED = "CRD via Gather, DCR"
LAYOUTS = ("DCR", "CRD", GATHERED)
# The highest rank the single Reshape/Transpose/Reshape form may use.
MAX_GENERAL_RANK = 6


def _interleave(rank: int, channel_axis: int, block_axes: Sequence[int],
                space_axes: Sequence[int]) -> list[int]:
    """Permutation to [N, C, n_1, b_1, n_2, b_2, ...] from the split layout."""
    perm = [0, channel_axis]
    for s_ax, b_ax in zip(space_axes, block_axes):
        perm += [s_ax, b_ax]
    return perm


def _split_layout(channels: int, blocks: Sequence[int], layout: str):
    """Shape of the channel axis split into (C, b...) and where each part sits."""
    r = len(blocks)
    if layout == "CRD":   # [N, C, b_1..b_r, n_1..n_r]
        return [channels, *blocks], 1, list(range(2, 2 + r)), list(range(2 + r, 2 + 2 * r))
    if layout == "DCR":   # [N, b_1..b_r, C, n_1..n_r]
        return [*blocks, channels], 1 + r, list(range(1, 1 + r)), list(range(2 + r, 2 + 2 * r))
    raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")


def square_blocks(blocks: Sequence[int]) -> bool:
    """2-D with one block size above 1: what a single DepthToSpace / SpaceToDepth moves."""
    return len(blocks) == 2 and blocks[0] == blocks[1] > 1


def is_depth_to_space(blocks: Sequence[int], layout: str, opset: int, allow_depth_to_space: bool = True) -> bool:
    """Whether pixel_shuffle emits the single DepthToSpace (GATHERED: after its Gather);
    CRD needs DepthToSpace's `mode`, which opset 11 added."""
    layout = "DCR" if layout == GATHERED else layout
    return allow_depth_to_space and square_blocks(blocks) and (opset >= 11 or layout == "DCR")


def is_space_to_depth(blocks: Sequence[int], layout: str, allow_space_to_depth: bool = True) -> bool:
    """Whether pixel_unshuffle emits the single SpaceToDepth (DCR only: it has no `mode`)."""
    return allow_space_to_depth and square_blocks(blocks) and layout == "DCR"


def per_axis_applies(blocks: Sequence[int], sizes: Sequence, layout: str, opset: int,
                     allow_depth_to_space: bool = True) -> bool:
    """Whether `per_axis` changes this shuffle: it would be a DepthToSpace
    and the sizes the per-axis steps' Reshapes name are static."""
    return is_depth_to_space(blocks, layout, opset, allow_depth_to_space) and all(isinstance(n, int) for n in sizes)


def shuffle_rank(blocks: Sequence[int], layout: str, opset: int,
                 allow_depth_to_space: bool = True, per_axis: bool = False, sizes: Sequence = ()) -> int:
    """The highest tensor rank pixel_shuffle (or pixel_unshuffle) emits
    (`per_axis` counts only with the input's spatial `sizes`)."""
    layout = "DCR" if layout == GATHERED else layout
    r = len(blocks)
    if all(k == 1 for k in blocks):
        return 0
    if per_axis and per_axis_applies(blocks, sizes, layout, opset, allow_depth_to_space):
        return 5 if layout == "DCR" else 6
    if is_depth_to_space(blocks, layout, opset, allow_depth_to_space):
        return 4
    if 2 + 2 * r <= MAX_GENERAL_RANK:
        return 2 + 2 * r
    return 5 if layout == "DCR" else 6


def pixel_shuffle(b: Builder, x: str, channels: int, blocks: Sequence[int],
                  sizes: Sequence[int], layout: str = "DCR",
                  allow_depth_to_space: bool = True, max_rank: int | None = None,
                  per_axis: bool = False) -> str:
    """[N, C*B, n...] -> [N, C, n*b...]; returns the output value name.

    `sizes` are the input's spatial sizes (static).  With max_rank=4 a 4-D
    tensor is never expanded past rank 4 (used for targets that reject higher
    ranks); that needs 2-D with equal blocks.  `per_axis`: one axis at a time
    where it would be a DepthToSpace (`per_axis_applies`; see the module
    docstring).
    """
    blocks, sizes, r = list(blocks), list(sizes), len(blocks)
    if layout == GATHERED and any(k > 1 for k in blocks):
        x = b.op("Gather", [x, b.ints(crd_to_dcr(channels, blocks), "dcr_order")], "dcr_order", axis=1)
        return pixel_shuffle(b, x, channels, blocks, sizes, "DCR", allow_depth_to_space, max_rank, per_axis)
    rank = shuffle_rank(blocks, layout, b.graph.opset(), allow_depth_to_space, per_axis, sizes)
    if max_rank is not None and rank > max_rank:
        raise ValueError(f"pixel shuffle of blocks {blocks} needs rank {rank} tensors")
    if rank == 0:
        return x
    if per_axis and per_axis_applies(blocks, sizes, layout, b.graph.opset(), allow_depth_to_space):
        return _shuffle_per_axis(b, x, channels, blocks, sizes, layout)
    if rank == 4 and r == 2:
        if b.graph.opset() >= 11:  # `mode` (and so CRD) exists from opset 11
            return b.op("DepthToSpace", [x], "depth_to_space", blocksize=blocks[0], mode=layout)
        return b.op("DepthToSpace", [x], "depth_to_space", blocksize=blocks[0])
    if 2 + 2 * r > MAX_GENERAL_RANK:
        return _shuffle_per_axis(b, x, channels, blocks, sizes, layout)
    split, c_ax, b_axes, s_axes = _split_layout(channels, blocks, layout)
    t = b.op("Reshape", [x, b.ints([0, *split, *sizes], "shuffle_shape")], "shuffle_split")
    t = b.op("Transpose", [t], "shuffle_transpose", perm=_interleave(r, c_ax, b_axes, s_axes))
    out = [0, channels] + [n * k for n, k in zip(sizes, blocks)]
    return b.op("Reshape", [t, b.ints(out, "shuffle_out_shape")], "shuffle_merge")


def crd_to_dcr(channels: int, blocks: Sequence[int]) -> list[int]:
    """Gather indices taking CRD channels (c * B + p) into DCR order (p * C + c)."""
    phases = prod(blocks)
    return [c * phases + p for p in range(phases) for c in range(channels)]


def pixel_unshuffle(b: Builder, x: str, channels: int, blocks: Sequence[int],
                    sizes: Sequence[int], layout: str = "DCR",
                    allow_space_to_depth: bool = True) -> str:
    """[N, C, n*b...] -> [N, C*B, n...] (sizes are the *output* spatial sizes)."""
    blocks, sizes, r = list(blocks), list(sizes), len(blocks)
    if all(k == 1 for k in blocks):
        return x
    if is_space_to_depth(blocks, layout, allow_space_to_depth):
        return b.op("SpaceToDepth", [x], "space_to_depth", blocksize=blocks[0])
    if 2 + 2 * r > MAX_GENERAL_RANK:
        return _unshuffle_per_axis(b, x, channels, blocks, sizes, layout)
    split, c_ax, b_axes, s_axes = _split_layout(channels, blocks, layout)
    fine = [0, channels]
    for n, k in zip(sizes, blocks):
        fine += [n, k]
    t = b.op("Reshape", [x, b.ints(fine, "unshuffle_shape")], "unshuffle_split")
    inter = _interleave(r, c_ax, b_axes, s_axes)  # split layout -> fine layout
    inverse = [inter.index(k) for k in range(len(inter))]
    t = b.op("Transpose", [t], "unshuffle_transpose", perm=inverse)
    return b.op("Reshape", [t, b.ints([0, channels * prod(blocks), *sizes], "unshuffle_out_shape")],
                "unshuffle_merge")


def _axis_step(channels: int, blocks: Sequence[int], sizes: Sequence[int], i: int, layout: str):
    """Axis i's step of the per-axis shuffle, where axes < i are already
    shuffled: (its split shape, its permutation, its merged output shape)."""
    rest = prod(blocks[i + 1:])
    pre = prod(n * k for n, k in zip(sizes[:i], blocks[:i])) * sizes[i]
    post = prod(sizes[i + 1:])
    merged = [n * k for n, k in zip(sizes[:i + 1], blocks[:i + 1])] + list(sizes[i + 1:])
    if layout == "DCR":
        return [0, blocks[i], rest * channels, pre, post], [0, 2, 3, 1, 4], [0, rest * channels, *merged]
    if layout == "CRD":
        return [0, channels, blocks[i], rest, pre, post], [0, 1, 3, 4, 2, 5], [0, channels * rest, *merged]
    raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")


def _shuffle_per_axis(b: Builder, x: str, channels: int, blocks, sizes, layout: str) -> str:
    for i in range(len(blocks)):
        if blocks[i] == 1:   # nothing to move on this axis
            continue
        split, perm, merged = _axis_step(channels, blocks, sizes, i, layout)
        x = b.op("Reshape", [x, b.ints(split, f"shuffle_shape_{i}")], f"shuffle_split_{i}")
        x = b.op("Transpose", [x], f"shuffle_transpose_{i}", perm=perm)
        x = b.op("Reshape", [x, b.ints(merged, f"shuffle_out_shape_{i}")], f"shuffle_merge_{i}")
    return x


def _unshuffle_per_axis(b: Builder, x: str, channels: int, blocks, sizes, layout: str) -> str:
    """The per-axis steps of pixel_shuffle inverted, last axis first."""
    for i in reversed(range(len(blocks))):
        if blocks[i] == 1:
            continue
        split, perm, _ = _axis_step(channels, blocks, sizes, i, layout)
        inverse = [perm.index(k) for k in range(len(perm))]
        transposed = [split[k] for k in perm]     # the shape after the forward Transpose
        x = b.op("Reshape", [x, b.ints(transposed, f"unshuffle_shape_{i}")], f"unshuffle_split_{i}")
        x = b.op("Transpose", [x], f"unshuffle_transpose_{i}", perm=inverse)
        unmerged = [0, prod(blocks[i:]) * channels, *[n * k for n, k in zip(sizes[:i], blocks[:i])],
                    *sizes[i:]]
        x = b.op("Reshape", [x, b.ints(unmerged, f"unshuffle_out_shape_{i}")], f"unshuffle_merge_{i}")
    return x


# --- costs ---------------------------------------------------------------------

def _steps(blocks: Sequence[int], single_op: bool, per_axis: bool = False) -> int:
    """Nodes of a shuffle or unshuffle: the single ONNX operator, one
    Reshape/Transpose/Reshape, or one such triple per axis with a block above 1."""
    r = len(blocks)
    if all(k == 1 for k in blocks):
        return 0
    if single_op:
        return 1
    if per_axis or 2 + 2 * r > MAX_GENERAL_RANK:
        return 3 * sum(1 for k in blocks if k > 1)
    return 3


def _reorder_cost(channels: Optional[int], blocks: Sequence[int], sizes: Sequence, itemsize: int, steps: int) -> Moved:
    """`steps` data-movement nodes, each reading and writing the whole tensor."""
    whole = None if channels is None else tensor_bytes([1, channels * prod(blocks), *sizes], itemsize)
    return Moved(steps, None if whole is None else 2 * whole * steps, moves=steps)


def pixel_shuffle_cost(channels: int, blocks: Sequence[int], sizes: Sequence, itemsize: int,
                       layout: str = "DCR", opset: int = 11, allow_depth_to_space: bool = True,
                       per_axis: bool = False) -> Moved:
    """Nodes and bytes moved (batch 1) of `pixel_shuffle` with these arguments
    (`sizes` the input's spatial sizes; a None size leaves the bytes unknown)."""
    if layout == GATHERED and any(k > 1 for k in blocks):   # the Gather, then the DCR shuffle
        return (_reorder_cost(channels, blocks, sizes, itemsize, 1)
                + pixel_shuffle_cost(channels, blocks, sizes, itemsize, "DCR", opset, allow_depth_to_space,
                                     per_axis))
    if per_axis and per_axis_applies(blocks, sizes, layout, opset, allow_depth_to_space):
        return _reorder_cost(channels, blocks, sizes, itemsize, _steps(blocks, False, per_axis=True))
    rank = shuffle_rank(blocks, layout, opset, allow_depth_to_space)
    return _reorder_cost(channels, blocks, sizes, itemsize, _steps(blocks, rank == 4 and len(blocks) == 2))


def pixel_unshuffle_cost(channels: int, blocks: Sequence[int], sizes: Sequence, itemsize: int,
                         layout: str = "DCR", allow_space_to_depth: bool = True) -> Moved:
    """Nodes and bytes moved (batch 1) of `pixel_unshuffle` (`sizes` its output's spatial sizes)."""
    return _reorder_cost(channels, blocks, sizes, itemsize,
                         _steps(blocks, is_space_to_depth(blocks, layout, allow_space_to_depth)))
