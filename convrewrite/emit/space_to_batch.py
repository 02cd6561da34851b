"""Space-to-batch emitters: phase split and merge of spatial axes from standard ops.

A dilated convolution's output phase b is an undilated convolution of the
phase image x_pad[b*s :: d] (passes/dilated_conv/phases.py).  The phase images are *aligned* (start < d, so they
are the residues of one block-d split) exactly when P == 1 or s' == 1, i.e.
when s divides d or d divides s; then

    x_pad[b*s + j*d] = u[b + j*P]   with   u = x_pad[::g]

and a plain block-P space-to-batch of u gives every phase at once.  Otherwise
(s and d coprime after dividing out g, both > 1) the phases start at shifted
offsets and only strided Slices reach them.

Builders (all exact data movement; a symbolic batch dimension passes through
Reshape with 0 / -1):

    strided_slice   x[start:end:step] (Slice with steps; a Gather before opset 10)
    space_to_batch  [N, C, m1*P1, ...]      -> [P1*...*N, C, m1, ...]
                    (2-D equal blocks: SpaceToDepth + a block Transpose, or a Reshape
                    alone in batch-major order -- unless `depth_ops` is off: between
                    Q/DQ below opset 11 onnxruntime has no 8-bit DepthToSpace; else one
                    Reshape/Transpose/Reshape of rank 2 + r + (axes with P > 1),
                    or above rank 6 one rank-5 step per blocked axis)
    batch_to_space  [P1*...*N, C, q1, ...]  -> [N, C, q1*P1, ...]
    space_to_axes   [N, C, m1*P1, ...]      -> [N, C, m1, P1, ...] (one Reshape; axes_to_space
                    the inverse)
    interleave      phase outputs y_b       -> [N, C, q1*P1, ...], rank <= max(4, rank)

Batch order is phase-major (batch index = flat(b)*N + n), as TensorFlow's
SpaceToBatchND; for 2-D equal blocks `batch_major` gives n*P*P + flat(b), the
order SpaceToDepth leaves, where nothing but one Conv reads the phase images.
"""
from __future__ import annotations

from math import prod
from typing import Sequence

from ..core.builder import Builder
from .opset_ops import NOTHING, Moved, movement, slice_axes, tensor_bytes
from .pixel_shuffle import MAX_GENERAL_RANK, pixel_shuffle, pixel_shuffle_cost, square_blocks


# --- builders -----------------------------------------------------------------

def strided_slice(b: Builder, x: str, axes: Sequence[int], starts: Sequence[int],
                  ends: Sequence[int], steps: Sequence[int], what: str) -> str:
    """x[start:end:step] on each axis: Slice with steps from opset 10; before
    that a Gather of the indices range(start, end, step) per strided axis
    (the rank never grows)."""
    if all(s == 1 for s in steps) or b.graph.opset() >= 10:
        if all(s == 1 for s in steps):
            return slice_axes(b, x, axes, starts, ends, what)
        return b.op("Slice", [x, b.ints(starts, f"{what}_starts"), b.ints(ends, f"{what}_ends"),
                              b.ints(axes, f"{what}_axes"), b.ints(steps, f"{what}_steps")], what)
    unit = [k for k, s in enumerate(steps) if s == 1]
    if unit:
        x = slice_axes(b, x, [axes[k] for k in unit], [starts[k] for k in unit],
                       [ends[k] for k in unit], f"{what}_slice")
    for axis, start, end, step in zip(axes, starts, ends, steps):
        if step > 1:
            x = b.op("Gather", [x, b.ints(range(start, end, step), f"{what}_indices")], what, axis=axis)
    return x


def subsample(b: Builder, x: str, lengths: Sequence[int], steps: Sequence[int]) -> str:
    """x[..., ::step, ...] on every spatial axis."""
    sp = [k for k, g in enumerate(steps) if g > 1]
    if not sp:
        return x
    return strided_slice(b, x, [k + 2 for k in sp], [0] * len(sp), [lengths[k] for k in sp],
                         [steps[k] for k in sp], "subsample")


def _block_layout(blocks: Sequence[int], sizes: Sequence[int], channels: int):
    """Shape [N, C, (n_1, b_1), ...] (b_k only where > 1) and where each axis is."""
    shape, size_axes, block_axes = [0, channels], [], []
    for n, p in zip(sizes, blocks):
        size_axes.append(len(shape))
        shape.append(n)
        if p > 1:
            block_axes.append(len(shape))
            shape.append(p)
    return shape, size_axes, block_axes


