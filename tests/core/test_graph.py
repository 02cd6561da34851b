"""GraphView.names_in_use: every name a new node or value must not take (the
graph's values and node names, and the values its subgraphs use)."""
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convrewrite.core.graph import GraphView, run_inference


def test_names_in_use_holds_every_value_and_node_name():
    then = helper.make_graph([helper.make_node("Identity", ["outer"], ["then_out"], name="inner")], "then", [],
                             [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, [1])])
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Add", ["r", "W"], ["outer"]),                       # no node name
        helper.make_node("Dropout", ["outer"], ["d", ""], name="drop"),       # an optional output left out
        helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then, else_branch=then),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1]),
                                           helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
                              [numpy_helper.from_array(np.ones(1, np.float32), "W"),
                               numpy_helper.from_array(np.ones(1, np.float32), "unused")])
    view = GraphView(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    expected = {"x", "cond", "y", "W", "unused", "r", "outer", "d", "relu", "drop", "if", "then_out"}
    assert expected <= view.names_in_use
    assert view.names_in_use - expected <= {""}   # an unnamed node's name: never one a Builder makes


def _minus_one_model():
    """A Pad then a Resize of an input whose height some exporter wrote as dim_value -1 (dynamic)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 9])
    x.type.tensor_type.shape.dim[2].dim_value = -1
    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"], name="pad"),
             helper.make_node("Resize", ["p", "", "scales"], ["y"], name="up", mode="nearest")]
    inits = [numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    graph = helper.make_graph(nodes, "g", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, None, None])],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_a_negative_dim_value_is_an_unknown_dimension():
    # onnx's shape inference would compute with the -1: Pad's output height a "static" 1
    view = GraphView(_minus_one_model())
    assert view.shape("x")[2] is None and view.shape("x")[3] == 9
    assert not isinstance(view.shape("p")[2], int) and view.shape("p")[3] == 11


def test_a_resize_of_an_input_with_a_negative_dim_value_is_rewritten_as_a_symbolic_one():
    from helpers import assert_rewrites  # an internal error in match before (negative dimensions)
    assert_rewrites(_minus_one_model(), "resize", expect_ops={"Resize": 0}, resize_nearest="shuffle")
    from convrewrite import optimize
    _, report = optimize(_minus_one_model(), passes=["resize"], inputs={"x": np.ones((1, 2, 7, 9), np.float32)})
    assert report.verification.equivalent is True  # given inputs: any size where the model says -1


def _input_also_output_model():
    """A ConvTranspose of input x (1x4x5x5), x listed as a graph output too
    with a vaguer declaration ('N', 'H', 'W': valid, names of dimensions)."""
    from builders import convt_model

    model = convt_model((1, 4, 5, 5), 3, (4, 4), strides=[2, 2], pads=[1, 1, 1, 1])
    model.graph.output.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, "H", "W"]))
    return model


def test_a_graph_input_listed_as_an_output_has_its_input_shape():
    # the output's declaration was read last: the ConvTranspose was left "the
    # input's spatial size ['H', 'W'] is not static", of an input of static size
    view = GraphView(_input_also_output_model())
    assert view.shape("x") == (1, 4, 5, 5)
    from helpers import assert_rewrites
    assert_rewrites(_input_also_output_model(), "convtranspose", expect_ops={"ConvTranspose": 0})


def test_a_pad_whose_pads_fold_has_a_static_output():
    """TorchScript's reflect-padding chain: onnx's inference leaves the Pad's
    output unknown; the view infers again with the folded pads."""
    from builders import torchscript_padded_conv_model

    model = torchscript_padded_conv_model(rate=3, size=10)
    plain = onnx.shape_inference.infer_shapes(model, data_prop=True)
    padded = next(v for v in plain.graph.value_info if v.name == "padded")
    assert not padded.type.tensor_type.shape.dim[2].HasField("dim_value")   # what the view started from
    view = GraphView(model)
    assert view.shape("padded") == (1, 4, 16, 16) and view.shape("y") == (1, 4, 10, 10)
    assert "pads/folded" not in view.names_in_use and view.producer("pads").op_type == "Cast"


def test_no_second_inference_for_shapes_a_constant_node_gives(monkeypatch):
    """A Reshape to a Constant [-1, 8, 4, 4] beside a symbolic batch keeps its
    unknown dim whatever is folded: the view runs shape inference once
    (twice doubled the view's cost on such dynamic-batch exports)."""
    import convrewrite.core.graph as graph_module

    calls = []
    real = graph_module.infer_shapes
    monkeypatch.setattr(graph_module, "infer_shapes", lambda m, *rest: calls.append(1) or real(m, *rest))
    nodes = [helper.make_node("Constant", [], ["s"], value=numpy_helper.from_array(np.array([-1, 8, 4, 4]))),
             helper.make_node("Reshape", ["x", "s"], ["r"]), helper.make_node("Relu", ["r"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    view = GraphView(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    assert view.shape("y")[1:] == (8, 4, 4) and len(calls) == 1


MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.mark.parametrize("name", sorted(p.name for p in MODELS.glob("*.onnx")))
def test_strict_inference_infers_what_the_view_does(name):
    """Where onnx's strict shape inference has no complaint its result is the
    non-strict one, byte for byte: the load's strict check hands it to the
    first view (model_io.check_and_infer)."""
    model = onnx.load(MODELS / name)
    assert run_inference(model, strict=True).SerializeToString() == \
        run_inference(model, strict=False).SerializeToString()



def _reshape_then(declared, op=("Relu", ""), v_declared=None):
    """x -> Reshape to [1, 32, 8, 32] -> u -> op -> v -> Relu -> y, u declared
    `declared` in a value_info (and v `v_declared`, if given)."""
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["u"], name="reshape"),
             helper.make_node(op[0], ["u"], ["v"], name="op", domain=op[1]),
             helper.make_node("Relu", ["v"], ["y"], name="relu")]
    declarations = [helper.make_tensor_value_info("u", TensorProto.FLOAT, declared)]
    if v_declared is not None:
        declarations.append(helper.make_tensor_value_info("v", TensorProto.FLOAT, v_declared))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8192])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b", "c", "d"])],
                              [numpy_helper.from_array(np.array([1, 32, 8, 32], np.int64), "shape")],
                              value_info=declarations)
    imports = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(op[1], 1)] if op[1] else [])
    return helper.make_model(graph, opset_imports=imports)


