"""Small models the tests build: one node of each operator the passes
rewrite, with seeded random weights, typed outputs and every attribute
passed through."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT = TensorProto.FLOAT


def with_output_shape(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give the graph outputs the types shape inference finds."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for o in model.graph.output:
        o.type.CopyFrom(types[o.name])
    return model


def convt_model(x_shape, cout_per_group, kernel, dtype=np.float32, bias=True, group=1, opset=17,
                weight="initializer", seed=0, **attrs) -> onnx.ModelProto:
    """One ConvTranspose; weight "initializer", "input" (a graph input) or "constant" (a Constant node)."""
    rng = np.random.default_rng(seed)
    et = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    w = rng.standard_normal((x_shape[1], cout_per_group, *kernel)).astype(dtype)
    inputs, inits, nodes = [helper.make_tensor_value_info("x", et, list(x_shape))], [], []
    if weight == "input":
        inputs.append(helper.make_tensor_value_info("W", et, list(w.shape)))
    elif weight == "constant":
        nodes.append(helper.make_node("Constant", [], ["W"], value=numpy_helper.from_array(w)))
    else:
        inits.append(numpy_helper.from_array(w, "W"))
    names = ["x", "W"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(cout_per_group * group).astype(dtype), "B"))
        names.append("B")
    nodes.append(helper.make_node("ConvTranspose", names, ["y"], name="up", group=group, **attrs))
    out = helper.make_tensor_value_info("y", et, [None] * len(x_shape))
    return helper.make_model(helper.make_graph(nodes, "g", inputs, [out], inits),
                             opset_imports=[helper.make_opsetid("", opset)])


def conv_model(x_shape, w_shape, *, dtype=TensorProto.FLOAT, bias=True, batch=None, opset=17,
               weight_input=False, bias_input=False, seed=0, **attrs) -> onnx.ModelProto:
    """One Conv node; x's batch dim is `batch` (a name makes it symbolic)."""
    rng = np.random.default_rng(seed)
    np_dtype = helper.tensor_dtype_to_np_dtype(dtype)
    w = rng.standard_normal(w_shape).astype(np_dtype)
    inputs = [helper.make_tensor_value_info("x", dtype, [batch or x_shape[0], *x_shape[1:]])]
    inits, names = [], ["x", "W"]
    if weight_input:
        inputs.append(helper.make_tensor_value_info("W", dtype, list(w_shape)))
    else:
        inits.append(numpy_helper.from_array(w, "W"))
    if bias and bias_input:
        inputs.append(helper.make_tensor_value_info("B", dtype, [w_shape[0]]))
        names.append("B")
    elif bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(w_shape[0]).astype(np_dtype), "B"))
        names.append("B")
    node = helper.make_node("Conv", names, ["y"], name="conv", **attrs)
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", dtype, None)], inits)
    return with_output_shape(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))


def resize_model(shape, scales=None, sizes=None, opset=13, dtype=FLOAT, roi=None, constant_node=False,
                 op="Resize", **attrs) -> onnx.ModelProto:
    """x -> Resize/Upsample -> y, with scales / sizes / roi as initializers
    (or Constant nodes), laid out the way the opset wants them."""
    nodes, inits = [], []

    def const(name, value):
        if constant_node:
            nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name)))
        else:
            inits.append(numpy_helper.from_array(value, name))
        return name

    scales_v = None if scales is None else np.asarray(scales, np.float32)
    if op == "Upsample" and opset < 9:
        inputs, attrs = ["x"], {**attrs, "scales": [float(s) for s in scales]}
    elif op == "Upsample" or opset == 10:
        inputs = ["x", const("scales", scales_v)]
    else:
        inputs = ["x", "", "", ""]
        if roi is not None or opset == 11:
            inputs[1] = const("roi", np.asarray([] if roi is None else roi, np.float32))
        if scales is not None or opset == 11:
            inputs[2] = const("scales", np.zeros(0, np.float32) if scales is None else scales_v)
        if sizes is not None:
            inputs[3] = const("sizes", np.asarray(sizes, np.int64))
        while not inputs[-1]:
            inputs.pop()
    nodes.append(helper.make_node(op, inputs, ["y"], name="up", **attrs))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", dtype, shape)],
                              [helper.make_tensor_value_info("y", dtype, None)], inits)
    return with_output_shape(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))


def torchscript_padded_conv_model(mode="reflect", rate=2, size=12, channels=4, seed=0) -> onnx.ModelProto:
    """torch.onnx.export(dynamo=False, opset 17) of Conv2d(3, dilation=rate,
    padding=rate, padding_mode=mode): the pads reach the Pad through the
    chain TorchScript writes (Constant, ConstantOfShape, Concat, Reshape,
    Slice, Transpose, Reshape, Cast), which onnx's shape inference does not
    follow: the Pad's output and the Conv's have unknown spatial sizes."""
    rng = np.random.default_rng(seed)

    def const(out, value):
        return helper.make_node("Constant", [], [out], value=numpy_helper.from_array(np.asarray(value, np.int64)))

    nodes = [const("n", [4]), const("p", [rate] * 4),
             helper.make_node("ConstantOfShape", ["n"], ["z"], value=numpy_helper.from_array(np.array([0], np.int64))),
             helper.make_node("Concat", ["p", "z"], ["pz"], axis=0), const("shape2", [-1, 2]),
             helper.make_node("Reshape", ["pz", "shape2"], ["pairs"]),
             const("ax", [0]), const("st", [-1]), const("en", [-9223372036854775807]), const("step", [-1]),
             helper.make_node("Slice", ["pairs", "st", "en", "ax", "step"], ["rev"]),
             helper.make_node("Transpose", ["rev"], ["cols"], perm=[1, 0]), const("flat", [-1]),
             helper.make_node("Reshape", ["cols", "flat"], ["pads_f"]),
             helper.make_node("Cast", ["pads_f"], ["pads"], to=TensorProto.INT64),
             helper.make_node("Pad", ["x", "pads"], ["padded"], mode=mode),
             helper.make_node("Conv", ["padded", "W", "B"], ["y"], name="conv", kernel_shape=[3, 3],
                              dilations=[rate, rate], pads=[0, 0, 0, 0], strides=[1, 1])]
    inits = [numpy_helper.from_array(rng.standard_normal((channels, channels, 3, 3)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal(channels).astype(np.float32), "B")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, size, size])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def relu_then_custom_op(op: str = "Gelu2", domain: str = "com.example") -> onnx.ModelProto:
    """x -> Relu 'r' -> `domain`.`op` 'mine' -> y: neither onnxruntime nor the
    reference evaluator knows the custom operator, so the model cannot be run."""
    x = helper.make_tensor_value_info("x", FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", FLOAT, [1, 4])
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="r"),
             helper.make_node(op, ["a"], ["y"], name="mine", domain=domain)]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y]),
                             opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)])
