"""The rewrite driver: the only code that changes a model.

    load -> check -> for each pass (the caller's list, in order):
                        for every candidate node:
                            match (Match, or Skip with a reason and a code);
                            a node it finds invalid is left so, whatever the target
                            gate: a target that runs the node as it is keeps it
                            lower: choose a form, build it, judge it (lowering.py)
                        verify each replacement locally (original vs replacement)
                        splice the verified ones in, remove dead code, toposort
                     then revisit: nodes a rewrite created that a pass which
                        already ran is about are lowered by it (a worklist)
         -> whole-model check of the result (oracle.py); if it fails, the
            passes run again from the original with a whole-model check
            after each pass that rewrote something, which bisects to the
            rewrites responsible and rolls them back
         -> the new model and a Report

A dry run goes the same way, on a copy and without any check: its records
(`planned`) and op counts are what the run would write, the second stages
included, unless a check would roll a rewrite back.

One whole-model check when it passes (the common case) instead of one per
pass: the result is what must match the original.  A failure costs the run
again, checked pass by pass as it always was, so the rewrites rolled back
are the same.

A pass bug (an exception in match or build, a malformed replacement) rolls
that one rewrite back with the error as the reason; it never stops the run.

Progress: `optimize(..., progress=f)` calls f(stage, done, total) as the run
goes (see PROGRESS_STAGES); the driver never prints, the caller renders.
"""
from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence

import numpy as np
import onnx

from . import qdq_check
from .cost import batch_one, model_cost, subgraph_cost
from .equivalence import check_numbers
from .errors import InputError, error_text
from .graph import GraphView, nested_nodes
from .local_check import CheckError, UnknownValue, build_check, check_well_formed, verify_checks
from .lowering import Lowered, build, lower
from .model_io import check_and_infer, file_stamp, load_and_infer, load_model
from .oracle import Oracle
from .plans import Plans, key as structure_key
from .report import PLANNED, REWRITTEN, ROLLED_BACK, SKIPPED, Report, RewriteRecord
from .preconditions import oversized_tensor
from .qdq import DEQUANTIZE, QUANTIZE
from .rewrite import Code, Match, Skip
from .sketch import neighbours_of, sketch
from .splice import Undo, apply_rewrites, renamed_nodes, splice_in_place
from .weights import RELEASE_BYTES, Spill, compacted, data_bytes, release_memory, weight_bytes

MAX_ROUNDS = 4  # worklist rounds over the passes; each round only sees nodes the last one created
# The weights one rewrite may create: 4x the model's own, at least 64 MiB, at most 1 GiB.
NEW_WEIGHTS_FACTOR, NEW_WEIGHTS_FLOOR, NEW_WEIGHTS_CAP = 4, 64 << 20, 1 << 30

# The stages a progress callback sees, as "<stage>" or "<pass>: <stage>":
# done counts up to total within a stage (total 0: a stage of unknown length).
PROGRESS_STAGES = ("load", "match and build", "local checks", "splice", "whole-model check",
                   "target check", "done")
Progress = Callable[[str, int, int], None]


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


@dataclass
class Settings:
    verify: bool = True
    rtol: Optional[float] = None
    atol: Optional[float] = None
    seed: int = 0
    inputs: Optional[Mapping[str, np.ndarray]] = None
    dry_run: bool = False
    sketches: bool = False       # keep drawings of each rewrite for the HTML report


