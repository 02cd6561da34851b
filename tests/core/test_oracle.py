"""The whole-model check on deep and unstable models: the original's own
noise is measured (only when a comparison fails), a result within it is
accepted and the report says the model is unstable and by how much; the
noise never hides a real error where the original is stable; bisection
respects its bounds in time and in rollbacks."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import convrewrite.core.oracle as oracle
from builders import relu_then_custom_op
from convrewrite import optimize
from convrewrite.core.equivalence import compare_within_noise, random_feeds, run_onnxruntime, runtime_inputs
from convrewrite.core.report import REWRITTEN, ROLLED_BACK
from toy_passes import AddToSub, ClipForm, ReluToClip, ReluToMax, relu_both_signs


def chaotic_chain(blocks: int, seed: int = 0, gain: float = 3.0, mixing: int = 0, c: int = 4, hw: int = 8,
                  stable_branch: bool = False) -> onnx.ModelProto:
    """One chain of `blocks` random blocks on a (1, c, hw, hw) input, three
    candidates each: a ConvTranspose (k2/p0, k4/p1 or k3/p1/output_padding 1,
    stride 2: hw -> 2hw), a dilated stride-2 Conv (rate 2 or 3: back to hw), a
    Resize x2 (nearest or linear, which the resize pass lowers to a
    ConvTranspose), then a stride-2 Conv with gain `gain` and a Tanh, and
    `mixing` more Conv + Tanh layers of the same gain.  A random Tanh network
    of gain 3 is chaotic: a one-ulp change of the input grows by about e^0.25
    per layer until it saturates.  `stable_branch` concatenates Relu(x) to the
    output (channels c..2c): a part where the model is stable."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"

    def weight(name, shape, fan_in, g=1.0):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * g / np.sqrt(fan_in)).astype(np.float32),
                                             name))
        return name

    for k in range(blocks):
        kt, pt, op = [(2, 0, 0), (4, 1, 0), (3, 1, 1)][rng.integers(3)]
        nodes.append(helper.make_node("ConvTranspose", [x, weight(f"wt{k}", (c, c, kt, kt), c * kt * kt / 4)],
                                      [f"u{k}"], name=f"up{k}", strides=[2, 2], pads=[pt] * 4,
                                      output_padding=[op, op]))
        d = int(rng.integers(2, 4))
        nodes.append(helper.make_node("Conv", [f"u{k}", weight(f"wd{k}", (c, c, 3, 3), c * 9)], [f"d{k}"],
                                      name=f"atrous{k}", strides=[2, 2], dilations=[d, d], pads=[d] * 4))
        inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), f"s{k}"))
        nodes.append(helper.make_node("Resize", [f"d{k}", "", f"s{k}"], [f"r{k}"], name=f"resize{k}",
                                      mode=["nearest", "linear"][rng.integers(2)]))
        nodes.append(helper.make_node("Conv", [f"r{k}", weight(f"wc{k}", (c, c, 3, 3), c * 9, gain)], [f"c{k}"],
                                      name=f"down{k}", strides=[2, 2], pads=[1] * 4))
        nodes.append(helper.make_node("Tanh", [f"c{k}"], [f"t{k}"], name=f"tanh{k}"))
        x = f"t{k}"
        for j in range(mixing):
            nodes.append(helper.make_node("Conv", [x, weight(f"wm{k}_{j}", (c, c, 3, 3), c * 9, gain)],
                                          [f"m{k}_{j}"], name=f"mix{k}_{j}", pads=[1] * 4))
            nodes.append(helper.make_node("Tanh", [f"m{k}_{j}"], [f"mt{k}_{j}"], name=f"mixtanh{k}_{j}"))
            x = f"mt{k}_{j}"
    out_c = c
    if stable_branch:
        nodes.append(helper.make_node("Relu", ["x"], ["stable"], name="stable_relu"))
        nodes.append(helper.make_node("Concat", [x, "stable"], ["y"], name="concat", axis=1))
        x, out_c = "y", 2 * c
    g = helper.make_graph(nodes, "chaotic", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, hw, hw])],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, out_c, hw, hw])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _kept(report) -> float:
    """The share of rewrites kept: rewritten against rewritten or rolled back
    (a node a pass left alone, e.g. a shuffle too small to respell, is neither)."""
    kept, rolled = len(report.records(REWRITTEN)), len(report.records(ROLLED_BACK))
    return kept / (kept + rolled)


