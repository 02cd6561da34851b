""""The target runs it as it is" is a claim, made only where the profile's
rules read known facts (target/rules.py `undecided`, check.py
`undecided_reason`).  A Resize of symbolic size passed Ethos-U's "from a 1x1
input" form by not knowing its input size, and one whose scales are computed
at run time passed every factor rule unread: both were left with
`target-runs-it` while check-target flagged the model, and `--strict` did not
count them."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convrewrite import optimize
from convrewrite.core.graph import GraphView
from convrewrite.target import load_profile
from convrewrite.target.facts import node_facts
from convrewrite.target.rules import undecided
from helpers import assert_skips
from passes.resize.rewrite import ResizeToConvTranspose as ResizePass

F = TensorProto.FLOAT
ETHOS_U55 = load_profile("arm-ethos-u55")
NEAREST_U55 = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}


def _model(nodes, x_shape, y_shape, inits=(), extra_inputs=()):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, x_shape), *extra_inputs],
                          [helper.make_tensor_value_info("y", F, y_shape)], list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def scales_model(x_shape, y_shape, **attrs):
    """x -> Resize(scales [1, 1, 2, 2]) -> y."""
    s = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "s")
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], name="up", **{**NEAREST_U55, **attrs})
    return _model([node], x_shape, y_shape, [s])


def shape_sizes_model():
    """sizes = Shape(x) * [1, 1, 2, 2]: known only when x's size is."""
    k = numpy_helper.from_array(np.array([1, 1, 2, 2], np.int64), "k")
    nodes = [helper.make_node("Shape", ["x"], ["sh"], name="shape"), helper.make_node("Mul", ["sh", "k"], ["sz"]),
             helper.make_node("Resize", ["x", "", "", "sz"], ["y"], name="up", **NEAREST_U55)]
    return _model(nodes, [1, 8, "H", "W"], [1, 8, "H2", "W2"], [k])


def runtime_scales_model():
    """A static input resized by scales the graph is given at run time."""
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], name="up", **NEAREST_U55)
    return _model([node], [1, 8, 4, 4], [1, 8, "a", "b"], extra_inputs=[helper.make_tensor_value_info("s", F, [4])])


def _record(model, target):
    _, report = optimize(model, target=target, verify=False)
    (r,) = [r for r in report.rewrites if r.node == "up"]
    return r, report


@pytest.mark.parametrize("make, unknown", [
    (lambda: scales_model([1, 8, "H", "W"], [1, 8, "H2", "W2"]), r"it needs static shapes \(static_shapes\), "
                                                                  r"and input 'x' is \[1,8,H,W\]"),
    (shape_sizes_model, r"its rules read .*the input's spatial size and the scale factors"),
])
def test_a_resize_of_symbolic_size_is_not_said_to_run_on_ethos_u55(make, unknown):
    report = assert_skips(make(), ResizePass(), unknown + r".*give the graph's inputs static shapes",
                          code="target-undecided", target="arm-ethos-u55")
    r = next(r for r in report.rewrites if r.node == "up")
    assert r.reason.startswith("Resize 'up': target 'arm-ethos-u55' may or may not run it as it is: ")
    # --strict counts it: the target check of the output finds nothing against the Resize itself
    # (only the graph input's symbolic dims), yet nothing says the target runs it
    assert "up" not in {v["node"] for v in report.target["violations"]}
    assert [x.node for x in report.unfinished] == ["up"]


def test_runtime_scales_are_not_read_as_met_on_a_profile_without_static_shapes():
    """arm-ethos-n78 lists Resize factors and does not ask for static shapes:
    the factor rules alone could not be read; the fix is constant scales."""
    n78 = load_profile("arm-ethos-n78")
    assert not n78.static_shapes
    r, report = _record(runtime_scales_model(), n78)
    assert r.code == "target-undecided"
    assert "its rules read the scale factors" in r.reason and "spatial rank" not in r.reason   # x is rank 4
    assert r.reason.endswith("compute the Resize's scales or sizes from constants")
    assert report.target["fits"] and [x.node for x in report.unfinished] == ["up"]


