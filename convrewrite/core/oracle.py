"""The whole-model check: the original's outputs on fixed inputs, computed
once, and the comparison of every intermediate result against them.

When a pass's result differs although every local check passed, the
original's own sensitivity is measured first (once, lazily: a stable model
whose checks pass never pays for it): the original runs again with its
inputs moved by one ulp either way and with onnxruntime's graph
optimizations on.  Those change nothing mathematically, so how far they move
its outputs is the model's own numerical noise.  A result within
NOISE_FACTOR times that noise is accepted (`compare_within_noise`: where the
original is stable, the ordinary tolerance still holds), and the report says
the model is unstable and by how much: the local checks are the evidence.

Otherwise `bisect` halves the pass's rewrites until it finds the ones
responsible, and rolls them back (the splice dropped the replacements to save
memory, so a failure rebuilds them once).  Bisection is bounded in time and in
rollbacks; at a bound it keeps the largest set of rewrites it saw pass and
rolls back the others, and the report says which bound stopped it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import onnx

from .equivalence import (Comparison, FeedTooLarge, InBackground, OutputComparison, RunError, compare_within_noise,
                          UnfeedableType, feed_problem, first_line, nudged, pinned_dims, random_feeds, run_model,
                          run_onnxruntime, runtime_inputs, runs_in_background)
from . import qdq, qdq_check
from .errors import InputError, error_text
from .graph import nested_nodes
from .report import REWRITTEN, Report
from .rewrite import Code
from .splice import apply_rewrites
from .weights import release_memory, weight_bytes

# A result is accepted when it is within this factor of the original's own
# noise (see compare_within_noise).  A correct rewrite perturbs the model the
# way the probes do (rounding at each op, another summation order), so its
# difference is one more sample of the same spread: on 50 random chaotic and
# near-chaotic chains the ratio never exceeded 2.1 (tests/core/test_oracle.py
# builds them); 4 leaves twice that margin and still holds a stable element
# to 4x the ordinary tolerance.
NOISE_FACTOR = 4.0
# Bisection, over the whole run: it stops after BISECT_SECONDS or as long as
# BISECT_COMPARISONS whole-model comparisons take (whichever is longer: two
# culprits among 1,000 rewrites need about 40), or once it has rolled back
# BISECT_ROLLBACKS rewrites and the model still fails.
BISECT_SECONDS = 30.0
BISECT_COMPARISONS = 40
BISECT_ROLLBACKS = 32


@dataclass
class Noise:
    """How far the original's own outputs move under changes that leave its
    function the same, per output: `spreads` per element (np.inf where a probe
    made it NaN/Inf), `abs` the largest finite move, `rel` that over the
    output's largest |value|, `allowed` the ordinary tolerance."""

    probes: list = field(default_factory=list)
    spreads: list = field(default_factory=list)
    abs: list = field(default_factory=list)
    rel: list = field(default_factory=list)
    allowed: list = field(default_factory=list)

    @property
    def unstable(self) -> bool:
        """Some output moves beyond the ordinary tolerance by itself."""
        return any(a > t for a, t in zip(self.abs, self.allowed))

    @property
    def max_abs(self) -> float:
        return max(self.abs, default=0.0)

    @property
    def max_rel(self) -> float:
        return max(self.rel, default=0.0)


class _BoundReached(Exception):
    """Bisection reached its time or rollback bound (the message says which)."""


