"""ConvTranspose in a QDQ group, lowered without leaving the integers (or the float8 values).

Before:
    DQ(x) -> ConvTranspose(DQ(w int8, axis 1), DQ(b int32)) -> Q(y) -> ...

After (single-conv; phase-convs alike, one group per phase Conv):
    DQ(x) -> Conv(DQ(w' int8, axis 0), DQ(b' int32)) -> Q(y) -> DQ(y) -> DepthToSpace -> Q(y) -> ...

The integer kernel w' holds the original int8 values, moved exactly as the
float forms move the float taps (geometry.py: conv_weight, phase_kernel,
shared_kernel), missing taps filled with the weight's zero point; each new
output channel takes the scale, zero point and int32 bias of the channel it
computes (axis-1 scales of the ConvTranspose become axis-0 scales, repeated
per phase in the pixel shuffle's channel order).  To reuse the float forms'
builders unchanged, they are run on *index codes*: weight value 1 + flat
index into w, bias value 1 + output channel; the built kernels and biases
then say exactly which int8 value and which channel each entry is.

The same moves serve uint8 and float8 (opset 19) weights; a float bias
constant (kept float by TensorRT-style exports and onnxruntime's float8
quantizer) is read per channel like the int32 one.

Every data-movement op after the Convs sits between Q/DQ with y's scale and
zero point, every one before them with x's (core/qdq.py): no integer changes,
so y is the original's except where float summation order breaks a rounding tie.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from onnx import numpy_helper

from convrewrite.core import qdq
from convrewrite.core.graph import GraphView

from .build import _crop, _phase_convs, _single_conv
from .forms import Deconv, Emit, PhaseConvs, SingleConv, _Costing, _uses_depth_to_space, _variants
from .geometry import conv_weight


@dataclass(frozen=True)
class QDeconv(Deconv):
    """A Deconv in a QDQ group: the integer tensors and their parameters."""

    x_grid: tuple                  # (scale, zero point) names of DQ(x)
    y_grid: tuple                  # ... of the Q after the ConvTranspose
    y_output: str                  # that Q's output
    wq: str                        # the int8 weight initializer [Cin, Cout/g, k...]
    w_scale: tuple                 # per Conv output channel (Cout)
    w_zero_point: tuple
    bq: str                        # the int32 bias initializer, or "" (none, or a float bias)
    b_scale: tuple                 # per output channel (empty without an int32 bias)
    b_float: str = ""              # a constant float bias read directly (kept float by some exporters)
    # the model's float type (x's): the new scales' and a float bias's, since a DequantizeLinear
    # outputs its scale's type and the Conv's T binds it to x's (float16 in a float16 model)
    real: str = "float32"


def read_group(node, graph: GraphView) -> "dict | str":
    """The QDQ group around `node`: a dict of QDeconv's own fields, or why it is not one."""
    x_dq = graph.producer(node.input[0])
    x_grid = qdq.grid_of(x_dq) if x_dq is not None and x_dq.op_type == qdq.DEQUANTIZE else None
    if x_grid is None:
        return "its input does not come from a per-tensor DequantizeLinear with a zero point"
    consumers = graph.consumers(node.output[0])
    if len(consumers) != 1 or consumers[0].op_type != qdq.QUANTIZE or node.output[0] in graph.graph_outputs:
        return "its output does not go into one QuantizeLinear alone"
    q = consumers[0]
    y_grid = qdq.grid_of(q)
    yp = qdq.qparams(q, graph)
    if y_grid is None or isinstance(yp, str) or not yp.per_tensor:
        return "the QuantizeLinear after it is not per-tensor with a constant scale and zero point"
    w_dq = graph.producer(node.input[1])
    if w_dq is None or w_dq.op_type != qdq.DEQUANTIZE or not graph.is_constant(w_dq.input[0]):
        return "its weight is not DequantizeLinear of integer constants (an initializer, or QuantizeLinear of one)"
    wp = qdq.qparams(w_dq, graph)
    if isinstance(wp, str):
        return wp
    wq = graph.constant(w_dq.input[0])
    if wq is None:
        return "its weight is not an integer initializer"
    if wp.dtype.kind not in "iu" and not qdq.is_float8(wp.dtype):   # int4 / uint4 (opset 21): sub-byte
        return f"its weight is {wp.dtype.name}: the quantized forms rearrange weights of 8 bits and more"
    group = int(next((a.i for a in node.attribute if a.name == "group"), 1))
    cout_g = wq.shape[1]
    if wp.per_tensor:
        w_scale, w_zp = np.full(cout_g * group, float(wp.scale.reshape(()))), np.full(cout_g * group, float(wp.zero_point.reshape(())))
    elif wp.axis in (1, 1 - wq.ndim):
        w_scale, w_zp = np.tile(wp.scale, group), np.tile(np.broadcast_to(wp.zero_point, wp.scale.shape), group)
    else:
        return f"its weight is quantized along axis {wp.axis}, not per output channel (axis 1)"
    bias = _read_bias(node, graph, cout_g * group)
    if isinstance(bias, str):
        return bias
    return dict(x_grid=x_grid, y_grid=y_grid, y_output=q.output[0], wq=w_dq.input[0],
                real=qdq.real_type(graph, node.input[0]).name,
                w_scale=tuple(float(s) for s in w_scale), w_zero_point=tuple(float(z) for z in w_zp), **bias), q


