"""shuffle-motion: a pixel shuffle moved after the pointwise ops that follow it.

Before (a DepthToSpace, e.g. the end of a lowered ConvTranspose, then ops
that act on each position alone: a Relu, an Add of a product L·X·R, a 1x1
Conv to fewer channels):
    u [N, B*C, H, W] --DepthToSpace(b, DCR)--> y [N, C, bH, bW] --f1--> ... --fk--> z [N, C', bH, bW]

After (grouped, B = b*b phases):
    u --f1'--> ... --fk'--> w [N, B*C', H, W] --DepthToSpace(b, DCR)--> z
    fi' = fi with each per-channel parameter repeated B times (a 1x1 Conv of
          group g: group g*B, weight and bias tiled)

After (phase-batch, where grouped does not apply: a parameter computed at run time):
    u --Reshape [-1, C, 0, 0]--> [N*B, C, H, W] --f1--> ... --fk--> [N*B, C', H, W]
      --Reshape [-1, B*C', 0, 0]--> [N, B*C', H, W] --DepthToSpace(b, DCR)--> z

Identity.  In DCR order channel p*C + c of u holds phase p of channel c:
u is B phase images side by side along the channels (and, reshaped, along
the batch: a view).  An op f that acts on each spatial position alone with
per-channel parameters (core/pointwise.py) commutes with any rearrangement
of positions:

    f(DepthToSpace(u)) = DepthToSpace(f'(u)),  f' = f on every phase image

and f' is f on the channels of u with its parameters repeated per phase
(grouped), or f itself on the batch of phase images (phase-batch).  The
shuffle then writes C' channels instead of C: DepthToSpace is pure data
movement (on onnxruntime CPU about 1 ms per MB), so it goes where the
tensor is smallest -- the last point of the run where the channel count is
lowest, and only where that is below C.  The ops see the same positions:
no MAC changes.

An elementwise op (Add, Mul, ...) whose other operand v is a product
L · X · R of two MatMuls with constant matrices (the resize pass's matmul
form of a linear Resize; products.py) moves too, v computed in phase order
by the same MACs instead of a copy:

    DepthToSpace(u) + L·X·R = DepthToSpace(u + stack_pq(L[p::b] · X · R[:, q::b]))

A CRD shuffle (channel c*B + p) puts the phases inside each channel; where a
Conv of group 1 with constant weights alone produces u, that Conv is rebuilt
with its output channels in DCR order (W and B permuted offline: exact).

An optimization, not a lowering (`optimization`): the gain is measured on
onnxruntime CPU (docs/shuffle_motion.md), and on a runtime that lays
tensors out channels-last (TFLite) the phase images are no view.  So the
pass runs without a target only, and a shuffle it does not move is not
"left alone" (`--strict` does not count it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional, Union

import onnx

from convrewrite.core import qdq
from convrewrite.core.folding import attribute
from convrewrite.core.graph import GraphView, attributes
from convrewrite.core.pointwise import (POINTWISE_BINARY, POINTWISE_UNARY, batchnorm_not_inference,
                                        broadcasts_per_channel, is_pointwise_conv)
from convrewrite.core.preconditions import first_problem, old_opset, unverifiable_type
from convrewrite.core.rewrite import Code, Match, PassOptions, Skip

from .forms import FORMS, Motion
from .products import phase_product

MIN_OPSET = 5          # Reshape with its shape as an input
MOVABLE = POINTWISE_UNARY | POINTWISE_BINARY | {"Conv"}
# onnxruntime 1.32 CPU has a float64 DepthToSpace (and Relu, Add, ...), so that is not why; but no
# Conv of any type but float16 and float32, and the gain is measured in float32 only.
OTHER_TYPES = ("the pass is an optimization measured on onnxruntime CPU in float32 (benchmarks/bench_shuffle.py), "
               "and onnxruntime has no Conv of other types to check a moved 1x1 Conv against")


@dataclass(frozen=True)
class ShuffleMotionOptions(PassOptions):
    """No options: `--passes` leaves the pass out.  Its forms take their
    list order (grouped, then phase-batch where grouped does not apply)."""


@dataclass(frozen=True)
class ShuffleMotion:
    options: ShuffleMotionOptions = field(default_factory=ShuffleMotionOptions)

    name: ClassVar[str] = "shuffle-motion"
    description: ClassVar[str] = ("DepthToSpace moved after the pointwise ops that follow it, to where it "
                                  "shuffles fewer channels (1x1 Conv, activations), exact; no target")
    op_types: ClassVar[tuple] = ("DepthToSpace",)
    mac_bound: ClassVar[Optional[float]] = None
    Options: ClassVar[type] = ShuffleMotionOptions
    forms: ClassVar[tuple] = FORMS
    optimization: ClassVar[bool] = True    # see the module docstring's last paragraph

    def preferred(self) -> tuple[str, ...]:
        return ()

    def candidate(self, node: onnx.NodeProto, graph: GraphView) -> bool:
        """A float DepthToSpace outside quantized regions that would shuffle
        fewer channels after the pointwise ops that follow it."""
        return (node.op_type == "DepthToSpace" and node.domain in ("", "ai.onnx")
                and qdq.region(node, graph) is None and bool(moved_ops(node, graph)[0]))

    def match(self, node: onnx.NodeProto, graph: GraphView) -> Union[Match, Skip]:
        where = f"DepthToSpace '{graph.label(node)}'"
        problem = first_problem(old_opset(graph, MIN_OPSET), _input_problem(node, graph),
                                unverifiable_type(graph, node.input[0], OTHER_TYPES))
        if problem:
            return Skip(f"{where}: {problem.reason}", problem.code)
        moved, fewest = moved_ops(node, graph)
        if not moved:
            return Skip(f"{where}: it would not shuffle fewer channels after the ops that follow it", Code.NO_FORM)
        producer = None
        if attributes(node).get("mode", "DCR") == "CRD":
            producer = graph.producer(node.input[0])
            why = crd_problem(node, producer, graph)
            if why:
                return Skip(f"{where}: a CRD shuffle moves only with the Conv that produces its input, rebuilt "
                            f"in DCR order; {why}", Code.UNSUPPORTED_ATTRIBUTE)
        block, u = int(attributes(node)["blocksize"]), graph.shape(node.input[0])
        channels = u[1] // (block * block)
        found = products_read(moved, node.output[0], block, graph)
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(graph.dtype(node.input[0])).itemsize
        params = Motion(block, channels, fewest, len(moved), producer is not None, itemsize, tuple(u[2:]),
                        tuple(product for product, _ in found))
        names = ", ".join(f"{n.op_type} '{graph.label(n)}'" for n in moved)
        notes = [f"moved after {names}: shuffles {fewest} channels instead of {channels}"]
        notes += [f"'{product.value}' (MatMul '{graph.label(first)}', MatMul '{graph.label(second)}') computed "
                  "in phase order: the same MACs, two Reshapes (views on onnxruntime), no copy"
                  for product, (first, second) in found]
        if producer is not None:
            notes.append(f"CRD: Conv '{graph.label(producer)}' rebuilt with its output channels in DCR order")
        matmuls = tuple(n for _, pair in found for n in pair)
        nodes = (node, *moved, *matmuls) + ((producer,) if producer is not None else ())
        return Match(node, params, nodes=nodes, notes=tuple(notes))


def _input_problem(node: onnx.NodeProto, graph: GraphView) -> Optional[Skip]:
    a, u = attributes(node), graph.shape(node.input[0])
    block = a["blocksize"]                          # moved_ops found it a positive int, u 4-D
    if u[1] % (block * block):
        return Skip(f"its input's {u[1]} channels are not a multiple of blocksize^2 = {block * block}",
                    Code.INVALID_NODE)
    if a.get("mode", "DCR") not in ("DCR", "CRD"):
        return Skip(f"mode {a.get('mode')!r} is neither DCR nor CRD", Code.INVALID_NODE)
    return None


def moved_ops(node: onnx.NodeProto, graph: GraphView) -> tuple[tuple, int]:
    """The ops the shuffle `node` moves past and the channels it then
    shuffles: the run after it up to the last point where the channel count
    is lowest, if that is below its own; else ((), its channels)."""
    u, block = graph.shape(node.input[0]), attribute(node, "blocksize")
    if u is None or len(u) != 4 or not isinstance(u[1], int) or not isinstance(block, int) or block < 1:
        return (), 0
    channels = u[1] // (block * block)
    run = run_after(node, block, graph)
    counts = [graph.shape(n.output[0])[1] for n in run]
    fewest = min(counts, default=channels)
    if fewest >= channels:
        return (), channels
    return tuple(run[:max(k for k, c in enumerate(counts) if c == fewest) + 1]), fewest


def run_after(node: onnx.NodeProto, block: int, graph: GraphView) -> list:
    """The ops after `node` (a shuffle of `block`) that the shuffle could
    move past, in order: each the only reader of the value before it (no
    graph output, no subgraph read), and spatially pointwise (`movable`)."""
    run, value = [], node.output[0]
    while value not in graph.graph_outputs and value not in graph.outer_references:
        readers = graph.consumers(value)
        if len(readers) != 1 or not movable(readers[0], value, block, graph):
            break
        run.append(readers[0])
        value = readers[0].output[0]
    return run


def movable(node: onnx.NodeProto, value: str, block: int, graph: GraphView) -> bool:
    """Whether `node`, which reads `value`, acts on each spatial position
    alone with per-channel parameters (a 4-D output with static channels);
    an elementwise op's other operand may also be a phase product
    (products.py) of the value's own shape (no broadcast either way), which
    the moved op reads in phase order."""
    if node.domain not in ("", "ai.onnx") or node.op_type not in MOVABLE or qdq.region(node, graph) is not None:
        return False
    out = graph.shape(node.output[0])
    inputs, outputs = node.input[:], node.output[:]   # slices: see core/graph._indexes
    if len([o for o in outputs if o]) != 1 or not outputs[0] or inputs.count(value) != 1:
        return False
    if out is None or len(out) != 4 or not isinstance(out[1], int):
        return False
    if node.op_type == "Conv":
        w = graph.shape(node.input[1])
        return (node.input[0] == value and w is not None and all(k == 1 for k in w[2:])   # attributes decoded last
                and is_pointwise_conv(w[2:], attributes(node)))
    if node.op_type in POINTWISE_UNARY and node.input[0] != value:
        return False                         # the value as a parameter (PRelu's slope, Clip's bound)
    if node.op_type == "BatchNormalization":  # per-channel statistics: the same on the phase images
        return batchnorm_not_inference(node, graph) is None
    others = [i for i in inputs if i and i != value]
    return all(per_channel(i, graph) or (graph.shape(i) == graph.shape(value) == out
                                         and phase_product(i, block, graph) is not None)
               for i in others)


def per_channel(name: str, graph: GraphView) -> bool:
    shape = graph.shape(name)
    return shape is not None and broadcasts_per_channel(shape, 4)


def products_read(moved: tuple, value: str, block: int, graph: GraphView) -> list:
    """The phase products (with their MatMul pairs) the moved ops read
    beside the run: every operand of a moved op other than a Conv or a
    BatchNormalization (their parameters are per channel) that is not the
    run's value and not per-channel (`movable` admitted each)."""
    found = {}
    for node in moved:
        if node.op_type not in ("Conv", "BatchNormalization"):
            found.update((i, phase_product(i, block, graph)) for i in node.input[:]
                         if i and i != value and not per_channel(i, graph))
        value = node.output[0]
    return list(found.values())


def crd_problem(node: onnx.NodeProto, producer, graph: GraphView) -> Optional[str]:
    """Why a CRD shuffle's producer cannot be rebuilt in DCR order, or None."""
    u = node.input[0]
    if producer is None or producer.op_type != "Conv" or producer.domain not in ("", "ai.onnx"):
        return f"'{u}' does not come from a Conv"
    if int(attributes(producer).get("group", 1)) != 1:
        return (f"Conv '{graph.label(producer)}' has group {attributes(producer)['group']} (DCR order would "
                "mix its groups' output channels)")
    readers = graph.consumers(u)
    if len(readers) != 1 or u in graph.graph_outputs or u in graph.outer_references:
        return f"'{u}' is read by more than the shuffle"
    if qdq.region(producer, graph) is not None:
        return f"Conv '{graph.label(producer)}' is quantized"
    runtime = [i for i in producer.input[1:3] if i and graph.constant(i) is None]
    return f"Conv '{graph.label(producer)}' reads '{runtime[0]}' computed at run time" if runtime else None
