"""The test helpers every positive and negative test goes through.

assert_rewrites checks three things at once, so no test can forget one:
the result is a valid model, its op counts are as expected, and it computes
what the original computes (onnxruntime on the original, or onnx's reference
evaluator where onnxruntime refuses it).  It also checks idempotence.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Mapping, Optional

import numpy as np
import onnx

from convrewrite import optimize
from convrewrite.core.equivalence import check_models, pinned_dims, random_feeds, runtime_inputs
from convrewrite.core.report import REWRITTEN


def op_counts(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


def assert_rewrites(model: onnx.ModelProto, pass_, expect_ops: Mapping[str, int],
                    inputs: Optional[Mapping[str, np.ndarray]] = None, rtol=None, atol=None,
                    expect_rewrites: Optional[int] = None, target=None, **options):
    """Run `pass_` alone (an instance, or a name with **options; a list of
    them for a run of several passes: nested lowering), for `target` if
    given, then assert: checker passes; op counts match
    `expect_ops` (op -> count, 0 = absent); the whole model is equivalent to
    the original on `inputs` (default: seeded random, and batch 1 and 3 where
    the batch is symbolic); a second run rewrites nothing.  Returns
    (new_model, report)."""
    passes = list(pass_) if isinstance(pass_, (list, tuple)) else [pass_]
    new, report = optimize(model, passes=passes, options=options or None, rtol=rtol, atol=atol, target=target)
    onnx.checker.check_model(new, full_check=True)
    rewritten = report.records(REWRITTEN)
    problems = [f"{r.node}: {r.status}: {r.reason}" for r in report.rewrites if r.status != REWRITTEN]
    assert rewritten, f"nothing was rewritten; {problems}"
    if expect_rewrites is not None:
        assert len(rewritten) == expect_rewrites, problems
    counts = op_counts(new)
    for op, n in expect_ops.items():
        assert counts.get(op, 0) == n, f"{op}: expected {n}, found {counts.get(op, 0)} in {dict(counts)}; {problems}"
    for feeds in _feed_sets(model, inputs):
        result = check_models(model, new, feeds, rtol=rtol, atol=atol)
        assert result, f"rewritten model differs from the original:\n{result}"
    assert report.verification.equivalent is True, report.verification
    again, report2 = optimize(new, passes=passes, options=options or None, rtol=rtol, atol=atol, target=target)
    assert not report2.records(REWRITTEN), "a second run rewrote again (not idempotent)"
    return new, report


def forms(report) -> list[str]:
    """The form of every rewritten record."""
    return [r.form for r in report.records(REWRITTEN)]


def _feed_sets(model, inputs):
    if inputs is not None:
        return [inputs]
    needed = runtime_inputs(model)
    symbolic = any(not d.HasField("dim_value") for i in needed for d in i.type.tensor_type.shape.dim)
    pinned = pinned_dims(model.graph)     # a symbolic channel dim takes the size a Conv requires
    sets = [random_feeds(needed, seed=123, batch=1, pinned=pinned)]
    if symbolic:
        sets.append(random_feeds(needed, seed=321, batch=3, pinned=pinned))
    return sets


def assert_skips(model: onnx.ModelProto, pass_, reason: str, code: Optional[str] = None, target=None,
                 **options):
    """The pass leaves the model unchanged and says why: some record's
    reason matches the regex `reason` (and its code is `code`, if given)."""
    passes = list(pass_) if isinstance(pass_, (list, tuple)) else [pass_]
    new, report = optimize(model, passes=passes, options=options or None, target=target)
    assert not report.records(REWRITTEN), [r.node for r in report.records(REWRITTEN)]
    assert report.rewrites, "the node was not even a candidate"
    found = [(r.reason, r.code) for r in report.rewrites]
    assert any(re.search(reason, r) and (code is None or c == code) for r, c in found), \
        f"no record matches {reason!r} with code {code!r}: {found}"
    assert op_counts(new) == op_counts(model)
    return report


def assert_cost_exact(option, built, per_item: int = 1) -> None:
    """A form option's Cost, worked out before building (per batch item),
    equals `built`, the built replacement's model_cost, on every figure:
    MACs, bytes moved, nodes, largest rank, grouped MACs, bytes streamed."""
    c = option.cost
    figures = (c.macs, c.moved_bytes, c.nodes, c.max_rank, c.grouped_macs, c.streamed_bytes)
    assert None not in figures, (option.label, c)
    estimate = (c.macs * per_item, c.moved_bytes * per_item, c.nodes, c.max_rank, c.grouped_macs * per_item,
                c.streamed_bytes * per_item)
    assert estimate == (built.macs, built.moved_bytes, built.nodes, built.max_rank, built.grouped_macs,
                        built.streamed_bytes), (option.label, c, built)
