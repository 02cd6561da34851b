"""convtranspose: a BatchNormalization after a ConvTranspose, folded into the kernels.

ConvTranspose -> BatchNormalization (inference) becomes the ConvTranspose's
lowering with W'[:, o] = W[:, o] * s[o], B' = B * s + t
(passes/convtranspose/batchnorm.py).  Every positive case goes through
assert_rewrites (op counts show the BatchNormalization gone, numeric
equivalence against onnxruntime on the original); the cases left alone say why.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper, numpy_helper

from builders import convt_model
from convrewrite import optimize
from convrewrite.core.graph import GraphView
from convrewrite.core.report import REWRITTEN
from convrewrite.core.rewrite import Match
from convrewrite.target import load_profile
from helpers import assert_rewrites, op_counts
from passes.convtranspose.batchnorm import fold, read_norm
from passes.convtranspose.rewrite import ConvTransposeToConv
from test_convtranspose import COST_CASES, assert_costs_exact

PASS = ConvTransposeToConv()
GONE = {"ConvTranspose": 0, "BatchNormalization": 0}


def with_norm(model: onnx.ModelProto, seed: int = 1, params: str = "initializer", opset=None,
              **attrs) -> onnx.ModelProto:
    """The ConvTranspose's output y read by BatchNormalization(gamma, beta,
    mean, var) -> z, the graph's output; `params` "initializer" or "input"
    (graph inputs: computed at run time)."""
    node = model.graph.node[-1]
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    w = next(t for t in model.graph.initializer if t.name == "W")
    cout, et = w.dims[1] * group, w.data_type
    dtype = helper.tensor_dtype_to_np_dtype(et)
    rng = np.random.default_rng(seed)
    values = {"gamma": rng.uniform(0.5, 2, cout), "beta": rng.standard_normal(cout),
              "mean": rng.standard_normal(cout), "var": rng.uniform(0.1, 3, cout)}
    for name, v in values.items():
        if params == "input":
            model.graph.input.append(helper.make_tensor_value_info(name, et, [cout]))
        else:
            model.graph.initializer.append(numpy_helper.from_array(v.astype(dtype), name))
    model.graph.node.append(helper.make_node("BatchNormalization", ["y", *values], ["z"], name="bn", **attrs))
    model.graph.output[0].name = "z"
    if opset is not None:
        model.opset_import[0].version = opset
    return model


def rewrites(model, target=None):
    new, report = optimize(model, passes=[PASS], target=target)
    return new, report.records(REWRITTEN), report


# --- folded ----------------------------------------------------------------------

@pytest.mark.parametrize("x_shape,cout,kernel,attrs,expect", [
    ((1, 6, 8, 8), 3, (4, 4), dict(strides=[2, 2], pads=[1, 1, 1, 1]), {"Conv": 4, "DepthToSpace": 1}),  # pix2pix
    ((1, 8, 6, 6), 4, (2, 2), dict(strides=[2, 2]), {"Conv": 1, "DepthToSpace": 1}),
    ((1, 3, 16), 2, (4,), dict(strides=[2], pads=[1, 1]), {"Conv": 1}),                       # 1-D
    ((1, 4, 5, 6), 3, (3, 3), dict(strides=[2, 2], group=2), {}),                              # grouped
    ((1, 4, 5, 6), 1, (3, 3), dict(strides=[2, 2], group=4), {}),                              # depthwise
    ((1, 2, 7, 7), 5, (3, 3), dict(pads=[1, 1, 1, 1]), {"Conv": 1}),                           # stride 1
])
@pytest.mark.parametrize("bias", [True, False])
def test_batchnorm_after_a_convtranspose_is_folded_into_its_lowering(x_shape, cout, kernel, attrs, expect, bias):
    model = with_norm(convt_model(x_shape, cout, kernel, bias=bias, **attrs))
    new, report = assert_rewrites(model, PASS, {**GONE, **expect, "Add": 0, "Mul": 0})
    rec = report.records(REWRITTEN)[0]
    assert rec.nodes_before == 2
    assert "folded BatchNormalization 'bn' into the phase kernels and bias" in rec.notes
    assert len(report.rewrites) == 1          # the BatchNormalization has no record of its own


@pytest.mark.parametrize("float32_norm", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_float16_folds_in_float64_and_keeps_its_dtype(bias, float32_norm):
    """Opset 15 lets the BatchNormalization's parameters be float32 under float16 data."""
    model = with_norm(convt_model((1, 4, 6, 6), 3, (4, 4), dtype=np.float16, bias=bias, strides=[2, 2],
                                  pads=[1, 1, 1, 1]), opset=15)
    if float32_norm:
        for t in model.graph.initializer:
            if t.name in ("gamma", "beta", "mean", "var"):
                t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name))
    new, _ = assert_rewrites(model, PASS, GONE)
    assert {t.data_type for t in new.graph.initializer} == {onnx.TensorProto.FLOAT16}


