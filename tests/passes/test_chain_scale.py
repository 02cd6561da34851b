"""dilated-conv chains where a value fans out to many branches: the chain
found is the one the straightforward algorithm finds (pruning by a walk over
every member for each node, the exits counted over the whole region for
each tail candidate), and the work of a start's match grows with the
region's size, not with its square.  Where a target runs no chain, every
start is matched: the starts reading one value take their regions from the
one grown from that value (chain.InputRegion), so a run's work grows with
the branches, not with their square, and finds the regions grown for each
start alone."""
from __future__ import annotations

import sys
from collections import Counter
from contextlib import contextmanager

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from onnx import TensorProto, helper, numpy_helper

from builders import with_output_shape
from convrewrite import optimize
from convrewrite.core.equivalence import check_models
from convrewrite.core.graph import GraphView
from convrewrite.core.pointwise import POINTWISE_BINARY, POINTWISE_UNARY
from convrewrite.core.rewrite import Match, Skip
from passes.dilated_conv import chain
from passes.dilated_conv.chain import Chain
from passes.dilated_conv.rewrite import DilatedConvOptions
from passes.dilated_conv.rewrite import DilatedConvToSpaceToBatch as DilatedConv

C = 2   # channels: matching reads shapes and attributes, never the weights' values


# --- the straightforward algorithm (the reference) ---------------------------------

def reference_prune(members: list, convs: dict, needs: dict, start) -> list:
    """A node is kept when a kept member other than the start reads its
    output, found by a walk over every member."""
    rest = [n for n in members if n is not start]
    keep = {id(n) for n in rest if id(n) in convs}
    for node in reversed(rest):
        if id(node) not in keep and any(id(m) in keep and node.output[0] in m.input[:] for m in rest):
            keep.add(id(node))
        if id(node) in keep:
            keep |= needs.get(id(node), set())
    return [n for n in members if n is start or id(n) in keep]


def reference_with_tail(graph, admitted: list, kept: list, needs: dict, values: set, shared: str) -> list:
    """A tail candidate joins when the region's exits, counted over the
    whole region with it and without it, are no more."""
    region = list(kept)
    for node in admitted:
        if id(node) in {id(n) for n in region} or node.op_type == "Conv" or needs.get(id(node)):
            continue
        if node.output[0] not in values or node.op_type not in POINTWISE_UNARY | POINTWISE_BINARY:
            continue
        inside = {n.output[0] for n in region} | ({shared} if shared else set())
        data = [i for i in chain.data_inputs(node) if graph.constant(i) is None]
        if not data or any(i not in inside for i in data):
            continue
        grown = region + [node]
        if reference_exit_count(graph, grown) <= reference_exit_count(graph, region):
            region = grown
    order = {id(n): k for k, n in enumerate(admitted)}
    return sorted(region, key=lambda n: order[id(n)])


def reference_exits(graph, members) -> tuple:
    ids = {id(n) for n in members}
    return tuple(n.output[0] for n in members if read_outside(graph, n.output[0], ids))


def reference_exit_count(graph, members) -> int:
    return len(reference_exits(graph, members))


def read_outside(graph, value: str, ids: set) -> bool:
    return value in graph.graph_outputs or any(id(c) not in ids for c in graph.consumers(value))


def all_matches(model: onnx.ModelProto, p: DilatedConv) -> list:
    """Every candidate's match, as what a comparison can read: the nodes by
    their place in the graph, the params and the notes, or the Skip's
    reason and code."""
    graph = GraphView(model)
    out = []
    for node in [n for n in model.graph.node if p.candidate(n, graph)]:
        m = p.match(node, graph)
        if isinstance(m, Skip):
            out.append((m.reason, m.code))
            continue
        if isinstance(m.params, Chain):   # the exits the region names are those counted over it whole
            assert m.params.region.exits == reference_exits(graph, m.params.region.nodes)
        out.append(([graph.position(n) for n in m.nodes], m.params, m.notes))
    return out


def assert_reference_matches(model: onnx.ModelProto, p: DilatedConv) -> list:
    """Every candidate's match is the straightforward algorithms', and
    (the matches on one view, as in a run) the one grown for its start alone."""
    found = all_matches(model, p)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(chain, "_prune", reference_prune)
        mp.setattr(chain, "_with_tail", reference_with_tail)
        assert found == all_matches(model, p)
    with each_start_alone():
        assert found == all_matches(model, p)
    return found


