"""resize: Resize / Upsample -> depthwise ConvTranspose with interpolation weights.

Before:
    x [N, C, n_1..n_r] --Resize(integer factors s_i, nearest | linear | cubic)--> y [N, C, n_1*s_1..n_r*s_r]

After (deconv, any mode):
    x --Pad(edge, (lo_i, hi_i))--> ConvTranspose(W [C, 1, k_1..k_r], group C, strides s,
                                                 pads (pad_begin_i, pad_end_i)) --> y
    W[c, 0] = kernel_1 (x) kernel_2 (x) ... (x) kernel_r   (outer product of per-axis kernels)

After (shuffle, nearest; MAC-free):
    x --Pad(edge)?--Slice per phase?--> Concat(prod(s) copies, axis 1) --DepthToSpace(DCR)--> y

After (identity, every scale is 1): x --Identity--> y

After (broadcast, every resized axis has size 1): x --Expand([.., m_i, ..])--> y

After (matmul, --resize-mode matmul; any static Resize, align_corners and downsampling included):
    x --MatMul(M_a) along each resized axis a (Reshape around it when a < rank - 2)--> y
        [+ extrapolation_value * mask for tf_crop_and_resize]

After (pointwise, --resize-mode pointwise; static resized spatial axes; pointwise.py):
    x --Transpose (axis a to channels)--> 1x1 Conv(M_a reshaped [m, n, 1..]) per resized axis a
      --Transpose back--> y

Identity (per axis; passes.resize.interpolation derives it from the spec's formulas):

    y[q*s + r] = sum_{(d, w) in phase_taps[r]} w * x[clamp(q + d, 0, n - 1)]
               = ConvTranspose(Pad_edge(x), kernel)[q*s + r],  kernel[r + pad_begin - (d + lo)*s] = w

The edge Pad is the spec's clamp, so borders match exactly; the ConvTranspose's
own pads crop its output to n*s.  With a plain floor(t / s) nearest mapping the
kernel is all ones and the shuffle form needs no Pad or Slice at all.  Where
the target has no Pad edge, the shuffle and deconv forms have a variant
("concat edge") that replicates the border by Concat of edge Slices instead:

    Pad_edge(x, lo, hi) = Concat(x[..., :1] * lo, x, x[..., -1:] * hi)   (per axis)

Forms (forms.py), simplest first: identity, broadcast, shuffle (nearest),
deconv, and matmul and pointwise, which are opt-in: used when the user asks
for them (resize_mode) or a target needs a lowering no other form gives
(pointwise: one the target's Convs run where its MatMuls do not).  One
exception: a linear Resize without a target, where the chooser's cost model
(core/cost_model.py) places deconv and matmul by their estimated times on
onnxruntime CPU (matmul was the faster in every measured case; the estimate
weighs the sizes) unless resize_mode=deconv asks for the plain order; and a
nearest upsampling of small maps without a target, where matmul goes first
(forms.nearest_favour, measured on onnxruntime CPU).  A node only
the matmul form expresses (align_corners, downsampling, ...) is left alone by
default, with the reason and the option that lowers it.

The deconv form's ConvTranspose is lowered afterwards by the convtranspose
pass, when it is in the run (the driver's pass order and worklist); with a
target profile, the driver judges the deconv form as that pass would lower it
for the target (lowering.settle), not the ConvTranspose as built.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional

import onnx
from onnx import helper

from convrewrite.core.graph import GraphView
from convrewrite.core.preconditions import attribute_key, read_once, unverifiable_type
from convrewrite.core.rewrite import Code, Match, PassOptions, Skip

from . import pointwise, quantized
from .forms import FORMS, ResizeParams
from .interpolation import MAX_FACTOR, ResizeSpec, Unreadable, identity_kernel, read_resize, resize_kernel

MODES = ("deconv", "matmul", "pointwise")
NEAREST_FORMS = ("shuffle", "deconv")


# The element types the forms are built for.  onnxruntime 1.32 CPU runs float16 and float32
# everywhere; in float64 it runs MatMul and the data movement (the matmul, shuffle, identity and
# broadcast forms) but no Resize, Conv or ConvTranspose: the original then runs in onnx's
# reference evaluator (the oracle where onnxruntime refuses a node), and the forms that build a
# Conv or ConvTranspose do not apply (forms.py `conv_type_problem`).
RESIZE_TYPES = (onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE)


def _type_problem(graph: GraphView, x: str) -> Optional[Skip]:
    """Why the Resize's element type is not lowered, or None."""
    if graph.dtype(x) == onnx.TensorProto.BFLOAT16:
        why = "onnxruntime runs neither a Resize nor any form's MatMul or Conv of that type, so nothing could be checked"
    else:
        why = ("the pass lowers floating-point Resizes only: its deconv, matmul and pointwise forms weigh samples by "
               "fractions, which an integer type cannot hold")
    return unverifiable_type(graph, x, why, RESIZE_TYPES)


