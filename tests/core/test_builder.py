"""The Builder's node constructor gives exactly what onnx.helper.make_node gives."""
import numpy as np
import pytest
from onnx import helper, numpy_helper

from convrewrite.core.builder import make_node

ATTRIBUTES = [
    {}, {"axis": 1}, {"axis": -3, "keepdims": 0}, {"alpha": 0.5}, {"alpha": 1e-30, "beta": -2.0},
    {"mode": "DCR"}, {"mode": "é"}, {"mode": b"CRD"}, {"pads": [0, 1, 2, 3]}, {"pads": (2, 2)},
    {"strides": [1], "dilations": [2, 2], "group": 4, "kernel_shape": [3, 3], "auto_pad": "NOTSET"},
    {"scales": [1.0, 2.0]}, {"mixed": [1, 2.5]}, {"flag": True}, {"n": np.int64(7)}, {"x": np.float32(0.25)},
    {"value": numpy_helper.from_array(np.arange(3, dtype=np.float32), "v")}, {"names": ["a", "b"]},
]


@pytest.mark.parametrize("attrs", ATTRIBUTES)
@pytest.mark.parametrize("domain", ["", "com.microsoft"])
def test_make_node_is_onnx_helper_make_node(attrs, domain):
    want = helper.make_node("Op", ["x", "", "w"], ["y", "z"], name="n/op", domain=domain, **attrs)
    got = make_node("Op", ["x", "", "w"], ["y", "z"], "n/op", domain, attrs)
    assert got.SerializeToString() == want.SerializeToString()



def test_make_node_again_is_the_same_and_unshared():
    """A node made from a kept kind: equal values of other types (1, True,
    1.0; [0, 1] and [0.0, 1.0]) are other kinds, and a node changed after it was
    made changes no later one."""
    first = make_node("Op", ["x"], ["y"], "n", "", {"axis": 1, "pads": [0, 1]})
    first.attribute[0].i = 5
    first.input.append("z")
    for attrs in ({"axis": 1, "pads": [0, 1]}, {"axis": True, "pads": [0, 1]}, {"axis": 1.0, "pads": (0, 1)},
                  {"axis": 1, "pads": [0.0, 1.0]}, {"axis": 1, "pads": [0, 1]}):
        want = helper.make_node("Op", ["x"], ["y"], name="n", domain="", **attrs)
        assert make_node("Op", ["x"], ["y"], "n", "", attrs).SerializeToString() == want.SerializeToString()


ARRAYS = [np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(6, dtype=np.float32).reshape(2, 3).T,
          np.array(3, np.int64), np.zeros((0, 2), np.float16), np.array([True, False]), np.arange(4, dtype=np.int8),
          np.arange(4, dtype=np.uint8), np.arange(3, dtype=np.float64),
          np.arange(3, dtype=np.int32), np.array(["a", "bc"], dtype=object)]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype.str}{a.shape}")
def test_from_array_is_numpy_helper_from_array(array):
    from convrewrite.core.weights import from_array, to_array

    want = numpy_helper.from_array(array, "w")
    assert from_array(array, "w").SerializeToString() == want.SerializeToString()
    if array.dtype != object:
        assert np.array_equal(to_array(want), numpy_helper.to_array(want))


def test_copy_keeps_op_and_attributes_and_sets_the_given_ones():
    import onnx
    from convrewrite.core.builder import Builder
    from convrewrite.core.graph import GraphView

    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 3, 3])
    w = numpy_helper.from_array(np.ones((4, 2, 1, 1), np.float32), "w")
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="c", group=2, kernel_shape=[1, 1])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 3, 3])
    model = helper.make_model(helper.make_graph([conv], "g", [x], [y], [w]))
    graph = GraphView(model)
    conv = graph.graph.node[0]
    b = Builder(graph, conv, "p")
    out = b.copy(conv, ["x", "w2"], "moved", group=8, pads=None)
    (new,) = b.nodes
    assert (new.name, list(new.input), list(new.output), out) == ("c/p/moved", ["x", "w2"], ["c/p/moved"], "c/p/moved")
    assert {a.name: helper.get_attribute_value(a) for a in new.attribute} == {"group": 8, "kernel_shape": [1, 1]}
    assert {a.name: helper.get_attribute_value(a) for a in conv.attribute}["group"] == 2   # the original untouched


# --- fresh names -----------------------------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402


class _View:
    """What Builder reads of a view: the node's label and the names in use."""

    def __init__(self, taken):
        self.names_in_use = set(taken)

    def label(self, node):
        return "n"


def _first_free(base: str, taken: set) -> str:
    """The spec of Builder.name: the first of base, base_1, base_2, ... not taken."""
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name


WHATS = ["a", "a_1", "a_2", "b", "a_1_1"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(WHATS), max_size=30),
       st.sets(st.sampled_from([f"n/p/{w}{s}" for w in WHATS for s in ("", "_1", "_2", "_3")]), max_size=8))
def test_builder_names_are_the_first_free_suffix(whats, taken):
    from convrewrite.core.builder import Builder

    b = Builder(_View(taken), None, "p")
    used = set(taken)
    for what in whats:
        want = _first_free(f"n/p/{what}", used)
        assert b.name(what) == want
        used.add(want)


def test_many_names_of_one_kind_are_not_searched_from_the_start_each_time():
    from convrewrite.core.builder import Builder

    class Counting(set):
        asked = 0

        def __contains__(self, name):
            Counting.asked += 1
            return super().__contains__(name)

    view = _View(())
    view.names_in_use = Counting()
    b = Builder(view, None, "p")
    names = [b.name("crop") for _ in range(2000)]
    assert names[:3] == ["n/p/crop", "n/p/crop_1", "n/p/crop_2"] and len(set(names)) == 2000
    assert Counting.asked == 2000   # linear: each candidate name asked about once (from the start: 2,001,000)