def test_a_convtranspose_of_runtime_weight_is_told_to_make_it_an_initializer():
    """Its input is static; the weight, a graph input of symbolic size, is
    what Ethos-U55's static_shapes cannot read.  The fix named the Resize's
    remedy: "compute the ConvTranspose's scales or sizes from constants"."""
    w = helper.make_tensor_value_info("w", F, [8, 8, "k", "k"])
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up", strides=[2, 2])
    model = _model([node], [1, 8, 4, 4], [1, 8, None, None], extra_inputs=[w])
    r, _ = _record(model, ETHOS_U55)
    assert r.code == "target-undecided"
    assert "input 'w' is [8,8,k,k]" in r.reason
    assert r.reason.endswith("make the ConvTranspose's weight and bias initializers (of static shape)"), r.reason


def test_the_spatial_rank_of_runtime_scales_is_known():
    """A 1-D Resize (x [1, 8, 4]) by scales given at run time: its spatial
    rank is x's, known whatever the scales.  It was read as unknown with the
    factors, so arm-ethos-n78 (2-D Resizes only) was not said to break it:
    check-target found nothing, and the node was left "undecided" with the
    advice to make the scales constant, which would not make it run."""
    from convrewrite.target import check_model

    n78 = load_profile("arm-ethos-n78")
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], name="up", **NEAREST_U55)
    model = _model([node], [1, 8, 4], [1, 8, "a"], extra_inputs=[helper.make_tensor_value_info("s", F, [3])])
    assert [v.rule for v in check_model(model, n78)] == ["operators.Resize.spatial_ranks"]
    r, report = _record(model, n78)
    assert r.code != "target-undecided", r.reason
    assert not report.target["fits"]


def test_what_the_rules_know_still_runs_as_it_is():
    """The same Resize with static sizes, and with a symbolic batch only (the
    target check takes it as 1), still runs on Ethos-U55 as it is."""
    for x, y in (([1, 8, 4, 4], [1, 8, 8, 8]), (["N", 8, 4, 4], ["N", 8, 8, 8])):
        r, report = _record(scales_model(x, y), ETHOS_U55)
        assert r.code == "target-runs-it", r.reason
        assert report.unfinished == []


def _facts(model):
    graph = GraphView(model)
    node = next(n for n in graph.graph.node if n.op_type == "Resize")
    return node_facts(node, graph)


def test_undecided_needs_a_form_whose_facts_are_all_known(tmp_path):
    """A form passed by an unknown fact does not decide; one whose facts are
    all known does, alongside it."""
    def profile(rules):
        path = tmp_path / "p.json"
        path.write_text(json.dumps({"name": "p", "operators": {"Resize": rules}}))
        return load_profile(path)

    runtime = _facts(runtime_scales_model())
    assert runtime.factors is None
    assert undecided(profile({"factors": [2]}), runtime, "Resize") == [
        "its rules read the scale factors (output size / input size, or a constant scales or sizes input), "
        "not known before run time"]
    assert undecided(profile({"modes": ["nearest"]}), runtime, "Resize") == []   # reads only what is known
    symbolic = _facts(scales_model([1, 8, "H", "W"], [1, 8, "H2", "W2"]))
    assert symbolic.unit_input is None and symbolic.factors == (2, 2)
    assert undecided(profile({"unit_input": True}), symbolic, "Resize") == [
        "its rules read the input's spatial size, not known before run time"]
    assert undecided(profile([{"unit_input": True}, {"factors": [2]}]), symbolic, "Resize") == []
    static = _facts(scales_model([1, 8, 4, 4], [1, 8, 8, 8]))
    assert undecided(profile({"unit_input": True}), static, "Resize") == []   # known, and broken: not undecided


def test_check_target_still_reports_only_what_it_knows_is_broken():
    """The compatibility check is unchanged: an unknown fact is not a violation."""
    from convrewrite.target import check_model

    found = check_model(runtime_scales_model(), load_profile("arm-ethos-n78"))
    assert found == []
    model = scales_model([1, 8, "H", "W"], [1, 8, "H2", "W2"])
    assert [v.rule for v in check_model(model, ETHOS_U55)] == ["static_shapes"]
    onnx.checker.check_model(model)