def optimize(model: "onnx.ModelProto | str | Path", passes: Sequence, verify: bool = True,
             rtol: Optional[float] = None, atol: Optional[float] = None, seed: int = 0,
             inputs: Optional[Mapping[str, np.ndarray]] = None, dry_run: bool = False,
             target=None, sketches: bool = False,
             progress: Optional[Progress] = None) -> tuple[onnx.ModelProto, Report]:
    """Rewrite `model` with `passes` (pass objects, run in this order).

    Returns the new model and the Report.  The input model is never modified.
    `inputs` are real tensors for the whole-model check (default: random).
    `target` (a built-in profile name, a JSON path or a Profile): a node the
    target runs is left as it is, the others get a form the target runs, and
    the report lists every node of the result that still does not fit.
    `sketches` keeps a drawing of each rewrite for the HTML report.
    `progress(stage, done, total)` is called as the run goes (PROGRESS_STAGES).
    """
    check_numbers(rtol, atol, seed)
    # a dry run plans what the run would write: every pass, the worklist included, builds and
    # splices as the run does (so the records and op counts show the nodes a second pass lowers),
    # on a copy, and checks nothing; the model is returned as it came
    settings = Settings(verify and not dry_run, rtol, atol, seed, inputs, dry_run, sketches)
    report = Report(dry_run=dry_run)
    progress = progress or _no_progress
    t0 = time.perf_counter()
    progress("load", 0, 1)
    owned = isinstance(model, (str, Path))
    if owned:
        report.input = str(model)
        stamp = file_stamp(model) if os.path.exists(model) else None   # before the read: a change during it shows
        model, shapes = load_and_infer(model)
    else:
        shapes = check_and_infer(model)
    release_memory(weight_bytes(model))  # what parsing and the checker's copies left on the heap
    report.timings["load_and_check"] = time.perf_counter() - t0
    profile = _profile(target)
    progress("load", 1, 1)
    original = model if dry_run else None
    run = _Run(tuple(passes), profile, settings, report, _weight_budget(model), progress, owned and not dry_run)
    run.model_bytes = weight_bytes(model)
    run.loaded = (model, shapes) if shapes is not None else None
    report.passes = [p.name for p in run.passes]
    report.optimization_passes = [p.name for p in run.passes if getattr(p, "optimization", False)]
    report.op_counts_before = op_counts(model)
    oracle = None
    if verify and not dry_run:
        progress("whole-model check", 0, 0)
        # a model loaded here is edited in place: the noise probes load it again
        oracle = Oracle(model, settings, reload=_reloader(report.input, stamp) if owned else None)
    model = [model]  # handed over: all_passes holds the only reference
    started = None
    try:
        if oracle is not None:   # (in the try: an interrupt here waits for the original's run, abandon())
            release_memory(run.model_bytes)  # what the original's run left, where it ran here
        if oracle is not None and oracle.alongside:
            # the local checks, after the last pass: the result's run goes alongside them
            current, run, started = _deferring(run, model, oracle, owned)
        else:
            current = run.all_passes(model.pop(), None)   # checked as a whole once, below
        if oracle is not None and report.records(REWRITTEN) and oracle.want is not None:   # (want may run the original)
            # handed over: not in memory while onnxruntime runs it (equivalence.run_handed_over)
            current = [current]
            current = _checked(current, oracle, run, owned, started)
        if oracle is not None:
            oracle.end_unused()   # runs set aside as stale: waited for here, where an interrupt waits again
    except BaseException:
        # the runs on threads end first: one left in onnxruntime aborts the process as Python exits
        if started is not None:
            started.join()
        if oracle is not None:
            oracle.abandon()
        raise
    if oracle is not None:
        if current is not oracle.last_model and report.records(REWRITTEN):
            progress("whole-model check", 0, 0)
        oracle.final_verdict(current, report)
        report.timings["verify_model"] = oracle.seconds
    report.op_counts_after = op_counts(current)
    if profile is not None:
        progress("target check", 0, 0)
        t = time.perf_counter()
        report.target = check_target(current, profile)
        report.timings["check_target"] = time.perf_counter() - t
    report.timings["total"] = time.perf_counter() - t0
    progress("done", 1, 1)
    return (original if dry_run else current), report


def _replaced(match: Match, graph: GraphView) -> list:
    """The labels of the original nodes a rewrite replaces, the candidate
    first.  A quantized group's QuantizeLinear / DequantizeLinear, which the
    rewrite emits again around its own nodes (a quantized ConvTranspose's
    match takes the QuantizeLinear after it), are not among them: one
    ConvTranspose "rewrote 2 node(s)", where a quantized Resize or dilated
    Conv, which keep theirs, rewrote 1."""
    return [graph.label(n) for n in match.nodes if n is match.node or n.op_type not in (QUANTIZE, DEQUANTIZE)]


def _deferring(run: "_Run", model: list, oracle: Oracle, owned: bool) -> tuple:
    """The passes with their local checks deferred (run.deferred), then
    _deferred_checks.  A pass that raises may have read what a deferred
    check rolls back: its error stands where every check deferred before it
    passes (checking before each splice reaches the same model), else the
    run is redone checking before each splice."""
    run.deferred, run.start_ahead = [], oracle.start_ahead
    try:
        current = [run.all_passes(model.pop(), None)]   # handed over, as in optimize
    except Exception:
        if run.verify_deferred():
            raise
        current = None   # redone below, once the error (whose traceback holds the model) is gone
    if current is None:
        return _redo(oracle, run, owned)
    return _deferred_checks(current, oracle, run, owned)


def _deferred_checks(current: list, oracle: Oracle, run: "_Run", owned: bool) -> tuple:
    """The local checks run deferred (after the last pass), with the result's
    whole-model run started alongside them.  Where every check passes, the
    result is what checking before each splice gives: (result, run, started
    run).  Where one fails, that rewrite would have been rolled back before
    the passes after it ran: the run is redone from the original, checking
    before each splice (result, the new run, None).  `current`: a list
    holding the only reference to the result (handed over)."""
    run.progress("whole-model check", 0, 0)   # the original's run may not be done: waited for here
    # (records first: `want` may run the original, with the reference evaluator where onnxruntime refused it)
    wanted = run.report.records(REWRITTEN) and oracle.want is not None
    started = oracle.start(current[0], run.edits) if wanted else None
    try:
        passed = run.verify_deferred()
    except BaseException:
        if started is not None:
            started.join()   # as Oracle.abandon
        raise
    if passed:
        return current.pop(), run, started
    if started is not None:
        started.join()
    current.clear()
    return _redo(oracle, run, owned)


