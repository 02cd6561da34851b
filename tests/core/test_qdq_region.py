"""core/qdq.py's shortcut: a graph with no QuantizeLinear or DequantizeLinear
node (GraphView.has_qdq False) has no quantized region and no weight read
through a DequantizeLinear, answered without a walk; the answers are the
walk's, with QDQ nodes and without."""
import pytest

from convrewrite.core import qdq
from convrewrite.core.graph import GraphView
from qdq_models import decoder_block, dilated_block, quantized, resize_block


def _answers(view: GraphView) -> list:
    return [(qdq.region(n, view), [qdq.weight_dequantize(i, view) for i in n.input[1:] if i])
            for n in view.graph.node]


def _walked(model) -> list:
    """The answers with the shortcut off (the view told it may hold QDQ nodes)."""
    view = GraphView(model)
    view.has_qdq = True
    return _answers(view)


@pytest.mark.parametrize("build", [decoder_block, dilated_block, resize_block])
def test_a_float_graph_has_no_quantized_region(build):
    model = build()
    view = GraphView(model)
    assert not view.has_qdq
    assert _answers(view) == _walked(model)
    assert all(r is None and not any(w) for r, w in _answers(view))


@pytest.mark.parametrize("name", ["decoder", "dilated", "resize_nearest"])
def test_a_quantized_graph_is_walked(name):
    model = quantized(name)
    view = GraphView(model)
    assert view.has_qdq
    answers = _answers(view)
    assert any(r is not None for r, _ in answers)
    assert [(r and r.facts, [w and w.name for w in ws]) for r, ws in answers] == \
        [(r and r.facts, [w and w.name for w in ws]) for r, ws in _walked(model)]