@dataclass(frozen=True)
class ResizeOptions(PassOptions):
    """`mode`: None (the default: identity, broadcast, shuffle, deconv; for a
    linear Resize without a target, deconv or matmul by the cost model's
    estimate), "deconv" (that order, never matmul unasked), "matmul" (prefer the
    interpolation matrices: any static Resize) or "pointwise" (the same
    matrices as 1x1 Convs over transposed tensors).
    `nearest`: None (the default: shuffle, channel copies + DepthToSpace,
    no MACs; without a target matmul on maps of at most 48 samples per
    axis), "shuffle" (shuffle first everywhere) or "deconv" (prefer the
    ConvTranspose)."""

    mode: Optional[str] = None
    nearest: Optional[str] = None
    KEYS: ClassVar[dict] = {"resize_mode": "mode", "resize_nearest": "nearest"}
    CHOICES: ClassVar[dict] = {"resize_mode": MODES, "resize_nearest": NEAREST_FORMS}

    def __post_init__(self):
        self.check_choices()


@dataclass(frozen=True)
class ResizeToConvTranspose:
    options: ResizeOptions = field(default_factory=ResizeOptions)

    name: ClassVar[str] = "resize"
    description: ClassVar[str] = ("Resize/Upsample -> depthwise ConvTranspose with interpolation weights "
                                  "(nearest: copies + DepthToSpace; --resize-mode matmul: MatMuls)")
    op_types: ClassVar[tuple] = ("Resize", "Upsample")
    mac_bound: ClassVar[Optional[float]] = None
    Options: ClassVar[type] = ResizeOptions

    @property
    def forms(self) -> tuple:
        return FORMS + pointwise.FORMS + quantized.FORMS

    def preferred(self) -> tuple[str, ...]:
        return ((self.options.mode,) if self.options.mode in ("matmul", "pointwise") else ()) + \
            ((self.options.nearest,) if self.options.nearest else ())

    def preferred_for(self, match) -> tuple[str, ...]:
        """preferred(), where resize_nearest asks for its form for a nearest
        Resize only (a linear one keeps the cost model's pick)."""
        nearest = match.params.spec.interp.mode == "nearest"
        return tuple(f for f in self.preferred() if f not in NEAREST_FORMS or nearest)

    @property
    def estimates(self) -> bool:
        """Whether the chooser's cost model may place forms (a linear
        Resize's deconv or matmul): not when the user asked for the deconv
        order outright (resize_mode=deconv)."""
        return self.options.mode != "deconv"

    def candidate(self, node: onnx.NodeProto, graph: GraphView) -> bool:
        return node.op_type in self.op_types and node.domain in ("", "ai.onnx")

    def structure(self, match: Match, name_of) -> Optional[ResizeParams]:
        """What, beside the matched values' types, the forms' choice reads
        (core/plans.py): the params, which hold no name.  A quantized match:
        None (planned on its own)."""
        return match.params if type(match.params) is ResizeParams else None

    def match(self, node: onnx.NodeProto, graph: GraphView) -> Match | Skip:
        where = f"{node.op_type} '{graph.label(node)}'"
        params = node_params(node, graph)
        if isinstance(params, Skip):
            return Skip(f"{where}: {params.reason}", params.code)
        spec, fixed = params.spec, params.fixed
        notes = (f"mode={spec.interp.mode}", f"coordinates={spec.interp.coordinate_mode}")
        match = Match(node, params, notes=notes)
        # No form at all, the opt-in ones included: an attribute (or a size)
        # no lowering expresses.  Where only an opt-in form applies, the
        # driver decides (a target may need it; without one it says so).
        why = self._no_form(match, graph)
        if why is not None:
            return Skip(f"{where}: no lowering form applies ({why})",
                        fixed.code if fixed else Code.UNSUPPORTED_ATTRIBUTE)
        return match

    def _no_form(self, match: Match, graph: GraphView) -> Optional[str]:
        """Why no form applies, form by form; None at the first that does
        (the forms after it are not asked: the matmul form's applies reads
        the interpolation matrices)."""
        reasons = []
        for f in self.forms:
            reason = f.applies(match, graph)
            if reason is None:
                return None
            reasons.append(f"{f.name}: {reason}")
        return "; ".join(reasons)