def _redo(oracle: Oracle, run: "_Run", owned: bool, bisecting: bool = False) -> tuple:
    """The passes again from the original, checking locally before each
    splice, and with `bisecting` the whole model after each pass too:
    (result, the new run, None)."""
    run.report.rewrites = []   # the second run's records replace the first's
    oracle.end_unused()   # runs of the first run's model
    run.view = run.indexes = None   # the first run's model (a view's, the splice's): not held through the second
    again = _Run(run.passes, run.profile, run.settings, run.report, run.weight_budget, run.progress, owned)
    original = [oracle.model]   # handed over, as in optimize
    again.model_bytes = weight_bytes(original[0])
    return again.all_passes(original.pop(), oracle if bisecting else None), again, None


def _checked(result: list, oracle: Oracle, run: "_Run", owned: bool, started=None) -> onnx.ModelProto:
    """The model in `result` (handed over: a list holding the only reference
    to it) if it matches the original; else the passes again from the
    original, with a whole-model check after each pass that rewrites
    something, bisecting to the rewrites responsible (`owned`: whether the
    original was the driver's own).  `started`: oracle.start's run of it."""
    run.progress("whole-model check", 0, 0)
    if oracle.compare(result, started):
        return result.pop()
    result.clear()
    oracle.last_model = None   # the failed result: not held through the second run
    return _redo(oracle, run, owned, bisecting=True)[0]


def _optimizations_from(passes: Sequence) -> int:
    """Where the optimization passes at the end of `passes` begin (len(passes): none end it)."""
    k = len(passes)
    while k > 0 and getattr(passes[k - 1], "optimization", False):
        k -= 1
    return k


def _reloader(path: str, stamp: tuple) -> Callable[[], onnx.ModelProto]:
    """load_model(path) again, for a run that edited the model it loaded in
    place (the noise probes and a second run read the original again):
    refused where the file is no longer the one read at first (`stamp`),
    which would have the run compare one model's outputs with another's."""
    def reload() -> onnx.ModelProto:
        if file_stamp(path) != stamp:
            raise InputError(f"{path}: the file changed while convrewrite ran (a check reads it again); "
                             "run again once it stays as it is")
        return load_model(path)

    return reload


def _weight_budget(model: onnx.ModelProto) -> int:
    own = weight_bytes(model)
    return min(max(NEW_WEIGHTS_FACTOR * own, NEW_WEIGHTS_FLOOR), NEW_WEIGHTS_CAP)


def _profile(target):
    """The Profile `target` names (None: no target).  The target package is
    imported only for a run with a target (start-up time)."""
    if target is None or hasattr(target, "rules"):
        return target
    from ..target import load_profile

    return load_profile(target)


def check_target(model: onnx.ModelProto, profile) -> dict:
    """The report's "target" section: every node of `model` that does not fit."""
    from ..target import check_model as target_violations
    from ..target import target_report

    return target_report(target_violations(model, profile), profile)


def op_counts(model: onnx.ModelProto) -> dict:
    return dict(Counter(n.op_type for n in model.graph.node[:]))   # slices: see graph._indexes


# --- one candidate ------------------------------------------------------------

@dataclass
class _Candidate:
    record: RewriteRecord
    match: Optional[Match] = None
    lowered: Optional[Lowered] = None
    check: object = None
    structure: Optional[tuple] = None   # plans.key: matches of one structure share the chooser's decision

    def roll_back(self, reason: str, code: str) -> None:
        self.record.status, self.record.reason, self.record.code = ROLLED_BACK, reason, code
        self.record.new_nodes = self.record.replaced_nodes = []

    def skip(self, skip: Skip) -> None:
        self.record.status, self.record.reason, self.record.code = SKIPPED, skip.reason, skip.code
        self.match = self.lowered = None


