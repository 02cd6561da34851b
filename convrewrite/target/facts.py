"""What a profile rule needs to know about one node, read once from the graph.

`node_facts` turns a node into an `OpFacts`: its kernel, strides, group kind,
padding kinds, Resize factors, ... as plain values; `None` means "not known
here" (a symbolic size, a runtime scales input) and a rule that needs it is
not evaluated.  `facts_from_attributes` builds the same record from keyword
arguments, for the passes' "would the target take this op?" questions
before the node exists.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Mapping, Optional, Sequence

import numpy as np
import onnx

from ..core.graph import GraphView, attributes
from ..geometry import conv_pads, extent
from . import wording

CONV_OPS = ("Conv", "ConvTranspose")
RESIZE_OPS = ("Resize", "Upsample")


@dataclass(frozen=True)
class Tensor:
    """A value a node reads ("input") or writes ("output"); shape may be None."""

    role: str
    name: str
    shape: Optional[tuple]


@dataclass(frozen=True)
class OpFacts:
    op: str
    spatial_rank: Optional[int] = None
    kernel: Optional[tuple] = None
    strides: Optional[tuple] = None
    dilations: Optional[tuple] = None
    group: Optional[int] = None
    group_kind: Optional[str] = None
    pads: Optional[tuple] = None            # ONNX [b1..br, e1..er], explicit
    pad_kinds: Optional[frozenset] = None
    # kinds the pads may or may not be, not known before run time: SAME at a stride above 1 on a
    # symbolic size (pad_kinds then holds only what is known: valid, symmetric)
    pad_kinds_open: frozenset = frozenset()
    output_sizes: Optional[tuple] = None    # ConvTranspose: (output, input*stride, full) sizes
    output_size_kinds: Optional[frozenset] = None
    mode: Optional[str] = None
    coordinate_transformation_mode: Optional[str] = None
    nearest_mode: Optional[str] = None
    factors: Optional[tuple] = None         # per spatial axis, Fractions
    corner_factors: Optional[tuple] = None  # align_corners' scale (out-1)/(in-1) per spatial axis (see _corner_factor)
    resizes_batch_or_channel: Optional[bool] = None
    unit_input: Optional[bool] = None       # Resize input is 1 on every spatial axis
    blocksize: Optional[int] = None
    steps: Optional[tuple] = None
    slice_axes: Optional[tuple] = None      # the axes `steps` apply to, non-negative
    pads_batch_or_channel: Optional[bool] = None
    perm: Optional[tuple] = None
    gather_axis: Optional[int] = None       # the axis a Gather indexes, non-negative
    channel_reduction: Optional[tuple] = None  # LayerNormalization over the channel axis: the map's (h, w, c)
    # Concat along the channel axis: its inputs that are spatial joins, each (input, what joins it:
    # wording.parts), see _spatial_joins
    spatial_joins: Optional[tuple] = None
    # Concat / Slice: a data input onnx2tf writes or reads through a RESHAPE, and the node that
    # makes that RESHAPE: (input, node label); None where there is none (see _reshaped_input)
    reshaped_input: Optional[tuple] = None
    tensors: tuple = field(default=())      # variable inputs and all outputs
    constant_inputs: Optional[tuple] = None # names of the inputs known before run time


def is_constant(name: str, graph: GraphView, extra: frozenset = frozenset()) -> bool:
    """Known before run time (weights, shape tensors, folded chains)."""
    return bool(name) and (name in extra or graph.is_constant(name))


def node_facts(node: onnx.NodeProto, graph: GraphView, constants: frozenset = frozenset(),
               reshaped: Optional[Mapping[str, str]] = None) -> OpFacts:
    """`constants` and `reshaped` (reshaped_around) tell, for `graph` a model
    of part of a larger graph (a replacement's), what that graph knows of the
    values it reads from it."""
    a = attributes(node)
    tensors = tuple(Tensor("input", i, graph.shape(i)) for i in node.input
                    if i and not is_constant(i, graph, constants))
    tensors += tuple(Tensor("output", o, graph.shape(o)) for o in node.output if o)
    constant_inputs = tuple(i for i in node.input if i and is_constant(i, graph, constants))
    facts = OpFacts(node.op_type, tensors=tensors, constant_inputs=constant_inputs)
    if node.domain not in ("", "ai.onnx"):
        return facts
    reader = _READERS.get(node.op_type)
    facts = replace(facts, **reader(node, graph, a)) if reader else facts
    if reshaped and node.op_type in _RESHAPED_READERS and facts.reshaped_input is None:
        name = next((i for i in _RESHAPED_READERS[node.op_type](node) if i in reshaped), None)
        if name is not None:
            facts = replace(facts, reshaped_input=(name, reshaped[name]))
    return facts


def facts_from_attributes(op_type: str, *, rank: Optional[int] = None, input_shape=None,
                          output_shape=None, factors=None, steps=None, group_kind=None,
                          **attrs) -> OpFacts:
    """OpFacts from what a pass knows before building: ONNX attributes (those
    not given take their ONNX default, as on a node) plus facts that come
    from shapes or inputs (rank, shapes, factors, steps, axes, group_kind),
    which are not checked when not given."""
    inp = tuple(input_shape) if input_shape is not None else ((None,) * rank if rank else None)
    out = tuple(output_shape) if output_shape is not None else inp
    tensors = ((Tensor("input", "", inp),) if inp is not None else ()) + \
              ((Tensor("output", "", out),) if out is not None else ())
    facts = OpFacts(op_type, tensors=tensors)
    if op_type in CONV_OPS:
        facts = replace(facts, **_conv_from_attrs(op_type, attrs, inp, out, default_group=None))
        if group_kind is not None:
            facts = replace(facts, group_kind=group_kind)
    elif op_type in RESIZE_OPS:
        facts = replace(facts, mode=attrs.get("mode", "nearest"),
                        coordinate_transformation_mode=attrs.get("coordinate_transformation_mode", "half_pixel"),
                        nearest_mode=attrs.get("nearest_mode", "round_prefer_floor"),
                        factors=None if factors is None else tuple(Fraction(f).limit_denominator(10**6) for f in factors))
        if factors is not None:
            facts = replace(facts, spatial_rank=len(factors), resizes_batch_or_channel=False)
        if input_shape is not None and len(inp) > 2 and all(isinstance(d, int) for d in inp[2:]):
            facts = replace(facts, unit_input=all(d == 1 for d in inp[2:]))
        if input_shape is not None and output_shape is not None and len(inp) == len(out) > 2:
            facts = replace(facts, corner_factors=_corner_factors(inp, out))
    elif op_type == "DepthToSpace":
        facts = replace(facts, mode=attrs.get("mode", "DCR"), blocksize=attrs.get("blocksize"))
    elif op_type == "SpaceToDepth":
        facts = replace(facts, blocksize=attrs.get("blocksize"))
    elif op_type == "Pad":
        facts = replace(facts, mode=attrs.get("mode", "constant"))
        if "pads" in attrs:
            facts = replace(facts, pads_batch_or_channel=_pads_touch_batch_or_channel(list(attrs["pads"]), None))
    elif op_type == "Slice":
        facts = replace(facts, steps=None if steps is None else tuple(int(s) for s in steps))
        if "axes" in attrs:
            facts = replace(facts, slice_axes=_non_negative(attrs["axes"], len(inp) if inp is not None else None))
    elif op_type == "Gather":
        axis = _non_negative([attrs.get("axis", 0)], len(inp) if inp is not None else None)
        facts = replace(facts, gather_axis=None if axis is None else axis[0])
    elif op_type == "Transpose" and "perm" in attrs:
        facts = replace(facts, perm=tuple(attrs["perm"]))
    return facts


# --- readers, one per operator family ------------------------------------------------

def _conv(node, graph, a) -> dict:
    x = graph.shape(node.input[0])
    w = graph.static_shape(node.input[1]) if len(node.input) > 1 else None
    y = graph.shape(node.output[0])
    if "kernel_shape" not in a and w is not None:
        a = {**a, "kernel_shape": list(w[2:])}
    out = _conv_from_attrs(node.op_type, a, x, y)
    out["group_kind"] = _group_kind(node.op_type, out["group"], w)
    return out


def _conv_from_attrs(op, a, x, y, default_group: Optional[int] = 1) -> dict:
    kernel = tuple(a["kernel_shape"]) if a.get("kernel_shape") else None
    r = len(kernel) if kernel else (len(x) - 2 if x is not None and len(x) > 2 else None)
    group = a.get("group", default_group)
    if r is None:
        return {"group": group}
    strides = tuple(a.get("strides") or [1] * r)
    dilations = tuple(a.get("dilations") or [1] * r)
    out = {"spatial_rank": r, "kernel": kernel, "strides": strides, "dilations": dilations,
           "group": group, "group_kind": "standard" if group == 1 else None}
    sizes = _static(x[2:]) if x is not None else None
    if op == "Conv" and kernel is not None:
        out.update(_conv_pad_kinds(a, sizes, kernel, strides, dilations))
    if op == "ConvTranspose" and kernel is not None and sizes is not None and y is not None:
        out.update(_output_size_kinds(sizes, _static(y[2:]), kernel, strides, dilations, a))
    return out


def _group_kind(op, group, w) -> Optional[str]:
    """standard (group 1), depthwise (one input channel per group), grouped."""
    if group == 1:
        return "standard"
    if w is None or not isinstance(group, int) or group < 1:
        return None
    per_group_in = w[1] if op == "Conv" else w[0] // group  # Conv W: [M, C/g, k..]; ConvTranspose W: [C, M/g, k..]
    return "depthwise" if per_group_in == 1 else "grouped"


def _conv_pad_kinds(a, sizes, kernel, strides, dilations) -> dict:
    """Which kinds of padding the node's pads are (a set: zero pads are also
    symmetric, and equal SAME for a 1x1 kernel)."""
    auto = a.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER") and sizes is None:
        return {"pad_kinds": frozenset({auto.lower()})}
    pairs = conv_pads(auto, sizes or [0] * len(kernel), kernel, strides, dilations, a.get("pads"))
    kinds = set()
    if all(b == 0 and e == 0 for b, e in pairs):
        kinds.add("valid")
    if all(b == e for b, e in pairs):
        kinds.add("symmetric")
    if sizes is None and auto not in ("SAME_UPPER", "SAME_LOWER"):
        if any(s > 1 for s in strides):
            # SAME's total, (ceil(n / s) - 1) * s + extent - n, depends on the size n at a stride
            # above 1: whether these pads are SAME is not known before run time (rules.undecided);
            # zero pads are not SAME there unless the kernel covers no more than the stride
            pads = tuple(b for b, _ in pairs) + tuple(e for _, e in pairs)
            return {"pads": pads, "pad_kinds": frozenset(kinds),
                    "pad_kinds_open": frozenset({"same_upper", "same_lower", "same_symmetric"})}
        sizes = [1] * len(kernel)   # at stride 1 SAME pads extent - 1 in all, whatever the size
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        kinds.add(auto.lower())
    else:
        upper = conv_pads("SAME_UPPER", sizes, kernel, strides, dilations, None)
        if pairs == upper:
            kinds.add("same_upper")
        if pairs == conv_pads("SAME_LOWER", sizes, kernel, strides, dilations, None):
            kinds.add("same_lower")
        # SAME's total split as ceil(total / 2) on both sides (one more than
        # SAME when the total is odd): PyTorch's padding=k//2 at stride 2
        if pairs == [(-(-(b + e) // 2),) * 2 for b, e in upper]:
            kinds.add("same_symmetric")
    pads = tuple(b for b, _ in pairs) + tuple(e for _, e in pairs)
    return {"pads": pads, "pad_kinds": frozenset(kinds)}


def _output_size_kinds(sizes, out_sizes, kernel, strides, dilations, a=None) -> dict:
    """ConvTranspose output size: input x stride (TFLite SAME) and/or the
    unpadded (n - 1) * s + (k - 1) * d + 1 (TFLite VALID); and whether the
    TRANSPOSE_CONV onnx2tf writes for it has the size Vela takes (onnx2tf_valid)."""
    if out_sizes is None:
        return {}
    times = tuple(n * s for n, s in zip(sizes, strides))
    full = tuple((n - 1) * s + extent(k, d) for n, s, k, d in zip(sizes, strides, kernel, dilations))
    kinds = {name for name, want in (("input_times_stride", times), ("full", full)) if tuple(out_sizes) == want}
    if a is not None and _onnx2tf_valid(a, sizes, out_sizes, kernel, strides, dilations, times, full):
        kinds.add("onnx2tf_valid")
    return {"output_sizes": (tuple(out_sizes), times, full), "output_size_kinds": frozenset(kinds)}


def _onnx2tf_valid(a, sizes, out_sizes, kernel, strides, dilations, times, full) -> bool:
    """onnx2tf 2.6.9 (flatbuffer_direct, build_conv_transpose_op) writes a
    ConvTranspose with explicit pads as a VALID TRANSPOSE_CONV of the uncropped
    extent: (n - 1) * s + k per axis when any pad is set (the pads and
    output_padding are then a STRIDED_SLICE after it), (n - 1) * s + k +
    output_padding when every pad is 0 (the output_padding is in the
    TRANSPOSE_CONV's own size); with auto_pad SAME_* a SAME one of the ONNX
    output size.  Vela 5.2 takes a VALID TRANSPOSE_CONV only when its output
    is n * s + max(k - s, 0) (regor's ConstraintTConvValid: the uncropped
    extent, so only a kernel at least as large as the stride, without
    output_padding beyond the pads), a SAME one only when it is n * s."""
    if any(d is None for d in (*sizes, *out_sizes)):
        return False
    auto = a.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        return tuple(out_sizes) == times
    r = len(kernel)
    pads = list(a.get("pads") or [0] * (2 * r)) if auto != "VALID" else [0] * (2 * r)
    output_padding = list(a.get("output_padding") or [0] * r)
    written = tuple(f + (0 if any(pads) else p) for f, p in zip(full, output_padding))
    taken = tuple(n * s + max(extent(k, d) - s, 0) for n, s, k, d in zip(sizes, strides, kernel, dilations))
    return written == taken


def _resize(node, graph, a) -> dict:
    opset = graph.opset()
    if node.op_type == "Upsample" or opset < 11:
        ctm, nearest = "asymmetric", None  # Upsample and Resize-10 have neither attribute
    else:
        ctm = a.get("coordinate_transformation_mode", "half_pixel")
        nearest = a.get("nearest_mode", "round_prefer_floor")
    out = {"mode": a.get("mode", "nearest"), "coordinate_transformation_mode": ctm, "nearest_mode": nearest}
    x, y = graph.shape(node.input[0]), graph.shape(node.output[0])
    if x is not None and len(x) > 2:
        out["spatial_rank"] = len(x) - 2   # known with x's rank, whether or not the factors are
    if x is not None and len(x) > 2 and all(isinstance(d, int) for d in x[2:]):
        out["unit_input"] = all(d == 1 for d in x[2:])
    if x is not None and y is not None and len(x) == len(y) > 2:
        out["corner_factors"] = _corner_factors(x, y)
    ratios = _resize_ratios(node, graph, a)
    if ratios is not None and len(ratios) > 2:
        out.update(spatial_rank=len(ratios) - 2, factors=tuple(ratios[2:]),
                   resizes_batch_or_channel=any(r is not None and r != 1 for r in ratios[:2]))
    return out


def _corner_factors(x, y) -> Optional[tuple]:
    """align_corners' scale per spatial axis (None when a spatial size is symbolic)."""
    if not all(isinstance(d, int) for d in tuple(x[2:]) + tuple(y[2:])):
        return None
    return tuple(_corner_factor(i, o) for i, o in zip(x[2:], y[2:]))


def _corner_factor(n_in: int, n_out: int) -> Optional[Fraction]:
    """(out - 1) / (in - 1): with align_corners the first and last pixels of
    input and output coincide, so this is the scale between them.  An output
    of size 1 counts as 1 (nothing is scaled); an input of size 1 resized to
    more has no such scale: None."""
    if n_out == 1:
        return Fraction(1)
    if n_in == 1:
        return None
    return Fraction(n_out - 1, n_in - 1)


def _resize_ratios(node, graph, a) -> Optional[list]:
    """Output size / input size per axis, exactly, from the inferred shapes
    (the batch and channel ratios may be None when those dims are symbolic);
    else from a constant scales input."""
    x, y = graph.shape(node.input[0]), graph.shape(node.output[0])
    if x is not None and y is not None and len(x) == len(y) and len(x) > 2:
        ratios = [Fraction(o, i) if isinstance(i, int) and isinstance(o, int) and i else None for i, o in zip(x, y)]
        if all(r is not None for r in ratios[2:]):
            return ratios
    if node.op_type == "Upsample":
        scales = graph.constant(node.input[1]) if len(node.input) > 1 else a.get("scales")
    else:
        k = 2 if graph.opset() >= 11 else 1
        scales = graph.constant(node.input[k]) if len(node.input) > k and node.input[k] else None
    if scales is None or np.size(scales) == 0:
        return _sizes_ratios(node, graph, a, x)
    scales = np.ravel(scales).astype(np.float64)
    if not np.isfinite(scales).all():   # no ratio (an invalid node, which the resize pass says): as unknown
        return None
    return [Fraction(float(s)).limit_denominator(10**6) for s in scales]


def _sizes_ratios(node, graph, a, x) -> Optional[list]:
    """The ratios from a sizes input whose spatial entries are known though
    the rest is not (Concat(Shape(x)[0:2], [H', W']) beside a symbolic
    batch): shape inference leaves that output symbolic, and without the
    ratios every factor rule would pass unread."""
    if node.op_type != "Resize" or len(node.input) < 4 or not node.input[3] or "axes" in a or x is None:
        return None
    partial = graph.partial_constant(node.input[3])
    if partial is None:
        return None
    values, known = (np.ravel(v) for v in partial)
    if len(values) != len(x) or len(x) <= 2 or not all(known[2:]) or \
            not all(isinstance(d, int) and d > 0 for d in x[2:]):
        return None
    return [Fraction(int(v), d) if ok and isinstance(d, int) and d else None for v, ok, d in zip(values, known, x)]


def _depth_to_space(node, graph, a) -> dict:
    return {"mode": a.get("mode", "DCR"), "blocksize": a.get("blocksize")}


def _space_to_depth(node, graph, a) -> dict:
    return {"blocksize": a.get("blocksize")}


def _pad(node, graph, a) -> dict:
    out = {"mode": a.get("mode", "constant")}
    if graph.opset() < 11:
        pads, axes = a.get("pads"), None
    else:
        pads = graph.constant(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        axes = graph.constant(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        if len(node.input) > 3 and node.input[3] and axes is None:
            return out
    if pads is None:
        return out
    rank = len(graph.shape(node.input[0]) or ()) or None
    if axes is not None and rank is not None:
        axes = [int(ax) + rank if ax < 0 else int(ax) for ax in np.ravel(axes)]
    out["pads_batch_or_channel"] = _pads_touch_batch_or_channel([int(p) for p in np.ravel(pads)], axes)
    return out


def _pads_touch_batch_or_channel(pads: list, axes: Optional[list]) -> bool:
    n = len(pads) // 2
    axes = list(range(n)) if axes is None else axes
    return any((pads[k] or pads[k + n]) and axis in (0, 1) for k, axis in enumerate(axes))


def _slice(node, graph, a) -> dict:
    return {**_slice_steps(node, graph), **_reshaped_input(node, graph, _RESHAPED_READERS["Slice"](node))}


def _slice_steps(node, graph) -> dict:
    if graph.opset() < 10 or len(node.input) < 5 or not node.input[4]:
        return {"steps": (1,)}
    steps = graph.constant(node.input[4])
    if steps is None:
        return {}
    steps = tuple(int(s) for s in np.ravel(steps))
    if len(node.input) > 3 and node.input[3]:
        axes = graph.constant(node.input[3])
        if axes is None:
            return {"steps": steps}
        axes = [int(ax) for ax in np.ravel(axes)]
    else:
        axes = list(range(len(steps)))  # ONNX's default: the first len(starts) axes
    x = graph.shape(node.input[0])
    return {"steps": steps, "slice_axes": _non_negative(axes, len(x) if x is not None else None)}


def _non_negative(axes, rank: Optional[int]) -> Optional[tuple]:
    """Axes counted from 0 (a negative axis counts from the end); None when
    a negative axis meets an unknown rank."""
    if any(ax < 0 for ax in axes) and rank is None:
        return None
    return tuple(ax + rank if ax < 0 else ax for ax in axes)


def _transpose(node, graph, a) -> dict:
    if "perm" in a:
        return {"perm": tuple(a["perm"])}
    x = graph.shape(node.input[0])
    return {} if x is None else {"perm": tuple(reversed(range(len(x))))}


def _gather(node, graph, a) -> dict:
    x = graph.shape(node.input[0])
    axis = _non_negative([a.get("axis", 0)], len(x) if x is not None else None)
    return {} if axis is None else {"gather_axis": axis[0]}


def _layer_normalization(node, graph, a) -> dict:
    """Whether a 4-D LayerNormalization normalizes the feature map's channel
    axis, and the map's (h, w, c) if so.  The channel axis is 1, or the last
    one where the input is the NHWC Transpose (perm [0, 2, 3, 1]) of a map,
    the spelling of a channels-last LayerNorm (ConvNeXt, UPerNet) that
    onnx2tf keeps as TFLite's depth axis.  Normalizing from `axis` to the
    end covers the channel axis when axis <= that axis."""
    x = graph.shape(node.input[0])
    if x is None or len(x) != 4 or not all(isinstance(d, int) for d in x):
        return {}
    axis = a.get("axis", -1) % 4
    p = graph.producer(node.input[0])
    nhwc = p is not None and p.op_type == "Transpose" and list(attributes(p).get("perm", [])) == [0, 2, 3, 1]
    channel = 3 if nhwc else 1
    if axis > channel:
        return {}
    h, w, c = (x[1], x[2], x[3]) if nhwc else (x[2], x[3], x[1])
    return {"channel_reduction": (h, w, c)}


def _spatial_joins(node, graph, a) -> dict:
    """For a Concat along the channel axis (axis 1 of a rank >= 3 tensor):
    the inputs that are spatial joins, each (name, what joins it in words)
    (empty: none).  A
    spatial join is a Concat along a spatial axis (2 and up), or an edge
    Pad (onnx2tf writes edge padding as slices of the border and a
    CONCATENATION along each padded axis), read directly or through Slices
    and constant Pads (crops and zero borders, which keep the joined
    layout).  Constant inputs are folded by converters and are left out."""
    y = graph.shape(node.output[0])
    if "axis" not in a or y is None or len(y) < 3:
        return {}
    if a["axis"] % len(y) != 1:
        return {}
    joins = []
    for name in dict.fromkeys(i for i in node.input if i and not graph.is_constant(i)):
        join = _spatial_join(name, graph)
        if join:
            joins.append((name, join))
    return {"spatial_joins": tuple(joins)}


def _spatial_join(name: str, graph: GraphView) -> Optional[tuple]:
    """What makes `name` a spatial join, in words (wording.parts, the nodes
    quoted as nodes), or None (see _spatial_joins)."""
    through = []
    p = graph.producer(name)
    while p is not None:
        a = attributes(p)
        if p.op_type == "Concat":
            y = graph.shape(p.output[0])
            if "axis" not in a or y is None or a["axis"] % len(y) < 2:
                return None
            what = ("Concat ", wording.node(graph.label(p)), f" along axis {a['axis'] % len(y)}")
        elif p.op_type == "Pad" and a.get("mode", "constant") == "edge":
            what = ("edge Pad ", wording.node(graph.label(p)))
        elif p.input and (p.op_type == "Slice" or (p.op_type == "Pad" and a.get("mode", "constant") == "constant")):
            through.append((f"{p.op_type} ", wording.node(graph.label(p))))
            p = graph.producer(p.input[0])
            continue
        else:
            return None
        return wording.parts(what, (", through ", wording.joined(", ", through)) if through else ())
    return None


# What onnx2tf 2.6.9 (flatbuffer_direct) writes as a RESHAPE (or SQUEEZE / EXPAND_DIMS) right
# at an ONNX tensor: the shape operators themselves, and the operators of one spatial axis it runs
# as their 2-D TFLite operator between two RESHAPEs ([N, C, W] <-> [N, C, 1, W]; measured: Conv,
# ConvTranspose, MaxPool; AveragePool taken to be lowered as MaxPool is). A 1-D Resize reaches its
# RESIZE_* through a TRANSPOSE first, not a RESHAPE.
_RESHAPE_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze"})
_RESHAPED_1D_OPS = frozenset({"Conv", "ConvTranspose", "MaxPool", "AveragePool"})


def _writes_through_reshape(node, graph) -> bool:
    if node is None or node.domain not in ("", "ai.onnx"):
        return False
    if node.op_type in _RESHAPE_OPS:
        return True
    return node.op_type in _RESHAPED_1D_OPS and _spatial_rank(node, graph) == 1


def _spatial_rank(node, graph) -> Optional[int]:
    """How many spatial axes a Conv, ConvTranspose or pool has: from its
    input's rank, else its kernel_shape, else (Conv, ConvTranspose) its
    weight's rank; None where none is known."""
    for name in node.input[:2] if node.op_type in ("Conv", "ConvTranspose") else node.input[:1]:
        dims = graph.shape(name) if name else None
        if dims is not None:
            return len(dims) - 2
    kernel = attributes(node).get("kernel_shape")
    return len(kernel) if kernel else None


def _reshaped_input(node, graph, data_inputs) -> dict:
    """The first data input that onnx2tf passes through a RESHAPE: written by
    one (its producer is a shape operator or a 1-D Conv, ConvTranspose or
    pool) or read by one (another reader is). onnx2tf's full-integer quantizer
    gives a RESHAPE's output its input's scale, and later forces a Concat's
    scale onto all its inputs and a Slice's onto its input (its
    `_force_same_qparams`); the Concat's and the Slice's own scale come from
    their calibrated range, the union of the inputs' or a part of the input's,
    so the RESHAPE ends up with different input and output scales, which
    Vela's TFLite semantics check refuses. Whether the ranges differ depends on
    the calibration data; the fact says only that the path is there."""
    for name in data_inputs:
        if not name or graph.is_constant(name):
            continue
        maker = _reshape_maker(name, graph, lambda c: c is not node)
        if maker is not None:
            return {"reshaped_input": (name, graph.label(maker))}
    return {}


def _reshape_maker(name: str, graph: GraphView, other_reader) -> Optional[onnx.NodeProto]:
    """The node that makes onnx2tf pass `name` through a RESHAPE: its
    producer, or a reader for which `other_reader` holds; else None."""
    makers = [graph.producer(name)] + [c for c in graph.consumers(name) if other_reader(c)]
    return next((m for m in makers if _writes_through_reshape(m, graph)), None)


def reshaped_around(names, graph: GraphView, removed: Sequence[onnx.NodeProto]) -> dict:
    """Of `names` (values a model of part of `graph` reads from it): those
    onnx2tf writes or reads through a RESHAPE in `graph` (their producer, or
    a reader not among `removed`, the nodes the part replaces), each with
    the label of the node that makes it.  The part's own model has them as
    graph inputs, with no producer and no other reader: a Slice of a tensor
    a Reshape wrote, built by a lowering, broke no_reshaped_inputs there
    while the Vela compile of the rewritten model stops."""
    gone = {id(n) for n in removed}
    out = {}
    for name in names:
        maker = _reshape_maker(name, graph, lambda c: id(c) not in gone)
        if maker is not None:
            out[name] = graph.label(maker)
    return out


def _concat(node, graph, a) -> dict:
    return {**_spatial_joins(node, graph, a), **_reshaped_input(node, graph, _RESHAPED_READERS["Concat"](node))}


# The operators no_reshaped_inputs is read for, and their data inputs.
_RESHAPED_READERS = {"Slice": lambda node: list(node.input[:1]), "Concat": lambda node: list(node.input)}


def _static(dims) -> Optional[tuple]:
    return tuple(dims) if all(isinstance(d, int) for d in dims) else None


_READERS = {
    "Conv": _conv, "ConvTranspose": _conv, "Resize": _resize, "Upsample": _resize,
    "DepthToSpace": _depth_to_space, "SpaceToDepth": _space_to_depth, "Pad": _pad,
    "Slice": _slice, "Concat": _concat, "Transpose": _transpose, "Gather": _gather,
    "LayerNormalization": _layer_normalization,
}
