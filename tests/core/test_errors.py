"""errors.retold: an exception's text without what a run makes up."""
import pytest

from convrewrite.core.errors import error_text, retold


class Refusal(Exception):
    """As onnxruntime's exception types: one message."""


def test_the_text_is_retold_in_an_exception_of_its_type():
    with pytest.raises(Refusal) as e:
        with retold({"Load model from /tmp/tmpab12/m.onnx failed:": "", "/tmp/tmpab12": "<folder>"}):
            raise Refusal("Load model from /tmp/tmpab12/m.onnx failed:bad node; see /tmp/tmpab12/m.data")
    assert str(e.value) == "bad node; see <folder>/m.data"
    assert "/tmp/tmpab12" in str(e.value.__cause__)   # the original, for a traceback


def test_an_error_that_names_no_key_is_raised_as_it_is():
    error = Refusal("bad node")
    with pytest.raises(Refusal) as e:
        with retold({"/tmp/tmpab12": "<folder>"}):
            raise error
    assert e.value is error


def test_a_type_that_does_not_take_the_text_alone_becomes_a_runtime_error():
    with pytest.raises(RuntimeError, match=r"^'<folder>/x'$"):   # KeyError's text is its key's repr
        with retold({"/tmp/tmpab12": "<folder>"}):
            raise KeyError("/tmp/tmpab12/x")
    with pytest.raises(RuntimeError, match="^'utf-8' codec can't decode byte 0xff in position 0: cannot decode "
                                           "<folder>$"):
        with retold({"/tmp/tmpab12": "<folder>"}):
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "cannot decode /tmp/tmpab12")


def test_error_text_leaves_out_object_addresses_and_keeps_the_rest():
    text = "bad value <function f at 0x7f3a2b1c0d30> in\n<X object at 0x55d0c0ffee00> (at 0x10)"
    assert error_text(ValueError(text)) == "ValueError: bad value <function f> in\n<X object> (at 0x10)"
