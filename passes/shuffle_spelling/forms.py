"""The form of shuffle-spelling (see rewrite.py for why).

    per-axis   the DepthToSpace as one Reshape -> Transpose -> Reshape per
               spatial axis, each Transpose moving one block axis behind its
               spatial axis (emit/pixel_shuffle.py `per_axis`: rank 5 for
               DCR, 6 for CRD); a permutation, so bit-identical
"""
from __future__ import annotations

from dataclasses import dataclass

from convrewrite.core.builder import Builder
from convrewrite.core.forms import Cost, Form
from convrewrite.emit.pixel_shuffle import pixel_shuffle, pixel_shuffle_cost, shuffle_rank


@dataclass(frozen=True)
class Spelling:
    """What match computed: the DepthToSpace's block, mode, output channels
    C, its input's spatial sizes (static) and element size, the opset."""

    block: int
    mode: str
    channels: int
    sizes: tuple
    itemsize: int
    opset: int

    @property
    def blocks(self) -> list:
        return [self.block, self.block]


class PerAxis(Form):
    name = "per-axis"

    def cost(self, match, variant, graph) -> Cost:
        p = match.params
        moved = pixel_shuffle_cost(p.channels, p.blocks, p.sizes, p.itemsize, p.mode, p.opset, per_axis=True)
        return Cost(macs=0, moved_bytes=moved.bytes, nodes=moved.nodes, grouped_macs=0, streamed_bytes=0,
                    max_rank=shuffle_rank(p.blocks, p.mode, p.opset, per_axis=True, sizes=p.sizes))

    def build(self, match, variant, graph, b: Builder) -> dict:
        p = match.params
        y = pixel_shuffle(b, match.node.input[0], p.channels, p.blocks, list(p.sizes), p.mode, per_axis=True)
        return {match.node.output[0]: y}


FORMS = (PerAxis(),)