# --- (a) a chaotic model: accepted within its own noise, and said to be unstable ---------

def test_the_chaotic_generator_is_chaotic():
    m = chaotic_chain(20, mixing=4)
    feeds = random_feeds(runtime_inputs(m), 0)
    a = run_onnxruntime(m, feeds)[0]
    b = run_onnxruntime(m, {"x": np.nextafter(feeds["x"], np.float32(np.inf))})[0]
    assert np.abs(b - a).max() > 0.2 * np.abs(a).max()  # one ulp at the input moves the output by > 20%


def test_a_chaotic_model_is_accepted_within_its_own_noise_and_reported_unstable():
    model = chaotic_chain(20, mixing=4)
    new, report = optimize(model)
    v = report.verification
    assert len(report.rewrites) >= 60 and _kept(report) == 1.0, \
        [r.reason for r in report.rewrites if r.status != REWRITTEN]
    assert v.performed and v.equivalent is True and v.within_noise and v.unstable
    assert v.noise_rel_error > 0.2 and v.noise_abs_error > 0.2
    assert v.max_abs_error <= oracle.NOISE_FACTOR * (v.noise_abs_error + 1e-4 * 1.0 + 1e-6)
    assert set(v.noise_probes) == {"inputs +1 ulp", "inputs -1 ulp", "onnxruntime graph optimizations"}
    assert v.bisection_rolled_back == 0 and v.bisection_stopped == "" and v.bisection_seconds == 0
    text = report.summary()
    assert "equivalent within the original's own noise" in text
    assert "numerically unstable" in text and f"{v.noise_abs_error:.3g}" in text and "local checks" in text
    d = json.loads(report.to_json())["verification"]
    assert d["unstable"] is True and d["within_noise"] is True and d["noise_abs_error"] == v.noise_abs_error
    assert d["noise_rel_error"] == v.noise_rel_error and d["bisection_stopped"] == ""


@pytest.mark.slow
def test_the_issue_size_chaotic_model_is_verified_without_bisection_keeping_99_percent():
    # issue 12: one chain of 334 random blocks, 1,002 candidates; before the
    # noise rule bisection ran for 100 s and rolled back 292 rewrites.  The
    # time itself (issue: under 20 s) is measured by benchmarks/bench_unstable.py,
    # not here: what made it slow was bisection, and none runs.
    model = chaotic_chain(334)
    new, report = optimize(model)
    v = report.verification
    first = [r for r in report.rewrites if r.op in ("ConvTranspose", "Conv", "Resize") and "/" not in r.node]
    assert len(first) == 1002
    assert v.bisection_seconds == 0 and v.bisection_rolled_back == 0 and v.bisection_stopped == ""
    assert _kept(report) >= 0.99, _kept(report)
    assert v.equivalent is True and v.within_noise and v.unstable and v.noise_rel_error > 0.2


def test_a_stable_model_that_passes_pays_nothing_for_the_noise():
    _, report = optimize(chaotic_chain(3, gain=0.5))
    v = report.verification
    assert v.equivalent is True and not v.unstable and not v.within_noise
    assert v.noise_abs_error is None and v.noise_probes == []  # never measured


# --- (b) the noise never hides a real error ---------------------------------------------

def test_a_wrong_rewrite_in_a_stable_model_is_still_bisected_and_rolled_back():
    model = relu_both_signs()
    new, report = optimize(model, passes=[ReluToClip()], inputs={"x": np.full((1, 3, 4), 100.0, np.float32)})
    v = report.verification
    assert {r.node: r.status for r in report.rewrites} == {"r1": ROLLED_BACK, "r3": REWRITTEN}
    assert v.equivalent is True and not v.within_noise
    assert v.noise_probes and not v.unstable                     # measured, once, and found stable
    assert v.noise_abs_error <= 1e-6 + 1e-4 * 100
    assert v.bisection_rolled_back == 1 and v.bisection_stopped == ""
    assert "numerically unstable" not in report.summary()


