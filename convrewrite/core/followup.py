"""What a replacement becomes once a later pass has rewritten its nodes.

Some rewrites are finished by another pass: the resize pass emits a depthwise
ConvTranspose that the convtranspose pass lowers to Conv + DepthToSpace where
the target has no ConvTranspose.  To judge such a form against a target
profile, the pass must look at what the target will finally run, not at the
intermediate node:

    after_pass(replacement, graph, later) -> Replacement

runs `later` (a pass instance: candidate / match / build) on the
replacement's own nodes, in a small model of their own (inputs typed as in
`graph`, shapes inferred), and returns the replacement with every node that
`later` rewrites replaced by its rewrite.  The result is for checking only;
it is never spliced (the later pass rewrites the real graph itself, and the
driver verifies that rewrite on its own).
"""
from __future__ import annotations

from typing import Optional

import onnx
from onnx import helper, numpy_helper

from .errors import InputError
from .graph import GraphView
from .rewrite import Replacement, Skip
from .splice import renamed_nodes


def after_pass(replacement: Replacement, graph: GraphView, later) -> Replacement:
    """`replacement` with the nodes `later` would rewrite replaced by their
    rewrites; unchanged where `later` leaves a node alone (or where the
    replacement's shapes cannot be inferred on their own)."""
    view = standalone_view(replacement, graph)
    if view is None:
        return replacement
    nodes, initializers, notes, removed = [], list(replacement.initializers), list(replacement.notes), set()
    for node in view.graph.node:
        if id(node) in removed:
            continue
        found = later.match(node, view) if later.candidate(node, view) else None
        if found is None or isinstance(found, Skip):
            nodes.append(node)
            continue
        rewrite = later.build(found, view)
        removed.update(id(n) for n in found.nodes)
        nodes.extend(renamed_nodes(rewrite))
        initializers.extend(rewrite.initializers)
        notes.append(f"{view.label(node)}: then rewritten by {later.name}")
    return Replacement(tuple(nodes), tuple(initializers), dict(replacement.outputs), tuple(notes))


def standalone_view(replacement: Replacement, graph: GraphView) -> Optional[GraphView]:
    """The replacement as a model of its own (standalone_model), shapes
    inferred; None if inference fails."""
    try:
        return GraphView(standalone_model(replacement, graph))
    except InputError:
        return None


def standalone_model(replacement: Replacement, graph: GraphView,
                     max_constant_size: Optional[int] = None) -> onnx.ModelProto:
    """The replacement's nodes as a model of their own: the values they read
    from `graph` become typed inputs, except constants of `graph` (of at most
    `max_constant_size` elements, if given), which become initializers."""
    produced = {o for n in replacement.nodes for o in n.output if o}
    own = {t.name for t in replacement.initializers}
    inputs, constants = [], []
    for name in dict.fromkeys(i for n in replacement.nodes for i in n.input):
        if not name or name in produced or name in own:
            continue
        value = graph.constant(name)
        if value is not None and (max_constant_size is None or value.size <= max_constant_size):
            constants.append(numpy_helper.from_array(value, name))
        else:
            inputs.append(graph.value_info(name))
    outputs = [helper.make_value_info(v, onnx.TypeProto()) for v in replacement.outputs.values()]
    g = helper.make_graph(list(replacement.nodes), "replacement", inputs, outputs,
                          list(replacement.initializers) + constants)
    return helper.make_model(g, opset_imports=list(graph.model.opset_import),
                             ir_version=max(graph.model.ir_version, 4))  # initializers need not be inputs
