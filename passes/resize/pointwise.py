"""The pointwise form of Resize: each resized spatial axis interpolated by a
1x1 Conv, with that axis moved into the channel position.

Along one axis a with n inputs and m outputs, a separable Resize is
y = M_a x, M_a the interpolation matrix [m, n] (interpolation.py).  A 1x1
Conv computes, at every position, a matrix [C_out, C_in] times the channel
vector:

    Conv(z, W)[b, o, p...] = sum_i W[o, i, 0...] z[b, i, p...]

So with z = x transposed to put axis a second, and W = M_a reshaped to
[m, n, 1, ..., 1], the Conv's output is x resized along a, the other axes
(the channels included) riding in the Conv's spatial positions:

    x [N, C, H, W] --Transpose--> [N, H, C, W] --Conv(M_H)--> [N, m_H, C, W]
                   --Transpose--> [N, W, C, m_H] --Conv(M_W)--> [N, m_W, C, m_H]
                   --Transpose--> [N, C, m_H, m_W]

Each Transpose exchanges two axes: the next resized axis and the one in the
channel position.  (Vela's U55 estimate for a 1x1 Conv and DeepLabV3+'s
256-channel 16 -> 64 Resize: 1.84 ms so, 2.07-2.82 ms with Transposes that
move three axes; docs/ethos_u.md.)

This is the matmul form's arithmetic spelled for an accelerator whose
compiler runs a Conv (and a Transpose) but not a MatMul with a constant
operand: Arm Vela runs this form on the Ethos-U NPU, and the align_corners
Resizes it leaves on the CPU have no fixed-kernel form (docs/ethos_u.md).  The matrix is dense: the Conv spends n MACs per output
where linear interpolation has 2 non-zero taps, and the Cost says so.

The form is opt-in (a target, or --resize-mode pointwise) and comes after
matmul, which needs fewer nodes: a target takes it where matmul does not fit.
"""
from __future__ import annotations

from math import prod

from convrewrite.core.builder import Builder
from convrewrite.core.cost import grouped
from convrewrite.core.forms import Cost, Form
from convrewrite.emit.opset_ops import NOTHING, gemm, movement

from .forms import LOCAL_ADVICE, NONFINITE_NOTE, NOTHING_RESIZED, conv_type_problem, in_build_order, item_dims


class Pointwise(Form):
    """One Transpose + 1x1 Conv per resized spatial axis, and a Transpose
    back: exact for any static separable Resize of spatial axes."""

    name = "pointwise"
    opt_in = True

    def applies(self, match, graph):
        spec = match.params.spec
        if not spec.resized:
            return NOTHING_RESIZED
        unchecked = conv_type_problem(match.params, "Conv")
        if unchecked:
            return unchecked
        outer = [ax.axis for ax in spec.resized if ax.axis < 2]
        if outer:
            return (f"it resizes axis {outer[0]} (batch or channel); the pointwise form moves a spatial axis "
                    "into the channel position")
        unknown = [ax.axis for ax in spec.resized if ax.n_in is None or ax.n_out is None]
        if unknown:
            return f"the pointwise form needs static sizes on the resized axes (axis {unknown[0]} is symbolic)"
        mats = match.params.matrices
        if isinstance(mats, str):
            return mats
        if spec.interp.extrapolation_value != 0 and any(outside.any() for _, _, outside in mats):
            return (f"tf_crop_and_resize writes extrapolation_value {spec.interp.extrapolation_value:g} outside "
                    "the input, which no Conv weight gives (the matmul form adds it)")
        return None

    def advice(self, match, graph, built):
        return LOCAL_ADVICE if built else None   # its 1x1 Convs are the matmul form's products

    def cost(self, match, variant, graph) -> Cost:
        p = match.params
        size = p.dtype.itemsize
        dims = item_dims(p)                 # per logical axis
        layout = list(range(p.rank))         # the logical axes in their current order
        macs, few_inputs, moved = 0, 0, NOTHING
        for axis, m, _ in in_build_order(p.matrices):
            wanted = _channel_first(layout, axis)
            moved += movement([[dims[a] for a in layout]], [dims[a] for a in wanted], size)
            layout = wanted
            others = [d for a, d in enumerate(dims) if a != axis]
            dims[axis] = m.shape[0]
            conv = None if None in others else prod(others) * m.shape[0] * m.shape[1]
            # the Conv: m outputs of n MACs at every other position; its im2col is its input
            moved += gemm(None if conv is None else conv // m.shape[0] * size)
            macs = None if macs is None or conv is None else macs + conv
            if few_inputs is not None and grouped(m.shape[1]):   # n input channels: a "grouped" Conv
                few_inputs = None if conv is None else few_inputs + conv
        moved += movement([[dims[a] for a in layout]], dims, size)
        return Cost(macs=macs, moved_bytes=moved.bytes, nodes=moved.nodes, max_rank=p.rank, grouped_macs=few_inputs,
                    streamed_bytes=moved.streamed)

    def build(self, match, variant, graph, b: Builder) -> dict:
        p = match.params
        b.note(NONFINITE_NOTE)   # its 1x1 Convs are the matmul form's products
        x, layout = match.node.input[0], list(range(p.rank))
        for axis, m, _ in in_build_order(p.matrices):
            wanted = _channel_first(layout, axis)
            x = b.op("Transpose", [x], f"axis{axis}_to_channels", perm=_perm(layout, wanted))
            layout = wanted
            weight = m.astype(p.dtype).reshape(m.shape + (1,) * (p.rank - 2))
            x = b.op("Conv", [x, b.initializer(weight, f"axis{axis}_matrix")], f"axis{axis}_conv")
            b.note(f"axis {axis}: 1x1 Conv with the interpolation matrix [{m.shape[0]}, {m.shape[1]}] "
                   f"({m.shape[1]} MACs per output, {int((m != 0).sum(axis=1).max())} of them non-zero at most)")
        y = b.op("Transpose", [x], "back", perm=_perm(layout, list(range(p.rank))))
        return {match.node.output[0]: y}


def _channel_first(layout: list, axis: int) -> list:
    """`layout` with `axis` exchanged with the axis in the channel position
    (1); the others stay where they are."""
    wanted = list(layout)
    at = wanted.index(axis)
    wanted[1], wanted[at] = axis, wanted[1]
    return wanted


def _perm(layout: list, wanted: list) -> list:
    """The Transpose perm that takes a tensor in `layout` to `wanted`."""
    return [layout.index(a) for a in wanted]


FORMS = (Pointwise(),)