class Oracle:
    """The original model's outputs on fixed inputs, computed once, and the
    comparison of every intermediate result against them."""

    def __init__(self, model: onnx.ModelProto, settings, reload=None):
        """`reload()` gives the original again where the driver edits `model`
        in place (it loaded it): the noise probes, which run it, are rare."""
        self.settings = settings
        self.seconds = 0.0
        self._model = model if reload is None else None
        self._reload = reload
        self.model_bytes = weight_bytes(model)
        self.names = [o.name for o in model.graph.output]
        self.kind = "given" if settings.inputs is not None else "random"
        t = time.perf_counter()
        self._background: Optional[InBackground] = None
        self._ahead: Optional[tuple] = None   # start_ahead's (model, version, run)
        self._unused: list = []               # runs started ahead of a model edited after: not waited for yet
        self._want = self._engine = self._want_fused = self._error = None
        self.steps: dict = {}
        try:
            self.feeds = _whole_model_feeds(model, settings)
        except UnfeedableType as e:  # as an original that cannot run: a failure only where something is rewritten
            self.feeds = None
            self._error = f"the whole-model check cannot make random inputs: {e}; {e.advice}"
        # whether the original runs alongside the passes (start: so does the result's run)
        self.alongside = self.feeds is not None and runs_in_background(model)
        if self.alongside:
            # the original runs while the passes work (the driver edits `model` in place: it goes as bytes)
            self._fused_too = qdq.has_qdq(model)
            self.steps = qdq.output_steps(model)
            self._background = InBackground(model, self.feeds, self._fused_too)   # last: no error leaves it running
        elif self.feeds is not None:
            self._run_original(model)
        self.seconds += time.perf_counter() - t
        self.last: Optional[Comparison] = None
        self.last_model: Optional[onnx.ModelProto] = None
        self.last_seconds = 0.0
        self.noise: Optional[Noise] = None           # measured on the first failing comparison
        self.tie_noise: Optional[tuple] = None       # quantized outputs: (spec, fused) tie noise (qdq_check)
        self.noise_seconds = 0.0
        self.bisect_seconds = 0.0
        self.bisect_budget: Optional[float] = None   # fixed when bisection first runs
        self.rolled_back = 0                         # by bisection, over the run
        self.stopped = ""                            # which bound stopped bisection, if one did
        self._found: list = []   # culprits found by the bisection under way
        self._best: list = []    # the largest group of its rewrites seen to pass

    def _run_original(self, model: onnx.ModelProto) -> None:
        """The original's outputs, here and now (the reference evaluator where onnxruntime refuses it)."""
        try:
            self._want, self._engine = run_model(model, self.feeds, allow_reference=True)
        except RunError as e:
            self._want, self._error = None, _cannot_run(model, e, self.kind)
            return
        # a quantized model: its quantized outputs compared in quantization steps, and every output under
        # onnxruntime's fused int8 execution as well, float ones with the float tolerance (core/qdq_check.py);
        # the original's fused outputs computed once
        self.steps = qdq.output_steps(model)
        if qdq.has_qdq(model) and self._engine == "onnxruntime":
            self._want_fused = _or_none(lambda: run_onnxruntime(model, self.feeds, True))

    def _settle(self) -> None:
        """Wait for the original's run in the background, if one is under way.
        Where onnxruntime refused the original, it runs again here as
        _run_original runs it (the reference evaluator's turn), from the
        original as given or loaded again: the driver has edited its copy."""
        if self._background is None:
            return
        t, background = time.perf_counter(), self._background
        background.join()   # interrupted (Ctrl-C), abandon() waits again
        self._background = None
        try:
            self._want, self._engine = background.outputs(), "onnxruntime"
        except Exception:
            self.steps = {}
            self._run_original(self.model)
        else:
            self._want_fused = _or_none(background.fused) if self._fused_too else None
        self.seconds += time.perf_counter() - t

    def abandon(self) -> None:
        """The run is ending on an error: let the original's run in the
        background finish first (onnxruntime torn down under a running
        session is not something to test the luck of), and use nothing of it."""
        self.end_unused()

    # The original's run, settled on first use (_settle): its outputs (None: it could not run,
    # `error` says why), their engine ("onnxruntime" or "reference"), and a quantized model's
    # outputs under fused int8 execution (or None).
    want = property(lambda self: self._settled("_want"))
    engine = property(lambda self: self._settled("_engine"))
    want_fused = property(lambda self: self._settled("_want_fused"))
    error = property(lambda self: self._settled("_error"))

    def _settled(self, field: str):
        self._settle()
        return getattr(self, field)

    def start(self, model: onnx.ModelProto, version: Optional[int] = None) -> Optional[InBackground]:
        """compare(model)'s run of `model`, started in the background where
        the original's ran there (onnxruntime ran it, as bytes) and `model`
        too goes as bytes: the caller works on meanwhile, and hands the
        result to compare(model, started).  None: compare runs it itself.
        `version`: the caller's count of its edits of `model`; the run
        start_ahead began of the model at this version is handed over."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and version is not None and ahead[0] is model and ahead[1] == version:
            return ahead[2]
        if ahead is not None and not ahead[2].done():   # of a model edited since: not waited for here (end_unused)
            self._unused.append(ahead[2])
        if self.alongside and self.want is not None and self.engine == "onnxruntime" and runs_in_background(model):
            return InBackground(model, self.feeds, self.want_fused is not None)
        return None

    def start_ahead(self, model: onnx.ModelProto, version: int) -> bool:
        """start(model) before the caller is done with `model`, where nothing
        else runs in the background (no wait here): onnxruntime's session of
        a large result is the slowest part of the check, and where the model
        stays as it is at `version` (the caller's count of its edits), the
        work after this overlaps it.  Whether a run started; start(model,
        version) hands it over; end_unused() ends those left unused."""
        running = [self._background, *self._unused] + ([self._ahead[2]] if self._ahead is not None else [])
        if any(r is not None and not r.done() for r in running):
            return False
        self._unused = []   # ended: nothing to wait for, and their outputs of no use
        run = self.start(model)   # (a previous one, ended, is dropped by start)
        self._ahead = (model, version, run) if run is not None else None
        return run is not None

    def end_unused(self) -> None:
        """Wait for the runs start_ahead began that start did not hand over,
        and forget them, and for the original's run if nothing asked for its
        outputs (nothing was rewritten): a thread left in onnxruntime as
        Python exits aborts it.  (The original's run is only waited for, not
        settled: where onnxruntime refused it, the reference evaluator's turn
        is not taken for nothing.)"""
        if self._ahead is not None:
            self._unused.append(self._ahead[2])
            self._ahead = None
        for run in self._unused + ([self._background] if self._background is not None else []):
            run.join()
        self._unused = []

    def compare(self, model: "onnx.ModelProto | list", started: Optional[InBackground] = None) -> Comparison:
        """`model`'s outputs against the original's; an output that fails the
        ordinary tolerance is judged again against the original's own noise
        (measured on the first such failure).  `model` may be handed over in
        a list holding the only reference to it (see equivalence.run_model):
        the list holds it again after, and it is the one `last_model` names.
        `started`: start(model)'s run of it (where onnxruntime refused it,
        it runs again here, the reference evaluator's turn as without)."""
        t, noise_seconds = time.perf_counter(), self.noise_seconds
        held = model if isinstance(model, list) else None
        try:
            try:
                got = _outputs(started)
                if got is None:
                    got, _ = run_model(model, self.feeds, allow_reference=True)
            finally:
                if held is not None:
                    model = held[0]
            result = qdq.compare_outputs(self.names, self.want, got, self.settings.rtol, self.settings.atol,
                                         self.steps)
            if not result and any(not o and np.isfinite(o.max_abs_error) and o.name not in self.steps
                                  for o in result.outputs):
                result = self._within_noise(result, got)
            if self.want_fused is not None:
                result = result.merge(self._fused(model, started))
            if not result and any(not o and o.steps is not None for o in result.outputs):
                result = self._within_tie_noise(result)   # core/qdq_check.py: the original's own ties
        except RunError as e:
            result = Comparison([OutputComparison("model", False, np.inf, np.inf, 0.0, str(e))])
        self.last_seconds = time.perf_counter() - t - (self.noise_seconds - noise_seconds)  # without the noise
        self.seconds += time.perf_counter() - t
        self.last, self.last_model = result, model
        release_memory(self.model_bytes)  # the session's
        return result

    def _fused(self, model: onnx.ModelProto, started: Optional[InBackground] = None) -> Comparison:
        """The quantized outputs under onnxruntime's fused int8 execution, in steps."""
        try:
            got = started.fused() if started is not None else run_onnxruntime(model, self.feeds, True)
        except Exception as e:  # the original ran this way: the result must too
            return Comparison([OutputComparison("model (fused int8)", False, 0.0, 0.0, 0.0,
                                                f"onnxruntime cannot run it under {qdq_check.FUSED}: {first_line(e)}",
                                                fused=True)])
        return qdq_check.compare_fused(self.names, self.want_fused, got, self.steps,
                                       (self.settings.rtol, self.settings.atol))

    def _within_tie_noise(self, result: Comparison) -> Comparison:
        if self.engine != "onnxruntime":
            return result
        if self.tie_noise is None:   # measured once, on the first failing quantized comparison
            t = time.perf_counter()
            self.tie_noise = (qdq_check.tie_noise(self.model, self.feeds, self.want, self.names, self.steps, False),
                              qdq_check.tie_noise(self.model, self.feeds, self.want_fused, self.names, self.steps, True)
                              if self.want_fused is not None else {})
            self.noise_seconds += time.perf_counter() - t
        return qdq_check.within_tie_noise(result, *self.tie_noise)

    def _within_noise(self, result: Comparison, got: list) -> Comparison:
        noise = self.measure_noise()
        if not noise.unstable:
            return result
        out = []
        for k, o in enumerate(result.outputs):
            if not o and noise.abs[k] > noise.allowed[k] and o.name not in self.steps:  # steps: no noise excuse
                o = compare_within_noise(o.name, self.want[k], got[k], noise.spreads[k], NOISE_FACTOR,
                                         self.settings.rtol, self.settings.atol)
            out.append(o)
        return Comparison(out)

    @property
    def model(self) -> onnx.ModelProto:
        """The original model."""
        return self._model if self._model is not None else self._reload()

    def measure_noise(self) -> Noise:
        """The original's own sensitivity (once): its outputs with the inputs
        moved by one ulp up and down, and with onnxruntime's graph
        optimizations on, against its outputs as they are."""
        if self.noise is not None:
            return self.noise
        t = time.perf_counter()
        probes, original = [], self.model
        if any(np.asarray(v).dtype.kind == "f" and np.asarray(v).size for v in self.feeds.values()):
            probes += [("inputs +1 ulp", lambda: run_model(original, nudged(self.feeds, np.inf), True)[0]),
                       ("inputs -1 ulp", lambda: run_model(original, nudged(self.feeds, -np.inf), True)[0])]
        if self.engine == "onnxruntime":
            probes.append(("onnxruntime graph optimizations", lambda: run_onnxruntime(original, self.feeds, True)))
        noise = Noise(spreads=[np.zeros(np.shape(w)) for w in self.want])
        for name, run in probes:
            try:
                outs = run()
            except Exception:  # a probe that cannot run measures nothing
                continue
            noise.probes.append(name)
            for k, (w, o) in enumerate(zip(self.want, outs)):
                noise.spreads[k] = np.maximum(noise.spreads[k], _spread(w, o))
        for w, s in zip(self.want, noise.spreads):
            w = np.asarray(w)
            scale = float(np.max(np.abs(w[np.isfinite(w)]), initial=0.0)) if w.dtype.kind in "fc" else 0.0
            a = float(np.max(s[np.isfinite(s)], initial=0.0))
            rtol, atol = _tolerance(w.dtype, self.settings)
            noise.abs.append(a)
            noise.rel.append(a / scale if scale > 0 else (0.0 if a == 0 else np.inf))
            noise.allowed.append(atol + rtol * scale)
        self.noise = noise
        self.noise_seconds = time.perf_counter() - t
        return noise

    # --- bisection ----------------------------------------------------------------

    def bisect(self, before, after: onnx.ModelProto, todo: list, rebuild, index=None) -> onnx.ModelProto:
        """`after` if it matches the original; else roll back the responsible
        rewrites (found by halving) and return what is left.  The splice
        dropped the replacements to save memory; a failure rebuilds them
        with `rebuild(candidate)`.  Within the run's bounds only: at one, the
        largest set of rewrites seen to pass is kept, the rest rolled back.
        `before` is the pass's input, or where the splice edited it in place
        a function that gives it back (called only on a failure) and `index`
        the matched nodes' positions in it (see apply_rewrites)."""
        if self.want is None or self.compare(after):
            return after
        if callable(before):  # the pass's input, given back only now
            before = before()
        t0 = time.perf_counter()
        if self.bisect_budget is None:
            self.bisect_budget = max(BISECT_SECONDS, BISECT_COMPARISONS * self.last_seconds)
        self._deadline = t0 + self.bisect_budget - self.bisect_seconds
        built = {}
        for c in todo:
            try:
                built[id(c)] = rebuild(c)
            except Exception as e:  # builds are deterministic; should one fail now, leave its node
                c.roll_back(f"could not be rebuilt to find which rewrite broke the model: {error_text(e)}",
                            Code.INTERNAL_ERROR)

        def pairs(group):
            return [(c.match, built[id(c)]) for c in group]

        self._index = index

        kept = [c for c in todo if id(c) in built]
        self._best = []
        try:
            while kept:
                self._found = []
                self._culprits(before, kept, pairs, _failure(self.last))
                kept = self._roll_back_found(kept)
                if not kept:
                    break
                candidate = self._compare_part(before, kept, pairs)
                if candidate is not None:
                    return candidate
                if self.rolled_back >= BISECT_ROLLBACKS:
                    raise _BoundReached(f"it rolled back {self.rolled_back} rewrites, its bound of "
                                        f"{BISECT_ROLLBACKS}, and the model still failed")
            return before
        except _BoundReached as stop:
            kept = self._roll_back_found(kept)
            self.stopped = self.stopped or str(stop)
            passed = self._best  # rebuilt rather than held: a model's worth of memory
            ids = {id(c) for c in passed}
            for c in kept:
                if id(c) not in ids:
                    c.roll_back(f"bisection stopped ({stop}) before this rewrite was cleared; rolled back "
                                "although its local check passed", Code.MODEL_CHECK_FAILED)
            return apply_rewrites(before, pairs(passed), self._index) if passed else before
        finally:
            self.bisect_seconds += time.perf_counter() - t0

    def _compare_part(self, before, group: list, pairs) -> Optional[onnx.ModelProto]:
        """`before` with `group`'s rewrites, if it passes (None if not)."""
        if time.perf_counter() > self._deadline:
            raise _BoundReached(f"its time bound of {self.bisect_budget:.0f} s was reached")
        candidate = apply_rewrites(before, pairs(group), self._index)
        if not self.compare(candidate):
            return None
        if len(group) > len(self._best):
            self._best = list(group)
        return candidate

    def _culprits(self, before, group: list, pairs, error: str) -> None:
        """Add to self._found the rewrites of `group` (which fails with max abs
        `error`) responsible, each with the error of the group that convicted it."""
        if len(group) == 1:
            self._found.append((group[0], error))
            return
        half = len(group) // 2
        n = len(self._found)
        for part in (group[:half], group[half:]):
            if self._compare_part(before, part, pairs) is None:
                self._culprits(before, part, pairs, _failure(self.last))
        if len(self._found) == n:  # only the combination fails: roll back the whole group
            self._found += [(c, error) for c in group]
            if {id(c) for c in group} & {id(c) for c in self._best}:  # a half of it passed alone: not kept
                self._best = []
        if self.rolled_back + len(self._found) > BISECT_ROLLBACKS:
            raise _BoundReached(f"it found {self.rolled_back + len(self._found)} rewrites to roll back, more than "
                                f"its bound of {BISECT_ROLLBACKS}")

    def _roll_back_found(self, kept: list) -> list:
        found = {id(c) for c, _ in self._found}
        for c, error in self._found:
            c.roll_back("whole-model check failed with this rewrite in place "
                        f"({error}) although its local check "
                        "passed; rolled back", Code.MODEL_CHECK_FAILED)
        self.rolled_back += len(found)
        self._found = []
        return [c for c in kept if id(c) not in found]

    # --- the verdict --------------------------------------------------------------

    def final_verdict(self, model: onnx.ModelProto, report: Report) -> None:
        self.end_unused()
        v = report.verification
        v.inputs = self.kind
        v.bisection_seconds, v.bisection_rolled_back, v.bisection_stopped = (
            self.bisect_seconds, self.rolled_back, self.stopped)
        if self.noise is not None:
            n = self.noise
            v.unstable, v.noise_abs_error, v.noise_rel_error, v.noise_probes = (
                n.unstable, n.max_abs, n.max_rel, list(n.probes))
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
        v.quantized_steps = qdq_check.record_steps(result)
        v.within_noise = bool(result) and any(o.noise is not None for o in result.outputs)
        ties = [o for o in result.outputs if o.tie_noise is not None]
        v.within_tie_noise = bool(result) and bool(ties)
        if not result:
            v.detail = str(result.worst())
        elif result.compared_nothing:
            checked = [r for r in report.records(REWRITTEN) if r.max_abs_error is not None]
            what = ("the model has no outputs" if not result.outputs else
                    "every output is empty, or NaN/Inf at the same places in both models, on these inputs")
            v.detail = (f"it compared no value ({what}), so it says nothing of the rewrites; the {len(checked)} "
                        "local checks are the evidence")
        elif v.within_tie_noise and not v.within_noise:
            v.detail = "; ".join(
                f"{o.name} differs by {o.steps}, more than rounding ties allow (mean {qdq.MEAN_STEPS:g}, 99th "
                f"percentile {qdq.P99_STEPS:g}), but the original's own ties broken the other way (its quantized "
                f"inputs moved by a 2^-18 step) move it by {o.tie_noise}: accepted as that noise" for o in ties)
        elif v.within_noise:
            checked = [r for r in report.records(REWRITTEN) if r.max_abs_error is not None]
            v.detail = (f"the original model is numerically unstable: its own outputs move by up to "
                        f"{v.noise_abs_error:.3g} ({v.noise_rel_error:.3g} relative to their largest value) under "
                        f"{', '.join(v.noise_probes)}; the result's difference is within {NOISE_FACTOR:g}x that, "
                        "where the whole-model check cannot tell a rewrite from the model's own noise, so the "
                        f"{len(checked)} local checks are the evidence")


def _outputs(started: Optional[InBackground]) -> Optional[list]:
    """The outputs of a run started in the background; None where there is
    none, or onnxruntime refused the model there."""
    return None if started is None else _or_none(started.outputs)


def _or_none(run) -> Optional[list]:
    """run()'s outputs, or None where onnxruntime refused (a fused run: the
    spec comparison then stands alone)."""
    try:
        return run()
    except Exception:  # onnxruntime raises several unrelated types
        return None


def _failure(result: Comparison) -> str:
    """How a failing comparison failed, for a rollback's reason."""
    return qdq_check.fused_failure(result) or f"max abs error {result.max_abs_error:.3g}"


def _spread(want, other) -> np.ndarray:
    """Per element |other - want| (float64); np.inf where one is NaN/Inf and the other differs."""
    w, o = np.asarray(want), np.asarray(other)
    if w.shape != o.shape or w.dtype.kind not in "fc":
        return np.where(w == o, 0.0, np.inf) if w.shape == o.shape else np.full(w.shape, np.inf)
    w, o = w.astype(np.float64), o.astype(np.float64)
    with np.errstate(invalid="ignore"):
        d = np.abs(o - w)
    same = (np.isnan(w) & np.isnan(o)) | (w == o)
    return np.where(same, 0.0, np.where(np.isfinite(d), d, np.inf))


def _tolerance(dtype, settings) -> tuple:
    from .equivalence import default_tolerance
    rtol, atol = default_tolerance(dtype)
    return (rtol if settings.rtol is None else settings.rtol, atol if settings.atol is None else settings.atol)


# Operators whose inputs after the first are parameters (scales, sizes,
# shapes, pads, indices...) that random numbers rarely make valid.
_PARAMETER_INPUTS = frozenset({"Resize", "Upsample", "Reshape", "Expand", "Tile", "Slice", "Pad", "ConstantOfShape",
                               "Range", "TopK", "Gather", "GatherElements", "ScatterND", "OneHot", "Squeeze",
                               "Unsqueeze", "ReduceSum", "ReduceMean", "Split", "Trilu", "RoiAlign", "NonMaxSuppression"})


def _cannot_run(model: onnx.ModelProto, error: RunError, kind: str) -> str:
    """Why the original could not be run: an operator neither engine knows
    (no inputs would help), else with random inputs, name the inputs random
    values are likely wrong for and suggest --inputs."""
    unknown = _unknown_operator(model, str(error))
    if unknown is not None:
        return (f"the original model could not be run: neither onnxruntime nor onnx's reference evaluator knows the "
                f"operator {unknown.op_type} of domain {unknown.domain!r} (node {unknown.name!r}), whatever the "
                f"inputs ({error}). Each rewrite's local check still ran: --force writes the result on that evidence")
    if kind != "random":
        return f"the original model could not be run on the given inputs ({error})"
    names = [i.name for i in runtime_inputs(model)]
    suspects = sorted({n.input[k] for n in model.graph.node if n.op_type in _PARAMETER_INPUTS
                       for k in range(1, len(n.input)) if n.input[k] in names})
    which = (f"random values for input(s) {', '.join(repr(s) for s in suspects)} (read as scales, sizes, shapes or "
             "indices) are not valid" if suspects else "random inputs do not run it")
    return (f"the original model could not be run: {which} ({error}); give real inputs with --inputs FEEDS.npz "
            f"(an .npz keyed by input name: {', '.join(names)})")


def _unknown_operator(model: onnx.ModelProto, error: str) -> Optional[onnx.NodeProto]:
    """The first node of `model` (subgraphs too) whose operator `error` says
    onnxruntime or the reference evaluator does not know (a custom domain's,
    or a name no opset has), in their words; None where it names none."""
    for node in list(model.graph.node[:]) + [n for _, n in nested_nodes(model)]:
        op, domain = node.op_type, node.domain
        if (f"{domain}:{op}(" in error and "is not a registered function/op" in error
                or f"No Op registered for {op} with" in error                                 # onnxruntime
                or f"Node type '{op}' from domain '{domain}' is unknown" in error             # reference evaluator
                or f"No registered schema for operator '{op}' and domain '{domain}'" in error):
            return node
    return None


def _whole_model_feeds(model: onnx.ModelProto, settings) -> dict:
    needed = runtime_inputs(model)
    if settings.inputs is None:
        try:
            return random_feeds(needed, settings.seed, pinned=pinned_dims(model.graph))
        except FeedTooLarge as e:
            raise InputError(f"the whole-model check cannot make random inputs: {e}; give real inputs with "
                             "--inputs FEEDS.npz, or skip the check with --no-verify") from None
    feeds = dict(settings.inputs)
    names = {i.name for i in needed}
    missing, extra = names - set(feeds), set(feeds) - names - {t.name for t in model.graph.initializer}
    if missing or extra:
        raise InputError(f"--inputs: expected tensors named {sorted(names)}"
                         + (f"; missing {sorted(missing)}" if missing else "")
                         + (f"; unknown {sorted(extra)}" if extra else ""))
    problem = feed_problem(needed, feeds)
    if problem:
        raise InputError(f"--inputs: {problem}")
    return feeds