def test_where_the_original_is_stable_its_noise_elsewhere_excuses_nothing():
    # One output: a chaotic part (values in [-1, 1], moving by ~2) and Relu(x),
    # stable.  A Clip at 5 is wrong on the inputs set to 6 by at most 1: within
    # 4x the output's noise, but far beyond the stable elements' own spread.
    model = chaotic_chain(20, mixing=4, stable_branch=True)
    feeds = random_feeds(runtime_inputs(model), 0)
    feeds["x"][0, 0, 0, :3] = 6.0

    class Clip5(ClipForm):
        hi = 5.0

    class ReluToClip5(ReluToMax):
        name = "relu-to-clip5"
        forms = (Clip5(),)

    new, report = optimize(model, passes=[ReluToClip5()], inputs=feeds)
    v = report.verification
    (record,) = report.rewrites
    assert record.status == ROLLED_BACK and "whole-model check failed" in record.reason, record.reason
    assert v.unstable and v.noise_abs_error > 0.2          # the chaotic part's noise was measured...
    assert 1.0 < oracle.NOISE_FACTOR * v.noise_abs_error   # ...and would have covered the error by itself
    assert v.equivalent is True and not v.within_noise
    assert new.SerializeToString() == model.SerializeToString()


def test_compare_within_noise_element_by_element():
    want = np.array([1.0, 1.0, 0.0, 0.0], np.float32)
    spread = np.array([0.0, 0.0, 0.5, np.inf])          # stable, stable, unstable, became NaN under a probe
    allowed = 1e-6 + 1e-4 * 1.0
    ok = compare_within_noise("y", want, want + np.float32([0, 0, 1.9, -1.9]), spread, 4.0)
    assert ok and ok.noise == 0.5 and "within 4x" in ok.message
    too_far = compare_within_noise("y", want, want + np.float32([0, 0, 2.1, 0]), spread, 4.0)
    assert not too_far
    stable_wrong = compare_within_noise("y", want, want + np.float32([5 * allowed, 0, 0, 0]), spread, 4.0)
    assert not stable_wrong and "where the reference is stable" in stable_wrong.message
    nan = compare_within_noise("y", want, np.float32([1, 1, 0, np.nan]), spread, 4.0)
    assert not nan and nan.noise is None                 # NaN/Inf mismatches are never excused
    quiet = compare_within_noise("y", want, want + np.float32([0, 0, 1e-3, 0]), np.zeros(4), 4.0)
    assert not quiet and quiet.noise is None             # a stable reference: the ordinary rule


# --- (c) bisection's bounds ------------------------------------------------------------------