def node_params(node: onnx.NodeProto, graph: GraphView) -> "ResizeParams | Skip":
    """The node's params, or why it is not lowered (a reason without the
    node); read once per view for the nodes of the same kind."""
    return read_once(graph, _read_params, _params_key(node, graph), node)


def _params_key(node: onnx.NodeProto, graph: GraphView) -> Optional[tuple]:
    """All that _read_params reads of the node: its operator, attributes
    and parameter inputs (scales, sizes, roi: a name stands for one value
    in a view), and the types of its input and output; None where x's rank
    is unknown (the reason names x)."""
    x = graph.shape(node.input[0])
    if x is None:
        return None
    return (attribute_key(node), tuple(node.input[1:]), x, graph.dtype(node.input[0]),
            graph.shape(node.output[0]))


def _read_params(node: onnx.NodeProto, graph: GraphView) -> "ResizeParams | Skip":
    spec = read_resize(node, graph)
    if isinstance(spec, Unreadable):
        return Skip(spec.reason, spec.code)
    dtype = graph.dtype(node.input[0])
    problem = _type_problem(graph, node.input[0])
    if problem:
        return problem
    channels = spec.axes[1].n_in if len(spec.axes) > 1 else None
    fixed = fixed_kernel_problem(spec, channels)
    kernels = () if fixed else tuple(
        identity_kernel() if ax.identity else resize_kernel(spec.interp, ax.factor)
        for ax in spec.axes[2:])
    return ResizeParams(spec, helper.tensor_dtype_to_np_dtype(dtype), graph.opset(), channels, kernels, fixed)


def fixed_kernel_problem(spec: ResizeSpec, channels: Optional[int]) -> Optional[Skip]:
    """Why this Resize is not a fixed-kernel deconvolution (the shuffle and
    deconv forms), as a reason without the node and a code; or None."""
    interp = spec.interp
    if interp.coordinate_mode in ("align_corners", "tf_crop_and_resize"):
        grid = ("t * (n - 1) / (m - 1)" if interp.coordinate_mode == "align_corners"
                else "a crop window")
        return Skip(f"coordinate_transformation_mode {interp.coordinate_mode} samples {grid}, a grid that "
                    "is not periodic in the output index, so no fixed kernel reproduces it",
                    Code.UNSUPPORTED_ATTRIBUTE)
    if interp.exclude_outside and interp.mode != "linear":
        return Skip(f"{interp.mode} with exclude_outside=1 renormalises the weights near the borders, so they "
                    "differ from the interior's and no fixed kernel with edge padding reproduces them",
                    Code.UNSUPPORTED_ATTRIBUTE)
    if len(spec.axes) < 3 or any(not ax.identity for ax in spec.axes[:2]):
        scales = [float(ax.scale) for ax in spec.axes]
        return Skip(f"it resizes the batch or channel axis (scales {scales}) or its input has no "
                    "[N, C, spatial...] layout; a depthwise ConvTranspose resizes spatial axes only",
                    Code.UNSUPPORTED_ATTRIBUTE)
    for ax in spec.resized:
        if ax.scale < 1:
            return Skip(f"it downsamples axis {ax.axis} (scale {float(ax.scale):g}); a transposed "
                        "convolution only upsamples", Code.UNSUPPORTED_ATTRIBUTE)
        if ax.factor is None:
            return Skip(f"scale {float(ax.scale):g} on axis {ax.axis} is not an integer, so the output "
                        "phases do not repeat with a fixed kernel", Code.UNSUPPORTED_ATTRIBUTE)
        if ax.factor > MAX_FACTOR:
            return Skip(f"upsampling factor {ax.factor} has more phases than the {MAX_FACTOR} a fixed-kernel form "
                        f"builds (axis {ax.axis})", Code.TOO_LARGE)
    if not isinstance(channels, int):
        return Skip("the channel count is not static, and a depthwise ConvTranspose needs it (group = C); "
                    "give the input a static channel dimension", Code.DYNAMIC_SHAPE)
    return None