def _read_bias(node, graph: GraphView, cout: int) -> "dict | str":
    """The bias: none, DequantizeLinear of an int32 initializer (zero point
    0), or a float constant (exporters that keep the bias float: float8
    QDQ from onnxruntime's quantizer, TensorRT-style QDQ)."""
    if len(node.input) < 3 or not node.input[2]:
        return dict(bq="", b_scale=())
    b_dq = graph.producer(node.input[2])
    if b_dq is not None and b_dq.op_type == qdq.DEQUANTIZE:
        bp = qdq.qparams(b_dq, graph)
        if isinstance(bp, str) or not graph.is_initializer(b_dq.input[0]) or bp.dtype != np.int32 \
                or np.any(bp.zero_point != 0):
            return "its bias is not DequantizeLinear of an int32 initializer with zero point 0"
        return dict(bq=b_dq.input[0], b_scale=tuple(float(s) for s in np.broadcast_to(bp.scale.reshape(-1), (cout,))))
    value = graph.constant(node.input[2])
    if value is None or np.asarray(value).dtype.kind != "f":
        return "its bias is neither DequantizeLinear of an int32 initializer nor a float constant"
    return dict(bq="", b_scale=(), b_float=node.input[2])


class _Quantized:
    """Mixin: the float form's geometry, built on index codes, then made integer."""

    keeps_quantized = True
    quantized_only = True
    bias_after_variants = False   # the int32 bias stays in the integer Convs

    def applies(self, match, graph):
        d = match.params
        if not isinstance(d, QDeconv):
            return "not a DequantizeLinear -> ConvTranspose -> QuantizeLinear group"
        if not all(d.split_phases):
            return "some output phase has no tap (a bias-only phase), which the quantized forms do not build yet"
        return super().applies(match, graph)

    def rank_note(self, match, variant, graph):
        """Below opset 11 a variant whose shuffle opset 11 would make a DepthToSpace says so."""
        d = match.params
        low = replace(self.lowering(d, variant, named=False), depth_to_space=True)
        if qdq.integer_depth_to_space(d.opset) or not _uses_depth_to_space(low, qdq.INTEGER_DEPTH_TO_SPACE_MIN_OPSET):
            return None
        return qdq.reshaped_shuffle_note(d.opset)

    def cost(self, match, variant, graph):
        """The float form's figures, and the nodes the integers add: per Conv
        its weight's DequantizeLinear (and the int32 bias's) and a Q -> DQ pair
        of y's grid after it; a pair after every data-movement node (x's grid
        before the Convs, y's after them); the final QuantizeLinear.  The node
        whose output the final QuantizeLinear reads (the last data-movement
        node, or the one Conv where nothing follows it) gets no pair.  Q and
        DQ move no bytes (core/cost.py: they compute)."""
        d: QDeconv = match.params
        float_form = super().cost(match, variant, graph)
        moved = _Costing.of(match, graph, self.lowering(d, variant, named=False)).cached_total()
        convs = moved.nodes - moved.moves    # no fillers, zeros or bias Add here: every other node is a Conv
        dequantized = convs * (1 + bool(d.bq))
        return replace(float_form, nodes=float_form.nodes + 2 * (moved.moves + convs - 1) + dequantized + 1)

    def build(self, match, variant, graph, b) -> dict:
        d: QDeconv = match.params
        p = self.lowering(d, variant)
        wq = graph.constant(d.wq)
        codes = conv_weight(np.arange(1, wq.size + 1, dtype=np.float64).reshape(wq.shape), d.group)
        channels = np.arange(1, d.cout + 1, dtype=np.float64)
        x = match.node.input[0]
        y = _single_conv(b, x, codes, channels, p) if p.form == "single-conv" else _phase_convs(b, x, codes, channels, p)
        y = _crop(b, y, p.plans)
        _integer_convs(b, d, wq, graph, y)
        qdq.requantize_movement(b, {x: d.x_grid, **{o: d.y_grid for n in b.nodes if n.op_type == "Conv"
                                                     for o in _after_conv(b, n)}}, keep=(y,))
        b.note(f"quantized: {wq.dtype.name} kernel rearranged exactly, Q/DQ around every op")
        return {d.y_output: b.op(qdq.QUANTIZE, [y, *d.y_grid], "quantize")}


