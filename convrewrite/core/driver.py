"""The rewrite driver: the only code that changes a model.

    load -> check -> for each pass:
                        match every candidate (Match or Skip, with a reason)
                        build each replacement
                        verify each one locally (original vs replacement)
                        splice the verified ones in, remove dead code, toposort
                        whole-model check; if it fails, bisect to the rewrites
                        responsible and roll them back
         -> the new model and a Report

A pass bug (an exception in build, a malformed replacement) rolls that one
rewrite back with the error as the reason; it never stops the run.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import onnx

from .equivalence import Comparison, RunError, compare_outputs, random_feeds, run_model, runtime_inputs
from .errors import InputError
from .graph import GraphView
from .local_check import CheckError, build_check, verify_checks
from .model_io import check_model, load_model
from .report import PLANNED, REWRITTEN, ROLLED_BACK, SKIPPED, Report, RewriteRecord
from .rewrite import Match, Skip
from .splice import apply_rewrites
from ..target import check_model as target_violations
from ..target import load_profile, target_report


@dataclass
class Settings:
    verify: bool = True
    rtol: Optional[float] = None
    atol: Optional[float] = None
    seed: int = 0
    inputs: Optional[Mapping[str, np.ndarray]] = None
    dry_run: bool = False


def optimize(model: "onnx.ModelProto | str | Path", passes=None, options: Optional[dict] = None,
             verify: bool = True, rtol: Optional[float] = None, atol: Optional[float] = None,
             seed: int = 0, inputs: Optional[Mapping[str, np.ndarray]] = None,
             dry_run: bool = False, target=None) -> tuple[onnx.ModelProto, Report]:
    """Rewrite `model` with `passes` (names or instances; default: all).

    Returns the new model and the Report.  The input model is never modified.
    `inputs` are real tensors for the whole-model check (default: random).
    `target` (a built-in profile name, a JSON path or a Profile) makes the
    passes lower only what the target cannot run, in forms it can run, and
    adds the compatibility check of the result to the report.
    """
    settings = Settings(verify, rtol, atol, seed, inputs, dry_run)
    report = Report(dry_run=dry_run)
    t0 = time.perf_counter()
    if isinstance(model, (str, Path)):
        report.input = str(model)
        model = load_model(model)
    else:
        check_model(model)
    report.timings["load_and_check"] = time.perf_counter() - t0
    profile = load_profile(target) if target is not None else None
    if profile is not None:
        options = {**(options or {}), "target": profile}
    pass_list = _resolve_passes(passes, options)
    report.passes = [p.name for p in pass_list]
    report.op_counts_before = op_counts(model)
    oracle = _Oracle(model, settings) if verify and not dry_run else None
    current, model = model, None  # a model loaded here is freed as soon as a pass replaces it
    for p in pass_list:
        t = time.perf_counter()
        current = _run_pass(current, p, settings, report, oracle)
        report.timings[f"pass:{p.name}"] = time.perf_counter() - t
    if oracle is not None:
        oracle.final_verdict(current, report)
        report.timings["verify_model"] = oracle.seconds
    report.op_counts_after = op_counts(current)
    if profile is not None:
        t = time.perf_counter()
        report.target = check_target(current, profile)
        report.timings["check_target"] = time.perf_counter() - t
    report.timings["total"] = time.perf_counter() - t0
    return current, report


def _resolve_passes(passes, options) -> tuple:
    if passes is None or all(isinstance(p, str) for p in passes):
        from passes import make_passes  # the library's one reference to `passes`

        try:
            return make_passes(passes, options)
        except ValueError as e:
            raise InputError(str(e)) from None
    return tuple(passes)


def check_target(model: onnx.ModelProto, profile) -> dict:
    """The report's "target" section: every node of `model` that does not fit."""
    return target_report(target_violations(model, profile), profile)


def op_counts(model: onnx.ModelProto) -> dict:
    return dict(Counter(n.op_type for n in model.graph.node))


# --- one pass ---------------------------------------------------------------

@dataclass
class _Candidate:
    record: RewriteRecord
    match: Optional[Match] = None
    replacement: object = None
    check: object = None


def _run_pass(model, p, settings: Settings, report: Report, oracle) -> onnx.ModelProto:
    graph = GraphView(model)
    candidates = _match_all(graph, p, settings)
    report.rewrites.extend(c.record for c in candidates)
    if settings.dry_run:
        return model
    todo = _build_and_verify(graph, p, [c for c in candidates if c.match is not None], settings, report)
    retry = _rematch_alone(graph, p, candidates, settings, report)
    if retry:
        report.rewrites.extend(c.record for c in retry)
        todo += _build_and_verify(graph, p, [c for c in retry if c.match is not None], settings, report)
    if not todo:
        return model
    result = apply_rewrites(model, [(c.match, c.replacement) for c in todo])
    for c in todo:  # their weights are in `result` now; bisection rebuilds what it needs
        c.replacement = c.check = None
    if oracle is not None:
        result = oracle.bisect(model, result, todo, lambda c: p.build(c.match, graph))
    return result


def _build_and_verify(graph, p, todo: list, settings: Settings, report: Report) -> list:
    """Build each match and check it locally; the candidates still standing."""
    for c in todo:
        _build(graph, p, c, settings)
    todo = [c for c in todo if c.record.status == REWRITTEN]
    if settings.verify and todo:
        t = time.perf_counter()
        _verify_local(todo, settings)
        key = f"verify_local:{p.name}"
        report.timings[key] = report.timings.get(key, 0.0) + time.perf_counter() - t
        todo = [c for c in todo if c.record.status == REWRITTEN]
    return todo