def space_to_batch(b: Builder, x: str, channels: int, blocks: Sequence[int],
                   sizes: Sequence[int], batch_major: bool = False, depth_ops: bool = True) -> str:
    """[N, C, m_k*P_k...] -> [prod(P)*N, C, m...]: batch flat(b)*N + n holds
    x[n, c, m_k*P_k + b_k ...] (sizes are the phase sizes m).  `batch_major`:
    for 2-D equal blocks, batch n*P*P + flat(b) instead, which SpaceToDepth's
    layout already is (see _space_to_batch_2d): for phase images read by one
    Conv (the order of a batch is nothing to it), or where N is 1 (then both
    orders are one).  Not `depth_ops`: no SpaceToDepth / DepthToSpace, the
    general Reshape/Transpose/Reshape for 2-D equal blocks too (phase-major;
    between Q/DQ below opset 11, core/qdq.py `integer_depth_to_space`)."""
    if all(p == 1 for p in blocks):
        return x
    if _depth_ops(blocks, depth_ops):
        return _space_to_batch_2d(b, x, channels, blocks[0], sizes, batch_major)
    shape, size_axes, block_axes = _block_layout(blocks, sizes, channels)
    if len(shape) > MAX_GENERAL_RANK:
        return _space_to_batch_per_axis(b, x, channels, blocks, sizes)
    t = b.op("Reshape", [x, b.ints(shape, "s2b_split_shape")], "s2b_split")
    t = b.op("Transpose", [t], "s2b_transpose", perm=[*block_axes, 0, 1, *size_axes])
    return b.op("Reshape", [t, b.ints([-1, channels, *sizes], "s2b_shape")], "space_to_batch")


def batch_to_space(b: Builder, y: str, channels: int, blocks: Sequence[int],
                   sizes: Sequence[int], batch_major: bool = False, depth_ops: bool = True) -> str:
    """The inverse: [prod(P)*N, C, q...] -> [N, C, q_k*P_k...]."""
    if all(p == 1 for p in blocks):
        return y
    if _depth_ops(blocks, depth_ops):
        return _batch_to_space_2d(b, y, channels, blocks[0], sizes, batch_major)
    split = [p for p in blocks if p > 1]
    shape, size_axes, block_axes = _block_layout(blocks, sizes, channels)
    if len(shape) > MAX_GENERAL_RANK:
        return _batch_to_space_per_axis(b, y, channels, blocks, sizes)
    t = b.op("Reshape", [y, b.ints([*split, -1, channels, *sizes], "b2s_split_shape")], "b2s_split")
    nb = len(split)
    perm = [0] * len(shape)
    for k, axis in enumerate(block_axes):
        perm[axis] = k
    perm[0], perm[1] = nb, nb + 1
    for k, axis in enumerate(size_axes):
        perm[axis] = nb + 2 + k
    t = b.op("Transpose", [t], "b2s_transpose", perm=perm)
    merged = [0, channels] + [q * p for q, p in zip(sizes, blocks)]
    return b.op("Reshape", [t, b.ints(merged, "b2s_shape")], "batch_to_space")


def _depth_ops(blocks: Sequence[int], allowed: bool) -> bool:
    """Whether the 2-D equal-block spelling (SpaceToDepth / DepthToSpace) is used."""
    return allowed and square_blocks(blocks)


def _space_to_batch_per_axis(b: Builder, x: str, channels: int, blocks: Sequence[int],
                             sizes: Sequence[int]) -> str:
    """space_to_batch one blocked axis at a time, last axis first, so each
    step puts its phase outermost in the batch and the result is again
    phase-major in row-major order (batch flat(b)*N + n).  Step for axis i,
    where axes after i are already split:
        [B, C*pre, m_i*P_i, post] -> [B, C*pre, m_i, P_i, post] -> [P_i, B, C*pre, m_i, post]."""
    full = [m * p for m, p in zip(sizes, blocks)]
    for i in reversed(range(len(blocks))):
        if blocks[i] == 1:
            continue
        split = [0, channels * prod(full[:i]), sizes[i], blocks[i], prod(sizes[i + 1:])]
        t = b.op("Reshape", [x, b.ints(split, f"s2b_split_shape_{i}")], f"s2b_split_{i}")
        t = b.op("Transpose", [t], f"s2b_transpose_{i}", perm=[3, 0, 1, 2, 4])
        x = b.op("Reshape", [t, b.ints([-1, channels, *full[:i], *sizes[i:]], f"s2b_shape_{i}")],
                 f"space_to_batch_{i}")
    return x


