"""Local checks run in the session of their structure without their models
(core/local_check.py, core/shared_checks.py): a check's structure is read
from its parts, both sides run in one session, the graph's constants are fed
as the arrays the graph holds.  Whatever the path, every check gets the
verdict and the errors of its own run, and two checks share a session only
where their session models are the same."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convrewrite import optimize
from convrewrite.core import driver, local_check, shared_checks
from convrewrite.core.equivalence import Comparison, pinned_dims, random_feeds, run_model
from convrewrite.core.graph import GraphView
from convrewrite.core.local_check import LocalCheck, build_check, verify_checks
from convrewrite.core.qdq import compare_outputs
from convrewrite.core.rewrite import Match, Replacement
from convrewrite.core.shared_checks import shared_model, shared_structures
from convrewrite.core.weights import from_array, to_array


# --- random structures: a few kinds of candidates, so that some share a structure and some do not ---------

def random_model(seed: int, branches: int = 12) -> onnx.ModelProto:
    """Branches reading x, summed: ConvTranspose 2x2/s2 (then a Conv back
    down), a dilated Conv (rate 2 or 3), a Resize x2 (nearest or linear, then
    a Conv back down); each with or without a bias.  Channels, map size and
    a static or symbolic batch drawn per model."""
    rng = np.random.default_rng(seed)
    c, s = int(rng.choice([2, 3])), int(rng.choice([4, 6]))
    batch = "N" if rng.random() < 0.5 else 1
    nodes, inits, ends = [], [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")], []

    def weight(name, shape):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name))
        return name

    for b in range(branches):
        p, kind = f"b{b}", rng.choice(["convt", "dilated", "resize"])
        bias = [weight(f"{p}/bias", (c,))] if rng.random() < 0.5 else []
        down = helper.make_node("Conv", [f"{p}/up", weight(f"{p}/wd", (c, c, 2, 2))], [f"{p}/out"],
                                name=f"{p}/down", strides=[2, 2])
        if kind == "convt":
            nodes += [helper.make_node("ConvTranspose", ["x", weight(f"{p}/wt", (c, c, 2, 2)), *bias], [f"{p}/up"],
                                       name=f"{p}/up", strides=[2, 2]), down]
        elif kind == "dilated":
            rate = int(rng.choice([2, 3]))
            nodes.append(helper.make_node("Conv", ["x", weight(f"{p}/wa", (c, c, 3, 3)), *bias], [f"{p}/out"],
                                          name=f"{p}/atrous", dilations=[rate, rate], pads=[rate] * 4))
        else:
            nodes += [helper.make_node("Resize", ["x", "", "scales"], [f"{p}/up"], name=f"{p}/resize",
                                       mode=str(rng.choice(["nearest", "linear"]))), down]
        ends.append(f"{p}/out")
    nodes.append(helper.make_node("Sum", ends, ["y"], name="sum"))
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [batch, c, s, s]) for n in ("x", "y")]
    return helper.make_model(helper.make_graph(nodes, "fuzz", io[:1], io[1:], inits),
                             opset_imports=[helper.make_opsetid("", 17)])


def checks_of(model: onnx.ModelProto, monkeypatch, passes=None) -> list:
    """The LocalChecks an optimize of `model` builds (a failing deferred
    check has the run redone: its checks built again, once more each)."""
    built, real = [], driver.build_check
    with monkeypatch.context() as m:
        m.setattr(driver, "build_check", lambda graph, match, replacement:
                  built.append(real(graph, match, replacement)) or built[-1])
        optimize(model, passes=passes)
    return built


def run_alone(check: LocalCheck, k: int, seed: int) -> "Comparison | str":
    """What verify_checks says of check `k`, the straightforward way: its
    own two models, stubs filled, each run on its own seeded inputs (batch 1,
    and 2 where a dim is symbolic), the outputs compared."""
    original, replacement = check.materialized()
    result = Comparison()
    for batch in (1, 2) if check.symbolic else (1,):
        graph = original.graph
        feeds = random_feeds(graph.input, seed + k, batch, pinned=pinned_dims(graph))
        want, _ = run_model(original, feeds)
        got, _ = run_model(replacement, feeds, allow_reference=False)
        names = [o.name for o in original.graph.output]
        result = result.merge(compare_outputs(names, want, got, None, None, check.steps))
    return result


def said(result) -> tuple:
    return result if isinstance(result, str) else (bool(result), result.max_abs_error, result.max_rel_error)


@pytest.mark.parametrize("seed", range(12))
def test_each_check_gets_the_verdict_and_errors_of_its_own_run(seed, monkeypatch):
    checks = checks_of(random_model(seed), monkeypatch)
    assert len(checks) == 12 and shared_structures(checks)   # some run in a shared session (the case tested)
    ran, real = [], shared_checks.StructureSessions.run

    def run(self, values):
        outputs = real(self, values)
        # now: a side that did not run is filled in later; per-side sessions are made where the pair fails
        ran.append(all(out is not None for out in outputs) and self.sides is None)
        return outputs

    monkeypatch.setattr(shared_checks.StructureSessions, "run", run)
    results = verify_checks(checks, seed=5)
    assert [said(r) for r in results] == [said(run_alone(c, k, 5)) for k, c in enumerate(checks)]
    # both sides in their structure's one session, not alone after all (which would give the same results)
    assert len(ran) >= 2 and all(ran)


@pytest.mark.parametrize("seed", range(4))
def test_a_check_read_from_its_parts_is_the_instance_of_its_models(seed, monkeypatch):
    """The key and Sides read from the parts (without assembling the models)
    are those read from the assembled models."""
    for c in checks_of(random_model(seed), monkeypatch):
        assert c.parts is not None and c.instance is not None
        whole = LocalCheck.of_models(c.original, c.replacement, c.symbolic, c.weights, c.weight_bytes, c.steps)
        assert whole.instance == c.instance


def test_two_checks_share_a_structure_exactly_when_their_session_models_are_equal(monkeypatch):
    checks = [c for seed in range(3) for c in checks_of(random_model(seed, branches=6), monkeypatch)]
    sessions = [(shared_model(c.original), shared_model(c.replacement)) for c in checks]
    for a, sa in zip(checks, sessions):
        for b, sb in zip(checks, sessions):
            assert (a.instance[0] == b.instance[0]) == (sa == sb)
    assert len({s for s in sessions}) > 1 and len(set(sessions)) < len(sessions)


# --- keys are not weakened: checks that differ in one thing do not share ---------------------------------

def _check(variant: str = "", name: str = "p", weight: float = 1.0) -> LocalCheck:
    """The check of a made-up rewrite (only its structure is looked at):
    y = Add(LeakyRelu(x), w) -> Add(w, LeakyRelu(x)), its values named
    under `name`, w filled with `weight`.  A variant changes one thing:
    "attribute" (the original's alpha), "new attribute" (the replacement's),
    "shape" (x of [1, 3, 5]), "dtype" (double), "dims" (w of [4],
    broadcast), "constant" (w a graph input, not an initializer)."""
    dtype = TensorProto.DOUBLE if variant == "dtype" else TensorProto.FLOAT
    shape = [1, 3, 5] if variant == "shape" else [1, 3, 4]
    w_shape = [shape[-1]] if variant == "dims" else shape[1:]
    w = numpy_helper.from_array(np.full(w_shape, weight, helper.tensor_dtype_to_np_dtype(dtype)), f"{name}/w")
    inputs = [helper.make_tensor_value_info(f"{name}/x", dtype, shape)]
    if variant == "constant":
        inputs.append(helper.make_tensor_value_info(f"{name}/w", dtype, w_shape))
    model = helper.make_model(helper.make_graph(
        [helper.make_node("LeakyRelu", [f"{name}/x"], [f"{name}/a"], name=f"{name}/leaky",
                          alpha=0.2 if variant == "attribute" else 0.1),
         helper.make_node("Add", [f"{name}/a", f"{name}/w"], [f"{name}/y"], name=f"{name}/add")],
        "g", inputs, [helper.make_tensor_value_info(f"{name}/y", dtype, shape)], [] if variant == "constant" else [w]),
        opset_imports=[helper.make_opsetid("", 17)])
    graph = GraphView(model)
    new = (helper.make_node("LeakyRelu", [f"{name}/x"], [f"{name}/b"], name=f"{name}/new_leaky",
                            alpha=0.2 if variant == "new attribute" else 0.1),
           helper.make_node("Add", [f"{name}/w", f"{name}/b"], [f"{name}/new"], name=f"{name}/swapped"))
    leaky, add = graph.graph.node[0], graph.graph.node[1]
    return build_check(graph, Match(leaky, None, (leaky, add)), Replacement(new, (), {f"{name}/y": f"{name}/new"}))


VARIANTS = ["attribute", "new attribute", "shape", "dtype", "dims", "constant"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_checks_that_differ_in_one_thing_do_not_share(variant):
    base, other = _check(), _check(variant)
    # they do differ, in their session models (the premise; w fed at run time or as a weight makes the same
    # session model: the check models differ) ...
    if variant == "constant":
        assert len(base.original.graph.input) == 1 and len(other.original.graph.input) == 2
    else:
        assert (shared_model(base.original), shared_model(base.replacement)) != \
            (shared_model(other.original), shared_model(other.replacement))
    # ... and in their keys: no session in common
    assert base.instance[0] != other.instance[0]
    twins = [base, _check(name="q", weight=2.0), other, _check(variant, name="q", weight=2.0)]
    assert sorted(s.checks for s in shared_structures(twins)) == [[0, 1], [2, 3]]


def test_checks_that_differ_in_names_and_weights_only_share():
    a, b = _check(), _check(name="q/r", weight=-3.0)
    assert a.instance[0] == b.instance[0]
    assert [s.checks for s in shared_structures([a, b])] == [[0, 1]]
    for variant in VARIANTS:   # each variant is a structure of its own, the same under other names
        assert _check(variant).instance[0] == _check(variant, name="q/r", weight=-3.0).instance[0]


# --- what a check holds --------------------------------------------------------------------------------

def test_a_check_holds_the_graph_as_it_was_when_built():
    """The models are assembled after the passes that edit the graph (the
    deferred checks): the check holds copies of the graph's nodes it reads."""
    dtype, shape = TensorProto.FLOAT, [1, 3, 4]
    model = helper.make_model(helper.make_graph(
        [helper.make_node("LeakyRelu", ["x"], ["a"], name="leaky", alpha=0.1),
         helper.make_node("Add", ["a", "w"], ["y"], name="add")], "g",
        [helper.make_tensor_value_info("x", dtype, shape)], [helper.make_tensor_value_info("y", dtype, shape)],
        [numpy_helper.from_array(np.ones(shape[1:], np.float32), "w")]), opset_imports=[helper.make_opsetid("", 17)])
    graph = GraphView(model)
    leaky, add = graph.graph.node[0], graph.graph.node[1]
    new = (helper.make_node("Add", ["w", "x"], ["new"], name="swapped"),)
    check = build_check(graph, Match(leaky, None, (leaky, add)), Replacement(new, (), {"y": "new"}))
    leaky.attribute[0].f, leaky.name, add.input[1] = 0.5, "edited", "x"   # the graph edited after the check
    held = check.original.graph.node
    assert [n.name for n in held] == ["leaky", "add"] and list(held[1].input) == ["a", "w"]
    assert held[0].attribute[0].f == pytest.approx(0.1)


