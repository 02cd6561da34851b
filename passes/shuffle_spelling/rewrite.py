"""shuffle-spelling: a DepthToSpace spelled one spatial axis at a time.

    u [N, b*b*C, H, W] --DepthToSpace(b)--> y [N, C, b*H, b*W]
becomes (DCR: channel p_h*b*C + p_w*C + c)
    u --Reshape [0, b, b*C, H, W]--Transpose [0, 2, 3, 1, 4]--Reshape [0, b*C, b*H, W]
      --Reshape [0, b, C, b*H*W, 1]--Transpose [0, 2, 3, 1, 4]--Reshape [0, C, b*H, b*W]--> y
(CRD the same with C outermost: rank 6; emit/pixel_shuffle.py `per_axis`).

Identity: each step moves the outermost block axis left in the channels
behind its spatial axis; the two steps make DepthToSpace's permutation (a
permutation: y is bit-identical).  A 0 in the Reshapes keeps a symbolic batch.

Why: onnxruntime's CPU DepthToSpace is a generic 6-D strided copy (about
1 GB/s), while its Transpose moving a single axis copies whole contiguous
blocks.  On onnxruntime 1.32 CPU, one thread, a 2x2 shuffle ran 2-3.6x
faster this way, DCR and CRD (C=16 on 128x128: 5.24 against 2.40 ms;
benchmarks/bench_shuffle.py, docs/latency.md), so every DepthToSpace the
other passes build (ConvTranspose, nearest Resize, dilated batch form) -- and
any the model had -- is respelled, where it moves more than MIN_ELEMENTS per
image (below that the six nodes cost what the copy saves).  It runs last, after shuffle-motion has
moved the shuffles it moves (that pass reads DepthToSpace nodes).

An optimization, not a lowering (`optimization`): measured on onnxruntime
CPU in float32; NPUs want DEPTH_TO_SPACE and rank <= 4.  So the pass runs
without a target only, on float32 DepthToSpace outside quantized regions
(between Q/DQ onnxruntime fuses a DepthToSpace into an 8-bit one, not
measured here), with static channels and spatial sizes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import ClassVar, Optional, Union

import onnx

from convrewrite.core import qdq
from convrewrite.core.graph import GraphView, attributes
from convrewrite.core.preconditions import old_opset
from convrewrite.core.rewrite import Code, Match, PassOptions, Skip

from .forms import FORMS, Spelling

MIN_OPSET = 5          # Reshape with its shape as an input
# Up to this many elements the six nodes' overhead eats the copy saved: onnxruntime 1.32 CPU,
# one thread, a 2x2 shuffle to 4x16x16 or 16x8x8 (1,024) took 0.4-1.0 us longer per axis than
# DepthToSpace (about 20 us each); to 8x16x16 or 2x32x32 (2,048) 3-5 us less (docs/latency.md).
MIN_ELEMENTS = 1024


@dataclass(frozen=True)
class ShuffleSpellingOptions(PassOptions):
    """No options: `--passes` leaves the pass out."""


@dataclass(frozen=True)
class ShuffleSpelling:
    options: ShuffleSpellingOptions = field(default_factory=ShuffleSpellingOptions)

    name: ClassVar[str] = "shuffle-spelling"
    description: ClassVar[str] = (f"DepthToSpace of more than {MIN_ELEMENTS:,} elements per image as one "
                                  "Reshape/Transpose/Reshape per axis, 2-3.6x faster on onnxruntime CPU, exact "
                                  "(a permutation); float32; no target")
    op_types: ClassVar[tuple] = ("DepthToSpace",)
    mac_bound: ClassVar[Optional[float]] = None
    Options: ClassVar[type] = ShuffleSpellingOptions
    forms: ClassVar[tuple] = FORMS
    optimization: ClassVar[bool] = True    # see the module docstring's last paragraph

    def preferred(self) -> tuple[str, ...]:
        return ()

    def candidate(self, node: onnx.NodeProto, graph: GraphView) -> bool:
        """A float32 DepthToSpace outside quantized regions whose input has a
        static channel count and spatial sizes, block above 1."""
        if node.op_type != "DepthToSpace" or node.domain not in ("", "ai.onnx") or qdq.region(node, graph):
            return False
        u, a = graph.shape(node.input[0]), attributes(node)
        block = a.get("blocksize")
        return (graph.dtype(node.input[0]) == onnx.TensorProto.FLOAT and u is not None and len(u) == 4
                and all(isinstance(n, int) for n in u[1:]) and isinstance(block, int) and block > 1
                and u[1] % (block * block) == 0 and a.get("mode", "DCR") in ("DCR", "CRD"))

    def match(self, node: onnx.NodeProto, graph: GraphView) -> Union[Match, Skip]:
        problem = old_opset(graph, MIN_OPSET)
        if problem:
            return Skip(f"DepthToSpace '{graph.label(node)}': {problem.reason}", problem.code)
        u = graph.shape(node.input[0])
        if prod(u[1:]) <= MIN_ELEMENTS:
            return Skip(f"DepthToSpace '{graph.label(node)}': {prod(u[1:])} elements per image, at most "
                        f"{MIN_ELEMENTS}: one axis at a time measured no faster there", Code.NO_FORM)
        a = attributes(node)
        block, mode = int(a["blocksize"]), a.get("mode", "DCR")
        params = Spelling(block, mode, u[1] // (block * block), tuple(u[2:]), 4, graph.opset())
        return Match(node, params, notes=(f"{mode} blocksize {block}: one Reshape/Transpose/Reshape per axis "
                                          "(onnxruntime CPU moves one axis by block copies)",))
