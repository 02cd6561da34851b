"""Nodes of a graph as a model of their own: the one builder of standalone models.

The per-rewrite check runs the original nodes and their replacement as two
such models; the target check and the chooser look at a replacement in one
(with the QuantizeLinear it feeds and the existing nodes that read its
outputs where the target's judgement needs them: with_quantize_after,
with_readers).
Values the nodes read from the graph become typed graph inputs, or
initializers where they are constants the caller wants copied in.
"""
from __future__ import annotations

from typing import Optional, Sequence

import onnx
from onnx import helper, numpy_helper

from . import qdq
from .graph import GraphView
from .rewrite import Replacement

SMALL_CONSTANT = 64  # constants of the graph copied into a replacement's model up to this many elements


def external_inputs(nodes: Sequence[onnx.NodeProto]) -> list[str]:
    """The values `nodes` read but do not produce, in first-use order."""
    return external_reads([(n.input[:], n.output[:]) for n in nodes])   # [:]: see external_reads


def external_reads(io: Sequence[tuple[Sequence[str], Sequence[str]]]) -> list[str]:
    """external_inputs of nodes given by their (inputs, outputs): lists
    (iterating a repeated field of a NodeProto ends in an IndexError whose
    message is formatted, several times what its [:] list costs)."""
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
    return assemble(model_head(graph), nodes, initializers, inputs, outputs, name)


def model_head(graph: GraphView) -> onnx.ModelProto:
    """What make_model's model takes from the graph's model: its IR version
    (4 at least) and its opsets, copied (a local check assembles its models
    after the passes that edit the graph)."""
    head = onnx.ModelProto()
    head.ir_version = max(4, graph.model.ir_version)
    head.opset_import.extend(graph.model.opset_import[:])
    return head


def assemble(head: onnx.ModelProto, nodes, initializers, inputs: Sequence[onnx.ValueInfoProto],
             outputs: Sequence[onnx.ValueInfoProto], name: str) -> onnx.ModelProto:
    """make_model's model from model_head's `head` (copied: one head serves both models of a check)."""
    model = onnx.ModelProto()
    model.CopyFrom(head)
    g = model.graph
    g.node.extend(nodes)
    g.name = name
    g.input.extend(inputs)
    g.output.extend(outputs)
    g.initializer.extend(initializers)
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


def with_quantize_after(model, replacement: Replacement, graph: GraphView):
    """The standalone model of a replacement whose output goes alone into a
    per-tensor QuantizeLinear (a quantized Resize: DQ -> Resize -> Q), with
    that QuantizeLinear after it in place of the float output: a nested
    lowering then sees the QDQ group the run will see (the replacement's
    ConvTranspose -> Q) and lowers it as the run will."""
    quantizers = []
    for original, new in replacement.outputs.items():
        readers = graph.consumers(original)
        q = readers[0] if len(readers) == 1 and original not in graph.graph_outputs else None
        if q is None or q.op_type != qdq.QUANTIZE or qdq.grid_of(q) is None or \
                any(graph.constant(name) is None for name in q.input[1:3]):
            continue
        quantizers.append((new, q))
    if not quantizers:
        return model
    out = model.__class__()
    out.CopyFrom(model)
    have = {t.name for t in out.graph.initializer}
    for new, q in quantizers:
        for name in q.input[1:3]:
            if name not in have:
                out.graph.initializer.append(numpy_helper.from_array(graph.constant(name), name))
                have.add(name)
        out.graph.node.append(helper.make_node(qdq.QUANTIZE, [new, *q.input[1:3]], list(q.output), name=q.name,
                                               **{a.name: helper.get_attribute_value(a) for a in q.attribute}))
        k = next(k for k, o in enumerate(out.graph.output) if o.name == new)
        out.graph.output[k].CopyFrom(helper.make_value_info(q.output[0], onnx.TypeProto()))
    return out


def with_readers(model, replacement: Replacement, graph: GraphView, readers: Sequence):
    """The standalone model with a copy of each of `readers` (existing nodes
    of `graph`) after its nodes, reading the replacement's values where they
    read its outputs; what else they read becomes graph inputs (small
    constants initializers, as in replacement_model), and what they write
    graph outputs."""
    out = model.__class__()
    out.CopyFrom(model)
    g = out.graph
    have = {v.name for v in g.input} | {t.name for t in g.initializer} | {o for n in g.node for o in n.output}
    for node in readers:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        del copy.input[:]
        copy.input.extend(replacement.outputs.get(name, name) for name in node.input)
        for name in copy.input:
            if not name or name in have:
                continue
            value = graph.constant(name)
            if value is not None and value.size <= SMALL_CONSTANT:
                g.initializer.append(numpy_helper.from_array(value, name))
            else:
                g.input.append(graph.value_info(name))
            have.add(name)
        g.node.append(copy)
        for name in copy.output:
            if name and name not in have:
                g.output.append(helper.make_value_info(name, onnx.TypeProto()))
                have.add(name)
    return out