def _batch_to_space_per_axis(b: Builder, y: str, channels: int, blocks: Sequence[int],
                             sizes: Sequence[int]) -> str:
    """The inverse, first axis first: its phase is the outermost in the batch.
        [P_i*B, C*pre, q_i, post] -> [P_i, B, C*pre, q_i, post] -> [B, C*pre, q_i, P_i, post]."""
    full = [q * p for q, p in zip(sizes, blocks)]
    for i in range(len(blocks)):
        if blocks[i] == 1:
            continue
        split = [blocks[i], -1, channels * prod(full[:i]), sizes[i], prod(sizes[i + 1:])]
        t = b.op("Reshape", [y, b.ints(split, f"b2s_split_shape_{i}")], f"b2s_split_{i}")
        t = b.op("Transpose", [t], f"b2s_transpose_{i}", perm=[1, 2, 3, 0, 4])
        y = b.op("Reshape", [t, b.ints([-1, channels, *full[:i + 1], *sizes[i + 1:]], f"b2s_shape_{i}")],
                 f"batch_to_space_{i}")
    return y


def _space_to_batch_2d(b: Builder, x: str, channels: int, block: int, sizes: Sequence[int],
                       batch_major: bool = False) -> str:
    """2-D, equal blocks: SpaceToDepth (channel flat(b)*C + c), then move the
    phase from channels to batch; the Transpose moves whole C*m*m blocks.
    batch_major: [N, P*P*C, m, m] is [N*P*P, C, m, m] in memory (batch
    n*P*P + flat(b)), so one Reshape moves it: no Transpose."""
    t = b.op("SpaceToDepth", [x], "space_to_depth", blocksize=block)
    if batch_major:
        return b.op("Reshape", [t, b.ints([-1, channels, *sizes], "s2b_shape")], "space_to_batch")
    t = b.op("Reshape", [t, b.ints([0, block * block, channels, *sizes], "s2b_split_shape")], "s2b_split")
    t = b.op("Transpose", [t], "s2b_transpose", perm=[1, 0, 2, 3, 4])
    return b.op("Reshape", [t, b.ints([-1, channels, *sizes], "s2b_shape")], "space_to_batch")


def _batch_to_space_2d(b: Builder, y: str, channels: int, block: int, sizes: Sequence[int],
                       batch_major: bool = False) -> str:
    """The inverse: phase from batch to channels, then DepthToSpace (DCR)."""
    if batch_major:
        t = b.op("Reshape", [y, b.ints([-1, block * block * channels, *sizes], "b2s_shape")], "b2s_merge")
        return b.op("DepthToSpace", [t], "batch_to_space", blocksize=block)
    t = b.op("Reshape", [y, b.ints([block * block, -1, channels, *sizes], "b2s_split_shape")], "b2s_split")
    t = b.op("Transpose", [t], "b2s_transpose", perm=[1, 0, 2, 3, 4])
    t = b.op("Reshape", [t, b.ints([0, block * block * channels, *sizes], "b2s_shape")], "b2s_merge")
    return b.op("DepthToSpace", [t], "batch_to_space", blocksize=block)


def interleave(b: Builder, parts: dict, channels: int, blocks: Sequence[int],
               sizes: Sequence[int]) -> str:
    """Phase outputs parts[(b_1, ...)] = y[..., b_k::P_k, ...] of size q -> y.

    2-D with equal blocks: Concat + DepthToSpace.  Otherwise one axis at a
    time (Concat + Reshape, rank never above max(4, rank of y))."""
    split = [k for k, p in enumerate(blocks) if p > 1]
    if not split:
        return parts[tuple(0 for _ in blocks)]
    if square_blocks(blocks):
        order = [parts[p] for p in sorted(parts)]
        t = b.op("Concat", order, "phase_concat", axis=1)
        return pixel_shuffle(b, t, channels, blocks, sizes)
    return _interleave_axes(b, parts, channels, list(blocks), list(sizes), split)


