"""What the passes read of a candidate once per view for the nodes of one
kind (preconditions.read_once; issue 12: pipeline speed) is what reading
that node alone gives: in a model of several candidates that share some
facts and differ in others, every node's match through one view equals its
match through a view of its own (where nothing was read before it).  And a
chain of dilated Convs is looked for only where one can grow (chain.may_grow)."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convrewrite.core.graph import GraphView
from convrewrite.core.rewrite import Match, Skip
from passes.convtranspose.rewrite import ConvTransposeToConv
from passes.dilated_conv.chain import Grid, grow, may_grow
from passes.dilated_conv.rewrite import DilatedConvToSpaceToBatch
from passes.resize.rewrite import ResizeToConvTranspose

FLOAT = TensorProto.FLOAT


def _model(nodes, inits, inputs=(("x", [1, 4, 8, 8]),), opset=17) -> onnx.ModelProto:
    """Every node reads from `inputs` ((name, shape[, element type])); every node output is a graph output."""
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(i[0], i[2] if len(i) > 2 else FLOAT, i[1]) for i in inputs],
        [helper.make_value_info(o, onnx.TypeProto()) for n in nodes for o in n.output],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _weights(**shapes) -> dict:
    rng = np.random.default_rng(0)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def _same(a, b) -> bool:
    if isinstance(a, Skip) or isinstance(b, Skip):
        return type(a) is type(b) and (a.reason, a.code) == (b.reason, b.code)
    return (type(a) is Match is type(b) and a.params == b.params and a.notes == b.notes
            and [id(n) for n in a.nodes] == [id(n) for n in b.nodes])


def _assert_each_as_alone(p, model) -> list:
    """Every candidate's match through one view is its match through a view
    of its own; the matches, in graph order."""
    shared = GraphView(model)
    out = []
    for node in [n for n in model.graph.node if p.candidate(n, shared)]:
        together, alone = p.match(node, shared), p.match(node, GraphView(model))
        assert _same(together, alone), (node.name, together, alone)
        out.append(together)
    return out


def test_resizes_of_one_kind_share_their_params_and_others_do_not():
    inits = {"s2": np.array([1, 1, 2, 2], np.float32), "s3": np.array([1, 1, 3, 3], np.float32),
             "s1": np.array([1, 1, 1, 1], np.float32), "roi": np.zeros(0, np.float32)}
    nodes = [helper.make_node("Resize", ["x", "roi", "s2"], ["a"], name="a", mode="nearest"),
             helper.make_node("Resize", ["x", "roi", "s2"], ["b"], name="b", mode="nearest"),
             helper.make_node("Resize", ["x", "roi", "s3"], ["c"], name="c", mode="nearest"),
             helper.make_node("Resize", ["x", "roi", "s2"], ["d"], name="d", mode="linear"),
             helper.make_node("Resize", ["x", "roi", "s2"], ["e"], name="e", mode="cubic", cubic_coeff_a=-0.5),
             helper.make_node("Resize", ["x", "roi", "s2"], ["f"], name="f", mode="nearest",
                              coordinate_transformation_mode="align_corners"),
             helper.make_node("Resize", ["x", "roi", "s1"], ["g"], name="g", mode="nearest"),
             helper.make_node("Resize", ["x", "roi", "s2"], ["h"], name="h", mode="area"),
             helper.make_node("Resize", ["x", "roi", "s2"], ["i"], name="i", mode="area")]
    a, b, c, d, e, f, g, h, i = _assert_each_as_alone(ResizeToConvTranspose(), _model(nodes, inits))
    assert a.params is b.params and a.notes == b.notes
    assert [p.params.factors for p in (a, c)] == [[2, 2], [3, 3]]
    assert [p.params.spec.interp.mode for p in (d, e)] == ["linear", "cubic"] and e.params.spec.interp.cubic_a == -0.5
    assert "align_corners" in f.params.fixed.reason and not a.params.fixed
    assert g.params.spec.resized == ()
    assert [type(h), type(i)] == [Skip, Skip] and "'h'" in h.reason and "'i'" in i.reason


def test_resizes_of_one_kind_on_inputs_of_other_shapes_or_types_do_not_share():
    inits = {"s2": np.array([1, 1, 2, 2], np.float32), "roi": np.zeros(0, np.float32)}
    nodes = [helper.make_node("Resize", [x, "roi", "s2"], [f"y{x}"], name=x, mode="nearest")
             for x in ("x", "x2", "x3", "x4", "x5")]
    model = _model(nodes, inits, inputs=(("x", [1, 4, 8, 8]), ("x2", [1, 4, 5, 8]), ("x3", [1, "C", 8, 8]),
                                         ("x4", [1, 4, 8, 8], TensorProto.FLOAT16), ("x5", None)))
    a, b, c, d, e = _assert_each_as_alone(ResizeToConvTranspose(), model)
    assert [ax.n_in for ax in a.params.spec.axes] == [1, 4, 8, 8]
    assert [ax.n_in for ax in b.params.spec.axes] == [1, 4, 5, 8]
    assert "channel count is not static" in c.params.fixed.reason
    assert (a.params.dtype, d.params.dtype) == (np.float32, np.float16)
    assert isinstance(e, Skip) and "'x5'" in e.reason


def test_dilated_convs_of_one_geometry_share_it_and_keep_their_own_weights():
    """Same attributes and shapes, other weights (one a runtime input where
    taps that read only padding would be dropped), other pads, an output
    of the bias alone, a kernel of size 1 on one axis, other weight shapes,
    another element type."""
    def conv(name, w, b="B", x="x", **a):
        return helper.make_node("Conv", [x, w, b] if b else [x, w], [name], name=name, **a)

    trim = dict(dilations=[8, 8], pads=[8, 8, 8, 8])    # on 8x8 the outer taps of a rate-8 3x3 Conv read padding only
    nodes = [conv("a", "W1", dilations=[2, 2], pads=[2, 2, 2, 2]),
             conv("b", "W2", "", dilations=[2, 2], pads=[2, 2, 2, 2]),
             conv("c", "W1", dilations=[2, 2], pads=[1, 1, 1, 1]),
             conv("d", "W1", **trim), conv("e", "Wx", **trim),
             conv("f", "W22", dilations=[20, 20], pads=[10, 10, 10, 10]),   # both taps read padding only
             conv("g", "W13", dilations=[3, 3], pads=[0, 3, 0, 3]),
             conv("h", "W8", "B8", dilations=[2, 2], pads=[2, 2, 2, 2]),
             conv("i", "W1", x="x64", dilations=[2, 2], pads=[2, 2, 2, 2])]
    inits = _weights(W1=(4, 4, 3, 3), W2=(4, 4, 3, 3), W13=(4, 4, 1, 3), W22=(4, 4, 2, 2), W8=(8, 4, 3, 3), B=(4,),
                     B8=(8,))
    model = _model(nodes, inits, inputs=(("x", [1, 4, 8, 8]), ("Wx", [4, 4, 3, 3]),
                                         ("x64", [1, 4, 8, 8], TensorProto.DOUBLE)))
    a, b, c, d, e, f, g, h, i = _assert_each_as_alone(DilatedConvToSpaceToBatch(options=_no_chains()), model)
    assert (a.params.weight, a.params.bias, b.params.weight, b.params.bias) == ("W1", "B", "W2", "")
    assert a.params.axes == b.params.axes != c.params.axes
    assert d.params.taps == ((1, 1), (1, 1)) and "no dilation left" in d.notes[-1]
    assert e.params.taps is None and "runtime input" in e.notes[-1]
    assert type(f.params).__name__ == "BiasAlone"
    assert g.notes[0].startswith("kernel size 1 on axes [0]")
    assert (h.params.out_channels, h.params.axes) == (8, a.params.axes)
    assert isinstance(i, Skip) and "DOUBLE" in i.reason and "'i'" in i.reason


def test_convtransposes_of_one_geometry_share_it_and_keep_their_own_weights():
    convt = lambda name, w, b="B", **a: helper.make_node("ConvTranspose", ["x", w, b] if b else ["x", w], [name],
                                                          name=name, **a)
    nodes = [convt("a", "W1", strides=[2, 2]), convt("b", "W2", "", strides=[2, 2]),
             convt("c", "W1", strides=[2, 2], output_padding=[1, 1]), convt("d", "W1", "B3", strides=[2, 2]),
             convt("e", "W1", strides=[2, 2], output_padding=[2, 2])]
    inits = _weights(W1=(4, 2, 3, 3), W2=(4, 2, 3, 3), B=(2,), B3=(3,))
    a, b, c, d, e = _assert_each_as_alone(ConvTransposeToConv(), _model(nodes, inits))
    assert (a.params.weight, a.params.bias, b.params.weight, b.params.bias) == ("W1", "B", "W2", "")
    assert a.params.geometry == b.params.geometry != c.params.geometry
    assert isinstance(d, Skip) and "bias shape [3]" in d.reason and "'d'" in d.reason
    assert isinstance(e, Skip) and "output_padding" in e.reason and "'e'" in e.reason


def _no_chains():
    from passes.dilated_conv.rewrite import DilatedConvOptions
    return DilatedConvOptions(chains=False)


def _chain_model(between: list) -> onnx.ModelProto:
    """Conv (rate 2) -> `between` op types, each on the previous output -> Conv (rate 2)."""
    nodes, x = [helper.make_node("Conv", ["x", "W", "B"], ["c0"], name="c0", dilations=[2, 2],
                                 pads=[2, 2, 2, 2])], "c0"
    for k, op in enumerate(between):
        inputs = [x, "W1"] if op == "Conv" else [x, x] if op == "Add" else [x]
        extra = {"scales": [2.0, 2.0], "mode": "nearest"} if op == "Upsample" else {}
        nodes.append(helper.make_node(op, inputs, [f"v{k}"], name=f"v{k}", **extra))
        x = f"v{k}"
    nodes.append(helper.make_node("Conv", [x, "W", "B"], ["c1"], name="c1", dilations=[2, 2], pads=[2, 2, 2, 2]))
    inits = _weights(W=(4, 4, 3, 3), W1=(4, 4, 1, 1), B=(4,))
    # 32x32: phase images of 256 outputs, so batch is the Convs' default form (taps_below=64)
    return _model(nodes, inits, inputs=(("x", [1, 4, 32, 32]),), opset=8 if "Upsample" in between else 17)


@pytest.mark.parametrize("between, grows", [([], True), (["Relu"], True), (["Conv", "Add"], True),
                                            (["Relu", "Upsample"], False), (["MaxPool"], False)])
def test_a_chain_is_looked_for_where_a_later_dilated_conv_is_in_reach(between, grows):
    """may_grow is a necessary condition of grow's: where it says no, grow
    finds nothing; here, it says yes exactly where grow finds a chain."""
    model = _chain_model(between)
    graph = GraphView(model)
    start = model.graph.node[0]
    p = DilatedConvToSpaceToBatch()
    single = p.match_alone(start, graph)
    grid = Grid(1, tuple(a.out for a in single.params.axes), tuple(single.params.blocks))
    region = grow(graph, start, grid, lambda n: p._chain_conv(n, graph, grid))
    assert may_grow(graph, start) is grows and (region is not None) is grows


def test_no_form_is_ranked_for_a_chain_that_cannot_grow(monkeypatch):
    """A dilated Conv with nothing in reach to chain with is matched alone
    without ranking its forms (what the driver ranks again when lowering)."""
    model = _chain_model(["MaxPool"])
    graph = GraphView(model)
    p = DilatedConvToSpaceToBatch()
    alone = p.match_alone(model.graph.node[0], graph)

    def ranked(*args):
        raise AssertionError("the forms were ranked")

    monkeypatch.setattr(DilatedConvToSpaceToBatch, "default_form", ranked)
    assert _same(p.match(model.graph.node[0], graph), alone)


def test_resizes_reading_scales_sizes_and_roi_of_other_kinds_do_not_share():
    """The same attributes and input shape, parameter inputs that differ in
    what they are (an initializer, a Constant node, a graph input, a Shape
    chain of a symbolic batch) or in their values (roi, sizes): each node's
    own params or reason."""
    inits = {"s2": np.array([1, 1, 2, 2], np.float32), "roi": np.zeros(0, np.float32),
             "roi8": np.array([0, 0, 0.1, 0.1, 1, 1, 0.9, 0.9], np.float32),
             "z2": np.array([1, 4, 16, 16], np.int64), "z3": np.array([1, 4, 16, 24], np.int64)}
    pre = [helper.make_node("Constant", [], ["sc"], value=numpy_helper.from_array(np.array([1, 1, 3, 3], np.float32))),
           helper.make_node("Shape", ["xs"], ["shp"], start=0, end=2),
           helper.make_node("Constant", [], ["hw"], value=numpy_helper.from_array(np.array([16, 16], np.int64))),
           helper.make_node("Concat", ["shp", "hw"], ["dyn"], axis=0)]
    crop = dict(mode="linear", coordinate_transformation_mode="tf_crop_and_resize")
    resize = lambda name, inputs, **a: helper.make_node("Resize", inputs, [name], name=name, **a)
    nodes = pre + [resize("a", ["x", "roi", "s2"], mode="linear"), resize("b", ["x", "roi", "sc"], mode="linear"),
                   resize("c", ["x", "roi", "sg"], mode="linear"), resize("d", ["x", "", "", "z2"], mode="linear"),
                   resize("e", ["x", "", "", "z3"], mode="linear"), resize("f", ["x", "roi8", "s2"], **crop),
                   resize("g", ["x", "roi", "s2"], **crop), resize("h", ["xs", "", "", "dyn"], mode="linear"),
                   resize("i", ["xs", "", "", "z2"], mode="linear")]
    model = _model(nodes, inits, inputs=(("x", [1, 4, 8, 8]), ("xs", ["N", 4, 8, 8]), ("sg", [4])), opset=18)
    a, b, c, d, e, f, g, h, i = _assert_each_as_alone(ResizeToConvTranspose(), model)
    assert [a.params.factors, b.params.factors, d.params.factors] == [[2, 2], [3, 3], [2, 2]]
    assert [ax.n_out for ax in e.params.spec.axes] == [1, 4, 16, 24]
    assert isinstance(c, Skip) and "'sg' is a graph input" in c.reason
    assert isinstance(f, Match) and f.params.spec.axes[2].roi != (0, 1)
    assert isinstance(g, Skip) and "roi has 0 values" in g.reason
    assert isinstance(h, Match) and [ax.n_out for ax in h.params.spec.axes][1:] == [4, 16, 16]
    assert isinstance(i, Skip) and "static size on every resized axis" in i.reason   # z2 resizes the batch too