@pytest.mark.parametrize("opset,attrs", [(7, dict(spatial=1)), (9, {}), (14, dict(training_mode=0)), (15, {})])
def test_every_opsets_inference_semantics_is_folded(opset, attrs):
    model = with_norm(convt_model((1, 4, 5, 5), 2, (3, 3), strides=[2, 2]), opset=opset, epsilon=1e-3, **attrs)
    assert_rewrites(model, PASS, GONE)


def test_the_fold_is_the_formula_per_output_channel_of_a_grouped_weight():
    """W [Cin, Cout/g, k]: input channel i of group i // (Cin/g) writes output
    channel (i // (Cin/g)) * (Cout/g) + j."""
    model = with_norm(convt_model((1, 4, 5), 3, (2,), group=2, strides=[2]))
    graph = GraphView(model)
    norm = read_norm(model.graph.node[0], graph)
    w, b = graph.constant("W").astype(np.float64), graph.constant("B").astype(np.float64)
    gamma, beta, mean, var = (graph.constant(n).astype(np.float64) for n in ("gamma", "beta", "mean", "var"))
    s = gamma / np.sqrt(var + np.float32(1e-5))
    w2, b2 = fold(graph.constant("W"), graph.constant("B"), 2, norm, graph)
    for i in range(4):
        for j in range(3):
            o = (i // 2) * 3 + j
            np.testing.assert_allclose(w2[i, j], (w[i, j] * s[o]).astype(np.float32))
    np.testing.assert_allclose(b2, ((b - mean) * s + beta).astype(np.float32), rtol=1e-6)


@pytest.mark.parametrize("case", [0, 1, 4, 6, 10, 15, 17])
def test_form_costs_are_exact_with_a_folded_batchnorm(case):
    """Every form and variant, with and without a bias: the Cost the chooser
    sees equals the built replacement's (a fold without B adds one)."""
    x_shape, cout, kernel, attrs = COST_CASES[case]
    for bias in (True, False):
        model = with_norm(convt_model(x_shape, cout, kernel, bias=bias, **attrs))
        assert PASS.match(model.graph.node[0], GraphView(model)).params.norm is not None
        assert assert_costs_exact(model, node=0)


def test_the_tflite_profile_folds_and_adds_the_folded_bias_after_the_shuffle():
    model = with_norm(convt_model((1, 8, 6, 6), 4, (2, 2), bias=False, strides=[2, 2]))
    new, report = assert_rewrites(model, PASS, {**GONE, "Conv": 1, "DepthToSpace": 1, "Add": 1},
                                  target=load_profile("tflite"))
    assert "bias after the shuffle" in report.records(REWRITTEN)[0].variant


def test_a_target_that_runs_the_convtranspose_keeps_both_nodes():
    model = with_norm(convt_model((1, 8, 6, 6), 4, (2, 2), strides=[2, 2]))
    new, rewritten, report = rewrites(model, target=load_profile("arm-ethos-n78"))
    assert not rewritten and op_counts(new) == op_counts(model)


# --- left alone ------------------------------------------------------------------

def two_readers(model):
    model.graph.node.append(helper.make_node("Relu", ["y"], ["r"], name="relu"))
    model.graph.output.append(helper.make_tensor_value_info("r", onnx.TensorProto.FLOAT, [None] * 4))
    return model


def y_also_output(model):
    model.graph.output.append(helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None] * 4))
    return model


