"""Convolution padding and output-size arithmetic, as the ONNX spec states it.

Notation per spatial axis: input size `n`, kernel `k`, stride `s`, dilation
`d`, effective kernel extent `e = (k - 1) * d + 1`, padding `(begin, end)`.

    Conv output size:  out = floor((n + begin + end - e) / s) + 1
    auto_pad SAME_*:   out = ceil(n / s),
                       total = max(0, (out - 1) * s + e - n),
                       SAME_UPPER puts the odd unit at the end,
                       SAME_LOWER at the beginning.
    auto_pad VALID:    begin = end = 0.

Pads are handled as a list of (begin, end) pairs, one per spatial axis; ONNX
stores them as [b_1 .. b_r, e_1 .. e_r] (`split_pads` / `join_pads`).
"""
from __future__ import annotations

from typing import Sequence

# A sub-pixel rewrite of a ConvTranspose makes one Conv output channel per
# output channel and phase, prod(strides) phases: the convtranspose pass plans
# at most this many, and a pass that builds a ConvTranspose for it to lower
# (the Resize's deconv form) needs to know where it stops.
MAX_PHASES = 1 << 12


def extent(k: int, d: int) -> int:
    """Spatial extent of a kernel of size k at dilation d."""
    return (k - 1) * d + 1


def split_pads(pads: Sequence[int] | None, rank: int) -> list[tuple[int, int]]:
    """ONNX [b1..br, e1..er] -> [(b1, e1), ..., (br, er)].

    Pads of the wrong length (which geometry_problem refuses before any
    rewrite) read as far as they go, missing entries 0: a best-effort
    reading for reports about such a node, never an IndexError."""
    if not pads:
        return [(0, 0)] * rank
    entry = lambda i: int(pads[i]) if i < len(pads) else 0  # noqa: E731
    return [(entry(i), entry(i + rank)) for i in range(rank)]


def join_pads(pairs: Sequence[tuple[int, int]]) -> list[int]:
    """[(b1, e1), ...] -> ONNX [b1..br, e1..er]."""
    return [b for b, _ in pairs] + [e for _, e in pairs]


def same_pads(total: int, auto_pad: str) -> tuple[int, int]:
    """Split a total padding the way SAME_UPPER / SAME_LOWER do."""
    small, large = total // 2, total - total // 2
    return (small, large) if auto_pad == "SAME_UPPER" else (large, small)


def conv_pads(auto_pad: str, sizes: Sequence[int], kernel: Sequence[int],
              strides: Sequence[int], dilations: Sequence[int],
              pads: Sequence[int] | None) -> list[tuple[int, int]]:
    """The explicit (begin, end) padding a Conv uses on each spatial axis.
    A stride the spec forbids (< 1) reads as 1: rewrites refuse such a node
    (geometry_problem), reports about it still get an answer."""
    rank = len(kernel)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for n, k, s, d in zip(sizes, kernel, strides, dilations):
            s = max(s, 1)
            total = max(0, (-(-n // s) - 1) * s + extent(k, d) - n)
            out.append(same_pads(total, auto_pad))
        return out
    if auto_pad == "VALID":
        return [(0, 0)] * rank
    return split_pads(pads, rank)


def conv_output_size(n: int, k: int, s: int, d: int, begin: int, end: int) -> int:
    """floor((n + begin + end - e) / s) + 1."""
    return (n + begin + end - extent(k, d)) // s + 1


# No axis this tool lowers is longer: one of 2**31 floats is already 8 GiB.
# An attribute beyond it (a pad of 2**40, a dilation that spans more) can
# only describe a tensor no rewrite should plan, whatever the input size.
MAX_AXIS = 1 << 31


def geometry_problem(attrs: dict, rank: int, weight_shape: Sequence[int],
                     per_axis: Sequence[str] = ("strides", "dilations", "kernel_shape")) -> str | None:
    """Why a Conv / ConvTranspose's per-axis attributes cannot describe a
    rank-`rank` convolution with this weight, or None when they can.

    Every per-axis attribute has one entry per spatial axis (pads two),
    strides and dilations are positive, pads and output_padding are not
    negative (the spec's range; onnxruntime refuses them, while onnx's
    reference evaluator would crop), kernel_shape (when given) is the
    weight's spatial shape; both operators store the kernel as
    weight[:, :, k_1 .. k_r].  No attribute, and no kernel's dilated
    extent, reaches beyond MAX_AXIS.
    """
    for key in per_axis:
        if key in attrs and len(attrs[key]) != rank:
            return f"attribute {key}={attrs[key]} does not have {rank} entries"
    if "pads" in attrs and len(attrs["pads"]) != 2 * rank:
        return f"attribute pads={attrs['pads']} does not have {2 * rank} entries (begin and end per axis)"
    if any(v < 1 for key in ("strides", "dilations") for v in attrs.get(key, [])):
        return "strides and dilations must be positive"
    for key in ("pads", "output_padding"):
        if any(v < 0 for v in attrs.get(key, [])):
            return f"attribute {key}={attrs[key]} has a negative entry; the operator's {key} are >= 0"
    if len(weight_shape) != rank + 2 or list(attrs.get("kernel_shape", weight_shape[2:])) != list(weight_shape[2:]):
        return f"kernel_shape {attrs.get('kernel_shape')} does not match the weight's shape {list(weight_shape)}"
    if any(isinstance(d, int) and d < 1 for d in weight_shape):
        return f"the weight's shape {list(weight_shape)} is empty: there is nothing to convolve with"
    return _size_problem(attrs, weight_shape[2:])


def _size_problem(attrs: dict, kernel: Sequence[int]) -> str | None:
    """Why an attribute is too large to lower (see MAX_AXIS), or None."""
    for key in ("strides", "dilations", "pads", "output_padding", "output_shape"):
        if any(abs(v) > MAX_AXIS for v in attrs.get(key, [])):
            return f"attribute {key}={attrs[key]} goes beyond {MAX_AXIS} elements on an axis"
    spans = [extent(k, d) for k, d in zip(kernel, attrs.get("dilations", [1] * len(kernel)))]
    if any(not isinstance(k, int) or e > MAX_AXIS for k, e in zip(kernel, spans)):
        return f"the dilated kernel spans {spans} elements, beyond {MAX_AXIS} on an axis"
    return None
