"""Damage the fuzz test found that onnx.checker lets through: it must become
a one-line reason (bad input, or a node left alone), never an exception."""
import pytest
from onnx import TensorProto, helper

from convrewrite import InputError
from convrewrite.core.graph import attributes
from convrewrite.core.model_io import check_model
from convrewrite.geometry import geometry_problem
from passes.convtranspose.geometry import SpecConflict, output_geometry


def _relu_model(elem_type: int):
    x = helper.make_tensor_value_info("x", elem_type, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("elem_type", [120, TensorProto.UNDEFINED])
def test_a_graph_input_of_an_undefined_element_type_is_bad_input(elem_type):
    with pytest.raises(InputError, match=f"graph input 'x' has element type {elem_type}, which ONNX does not define"):
        check_model(_relu_model(elem_type))


@pytest.mark.parametrize("kind", ["input", "output"])
def test_a_graph_input_or_output_without_a_shape_is_named(kind):
    # onnx.checker refuses it ("Field 'shape' of 'type' is required") without
    # naming the tensor; IR.md requires the rank of the main graph's I/O.
    model = _relu_model(TensorProto.FLOAT)
    values = model.graph.input if kind == "input" else model.graph.output
    values[0].type.tensor_type.ClearField("shape")
    name = values[0].name
    with pytest.raises(InputError, match=f"graph {kind} '{name}' declares no shape; .*declare its shape"):
        check_model(model)


def test_a_graph_input_passed_out_in_another_element_type_is_named():
    # onnx's inference read x as float16 and blamed the Relu's output y,
    # whose declaration is right: "output 'y' ... declared float but the node computes float16"
    model = _relu_model(TensorProto.FLOAT)
    model.graph.output.append(helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 2]))
    with pytest.raises(InputError, match="graph output 'x' is the graph's input of element type float but is "
                                         "declared float16; correct that graph output's element type"):
        check_model(model)
    model.graph.output[1].type.tensor_type.elem_type = TensorProto.FLOAT
    check_model(model)   # passed out in its own type: fine


def test_a_value_info_without_a_shape_is_fine():
    model = _relu_model(TensorProto.FLOAT)
    model.graph.value_info.add().CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT, None))
    assert not model.graph.value_info[0].type.tensor_type.HasField("shape")
    check_model(model)


@pytest.mark.parametrize("op, data, elem, said", [
    ("Resize", "scales", TensorProto.FLOAT16, "Resize node 'op' reads 'scales' as float, but it is float16"),
    ("Reshape", "shape", TensorProto.INT32, "Reshape node 'op' reads 'shape' as int64, but it is int32")])
def test_a_constant_an_operator_reads_in_another_type_is_bad_input(op, data, elem, said):
    """onnx.checker lets it through, onnxruntime refuses the model."""
    import numpy as np
    from onnx import numpy_helper

    values, out = ([1, 1, 2, 2], [1, 2, 8, 8]) if op == "Resize" else ([1, 8, 2, 2], [1, 8, 2, 2])
    const = numpy_helper.from_array(np.array(values, helper.tensor_dtype_to_np_dtype(elem)), data)
    inputs = ["x", "", data] if op == "Resize" else ["x", data]
    g = helper.make_graph([helper.make_node(op, inputs, ["y"], name="op")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)], [const])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])
    with pytest.raises(InputError, match=f"invalid ONNX model \\({said}; correct that tensor's element type"):
        check_model(model)


def test_a_string_attribute_that_is_not_utf8_is_just_unknown():
    node = helper.make_node("Resize", ["x"], ["y"], mode=b"ne\x8barest")
    assert attributes(node)["mode"] == "ne\ufffdarest"


def test_an_empty_weight_or_input_describes_no_convolution():
    assert "is empty" in geometry_problem({}, 2, (4, 2, 0, 3))
    assert "is empty" in geometry_problem({}, 2, (0, 2, 3, 3))
    with pytest.raises(SpecConflict, match=r"spatial size \[0, 4\] is empty"):
        output_geometry([0, 4], [3, 3], [2, 2], [1, 1], "NOTSET", [-3, 0, 0, 0])


def test_pads_of_the_wrong_length_read_as_far_as_they_go():
    from convrewrite.geometry import split_pads

    assert split_pads([1, 2, 3], 2) == [(1, 3), (2, 0)]
    assert split_pads([5], 2) == [(5, 0), (0, 0)]


def test_float_sizes_are_not_sizes():
    import numpy as np
    from onnx import numpy_helper

    from convrewrite.core.graph import GraphView
    from passes.resize.interpolation import read_resize

    sizes = numpy_helper.from_array(np.array([np.nan, 2, 8, 8]), "sizes")
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [sizes])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    spec = read_resize(node, GraphView(model))
    assert (spec.reason, spec.code) == ("sizes [nan, 2.0, 8.0, 8.0] are not integers", "invalid-node")


def test_same_padding_of_a_zero_stride_is_an_answer():
    from convrewrite.geometry import conv_pads

    assert conv_pads("SAME_UPPER", [8], [3], [0], [1], None) == conv_pads("SAME_UPPER", [8], [3], [1], [1], None)