def y_read_by_a_subgraph(model):
    """An If whose branches read y: `consumers` does not list that read."""
    vi = lambda n: helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [None] * 4)
    branch = lambda o: helper.make_graph([helper.make_node("Identity", ["y"], [o])], o, [], [vi(o)])
    model.graph.input.append(helper.make_tensor_value_info("c", onnx.TensorProto.BOOL, []))
    model.graph.node.append(helper.make_node("If", ["c"], ["w"], name="if", then_branch=branch("t"),
                                             else_branch=branch("e")))
    model.graph.output.append(vi("w"))
    return model


def runtime_bias(model):
    node = model.graph.node[0]
    model.graph.input.append(helper.make_tensor_value_info("B_run_time", onnx.TensorProto.FLOAT, [4]))
    node.input.append("B_run_time")
    return model


def mean_shape(model):
    t = next(t for t in model.graph.initializer if t.name == "mean")
    t.CopyFrom(numpy_helper.from_array(np.zeros((4, 1, 1), np.float32), "mean"))
    return model


def per_position(model):
    """spatial=0 (opset 7, 8): parameters [C, H, W], one per output position."""
    for t in model.graph.initializer:
        if t.name in ("gamma", "beta", "mean", "var"):
            t.CopyFrom(numpy_helper.from_array(np.full((4, 8, 8), 0.5, np.float32), t.name))
    return model


def norm_values(model, **values):
    """The BatchNormalization's parameters set per channel (a list) or its epsilon (a float)."""
    for t in model.graph.initializer:
        if t.name in values:
            t.CopyFrom(numpy_helper.from_array(np.array(values[t.name], numpy_helper.to_array(t).dtype), t.name))
    if "epsilon" in values:
        model.graph.node[-1].attribute.append(helper.make_attribute("epsilon", values["epsilon"]))
    return model


def float16_overflow():
    """W * s beyond float16's 65504 (gamma 1e4 on a weight of up to about 25): the folded kernel
    would hold Inf, making Inf or NaN of every output it touches."""
    model = with_norm(convt_model((1, 2, 4, 4), 4, (2, 2), dtype=np.float16, strides=[2, 2]))
    w = next(t for t in model.graph.initializer if t.name == "W")
    w.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(w) * 10).astype(np.float16), "W"))
    return norm_values(model, gamma=[1e4, 1, 1, 1], var=[1, 1, 1, 1])


