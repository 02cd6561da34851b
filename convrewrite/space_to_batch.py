"""Space-to-batch for dilated convolution: the phase arithmetic and the builders.

Notation per spatial axis: input size n, kernel k, dilation d, stride s, and
the offset o (the begin padding; negative means the first -o inputs are never
read), so that output i, tap t reads x[i*s + t*d - o].  Let

    g = gcd(s, d),   P = d / g  (phases),   s' = s / g  (inner stride).

Writing the output index as i = a*P + b (0 <= b < P) and using P*s = d*s':

    y[a*P + b] = sum_t w[t] * x_pad[b*s + (a*s' + t)*d]
               = Conv_{stride s', dilation 1}(x_pad[b*s :: d], w)[a]

so output phase b is an undilated convolution of the phase image that starts
at b*s and steps by d.  The phase images are *aligned* (start < d, so they
are the residues of one block-d split) exactly when P == 1 or s' == 1, i.e.
when s divides d or d divides s; then

    x_pad[b*s + j*d] = u[b + j*P]   with   u = x_pad[::g]

and a plain block-P space-to-batch of u gives every phase at once.  Otherwise
(s and d coprime after dividing out g, both > 1) the phases start at shifted
offsets and only strided Slices reach them.

Builders (all exact data movement; a symbolic batch dimension passes through
Reshape with 0 / -1):

    window          x cropped / zero padded so that window[p] = x[p - o]
    strided_slice   x[start:end:step] (Slice with steps; a Gather before opset 10)
    space_to_batch  [N, C, m1*P1, ...]      -> [P1*...*N, C, m1, ...]
                    (2-D equal blocks: SpaceToDepth + a block Transpose; else one
                    Reshape/Transpose/Reshape of rank 2 + r + (axes with P > 1),
                    or above rank 6 one rank-5 step per blocked axis)
    batch_to_space  [P1*...*N, C, q1, ...]  -> [N, C, q1*P1, ...]
    phase_images    the phase images by strided Slice (any offsets)
    interleave      phase outputs y_b       -> [N, C, q1*P1, ...], rank <= max(4, rank)

Batch order is phase-major (batch index = flat(b)*N + n), as TensorFlow's
SpaceToBatchND.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from math import gcd, prod
from typing import Optional, Sequence

from .builder import Builder
from .ops import pad_axes, slice_axes
from .pixel_shuffle import MAX_GENERAL_RANK, pixel_shuffle


# --- phase arithmetic ---------------------------------------------------------

@dataclass(frozen=True)
class AxisPhases:
    """One spatial axis of a dilated Conv: y[i] = sum_t w[t] x[i*s + t*d - offset]."""

    size: int       # n
    kernel: int     # k
    dilation: int   # d
    stride: int     # s
    offset: int     # o: begin padding (negative: leading inputs never read)
    out: int        # output size

    @property
    def common(self) -> int:            # g
        return gcd(self.stride, self.dilation)

    @property
    def phases(self) -> int:            # P
        return self.dilation // self.common

    @property
    def inner_stride(self) -> int:      # s'
        return self.stride // self.common

    @property
    def aligned(self) -> bool:
        return self.phases == 1 or self.inner_stride == 1

    @property
    def per_phase(self) -> int:         # q = ceil(out / P) outputs per phase
        return -(-self.out // self.phases)

    @property
    def phase_size(self) -> int:        # m: phase image length for q outputs
        return (self.per_phase - 1) * self.inner_stride + self.kernel

    @property
    def block_window(self) -> int:
        """Padded length for the block split: P phases of m, after [::g]."""
        return self.phase_size * self.phases * self.common

    @property
    def slice_window(self) -> int:
        """Padded length the last strided phase slice reaches."""
        return (self.phases - 1) * self.stride + (self.phase_size - 1) * self.dilation + 1

    def phase_start(self, b: int) -> int:
        return b * self.stride


def live_taps(a: AxisPhases) -> Optional[tuple[int, int]]:
    """First and last tap that reads an input element for some output; None
    when every tap reads only padding."""
    live = [t for t in range(a.kernel)
            if any(0 <= i * a.stride + t * a.dilation - a.offset < a.size for i in range(a.out))]
    return (live[0], live[-1]) if live else None


def trimmed(a: AxisPhases, lo: int, hi: int) -> AxisPhases:
    """The axis with taps lo..hi kept; a single tap is undilated."""
    k = hi - lo + 1
    return replace(a, kernel=k, dilation=a.dilation if k > 1 else 1, offset=a.offset - lo * a.dilation)


def window_pads(a: AxisPhases, length: int, slack: int = 0) -> tuple[int, int, int, int]:
    """(crop_begin, crop_end, pad_begin, pad_end) that turn x into
    window[p] = x[p - o] for 0 <= p < length.  Up to `slack` surplus
    elements at the end are left in place (a strided Conv ignores them)."""
    surplus = a.size + a.offset - length
    crop_end = surplus if surplus > slack else 0
    return max(0, -a.offset), crop_end, max(0, a.offset), max(0, -surplus)


# --- builders -----------------------------------------------------------------

def window(b: Builder, x: str, axes: Sequence[AxisPhases], lengths: Sequence[int]) -> str:
    """x cropped and zero padded so that window[p] = x[p - o] on each axis."""
    rank = len(axes) + 2
    pads = [window_pads(a, n) for a, n in zip(axes, lengths)]
    crop = [k for k, p in enumerate(pads) if p[0] or p[1]]
    if crop:
        x = slice_axes(b, x, [k + 2 for k in crop], [pads[k][0] for k in crop],
                       [axes[k].size - pads[k][1] for k in crop], "crop")
    if any(p[2] or p[3] for p in pads):
        x = pad_axes(b, x, rank, range(2, rank), [(p[2], p[3]) for p in pads], "pad")
    return x


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
                   sizes: Sequence[int]) -> str:
    """[N, C, m_k*P_k...] -> [prod(P)*N, C, m...]: batch flat(b)*N + n holds
    x[n, c, m_k*P_k + b_k ...] (sizes are the phase sizes m)."""
    if all(p == 1 for p in blocks):
        return x
    if len(blocks) == 2 and blocks[0] == blocks[1]:
        return _space_to_batch_2d(b, x, channels, blocks[0], sizes)
    shape, size_axes, block_axes = _block_layout(blocks, sizes, channels)
    if len(shape) > MAX_GENERAL_RANK:
        return _space_to_batch_per_axis(b, x, channels, blocks, sizes)
    t = b.op("Reshape", [x, b.ints(shape, "s2b_split_shape")], "s2b_split")
    t = b.op("Transpose", [t], "s2b_transpose", perm=[*block_axes, 0, 1, *size_axes])
    return b.op("Reshape", [t, b.ints([-1, channels, *sizes], "s2b_shape")], "space_to_batch")


def batch_to_space(b: Builder, y: str, channels: int, blocks: Sequence[int],
                   sizes: Sequence[int]) -> str:
    """The inverse: [prod(P)*N, C, q...] -> [N, C, q_k*P_k...]."""
    if all(p == 1 for p in blocks):
        return y
    if len(blocks) == 2 and blocks[0] == blocks[1]:
        return _batch_to_space_2d(b, y, channels, blocks[0], sizes)
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


def _space_to_batch_2d(b: Builder, x: str, channels: int, block: int, sizes: Sequence[int]) -> str:
    """2-D, equal blocks: SpaceToDepth (channel flat(b)*C + c), then move the
    phase from channels to batch; the Transpose moves whole C*m*m blocks."""
    t = b.op("SpaceToDepth", [x], "space_to_depth", blocksize=block)
    t = b.op("Reshape", [t, b.ints([0, block * block, channels, *sizes], "s2b_split_shape")], "s2b_split")
    t = b.op("Transpose", [t], "s2b_transpose", perm=[1, 0, 2, 3, 4])
    return b.op("Reshape", [t, b.ints([-1, channels, *sizes], "s2b_shape")], "space_to_batch")


def _batch_to_space_2d(b: Builder, y: str, channels: int, block: int, sizes: Sequence[int]) -> str:
    """The inverse: phase from batch to channels, then DepthToSpace (DCR)."""
    t = b.op("Reshape", [y, b.ints([block * block, -1, channels, *sizes], "b2s_split_shape")], "b2s_split")
    t = b.op("Transpose", [t], "b2s_transpose", perm=[1, 0, 2, 3, 4])
    t = b.op("Reshape", [t, b.ints([0, block * block * channels, *sizes], "b2s_shape")], "b2s_merge")
    return b.op("DepthToSpace", [t], "batch_to_space", blocksize=block)


def phase_images(b: Builder, x: str, axes: Sequence[AxisPhases]) -> dict:
    """{phase index (b_1, ...): x[b_k*s_k :: d_k] of length m_k} by strided Slice."""
    out = {}
    for phase in itertools.product(*[range(a.phases) for a in axes]):
        starts = [a.phase_start(p) for a, p in zip(axes, phase)]
        ends = [s + (a.phase_size - 1) * a.dilation + 1 for s, a in zip(starts, axes)]
        keep = [k for k, a in enumerate(axes)
                if a.dilation > 1 or starts[k] > 0 or ends[k] < a.slice_window]
        tag = "phase_" + "_".join(map(str, phase))
        out[phase] = x if not keep else strided_slice(
            b, x, [k + 2 for k in keep], [starts[k] for k in keep], [ends[k] for k in keep],
            [axes[k].dilation for k in keep], tag)
    return out


def interleave(b: Builder, parts: dict, channels: int, blocks: Sequence[int],
               sizes: Sequence[int]) -> str:
    """Phase outputs parts[(b_1, ...)] = y[..., b_k::P_k, ...] of size q -> y.

    2-D with equal blocks: Concat + DepthToSpace.  Otherwise one axis at a
    time (Concat + Reshape, rank never above max(4, rank of y))."""
    split = [k for k, p in enumerate(blocks) if p > 1]
    if not split:
        return parts[tuple(0 for _ in blocks)]
    if len(blocks) == 2 and blocks[0] == blocks[1]:
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


def crop_to(b: Builder, y: str, have: Sequence[int], want: Sequence[int]) -> str:
    """y[..., :want_k, ...] where have_k > want_k."""
    axes = [k for k, (h, w) in enumerate(zip(have, want)) if h > w]
    if not axes:
        return y
    return slice_axes(b, y, [k + 2 for k in axes], [0] * len(axes), [want[k] for k in axes], "crop_output")
