"""The whole-model check: the original's outputs on fixed inputs, computed
once, and the comparison of every intermediate result against them.

When a pass's result differs although every local check passed, `bisect`
halves the pass's rewrites until it finds the ones responsible, and rolls
them back (the splice dropped the replacements to save memory, so a failure
rebuilds them once).
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np
import onnx

from .equivalence import Comparison, OutputComparison, RunError, compare_outputs, random_feeds, run_model, runtime_inputs
from .errors import InputError
from .report import REWRITTEN, Report
from .rewrite import Code
from .splice import apply_rewrites


class Oracle:
    """The original model's outputs on fixed inputs, computed once, and the
    comparison of every intermediate result against them."""

    def __init__(self, model: onnx.ModelProto, settings):
        self.settings = settings
        self.seconds = 0.0
        self.names = [o.name for o in model.graph.output]
        self.feeds = _whole_model_feeds(model, settings)
        self.kind = "given" if settings.inputs is not None else "random"
        self.error: Optional[str] = None
        t = time.perf_counter()
        try:
            self.want, self.engine = run_model(model, self.feeds, allow_reference=True)
        except RunError as e:
            self.want, self.error = None, _cannot_run(model, e, self.kind)
        self.seconds += time.perf_counter() - t
        self.last: Optional[Comparison] = None
        self.last_model: Optional[onnx.ModelProto] = None

    def compare(self, model: onnx.ModelProto) -> Comparison:
        t = time.perf_counter()
        try:
            got, _ = run_model(model, self.feeds, allow_reference=True)
            result = compare_outputs(self.names, self.want, got, self.settings.rtol, self.settings.atol)
        except RunError as e:
            result = Comparison([OutputComparison("model", False, np.inf, np.inf, 0.0, str(e))])
        self.seconds += time.perf_counter() - t
        self.last, self.last_model = result, model
        return result

    def bisect(self, before: onnx.ModelProto, after: onnx.ModelProto, todo: list, rebuild) -> onnx.ModelProto:
        """`after` if it matches the original; else roll back the responsible
        rewrites (found by halving) and return what is left.  The splice
        dropped the replacements to save memory; a failure rebuilds them
        with `rebuild(candidate)`."""
        if self.want is None or self.compare(after):
            return after
        built = {}
        for c in todo:
            try:
                built[id(c)] = rebuild(c)
            except Exception as e:  # builds are deterministic; should one fail now, leave its node
                c.roll_back(f"could not be rebuilt to find which rewrite broke the model: "
                            f"{type(e).__name__}: {e}", Code.INTERNAL_ERROR)
        def pairs(group):
            return [(c.match, built[id(c)]) for c in group]

        kept = [c for c in todo if id(c) in built]
        while kept:
            culprits = self._culprits(before, kept, pairs)
            comparison = self.last
            for c in culprits:
                c.roll_back("whole-model check failed with this rewrite in place "
                            f"(max abs error {comparison.max_abs_error:.3g}) although its local check "
                            "passed; rolled back", Code.MODEL_CHECK_FAILED)
            kept = [c for c in kept if c not in culprits]
            candidate = apply_rewrites(before, pairs(kept))
            if self.compare(candidate):
                return candidate
        return before

    def _culprits(self, before, group: list, pairs) -> list:
        if len(group) == 1:
            return group
        half = len(group) // 2
        found = []
        for part in (group[:half], group[half:]):
            if not self.compare(apply_rewrites(before, pairs(part))):
                found += self._culprits(before, part, pairs)
        return found or group  # only the combination fails: roll back the whole group

    def final_verdict(self, model: onnx.ModelProto, report: Report) -> None:
        v = report.verification
        v.inputs = self.kind
        if not report.records(REWRITTEN):  # the result is the original: nothing to check
            v.performed, v.equivalent = False, True
            v.detail = "nothing was rewritten, so no check was needed"
            return
        if self.want is None:
            v.detail = self.error or ""
            v.performed, v.equivalent = False, None
            return
        if model is self.last_model:
            result = self.last
        else:
            result = self.compare(model)
        v.performed, v.equivalent = True, bool(result)
        v.max_abs_error, v.max_rel_error = result.max_abs_error, result.max_rel_error
        if not result:
            v.detail = str(result.worst())


# Operators whose inputs after the first are parameters (scales, sizes,
# shapes, pads, indices...) that random numbers rarely make valid.
_PARAMETER_INPUTS = frozenset({"Resize", "Upsample", "Reshape", "Expand", "Tile", "Slice", "Pad", "ConstantOfShape",
                               "Range", "TopK", "Gather", "GatherElements", "ScatterND", "OneHot", "Squeeze",
                               "Unsqueeze", "ReduceSum", "ReduceMean", "Split", "Trilu", "RoiAlign", "NonMaxSuppression"})


def _cannot_run(model: onnx.ModelProto, error: RunError, kind: str) -> str:
    """Why the original could not be run: with random inputs, name the
    inputs random values are likely wrong for and suggest --inputs."""
    if kind != "random":
        return f"the original model could not be run on the given inputs ({error})"
    names = [i.name for i in runtime_inputs(model)]
    suspects = sorted({n.input[k] for n in model.graph.node if n.op_type in _PARAMETER_INPUTS
                       for k in range(1, len(n.input)) if n.input[k] in names})
    which = (f"random values for input(s) {', '.join(repr(s) for s in suspects)} (read as scales, sizes, shapes or "
             "indices) are not valid" if suspects else "random inputs do not run it")
    return (f"the original model could not be run: {which} ({error}); give real inputs with --inputs FEEDS.npz "
            f"(an .npz keyed by input name: {', '.join(names)})")


def _whole_model_feeds(model: onnx.ModelProto, settings) -> dict:
    needed = runtime_inputs(model)
    if settings.inputs is None:
        return random_feeds(needed, settings.seed)
    feeds = dict(settings.inputs)
    names = {i.name for i in needed}
    missing, extra = names - set(feeds), set(feeds) - names - {t.name for t in model.graph.initializer}
    if missing or extra:
        raise InputError(f"--inputs: expected tensors named {sorted(names)}"
                         + (f"; missing {sorted(missing)}" if missing else "")
                         + (f"; unknown {sorted(extra)}" if extra else ""))
    return feeds