@pytest.mark.parametrize("case,why", [
    (lambda: two_readers(with_norm(convt_model((1, 2, 4, 4), 4, (2, 2), strides=[2, 2]))), None),
    (lambda: y_also_output(with_norm(convt_model((1, 2, 4, 4), 4, (2, 2), strides=[2, 2]))), "is a graph output"),
    (lambda: y_read_by_a_subgraph(with_norm(convt_model((1, 2, 4, 4), 4, (2, 2), strides=[2, 2]))),
     "a subgraph (If/Loop/Scan body) reads"),
    (lambda: with_norm(convt_model((1, 2, 4, 4), 4, (2, 2), strides=[2, 2]), training_mode=1),
     "training_mode=1"),
    (lambda: with_norm(convt_model((1, 2, 4, 4), 4, (2, 2), strides=[2, 2]), params="input"),
     "input 'gamma' is computed at run time"),
    (lambda: with_norm(runtime_bias(convt_model((1, 2, 4, 4), 4, (2, 2), bias=False, strides=[2, 2]))),
     "weight or bias is computed at run time"),
    (lambda: mean_shape(with_norm(convt_model((1, 2, 4, 4), 4, (2, 2), strides=[2, 2]))), "shape (4, 1, 1)"),
    (lambda: per_position(with_norm(convt_model((1, 2, 4, 4), 4, (2, 2), strides=[2, 2]), opset=7, spatial=0)),
     "spatial=0"),
    # the fold is exact for finite s and t and W', B' within W's type only (Inf and NaN land elsewhere):
    # var + epsilon = 0 used to be folded, Inf where the BatchNormalization has (y - mean) * Inf, NaN
    # where the folded taps' Infs of both signs meet (written silently with --no-verify)
    (lambda: norm_values(with_norm(convt_model((1, 2, 4, 4), 4, (2, 2), strides=[2, 2])), var=[0, 1, 1, 1],
                         mean=[0.5, 0, 0, 0], epsilon=0.0), "sqrt(var + epsilon) or B - mean * that is not finite"),
    (lambda: norm_values(with_norm(convt_model((1, 2, 4, 4), 4, (2, 2), strides=[2, 2])), gamma=[1, np.nan, 1, 1]),
     "sqrt(var + epsilon) or B - mean * that is not finite"),
    (float16_overflow, "the folded kernels or bias would not be finite in float16"),
], ids=["read-twice", "graph-output", "subgraph-reader", "training-mode", "runtime-parameters", "runtime-bias", "shape",
        "spatial-0", "var-plus-epsilon-0", "nan-scale", "float16-overflow"])
def test_left_alone_the_convtranspose_is_lowered_and_the_batchnorm_stays(case, why):
    model = case()
    graph = GraphView(model)
    norm = read_norm(model.graph.node[0], graph)
    assert norm is None if why is None else why in norm, norm
    new, rewritten, report = rewrites(model)
    assert [r.node for r in rewritten] == ["up"] and rewritten[0].nodes_before == 1
    counts = op_counts(new)
    assert counts["ConvTranspose"] == 0 and counts["BatchNormalization"] == 1
    if why is not None:
        assert any(why in n for n in rewritten[0].notes), rewritten[0].notes
    assert report.verification.equivalent is True


def test_batchnorm_output_declared_in_training_mode_before_opset_14_is_not_folded():
    """Opsets 7-13: an output besides Y means training mode (the batch's statistics)."""
    model = with_norm(convt_model((1, 2, 4, 4), 4, (2, 2), strides=[2, 2]), opset=13)
    model.graph.node[-1].output.extend(["running_mean"])
    assert "make it run in training mode" in read_norm(model.graph.node[0], GraphView(model))


def test_batchnorm_before_opset_7_is_not_folded():
    """Opsets 1-6: is_test (default 0, training) and consumed_inputs; not folded."""
    model = with_norm(convt_model((1, 2, 4, 4), 4, (2, 2), strides=[2, 2]), opset=6, is_test=1)
    assert "opset 6 (is_test, consumed_inputs) is not folded" in read_norm(model.graph.node[0], GraphView(model))