def _branches(bad: set, n: int = 12):
    """y = sum_i Relu(c_i * x), c_i = 100 for i in `bad` (Clip at 50 is wrong
    there on x = 1), 1 elsewhere; each Relu is one rewrite."""
    nodes, inits, terms = [], [], []
    for i in range(n):
        inits.append(numpy_helper.from_array(np.array(100.0 if i in bad else 1.0, np.float32), f"c{i}"))
        nodes += [helper.make_node("Mul", ["x", f"c{i}"], [f"m{i}"], name=f"mul{i}"),
                  helper.make_node("Relu", [f"m{i}"], [f"r{i}"], name=f"relu{i}")]
        terms.append(f"r{i}")
    nodes.append(helper.make_node("Sum", terms, ["y"], name="sum"))
    io = [helper.make_tensor_value_info(v, TensorProto.FLOAT, [1, 4]) for v in ("x", "y")]
    model = helper.make_model(helper.make_graph(nodes, "g", io[:1], io[1:], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    return model, {"x": np.ones((1, 4), np.float32)}


BAD = {0, 4, 7, 10}


def test_bisection_without_reaching_a_bound_rolls_back_exactly_the_culprits():
    model, feeds = _branches(BAD)
    _, report = optimize(model, passes=[ReluToClip()], inputs=feeds)
    v = report.verification
    assert {r.node for r in report.records(ROLLED_BACK)} == {f"relu{i}" for i in BAD}
    assert all("(max abs error 50)" in r.reason for r in report.records(ROLLED_BACK))  # the culprit's own error
    assert v.equivalent and v.bisection_rolled_back == 4 and v.bisection_stopped == ""
    assert "bisection: rolled back 4 rewrite(s)" in report.summary()


def test_bisection_stops_at_its_rollback_bound_and_keeps_what_passed(monkeypatch):
    monkeypatch.setattr(oracle, "BISECT_ROLLBACKS", 2)
    model, feeds = _branches(BAD)
    _, report = optimize(model, passes=[ReluToClip()], inputs=feeds)
    v = report.verification
    kept = {r.node for r in report.records(REWRITTEN)}
    assert v.equivalent is True and "bound of 2" in v.bisection_stopped, v.bisection_stopped
    assert not kept & {f"relu{i}" for i in BAD} and kept     # no culprit kept; what passed is kept
    stopped = [r for r in report.records(ROLLED_BACK) if "bisection stopped" in r.reason]
    assert stopped and len(kept) + len(report.records(ROLLED_BACK)) == 12
    assert "stopped: it found" in report.summary()


def test_bisection_stops_at_its_time_bound(monkeypatch):
    monkeypatch.setattr(oracle, "BISECT_SECONDS", 0.0)
    monkeypatch.setattr(oracle, "BISECT_COMPARISONS", 0)
    model, feeds = _branches(BAD)
    new, report = optimize(model, passes=[ReluToClip()], inputs=feeds)
    v = report.verification
    assert "time bound" in v.bisection_stopped and v.equivalent is True
    assert all(r.status == ROLLED_BACK and "bisection stopped" in r.reason for r in report.rewrites)
    assert new.SerializeToString() == model.SerializeToString()
    assert v.bisection_seconds < 5


def test_the_time_bound_scales_with_the_cost_of_one_comparison(monkeypatch):
    monkeypatch.setattr(oracle, "BISECT_SECONDS", 0.0)
    monkeypatch.setattr(oracle, "BISECT_COMPARISONS", 10 ** 6)   # a million comparisons' time: never reached
    model, feeds = _branches(BAD)
    _, report = optimize(model, passes=[ReluToClip()], inputs=feeds)
    assert report.verification.bisection_stopped == "" and report.verification.bisection_rolled_back == 4


def _bfloat16_input_model(with_relu: bool):
    """A bfloat16 graph input cast to float, then a Relu (the toy pass's candidate) or a Neg."""
    nodes = [helper.make_node("Cast", ["x"], ["f"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("Relu" if with_relu else "Neg", ["f"], ["y"], name="act")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_an_input_type_without_random_values_fails_the_check_only_where_something_is_rewritten():
    # it was a ValueError out of optimize (exit 4), whether or not anything was rewritten
    _, report = optimize(_bfloat16_input_model(with_relu=False), passes=[ReluToMax()])
    assert not report.records(REWRITTEN) and report.verification.equivalent is not False
    _, report = optimize(_bfloat16_input_model(with_relu=True), passes=[ReluToMax()])
    assert report.records(REWRITTEN) and report.verification.equivalent is not True  # the CLI: exit 1, nothing written
    assert "input 'x' has element type BFLOAT16" in report.verification.detail
    # an .npz of bfloat16 reaches onnxruntime as void bytes, which it refuses: --inputs cannot help
    assert "skip the check with --no-verify" in report.verification.detail
    assert "--inputs" not in report.verification.detail


def test_a_string_or_sequence_input_gets_advice_that_can_be_followed():
    from convrewrite.core.equivalence import UnfeedableType, random_feeds

    with pytest.raises(UnfeedableType) as e:
        random_feeds([helper.make_tensor_value_info("s", TensorProto.STRING, [2])])
    assert e.value.advice == "give real inputs with --inputs FEEDS.npz"
    seq = helper.make_tensor_sequence_value_info("q", TensorProto.FLOAT, [2])
    with pytest.raises(UnfeedableType, match=r"input 'q' has no tensor type \(a sequence, a map or an optional\)"):
        random_feeds([seq])


def test_check_models_names_the_input_it_cannot_make_values_for():
    from convrewrite.core.equivalence import RunError, check_models
    with pytest.raises(RunError, match="input 'x' has element type BFLOAT16"):
        check_models(_bfloat16_input_model(True), _bfloat16_input_model(True))


@pytest.mark.parametrize("inputs", [None, {"x": np.ones((1, 4), np.float32)}])
def test_an_operator_neither_engine_knows_is_named_and_no_inputs_are_asked_for(inputs):
    """It was "random inputs do not run it" and --inputs advice, which cannot help."""
    _, report = optimize(relu_then_custom_op(), passes=[ReluToMax()], inputs=inputs)
    v = report.verification
    assert report.records(REWRITTEN) and v.equivalent is None and not v.performed
    assert v.detail.startswith("the original model could not be run: neither onnxruntime nor onnx's reference "
                               "evaluator knows the operator Gelu2 of domain 'com.example' (node 'mine'), whatever "
                               "the inputs (onnxruntime: "), v.detail
    assert v.detail.endswith("Each rewrite's local check still ran: --force writes the result on that evidence")
    assert "--inputs" not in v.detail and "random" not in v.detail


def test_nothing_rewritten_in_a_model_onnxruntime_refuses_runs_no_reference_evaluation(monkeypatch):
    """The original's run on the thread fails (an operator onnxruntime does
    not know); with nothing rewritten there is nothing to compare, so its
    second turn, the slow reference evaluator, is never taken."""
    from convrewrite.core import oracle

    ran, real = [], oracle.run_model
    monkeypatch.setattr(oracle, "run_model", lambda *a, **k: ran.append(1) or real(*a, **k))
    _, report = optimize(relu_then_custom_op(), passes=[AddToSub()])
    assert not report.records(REWRITTEN) and report.verification.equivalent is True
    assert ran == []


# --- an agreement on nothing is said to be one -----------------------------------------------

def _deconv() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((2, 2, 3, 3)).astype(np.float32), "w")
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1],
                            output_padding=[1, 1])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_compare_arrays_counts_the_elements_it_compared_by_value():
    from convrewrite.core.equivalence import compare_arrays

    a = np.array([1.0, np.nan, np.inf, 2.0], np.float32)
    assert compare_arrays("o", a, a.copy()).compared == 2
    assert compare_arrays("o", np.ones(3, np.float32), np.ones(3, np.float32)).compared == 3
    assert compare_arrays("o", np.full(3, np.nan, np.float32), np.full(3, np.nan, np.float32)).compared == 0
    assert compare_arrays("o", np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)).compared == 0
    assert compare_arrays("o", np.arange(3), np.arange(3)).compared == 3


def test_a_whole_model_check_that_compared_no_value_says_so_and_names_the_local_checks():
    from passes import make_passes

    nan = {"x": np.full((1, 2, 4, 4), np.nan, np.float32)}
    _, report = optimize(_deconv(), make_passes(["convtranspose"]), inputs=nan)
    v = report.verification
    assert v.performed and v.equivalent                 # NaN where the original has NaN: nothing differs
    assert v.detail.startswith("it compared no value (every output is empty, or NaN/Inf") and "1 local checks" in v.detail
    _, ordinary = optimize(_deconv(), make_passes(["convtranspose"]))
    assert ordinary.verification.equivalent and ordinary.verification.detail == ""


# --- the original's run in the background -------------------------------------

def _same_dilated_conv() -> onnx.ModelProto:
    """onnxruntime refuses a dilated Conv with auto_pad SAME: the reference evaluator runs it."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.standard_normal((2, 2, 3, 3)).astype(np.float32), "w")
    conv = helper.make_node("Conv", ["x", "w"], ["y"], dilations=[2, 2], auto_pad="SAME_UPPER")
    io_ = [helper.make_tensor_value_info(v, TensorProto.FLOAT, [1, 2, 8, 8]) for v in ("x", "y")]
    return helper.make_model(helper.make_graph([conv], "g", io_[:1], io_[1:], [w]),
                             opset_imports=[helper.make_opsetid("", 17)])


def _foreground(model, monkeypatch) -> "oracle.Oracle":
    from convrewrite.core.driver import Settings

    with monkeypatch.context() as m:
        m.setattr(oracle, "runs_in_background", lambda model: False)
        o = oracle.Oracle(model, Settings())
    assert o._background is None
    return o


def test_the_original_runs_in_the_background_from_its_bytes_as_they_were(monkeypatch):
    """The driver edits a model it loaded in place while the original runs:
    the run sees the model as it was when the oracle was made, and gives
    exactly what running it in the foreground gives."""
    from convrewrite.core.driver import Settings

    model = chaotic_chain(4, seed=1)
    want = _foreground(model, monkeypatch).want
    o = oracle.Oracle(model, Settings(), reload=lambda: pytest.fail("a run that succeeded reloads nothing"))
    assert o._background is not None
    del model.graph.node[:]                       # the passes at work on the same message
    assert o.engine == "onnxruntime" and len(o.want) == len(want)
    for a, b in zip(o.want, want):
        np.testing.assert_array_equal(a, b)
    assert o.seconds > 0


def test_an_original_onnxruntime_refuses_in_the_background_runs_on_the_reference_evaluator(monkeypatch):
    from convrewrite.core.driver import Settings

    model = _same_dilated_conv()
    want = _foreground(model, monkeypatch)
    assert want.engine == "reference"
    reloads = []
    o = oracle.Oracle(model, Settings(), reload=lambda: reloads.append(1) or _same_dilated_conv())
    assert o._background is not None
    del model.graph.node[:]                       # edited: the reference evaluator runs the original loaded again
    assert o.engine == "reference" and reloads == [1] and o.error is None
    np.testing.assert_array_equal(o.want[0], want.want[0])


def test_a_quantized_originals_fused_run_is_made_in_the_background_too(monkeypatch):
    from convrewrite.core.driver import Settings
    from qdq_models import quantized

    model = quantized("convt")
    fg = _foreground(model, monkeypatch)
    o = oracle.Oracle(model, Settings())
    assert o._background is not None and fg.want_fused is not None
    assert o.steps == fg.steps
    for a, b in zip(o.want + o.want_fused, fg.want + fg.want_fused):
        np.testing.assert_array_equal(a, b)


def test_large_weights_run_in_the_foreground(monkeypatch):
    from convrewrite.core import equivalence
    from convrewrite.core.driver import Settings

    monkeypatch.setattr(equivalence, "RUN_FROM_FILE_BYTES", 0)
    o = oracle.Oracle(_same_dilated_conv(), Settings())
    assert o._background is None and o.engine == "reference"


def test_a_run_that_ends_on_an_error_waits_for_the_background_and_raises(monkeypatch):
    """The passes raise (here: the first view): optimize waits for the original's run, then raises."""
    from convrewrite.core import driver

    joined = []
    abandon = oracle.Oracle.abandon
    monkeypatch.setattr(oracle.Oracle, "abandon", lambda self: joined.append(self._background) or abandon(self))
    monkeypatch.setattr(driver._Run, "all_passes", lambda self, model, o: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        optimize(chaotic_chain(2), [ReluToClip()])
    assert len(joined) == 1 and joined[0] is not None and not joined[0]._thread.is_alive()


def test_bisection_that_rolls_back_a_whole_pass_leaves_a_callers_model_as_it_was():
    """On x = 100 relu-to-clip's one rewrite fails the whole-model check and
    bisection rolls it back: it gives back the pass's input, here the
    caller's model itself, which add-to-sub's splice after it must not edit
    in place (the input model is never modified)."""
    from toy_passes import AddToSub

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4])
    w = numpy_helper.from_array(np.ones((1, 3, 4), np.float32), "w")
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="r1"), helper.make_node("Add", ["a", "w"], ["y"], name="add")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w]), opset_imports=[helper.make_opsetid("", 17)])
    before = model.SerializeToString()
    new, report = optimize(model, [ReluToClip(), AddToSub()], inputs={"x": np.full((1, 3, 4), 100.0, np.float32)})
    assert {r.node: r.status for r in report.rewrites} == {"r1": ROLLED_BACK, "add": REWRITTEN}
    assert report.verification.equivalent and [n.op_type for n in new.graph.node] == ["Relu", "Sub"]
    assert model.SerializeToString() == before and new is not model
