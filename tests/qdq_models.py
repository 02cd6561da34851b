"""QDQ (int8) test models: small float models quantized with onnxruntime's
quantize_static (QDQ format, per-channel int8 weights, uint8 or int8
activations, a few random calibration batches), and op counts after
onnxruntime's own QDQ fusion."""
from __future__ import annotations

import os
import tempfile
from collections import Counter
from functools import lru_cache

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT = TensorProto.FLOAT
# Ops that compute in float after onnxruntime's fusion (a QDQ group it fuses becomes QLinearConv).
FLOAT_COMPUTE = ("Conv", "ConvTranspose", "FusedConv", "MatMul", "Gemm")


def _model(nodes, x_shape, inits, opset=17) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", FLOAT, list(x_shape))],
                          [helper.make_tensor_value_info("y", FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _init(rng, name, shape, scale=0.2):
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def decoder_block(cin=8, cout=4, n=8, seed=0) -> onnx.ModelProto:
    """ConvTranspose 4x4 / stride 2 / pads 1 + Relu, Resize nearest x2, Conv 3x3."""
    rng = np.random.default_rng(seed)
    inits = [_init(rng, "w", (cin, cout, 4, 4)), _init(rng, "b", (cout,), 0.1), _init(rng, "w2", (cout, cout, 3, 3)),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    nodes = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["t"], name="up", strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["t"], ["r"], name="relu"),
             helper.make_node("Resize", ["r", "", "scales"], ["z"], name="resize", mode="nearest"),
             helper.make_node("Conv", ["z", "w2"], ["y"], name="conv", pads=[1, 1, 1, 1])]
    return _model(nodes, (1, cin, n, n), inits)


def convt_alone(cin=8, cout=4, n=6, kernel=(4, 4), strides=(2, 2), pads=(1, 1, 1, 1), group=1, bias=True,
                seed=0) -> onnx.ModelProto:
    """One ConvTranspose (the float model to quantize)."""
    rng = np.random.default_rng(seed)
    inits = [_init(rng, "w", (cin, cout // group, *kernel))]
    names = ["x", "w"]
    if bias:
        inits.append(_init(rng, "b", (cout,), 0.1))
        names.append("b")
    nodes = [helper.make_node("ConvTranspose", names, ["y"], name="up", strides=list(strides), pads=list(pads),
                              group=group)]
    return _model(nodes, (1, cin, n, n), inits)


def dilated_block(c=4, n=12, rate=2, stride=1, seed=0) -> onnx.ModelProto:
    """Conv 3x3 with dilation `rate`, Relu."""
    rng = np.random.default_rng(seed)
    inits = [_init(rng, "w", (c, c, 3, 3)), _init(rng, "b", (c,), 0.1)]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["t"], name="aspp", dilations=[rate, rate],
                              pads=[rate] * 4, strides=[stride, stride]),
             helper.make_node("Relu", ["t"], ["y"], name="relu")]
    return _model(nodes, (1, c, n, n), inits)


def dilated_geometry(x_shape, w_shape, seed=0, **attrs) -> onnx.ModelProto:
    """A dilated Conv 'aspp' of any geometry (attrs: dilations, strides, pads), Relu."""
    rng = np.random.default_rng(seed)
    inits = [_init(rng, "w", w_shape), _init(rng, "b", (w_shape[0],), 0.1)]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["t"], name="aspp", **attrs),
             helper.make_node("Relu", ["t"], ["y"], name="relu")]
    return _model(nodes, x_shape, inits)