def _after_conv(b, conv) -> list:
    """The DequantizeLinear output that follows a Conv (its Q/DQ pair; none
    where the Conv's output is the replacement's)."""
    q = next((n for n in b.nodes if conv.output[0] in n.input and n.op_type == qdq.QUANTIZE), None)
    if q is None:
        return []
    return [next(n for n in b.nodes if q.output[0] in n.input and n.op_type == qdq.DEQUANTIZE).output[0]]


def _original_channel(index: np.ndarray, shape, group: int) -> np.ndarray:
    """Output channel of flat indices into a ConvTranspose weight [Cin, Cout/g, k...]."""
    cin, cout_g, taps = shape[0], shape[1], int(np.prod(shape[2:]))
    i, j = index // (cout_g * taps), (index // taps) % cout_g
    return (i // (cin // group)) * cout_g + j


def _integer_convs(b, d: QDeconv, wq: np.ndarray, graph, y: str) -> None:
    """Replace each Conv's coded weight and bias by DQ of int8 / int32 tensors,
    and put a Q/DQ with y's grid after it -- unless its output is `y`, the
    value the final QuantizeLinear reads (no shuffle and no crop: a stride-1
    ConvTranspose), where a pair would be read by nothing."""
    inits = {t.name: t for t in b.initializers}
    real = np.dtype(d.real)
    bias_q = graph.constant(d.bq) if d.bq else None
    bias_f = np.asarray(graph.constant(d.b_float), real) if d.b_float else None
    w_scale, w_zp = np.asarray(d.w_scale, real), np.asarray(d.w_zero_point).astype(wq.dtype)
    flat = wq.ravel()
    for conv in [n for n in b.nodes if n.op_type == "Conv"]:
        code = numpy_helper.to_array(inits.pop(conv.input[1])).astype(np.int64)
        ch = numpy_helper.to_array(inits.pop(conv.input[2])).astype(np.int64) - 1
        taken = code > 0
        rows = np.broadcast_to(ch.reshape(-1, *[1] * (code.ndim - 1)), code.shape)
        if np.any(_original_channel(code[taken] - 1, wq.shape, d.group) != rows[taken]):
            raise AssertionError("integer kernel rearrangement: a tap moved to another output channel")
        kernel = flat[np.maximum(code - 1, 0)]
        kernel[~taken] = w_zp[rows][~taken]        # missing taps: the zero point (np.where mixes no float8)
        per_channel = len(set(d.w_scale)) > 1 or len(set(d.w_zero_point)) > 1
        scale = w_scale[ch] if per_channel else w_scale[:1].reshape(())
        zp = w_zp[ch] if per_channel else w_zp[:1].reshape(())
        axis = 0 if per_channel else None
        w = b.op(qdq.DEQUANTIZE, [b.initializer(kernel, "weight_q"), b.initializer(scale, "weight_scale"),
                                  b.initializer(zp, "weight_zero_point")], "weight_dequantize", axis=axis)
        inputs = [conv.input[0], w]
        if bias_f is not None:
            inputs.append(b.initializer(bias_f[ch], "bias"))
        elif bias_q is not None:
            # one scale for every channel stays a scalar: DequantizeLinear before opset 13 takes no
            # axis and no vector scale (torch's opset-11 exports quantized per tensor)
            b_scale = np.asarray(d.b_scale, real)
            bias_per_channel = len(set(d.b_scale)) > 1
            bs = b_scale[ch] if bias_per_channel else b_scale[:1].reshape(())
            inputs.append(b.op(qdq.DEQUANTIZE, [b.initializer(bias_q[ch].astype(np.int32), "bias_q"),
                                                 b.initializer(bs, "bias_scale")], "bias_dequantize",
                               axis=0 if bias_per_channel else None))
        dq_nodes = b.nodes[-2 if bias_q is not None else -1:]
        del b.nodes[-len(dq_nodes):]
        at = b.nodes.index(conv)
        b.nodes[at:at] = dq_nodes
        del conv.input[:]
        conv.input.extend(inputs)
        if conv.output[0] != y:
            qdq.insert_qdq(b, conv.output[0], d.y_grid, conv.output[0].rsplit("/", 1)[-1])
    b.initializers[:] = [t for t in b.initializers if t.name not in _dropped(b)]


def _dropped(b) -> set:
    used = {i for n in b.nodes for i in n.input}
    return {t.name for t in b.initializers if t.name not in used}


def _fusable(emits: list, low, opset: int) -> list:
    """The variants onnxruntime can run once it fuses the QDQ groups: below
    opset 11 none whose pixel shuffle is a DepthToSpace, which it fuses into
    one of the integers and has no kernel for there (core/qdq.py
    `integer_depth_to_space`); each such variant's Reshape/Transpose twin
    (the same values, moved by kernels that exist) stays."""
    if qdq.integer_depth_to_space(opset):
        return list(emits)
    return [e for e in emits if not _uses_depth_to_space(replace(low, layout=e.layout, depth_to_space=e.depth_to_space),
                                                         opset)]


class QuantizedSingleConv(_Quantized, SingleConv):
    def variants(self, match, graph):
        # a grouped Conv's CRD channels may also go into a DCR DepthToSpace through a Gather: for
        # targets with DCR only (tflite), where phase-convs' Concat would keep onnxruntime from
        # fusing the groups with int8 activations
        low = self.lowering(match.params, Emit())
        return _fusable(_variants(low, match.params.opset, gathered=True), low, match.params.opset)

    def favoured(self, match, graph):
        # phase-convs joins its phases with Concat, which onnxruntime has no int8 kernel for with int8
        # activations: its Convs would run in float there
        return "quantized: one QDQ Conv and no Concat, which every integer runtime fuses"


class QuantizedPhaseConvs(_Quantized, PhaseConvs):
    def variants(self, match, graph):
        low = self.lowering(match.params, Emit(), named=False)
        return _fusable(super().variants(match, graph), low, match.params.opset)


FORMS = (QuantizedSingleConv(), QuantizedPhaseConvs())
