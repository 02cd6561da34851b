"""Nodes of a graph as a model of their own: the one builder of standalone models.

The per-rewrite check runs the original nodes and their replacement as two
such models; the target check and the chooser look at a replacement in one.
Values the nodes read from the graph become typed graph inputs, or
initializers where they are constants the caller wants copied in.
"""
from __future__ import annotations

from typing import Optional, Sequence

import onnx
from onnx import helper, numpy_helper

from .graph import GraphView
from .rewrite import Replacement

SMALL_CONSTANT = 64  # constants of the graph copied into a replacement's model up to this many elements


def external_inputs(nodes: Sequence[onnx.NodeProto]) -> list[str]:
    """The values `nodes` read but do not produce, in first-use order."""
    return external_reads([(n.input, n.output) for n in nodes])


def external_reads(io: Sequence[tuple[Sequence[str], Sequence[str]]]) -> list[str]:
    """external_inputs of nodes given by their (inputs, outputs)."""
    produced = {o for _, outputs in io for o in outputs}
    seen, out = set(), []
    for inputs, _ in io:
        for i in inputs:
            if i and i not in produced and i not in seen:
                seen.add(i)
                out.append(i)
    return out


def make_model(graph: GraphView, nodes, initializers, inputs: Sequence[onnx.ValueInfoProto],
               outputs: Sequence[onnx.ValueInfoProto], name: str) -> onnx.ModelProto:
    """A model of `nodes` with the graph's opsets (IR 4 at least: initializers
    need not be listed as inputs): the message helper.make_model(
    helper.make_graph(...)) makes, built in place (make_model copies the
    graph it is given once more; there is one such model per side of every
    local check)."""
    model = onnx.ModelProto()
    model.ir_version = max(4, graph.model.ir_version)
    g = model.graph
    g.node.extend(nodes)
    g.name = name
    g.input.extend(inputs)
    g.output.extend(outputs)
    g.initializer.extend(initializers)
    model.opset_import.extend(graph.model.opset_import)
    return model


def replacement_model(replacement: Replacement, graph: GraphView,
                      max_constant_size: Optional[int] = SMALL_CONSTANT) -> onnx.ModelProto:
    """The replacement's nodes as a model: what they read from `graph` becomes
    typed inputs, except constants of at most `max_constant_size` elements
    (all of them when None), which become initializers."""
    own = {t.name for t in replacement.initializers}
    inputs, constants = [], []
    for name in external_inputs(replacement.nodes):
        if name in own:
            continue
        value = graph.constant(name)
        if value is not None and (max_constant_size is None or value.size <= max_constant_size):
            constants.append(numpy_helper.from_array(value, name))
        else:
            inputs.append(graph.value_info(name))
    outputs = [helper.make_value_info(v, onnx.TypeProto()) for v in replacement.outputs.values()]
    return make_model(graph, replacement.nodes, list(replacement.initializers) + constants, inputs, outputs,
                      "replacement")
