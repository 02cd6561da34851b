"""convtranspose: ConvTranspose -> stride-1 Conv(s) + pixel shuffle (sub-pixel convolution).

Before:
    x [N, Cin, n...] --ConvTranspose(W [Cin, Cout/g, k...], B, strides s, pads, ...)--> y [N, Cout, out...]

After (single-conv: one Conv over the window shared by all phases):
    x --Slice?--> Conv(kernel [Cout*prod(s), Cin/g, window...]) --DepthToSpace(CRD or DCR)--Slice?--> y

After (phase-convs: one Conv per output phase, exact taps):
    x --Slice?--> Conv(phase kernel 0, own pads) --Pad?--+
    x --Slice?--> Conv(phase kernel 1, own pads) --Pad?--+--Concat(axis 1)--DepthToSpace(DCR)--Slice?--> y
    ...                       (phases that have no tap: zeros + B)

After (border-split: phase-convs with each phase cut into tiles along its axes):
    x --Slice--> Conv(border taps) --+
    x --Slice--> Conv(all taps)    --+--Concat(spatial axis)--> phase 0 ... as phase-convs
    x --Slice--> Conv(border taps) --+

DepthToSpace stands for the general Reshape/Transpose/Reshape pixel shuffle
when the rank is not 2 or the strides differ (3-D: one axis at a time, so no
tensor exceeds rank 6).  With stride 1 every form is
one Conv with the flipped, transposed kernel and complementary pads.

Identity (per axis, t = q*s + r, head = begin padding; see passes.convtranspose.geometry):

    y[q*s + r] = sum_{j : (r + head - j*d) % s == 0} x[q + (r + head - j*d)/s] * w[j]

so output phase r is a stride-1 correlation of x with the taps of residue r
(reversed), dilation d/gcd(d, s).  The ConvTranspose's padding becomes each
Conv's own padding (negative padding: a Slice of the input); a Slice of the
output crops the block grid where it overhangs the output (a size that is not
a multiple of the stride, or single-conv's grid shifted by the padding).

A BatchNormalization in inference mode that alone reads the output is
folded into the kernels and the bias first (batchnorm.py: W'[:, o] = W[:, o] * s[o],
B' = B * s + t, s = gamma / sqrt(var + eps), t = beta - mean * s): the match
covers both nodes and every form builds from the folded constants.  A
target that runs the ConvTranspose keeps both nodes as they are.

Forms (forms.py): single-conv, phase-convs, border-split, bias-only.  The
driver's chooser takes the simplest whose MACs are within mac_bound (1.1x) of
the ConvTranspose's; if none is, the fewest MACs.  With a target profile it
takes the first form and variant (pixel shuffle layout, Pad nodes) whose
nodes the target runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar, Optional

import onnx

from convrewrite.core import qdq
from convrewrite.core.graph import GraphView, attributes
from convrewrite.core.preconditions import (attribute_key, first_problem, old_opset, read_once, unknown_spatial_size,
                                           unverifiable_type)
from convrewrite.core.rewrite import Code, Match, PassOptions, Skip
from convrewrite.geometry import geometry_problem

from . import forms as _forms
from . import quantized
from .batchnorm import Norm, read_norm
from .forms import MAC_BOUND, SELECTABLE, Deconv
from .geometry import SpecAmbiguous, SpecConflict, TooLarge, conv_transpose_macs, output_geometry



@dataclass(frozen=True)
class ConvTransposeOptions(PassOptions):
    """`form`: a preferred form (used where it can express the node), or
    "auto": the chooser's pick."""

    form: str = "auto"
    KEYS: ClassVar[dict] = {"convtranspose_form": "form"}
    CHOICES: ClassVar[dict] = {"convtranspose_form": ("auto",) + SELECTABLE}

    def __post_init__(self):
        self.check_choices()


