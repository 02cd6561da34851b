"""The forms of shuffle-motion (see rewrite.py for the identity).

    grouped       the moved ops on the phase channels as they are, each
                  per-channel parameter repeated per phase (B = block^2
                  copies, phase-major like DCR's channels): a 1x1 Conv with
                  group g becomes one with group g*B, its weight and bias
                  tiled B times; then DepthToSpace (DCR).  No Reshape, no
                  batch change: only the shuffle moves data
    phase-batch   Reshape the shuffle's input to a batch of phase images
                  [N*B, C, H, W], the moved ops with their own parameters,
                  Reshape back, DepthToSpace (DCR); where grouped does not
                  apply (a per-channel parameter computed at run time)

Both first rebuild a CRD shuffle's producing Conv in DCR order, and compute
a phase product the moved ops read (products.py) in their layout.  Measured on
onnxruntime CPU the two run alike (docs/shuffle_motion.md); grouped comes
first because it moves only the shuffle's bytes and keeps the batch, which a
channels-last runtime would otherwise have to transpose.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from convrewrite.core.builder import Builder
from convrewrite.core.cost import grouped_macs, streamed_bytes, total_macs
from convrewrite.core.forms import Cost, Form
from convrewrite.core.graph import attributes
from convrewrite.emit.opset_ops import movement, other_nodes

from .products import PhaseProduct, build_product, phase_layout, product_movement, product_rank


@dataclass(frozen=True)
class Motion:
    """What match computed: the shuffle's block and channels (C, the
    DepthToSpace's output channels), the channels where it goes (C'), how
    many ops it moves past (match.nodes[1:1 + moved]), whether it was CRD
    (its producing Conv, match.nodes[-1], is rebuilt), and the element size
    and spatial sizes (H, W) of its input; the phase products the moved ops
    read (their MatMuls follow the moved ops in match.nodes)."""

    block: int
    channels: int
    moved_channels: int
    moved: int
    crd: bool
    itemsize: int
    spatial: tuple
    products: tuple = ()

    @property
    def phases(self) -> int:
        return self.block * self.block


class _Motion(Form):
    def cost(self, match, variant, graph) -> Cost:
        p = match.params
        computing = list(match.nodes[1:])        # the moved ops, products' MatMuls, a CRD producer: the same MACs
        moved = self.movement(p) + other_nodes(len(computing))
        for product in p.products:
            moved += product_movement(product, p.block, p.itemsize)
        rank = max([4, *map(product_rank, p.products)])
        return Cost(macs=total_macs(computing, graph, per_item=True), moved_bytes=moved.bytes, nodes=moved.nodes,
                    max_rank=rank, grouped_macs=grouped_macs(computing, graph, per_item=True),
                    streamed_bytes=_streamed(computing, p, graph))

    def movement(self, p: Motion):
        raise NotImplementedError

    def build(self, match, variant, graph, b: Builder):
        p, shuffle = match.params, match.node
        x = dcr_conv(b, match.nodes[-1], p, graph) if p.crd else shuffle.input[0]
        x, value = self.enter(b, x, p), shuffle.output[0]
        matrices = {}
        phased = {product.value: build_product(b, product, p.block, self.product_layout(product, p), graph, matrices)
                  for product in p.products}
        for node in match.nodes[1:1 + p.moved]:
            x = self.move(b, node, [x if i == value else phased.get(i, i) for i in node.input], value, p, graph)
            value = node.output[0]
        mode = "DCR" if graph.opset() >= 11 else None          # DCR is the only mode before opset 11
        return {value: b.op("DepthToSpace", [self.leave(b, x, p)], "depth_to_space", blocksize=p.block, mode=mode)}

    def enter(self, b: Builder, x: str, p: Motion) -> str:
        return x

    def leave(self, b: Builder, x: str, p: Motion) -> str:
        return x

    def move(self, b: Builder, node, inputs: list, value: str, p: Motion, graph) -> str:
        return b.copy(node, inputs, node.op_type.lower())

    def product_layout(self, product: PhaseProduct, p: Motion) -> tuple:
        raise NotImplementedError


class Grouped(_Motion):
    name = "grouped"

    def applies(self, match, graph) -> Optional[str]:
        value = match.node.output[0]
        for node in match.nodes[1:1 + match.params.moved]:
            widens = graph.shape(node.output[0])[1] != graph.shape(value)[1] and node.op_type != "Conv"
            if widens:   # [.., 1 channel] + [1, C, 1, 1]: B phase channels cannot broadcast to B*C
                return f"{node.op_type} '{graph.label(node)}' broadcasts its channels to more"
            for name in tiled_inputs(node, value, match.params.products, graph):
                if graph.constant(name) is None:
                    return (f"{node.op_type} '{graph.label(node)}' reads '{name}' computed at run time; "
                            "the grouped form repeats it per phase offline")
            value = node.output[0]
        return None

    def movement(self, p: Motion):
        image = [p.phases * p.moved_channels, *p.spatial]
        return movement([image], image, p.itemsize)                 # the DepthToSpace

    def move(self, b: Builder, node, inputs: list, value: str, p: Motion, graph) -> str:
        repeat = tiled_inputs(node, value, p.products, graph)
        inputs = [b.initializer(tiled(graph.constant(i), p.phases, node), f"{node.op_type.lower()}_tiled")
                  if i in repeat else i for i in inputs]
        group = int(attributes(node).get("group", 1)) * p.phases if node.op_type == "Conv" else None
        return b.copy(node, inputs, node.op_type.lower(), group=group)

    def product_layout(self, product: PhaseProduct, p: Motion) -> tuple:
        return phase_layout(product, p.block, batch=False)


class PhaseBatch(_Motion):
    name = "phase-batch"

    def movement(self, p: Motion):
        image = [p.phases, *p.spatial]                 # per batch item: phases x H x W positions
        to_batch = movement([[p.channels, *image]], [p.channels, *image], p.itemsize)
        back = movement([[p.moved_channels, *image]], [p.moved_channels, *image], p.itemsize)
        return to_batch + back + back                  # Reshape, Reshape, DepthToSpace

    def enter(self, b: Builder, x: str, p: Motion) -> str:
        return b.op("Reshape", [x, b.ints([-1, p.channels, 0, 0], "phase_batch_shape")], "phase_batch")

    def leave(self, b: Builder, x: str, p: Motion) -> str:
        return b.op("Reshape", [x, b.ints([-1, p.phases * p.moved_channels, 0, 0], "phase_channels_shape")],
                    "phase_channels")

    def product_layout(self, product: PhaseProduct, p: Motion) -> tuple:
        return phase_layout(product, p.block, batch=True)


def tiled_inputs(node, value: str, products: tuple, graph) -> list:
    """The inputs of a moved op (which reads the run's `value`) that hold
    one value per channel, so the grouped form repeats them per phase: a
    Conv's weight and bias, BatchNormalization's four statistics, and any
    other input with a channel axis of its own (third from the right, size
    > 1) but a phase product; scalars and size-1 axes broadcast over the
    phases as they are."""
    if node.op_type == "Conv":
        return [i for i in node.input[1:3] if i]
    if node.op_type == "BatchNormalization":
        return [i for i in node.input[1:5] if i]
    phased = {product.value for product in products}
    shapes = {i: graph.shape(i) for i in node.input if i and i != value and i not in phased}
    return [i for i, s in shapes.items() if s is not None and len(s) >= 3 and s[-3] != 1]


def tiled(array: np.ndarray, phases: int, node) -> np.ndarray:
    """A per-channel parameter repeated for `phases` phase-major channel
    blocks: along axis 0 for a Conv's weight and bias and BatchNormalization's
    statistics, along the channel axis (third from the right) otherwise."""
    axis = 0 if node.op_type in ("Conv", "BatchNormalization") else array.ndim - 3
    reps = [1] * array.ndim
    reps[axis] = phases
    return np.tile(array, reps)


def dcr_conv(b: Builder, conv, p: Motion, graph) -> str:
    """The Conv that produced a CRD shuffle's input, its output channels put
    in DCR order: channel c*B + q moves to q*C + c (B = block^2 phases), in
    the weight and the bias alike -- the same numbers, another order."""
    def dcr(array: np.ndarray) -> np.ndarray:
        crd = array.reshape(p.channels, p.phases, *array.shape[1:])
        return np.ascontiguousarray(crd.swapaxes(0, 1).reshape(array.shape))

    inputs = [conv.input[0], b.initializer(dcr(graph.constant(conv.input[1])), "dcr_weight")]
    if len(conv.input) > 2 and conv.input[2]:
        inputs.append(b.initializer(dcr(graph.constant(conv.input[2])), "dcr_bias"))
    return b.copy(conv, inputs, "dcr_conv")


FORMS = (Grouped(), PhaseBatch())


def _streamed(computing: list, p, graph) -> Optional[int]:
    """The bytes the computing nodes stream as they are, but a phase
    product's: its MatMul that streams X (or X·R) broadcasts the b phase
    matrices over it, so it streams b times as much (products.py)."""
    total = streamed_bytes(computing, graph, per_item=True)
    for product in p.products:
        second = graph.producer(product.value)
        first = next(graph.producer(i) for i in second.input if not graph.is_constant(i))
        extra = streamed_bytes([first, second], graph, per_item=True)
        total = None if total is None or extra is None else total + (p.block - 1) * extra
    return total