def test_a_stale_declared_shape_gives_way_to_what_the_node_computes():
    """u declared [1, 32, 16, 16] after a Reshape to [1, 32, 8, 32]: onnxruntime
    runs the Reshape's shape; the view read the declaration (lenient
    inference keeps it), and so did what follows it."""
    view = GraphView(_reshape_then([1, 32, 16, 16]))
    assert view.shape("u") == (1, 32, 8, 32)
    assert view.shape("v") == view.shape("y") == (1, 32, 8, 32)


def test_a_declaration_still_fills_what_inference_cannot_tell():
    """A custom operator's output declared (README's advice where inference
    loses a shape): the declaration stands, and what follows reads it; a
    declared symbolic dim the node makes static is static."""
    view = GraphView(_reshape_then([1, 32, 8, 32], op=("Gelu2", "my.ops"), v_declared=[1, 32, "H", 32]))
    assert view.shape("v") == (1, 32, "H", 32)
    y = view.shape("y")    # its static dims come through v's declaration alone
    assert (y[0], y[1], y[3]) == (1, 32, 32), y
    assert GraphView(_reshape_then(["N", 32, 8, 32])).shape("u") == (1, 32, 8, 32)


def _custom_then_transpose(t_declared):
    """x [1, 16, 8, 16] -> a custom operator (no schema: inference does not
    know its output) -> g, declared [1, 16, 8, 16] -> Transpose of H and W ->
    t, declared `t_declared` -> Relu -> y."""
    nodes = [helper.make_node("Gelu2", ["x"], ["g"], name="custom", domain="my.ops"),
             helper.make_node("Transpose", ["g"], ["t"], name="transpose", perm=[0, 1, 3, 2]),
             helper.make_node("Relu", ["t"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 8, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b", "c", "d"])],
                              value_info=[helper.make_tensor_value_info("g", TensorProto.FLOAT, [1, 16, 8, 16]),
                                          helper.make_tensor_value_info("t", TensorProto.FLOAT, t_declared)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.ops", 1)])


def test_a_stale_declaration_after_one_that_fills_gives_way_to_its_node():
    """g's declaration fills what inference cannot tell (a custom operator's
    output); t's is stale (its Transpose makes [1, 16, 16, 8]), and inference
    without declarations could not tell t either (its input was unknown).  t
    takes what the Transpose computes from g's declaration, not the stale
    [1, 16, 8, 16], which lenient inference would keep were both put in at once."""
    view = GraphView(_custom_then_transpose([1, 16, 8, 16]))
    assert view.shape("g") == (1, 16, 8, 16)
    assert view.shape("t") == view.shape("y") == (1, 16, 16, 8)
    # a declaration downstream that adds what the node cannot tell still fills
    view = GraphView(_custom_then_transpose([1, 16, 16, "W"]))
    assert view.shape("t") == (1, 16, 16, 8)


def test_inference_over_declarations_leaves_the_model_as_it_was(monkeypatch):
    """The declarations taken out for the first inference are put back: a
    name declared both in value_info and as a graph output, differently;
    a declaration that fills; and where inference raises."""
    from convrewrite.core import graph as graph_module
    from convrewrite.core.errors import InputError
    from convrewrite.core.graph import infer_shapes

    model = _reshape_then([1, 32, 16, 16])
    model.graph.output[0].type.tensor_type.shape.dim[3].dim_value = 7
    model.graph.value_info.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 16, 16]))
    for m in (model, _custom_then_transpose([1, 16, 8, 16])):
        before = m.SerializeToString()
        infer_shapes(m)
        assert m.SerializeToString() == before
    def refuse(m, strict):
        raise onnx.shape_inference.InferenceError("refused")

    monkeypatch.setattr(graph_module, "run_inference", refuse)
    before = model.SerializeToString()
    with pytest.raises(InputError):
        infer_shapes(model)
    assert model.SerializeToString() == before


def test_labels_are_names_where_unique_else_op_and_index():
    """Every node named once: its name (the common case, taken at once);
    else a nameless or twice-named node is Op_index, suffixed until unique."""
    from convrewrite.core.graph import _unique_labels

    def nodes(*names):
        return [helper.make_node("Relu", ["x"], [f"y{k}"], name=n) for k, n in enumerate(names)]

    named = nodes("a", "b", "Relu_0")
    assert list(_unique_labels(named).values()) == ["a", "b", "Relu_0"]
    mixed = nodes("Relu_1", "", "a", "a")
    assert list(_unique_labels(mixed).values()) == ["Relu_1", "Relu_1_", "Relu_2", "Relu_3"]
