"""Verification of quantized rewrites judges what a deployment runs: both
sides also run under onnxruntime's fused int8 execution (graph optimizations
on), and integer outputs are compared in quantization steps, locally and on
the whole model (core/qdq_check.py)."""
from __future__ import annotations

import json
import logging

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

pytest.importorskip("onnxruntime.quantization")

import convrewrite.core.qdq as qdq
import convrewrite.core.qdq_check as qdq_check
import passes.convtranspose.quantized as quantized_forms
from convrewrite import optimize
from convrewrite.core.driver import Settings
from convrewrite.core.html import render_report
from convrewrite.core.oracle import Oracle
from convrewrite.core.report import REWRITTEN, ROLLED_BACK
from convrewrite.core.rewrite import Code
from passes import make_passes
from qdq_models import quantized

logging.getLogger().setLevel(logging.ERROR)
ZERO = {"mean": 0.0, "p99": 0.0, "max": 0.0}


def run(model, **options):
    new, report = optimize(model, passes=make_passes(None, options))
    return new, report, {r.node: r for r in report.rewrites}


@pytest.mark.parametrize("act", ["uint8", "int8"])
def test_each_quantized_rewrite_reports_its_difference_in_steps_spec_and_fused(act):
    new, report, records = run(quantized("decoder", act))
    for name in ("up", "resize"):   # the ConvTranspose group, and the Resize between DQ and Q
        r = records[name]
        assert r.status == REWRITTEN, r.reason
        assert r.quantized_steps == {"spec": ZERO, "fused": ZERO}
    v = report.verification
    assert v.equivalent and v.quantized_steps == {"spec": ZERO, "fused": ZERO}
    d = json.loads(report.to_json())
    assert d["rewrites"][0]["quantized_steps"]["fused"] == ZERO
    assert d["verification"]["quantized_steps"]["spec"] == ZERO
    assert "difference in quantization steps" in report.summary()
    assert "onnxruntime fused int8 mean 0" in render_report(report)


def test_a_float_rewrite_has_no_steps():
    from builders import convt_model

    _, report = optimize(convt_model((1, 4, 5, 5), 2, (3, 3), strides=[2, 2]), passes=make_passes(None, {}))
    assert report.rewrites[0].status == REWRITTEN and report.rewrites[0].quantized_steps is None
    assert report.verification.quantized_steps is None


def _dequantized_weight_bug(monkeypatch):
    """The quantized ConvTranspose form with the bug issue 11 found: the new
    Conv's int8 weight and int32 bias dequantized offline into float initializers.  The
    spec cannot tell (the same float values); onnxruntime's fused execution
    quantizes those float weights again by itself, per tensor, and computes
    other integers."""
    real = quantized_forms._integer_convs

    def buggy(b, d, wq, graph, y):
        real(b, d, wq, graph, y)
        inits = {t.name: numpy_helper.to_array(t) for t in b.initializers}
        for dq in [n for n in b.nodes if "weight_dequantize" in n.name or "bias_dequantize" in n.name]:
            q, scale, zp = (list(inits[i] for i in dq.input) + [np.zeros(1, np.int32)])[:3]
            shape = (-1,) + (1,) * (q.ndim - 1)
            w = ((q.astype(np.float32) - zp.reshape(shape)) * scale.reshape(shape)).astype(np.float32)
            name = b.initializer(w, "float_weight")
            for n in b.nodes:
                for k, i in enumerate(n.input):
                    if i == dq.output[0]:
                        n.input[k] = name
            b.nodes.remove(dq)

    monkeypatch.setattr(quantized_forms, "_integer_convs", buggy)


@pytest.mark.parametrize("act", ["uint8", "int8"])
def test_a_rewrite_that_changes_the_int8_result_under_fusion_is_rolled_back(monkeypatch, act):
    _dequantized_weight_bug(monkeypatch)
    model = quantized("convt", act)
    new, report, records = run(model)
    r = records["up"]
    assert (r.status, r.code) == (ROLLED_BACK, Code.VERIFICATION_FAILED)
    assert "fused int8 execution" in r.reason and "systematically" in r.reason, r.reason
    assert r.quantized_steps["spec"]["p99"] <= 1 and r.quantized_steps["fused"]["mean"] > 0.05
    assert [n.op_type for n in new.graph.node] == [n.op_type for n in model.graph.node]


def test_the_whole_model_check_also_runs_fused_int8(monkeypatch):
    """With the local fused check off, the whole-model check catches the same
    bug (the model's output is float after a DequantizeLinear: compared in
    steps of its scale) and bisection rolls the rewrite back."""
    _dequantized_weight_bug(monkeypatch)
    monkeypatch.setattr(qdq_check, "fused_comparisons", lambda *a: {})
    new, report, records = run(quantized("convt"))
    r = records["up"]
    assert (r.status, r.code) == (ROLLED_BACK, Code.MODEL_CHECK_FAILED), r.reason
    assert "fused int8 execution" in r.reason, r.reason


