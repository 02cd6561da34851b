"""Checks every pass makes before matching (convrewrite.core.preconditions)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from convrewrite.core.graph import GraphView
from convrewrite.core.preconditions import shown_dims, unknown_spatial_size


def test_invented_dim_names_are_shown_as_question_marks():
    assert shown_dims([3, "H", "unk__12", "unk__x"]) == [3, "H", "?", "unk__x"]


def test_a_spatial_size_shape_inference_could_not_name_says_so():
    """x = Reshape(w, shape) with the shape a graph input: onnx names x's
    dims unk__N, which mean nothing to the user; the reason shows '?' and
    what to do."""
    nodes = [helper.make_node("Reshape", ["w", "shape"], ["x"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("w", TensorProto.FLOAT, [1, 2, 3, 4]),
                                       helper.make_tensor_value_info("shape", TensorProto.INT64, [4])],
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)])
    view = GraphView(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    skip = unknown_spatial_size(view, "x")
    assert skip is not None and "unk__" not in skip.reason, skip
    assert "spatial size ['?', '?'] is not static (?: a size shape inference could not work out" in skip.reason
    assert skip.reason.endswith("give the graph's inputs static shapes")


def _runs_in_onnxruntime(op: str, elem: int) -> bool:
    """Whether onnxruntime's CPU provider creates a session for one `op` node
    of element type `elem` (the x input and any weight of that type)."""
    dtype = helper.tensor_dtype_to_np_dtype(elem)
    x = helper.make_tensor_value_info("x", elem, [1, 4, 4, 4])
    inputs, inits, attrs = ["x"], [], {}
    if op in ("Conv", "ConvTranspose"):
        inits, inputs = [numpy_helper.from_array(np.ones((4, 4, 1, 1), dtype), "w")], ["x", "w"]
    elif op == "MatMul":
        inits, inputs = [numpy_helper.from_array(np.ones((4, 4), dtype), "w")], ["x", "w"]
    elif op == "Resize":
        inits, inputs = [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "s")], ["x", "", "s"]
    elif op == "DepthToSpace":
        attrs = {"blocksize": 2}
    g = helper.make_graph([helper.make_node(op, inputs, ["y"], **attrs)], "g", [x],
                          [helper.make_tensor_value_info("y", elem, None)], inits)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    try:
        ort.InferenceSession(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString(),
                             so, providers=["CPUExecutionProvider"])
        return True
    except Exception:   # noqa: BLE001 -- a refused node is the answer
        return False


@pytest.mark.parametrize("op, runs", [("Conv", False), ("ConvTranspose", False), ("Resize", False),
                                      ("MatMul", True), ("DepthToSpace", True)])
def test_what_the_type_reasons_say_of_onnxruntime_float64_is_true(op, runs):
    """The reasons unverifiable_type gives for float64 (dilated-conv,
    convtranspose: no Conv; shuffle-motion: no Conv, a DepthToSpace it has;
    resize: no Resize, Conv or ConvTranspose, but a MatMul, so its matmul
    form is lowered and checked against the reference evaluator) rest on
    these facts of onnxruntime's CPU provider; if one changes, so must they."""
    assert _runs_in_onnxruntime(op, TensorProto.DOUBLE) is runs
    assert _runs_in_onnxruntime(op, TensorProto.FLOAT) is True


def test_the_type_reason_lists_the_types_and_says_the_callers_why():
    from convrewrite.core.preconditions import unverifiable_type

    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, 2, 3, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)])
    view = GraphView(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    assert unverifiable_type(view, "x").reason == (
        "element type DOUBLE is not lowered: only float16 and float32 are, because onnxruntime has no Conv of other "
        "types to verify the rewrite against")
    assert unverifiable_type(view, "x", "X", (TensorProto.FLOAT16, TensorProto.FLOAT, TensorProto.DOUBLE)) is None
    assert unverifiable_type(view, "x", "it is so", (TensorProto.FLOAT,)).reason == (
        "element type DOUBLE is not lowered: only float32 is, because it is so")
