"""The figures the forms work out once per distinct structure (issue 12:
pipeline speed) are keyed by everything they depend on: nodes of one
structure share an entry, nodes that differ in anything the figures read
(the geometry, whether there is a bias and whether it is constant, the
element type, the channels, the opset) do not, and every figure stays the
built replacement's."""
import numpy as np
import pytest
from onnx import TensorProto

from builders import conv_model, convt_model
from convrewrite.core.cost import model_cost
from convrewrite.core.forms import rank
from convrewrite.core.graph import GraphView
from convrewrite.core.lowering import build
from convrewrite.core.rewrite import Match
from convrewrite.core.standalone import replacement_model
from passes.convtranspose import forms as convt_forms
from passes.convtranspose.rewrite import ConvTransposeOptions, ConvTransposeToConv
from passes.dilated_conv import forms as dilated_forms
from passes.dilated_conv.rewrite import DilatedConvToSpaceToBatch
from passes.resize.interpolation import Interpolation, axis_kernel, phase_taps, resize_kernel


# the batch, slices and reshape forms' data movement, per Conv structure
_PHASE_CACHES = (dilated_forms._batch_moved_of, dilated_forms._slices_moved_of, dilated_forms._reshape_moved_of)


def _clear_caches():
    for f in (convt_forms._structure_variants, convt_forms._structure_total,
              dilated_forms._taps_moved_of, dilated_forms._taps_window_moved_of, resize_kernel,
              *_PHASE_CACHES):
        f.cache_clear()


def _options(p, model):
    graph = GraphView(model)
    match = p.match(model.graph.node[-1], graph)
    assert isinstance(match, Match), match
    return graph, match, rank(p, match, graph, None, with_variants=True, with_opt_in=True).options


def _assert_exact(p, model) -> list:
    """Every option's Cost equals its built replacement's; the costs, in order."""
    graph, match, options = _options(p, model)
    costs = []
    for option in options:
        built = model_cost(replacement_model(build(p, match, option, graph), graph))
        c = option.cost
        assert (c.macs, c.moved_bytes, c.nodes, c.max_rank, c.streamed_bytes) == \
            (built.macs, built.moved_bytes, built.nodes, built.max_rank, built.streamed_bytes), (option.label, c, built)
        costs.append((option.label, c))
    return costs


def _with_names(model, suffix: str):
    """The same model with every value and node renamed (another instance of its structure)."""
    rename = {}
    for t in model.graph.initializer:
        rename[t.name] = t.name + suffix
        t.name += suffix
    for vi in list(model.graph.input) + list(model.graph.output):
        rename[vi.name] = vi.name + suffix
        vi.name += suffix
    for n in model.graph.node:
        n.name += suffix
        n.input[:] = [rename.get(i, i) for i in n.input]
        n.output[:] = [rename.get(o, o) for o in n.output]
    return model


def test_convtranspose_nodes_of_one_structure_share_their_figures():
    p = ConvTransposeToConv(ConvTransposeOptions(form="border-split"))
    _clear_caches()
    first = _assert_exact(p, convt_model((1, 4, 6, 6), 2, (3, 3), strides=[2, 2], pads=[1, 1, 1, 1]))
    hits = convt_forms._structure_total.cache_info().hits
    again = _assert_exact(p, _with_names(convt_model((1, 4, 6, 6), 2, (3, 3), strides=[2, 2],
                                                     pads=[1, 1, 1, 1], seed=1), "_other"))
    assert again == first
    assert convt_forms._structure_total.cache_info().hits > hits   # the second node read the first's entries


