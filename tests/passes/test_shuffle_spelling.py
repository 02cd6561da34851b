"""shuffle-spelling: every float32 DepthToSpace (built by the other passes or
the model's own) spelled one axis at a time without a target; bit-identical,
exactly costed; with a target, or quantized, or float16, left as it is."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from convrewrite import optimize
from convrewrite.core.cost import model_cost
from convrewrite.core.forms import rank
from convrewrite.core.graph import GraphView
from convrewrite.core.lowering import build
from convrewrite.core.rewrite import Match
from convrewrite.core.standalone import replacement_model
from passes import make_passes

from builders import conv_model, convt_model, resize_model, with_output_shape
from helpers import assert_cost_exact, assert_rewrites, forms, op_counts

PER_AXIS = {"DepthToSpace": 0, "Reshape": 4, "Transpose": 2}


def outputs(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def assert_bit_identical(model, new, shape):
    """The respelled model's output equals the original's bit for bit (a permutation)."""
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    assert np.array_equal(outputs(model, x), outputs(new, x))


def d2s_model(c=8, h=12, w=10, block=2, mode="DCR", batch=1, dtype=TensorProto.FLOAT, opset=17):
    node = helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=block, mode=mode)
    x = helper.make_tensor_value_info("x", dtype, [batch, c * block * block, h, w])
    y = helper.make_tensor_value_info("y", dtype, [batch, c, h * block, w * block])
    return helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
@pytest.mark.parametrize("batch", [1, "N"])
@pytest.mark.parametrize("block", [2, 3])
def test_a_depth_to_space_becomes_two_per_axis_steps_bit_identical(mode, batch, block):
    model = d2s_model(block=block, mode=mode, batch=batch)
    new, report = assert_rewrites(model, "shuffle-spelling", PER_AXIS, expect_rewrites=1)
    assert forms(report) == ["per-axis"]
    ranks = {len(n.attribute[0].ints) for n in new.graph.node if n.op_type == "Transpose"}
    assert ranks == {5 if mode == "DCR" else 6}
    for n in (1, 2):
        assert_bit_identical(model, new, [n, 8 * block * block, 12, 10])
        if batch == 1:
            break


@pytest.mark.parametrize("mode,batch", [("DCR", 1), ("CRD", 2), ("DCR", "N")])
def test_the_cost_is_exact(mode, batch):
    model = d2s_model(c=5, h=12, w=7, mode=mode, batch=batch)
    p = make_passes(["shuffle-spelling"])[0]
    graph = GraphView(model)
    match = p.match(model.graph.node[0], graph)
    assert isinstance(match, Match), match
    (option,) = rank(p, match, graph, None, with_variants=True, with_opt_in=True).options
    built = model_cost(replacement_model(build(p, match, option, graph), graph))
    assert_cost_exact(option, built, batch if isinstance(batch, int) else 1)
    assert (option.cost.nodes, option.cost.max_rank) == (6, 5 if mode == "DCR" else 6)


def test_a_convtranspose_without_a_target_keeps_no_depth_to_space():
    """The default run: convtranspose builds Conv + DepthToSpace, shuffle-spelling respells it."""
    model = with_output_shape(convt_model((1, 8, 12, 12), 4, (4, 4), strides=[2, 2], pads=[1, 1, 1, 1]))
    new, report = optimize(model)
    assert op_counts(new)["DepthToSpace"] == 0 and op_counts(new)["Transpose"] == 2
    assert forms(report)[-1] == "per-axis"
    assert report.verification.equivalent is True


def test_with_a_target_the_depth_to_space_stays():
    model = with_output_shape(convt_model((1, 8, 6, 6), 4, (2, 2), strides=[2, 2]))
    new, report = optimize(model, target="tflite")
    assert op_counts(new)["DepthToSpace"] == 1 and "per-axis" not in forms(report)
    new, report = optimize(d2s_model(), target="tflite")
    assert op_counts(new)["DepthToSpace"] == 1 and not forms(report)


def test_a_nearest_resize_is_copies_and_a_per_axis_shuffle_bit_identical():
    """64x64 maps: the shuffle form (on small maps the matmul form is favoured)."""
    model = resize_model([1, 4, 64, 64], [1, 1, 2, 2], mode="nearest")
    new, report = assert_rewrites(model, ["resize", "shuffle-spelling"], {"Concat": 1, **PER_AXIS})
    assert forms(report) == ["shuffle", "per-axis"]
    assert_bit_identical(model, new, [1, 4, 64, 64])


def test_a_dilated_conv_in_batch_form_ends_in_a_per_axis_shuffle():
    model = conv_model((1, 8, 12, 12), (8, 8, 3, 3), dilations=[2, 2], pads=[2] * 4)
    new, report = assert_rewrites(model, ["dilated-conv", "shuffle-spelling"],
                                  {"Conv": 1, "SpaceToDepth": 1, "DepthToSpace": 0, "Transpose": 2},
                                  dilated_mode="batch")
    assert forms(report) == ["batch", "per-axis"]


@pytest.mark.parametrize("dtype", [TensorProto.FLOAT16, TensorProto.DOUBLE])
def test_other_types_are_left_as_they_are(dtype):
    """Measured in float32 only."""
    new, report = optimize(d2s_model(dtype=dtype), passes=["shuffle-spelling"])
    assert op_counts(new)["DepthToSpace"] == 1 and not report.records("rewritten")


def test_a_quantized_depth_to_space_is_left_as_it_is():
    """Between Q/DQ onnxruntime fuses DepthToSpace into an 8-bit kernel: not measured here."""
    scale = onnx.numpy_helper.from_array(np.array(0.05, np.float32), "s")
    zero = onnx.numpy_helper.from_array(np.array(0, np.int8), "z")
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
             helper.make_node("DepthToSpace", ["d"], ["t"], blocksize=2),
             helper.make_node("QuantizeLinear", ["t", "s", "z"], ["q2"]),
             helper.make_node("DequantizeLinear", ["q2", "s", "z"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])], [scale, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    new, report = optimize(model, passes=["shuffle-spelling"])
    assert op_counts(new)["DepthToSpace"] == 1 and not report.records("rewritten")


@pytest.mark.parametrize("c, h, w", [(4, 8, 8), (16, 4, 4)])
def test_a_shuffle_of_at_most_1024_elements_is_left_with_a_reason(c, h, w):
    """Up to MIN_ELEMENTS the per-axis spelling measured no faster than
    DepthToSpace (six nodes' overhead): left, saying so; one element more
    per image (below) is respelled."""
    model = d2s_model(c=c, h=h, w=w)
    new, report = optimize(model, passes=["shuffle-spelling"])
    assert op_counts(new) == op_counts(model)
    [record] = report.rewrites
    assert record.code == "no-form" and record.reason.endswith(
        "1024 elements per image, at most 1024: one axis at a time measured no faster there"), record.reason
    bigger = d2s_model(c=c, h=h, w=w + 1)
    assert_rewrites(bigger, "shuffle-spelling", PER_AXIS, expect_rewrites=1)


@pytest.mark.parametrize("custom_first", [False, True])
def test_a_stale_declared_input_shape_is_not_what_the_reshapes_name(custom_first):
    """The DepthToSpace's input declared [1, 32, 16, 16] in a value_info
    after a Reshape that makes it [1, 32, 8, 32] (onnxruntime runs the
    Reshape's shape): the per-axis Reshapes named 16 x 16, reordering the
    real tensor's elements; --no-verify wrote that model (a verified run
    rolled it back, blaming the rewrite).  Now bit-identical unverified.
    `custom_first`: an operator onnx has no schema for comes first (a
    com.microsoft Gelu on another branch), after which onnx's strict
    inference raises no complaint: the load's check handed the first view
    its inference with the stale shape in it."""
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["u"]),
             helper.make_node("DepthToSpace", ["u"], ["y"], blocksize=2)]
    outputs_ = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h", "w"])]
    imports = [helper.make_opsetid("", 17)]
    if custom_first:
        nodes.insert(0, helper.make_node("Gelu", ["x"], ["g"], domain="com.microsoft"))
        outputs_.append(helper.make_tensor_value_info("g", TensorProto.FLOAT, [1, 8192]))
        imports.append(helper.make_opsetid("com.microsoft", 1))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8192])],
                              outputs_, [onnx.numpy_helper.from_array(np.array([1, 32, 8, 32], np.int64), "shape")],
                              value_info=[helper.make_tensor_value_info("u", TensorProto.FLOAT, [1, 32, 16, 16])])
    model = helper.make_model(graph, opset_imports=imports)
    new, report = optimize(model, verify=False)
    assert forms(report) == ["per-axis"] and op_counts(new)["DepthToSpace"] == 0
    assert_bit_identical(model, new, [1, 8192])