class _Run:
    """One optimize run: the passes, the target, the settings, the report."""

    def __init__(self, passes: tuple, profile, settings: Settings, report: Report, weight_budget: int,
                 progress: Progress = _no_progress, owned: bool = False):
        self.passes, self.profile, self.settings, self.report = passes, profile, settings, report
        self.pass_names = tuple(q.name for q in passes)
        # Whether the model is the driver's own (loaded from a path, or a
        # copy it made), to be edited in place; a caller's model never is.
        self.owned = owned
        self.model_bytes = 0  # the input's weights (whether releasing memory is worth it)
        self.spill = None     # where the pass under way keeps its new weights, if on disk (_spills)
        self.removed = 0      # bytes of weights the pass under way spliced out
        self.weight_budget = weight_budget
        self.progress = progress
        self.view: Optional[GraphView] = None   # the view of the model the last pass left unchanged
        self.indexes: Optional[tuple] = None    # (model, its producer and consumer indexes): the last splice's
        self.nested: Optional[list] = None       # nested_nodes of the model: no pass rewrites a subgraph's holder
        self.loaded: Optional[tuple] = None      # (the model as loaded, its shape inference): the first view's
        self.plans = Plans()                     # the chooser's decisions, once per structure (core/plans.py)
        # the node names of the model the last pass was given (its view's: each protobuf name read
        # costs ~800 instructions); the nodes a pass created are those of the model it left not among them
        self.names_before: list = []
        # The local checks, deferred to after the last pass ((pass, candidates, checks) per pass), or None:
        # each pass checks before it splices.  Deferred, the result's whole-model run overlaps them
        # (optimize); a check that fails has the run redone without deferring, to the same result.
        self.deferred: Optional[list] = None
        self.edits = 0   # splices into the model so far (Oracle.start_ahead's version of it)
        # Oracle.start_ahead, in a deferred run: the result's whole-model run begins where only
        # optimization passes are left in a round (_ahead)
        self.start_ahead: Optional[Callable[[onnx.ModelProto, int], bool]] = None
        self.ahead_version = 0   # the edits the last run started ahead saw

    def all_passes(self, model: onnx.ModelProto, oracle) -> onnx.ModelProto:
        """Every pass in order; then the worklist: each pass again, over only
        the nodes the other passes created since it last ran, until none did.
        With an `oracle`, a whole-model check after each pass that rewrote
        something, bisecting to the rewrites responsible when it fails."""
        current, since = model, {p.name: None for p in self.passes}   # None: every node
        del model  # a pass's input is freed once the next pass no longer needs it
        tail = _optimizations_from(self.passes)
        for _ in range(MAX_ROUNDS):
            for k, p in enumerate(self.passes):
                if k == tail:
                    self._ahead(current)
                fresh = since[p.name]
                if fresh is None:
                    self.report.rewrites.extend(self._nested(current, p))
                if fresh is not None and not (fresh and self._revisits(current, p.op_types, fresh)):
                    since[p.name] = set()
                    continue
                t = time.perf_counter()
                if fresh is None and not _has_ops(self._op_types(current), p.op_types):
                    # none of its operators in the model: no candidates, nothing to analyse
                    self.progress(f"{p.name}: match and build", 0, 0)
                    since[p.name] = set()
                    self._timed(p, t)
                    continue
                # the passes that already ran revisit what this one creates (none: no names needed)
                others = [o for o in self.passes if o is not p and since[o.name] is not None]
                self.spill, self.removed = (Spill() if self._spills() else None), 0
                try:
                    current = self._one_pass(current, p, oracle, since[p.name])
                    if self.spill is not None and self.spill.waiting(current):
                        self.view = self.indexes = None   # the model changes below
                        if self.removed >= max(RELEASE_BYTES, self.model_bytes // 8):
                            held = [current]   # compacted: the replaced weights freed
                            del current
                            current = compacted(held)
                        current = self.spill.filled(current)   # then the new ones come in
                finally:
                    if self.spill is not None:
                        self.spill.close()
                    self.spill = None
                since[p.name] = set()
                if others and self.view is None:   # a view handed on: the model is as it was, nothing created
                    created = {n.name for n in current.graph.node[:]}.difference(self.names_before)
                    for other in others:
                        since[other.name] |= created
                self._timed(p, t)
            if tail == len(self.passes):
                self._ahead(current)
            if not any(since.values()):
                break
        return current

    def _ahead(self, model: onnx.ModelProto) -> None:
        """Where only optimization passes are left in the round, start the
        whole-model run of the model as it is (of use where they change
        nothing, as on most models), if the passes changed it since the last
        such start."""
        if self.start_ahead is not None and self.edits != self.ahead_version and self.start_ahead(model, self.edits):
            self.ahead_version = self.edits

    def _kept_view(self, model: onnx.ModelProto) -> Optional[GraphView]:
        """The view kept for the next pass where it is of `model` (it read the
        nodes' op types and names already: ~800 instructions a protobuf string read)."""
        return self.view if self.view is not None and self.view.model is model else None

    def _op_types(self, model: onnx.ModelProto) -> Iterable[str]:
        """The op types of `model`'s nodes, in order (read as asked where no view is kept)."""
        view = self._kept_view(model)
        return view.op_types if view is not None else (n.op_type for n in model.graph.node[:])

    def _revisits(self, model: onnx.ModelProto, op_types, fresh: set) -> bool:
        """Whether a node of `model` named in `fresh` has one of `op_types`."""
        view = self._kept_view(model)
        if view is None:
            return any(n.op_type in op_types and n.name in fresh for n in model.graph.node[:])
        return any(op in op_types and name in fresh for op, name in zip(view.op_types, view.node_names))

    def _nested(self, model: onnx.ModelProto, p) -> list:
        """A record for each candidate of a lowering pass in a subgraph or a
        model-local function: not rewritten there, so left alone, saying so
        (`--strict` counts it).  The lowering passes' `candidate` reads the
        node alone; one that needs the view (which holds the main graph
        only) is taken as a candidate."""
        if self.nested is None:
            self.nested = nested_nodes(model)
        found = [(w, n) for w, n in self.nested if n.op_type in p.op_types]
        if not found or getattr(p, "optimization", False):
            return []
        view, out, seen = self._view_of(model), [], Counter()
        self.view = view   # kept: the pass that follows reads the same model
        for where, node in found:
            try:
                wanted = p.candidate(node, view)
            except Exception:  # noqa: BLE001 -- a check that needs the node's shapes, which the view lacks
                wanted = True
            if wanted:
                label = f"{where}/{node.name or node.op_type}"
                seen[label] += 1
                label += f"#{seen[label]}" if seen[label] > 1 else ""   # nameless nodes told apart
                out.append(RewriteRecord(p.name, label, node.op_type, SKIPPED, code=Code.NESTED, reason=(
                    f"{node.op_type} '{label}': in {where}, which convrewrite does not rewrite (a subgraph or a "
                    "model-local function); only the main graph's nodes are lowered")))
        return out

    def _timed(self, p, since: float) -> None:
        key = f"pass:{p.name}"
        self.report.timings[key] = self.report.timings.get(key, 0.0) + time.perf_counter() - since

    def _spills(self) -> bool:
        """Whether the pass about to run keeps its new weights on disk until
        the splice (weights.Spill): without verification nothing reads them
        before, and then the model never holds both the weights a pass
        replaces and the new ones, which protobuf would otherwise keep
        together until the model is freed: where the splice took out an
        eighth of the model's weights or more, the model is compacted before
        they come in (below that, it is not worth a copy of the model through
        a file).  Only for a model the driver owns, of at least RELEASE_BYTES
        of weights.  (Verifying, the local checks read the new weights.)"""
        return (not self.settings.verify and not self.settings.dry_run and self.owned
                and self.model_bytes >= RELEASE_BYTES)

    # --- one pass -------------------------------------------------------------

    def _one_pass(self, model, p, oracle, only: Optional[set]) -> onnx.ModelProto:
        graph, self.view = self._view_of(model), None
        self.names_before = graph.node_names
        candidates = self._plan_all(graph, p, only)
        self.report.rewrites.extend(c.record for c in candidates)
        todo = self._check_all(graph, p, [c for c in candidates if c.lowered is not None])
        retry = self._rematch_alone(graph, p, candidates)
        if retry:
            self.report.rewrites.extend(c.record for c in retry)
            todo += self._check_all(graph, p, [c for c in retry if c.lowered is not None])
        if not todo:
            self.view = graph   # the model as it was: the next pass sees it through the same view
            return model
        self.progress(f"{p.name}: splice", 0, 0)
        self.edits += 1
        pairs = [(c.match, c.lowered.replacement) for c in todo]
        rebuild = {id(c): c.lowered.option for c in todo}
        for c in todo:  # their weights go into the model now; bisection rebuilds what it needs
            c.lowered = c.check = None
        if self.owned:  # edited in place: the weights that stay are not copied
            graph.freeze()  # bisection's rebuilds see the model as it was
            undo = Undo(model) if oracle is not None else None
            removed, indexes = splice_in_place(model, pairs, graph.initializers)
            # the next view's indexes, unless bisection below may change the model
            self.indexes = (model, indexes) if indexes is not None and oracle is None else None
            self.removed = sum(data_bytes(t) for t in removed)
            result = model
            before = (lambda: undo.before(result, removed)) if undo is not None else None
        else:  # the caller's model: never modified; the result is the driver's own
            result, before = apply_rewrites(model, pairs), model
        del pairs
        release_memory(self.model_bytes)
        if oracle is not None:
            self.progress(f"{p.name}: whole-model check", 0, 0)
            result = oracle.bisect(before, result, todo, lambda c: build(p, c.match, rebuild[id(c)], graph),
                                   None if before is model else undo.index)
        # a copy is the driver's own; the caller's model (bisection gives it back where it rolls back
        # every rewrite of the pass) never is, whatever the passes after this one splice
        self.owned = self.owned or result is not model
        return result

    def _view_of(self, model: onnx.ModelProto) -> GraphView:
        """The view of `model`: the last pass's where that pass left the
        model as it was (a view is a function of the model alone: shape
        inference, indexes, labels, constants), else a new one."""
        if self.view is not None and self.view.model is model:
            return self.view
        loaded, self.loaded = self.loaded, None   # the first view is of the model as loaded, or of none
        spliced, self.indexes = self.indexes, None   # the splice's indexes, of the model as it left it
        return GraphView(model, shapes=loaded[1] if loaded is not None and loaded[0] is model else None,
                         indexes=spliced[1] if spliced is not None and spliced[0] is model else None)

    def _plan_all(self, graph: GraphView, p, only: Optional[set]) -> list[_Candidate]:
        """Gate, match and lower every candidate once.  A match may cover
        several nodes (a chain): the nodes it absorbs get no record of their
        own; the covering record names them in its notes."""
        out, claimed = [], set()
        if self.profile is not None and getattr(p, "optimization", False):
            return out    # an optimization measured on onnxruntime CPU: with a target, no candidates
        # a pass's candidates are among its op_types (as _has_ops and the worklist rely on): others are not asked
        ops = p.op_types
        nodes = [n for n in graph.graph.node[:]
                 if n.op_type in ops and (only is None or n.name in only) and p.candidate(n, graph)]
        stage = f"{p.name}: match and build"
        for k, node in enumerate(nodes):
            self.progress(stage, k, len(nodes))
            if id(node) in claimed:
                continue
            c = self._plan(graph, p, node, p.match, claimed)
            if c.match is not None:
                claimed.update(id(n) for n in c.match.nodes)
            out.append(c)
        self.progress(stage, len(nodes), len(nodes))
        return out

    def _plan(self, graph, p, node, match_fn, claimed: set, alone: bool = False) -> _Candidate:
        c = _Candidate(RewriteRecord(p.name, graph.label(node), node.op_type, SKIPPED))
        unfit, result = None, None
        if self.profile is not None:
            from ..target import needs_lowering, runs_as_is_reason, undecided_reason

            # the pass's verdict that the node breaks its operator's spec comes first: a target's rules
            # read its attributes and inputs as valid, and would say it runs the node, or that a value
            # (a NaN scale) is not known before run time
            result = _match(p, match_fn, node, graph)
            if not _invalid(result):
                unfit = needs_lowering(node, graph, self.profile)
                if unfit is None:
                    # no rule is known to be broken; the target runs it only if no rule passed unread
                    unknown = undecided_reason(node, graph, self.profile)
                    c.skip(Skip(unknown, Code.TARGET_UNDECIDED) if unknown else
                           Skip(runs_as_is_reason(node, graph, self.profile), Code.TARGET_RUNS_IT))
                    return c
        too_large = oversized_tensor(node, graph)
        if too_large is not None and not _invalid(result):
            c.skip(Skip(f"{node.op_type} '{graph.label(node)}': {too_large.reason}", too_large.code))
            return c
        if result is None:
            result = _match(p, match_fn, node, graph)
        if isinstance(result, Skip):
            c.skip(result)
            return c
        if any(id(n) in claimed for n in result.nodes):
            if _may_match_alone(p, result, alone):
                # a chain reaching a node another rewrite took: the node is still lowered, alone (as a
                # second run would lower it), not left for a target that cannot run it
                return self._alone(graph, p, node, claimed,
                                   f"its {len(result.nodes)}-node rewrite overlaps another rewrite of this pass")
            c.skip(Skip("overlaps another rewrite of this pass", Code.OVERLAP))
            return c
        c = self._lower(graph, p, node, result, c, alone)
        if unfit is not None and c.match is not None:
            c.record.notes.append(f"target {self.profile.name} cannot run the {node.op_type}: {unfit.split('; ')[0]}")
        return c

    def _alone(self, graph, p, node, claimed: set, why: str) -> _Candidate:
        """`node` matched alone (p.match_alone), its record saying `why` its
        multi-node match was not kept."""
        single = self._plan(graph, p, node, p.match_alone, claimed, alone=True)
        single.record.notes.append(f"{why}; matched alone")
        return single

    def _lower(self, graph, p, node, match: Match, c: _Candidate, alone: bool = False) -> _Candidate:
        try:
            lowered = self._lowered(graph, p, match, c)
        except Exception as e:  # a bug in a form: this rewrite is dropped, the run goes on
            c.roll_back(f"internal error in {p.name}.build: {error_text(e)}", Code.INTERNAL_ERROR)
            return c
        unfit = lowered.reason if isinstance(lowered, Skip) else None if lowered.fits else lowered.notes[-1]
        if unfit and self.profile is not None and _may_match_alone(p, match, alone):
            # a multi-node match is kept only when the target runs all of it
            return self._alone(graph, p, node, set(),
                               f"target {self.profile.name}: the {len(match.nodes)}-node rewrite does not fit ({unfit})")
        if isinstance(lowered, Skip):
            c.skip(lowered)
            return c
        new_bytes = sum(data_bytes(t) for t in lowered.replacement.initializers)
        if new_bytes > self.weight_budget:
            c.skip(Skip(f"{node.op_type} '{graph.label(node)}': the {lowered.option.label} form would create "
                        f"{new_bytes} bytes of weights, above the budget of {self.weight_budget} (4x the model's "
                        "weights, at most 1 GiB); left as it is", Code.TOO_LARGE))
            return c
        if self.spill is not None:   # on disk until the splice
            lowered.replacement = replace(lowered.replacement,
                                          initializers=self.spill.put(lowered.replacement.initializers))
        c.match, c.lowered = match, lowered
        r = c.record
        r.status = PLANNED if self.settings.dry_run else REWRITTEN
        r.form, r.variant = lowered.option.form.name, lowered.option.variant.label
        r.notes = list(match.notes) + list(lowered.replacement.notes) + list(lowered.notes)
        others = [graph.label(n) for n in match.nodes if n is not node]
        if others:
            r.notes.append("also rewrites " + ", ".join(f"'{o}'" for o in others))
        r.new_nodes = [n.name for n in lowered.replacement.nodes]
        r.replaced_nodes = _replaced(match, graph)
        if self.settings.sketches:
            own = {t.name for t in lowered.replacement.initializers}
            _sketch(r, graph, match, renamed_nodes(lowered.replacement), lambda v: None,
                    lambda v: v in own or graph.is_constant(v))
        return c

    def _lowered(self, graph, p, match: Match, c: _Candidate):
        """lower(): without a target, the option and notes of the first match
        of this structure, built for this match (core/plans.py)."""
        if self.profile is not None:
            return lower(p, match, graph, self.profile, self.passes)
        c.structure = self.plans.one(structure_key(p, match, graph, self.pass_names))
        kept = self.plans.get(c.structure, "lower")
        if kept is not None:
            option, notes = kept
            return Lowered(option, build(p, match, option, graph), notes)
        lowered = lower(p, match, graph, None, self.passes)
        if isinstance(lowered, Lowered):
            # kept with its cost worked out, without its pricing (which holds this match and view)
            kept = replace(lowered.option, pricing=None)
            kept.__dict__["cost"] = lowered.option.cost
            self.plans.put(c.structure, "lower", (kept, lowered.notes))
        return lowered

    def _rematch_alone(self, graph, p, candidates) -> list:
        """A multi-node match (a chain) that was rolled back gives its nodes a
        second chance one by one, where the pass offers `match_alone` (the
        pass's candidates among them: not a BatchNormalization folded into a
        ConvTranspose); their new records replace the chain's."""
        if not hasattr(p, "match_alone"):
            return []
        retry = []
        for c in candidates:
            if c.record.status != ROLLED_BACK or c.match is None or len(c.match.nodes) < 2:
                continue
            self.report.rewrites.remove(c.record)
            for node in [n for n in c.match.nodes if p.candidate(n, graph)]:
                r = self._plan(graph, p, node, p.match_alone, set(), alone=True)
                r.record.notes.append(f"matched alone: its chain was rolled back ({c.record.reason})")
                retry.append(r)
        return retry

    # --- checks -----------------------------------------------------------------

    def _check_all(self, graph, p, todo: list) -> list:
        """Check each replacement (well-formed, and numerically unless
        verification is off); the candidates still standing."""
        for c in todo:
            self._prepare_check(graph, p, c)
        todo = [c for c in todo if c.record.status in (REWRITTEN, PLANNED)]
        if self.settings.verify and todo and self.deferred is not None:
            self.deferred.append((p, todo, [c.check for c in todo]))   # run after the last pass (verify_deferred)
        elif self.settings.verify and todo:
            self._verify_local(p, todo, [c.check for c in todo])
            todo = [c for c in todo if c.record.status == REWRITTEN]
            release_memory(self.model_bytes)  # the check sessions'
        return todo

    def verify_deferred(self) -> bool:
        """The local checks the passes deferred, pass by pass as each would
        have run them; whether every one passed (at the first pass with a
        failure it stops: the run is then redone without deferring)."""
        deferred, self.deferred = self.deferred, None
        for p, todo, checks in deferred or ():
            self._verify_local(p, todo, checks)
            if any(c.record.status != REWRITTEN for c in todo):
                return False
        return True

    def _prepare_check(self, graph, p, c: _Candidate) -> None:
        """Refuse a malformed replacement; build its check models where they
        are used: to verify, to draw, or to measure what its form leaves unknown."""
        try:
            if self.settings.verify or self.settings.sketches or None in _figures(c.lowered.option.cost):
                c.check = build_check(graph, c.match, c.lowered.replacement)
            else:
                check_well_formed(graph, c.match, c.lowered.replacement)
        except UnknownValue as e:
            c.roll_back(str(e), Code.UNCHECKABLE)
            return
        except CheckError as e:
            c.roll_back(f"malformed replacement: {e}", Code.UNCHECKABLE)
            return
        except Exception as e:  # e.g. a replacement protobuf cannot serialise (> 2 GB)
            c.roll_back(f"replacement cannot be checked: {error_text(e)}", Code.UNCHECKABLE)
            return
        before = self.plans.get(c.structure, "cost")
        if before is None:
            before = subgraph_cost(c.match.nodes, graph, per_item=True)
            self.plans.put(c.structure, "cost", before)
        c.record.set_costs(before, self._cost_after(c))
        if self.settings.sketches:
            view = _batch_one_view(c.check.replacement)
            if view is not None:
                _sketch(c.record, graph, c.match, list(view.graph.node), view.shape,
                        lambda v: view.is_constant(v) or graph.is_constant(v))

    @staticmethod
    def _cost_after(c: _Candidate):
        """The chosen form's own figures (exact, worked out before building);
        measured on the built replacement where a form leaves one unknown."""
        cost = c.lowered.option.cost
        if None in _figures(cost):
            cost = model_cost(c.check.replacement)
        return cost

    def _verify_local(self, p, todo: Sequence[_Candidate], checks: list) -> None:
        """Run the local `checks` of `todo` (one each); roll back those that fail."""
        s, t = self.settings, time.perf_counter()
        stage = f"{p.name}: local checks"
        results = verify_checks(checks, s.seed, s.rtol, s.atol,
                                progress=lambda done, total: self.progress(stage, done, total))
        key = f"verify_local:{p.name}"
        self.report.timings[key] = self.report.timings.get(key, 0.0) + time.perf_counter() - t
        for c, r in zip(todo, results):
            if isinstance(r, str):
                c.roll_back(r, Code.VERIFICATION_FAILED)
                continue
            c.record.max_abs_error, c.record.max_rel_error = r.max_abs_error, r.max_rel_error
            c.record.quantized_steps = qdq_check.record_steps(r)
            if not r:
                w, fused = r.worst(), qdq_check.fused_failure(r)   # only the int8 execution differs
                c.roll_back(f"local check failed: {fused}" if fused else
                            f"local check failed: replacement differs from the original "
                            f"(max abs error {w.max_abs_error:.3g}, allowed {w.allowed_error:.3g}"
                            f"{', ' + w.message if w.message else ''})", Code.VERIFICATION_FAILED)


def _match(p, match_fn, node, graph) -> "Match | Skip":
    """The pass's match of `node`; a pass bug is a Skip, not the run's end."""
    try:
        return match_fn(node, graph)
    except Exception as e:
        return Skip(f"internal error in {p.name}.match: {error_text(e)}", Code.INTERNAL_ERROR)


def _may_match_alone(p, match: Match, alone: bool) -> bool:
    """Whether a multi-node `match` may give way to its node matched alone:
    once (a match alone can span several nodes too, a quantized group's,
    which matching alone again would recurse on)."""
    return len(match.nodes) > 1 and hasattr(p, "match_alone") and not alone


def _invalid(result) -> bool:
    """Whether a match says the node breaks its operator's specification:
    true of the node whatever runs it, so said before a target's verdict."""
    return isinstance(result, Skip) and result.code == Code.INVALID_NODE


def _has_ops(ops: Iterable[str], op_types) -> bool:
    """Whether a model's nodes, of op types `ops`, have one of `op_types` (a
    pass's candidates are among these, as the worklist already relies on)."""
    return any(op in op_types for op in ops)


def _figures(cost) -> tuple:
    """The figures of a Cost the report needs (None: unknown before building)."""
    return cost.macs, cost.moved_bytes, cost.nodes, cost.max_rank


# --- drawings for the HTML report ---------------------------------------------------

def _sketch(record: RewriteRecord, graph: GraphView, match: Match, new_nodes: list, shape, is_constant) -> None:
    """The original nodes among their neighbours, and the new nodes among the same neighbours."""
    around = neighbours_of(match.nodes, graph)

    def label(n):
        return graph.labels.get(id(n)) or n.name or n.op_type

    record.sketch_before = sketch(match.nodes, graph.shape, "match", label, around, graph.is_constant)
    record.sketch_after = sketch(new_nodes, lambda v: shape(v) or graph.shape(v), "new", label, around, is_constant)


def _batch_one_view(model: onnx.ModelProto) -> Optional[GraphView]:
    """The replacement's check model with its symbolic dims set to 1, shapes inferred."""
    try:
        return GraphView(batch_one(model))
    except Exception:  # a drawing without shapes is still a drawing
        return None