@contextmanager
def each_start_alone():
    """No region taken from an InputRegion: each start's region with its
    input shared is grown for it alone."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(chain, "input_region", lambda *args: None)
        yield


def chain_sizes(found: list) -> list:
    return [len(m[0]) for m in found if isinstance(m[1], Chain)]


# --- models -------------------------------------------------------------------

def model_of(nodes, weights: dict, n: int, outputs) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in weights.items()]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, n, n])
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
    m = helper.make_model(helper.make_graph(nodes, "g", [x], outs, inits),
                          opset_imports=[helper.make_opsetid("", 17)])
    return with_output_shape(m)


def conv(name, x, w, d=2, pads=None):
    """A 3x3 Conv of rate d keeping the size (pads d, d unless given), or a 1x1 Conv (d=0)."""
    if d == 0:
        return helper.make_node("Conv", [x, w], [name], name=name)
    return helper.make_node("Conv", [x, w], [name], name=name, dilations=[d, d], pads=pads or [d] * 4)


def fan_out(branches: int, n: int = 16, deep: bool = True, pointwise_every: int = 0) -> onnx.ModelProto:
    """A dilated Conv whose output feeds `branches` parallel branches, summed:
    a dilated Conv -> Relu (`deep`: -> a dilated Conv -> Relu) each; every
    `pointwise_every`-th branch a 1x1 Conv -> Relu instead (no later dilated
    Conv: pruned)."""
    w3, w1 = np.full((C, C, 3, 3), 0.1), np.full((C, C, 1, 1), 0.5)
    nodes, weights, ends = [conv("c0", "x", "w3")], {"w3": w3, "w1": w1}, []
    for k in range(branches):
        if pointwise_every and k % pointwise_every == 0:
            nodes += [conv(f"p{k}", "c0", "w1", 0), helper.make_node("Relu", [f"p{k}"], [f"e{k}"], name=f"e{k}")]
        else:
            nodes += [conv(f"a{k}", "c0", "w3"), helper.make_node("Relu", [f"a{k}"], [f"r{k}"], name=f"r{k}")]
            if deep:
                nodes += [conv(f"b{k}", f"r{k}", "w3"), helper.make_node("Relu", [f"b{k}"], [f"e{k}"], name=f"e{k}")]
            else:
                nodes[-1].output[0] = f"e{k}"
        ends.append(f"e{k}")
    nodes.append(helper.make_node("Sum", ends, ["y"], name="y"))
    return model_of(nodes, weights, n, ["y"])


def shared_input(branches: int, n: int = 16) -> onnx.ModelProto:
    """Parallel branches reading one input x, summed: a dilated Conv ->
    Relu -> a dilated Conv each.  The first Conv's phase images are x's phase
    form, so each branch's start reads x as a region value: its chain
    reaches every branch."""
    nodes, ends = [], []
    for k in range(branches):
        nodes += [conv(f"a{k}", "x", "w3"), helper.make_node("Relu", [f"a{k}"], [f"r{k}"], name=f"r{k}"),
                  conv(f"b{k}", f"r{k}", "w3")]
        ends.append(f"b{k}")
    nodes.append(helper.make_node("Sum", ends, ["y"], name="y"))
    return model_of(nodes, {"w3": np.full((C, C, 3, 3), 0.1)}, n, ["y"])


UNARY = ("Relu", "Sigmoid")
BINARY = ("Add", "Mul", "Sub")


@st.composite
def random_graphs(draw):
    """Random graphs of values of one shape [1, C, n, n] (and [1, C, 1, 1]
    means of them): dilated Convs of rate 2 (pads that share the input's
    phase form or not) and 3, 1x1 Convs, unary and binary pointwise ops,
    Sum, MaxPool (not pointwise), squeeze-and-excitation blocks and other
    uses of means; some ops fan a value out to several readers; some
    values are graph outputs."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    full, side, nodes = ["x"], [], []
    weights = {"w3": np.full((C, C, 3, 3), 0.1), "w1": np.full((C, C, 1, 1), 0.5), "k": np.full((C, 1, 1), 0.5)}

    def pick(values):
        # favour a few hubs: a value read by many branches
        return values[draw(st.integers(0, len(values) - 1))] if draw(st.booleans()) else values[-1]

    for k in range(draw(st.integers(3, 24))):
        name, kind = f"v{k}", draw(st.sampled_from(["dilated"] * 4 + ["pointwise", "unary", "binary", "sum",
                                                                      "fan", "se", "pool", "side", "maxpool"]))
        x = pick(full)
        if kind == "dilated":
            d = draw(st.sampled_from([2, 2, 2, 3]))
            nodes.append(conv(name, x, "w3", d, pads=draw(st.sampled_from([None, [d - 1, d - 1, d + 1, d + 1]]))))
        elif kind == "pointwise":
            nodes.append(conv(name, x, "w1", 0))
        elif kind == "unary":
            nodes.append(helper.make_node(draw(st.sampled_from(UNARY)), [x], [name], name=name))
        elif kind == "binary":
            other = draw(st.sampled_from(["k", pick(full)] + side[-1:]))
            nodes.append(helper.make_node(draw(st.sampled_from(BINARY)), [x, other], [name], name=name))
        elif kind == "sum":
            nodes.append(helper.make_node("Sum", [x, pick(full), pick(full)], [name], name=name))
        elif kind == "fan":
            for j in range(draw(st.integers(2, 5))):
                op = draw(st.sampled_from(UNARY + ("dilated",)))
                branch = f"{name}_{j}"
                nodes.append(conv(branch, x, "w3") if op == "dilated" else
                             helper.make_node(op, [x], [branch], name=branch))
                full.append(branch)
            continue
        elif kind == "se":   # squeeze-and-excitation: x times a per-channel value computed from its mean
            nodes += [helper.make_node("GlobalAveragePool", [x], [f"{name}_g"], name=f"{name}_g"),
                      helper.make_node("Sigmoid", [f"{name}_g"], [f"{name}_s"], name=f"{name}_s"),
                      helper.make_node("Mul", [x, f"{name}_s"], [name], name=name)]
            side.append(f"{name}_s")
        elif kind in ("pool", "side"):
            src = pick(side) if kind == "side" and side else x
            op = "Sigmoid" if src in side else "GlobalAveragePool"
            nodes.append(helper.make_node(op, [src], [name], name=name))
            side.append(name)
            continue
        else:
            nodes.append(helper.make_node("MaxPool", [x], [name], name=name, kernel_shape=[3, 3], pads=[1] * 4))
        full.append(name)
    outputs = [full[-1]] + [v for v in full[1:-1] if rng.random() < 0.2]
    return model_of(nodes, weights, draw(st.sampled_from([8, 9])), outputs)