@dataclass(frozen=True)
class ConvTransposeToConv:
    options: ConvTransposeOptions = field(default_factory=ConvTransposeOptions)

    name: ClassVar[str] = "convtranspose"
    description: ClassVar[str] = "ConvTranspose -> stride-1 Conv(s) + DepthToSpace (sub-pixel convolution), exact"
    op_types: ClassVar[tuple] = ("ConvTranspose",)
    mac_bound: ClassVar[float] = MAC_BOUND
    Options: ClassVar[type] = ConvTransposeOptions

    @property
    def forms(self) -> tuple:
        return _forms.forms(self.options.form) + quantized.FORMS

    def preferred(self) -> tuple[str, ...]:
        return () if self.options.form == "auto" else (self.options.form,)

    def candidate(self, node: onnx.NodeProto, graph: GraphView) -> bool:
        return node.op_type == "ConvTranspose" and node.domain in ("", "ai.onnx")

    def match(self, node: onnx.NodeProto, graph: GraphView) -> Match | Skip:
        """The ConvTranspose, with the BatchNormalization that alone reads its
        output folded in where batchnorm.read_norm allows it."""
        return self._match(node, graph, fold_norm=True)

    def structure(self, match: Match, name_of) -> Optional[Deconv]:
        """The params with their names written by position (`name_of`,
        core/plans.py): what, beside the matched values' types, the forms'
        choice reads.  A quantized match: None (planned on its own)."""
        d = match.params
        if type(d) is not Deconv:
            return None
        n = d.norm
        norm = n and replace(n, label=name_of(n.label), output=name_of(n.output), scale=name_of(n.scale),
                             bias=name_of(n.bias), mean=name_of(n.mean), var=name_of(n.var))
        return replace(d, weight=name_of(d.weight), bias=name_of(d.bias), norm=norm)

    def match_alone(self, node: onnx.NodeProto, graph: GraphView) -> Match | Skip:
        """The ConvTranspose by itself (the driver re-matches the nodes of a
        folded match that does not fit a target or was rolled back)."""
        return self._match(node, graph, fold_norm=False)

    def _match(self, node: onnx.NodeProto, graph: GraphView, fold_norm: bool) -> Match | Skip:
        where = f"ConvTranspose '{graph.label(node)}'"
        region = qdq.region(node, graph)
        group = None
        if region is not None:   # before the weight checks: a dequantized weight is not "computed at run time"
            group = quantized.read_group(node, graph)
            if isinstance(group, str):
                return Skip(f"{where}: {region.describe()}; {group}, so no form keeps it quantized; "
                            f"{region.left_alone()}", Code.QUANTIZED)
        problem = _unsupported(node, graph, weight_checked=group is None)
        if problem:
            return Skip(f"{where}: {problem.reason}", problem.code)
        read = read_once(graph, _geometry, _geometry_key(node, graph), node)
        if isinstance(read, Skip):
            return Skip(f"{where}: {read.reason}", read.code)
        geometry, groups, cin, cout, macs = read
        bias = node.input[2] if len(node.input) > 2 else ""
        if group is not None:
            qfields, q = group
            return Match(node, quantized.QDeconv(geometry, groups, cin, cout, node.input[1],
                                                 bias, True, macs, graph.opset(), **qfields), nodes=(node, q),
                         notes=(f"quantized (QDQ) group: {region.describe()}",))
        norm = read_norm(node, graph) if fold_norm else None   # a Norm, why not (str), or None
        folded = norm if isinstance(norm, Norm) else None
        deconv = Deconv(geometry, groups, cin, cout, node.input[1], bias, not bias or graph.is_constant(bias),
                        macs, graph.opset(), norm=folded)
        if folded is None:
            return Match(node, deconv, notes=(norm,) if norm else ())
        return Match(node, deconv, nodes=(node, graph.producer(folded.output)),
                     notes=(f"folded BatchNormalization '{folded.label}' into the phase kernels and bias",))


def _geometry_key(node, graph: GraphView) -> tuple:
    """All that _geometry reads of the ConvTranspose (x's shape is known:
    _unsupported): its attributes and the shapes of x, the weight and the bias."""
    b = node.input[2] if len(node.input) > 2 else ""
    return (attribute_key(node), graph.shape(node.input[0]), graph.shape(node.input[1]), bool(b),
            graph.shape(b) if b else None)


