"""core/pointwise.py: which ops and constants act on each spatial position alone."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convrewrite.core.graph import GraphView
from convrewrite.core.pointwise import batchnorm_not_inference, broadcasts_per_channel, is_pointwise_conv


@pytest.mark.parametrize("shape,per_channel", [
    ((), True), ((1,), True), ((5, 1, 1), True), ((1, 5, 1, 1), True), ((1, 1, 1, 1), True),
    ((5,), False), ((5, 1), False), ((2, 5, 1, 1), False), ((1, 5, 3, 1), False), ((1, 1, 5, 1, 1), False),
])
def test_broadcasts_per_channel(shape, per_channel):
    assert broadcasts_per_channel(shape, 4) is per_channel


@pytest.mark.parametrize("kernel,attrs,pointwise", [
    ([1, 1], {}, True), ([1, 1], {"strides": [1, 1], "dilations": [3, 3]}, True),
    ([1, 1], {"pads": [0, 0, 0, 0]}, True), ([1, 1], {"strides": [2, 2]}, False),
    ([1, 1], {"pads": [1, 0, 0, 0]}, False), ([3, 3], {}, False), ([1], {}, True),
])
def test_is_pointwise_conv(kernel, attrs, pointwise):
    assert is_pointwise_conv(kernel, attrs) is pointwise


def _bn(opset, outputs=1, **attrs):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])
    ys = ["y", "mean", "var"][:outputs]
    stats = [numpy_helper.from_array(np.ones(2, np.float32), n) for n in "abcd"]
    bn = helper.make_node("BatchNormalization", ["x", *"abcd"], ys, **attrs)
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in ys]
    model = helper.make_model(helper.make_graph([bn], "g", [x], outs, stats),
                              opset_imports=[helper.make_opsetid("", opset)])
    return bn, GraphView(model)


@pytest.mark.parametrize("opset,outputs,attrs,why", [
    (15, 1, {}, None), (9, 1, {}, None), (7, 1, {"spatial": 1}, None),
    (15, 3, {"training_mode": 1}, "training_mode=1"), (9, 3, {}, "make it run in training mode"),
    (7, 1, {"spatial": 0}, "spatial=0"), (6, 1, {}, "opset 6"),
])
def test_batchnorm_not_inference(opset, outputs, attrs, why):
    bn, graph = _bn(opset, outputs, **attrs)
    found = batchnorm_not_inference(bn, graph)
    assert (found is None) if why is None else (why in found), found