def _interleave_axes(b, parts, channels, blocks, sizes, split):
    """Interleave along split[0] the results of interleaving the rest."""
    axis, rest = split[0], split[1:]
    merged_sizes = [q * (p if k in rest else 1) for k, (q, p) in enumerate(zip(sizes, blocks))]
    pieces = []
    for j in range(blocks[axis]):
        sub = {p: v for p, v in parts.items() if p[axis] == j}
        pieces.append(_interleave_axes(b, sub, channels, blocks, sizes, rest) if rest
                      else next(iter(sub.values())))
    return _interleave_one(b, pieces, channels, merged_sizes, axis)


def _interleave_one(b: Builder, pieces: Sequence[str], channels: int,
                    sizes: Sequence[int], axis: int) -> str:
    """z[..., i*P + j, ...] = pieces[j][..., i, ...] along spatial `axis`.

    Not the last axis: Concat on the next axis, then Reshape
    [.., q, P*n, ..] -> [.., q*P, n, ..].  The last axis: Concat on channels,
    Reshape [N, P, C*rest, q], Transpose to [N, C*rest, q, P], Reshape."""
    P, r = len(pieces), len(sizes)
    out = list(sizes)
    out[axis] *= P
    if axis < r - 1:
        t = b.op("Concat", list(pieces), "interleave_concat", axis=axis + 3)
        return b.op("Reshape", [t, b.ints([0, channels, *out], "interleave_shape")], "interleave")
    t = b.op("Concat", list(pieces), "interleave_concat", axis=1)
    inner = channels * prod(sizes[:-1])
    t = b.op("Reshape", [t, b.ints([0, P, inner, sizes[-1]], "interleave_split_shape")], "interleave_split")
    t = b.op("Transpose", [t], "interleave_transpose", perm=[0, 2, 3, 1])
    return b.op("Reshape", [t, b.ints([0, channels, *out], "interleave_shape")], "interleave")


def space_to_axes(b: Builder, x: str, channels: int, blocks: Sequence[int], sizes: Sequence[int]) -> str:
    """[N, C, m_1*P_1, ...] -> [N, C, m_1, P_1, ...]: each blocked axis split
    into (position, phase) by one Reshape, no copy of the order (row-major:
    index j*P + b goes to [j, b]; an axis with P = 1 is not split).  Phase b
    of axis k is then the slice [..., :, b, ...] -- a Conv with kernel 1 on
    the phase axes keeps the phases apart without moving them to the batch
    (the reshape form)."""
    shape, _, _ = _block_layout(blocks, sizes, channels)
    return b.op("Reshape", [x, b.ints(shape, "phase_axes_shape")], "space_to_axes")


def axes_to_space(b: Builder, y: str, channels: int, blocks: Sequence[int], sizes: Sequence[int]) -> str:
    """The inverse: [N, C, q_1, P_1, ...] -> [N, C, q_1*P_1, ...] (sizes: q)."""
    merged = [0, channels] + [q * p for q, p in zip(sizes, blocks)]
    return b.op("Reshape", [y, b.ints(merged, "axes_to_space_shape")], "axes_to_space")


def crop_to(b: Builder, y: str, have: Sequence[int], want: Sequence[int]) -> str:
    """y[..., :want_k, ...] where have_k > want_k."""
    axes = [k for k, (h, w) in enumerate(zip(have, want)) if h > w]
    if not axes:
        return y
    return slice_axes(b, y, [k + 2 for k in axes], [0] * len(axes), [want[k] for k in axes], "crop_output")


# --- costs (nodes, bytes moved at batch 1; see opset_ops.Moved) -------------------

def _block_steps(blocks: Sequence[int], batch_major: bool = False, depth_ops: bool = True) -> int:
    """Nodes of space_to_batch or batch_to_space: SpaceToDepth / DepthToSpace
    with a Reshape/Transpose/Reshape (2-D equal blocks, `depth_ops`;
    batch-major: one Reshape), one such triple, or one per blocked axis above rank 6."""
    if all(p == 1 for p in blocks):
        return 0
    if _depth_ops(blocks, depth_ops):
        return 2 if batch_major else 4
    if 2 + len(blocks) + sum(1 for p in blocks if p > 1) > MAX_GENERAL_RANK:
        return 3 * sum(1 for p in blocks if p > 1)
    return 3