def _geometry(node, graph: GraphView) -> "Skip | tuple":
    """(per-axis geometry, group, C in, C out, MACs), or why the attributes
    and shapes describe no ConvTranspose to lower (a reason without the node)."""
    x, w = graph.shape(node.input[0]), graph.shape(node.input[1])
    problem = _attribute_problem(node, graph, len(x) - 2)
    if problem:
        return Skip(problem, Code.INVALID_NODE)
    rank, a = len(x) - 2, attributes(node)
    try:
        geometry = output_geometry(x[2:], w[2:], a.get("strides", [1] * rank), a.get("dilations", [1] * rank),
                                   a.get("auto_pad", "NOTSET"), a.get("pads"), a.get("output_padding"),
                                   a.get("output_shape"))
    except SpecConflict as e:   # the node's code: a pipeline acts on it (a too-large node is valid ONNX)
        code = (Code.TOO_LARGE if isinstance(e, TooLarge) else
                Code.SPEC_AMBIGUOUS if isinstance(e, SpecAmbiguous) else Code.INVALID_NODE)
        return Skip(str(e), code)
    if any(g.out < 0 for g in geometry):   # pads larger than the output: no tensor has that shape
        return Skip(f"the pads are larger than the output, which would be of size {[g.out for g in geometry]}",
                    Code.INVALID_NODE)
    if any(g.out == 0 for g in geometry):
        return Skip(f"the output would be empty ({[g.out for g in geometry]})", Code.EMPTY_OUTPUT)
    groups = int(a.get("group", 1))
    cin, cout = w[0], w[1] * groups
    return tuple(geometry), groups, cin, cout, conv_transpose_macs(cin, cout, groups, [g.n for g in geometry], w[2:])


def _unsupported(node, graph: GraphView, weight_checked: bool = True) -> Optional[Skip]:
    """Why this ConvTranspose's values cannot be lowered (reason without the
    node), or None; its attributes: _geometry."""
    problem = first_problem(old_opset(graph), unknown_spatial_size(graph, node.input[0]),
                            unverifiable_type(graph, node.input[0]))
    if problem:
        return problem
    w = node.input[1]
    if weight_checked and not graph.is_constant(w):
        kind = ("a graph input" if graph.is_graph_input(w) else
                "a sparse_initializer" if graph.is_sparse_initializer(w) else "computed at run time")
        an = "a dense" if graph.is_sparse_initializer(w) else "an"
        return Skip(f"weight '{w}' is {kind}; make it {an} initializer to lower it", Code.RUNTIME_WEIGHT)
    b = node.input[2] if len(node.input) > 2 else ""
    if b and graph.is_sparse_initializer(b):
        return Skip(f"bias '{b}' is a sparse_initializer; make it a dense initializer to lower it",
                    Code.RUNTIME_WEIGHT)
    if b and not graph.is_constant(b) and (graph.dtype(b) is None or graph.shape(b) is None):
        # a bias added at run time must be fed to the rewrite's check model,
        # which needs its type and shape (an op of a domain onnx does not know)
        return Skip(f"bias '{b}' is computed at run time by an operator whose output type or shape is unknown; "
                    f"make it an initializer (or declare its type and shape in a value_info) to lower it", Code.RUNTIME_WEIGHT)
    return None


def _attribute_problem(node, graph: GraphView, rank: int) -> Optional[str]:
    a, ws = attributes(node), graph.shape(node.input[1])
    group = int(a.get("group", 1))
    problem = geometry_problem(a, rank, ws, ("strides", "dilations", "output_padding", "kernel_shape"))
    if problem:
        return problem
    strides, adj = a.get("strides", [1] * rank), a.get("output_padding", [0] * rank)
    if any(p >= s for p, s in zip(adj, strides)):
        # output_padding only picks which of the stride's positions past the last input end the output; one
        # of s or more is no such position (onnxruntime refuses it, with or without output_shape)
        return f"output_padding {list(adj)} is not below the strides {list(strides)}, as the spec requires"
    cin = graph.shape(node.input[0])[1]
    if group < 1 or ws[0] % group or (isinstance(cin, int) and cin != ws[0]):
        return f"weight shape {list(ws)} does not fit {cin} input channels in {group} groups"
    if len(node.input) > 2 and node.input[2] and graph.shape(node.input[2]) not in (None, (ws[1] * group,)):
        return f"bias shape {list(graph.shape(node.input[2]))} is not [{ws[1] * group}]"
    return None
