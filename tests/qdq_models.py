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


def resize_block(mode="nearest", c=4, n=6, seed=0, factor=2) -> onnx.ModelProto:
    """Conv 1x1, Resize x`factor` (`mode`), Conv 1x1: the Resize between Q/DQ."""
    rng = np.random.default_rng(seed)
    inits = [_init(rng, "w1", (c, c, 1, 1)), _init(rng, "w2", (c, c, 1, 1)),
             numpy_helper.from_array(np.array([1, 1, factor, factor], np.float32), "scales")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="c1"),
             helper.make_node("Resize", ["a", "", "scales"], ["r"], name="resize", mode=mode),
             helper.make_node("Conv", ["r", "w2"], ["y"], name="c2")]
    return _model(nodes, (1, c, n, n), inits)


def quantize(model: onnx.ModelProto, activations: str = "uint8", seed: int = 1) -> onnx.ModelProto:
    """quantize_static in QDQ format: per-channel int8 weights, `activations`
    uint8 (asymmetric) or int8 (symmetric), calibrated on random batches."""
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
        quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=act, weight_type=QuantType.QInt8, extra_options=extra)
        return onnx.load(dst)


@lru_cache(maxsize=None)
def _quantized_bytes(name: str, activations: str) -> bytes:
    builders = {"decoder": decoder_block, "dilated": dilated_block, "dilated_tiny": lambda: dilated_block(n=6, rate=6),
                "dilated_s2": lambda: dilated_block(n=13, rate=2, stride=2), "resize_nearest": lambda: resize_block("nearest"),
                "resize_linear": lambda: resize_block("linear"), "convt": convt_alone,
                "resize_linear_x3": lambda: resize_block("linear", factor=3),
                "resize_linear_x4": lambda: resize_block("linear", n=4, factor=4),
                "resize_linear_x8": lambda: resize_block("linear", n=3, factor=8),
                "resize_linear_x10": lambda: resize_block("linear", n=2, factor=10),
                "resize_cubic": lambda: resize_block("cubic")}
    return quantize(builders[name](), activations).SerializeToString()


def quantized(name: str, activations: str = "uint8") -> onnx.ModelProto:
    """A cached quantized test model (decoder, dilated, dilated_tiny, dilated_s2, resize_nearest,
    resize_linear, resize_linear_x3, resize_linear_x4, resize_linear_x8, resize_linear_x10, resize_cubic, convt)."""
    return onnx.load_from_string(_quantized_bytes(name, activations))


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