def space_to_batch_cost(channels: int, blocks: Sequence[int], sizes: Sequence, itemsize: int,
                        batch_major: bool = False, depth_ops: bool = True) -> Moved:
    """`space_to_batch` (sizes: the phase sizes m); every node moves the whole tensor."""
    steps = _block_steps(blocks, batch_major, depth_ops)
    whole = tensor_bytes([prod(blocks), channels, *sizes], itemsize)
    return Moved(steps, None if whole is None else 2 * whole * steps, moves=steps)


def space_to_axes_cost(channels: int, blocks: Sequence[int], sizes: Sequence, itemsize: int) -> Moved:
    """`space_to_axes` or `axes_to_space` (sizes: m or q): one Reshape."""
    whole = [1, channels, *[n * p for n, p in zip(sizes, blocks)]]
    return movement([whole], whole, itemsize)


def batch_to_space_cost(channels: int, blocks: Sequence[int], sizes: Sequence, itemsize: int,
                        batch_major: bool = False, depth_ops: bool = True) -> Moved:
    """`batch_to_space` (sizes: the phase sizes q)."""
    return space_to_batch_cost(channels, blocks, sizes, itemsize, batch_major, depth_ops)


def strided_slice_cost(shape: Sequence, axes: Sequence[int], starts: Sequence[int], ends: Sequence[int],
                       steps: Sequence[int], itemsize: int, opset: int) -> tuple[Moved, list]:
    """(cost, output shape) of `strided_slice` on a tensor of `shape`."""
    out = list(shape)
    for axis, start, end, step in zip(axes, starts, ends, steps):
        out[axis] = len(range(start, end, step))
    if all(s == 1 for s in steps) or opset >= 10:
        return movement([shape], out, itemsize), out
    cost, now = NOTHING, list(shape)
    unit = [k for k, s in enumerate(steps) if s == 1]
    if unit:
        after = list(now)
        for k in unit:
            after[axes[k]] = out[axes[k]]
        cost, now = movement([now], after, itemsize), after
    for axis, step in zip(axes, steps):
        if step > 1:
            after = list(now)
            after[axis] = out[axis]
            cost, now = cost + movement([now], after, itemsize), after
    return cost, out


def subsample_cost(shape: Sequence, steps: Sequence[int], itemsize: int, opset: int) -> tuple[Moved, list]:
    """(cost, output shape) of `subsample` of a tensor of `shape` (lengths: its spatial sizes)."""
    sp = [k for k, g in enumerate(steps) if g > 1]
    if not sp:
        return NOTHING, list(shape)
    return strided_slice_cost(shape, [k + 2 for k in sp], [0] * len(sp), [shape[k + 2] for k in sp],
                              [steps[k] for k in sp], itemsize, opset)


def interleave_cost(channels: int, blocks: Sequence[int], sizes: Sequence[int], itemsize: int,
                    opset: int) -> Moved:
    """`interleave` of prod(blocks) phase outputs [1, channels, sizes...]."""
    split = [k for k, p in enumerate(blocks) if p > 1]
    if not split:
        return NOTHING
    if square_blocks(blocks):
        whole = [1, channels * prod(blocks), *sizes]
        concat = movement([[1, channels, *sizes]] * prod(blocks), whole, itemsize)
        return concat + pixel_shuffle_cost(channels, blocks, sizes, itemsize, "DCR", opset)
    return _interleave_axes_cost(channels, list(blocks), list(sizes), split, itemsize)


def _interleave_axes_cost(channels, blocks, sizes, split, itemsize) -> Moved:
    axis, rest = split[0], split[1:]
    merged = [q * (p if k in rest else 1) for k, (q, p) in enumerate(zip(sizes, blocks))]
    inner = _interleave_axes_cost(channels, blocks, sizes, rest, itemsize).times(blocks[axis]) if rest else NOTHING
    P, r = blocks[axis], len(merged)
    piece = [1, channels, *merged]
    out = list(piece)
    out[axis + 2] *= P
    if axis < r - 1:   # Concat, Reshape
        return inner + movement([piece] * P, out, itemsize) + movement([out], out, itemsize)
    return inner + movement([piece] * P, out, itemsize) + movement([out], out, itemsize).times(3)


def crop_to_cost(shape: Sequence, want: Sequence[int], itemsize: int) -> Moved:
    """`crop_to` of a tensor of `shape` to spatial sizes `want`."""
    if not any(h > w for h, w in zip(shape[2:], want)):
        return NOTHING
    return movement([shape], [*shape[:2], *[min(h, w) for h, w in zip(shape[2:], want)]], itemsize)
