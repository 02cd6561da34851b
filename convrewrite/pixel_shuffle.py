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
"""
from __future__ import annotations

from math import prod
from typing import Sequence

from .builder import Builder

LAYOUTS = ("DCR", "CRD")


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


def pixel_shuffle(b: Builder, x: str, channels: int, blocks: Sequence[int],
                  sizes: Sequence[int], layout: str = "DCR",
                  allow_depth_to_space: bool = True, max_rank: int | None = None) -> str:
    """[N, C*B, n...] -> [N, C, n*b...]; returns the output value name.

    `sizes` are the input's spatial sizes (static).  With max_rank=4 a 4-D
    tensor is never expanded past rank 4 by the general form (used for
    targets that reject higher ranks); that needs 2-D with equal blocks.
    """
    blocks, sizes, r = list(blocks), list(sizes), len(blocks)
    if all(k == 1 for k in blocks):
        return x
    if allow_depth_to_space and r == 2 and blocks[0] == blocks[1]:
        if b.graph.opset() >= 11:  # `mode` (and so CRD) exists from opset 11
            return b.op("DepthToSpace", [x], "depth_to_space", blocksize=blocks[0], mode=layout)
        if layout == "DCR":
            return b.op("DepthToSpace", [x], "depth_to_space", blocksize=blocks[0])
    if max_rank is not None and 2 + 2 * r > max_rank:
        raise ValueError(f"pixel shuffle of blocks {blocks} needs rank {2 + 2 * r} tensors")
    split, c_ax, b_axes, s_axes = _split_layout(channels, blocks, layout)
    t = b.op("Reshape", [x, b.ints([0, *split, *sizes], "shuffle_shape")], "shuffle_split")
    t = b.op("Transpose", [t], "shuffle_transpose", perm=_interleave(r, c_ax, b_axes, s_axes))
    out = [0, channels] + [n * k for n, k in zip(sizes, blocks)]
    return b.op("Reshape", [t, b.ints(out, "shuffle_out_shape")], "shuffle_merge")


def pixel_unshuffle(b: Builder, x: str, channels: int, blocks: Sequence[int],
                    sizes: Sequence[int], layout: str = "DCR",
                    allow_space_to_depth: bool = True) -> str:
    """[N, C, n*b...] -> [N, C*B, n...] (sizes are the *output* spatial sizes)."""
    blocks, sizes, r = list(blocks), list(sizes), len(blocks)
    if all(k == 1 for k in blocks):
        return x
    if allow_space_to_depth and r == 2 and blocks[0] == blocks[1] and layout == "DCR":
        return b.op("SpaceToDepth", [x], "space_to_depth", blocksize=blocks[0])
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