@pytest.mark.parametrize("dtype", sorted(local_check._AS_IS, key=str))
def test_constants_fed_as_they_are_are_what_the_check_models_hold(dtype):
    """_AS_IS: the graph's constants of these types reach the shared session
    as the graph's arrays; the check models hold to_array(from_array(them)):
    the same type, shape and bytes."""
    rng = np.random.default_rng(0)
    values = [rng.standard_normal((3, 5)) * 100, np.zeros(()), np.zeros((0, 2))]
    if np.dtype(dtype).kind == "f":
        values.append(np.array([np.nan, -0.0, np.inf, -np.inf, 1e-30]))
    for value in values:
        value = value.astype(dtype)
        back = to_array(from_array(value, "w"))
        assert back.dtype == value.dtype and back.shape == value.shape and back.tobytes() == value.tobytes()


# --- both sides in one session; per side where onnxruntime will not ---------------------------------------

def test_a_structure_onnxruntime_will_not_pair_runs_per_side(monkeypatch):
    checks = checks_of(random_model(0), monkeypatch)
    expected = [said(r) for r in verify_checks(checks, seed=1)]
    made, real = [], shared_checks.onnxruntime_session

    def refuse_paired(model, **options):
        if onnx.load_from_string(model).graph.input[0].name == "a0":
            raise RuntimeError("no")
        made.append(model)
        return real(model, **options)

    monkeypatch.setattr(shared_checks, "onnxruntime_session", refuse_paired)
    assert [said(r) for r in verify_checks(checks, seed=1)] == expected
    assert len(made) == 2 * len(shared_structures(checks))   # one session per side of each structure


