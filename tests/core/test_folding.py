"""core/folding.attributes: every attribute kind as onnx.helper.get_attribute_value
gives it (strings decoded), the common kinds (INT, INTS) read directly; and
folding.attribute, one of them read alone, as attributes gives it."""
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from convrewrite.core.folding import attribute, attributes


def _reference(node) -> dict:
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", errors="replace")
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [x.decode("utf-8", errors="replace") for x in v]
        out[a.name] = v
    return out


def test_every_kind_as_the_helper_reads_it():
    node = helper.make_node("Custom", ["x"], ["y"], domain="test", i=3, ints=[1, -2, 3], f=0.5,
                            floats=[1.5, 2.0], s="DCR", strings=["a", "b"], bad=b"\xff\xfe",
                            t=numpy_helper.from_array(np.arange(3, dtype=np.int64), "t"))
    node.attribute.append(helper.make_attribute("empty_list", [], attr_type=onnx.AttributeProto.INTS))
    got, want = attributes(node), _reference(node)
    assert got == want
    assert [type(v) for v in got.values()] == [type(v) for v in want.values()]
    assert got["ints"] == [1, -2, 3] and got["i"] == 3 and got["bad"] == "\ufffd\ufffd"
    for name, value in got.items():
        alone = attribute(node, name)
        assert alone == value and type(alone) is type(value), name
    assert attribute(node, "missing") is None and attribute(node, "missing", []) == []


def test_one_attribute_of_a_name_given_twice_is_the_last_as_in_attributes():
    node = helper.make_node("Conv", ["x", "w"], ["y"], dilations=[1, 1])
    node.attribute.append(helper.make_attribute("dilations", [2, 2]))
    assert attribute(node, "dilations") == attributes(node)["dilations"] == [2, 2]


def test_a_reference_attribute_is_refused_as_the_helper_refuses_it():
    node = helper.make_node("Conv", ["x", "w"], ["y"])
    a = node.attribute.add()
    a.name, a.ref_attr_name, a.type = "dilations", "d", onnx.AttributeProto.INTS
    with pytest.raises(ValueError):
        helper.get_attribute_value(a)
    with pytest.raises(ValueError):
        attributes(node)
    with pytest.raises(ValueError):
        attribute(node, "dilations")