def _output_renamed(model, name: str):
    """A copy of `model` whose node writing the graph output y writes `name`
    instead (the caller adds the node that writes y); (copy, y)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    y = m.graph.output[0].name
    for n in m.graph.node:
        for k, o in enumerate(n.output):
            if o == y:
                n.output[k] = name
    return m, y


def _with_added(model, delta: np.ndarray) -> onnx.ModelProto:
    """`model` with `delta` added to its output y after the final DequantizeLinear."""
    m, y = _output_renamed(model, "y_before_delta")
    m.graph.initializer.append(numpy_helper.from_array(delta.astype(np.float32), "delta"))
    m.graph.node.append(helper.make_node("Add", ["y_before_delta", "delta"], [y], name="delta"))
    return m


def test_the_whole_model_check_compares_a_dequantized_output_in_steps_of_its_scale():
    model = quantized("convt")
    final = next(n for n in model.graph.node if n.output[0] == "y")
    assert final.op_type == "DequantizeLinear"
    step = float(numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == final.input[1])))
    oracle = Oracle(model, Settings())
    assert oracle.steps == {"y": pytest.approx(step)}
    shape = oracle.want[0].shape
    one = np.zeros(shape)
    one.flat[3] = step                     # one element one step off: a rounding tie, equal
    result = oracle.compare(_with_added(model, one))
    assert result, str(result)             # the float tolerance alone would refuse it
    assert result.outputs[0].max_abs_error > 1e-4 * np.abs(oracle.want[0]).max()
    assert len(result.outputs) == 2 and result.outputs[1].fused
    everywhere = np.full(shape, step)      # every element one step off: systematic
    result = oracle.compare(_with_added(model, everywhere))
    assert not result and not result.outputs[0] and not result.outputs[1]
    assert "systematically" in result.outputs[1].message


def test_a_quantized_output_within_the_originals_own_tie_noise_is_accepted():
    """The whole-model check's yardstick for rounding ties: the original with
    every activation QuantizeLinear nudged by 1 +- 2^-18 (qdq_check.tie_noise)."""
    from convrewrite.core.equivalence import Comparison, OutputComparison
    from convrewrite.core.qdq import Steps

    model = quantized("resize_linear")
    nudged = qdq_check.tie_nudged(model, 1.0)
    changed = [n for n in nudged.graph.node if n.op_type == "QuantizeLinear" and n.input[1].endswith("/tie_nudged")]
    assert len(changed) == 4   # x, a, r and y: every activation QuantizeLinear
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((1, 4, 6, 6)).astype(np.float32)}
    from convrewrite.core.equivalence import run_onnxruntime
    want = run_onnxruntime(model, feeds)
    noise = qdq_check.tie_noise(model, feeds, want, ["y"], {"y": 0.01}, False)
    assert noise["y"].mean > 0   # bilinear taps put outputs exactly on ties: the original's own noise
    failing = Comparison([OutputComparison("y", False, steps=Steps(0.08, 1.0, 2.0))])
    assert qdq_check.within_tie_noise(failing, {"y": Steps(0.1, 1.0, 2.0)}, {})
    assert not qdq_check.within_tie_noise(failing, {"y": Steps(0.06, 1.0, 2.0)}, {})
    assert not qdq_check.within_tie_noise(failing, {}, {"y": Steps(0.1, 1.0, 2.0)})   # spec judged by spec noise


@pytest.mark.parametrize("act", ["uint8", "int8"])
def test_a_whole_model_check_accepted_within_tie_noise_says_so(act):
    """A bilinear Resize's ties carried on by a 3x3 Conv: the result differs
    by more than a mean of 0.05 step, as the original does from itself with
    its ties broken the other way.  Accepted -- and the verdict, the detail,
    the summary, the JSON and the HTML report say on what grounds."""
    import json

    from convrewrite.core.html import render_report

    new, report, _ = run(quantized("resize_then_conv3", act))
    v = report.verification
    assert v.performed and v.equivalent and v.within_tie_noise and not v.within_noise
    steps = v.quantized_steps
    assert max(steps["spec"]["mean"], steps["fused"]["mean"]) > 0.05, steps   # the case this test is about
    assert "more than rounding ties allow" in v.detail and "accepted as that noise" in v.detail, v.detail
    assert "equivalent within the original's own rounding-tie noise" in report.summary()
    assert json.loads(report.to_json())["verification"]["within_tie_noise"] is True
    assert "accepted as that noise" in render_report(report)


def test_a_result_equal_in_steps_is_not_said_to_rest_on_tie_noise():
    _, report, _ = run(quantized("resize_linear"))
    assert report.verification.equivalent and not report.verification.within_tie_noise


def _with_float_last_conv(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with a float 1x1 Conv after its output y: a QDQ model whose
    output is float (no DequantizeLinear produces it)."""
    m, y = _output_renamed(model, "y_quantized")
    channels = 4   # quantized("convt"): ConvTranspose 8 -> 4 channels
    w = np.random.default_rng(0).standard_normal((channels, channels, 1, 1)).astype(np.float32)
    m.graph.initializer.append(numpy_helper.from_array(w, "float_w"))
    m.graph.node.append(helper.make_node("Conv", ["y_quantized", "float_w"], [y], name="float_conv"))
    return m


