"""The phase arithmetic of a dilated convolution, per spatial axis.

Notation per spatial axis: input size n, kernel k, dilation d, stride s, and
the offset o (the begin padding; negative means the first -o inputs are never
read), so that output i, tap t reads x[i*s + t*d - o].  Let

    g = gcd(s, d),   P = d / g  (phases),   s' = s / g  (inner stride).

Writing the output index as i = a*P + b (0 <= b < P) and using P*s = d*s':

    y[a*P + b] = sum_t w[t] * x_pad[b*s + (a*s' + t)*d]
               = Conv_{stride s', dilation 1}(x_pad[b*s :: d], w)[a]

so output phase b is an undilated convolution of the phase image that starts
at b*s and steps by d (see convrewrite/emit/space_to_batch.py for the block
split that reaches aligned phases, and `phase_images` here for strided Slices).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from math import gcd, prod
from typing import Optional, Sequence

from convrewrite.core.builder import Builder
from convrewrite.emit.opset_ops import pad_axes, slice_axes
from convrewrite.emit.space_to_batch import strided_slice

GEOMETRY_CACHE = 1024  # geometries whose tap images and padded windows are kept (pure functions of frozen values)


@dataclass(frozen=True)
class AxisPhases:
    """One spatial axis of a dilated Conv: y[i] = sum_t w[t] x[i*s + t*d - offset]."""

    size: int       # n
    kernel: int     # k
    dilation: int   # d
    stride: int     # s
    offset: int     # o: begin padding (negative: leading inputs never read)
    out: int        # output size

    # g and P are asked for tens of times per Conv by its forms (the axis is frozen)
    @cached_property
    def common(self) -> int:            # g
        return gcd(self.stride, self.dilation)

    @cached_property
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
    when every tap reads only padding.  O(kernel): the outputs a tap reads x
    for are an interval, so huge pads or outputs cost nothing."""
    live = [t for t in range(a.kernel) if _reads_input(a, t)]
    return (live[0], live[-1]) if live else None


