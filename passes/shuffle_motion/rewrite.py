"""shuffle-motion: a pixel shuffle moved after the pointwise ops that follow it.

Before (a DepthToSpace, e.g. the end of a lowered ConvTranspose, then ops
that act on each position alone: a Relu, a 1x1 Conv to fewer channels):
    u [N, b*b*C, H, W] --DepthToSpace(b, DCR)--> y [N, C, bH, bW] --f1--> ... --fk--> z [N, C', bH, bW]

After:
    u --Reshape [-1, C, 0, 0]--> v [N*b*b, C, H, W] --f1--> ... --fk--> w [N*b*b, C', H, W]
      --Reshape [-1, b*b*C', 0, 0]--> [N, b*b*C', H, W] --DepthToSpace(b, DCR)--> z

Identity.  In DCR order channel (p, c) = p*C + c of u holds phase p of
channel c, so the Reshape puts phase p of sample n in batch item n*b*b + p,
each an [C, H, W] image (a view: no data moves).  An op f that acts on each
spatial position alone, with per-channel parameters, commutes with any
rearrangement of positions:

    f(DepthToSpace(u)) = DepthToSpace(f'(u)),  f' = f on every phase image

and f' *is* f on the batch of phase images, with the same weights: a 1x1
Conv, a BatchNormalization, an activation, an Add or Mul of a per-channel
constant (core/pointwise.py).  The shuffle then writes C' channels instead
of C: DepthToSpace is pure data movement (on onnxruntime CPU about 1 ms per
MB), so it goes where the tensor is smallest -- after the run of ops, at the
last point where the channel count is lowest, and only where that is below
C.  The ops run on the same number of positions: no MAC changes.

A CRD shuffle (channel c*b*b + p) puts the phases inside each channel, not
in front of it; where a Conv of group 1 with constant weights alone produces
u, that Conv is rebuilt with its output channels in DCR order (W and B
permuted offline: exact), and the shuffle becomes DCR.

An optimization, not a lowering: the gain is measured on onnxruntime CPU
(docs/latency.md), and on a runtime that lays tensors out channels-last
(TFLite) the Reshape to phase images is itself a copy.  So the pass runs
without a target only (`without_target_only`); with one, every shuffle
stays where the other passes put it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional, Union

import onnx

from convrewrite.core import qdq
from convrewrite.core.graph import GraphView, attributes
from convrewrite.core.pointwise import (POINTWISE_BINARY, POINTWISE_UNARY, batchnorm_not_inference,
                                        broadcasts_per_channel, is_pointwise_conv)
from convrewrite.core.preconditions import first_problem, old_opset, unverifiable_type
from convrewrite.core.rewrite import Code, Match, PassOptions, Skip

from .forms import FORMS, Motion

MIN_OPSET = 5          # Reshape with its shape as an input
MOVABLE = POINTWISE_UNARY | POINTWISE_BINARY | {"Conv"}


@dataclass(frozen=True)
class ShuffleMotionOptions(PassOptions):
    """No options: the pass has one form and moves a shuffle only where it
    then writes fewer bytes (`--passes` leaves it out)."""


@dataclass(frozen=True)
class ShuffleMotion:
    options: ShuffleMotionOptions = field(default_factory=ShuffleMotionOptions)

    name: ClassVar[str] = "shuffle-motion"
    description: ClassVar[str] = ("DepthToSpace moved after the pointwise ops that follow it, to where it "
                                  "shuffles fewer channels (1x1 Conv, activations), exact")
    op_types: ClassVar[tuple] = ("DepthToSpace",)
    mac_bound: ClassVar[Optional[float]] = None
    Options: ClassVar[type] = ShuffleMotionOptions
    forms: ClassVar[tuple] = FORMS
    without_target_only: ClassVar[bool] = True    # see the module docstring's last paragraph

    def preferred(self) -> tuple[str, ...]:
        return ()

    def candidate(self, node: onnx.NodeProto, graph: GraphView) -> bool:
        """A DepthToSpace that would shuffle fewer channels after the pointwise
        ops that follow it.  Any other is no candidate: nothing an accelerator
        lacks is left behind there, so it needs no record (and `--strict`
        does not count it)."""
        if node.op_type != "DepthToSpace" or node.domain not in ("", "ai.onnx"):
            return False
        return _cut(node, graph)[0] > 0

    def match(self, node: onnx.NodeProto, graph: GraphView) -> Union[Match, Skip]:
        where = f"DepthToSpace '{graph.label(node)}'"
        problem = first_problem(old_opset(graph, MIN_OPSET), _input_problem(node, graph),
                                unverifiable_type(graph, node.input[0], "DepthToSpace"))
        if problem:
            return Skip(f"{where}: {problem.reason}", problem.code)
        block, u = int(attributes(node)["blocksize"]), graph.shape(node.input[0])
        channels = u[1] // (block * block)
        cut, fewest, stop = _cut(node, graph)
        if cut == 0:
            return Skip(f"{where}: {stop}", Code.NO_FORM)
        moved = tuple(run_after(node, graph)[0][:cut])
        producer = None
        if attributes(node).get("mode", "DCR") == "CRD":
            producer = graph.producer(node.input[0])
            why = crd_problem(node, producer, graph)
            if why:
                return Skip(f"{where}: {why}", Code.UNSUPPORTED_ATTRIBUTE)
        params = Motion(block, channels, fewest, len(moved), producer is not None,
                        onnx.helper.tensor_dtype_to_np_dtype(graph.dtype(node.input[0])).itemsize, tuple(u[2:]))
        names = ", ".join(f"{n.op_type} '{graph.label(n)}'" for n in moved)
        notes = [f"moved after {names}: shuffles {fewest} channels instead of {channels}"]
        if producer is not None:
            notes.append(f"CRD: Conv '{graph.label(producer)}' rebuilt with its output channels in DCR order")
        nodes = (node, *moved) + ((producer,) if producer is not None else ())
        return Match(node, params, nodes=nodes, notes=tuple(notes))


def _input_problem(node: onnx.NodeProto, graph: GraphView) -> Optional[Skip]:
    a, u = attributes(node), graph.shape(node.input[0])
    block = a.get("blocksize")
    if not isinstance(block, int) or block < 1:
        return Skip(f"blocksize {block!r} is not a positive integer", Code.INVALID_NODE)
    if u is None or len(u) != 4 or not isinstance(u[1], int):
        return Skip(f"its input's shape {u} is not 4-D with static channels; give the model static shapes",
                    Code.DYNAMIC_SHAPE)
    if u[1] % (block * block):
        return Skip(f"its input's {u[1]} channels are not a multiple of blocksize^2 = {block * block}",
                    Code.INVALID_NODE)
    if a.get("mode", "DCR") not in ("DCR", "CRD"):
        return Skip(f"mode {a.get('mode')!r} is neither DCR nor CRD", Code.INVALID_NODE)
    if qdq.region(node, graph) is not None:
        return Skip("it is in a quantized (QDQ) region, whose Q/DQ pairs stay where they are", Code.QUANTIZED)
    return None


def _cut(node: onnx.NodeProto, graph: GraphView) -> tuple[int, int, str]:
    """How many of the ops after the shuffle it moves past (0: none), the
    channels it then shuffles, and, for 0, why not.  It goes to the last
    point where the channel count is lowest, if that is below its own."""
    u, block = graph.shape(node.input[0]), attributes(node).get("blocksize")
    if u is None or len(u) != 4 or not isinstance(u[1], int) or not isinstance(block, int) or block < 1:
        return 0, 0, "its input is not 4-D with static channels"
    channels = u[1] // (block * block)
    run, stop = run_after(node, graph)
    counts = [graph.shape(n.output[0])[1] for n in run]
    fewest = min(counts, default=channels)
    if fewest >= channels:
        return 0, channels, f"no gain: {_no_gain(run, stop, channels, graph)}"
    return max(k for k, c in enumerate(counts) if c == fewest) + 1, fewest, ""


def run_after(node: onnx.NodeProto, graph: GraphView) -> tuple[list, str]:
    """The ops after `node` that the shuffle could move past, in order --
    each the only reader of the one before, spatially pointwise -- and why
    the run stops there."""
    run, value = [], node.output[0]
    while True:
        if value in graph.graph_outputs or value in graph.outer_references:
            return run, f"'{value}' is a graph output or read by a subgraph"
        readers = graph.consumers(value)
        if len(readers) != 1:
            return run, f"'{value}' is read by {len(readers)} nodes"
        why = not_movable(readers[0], value, graph)
        if why:
            return run, f"{readers[0].op_type} '{graph.label(readers[0])}' {why}"
        run.append(readers[0])
        value = readers[0].output[0]


def not_movable(node: onnx.NodeProto, value: str, graph: GraphView) -> Optional[str]:
    """Why the shuffle cannot move past `node` (which reads `value`), or None."""
    if node.domain not in ("", "ai.onnx") or node.op_type not in MOVABLE:
        return "is not a spatially pointwise op"
    if len([o for o in node.output if o]) != 1 or node.output[0] == "" or list(node.input).count(value) != 1:
        return "has more than one output or reads the value twice"
    out = graph.shape(node.output[0])
    if out is None or len(out) != 4 or not isinstance(out[1], int):
        return f"has an output of shape {out}, not 4-D with static channels"
    if qdq.region(node, graph) is not None:
        return "is in a quantized (QDQ) region"
    if node.op_type == "Conv":
        w = graph.shape(node.input[1])
        ok = node.input[0] == value and w is not None and is_pointwise_conv(w[2:], attributes(node))
        return None if ok else "is not a 1x1 Conv of stride 1 without padding reading the value"
    if node.op_type in POINTWISE_UNARY and node.input[0] != value:
        return "reads the value as a parameter"
    if node.op_type == "BatchNormalization":   # per-channel statistics: the same on the phase images
        why = batchnorm_not_inference(node, graph)
        return None if why is None else f"is not in inference mode: {why}"
    for other in [i for i in node.input if i and i != value]:
        s = graph.shape(other)
        if s is None or not broadcasts_per_channel(s, 4):
            return f"reads '{other}' of shape {s}, which does not broadcast per channel"
    return None


def crd_problem(node: onnx.NodeProto, producer, graph: GraphView) -> Optional[str]:
    """Why a CRD shuffle's producer cannot be rebuilt in DCR order, or None."""
    why = ("a CRD shuffle moves only where a Conv of group 1 with constant weight and bias, read by the "
           "shuffle alone, produces its input (its output channels are then put in DCR order)")
    u = node.input[0]
    if producer is None or producer.op_type != "Conv" or producer.domain not in ("", "ai.onnx"):
        return why
    if int(attributes(producer).get("group", 1)) != 1 or qdq.region(producer, graph) is not None:
        return why
    readers = graph.consumers(u)
    if len(readers) != 1 or readers[0] is not node or u in graph.graph_outputs or u in graph.outer_references:
        return why
    params = [i for i in producer.input[1:3] if i]
    return None if all(graph.constant(i) is not None for i in params) else why


def _no_gain(run: list, stop: str, channels: int, graph: GraphView) -> str:
    if not run:
        return f"nothing to move it past ({stop})"
    names = ", ".join(f"{n.op_type} '{graph.label(n)}'" for n in run)
    return (f"after {names} it would shuffle as many channels or more ({channels} here); "
            f"the run of pointwise ops stops where {stop}")