def test_a_quantized_model_with_a_float_output_is_checked_under_fused_int8_too(monkeypatch):
    model = _with_float_last_conv(quantized("convt"))
    oracle = Oracle(model, Settings())
    assert oracle.steps == {} and oracle.want_fused is not None   # no quantized output, still fused
    new, report, records = run(model)
    assert records["up"].status == REWRITTEN, records["up"].reason
    v = report.verification
    assert v.equivalent and v.quantized_steps == {"spec": None, "fused": None, "fused_float_max_abs": 0.0}
    assert "float outputs under onnxruntime fused int8 max abs 0" in report.summary()
    # the bug of issue 11 (the new Conv's weight dequantized offline), local fused check off: the whole-model
    # check, comparing the float output of the fused executions with the float tolerance, rolls it back
    _dequantized_weight_bug(monkeypatch)
    monkeypatch.setattr(qdq_check, "fused_comparisons", lambda *a: {})
    new, report, records = run(model)
    r = records["up"]
    assert (r.status, r.code) == (ROLLED_BACK, Code.MODEL_CHECK_FAILED), r.reason
    assert "fused int8" in r.reason, r.reason


def test_a_replacement_onnxruntime_cannot_fuse_is_rolled_back_naming_what_it_lacks(monkeypatch):
    """Opset 10: onnxruntime's fusion turns a DequantizeLinear -> DepthToSpace
    -> QuantizeLinear into a uint8 DepthToSpace, for which it has no opset-1
    kernel.  The batch form no longer builds one there (test_qdq_opsets); made
    to, as it did, its replacement is rolled back, and the reason is
    onnxruntime's first line, which says so (its last line, which the reason
    used to quote, is ")")."""
    monkeypatch.setattr(qdq, "integer_depth_to_space", lambda opset: True)
    model = quantized("dilated", "uint8", opset=10, per_channel=False)
    new, report, records = run(model)
    r = records["aspp"]
    assert (r.status, r.code) == (ROLLED_BACK, Code.VERIFICATION_FAILED), r.reason
    assert "fused int8 execution" in r.reason and "Failed to find kernel for DepthToSpace(1)" in r.reason, r.reason
    assert [n.op_type for n in new.graph.node] == [n.op_type for n in model.graph.node]


def _qdq_resize(mode, elem, scale=0.5):
    """DQ(Q(x)) -> Resize x2 (`mode`) -> Q -> DQ, activations of type `elem`
    (opset 21: int4 among them) with zero point 0."""
    inits = [numpy_helper.from_array(np.array(scale, np.float32), "s"),
             onnx.helper.make_tensor("z", elem, [], [0]),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="qx"),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xf"], name="dqx"),
             helper.make_node("Resize", ["xf", "", "scales"], ["r"], name="resize", mode=mode),
             helper.make_node("QuantizeLinear", ["r", "s", "z"], ["rq"], name="qr"),
             helper.make_node("DequantizeLinear", ["rq", "s", "z"], ["y"], name="dqr")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 5, 5])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2, 10, 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])


@pytest.mark.parametrize("elem", [onnx.TensorProto.INT4, onnx.TensorProto.UINT4, onnx.TensorProto.FLOAT8E5M2])
def test_quantized_outputs_onnxruntime_returns_no_array_for_are_checked_through_a_cast(elem):
    """onnxruntime's Python API returns no int4, uint4 or float8_e5m2 array
    ("No corresponding Numpy type"): the local check fetches such a
    QuantizeLinear output through an exact Cast (int8, uint8, float32)
    rather than failing and rolling the rewrite back."""
    model = _qdq_resize("nearest", elem)
    new, report, records = run(model)
    r = records["resize"]
    assert (r.status, r.form) == (REWRITTEN, "shuffle"), r.reason
    assert r.quantized_steps["spec"] == ZERO, r.quantized_steps
    assert report.verification.equivalent is True


def test_a_rewrite_onnxruntime_would_fuse_into_an_int4_qlinearconv_is_rolled_back_saying_so():
    """int4 activations: the bilinear Resize's ConvTranspose lowered to a Conv
    would be fused by onnxruntime into a QLinearConv of int4, which it
    refuses (it would not load the written model): rolled back, saying so."""
    model = _qdq_resize("linear", onnx.TensorProto.INT4)
    new, report, records = run(model)
    r = records["resize/resize/deconv"]
    assert (r.status, r.code) == (ROLLED_BACK, Code.VERIFICATION_FAILED), r.reason
    assert "fused int8 execution" in r.reason and "tensor(int4)" in r.reason and "QLinearConv" in r.reason, r.reason