def _match_all(graph: GraphView, p, settings: Settings) -> list[_Candidate]:
    """Match every candidate once.  A match may cover several nodes (a
    chain): the nodes it absorbs get no record of their own; the covering
    record names them in its notes."""
    out, claimed = [], set()
    for node in list(graph.graph.node):
        if id(node) in claimed or not p.candidate(node, graph):
            continue
        c = _match_one(graph, p, node, p.match, settings, claimed)
        if c.match is not None:
            claimed.update(id(n) for n in c.match.nodes)
        out.append(c)
    return out


def _match_one(graph, p, node, match_fn, settings: Settings, claimed: set) -> _Candidate:
    record = RewriteRecord(p.name, graph.label(node), node.op_type, SKIPPED)
    c = _Candidate(record)
    try:
        result = match_fn(node, graph)
    except Exception as e:  # a pass bug must not take the run down
        record.reason = f"internal error in {p.name}.match: {type(e).__name__}: {e}"
        return c
    if isinstance(result, Skip):
        record.reason = result.reason
        return c
    if any(id(n) in claimed for n in result.nodes):
        record.reason = "overlaps another rewrite of this pass"
        return c
    record.status = PLANNED if settings.dry_run else REWRITTEN
    record.notes = list(result.notes)
    others = [graph.label(n) for n in result.nodes if n is not node]
    if others:
        record.notes.append("also rewrites " + ", ".join(f"'{o}'" for o in others))
    c.match = result
    return c


def _rematch_alone(graph, p, candidates, settings: Settings, report: Report) -> list:
    """A multi-node match (a chain) that was rolled back gives its nodes a
    second chance one by one, where the pass offers `match_alone`; their new
    records replace the chain's."""
    match_alone = getattr(p, "match_alone", None)
    retry = []
    for c in candidates if match_alone is not None else ():
        if c.record.status != ROLLED_BACK or c.match is None or len(c.match.nodes) < 2:
            continue
        report.rewrites.remove(c.record)
        for node in c.match.nodes:
            r = _match_one(graph, p, node, match_alone, settings, set())
            r.record.notes.append(f"matched alone: its chain was rolled back ({c.record.reason})")
            retry.append(r)
    return retry


def _build(graph: GraphView, p, c: _Candidate, settings: Settings) -> None:
    try:
        c.replacement = p.build(c.match, graph)
    except Exception as e:
        _roll_back(c, f"internal error in {p.name}.build: {type(e).__name__}: {e}")
        return
    c.record.notes += list(c.replacement.notes)
    c.record.new_nodes = [n.name for n in c.replacement.nodes]
    try:
        c.check = build_check(graph, c.match, c.replacement)
    except CheckError as e:
        _roll_back(c, f"malformed replacement: {e}")
        return
    except Exception as e:  # e.g. a replacement protobuf cannot serialise (> 2 GB)
        _roll_back(c, f"replacement cannot be checked: {type(e).__name__}: {e}")
        return
    c.record.macs_before, c.record.macs_after = c.check.macs_before, c.check.macs_after


def _verify_local(todo: Sequence[_Candidate], settings: Settings) -> None:
    results = verify_checks([c.check for c in todo], settings.seed, settings.rtol, settings.atol)
    for c, r in zip(todo, results):
        if isinstance(r, str):
            _roll_back(c, r)
            continue
        c.record.max_abs_error, c.record.max_rel_error = r.max_abs_error, r.max_rel_error
        if not r:
            w = r.worst()
            _roll_back(c, f"local check failed: replacement differs from the original "
                          f"(max abs error {w.max_abs_error:.3g}, allowed {w.allowed_error:.3g}"
                          f"{', ' + w.message if w.message else ''})")


def _roll_back(c: _Candidate, reason: str) -> None:
    c.record.status = ROLLED_BACK
    c.record.reason = reason
    c.record.new_nodes = []


# --- the whole-model check ----------------------------------------------------

class _Oracle:
    """The original model's outputs on fixed inputs, computed once, and the
    comparison of every intermediate result against them."""

    def __init__(self, model: onnx.ModelProto, settings: Settings):
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
            self.want, self.error = None, f"the original model could not be run ({e})"
        self.seconds += time.perf_counter() - t
        self.last: Optional[Comparison] = None
        self.last_model: Optional[onnx.ModelProto] = None

    def compare(self, model: onnx.ModelProto) -> Comparison:
        t = time.perf_counter()
        try:
            got, _ = run_model(model, self.feeds, allow_reference=True)
            result = compare_outputs(self.names, self.want, got, self.settings.rtol, self.settings.atol)
        except RunError as e:
            from .equivalence import OutputComparison
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
                _roll_back(c, f"could not be rebuilt to find which rewrite broke the model: "
                              f"{type(e).__name__}: {e}")
        pairs = lambda group: [(c.match, built[id(c)]) for c in group]  # noqa: E731
        kept = [c for c in todo if id(c) in built]
        while kept:
            culprits = self._culprits(before, kept, pairs)
            comparison = self.last
            for c in culprits:
                _roll_back(c, "whole-model check failed with this rewrite in place "
                              f"(max abs error {comparison.max_abs_error:.3g}) although its local check "
                              "passed; rolled back")
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
        if self.want is None:
            v.detail = self.error or ""
            v.performed, v.equivalent = False, None
            return
        if not report.records(REWRITTEN):  # nothing was rewritten: `model` is the original
            result = compare_outputs(self.names, self.want, self.want)
        elif model is self.last_model:
            result = self.last
        else:
            result = self.compare(model)
        v.performed, v.equivalent = True, bool(result)
        v.max_abs_error, v.max_rel_error = result.max_abs_error, result.max_rel_error
        if not result:
            v.detail = str(result.worst())


def _whole_model_feeds(model: onnx.ModelProto, settings: Settings) -> dict:
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