# --- tests --------------------------------------------------------------------

FAST = DilatedConvOptions(taps_below=0)   # small phase images in the batch form too: chains on 8x8 maps


@settings(max_examples=150, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(model=random_graphs())
def test_chains_are_the_straightforward_algorithms_on_random_graphs(model):
    assert_reference_matches(model, DilatedConv(FAST))


def test_random_graphs_hold_chains():
    """The random graphs above are not all chainless (the comparison would
    then compare nothing of interest)."""
    sizes = []

    @settings(max_examples=60, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(model=random_graphs())
    def one(model):
        sizes.extend(chain_sizes(all_matches(model, DilatedConv(FAST))))

    one()
    assert len(sizes) >= 10 and max(sizes) >= 6, sizes


@pytest.mark.parametrize("model", [fan_out(30), fan_out(30, deep=False), fan_out(30, pointwise_every=3),
                                   fan_out(12, n=17)], ids=["deep", "flat", "some_pointwise", "inexact"])
def test_fan_out_chains_are_the_straightforward_algorithms(model):
    found = assert_reference_matches(model, DilatedConv())
    assert max(chain_sizes(found)) > 30   # the start's chain takes the branches


def chain_steps(model: onnx.ModelProto) -> tuple[int, int]:
    """(lines of chain.py run, nodes) matching the model's first node, a
    chain start: lines counted by a trace function, a count of steps that
    does not depend on the machine's speed."""
    graph, p = GraphView(model), DilatedConv()
    start = model.graph.node[0]
    p.match(start, graph)   # the per-node reads (forms, geometry) once, as in a run
    steps = 0

    def local(frame, event, arg):
        nonlocal steps
        steps += 1
        return local

    def calls(frame, event, arg):
        return local if frame.f_code.co_filename == chain.__file__ else None

    previous = sys.gettrace()
    sys.settrace(calls)
    try:
        m = p.match(start, graph)
    finally:
        sys.settrace(previous)
    assert isinstance(m, Match) and isinstance(m.params, Chain)
    return steps, len(m.nodes)


@pytest.mark.parametrize("deep", [True, False])
def test_a_chain_over_many_branches_takes_steps_in_proportion(deep):
    """Twice the branches, about twice the steps (four times where each
    member is compared with every other, as pruning and the tail's exit
    counts once did)."""
    small, small_nodes = chain_steps(fan_out(100, deep=deep))
    large, large_nodes = chain_steps(fan_out(200, deep=deep))
    assert large_nodes > 1.95 * small_nodes > 190
    assert large < 3 * small, (small, large)


def test_each_conv_is_ranked_once_however_many_chain_starts_reach_it(monkeypatch):
    """Where every start's chain reaches every branch (a target that runs
    no chain has each start matched), a later Conv's forms are ranked once
    per view (read_once), not once per start that reaches it; each match is
    the one found through a view of its own."""
    model, p = shared_input(30), DilatedConv()
    graph = GraphView(model)
    starts = [n for n in model.graph.node if p.candidate(n, graph)]
    alone = [p.match(n, GraphView(model)) for n in starts]
    ranked, default_form = Counter(), DilatedConv.default_form
    monkeypatch.setattr(DilatedConv, "default_form",
                        lambda self, m, g: ranked.update([m.node.name]) or default_form(self, m, g))
    together = [p.match(n, graph) for n in starts]
    assert [(m.params, m.notes, [n.name for n in m.nodes]) for m in together] == \
        [(m.params, m.notes, [n.name for n in m.nodes]) for m in alone]
    assert sum(len(m.nodes) > 60 for m in together) == 30   # each a{k} starts a chain over every branch
    assert max(ranked.values()) == 2, ranked   # as a start and as a later Conv


# --- with a target: every start matched ----------------------------------------

def admissions(model: onnx.ModelProto, target: str) -> tuple[int, dict, bytes]:
    """(the nodes chain._admit is asked about, the report without timings,
    the model) of a run with `target`: a count of steps that does not
    depend on the machine's speed."""
    count, admit = 0, chain._admit

    def counted(*args, **kwargs):
        nonlocal count
        count += 1
        return admit(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(chain, "_admit", counted)
        new, report = optimize(model, [DilatedConv()], verify=False, target=target)
    d = report.to_dict()
    d.pop("timings")
    return count, d, new.SerializeToString()


@pytest.mark.parametrize("make", [fan_out, shared_input], ids=["fan_out", "shared_input"])
def test_with_a_target_a_run_takes_steps_in_proportion(make):
    """tflite runs no chain (its phase batch is not 1): every start is
    matched, and each start inside a branch reaches every branch through the
    value the branches read.  Twice the branches, about twice the nodes
    looked at (about four times when each start grew its region again:
    3.9x on fan_out, 4.0x on shared_input)."""
    small, report, _ = admissions(make(40), "tflite")
    large, _, _ = admissions(make(80), "tflite")
    assert any("does not fit" in n for r in report["rewrites"] for n in r["notes"])   # a chain was matched
    assert large < 2.4 * small, (small, large)


@pytest.mark.parametrize("target", ["tflite", "arm-ethos-n78"])
@pytest.mark.parametrize("make", [fan_out, shared_input], ids=["fan_out", "shared_input"])
def test_with_a_target_the_run_is_that_of_regions_grown_alone(make, target):
    """The model and report of a run with a target are those of a run where
    each start grows its region alone, and the model computes the original's."""
    model = make(12)
    _, report, new = admissions(model, target)
    with each_start_alone():
        _, alone_report, alone = admissions(model, target)
    assert (report, new) == (alone_report, alone)
    chains = [r for r in report["rewrites"] if any("-node rewrite does not fit" in n for n in r["notes"])]
    assert chains, report["rewrites"]   # a chain over every branch matched, then each Conv alone
    result = onnx.ModelProto.FromString(new)
    assert op_counts_of(result)["Conv"] > op_counts_of(model)["Conv"]   # lowered for the target
    assert check_models(model, result)


def op_counts_of(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


def test_random_graphs_take_regions_from_input_regions(monkeypatch):
    """The random graphs hold starts whose region is taken from another's
    input region (the comparison with regions grown alone compares that)."""
    taken, from_start = [], chain.InputRegion.from_start
    monkeypatch.setattr(chain.InputRegion, "from_start",
                        lambda self, start: taken.append(start.name) or from_start(self, start))

    @settings(max_examples=60, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(model=random_graphs())
    def one(model):
        all_matches(model, DilatedConv(FAST))

    one()
    assert len(taken) >= 20, taken


# --- a chain that overlaps another rewrite: its start lowered alone ----------------------

@pytest.mark.parametrize("make", [fan_out, shared_input], ids=lambda f: f.__name__)
def test_with_a_target_a_branch_whose_chain_overlaps_another_rewrite_is_lowered_alone(make):
    """With tflite no chain fits, so the first branch's Conv is matched
    alone; each later branch's chain reaches that Conv (through the value
    they share) and overlaps its rewrite.  Those branches are lowered alone
    too, in the same run: none is left as a dilated Conv the target cannot
    run, and a second run has nothing to do (assert_rewrites)."""
    from helpers import assert_rewrites

    from convrewrite.core.report import REWRITTEN

    model = make(6)
    dilated = sum(1 for n in model.graph.node if n.op_type == "Conv" and any(
        a.name == "dilations" and max(a.ints) > 1 for a in n.attribute))
    new, report = assert_rewrites(model, DilatedConv(), {}, target="tflite")
    assert len(report.records(REWRITTEN)) == dilated and not [r for r in report.rewrites if r.code == "overlap"]
    assert not any(a.name == "dilations" and max(a.ints) > 1 for n in new.graph.node if n.op_type == "Conv"
                   for a in n.attribute)
    notes = [n for r in report.records(REWRITTEN) for n in r.notes]
    assert any("overlaps another rewrite of this pass; matched alone" in n for n in notes)
