"""The report's text: what the command line prints."""
from __future__ import annotations

from onnx import TensorProto, helper

from convrewrite import optimize
from convrewrite.core.report import target_lines


def _left_alone(name: str):
    """A ConvTranspose named `name` whose weight is a graph input: left alone, its name in the reason."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 3, 2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 16, 16])
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name=name, strides=[2, 2])
    return helper.make_model(helper.make_graph([node], "g", [x, w], [y]), opset_imports=[helper.make_opsetid("", 17)])


def test_control_characters_of_node_names_are_escaped_in_the_summary():
    """A node name is the model's text: "\\r" and an ANSI erase-line in it
    hid the 'left alone' line on a terminal, and "\\n" split it in two."""
    name = "up\r\x1b[2K\nok"
    _, report = optimize(_left_alone(name), target="generic-npu")
    text = report.summary()
    assert "\x1b" not in text and "\r" not in text
    (line,) = [s for s in text.splitlines() if "left alone" in s]
    assert "'up\\r\\x1b[2K\\nok'" in line
    assert report.rewrites[0].node == name                 # the JSON keeps the name as it is
    misfits = target_lines(report.target)[1:]
    assert misfits and all("\x1b" not in s and "\n" not in s for s in misfits)


def test_strict_counts_with_a_target_only_what_does_not_fit_it():
    """A left-alone node the target check of the output flags is unfinished;
    without a target every left-alone candidate is."""
    _, report = optimize(_left_alone("up"), target="generic-npu")       # no ConvTranspose there
    assert not report.target["fits"] and [r.node for r in report.unfinished] == ["up"]
    _, report = optimize(_left_alone("up"))
    assert [r.node for r in report.unfinished] == ["up"]
