"""convtranspose: ConvTranspose -> stride-1 Conv(s) + pixel shuffle (sub-pixel convolution).

Before:
    x [N, Cin, n...] --ConvTranspose(W [Cin, Cout/g, k...], B, strides s, pads, ...)--> y [N, Cout, out...]

After (phase-convs: one Conv per output phase, exact taps; MAC-optimal):
    x --Slice?--> Conv(phase kernel 0, own pads) --Pad?--+
    x --Slice?--> Conv(phase kernel 1, own pads) --Pad?--+--Concat(axis 1)--DepthToSpace(DCR)--Slice?--> y
    ...                       (phases that have no tap: zeros + B)

After (single-conv: one Conv over the window shared by all phases):
    x --Slice?--> Conv(kernel [Cout*prod(s), Cin/g, window...]) --DepthToSpace(CRD)--Slice?--> y

DepthToSpace stands for the general Reshape/Transpose/Reshape pixel shuffle
when the rank is not 2 or the strides differ.  With stride 1 both forms are
one Conv with the flipped, transposed kernel and complementary pads.

Identity (per axis, t = q*s + r, head = begin padding; see convrewrite.subpixel):

    y[q*s + r] = sum_{j : (r + head - j*d) % s == 0} x[q + (r + head - j*d)/s] * w[j]

so output phase r is a stride-1 correlation of x with the taps of residue r
(reversed), dilation d/gcd(d, s).  The ConvTranspose's padding becomes each
Conv's own padding (negative padding: a Slice of the input); a Slice of the
output is needed only when the output size is not a multiple of the stride.
The form with fewer MACs is chosen at match time; on a tie, single-conv
(one node, faster on onnxruntime CPU, see docs/convtranspose.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import ClassVar, Optional

import numpy as np
import onnx
from onnx import helper

from convrewrite.builder import Builder
from convrewrite.graph import GraphView, attributes
from convrewrite.ops import pad_axes, slice_axes, zeros
from convrewrite.pixel_shuffle import pixel_shuffle
from convrewrite.rewrite import Match, Replacement, Skip
from convrewrite.subpixel import (AxisConv, AxisPlan, SpecConflict, conv_transpose_macs, conv_weight,
                                  output_geometry, phase_kernel, phases, plan_macs, shared_kernel,
                                  shared_plan, split_plan)

# onnxruntime has no float64 Conv on CPU, so a double rewrite could not be verified.
FLOAT_TYPES = (onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT)
MIN_OPSET = 5  # Reshape with a shape input


@dataclass(frozen=True)
class Lowering:
    """Everything build needs: the chosen form and its per-axis plans."""

    form: str                      # "phase-convs" | "single-conv" | "bias-only"
    plans: tuple[AxisPlan, ...]
    group: int
    cout: int
    weight: str
    bias: str                      # "" when there is none
    bias_is_constant: bool


FORMS = ("auto", "single-conv", "phase-convs")


@dataclass(frozen=True)
class ConvTransposeToConv:
    """`form`: "auto" (fewest MACs, single-conv on a tie) or a preferred form
    (used where it can express the node, e.g. for targets that want one Conv)."""

    form: str = "auto"

    name: ClassVar[str] = "convtranspose"
    description: ClassVar[str] = "ConvTranspose -> stride-1 Conv(s) + DepthToSpace (sub-pixel convolution), exact"

    def __post_init__(self):
        if self.form not in FORMS:
            raise ValueError(f"convtranspose_form must be one of {', '.join(FORMS)}, not {self.form!r}")

    @classmethod
    def from_options(cls, options: dict) -> "ConvTransposeToConv":
        return cls(options.get("convtranspose_form", "auto"))

    def candidate(self, node: onnx.NodeProto, graph: GraphView) -> bool:
        return node.op_type == "ConvTranspose" and node.domain in ("", "ai.onnx")

    # --- match ------------------------------------------------------------

    def match(self, node: onnx.NodeProto, graph: GraphView) -> Match | Skip:
        where = f"ConvTranspose '{graph.label(node)}'"
        problem = _unsupported(node, graph)
        if problem:
            return Skip(f"{where}: {problem}")
        x, w = graph.shape(node.input[0])[2:], graph.shape(node.input[1])
        rank, a = len(x), attributes(node)
        try:
            geometry = output_geometry(x, w[2:], a.get("strides", [1] * rank), a.get("dilations", [1] * rank),
                                       a.get("auto_pad", "NOTSET"), a.get("pads"), a.get("output_padding"),
                                       a.get("output_shape"))
        except SpecConflict as e:
            return Skip(f"{where}: {e}")
        if any(g.out <= 0 for g in geometry):
            return Skip(f"{where}: the output would be empty ({[g.out for g in geometry]})")
        return _choose(node, graph, geometry, self.form, where)

    # --- build ------------------------------------------------------------

    def build(self, match: Match, graph: GraphView) -> Replacement:
        p: Lowering = match.params
        b = Builder(graph, match.node, self.name)
        x = match.node.input[0]
        bias = graph.constant(p.bias) if p.bias and p.bias_is_constant else None
        if p.form == "bias-only":
            return b.replacement({match.node.output[0]: _bias_only(b, x, p, bias, [pl.out for pl in p.plans])})
        wc = conv_weight(graph.constant(p.weight), p.group)
        if p.form == "single-conv":
            y = _single_conv(b, x, wc, bias, p)
        else:
            y = _phase_convs(b, x, wc, bias, p)
        return b.replacement({match.node.output[0]: _crop(b, y, p.plans)})


# --- match helpers ----------------------------------------------------------

def _unsupported(node, graph: GraphView) -> Optional[str]:
    """Why this ConvTranspose cannot be lowered, or None."""
    if graph.opset() < MIN_OPSET:
        return f"model opset {graph.opset()} is older than {MIN_OPSET}; upgrade the model's opset"
    xs = graph.shape(node.input[0])
    if xs is None or len(xs) < 3:
        return "the input's rank is unknown; run shape inference or give the input a shape"
    if not all(isinstance(d, int) for d in xs[2:]):
        return f"the input's spatial size {list(xs[2:])} is not static; fix the input's spatial dimensions"
    dtype = graph.dtype(node.input[0])
    if dtype not in FLOAT_TYPES:
        name = onnx.TensorProto.DataType.Name(dtype) if dtype else "unknown"
        return (f"element type {name} is not lowered: only float16 and float32 are, because onnxruntime "
                "has no Conv of other types to verify the rewrite against")
    w = node.input[1]
    if graph.constant(w) is None:
        kind = "a graph input" if graph.is_graph_input(w) else "computed at run time"
        return f"weight '{w}' is {kind}; make it an initializer to lower it"
    return _attribute_problem(node, graph, len(xs) - 2)


def _attribute_problem(node, graph: GraphView, rank: int) -> Optional[str]:
    a, ws = attributes(node), graph.shape(node.input[1])
    group = int(a.get("group", 1))
    for key in ("strides", "dilations", "output_padding", "kernel_shape"):
        if key in a and len(a[key]) != rank:
            return f"attribute {key}={a[key]} does not have {rank} entries"
    if any(v < 1 for key in ("strides", "dilations") for v in a.get(key, [])):
        return "strides and dilations must be positive"
    if len(ws) != rank + 2 or list(a.get("kernel_shape", ws[2:])) != list(ws[2:]):
        return f"kernel_shape {a.get('kernel_shape')} does not match the weight's shape {list(ws)}"
    cin = graph.shape(node.input[0])[1]
    if group < 1 or ws[0] % group or (isinstance(cin, int) and cin != ws[0]):
        return f"weight shape {list(ws)} does not fit {cin} input channels in {group} groups"
    if len(node.input) > 2 and node.input[2] and graph.shape(node.input[2]) not in (None, (ws[1] * group,)):
        return f"bias shape {list(graph.shape(node.input[2]))} is not [{ws[1] * group}]"
    return None


def _choose(node, graph: GraphView, geometry, preferred: str, where: str) -> Match | Skip:
    """The form with fewer MACs (single-conv on a tie, or the preferred form
    where it is possible); notes for the report."""
    ws = graph.shape(node.input[1])
    group = int(attributes(node).get("group", 1))
    cin, cout = ws[0], ws[1] * group
    bias = node.input[2] if len(node.input) > 2 else ""
    bias_const = not bias or graph.constant(bias) is not None
    split = tuple(split_plan(g) for g in geometry)
    if not any(phases(split)):
        if graph.opset() < 9:
            return Skip(f"{where}: the padding crops away every computed value, so the output is the bias "
                        "alone, which needs ConstantOfShape (opset 9); upgrade the model's opset")
        params = Lowering("bias-only", split, group, cout, node.input[1], bias, bias_const)
        return Match(node, params, notes=("form=bias-only", "macs=0 (the padding crops away every tap)"))
    shared = tuple(shared_plan(g) for g in geometry)
    options = {}
    if bias_const:
        options["single-conv"] = plan_macs(shared, cin, cout, group)
    if graph.opset() >= 9 or all(phases(split)):
        options["phase-convs"] = plan_macs(split, cin, cout, group)
    if not options:
        return Skip(f"{where}: the bias is computed at run time and some output phases have no tap, "
                    "which needs ConstantOfShape (opset 9); upgrade the model's opset")
    form = preferred if preferred in options else min(options, key=lambda f: (options[f], f != "single-conv"))
    before = conv_transpose_macs(cin, cout, group, [g.n for g in geometry], ws[2:])
    params = Lowering(form, shared if form == "single-conv" else split, group, cout, node.input[1], bias, bias_const)
    notes = [f"form={form}", f"macs={options[form]} ({options[form] / before:.3f}x ConvTranspose {before})"]
    notes += [f"{f} macs={m}" for f, m in options.items() if f != form]
    if preferred != "auto" and preferred != form:
        notes.append(f"preferred form {preferred} cannot express this node")
    return Match(node, params, notes=tuple(notes))


# --- build helpers ----------------------------------------------------------

def _conv(b: Builder, x: str, kernel: np.ndarray, bias, axes, group: int, what: str,
          slices: dict) -> str:
    """Conv of x with `kernel`; negative pads become a Slice of x (shared via `slices`)."""
    x = _slice_input(b, x, axes, slices)
    inputs = [x, b.initializer(kernel, f"{what}_weight")]
    if isinstance(bias, np.ndarray):
        inputs.append(b.initializer(bias, f"{what}_bias"))
    elif bias:
        inputs.append(bias)
    pads = [max(a.begin, 0) for a in axes] + [max(a.end, 0) for a in axes]
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
    axes = tuple(next(c for c in plan.phases if c is not None) for plan in p.plans)
    blocks = prod(plan.stride for plan in p.plans)
    b_rep = None if bias is None else np.repeat(bias, blocks)
    y = _conv(b, x, shared_kernel(wc, p.plans), b_rep, axes, p.group, "conv", {})
    return pixel_shuffle(b, y, p.cout, [pl.stride for pl in p.plans], [pl.blocks for pl in p.plans], "CRD")


def _phase_convs(b: Builder, x: str, wc: np.ndarray, bias, p: Lowering) -> str:
    """One Conv per run of consecutive phases with equal geometry (one per
    phase when group > 1 or the bias is a runtime value), zeros + bias for
    phases without taps, Concat in phase order, DCR pixel shuffle."""
    blocks = [plan.blocks for plan in p.plans]
    parts, filler, slices = [], None, {}
    for k, run in enumerate(_runs(phases(p.plans), p.group == 1 and p.bias_is_constant)):
        if run[0] is None:
            filler = filler or _bias_only(b, x, p, bias, blocks)
            parts += [filler] * len(run)
            continue
        kernel = np.concatenate([phase_kernel(wc, combo) for combo in run])
        b_run = np.tile(bias, len(run)) if bias is not None else p.bias
        y = _conv(b, x, kernel, b_run, run[0], p.group, f"phase{k}_conv", slices)
        missing = [(0, n - a.count) for n, a in zip(blocks, run[0])]
        if any(hi for _, hi in missing):
            y = pad_axes(b, y, len(blocks) + 2, range(2, len(blocks) + 2), missing, f"phase{k}_pad")
        parts.append(y)
    y = parts[0] if len(parts) == 1 else b.op("Concat", parts, "concat", axis=1)
    return pixel_shuffle(b, y, p.cout, [pl.stride for pl in p.plans], blocks, "DCR")


def _runs(combos: list, merge: bool) -> list[list]:
    """Consecutive phases with equal conv geometry (and empty ones) grouped."""
    def geometry(c):
        return None if c is None else tuple((a.size, a.dilation, a.begin, a.end, a.count) for a in c)

    runs: list[list] = []
    for c in combos:
        if runs and (merge or c is None) and geometry(runs[-1][0]) == geometry(c):
            runs[-1].append(c)
        else:
            runs.append([c])
    return runs


def _bias_only(b: Builder, x: str, p: Lowering, bias, sizes) -> str:
    """[N, Cout, sizes...] holding the bias (or zeros): outputs no tap reaches."""
    dtype = helper.tensor_dtype_to_np_dtype(b.graph.dtype(x))
    batch = b.graph.shape(x)[0]
    z = zeros(b, x, [batch if isinstance(batch, int) else None, p.cout, *sizes], dtype, "no_tap_zeros")
    if not p.bias:
        return z
    column = [p.cout] + [1] * len(sizes)
    if bias is not None:
        col = b.initializer(bias.reshape(column), "no_tap_bias")
    else:
        col = b.op("Reshape", [p.bias, b.ints(column, "no_tap_bias_shape")], "no_tap_bias")
    return b.op("Add", [z, col], "no_tap")


def _crop(b: Builder, y: str, plans) -> str:
    """Cut the block grid [-shift, blocks*s - shift) back to [0, out)."""
    cut = [(i + 2, pl.shift, pl.shift + pl.out) for i, pl in enumerate(plans)
           if pl.shift or pl.blocks * pl.stride != pl.out]
    if not cut:
        return y
    axes, starts, ends = zip(*cut)
    return slice_axes(b, y, axes, starts, ends, "crop")