def test_a_paired_run_that_fails_runs_per_side(monkeypatch):
    checks = checks_of(random_model(1), monkeypatch)
    expected = [said(r) for r in verify_checks(checks, seed=2)]
    real = shared_checks.SharedSession.run
    paired = []

    def fail_paired(self, values):
        if self.names and self.names[0] == "a0":
            paired.append(1)
            return None
        return real(self, values)

    monkeypatch.setattr(shared_checks.SharedSession, "run", fail_paired)
    assert [said(r) for r in verify_checks(checks, seed=2)] == expected
    assert paired


def test_large_weights_run_in_a_shared_session_with_their_data(monkeypatch):
    """Weights of STUB_BYTES and more are stubs in the check models; a
    shared session is fed their data (the graph's own array, the
    replacement's tensor): a wrong rewrite among them is still caught."""
    from toy_passes import AddToSubWrongOnBad

    n = 128   # a float32 weight of n * n: 64 KiB, a stub
    rng = np.random.default_rng(0)
    names = ("a0", "bad1", "a2", "a3")
    nodes, inits, v = [], [], "x"
    for k, name in enumerate(names):
        inits.append(numpy_helper.from_array(rng.standard_normal((n, n)).astype(np.float32), f"w{k}"))
        out = "y" if k == len(names) - 1 else f"t{k}"
        nodes.append(helper.make_node("Add", [v, f"w{k}"], [out], name=name))
        v = out
    model = helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])], inits),
        opset_imports=[helper.make_opsetid("", 17)])
    checks = checks_of(model, monkeypatch, [AddToSubWrongOnBad()])[:len(names)]   # the first run's
    assert len(checks) == len(names) and all(c.weight_bytes >= 2 * local_check.STUB_BYTES for c in checks)
    assert [s.checks for s in shared_structures(checks)] == [[0, 1, 2, 3]]
    results = verify_checks(checks)
    assert [said(r) for r in results] == [said(run_alone(c, k, 0)) for k, c in enumerate(checks)]
    assert [bool(r) for r in results] == [True, False, True, True]


