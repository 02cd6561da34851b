"""What the forms work out once per node (issue 12: pipeline speed), cached
on the match's frozen params, and once per shared plan or tiling, is what
working it out again gives: every cached figure is checked against a fresh
computation, and a cached hash against the dataclass's own (equal objects,
equal hashes; an object that differs, not equal)."""
from dataclasses import fields, replace
from math import gcd

import pytest

from builders import conv_model, convt_model, resize_model
from convrewrite.core.graph import GraphView
from convrewrite.core.rewrite import Match
from passes.convtranspose import forms as convt_forms
from passes.convtranspose.geometry import AxisConv, AxisPlan, Tiles, border_tiles, phases, shared_plan, split_tiles
from passes.convtranspose.rewrite import ConvTransposeToConv
from passes.dilated_conv.build import PhaseInput
from passes.dilated_conv.rewrite import DilatedConvToSpaceToBatch
from passes.resize.forms import matrices
from passes.resize.rewrite import ResizeOptions, ResizeToConvTranspose

CONVT_CASES = [
    dict(x_shape=(1, 4, 6, 6), cout_per_group=2, kernel=(3, 3), strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(x_shape=(1, 2, 4, 4), cout_per_group=3, kernel=(3, 3), strides=[4, 4]),     # phases no tap reaches
    dict(x_shape=(1, 2, 5, 7), cout_per_group=2, kernel=(4, 2), strides=[3, 2], dilations=[2, 1], bias=False),
]


def _match(p, model):
    graph = GraphView(model)
    match = p.match(model.graph.node[-1], graph)
    assert isinstance(match, Match), match
    return graph, match


def _renamed(model, suffix: str):
    """The model with its weight and bias renamed: another node of the same structure."""
    for t in model.graph.initializer:
        t.name += suffix
    node = model.graph.node[-1]
    node.input[1:] = [i + suffix for i in node.input[1:]]
    return model


@pytest.mark.parametrize("case", CONVT_CASES)
def test_convtranspose_per_node_figures_are_the_fresh_ones(case):
    _, match = _match(ConvTransposeToConv(), convt_model(**case))
    d = match.params
    assert d.shared == tuple(shared_plan(g) for g in d.geometry)
    assert d.split_tiles == split_tiles(d.geometry)
    assert d.split_phases == tuple(phases(d.split))
    assert d.shared is d.shared and d.split_tiles is d.split_tiles   # worked out once


def _tiles_macs(tiles) -> int:
    """Tiles.macs_factor by its definition, with no cache."""
    return sum(p.count * len(p.taps) * (_tiles_macs(t) if t else 1)
               for ps, ts in zip(tiles.pieces, tiles.inner) for p, t in zip(ps, ts) if p.taps)


@pytest.mark.parametrize("case", CONVT_CASES)
def test_a_tilings_mac_factor_is_its_definition(case):
    _, match = _match(ConvTransposeToConv(), convt_model(**case))
    geometry = match.params.geometry
    tilings = [split_tiles(geometry), border_tiles(geometry, 10 ** 9), border_tiles(geometry, 10 ** 9, False)]
    for tiles in [t for t in tilings if t is not None]:
        assert tiles.macs_factor() == _tiles_macs(tiles) > 0


def _dataclass_hash(obj) -> int:
    """The hash a frozen dataclass's generated __hash__ gives: of its fields in order."""
    return hash(tuple(getattr(obj, f.name) for f in fields(obj)))


def _shared_objects(d) -> list:
    """The plans, tiles and axis Convs of a node's lowerings."""
    plans = list(d.split) + list(d.shared)
    convs = [c for plan in plans for c in plan.phases if c is not None]
    tiles, todo = [], [d.split_tiles]
    while todo:
        t = todo.pop()
        tiles.append(t)
        convs += [c for ps in t.pieces for c in ps]
        todo += [s for ss in t.inner for s in ss if s is not None]
    return plans + tiles + convs


@pytest.mark.parametrize("case", CONVT_CASES)
def test_plans_and_tiles_hash_as_their_dataclass_would(case):
    _, match = _match(ConvTransposeToConv(), convt_model(**case))
    objects = _shared_objects(match.params)
    assert {type(o) for o in objects} == {AxisPlan, Tiles, AxisConv}
    for o in objects:
        copy = replace(o)   # a new object of equal fields: no hash worked out yet
        assert copy is not o and copy == o
        assert hash(o) == hash(copy) == _dataclass_hash(o)
        assert hash(o) == _dataclass_hash(o)   # the cached hash, asked again
    conv = next(o for o in objects if isinstance(o, AxisConv))
    assert replace(conv, count=conv.count + 1) != conv   # equality still reads the fields


@pytest.mark.parametrize("case", CONVT_CASES)
def test_unnamed_lowerings_drop_the_names_alone(case):
    """lowering(named=False) is the named lowering without its value names
    (the bias only as present or not): equal for another node of the same
    structure, and what the variants and the costs are keyed by."""
    p = ConvTransposeToConv()
    _, match = _match(p, convt_model(**case))
    _, other = _match(p, _renamed(convt_model(**case, seed=4), "_other"))
    for form in [f for f in p.forms if isinstance(f, convt_forms._ConvTransposeForm)]:
        if form.applies(match, None) is not None:
            continue
        for v in form.variants(match, None):
            named = form.lowering(match.params, v)
            assert named.weight == match.node.input[1]
            assert named.bias == ("" if v.bias_after else match.params.bias_term)
            assert named.bias_after == (match.params.bias_term if v.bias_after else "")
            unnamed = form.lowering(match.params, v, named=False)
            assert unnamed == replace(named, weight="", bias="b" if named.bias else "",
                                      bias_after="a" if named.bias_after else "")
            assert unnamed == form.lowering(other.params, v, named=False)
            assert form.lowering(other.params, v) != named   # the names differ


@pytest.mark.parametrize("shape,scales,mode", [
    ((1, 3, 8, 8), [1, 1, 2, 2], "nearest"),
    ((1, 2, 5, 6), [1, 1, 3, 2], "linear"),
    ((1, 2, 9, 4), [1, 1, 0.5, 2], "linear"),    # downsampling: the matrices alone express it
])
def test_resize_matrices_per_node_are_the_shared_entry(shape, scales, mode):
    p = ResizeToConvTranspose(ResizeOptions(mode="matmul"))
    _, match = _match(p, resize_model(shape, scales=scales, mode=mode))
    _, other = _match(p, resize_model(shape, scales=scales, mode=mode))
    assert match.params.spec == other.params.spec and match.params.spec is not other.params.spec
    assert match.params.matrices is matrices(match.params.spec)
    assert other.params.matrices is match.params.matrices   # one entry for both nodes
    mats = match.params.matrices
    assert [axis for axis, _, _ in mats] == [ax.axis for ax in match.params.spec.resized]
    assert all(m.shape == (ax.n_out, ax.n_in) for (_, m, _), ax in zip(mats, match.params.spec.resized))


def _phase_input_fields(w: PhaseInput) -> tuple:
    return w.axes, w.sizes, w.lengths, w.pads


@pytest.mark.parametrize("conv", [
    dict(x_shape=(1, 2, 12, 12), w_shape=(4, 2, 3, 3), dilations=[2, 2], pads=[2, 2, 2, 2]),
    dict(x_shape=(1, 2, 13, 11), w_shape=(4, 2, 3, 2), dilations=[3, 2], pads=[1, 3, 0, 2]),
    dict(x_shape=(1, 16, 40), w_shape=(16, 16, 3), dilations=[2], pads=[2, 2]),
])
def test_dilated_per_node_figures_are_the_fresh_ones(conv):
    _, match = _match(DilatedConvToSpaceToBatch(), conv_model(**conv))
    p = match.params
    assert _phase_input_fields(p.phase_input) == _phase_input_fields(PhaseInput(p))
    assert p.phase_input is p.phase_input   # worked out once
    for a in p.axes + tuple(p.phase_input.axes):
        assert (a.common, a.phases) == (gcd(a.stride, a.dilation), a.dilation // gcd(a.stride, a.dilation))
        other = replace(a, stride=a.stride + 1)   # a new axis works out its own g and P
        assert (other.common, other.phases) == (gcd(a.stride + 1, a.dilation),
                                                a.dilation // gcd(a.stride + 1, a.dilation))


def test_a_cached_axis_figure_stays_out_of_equality_and_hash():
    """The phases cached on an axis are not fields: an axis that has worked
    them out equals, and hashes as, one that has not."""
    from passes.dilated_conv.phases import AxisPhases

    a, b = AxisPhases(12, 3, 2, 1, 2, 12), AxisPhases(12, 3, 2, 1, 2, 12)
    assert a.phases == 2 and "phases" in vars(a) and "phases" not in vars(b)
    assert a == b and hash(a) == hash(b)
    assert [f.name for f in fields(a)] == ["size", "kernel", "dilation", "stride", "offset", "out"]