def qdq_model() -> onnx.ModelProto:
    """DQ(x int8) -> ConvTranspose(DQ(w int8)) -> BatchNormalization -> Q."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.integers(-20, 20, (2, 4, 2, 2)).astype(np.int8), "Wq"),
             numpy_helper.from_array(np.float32(0.05), "s"), numpy_helper.from_array(np.int8(0), "zp")]
    for name, v in {"gamma": rng.uniform(0.5, 2, 4), "beta": rng.standard_normal(4),
                    "mean": rng.standard_normal(4), "var": rng.uniform(0.1, 3, 4)}.items():
        inits.append(numpy_helper.from_array(v.astype(np.float32), name))
    nodes = [helper.make_node("DequantizeLinear", ["x", "s", "zp"], ["xf"], name="dq_x"),
             helper.make_node("DequantizeLinear", ["Wq", "s", "zp"], ["W"], name="dq_w"),
             helper.make_node("ConvTranspose", ["xf", "W"], ["y"], name="up", strides=[2, 2]),
             helper.make_node("BatchNormalization", ["y", "gamma", "beta", "mean", "var"], ["z"], name="bn"),
             helper.make_node("QuantizeLinear", ["z", "s", "zp"], ["q"], name="q")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.INT8, [1, 2, 4, 4])],
                              [helper.make_tensor_value_info("q", onnx.TensorProto.INT8, [None] * 4)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_quantized_convtranspose_is_not_folded():
    """A QDQ ConvTranspose is lowered only by the quantized forms, which fold
    nothing: one whose output goes into a BatchNormalization instead of a
    QuantizeLinear is left as it is, the BatchNormalization too."""
    model = qdq_model()
    new, rewritten, report = rewrites(model)
    assert not rewritten
    (rec,) = report.rewrites
    assert rec.code == "quantized" and "does not go into one QuantizeLinear alone" in rec.reason, rec.reason
    assert op_counts(new) == op_counts(model)


def test_a_fold_that_is_rolled_back_lowers_the_convtranspose_alone(monkeypatch):
    """The driver re-matches the ConvTranspose alone (match_alone); the
    BatchNormalization gets no record of its own and stays."""
    import passes.convtranspose.forms as forms_module
    real = forms_module.fold

    def wrong(*args):
        w, b = real(*args)
        return w, b + 1
    monkeypatch.setattr(forms_module, "fold", wrong)
    model = with_norm(convt_model((1, 2, 4, 4), 4, (2, 2), strides=[2, 2]))
    new, rewritten, report = rewrites(model)
    assert [(r.node, r.nodes_before) for r in rewritten] == [("up", 1)]
    assert all(r.op == "ConvTranspose" for r in report.rewrites)
    assert op_counts(new)["BatchNormalization"] == 1 and report.verification.equivalent is True


# --- property sweep ----------------------------------------------------------------

@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(st.sampled_from(range(len(COST_CASES))), st.booleans(), st.sampled_from([np.float32, np.float16]),
       st.integers(0, 99))
def test_property_folded_lowerings_compute_the_original(case, bias, dtype, seed):
    x_shape, cout, kernel, attrs = COST_CASES[case]
    model = with_norm(convt_model(x_shape, cout, kernel, bias=bias, dtype=dtype, seed=seed, **attrs), seed=seed)
    match = PASS.match(model.graph.node[0], GraphView(model))
    assert isinstance(match, Match) and match.params.norm is not None
    assert_rewrites(model, PASS, GONE)


def test_without_verification_a_batchnorm_dividing_by_zero_still_computes_the_original():
    """var + epsilon = 0 on a channel: the BatchNormalization's output there is
    (y - mean) * Inf.  Folded, the kernels held Inf and the output NaN where the
    original has -Inf or Inf, and --no-verify wrote that model silently."""
    from convrewrite.core.equivalence import random_feeds, run_onnxruntime, runtime_inputs

    model = norm_values(with_norm(convt_model((1, 2, 4, 4), 4, (2, 2), strides=[2, 2])), var=[0, 1, 1, 1],
                        mean=[0.5, 0, 0, 0], epsilon=0.0)
    new, report = optimize(model, passes=[PASS], verify=False)
    assert op_counts(new).get("ConvTranspose", 0) == 0 and op_counts(new)["BatchNormalization"] == 1
    feeds = random_feeds(runtime_inputs(model), 0)
    want, got = run_onnxruntime(model, feeds)[0], run_onnxruntime(new, feeds)[0]
    assert not np.isfinite(want).all()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)   # Inf and NaN where the original has them