def test_a_lowering_of_symbolic_size_is_not_said_to_fit():
    """A cubic Resize (Ethos-U55 runs nearest and linear only) of symbolic
    size, with constant scales, is lowered into an edge Pad and a
    ConvTranspose whose sizes are symbolic too: they break no rule, but on a
    profile with static_shapes nothing says the target runs them, so the
    record does not say the form 'fits' (the ConvTranspose the convtranspose
    pass then meets is target-undecided).  The same Resize of static size
    fits."""
    def cubic(x, y):
        return scales_model(x, y, mode="cubic", coordinate_transformation_mode="half_pixel",
                            nearest_mode="round_prefer_floor")

    r, report = _record(cubic([1, 8, "H", "W"], [1, 8, "H2", "W2"]), ETHOS_U55)
    assert r.status == "rewritten" and r.form == "deconv"
    [verdict] = [n for n in r.notes if n.startswith("target arm-ethos-u55: form ")]
    assert verdict.startswith("target arm-ethos-u55: form 'deconv' breaks no rule, but the target may or may not "
                              "run it: 2 problems, the first: Pad 'up/resize/edge_pad': it needs static shapes (static_shapes)"), verdict
    assert "fits" not in verdict and verdict.endswith("static sizes of the graph's inputs would decide it")
    assert {x.code for x in report.rewrites if x.node != "up"} == {"target-undecided"}
    r, _ = _record(cubic([1, 8, 4, 4], [1, 8, 8, 8]), ETHOS_U55)
    assert r.status == "rewritten" and "target arm-ethos-u55: form 'deconv' fits" in r.notes


def test_a_slice_of_unit_steps_is_decided_whatever_its_axes():
    """Ethos-U55 takes a step other than 1 on the channel axis only
    (strided_axes): a Slice without steps (all 1) and without axes breaks it
    on no axis, so its axes are no unknown.  (The Slice that crops a lowered
    ConvTranspose made the int8 Resize's form 'breaks no rule, but the target
    may or may not run it'.)"""
    ints = lambda name, v: numpy_helper.from_array(np.array(v, np.int64), name)   # noqa: E731
    node = helper.make_node("Slice", ["x", "starts", "ends"], ["y"], name="crop")
    model = _model([node], [1, 8, 6, 6], [1, 8, 4, 4], [ints("starts", [0, 0, 1, 1]), ints("ends", [1, 8, 5, 5])])
    graph = GraphView(model)
    facts = node_facts(graph.graph.node[0], graph)
    assert facts.steps == (1,) and facts.slice_axes is None
    assert ETHOS_U55.rules("Slice") is not None
    assert undecided(ETHOS_U55, facts, "Slice") == []


def test_every_limit_says_what_it_reads():
    """A limit missing from rules._READS would pass unread where its fact is
    unknown and let 'runs it as it is' be claimed: each one is there, or in
    _NOT_READ with its reason."""
    from convrewrite.target import rules

    limits = {key for key, _ in rules._CHECKS}
    assert limits == set(rules._READS) | rules._NOT_READ
    assert not set(rules._READS) & rules._NOT_READ


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("target", ["arm-ethos-u55", "arm-ethos-n78", "tflite"])
def test_a_non_finite_scale_is_no_factor(bad, target):
    """A Resize whose constant scales hold nan or inf (an invalid node, which
    the resize pass names): reading its factors took the run down, exit 4
    (Fraction(nan)).  Its factors are not known; the run goes on."""
    s = numpy_helper.from_array(np.array([1, 1, bad, 2], np.float32), "s")
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], name="up", **NEAREST_U55)
    model = _model([node], [1, 2, 8, 8], ["n", "c", "h", "w"], [s])
    graph = GraphView(model)
    assert node_facts(node, graph).factors is None
    _, report = optimize(model, verify=False, target=target)
    (record,) = report.rewrites
    assert record.code in ("invalid-node", "target-undecided"), (record.code, record.reason)