def test_a_replacement_that_passes_a_value_through_is_checked_with_its_identity():
    """y = Relu(x) replaced by x itself: renamed_nodes adds an Identity
    (the check models hold it); two such checks share a session and each
    gets its own verdict (Relu is not the identity on negative inputs)."""
    def check(name):
        model = helper.make_model(helper.make_graph(
            [helper.make_node("Relu", [f"{name}/x"], [f"{name}/y"], name=f"{name}/relu")], "g",
            [helper.make_tensor_value_info(f"{name}/x", TensorProto.FLOAT, [2, 3])],
            [helper.make_tensor_value_info(f"{name}/y", TensorProto.FLOAT, [2, 3])]),
            opset_imports=[helper.make_opsetid("", 17)])
        graph = GraphView(model)
        return build_check(graph, Match(graph.graph.node[0], None), Replacement((), (), {f"{name}/y": f"{name}/x"}))

    checks = [check("p"), check("q")]
    assert [n.op_type for n in checks[0].replacement.graph.node] == ["Identity"]
    whole = [LocalCheck.of_models(c.original, c.replacement, c.symbolic, c.weights, c.weight_bytes, c.steps)
             for c in checks]
    assert [w.instance for w in whole] == [c.instance for c in checks]
    assert [s.checks for s in shared_structures(checks)] == [[0, 1]]
    results = verify_checks(checks)
    assert [said(r) for r in results] == [said(run_alone(c, k, 0)) for k, c in enumerate(checks)]
    assert not any(results)