# name: (x shape, w shape, Conv attributes) of dilated_geometry models
DILATED_GEOMETRIES = {
    "dilated_1d": ((1, 4, 20), (4, 4, 3), dict(dilations=[3], pads=[2, 4])),
    "dilated_1d_s2": ((1, 4, 21), (4, 4, 3), dict(dilations=[2], strides=[2], pads=[2, 1])),
    "dilated_asym": ((1, 4, 11, 13), (6, 4, 3, 3), dict(dilations=[2, 3], pads=[1, 2, 3, 0])),
    "dilated_unaligned": ((1, 4, 13, 13), (4, 4, 3, 3), dict(dilations=[3, 3], strides=[2, 2], pads=[3, 3, 3, 3])),
}
# grouped and depthwise dilated Convs (the im2col form's pixels variant: DepthToSpace, the original Conv)
DILATED_GROUPED_GEOMETRIES = {
    "dilated_depthwise": ((1, 4, 12, 12), (4, 1, 3, 3), dict(dilations=[2, 2], group=4, pads=[2, 2, 2, 2])),
    "dilated_depthwise_k2": ((1, 4, 12, 11), (4, 1, 2, 2), dict(dilations=[3, 2], group=4, pads=[1, 2, 2, 1])),
    "dilated_depthwise_s2": ((1, 4, 13, 13), (4, 1, 3, 3), dict(dilations=[3, 3], strides=[2, 2], group=4,
                                                               pads=[3, 3, 3, 3])),
    "dilated_depthwise_k2_s2": ((1, 4, 13, 13), (4, 1, 2, 2), dict(dilations=[3, 3], strides=[2, 2], group=4,
                                                                  pads=[2, 2, 2, 2])),
    "dilated_grouped": ((1, 4, 11, 13), (6, 2, 3, 3), dict(dilations=[2, 3], group=2, pads=[1, 2, 3, 0])),
    # the first tap of each axis reads padding only: dropped, a 2x2 kernel left (the int8 weight sliced)
    "dilated_depthwise_dropped": ((1, 4, 8, 8), (4, 1, 3, 3), dict(dilations=[4, 4], group=4, pads=[8, 8, 0, 0])),
}


def resize_block(mode="nearest", c=4, n=6, seed=0, factor=2, **attrs) -> onnx.ModelProto:
    """Conv 1x1, Resize x`factor` (`mode`, other Resize `attrs`), Conv 1x1: the Resize between Q/DQ."""
    rng = np.random.default_rng(seed)
    inits = [_init(rng, "w1", (c, c, 1, 1)), _init(rng, "w2", (c, c, 1, 1)),
             numpy_helper.from_array(np.array([1, 1, factor, factor], np.float32), "scales")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="c1"),
             helper.make_node("Resize", ["a", "", "scales"], ["r"], name="resize", mode=mode, **attrs),
             helper.make_node("Conv", ["r", "w2"], ["y"], name="c2")]
    return _model(nodes, (1, c, n, n), inits)


def resize_then_conv3(seed=0) -> onnx.ModelProto:
    """Conv 1x1, bilinear Resize x2, Conv 3x3: the rounding ties a bilinear
    Resize leaves (outputs exactly half-way between two steps) are carried
    on by the 3x3 Conv, so the whole model's quantized output moves by more
    than ties allow when they are broken the other way -- the original's too."""
    rng = np.random.default_rng(seed)
    inits = [_init(rng, "w1", (4, 4, 1, 1)), _init(rng, "w2", (4, 4, 3, 3)),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="c1"),
             helper.make_node("Resize", ["a", "", "scales"], ["r"], name="resize", mode="linear"),
             helper.make_node("Conv", ["r", "w2"], ["y"], name="c2", pads=[1] * 4)]
    return _model(nodes, (1, 4, 6, 6), inits)