@pytest.mark.parametrize("change", [
    dict(bias=False),                                  # no bias: no "bias after" variants, no bias fillers
    dict(dtype=np.float16),                            # other item size: other bytes moved
    dict(opset=9),                                     # other emitters (Slice / Pad attributes)
    dict(strides=[3, 3]),                              # other geometry
])
@pytest.mark.parametrize("base", [
    dict(x_shape=(1, 4, 6, 6), cout_per_group=2, kernel=(3, 3), strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(x_shape=(1, 2, 4, 4), cout_per_group=3, kernel=(3, 3), strides=[4, 4]),   # phases no tap reaches
])
def test_convtranspose_structures_that_differ_do_not_share(base, change):
    p = ConvTransposeToConv(ConvTransposeOptions(form="border-split"))
    _clear_caches()
    first = _assert_exact(p, convt_model(**base))
    other = _assert_exact(p, convt_model(**{**base, **change}))   # exact although the first filled the caches
    assert other != first


def test_a_run_time_bias_is_not_a_constant_one():
    """Same geometry and bias presence; only whether the bias is constant differs."""
    from onnx import helper

    p = ConvTransposeToConv(ConvTransposeOptions(form="border-split"))
    _clear_caches()
    constant = convt_model((1, 4, 6, 6), 2, (3, 3), strides=[2, 2])
    first = _assert_exact(p, constant)
    run_time = convt_model((1, 4, 6, 6), 2, (3, 3), strides=[2, 2], bias=False)
    run_time.graph.node[-1].input.append("B")
    run_time.graph.input.append(helper.make_tensor_value_info("B", TensorProto.FLOAT, [2]))
    other = _assert_exact(p, run_time)
    assert [label for label, _ in other] != [label for label, _ in first]   # no "bias after" variants


@pytest.mark.parametrize("change,differs", [
    (dict(x_shape=(1, 3, 12, 12), w_shape=(4, 3, 3, 3)), True),   # other channels
    (dict(dtype=TensorProto.FLOAT16), True),                      # other item size
    (dict(dilations=[3, 3]), True),                               # other geometry
    (dict(opset=9), False),   # Slice attributes: other nodes, the same figures (still each its own entry)
])
def test_dilated_taps_figures_are_per_structure(change, differs):
    p = DilatedConvToSpaceToBatch()
    base = dict(x_shape=(1, 2, 12, 12), w_shape=(4, 2, 3, 3), dilations=[2, 2], pads=[2, 2, 2, 2])
    _clear_caches()
    first = [(label, c) for label, c in _assert_exact(p, conv_model(**base)) if label.startswith("taps")]
    assert first
    hits = dilated_forms._taps_moved_of.cache_info().hits
    assert [c for label, c in _assert_exact(p, conv_model(**base, seed=3)) if label.startswith("taps")] == \
        [c for _, c in first]
    assert dilated_forms._taps_moved_of.cache_info().hits > hits
    misses = dilated_forms._taps_moved_of.cache_info().misses
    other = [(label, c) for label, c in _assert_exact(p, conv_model(**{**base, **change})) if label.startswith("taps")]
    assert dilated_forms._taps_moved_of.cache_info().misses > misses   # an entry of its own
    assert (other != first) == differs


def test_the_resize_kernel_is_per_interpolation_and_factor():
    _clear_caches()
    nearest, linear = Interpolation("nearest", "asymmetric", "floor"), Interpolation("linear", "half_pixel", "floor")
    for interp in (nearest, linear):
        for factor in (2, 3):
            assert resize_kernel(interp, factor) == axis_kernel(phase_taps(interp, factor), factor)
    assert resize_kernel(nearest, 2) != resize_kernel(nearest, 3) != resize_kernel(linear, 3)
    assert resize_kernel.cache_info().currsize == 4


def _phase_costs(p, model) -> list:
    """The batch, slices and reshape options' costs (exact: _assert_exact)."""
    return [(label, c) for label, c in _assert_exact(p, model) if label in ("batch", "slices", "reshape")]


@pytest.mark.parametrize("base", [
    dict(x_shape=(1, 2, 12, 12), w_shape=(4, 2, 3, 3), dilations=[2, 2], pads=[2, 2, 2, 2]),
    dict(x_shape=(1, 16, 40), w_shape=(16, 16, 3), dilations=[2], pads=[2, 2]),   # 1-D: the reshape form too
])
def test_dilated_phase_figures_are_shared_by_one_structure(base):
    """Another Conv of the same structure (other weights, other names) reads the first one's entries."""
    p = DilatedConvToSpaceToBatch()
    _clear_caches()
    first = _phase_costs(p, conv_model(**base))
    assert {label for label, _ in first} >= {"batch", "slices"}
    misses = [f.cache_info().misses for f in _PHASE_CACHES]
    hits = [f.cache_info().hits for f in _PHASE_CACHES]
    again = _phase_costs(p, _with_names(conv_model(**base, seed=5), "_other"))
    assert again == first
    assert [f.cache_info().misses for f in _PHASE_CACHES] == misses   # no entry of its own
    assert sum(f.cache_info().hits for f in _PHASE_CACHES) > sum(hits)


@pytest.mark.parametrize("change", [
    dict(x_shape=(1, 3, 12, 12), w_shape=(4, 3, 3, 3)),   # other input channels
    dict(w_shape=(6, 2, 3, 3)),                           # other output channels
    dict(dtype=TensorProto.FLOAT16),                      # other item size
    dict(dilations=[3, 3]),                               # other geometry
    dict(x_shape=(1, 2, 14, 12)),                         # other input size
    dict(opset=9),                                        # other emitters
    dict(bias=False),                                     # no bias (in the key, as in convtranspose's)
])
def test_dilated_phase_figures_of_differing_structures_are_not_shared(change):
    p = DilatedConvToSpaceToBatch()
    base = dict(x_shape=(1, 2, 12, 12), w_shape=(4, 2, 3, 3), dilations=[2, 2], pads=[2, 2, 2, 2])
    _clear_caches()
    _phase_costs(p, conv_model(**base))
    misses = sum(f.cache_info().misses for f in _PHASE_CACHES)
    _phase_costs(p, conv_model(**{**base, **change}))   # exact although the first filled the caches
    assert sum(f.cache_info().misses for f in _PHASE_CACHES) > misses   # entries of its own


def test_phase_kernel_tap_indexes_are_per_tap_geometry():
    """phase_kernel's gather indexes are shared by axes with the same taps
    (whatever the weights), differ with the taps, and gather exactly what
    np.ix_ over the taps gathers."""
    from passes.convtranspose.geometry import AxisConv, _tap_index, phase_kernel

    def direct(wc, axes):
        k = np.zeros(wc.shape[:2] + tuple(a.size for a in axes), wc.dtype)
        us = [[u for u, _ in a.taps] for a in axes]
        js = [[j for _, j in a.taps] for a in axes]
        k[(slice(None), slice(None)) + np.ix_(*us)] = wc[(slice(None), slice(None)) + np.ix_(*js)]
        return k

    _tap_index.cache_clear()
    rng = np.random.default_rng(0)
    a = (AxisConv(2, 1, 1, 0, 4, ((0, 2), (1, 0))), AxisConv(1, 1, 0, 0, 4, ((0, 1),)))
    b = (AxisConv(2, 1, 1, 0, 4, ((0, 1), (1, 2))), AxisConv(1, 1, 0, 0, 4, ((0, 1),)))   # other taps
    for wc in (rng.standard_normal((3, 2, 3, 3)).astype(np.float32), rng.standard_normal((3, 2, 3, 3))):
        for axes in (a, b):
            assert np.array_equal(phase_kernel(wc, axes), direct(wc, axes))
    info = _tap_index.cache_info()
    assert (info.misses, info.hits, info.currsize) == (2, 2, 2)   # one entry per tap geometry
    assert not any(index.flags.writeable for index in _tap_index(a)[0] + _tap_index(a)[1])


def test_a_resize_spec_hashes_once_as_its_fields_do():
    """The spec (the key of the resize forms' caches) keeps its hash: the
    fields' hash, so equal specs of two nodes still meet in a cache, and
    differing ones do not compare equal."""
    from passes.resize.interpolation import read_resize
    from builders import resize_model

    def spec(model):
        graph = GraphView(model)
        return read_resize(graph.graph.node[-1], graph)

    a = spec(resize_model((1, 2, 4, 4), scales=[1, 1, 2, 2], mode="nearest"))
    b = spec(_with_names(resize_model((1, 2, 4, 4), scales=[1, 1, 2, 2], mode="nearest"), "_other"))
    c = spec(resize_model((1, 2, 4, 4), scales=[1, 1, 3, 3], mode="nearest"))
    assert hash(a) == hash((a.interp, a.axes)) == hash(b) and a == b and a is not b
    assert hash(a) == hash(a) and a.__dict__["_hash"] == hash(b)   # worked out once, kept
    assert a != c
    assert len({a: 1, b: 2, c: 3}) == 2