def _reads_input(a: AxisPhases, t: int) -> bool:
    """Whether 0 <= i*s + c < n for some output 0 <= i < out, c = t*d - o:
    i runs from ceil(-c / s) to floor((n - 1 - c) / s), clipped to [0, out)."""
    c = t * a.dilation - a.offset
    first = max(0, -(c // a.stride))
    last = min(a.out - 1, (a.size - 1 - c) // a.stride)
    return first <= last


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


@lru_cache(maxsize=GEOMETRY_CACHE)   # per axis geometry, which the Convs of one structure share (read-only)
def conv_padded(a: AxisPhases) -> tuple[AxisPhases, int, int, int]:
    """(axis, m', c, e): the block window's zeros that the undilated Conv's
    own pads supply instead of a Pad node.  With offset o >= 0, the window's
    first c*d elements (c = o // d) and its last e*d elements (those at or
    past n + o) are padding, and every phase image starts with c of them and
    ends with e (d = P*g, so each phase of the [::g] subsample takes one in
    every d).  So the window is built c*d shorter at the front and e*d at
    the back, split into phase images of m' = m - c - e, and the Conv pads
    them by (c, e):

        Pad(x)[b*g::d] (length m) = pad(Pad'(x)[b*g::d] (length m'), c, e)

    The returned axis has the smaller offset o - c*d; its block window is
    m'*d.  A 64x64 map at rate 2 with pads 2 then needs no Pad at all."""
    d, m = a.dilation, a.phase_size
    c = max(0, a.offset) // d
    e = max(0, m - c - -(-(a.size + a.offset - c * d) // d)) if a.offset >= 0 else 0
    return replace(a, offset=a.offset - c * d), m - c - e, c, e


@dataclass(frozen=True)
class TapImage:
    """What one tap of the taps form reads, straight from x (no padded
    window): per dilated axis the strided Slice x[start:stop:s] (left out
    where it is all of x), and for every spatial axis the zeros the tap's
    Conv pads add before and after.  On a dilated axis output i reads
    x[c + i*s], c = t*d - o: the first f outputs read before x, the last
    out - f - v past it."""

    tap: tuple
    axes: tuple       # spatial axes sliced
    starts: tuple
    stops: tuple
    steps: tuple
    pads: tuple       # Conv pads: begins then ends, every spatial axis


def undilated_window(a: AxisPhases) -> tuple[int, int, int, int]:
    """window_pads of an axis without dilation in the taps form: crop what
    the Conv never reads, the rest is the Conv's pads (as in the plain form)."""
    return window_pads(a, (a.out - 1) * a.stride + a.kernel, a.stride - 1)


def tap_images(axes: Sequence[AxisPhases]) -> tuple[TapImage, ...]:
    """One TapImage per tap of the dilated axes that reads x for some output."""
    return _tap_images(tuple(axes))


@lru_cache(maxsize=GEOMETRY_CACHE)
def _tap_images(axes: tuple[AxisPhases, ...]) -> tuple[TapImage, ...]:
    """tap_images, worked out once per geometry (a model repeats a few)."""
    dil = [k for k, a in enumerate(axes) if a.dilation > 1]
    begins = [undilated_window(a)[2] if a.dilation == 1 else 0 for a in axes]
    ends = [undilated_window(a)[3] if a.dilation == 1 else 0 for a in axes]
    images = []
    for tap in itertools.product(*[range(axes[k].kernel) for k in dil]):
        sliced, starts, stops, steps, b, e = [], [], [], [], list(begins), list(ends)
        for t, k in zip(tap, dil):
            a = axes[k]
            c = t * a.dilation - a.offset
            first = max(0, -(c // a.stride))                    # outputs reading before x
            last = min(a.out - 1, (a.size - 1 - c) // a.stride)  # the last output reading x
            if last < first:
                break                                           # this tap reads only padding
            start = c + first * a.stride
            stop = start + (last - first) * a.stride + 1
            b[k], e[k] = first, a.out - 1 - last
            if start > 0 or a.stride > 1 or stop < a.size:
                sliced.append(k)
                starts.append(start)
                stops.append(stop)
                steps.append(a.stride)
        else:
            images.append(TapImage(tap, tuple(sliced), tuple(starts), tuple(stops), tuple(steps), tuple(b + e)))
    return tuple(images)


# --- builders -----------------------------------------------------------------

def window(b: Builder, x: str, axes: Sequence[AxisPhases], lengths: Sequence[int]) -> str:
    """x cropped and zero padded so that window[p] = x[p - o] on each axis."""
    rank = len(axes) + 2
    pads = [window_pads(a, n) for a, n in zip(axes, lengths)]
    crop = [k for k, p in enumerate(pads) if p[0] or p[1]]
    padded = any(p[2] or p[3] for p in pads)
    if padded:
        # the Pad first, then the crop (in padded coordinates): onnx2tf 2.6.9's flatbuffer_direct
        # applies a Pad that reads a Slice to the wrong axes (docs/tflite.md reproducer 1; the
        # strided im2col form of a dilated Conv cropped W and padded H: LiteRT could not run it)
        x = pad_axes(b, x, rank, range(2, rank), [(p[2], p[3]) for p in pads], "pad")
    if crop:
        # the window is the padded x from crop_begin (0 where padded in front) to its end less crop_end
        x = slice_axes(b, x, [k + 2 for k in crop], [pads[k][0] for k in crop],
                       [pads[k][2] + axes[k].size - pads[k][1] + pads[k][3] for k in crop], "crop")
    return x


# The slices form emits a Slice and a Conv per phase image: a dilation of
# 2**20 must not turn into a million nodes (or hang building them).
MAX_PHASE_IMAGES = 1 << 12


def phase_images(b: Builder, x: str, axes: Sequence[AxisPhases]) -> dict:
    """{phase index (b_1, ...): x[b_k*s_k :: d_k] of length m_k} by strided Slice."""
    count = prod(a.phases for a in axes)
    if count > MAX_PHASE_IMAGES:
        raise ValueError(f"{count} phase images (dilations {[a.dilation for a in axes]}) are more than the "
                         f"{MAX_PHASE_IMAGES} the slices form builds")
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