def quantize(model: onnx.ModelProto, activations: str = "uint8", seed: int = 1,
             per_channel: bool = True, exclude: tuple = ()) -> onnx.ModelProto:
    """quantize_static in QDQ format: int8 weights per channel (or per tensor),
    `activations` uint8 (asymmetric) or int8 (symmetric), calibrated on
    random batches."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    rng = np.random.default_rng(seed)
    batches = [{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(6)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            return next(self.it, None)

    act = QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8
    extra = {"ActivationSymmetric": activations == "int8"}
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "f.onnx"), os.path.join(tmp, "q.onnx")
        onnx.save(model, src)
        quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=act, weight_type=QuantType.QInt8, extra_options=extra,
                        nodes_to_exclude=list(exclude))
        return onnx.load(dst)


@lru_cache(maxsize=None)
def _quantized_bytes(name: str, activations: str, opset: int = 17, per_channel: bool = True) -> bytes:
    builders = {"decoder": decoder_block, "dilated": dilated_block, "dilated_tiny": lambda: dilated_block(n=6, rate=6),
                "dilated_s2": lambda: dilated_block(n=13, rate=2, stride=2), "resize_nearest": lambda: resize_block("nearest"),
                "resize_linear": lambda: resize_block("linear"), "convt": convt_alone,
                "resize_linear_x3": lambda: resize_block("linear", factor=3),
                "resize_linear_x4": lambda: resize_block("linear", n=4, factor=4),
                "resize_linear_x8": lambda: resize_block("linear", n=3, factor=8),
                "resize_linear_x10": lambda: resize_block("linear", n=2, factor=10),
                "resize_cubic": lambda: resize_block("cubic"),
                "convt_depthwise": lambda: convt_alone(cin=8, cout=8, group=8),
                # stride 1: the Conv's output is the replacement's (no shuffle, no crop)
                "convt_s1": lambda: convt_alone(kernel=(3, 3), strides=(1, 1), pads=(1, 1, 1, 1)),
                # kernel = stride: a 1x1 Conv and the shuffle, no crop
                "convt_k2": lambda: convt_alone(kernel=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0)),
                # unequal strides: the Reshape/Transpose shuffle (onnxruntime's quantizer fails on a grouped one)
                "convt_s23": lambda: convt_alone(strides=(2, 3), pads=(1, 0, 2, 1)),
                "resize_nearest_x3": lambda: resize_block("nearest", factor=3),
                # the last output reads past the input (ceil): the edge-padded copies, Slices per shift
                "resize_nearest_edge": lambda: resize_block("nearest", coordinate_transformation_mode="asymmetric",
                                                            nearest_mode="ceil"),
                "resize_then_conv3": resize_then_conv3,
                **{k: (lambda g=g: dilated_geometry(g[0], g[1], **g[2]))
                   for k, g in {**DILATED_GEOMETRIES, **DILATED_GROUPED_GEOMETRIES}.items()}}
    model = builders[name]()
    model.opset_import[0].version = opset
    resize_for_opset(model)
    return spelled_for_opset(quantize(model, activations, per_channel=per_channel)).SerializeToString()


def quantized(name: str, activations: str = "uint8", opset: int = 17, per_channel: bool = True) -> onnx.ModelProto:
    """A cached quantized test model (decoder, dilated, dilated_tiny, dilated_s2, DILATED_GEOMETRIES,
    DILATED_GROUPED_GEOMETRIES, resize_nearest,
    resize_linear, resize_linear_x3, resize_linear_x4, resize_linear_x8, resize_linear_x10, resize_cubic, convt),
    the float model built at `opset` and quantized there (spelled_for_opset), its weights
    quantized per output channel or, with per_channel=False, per tensor."""
    return onnx.load_from_string(_quantized_bytes(name, activations, opset, per_channel))


def resize_for_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    """The builders' Resize nodes (X, "", scales: the opset-13 signature)
    spelled for the model's opset: Resize-10 takes (X, scales) and only the
    `mode` attribute, nearest or linear (ValueError for any other: the model
    has no opset-10 spelling); Resize-11 requires its roi input, given as an
    empty tensor (it is read only by tf_crop_and_resize)."""
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset >= 13:
        return model
    for node in model.graph.node:
        if node.op_type != "Resize":
            continue
        if opset == 10:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if set(attrs) - {"mode"} or attrs.get("mode", b"nearest") not in (b"nearest", b"linear"):
                raise ValueError(f"Resize-10 has no spelling of {attrs}")
            node.input[:] = [node.input[0], node.input[2]]
        else:
            node.input[1] = "roi"
            if not any(t.name == "roi" for t in model.graph.initializer):
                model.graph.initializer.append(numpy_helper.from_array(np.zeros(0, np.float32), "roi"))
    return model


def spelled_for_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    """The QDQ forms of the model's opset, written out (quantize_static writes
    none of them; the values stay the same):
      opset 19: QuantizeLinear `saturate` = 1 (its default; it matters for float8 only);
      opset 21: `block_size` = 0 (not blocked) on every QuantizeLinear / DequantizeLinear,
        the all-zero zero points of constant DequantizeLinears dropped (symmetric weights and
        int32 biases without a zero point: the type is the integer input's), and QuantizeLinear
        `output_dtype` = its zero point's type where that is uint8.  Not where it is int8:
        onnxruntime 1.32's fusion (ORT_ENABLE_EXTENDED) turns int8 zero points into uint8
        ones and keeps output_dtype INT8, then refuses the model it made ("output_dtype INT8
        does not match y_zero_point type UINT8"), the original already."""
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    inits = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if opset >= 19 and node.op_type == "QuantizeLinear":
            node.attribute.append(helper.make_attribute("saturate", 1))
        if opset < 21:
            continue
        node.attribute.append(helper.make_attribute("block_size", 0))
        zp = inits.get(node.input[2]) if len(node.input) > 2 else None
        if node.op_type == "QuantizeLinear" and zp is not None and zp.data_type == TensorProto.UINT8:
            node.attribute.append(helper.make_attribute("output_dtype", zp.data_type))
        if node.op_type == "DequantizeLinear" and node.input[0] in inits and zp is not None \
                and not numpy_helper.to_array(zp).any():
            del node.input[2:]
    used = {i for n in model.graph.node for i in n.input}
    kept = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return model


def _weight_dequantize(model: onnx.ModelProto, op_type: str) -> onnx.NodeProto:
    producers = {o: n for n in model.graph.node for o in n.output}
    return producers[next(n for n in model.graph.node if n.op_type == op_type).input[1]]


def blocked_weight(model: onnx.ModelProto, op_type: str = "ConvTranspose", blocks: int = 2) -> onnx.ModelProto:
    """The first `op_type`'s per-channel weight DequantizeLinear made blocked
    (opset 21 `block_size`: `blocks` blocks along the weight's other channel
    axis) with the same values: every block of a channel has the channel's
    scale, so the dequantized weight is unchanged."""
    dq = _weight_dequantize(model, op_type)
    inits = {t.name: t for t in model.graph.initializer}
    w = numpy_helper.to_array(inits[dq.input[0]])
    channel = next(a.i for a in dq.attribute if a.name == "axis")
    axis = 1 - channel                       # ConvTranspose: scales on axis 1, blocks on 0; Conv the other way
    shape = [1] * w.ndim
    shape[channel] = -1
    full = list(w.shape)
    full[axis] = blocks
    for name in dq.input[1:3]:
        v = numpy_helper.to_array(inits[name]).reshape(shape)
        inits[name].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(np.broadcast_to(v, full)), name))
    del dq.attribute[:]
    dq.attribute.extend([helper.make_attribute("axis", axis), helper.make_attribute("block_size", w.shape[axis] // blocks)])
    return model


def uint4_weight(model: onnx.ModelProto, op_type: str = "ConvTranspose") -> onnx.ModelProto:
    return int4_weight(model, op_type, unsigned=True)


def int4_weight(model: onnx.ModelProto, op_type: str = "ConvTranspose", unsigned: bool = False) -> onnx.ModelProto:
    """The first `op_type`'s int8 weight requantized to int4 (opset 21; uint4
    with zero point 8 when `unsigned`): the integers divided by 16 and
    rounded, the scales times 16 (a new model: its weights are coarser)."""
    dq = _weight_dequantize(model, op_type)
    inits = {t.name: t for t in model.graph.initializer}
    kind = helper.tensor_dtype_to_np_dtype(TensorProto.UINT4 if unsigned else TensorProto.INT4)
    shift = 8 if unsigned else 0
    w = numpy_helper.to_array(inits[dq.input[0]]).astype(np.int32)
    q = np.clip(np.round(w / 16) + shift, shift - 8, shift + 7)
    inits[dq.input[0]].CopyFrom(numpy_helper.from_array(q.astype(kind), dq.input[0]))
    scale = numpy_helper.to_array(inits[dq.input[1]])
    inits[dq.input[1]].CopyFrom(numpy_helper.from_array((scale * 16).astype(np.float32), dq.input[1]))
    name = dq.input[2] if len(dq.input) > 2 and dq.input[2] else dq.input[0] + "_zero_point"
    kept = [t for t in model.graph.initializer if t.name != name]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept + [numpy_helper.from_array(np.full(scale.shape, shift).astype(kind), name)])
    del dq.input[2:]
    dq.input.append(name)
    return model


def as_float16(model: onnx.ModelProto) -> onnx.ModelProto:
    """The QDQ model (opset 19 or later: DequantizeLinear-13 outputs float only) computing in float16: the
    Q/DQ scales, a float weight or bias, and the graph's float inputs and outputs
    made float16, the integers unchanged (a float16 model quantized as
    onnxruntime's quantizer quantizes one: DequantizeLinear outputs float16,
    its scale's type)."""
    real = {n.input[1] for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")}
    real |= {i for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose") for i in n.input[1:]}
    for t in model.graph.initializer:
        if t.data_type == TensorProto.FLOAT and t.name in real:   # a Resize's scales stay float
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
    for vi in [*model.graph.input, *model.graph.output]:
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            vi.type.tensor_type.elem_type = TensorProto.FLOAT16
    del model.graph.value_info[:]
    return model


def fused_counts(model: onnx.ModelProto) -> Counter:
    """Op counts of the graph onnxruntime runs after its QDQ fusion
    (ORT_ENABLE_EXTENDED, saved with optimized_model_filepath)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = os.path.join(tmp, "opt.onnx")
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        return Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)


def float_compute(counts: Counter) -> int:
    return sum(counts.get(op, 0) for op in FLOAT_COMPUTE)


def fake_quantized(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with every int8 weight initializer read by a DequantizeLinear
    turned into float weights behind QuantizeLinear -> DequantizeLinear (the
    shape quantization-aware-training exports write): the same integers."""
    inits = {t.name: t for t in model.graph.initializer}
    for node in list(model.graph.node):
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        q = numpy_helper.to_array(inits[node.input[0]])
        if q.dtype != np.int8:
            continue
        scale = numpy_helper.to_array(inits[node.input[1]])
        zp = (numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2]
              else np.zeros_like(scale, np.int8))
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * q.ndim
        if scale.ndim:
            shape[axis] = -1
        w = ((q.astype(np.float32) - zp.reshape(shape)) * scale.reshape(shape)).astype(np.float32)
        model.graph.initializer.append(numpy_helper.from_array(w, node.input[0] + "_float"))
        fq = helper.make_node("QuantizeLinear", [node.input[0] + "_float", *node.input[1:]], [node.input[0] + "_fq"],
                              name=node.name + "_fake_quant")
        fq.attribute.extend(node.attribute)
        model.graph.node.insert(list(model.graph.node).index(node), fq)
        node.input[0] = node.input[0] + "_fq"
    used = {i for n in model.graph.node for i in n.input}
    kept = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return model


@lru_cache(maxsize=None)
def _float8_bytes(name: str) -> bytes:
    """quantize_static at opset 19 with float8 e4m3fn activations and weights
    (per tensor; onnxruntime calibrates float8 only with its Distribution
    method, and keeps the bias float)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    model = {"convt": convt_alone, "dilated": dilated_block, "resize_nearest": lambda: resize_block("nearest"),
             "resize_linear": lambda: resize_block("linear")}[name]()
    model.opset_import[0].version = 19
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    rng = np.random.default_rng(1)
    batches = iter([{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(6)])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "f.onnx"), os.path.join(tmp, "q.onnx")
        onnx.save(model, src)
        quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=False,
                        activation_type=QuantType.QFLOAT8E4M3FN, weight_type=QuantType.QFLOAT8E4M3FN,
                        calibrate_method=CalibrationMethod.Distribution)
        return onnx.load(dst).SerializeToString()


def quantized_float8(name: str) -> onnx.ModelProto:
    """A cached float8 (e4m3fn) QDQ test model: convt, dilated, resize_nearest or resize_linear."""
    return onnx.load_from_string(_float8_bytes(name))


def assert_movement_on_grid(model: onnx.ModelProto, ops=("Pad", "Slice", "Concat", "DepthToSpace")) -> None:
    """Every data-movement node of `ops` reads a DequantizeLinear and feeds
    only QuantizeLinears of that same scale and zero point."""
    producer = {o: n for n in model.graph.node for o in n.output}
    for n in model.graph.node:
        if n.op_type in ops:
            dq = producer[n.input[0]]
            assert dq.op_type == "DequantizeLinear", n.name
            readers = [c for c in model.graph.node if n.output[0] in c.input]
            assert readers and all(c.op_type == "QuantizeLinear" and c.input[1:] == dq.input[1:] for c in readers)
