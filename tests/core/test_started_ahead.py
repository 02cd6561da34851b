"""The result's whole-model run started ahead of the optimization passes
(Oracle.start_ahead, driver._Run._ahead): a differential sweep.  Random toy
graphs and pass lists (optimization passes that edit the model, that leave
it alone, that are wrong, that raise; anywhere in the list), and the sample
models through the CLI: the same model and report (or error) as checking
before each splice; every run handed to a comparison is of the model
compared (never a stale one); no check thread alive once optimize returns
or raises."""
from __future__ import annotations

import glob
import json
import os
import random
import threading
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

import toy_passes as toy
from convrewrite import optimize
from convrewrite.core import equivalence, oracle
from convrewrite.core.rewrite import Match
from test_deferred_checks import (_IdentityBug, _KeptToMax, _LeavesAlone, _OptimizationBug, _outcome,
                                  _random_graph, _spied)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass(frozen=True)
class _KeptToIdentity(toy.ReluToIdentity):
    """An optimization pass whose rewrites (of the Relus named keep*) fail their local checks."""

    name: ClassVar[str] = "kept-to-identity"
    optimization: ClassVar[bool] = True

    def match(self, node, graph):
        return Match(node, None)


@dataclass(frozen=True)
class _AddToSubOptimization(toy.AddToSub):
    """An optimization pass that edits every Add (correct)."""

    name: ClassVar[str] = "add-to-sub-optimization"
    optimization: ClassVar[bool] = True


@dataclass(frozen=True)
class _ClipOptimization(toy.ReluToClip):
    """An optimization pass wrong only on the user's large inputs (the whole-model check, bisection)."""

    name: ClassVar[str] = "clip-optimization"
    optimization: ClassVar[bool] = True


POOL = [toy.ReluToMax, toy.ReluToIdentity, toy.ReluWrongOnlyInContext, toy.AddToSub, toy.AddToSubWrongOnBad,
        toy.ReluToClip, lambda: toy.ReluPairs(wrong_chain=True), _IdentityBug, toy.ReluBroken]
OPTIMIZATIONS = [_LeavesAlone, _KeptToMax, _KeptToIdentity, _AddToSubOptimization, _ClipOptimization,
                 _OptimizationBug]


def _check_threads() -> list:
    return [t for t in threading.enumerate() if t.name == "convrewrite-check"]


class _Watch:
    """What the deferred run did with its check threads: every run started
    (the bytes of the model it was given), every comparison handed a run
    (whether it ran the model compared), the runs start_ahead began."""

    def __init__(self, monkeypatch, r: random.Random):
        self.runs, self.handed, self.ahead = [], [], []
        watch, real_start_ahead, real_compare = self, oracle.Oracle.start_ahead, oracle.Oracle.compare
        wait_for_original, delays = r.random() < 0.7, [r.choice([0, 0, 0.02, 0.08]) for _ in range(8)]

        class Recorded(equivalence.InBackground):
            def __init__(self, model, *a, **k):
                self.given = model.SerializeToString()
                super().__init__(model, *a, **k)
                watch.runs.append(self)

        def start_ahead(self, model, version):
            if wait_for_original and self._background is not None:
                self._background.join()   # a toy model's passes outrun the original's run: let them start
            watch.ahead.append(real_start_ahead(self, model, version))
            return watch.ahead[-1]

        def compare(self, model, started=None):
            if started is not None:
                compared = model[0] if isinstance(model, list) else model
                watch.handed.append(started.given == compared.SerializeToString())
            return real_compare(self, model, started)

        session = equivalence.onnxruntime_session
        order: list = []

        def slow(model, optimized=False, threads=0):
            here = threading.current_thread()
            if here.name == "convrewrite-check":   # later runs slower or faster: stale runs end at any point
                order.append(here)
                time.sleep(delays[min(len(order), len(delays)) - 1])
            return session(model, optimized, threads)

        monkeypatch.setattr(oracle, "InBackground", Recorded)
        monkeypatch.setattr(oracle.Oracle, "start_ahead", start_ahead)
        monkeypatch.setattr(oracle.Oracle, "compare", compare)
        monkeypatch.setattr(equivalence, "onnxruntime_session", slow)


def _differential(monkeypatch, model, passes, r: random.Random, **kwargs) -> _Watch:
    """The deferred run (with its runs watched) against checking before each
    splice: the same outcome, the caller's model untouched, no thread left."""
    given = model.SerializeToString() if not isinstance(model, str) else None

    def outcome():
        try:
            return _outcome(model, passes, **kwargs)
        except ZeroDivisionError as e:   # a raising pass's, where checking before each splice meets it too
            return repr(e)

    said = _spied(monkeypatch)
    with monkeypatch.context() as m:
        watch = _Watch(m, r)
        deferred = outcome()
        assert _check_threads() == []
    with monkeypatch.context() as m:
        m.setattr(oracle, "runs_in_background", lambda model: False)   # no run alongside: nothing deferred
        before = outcome()
    assert deferred == before
    assert all(watch.handed), "a run of another model than the one compared was handed over"
    assert said in ([], [True], [False])
    if given is not None:
        assert model.SerializeToString() == given
    return watch


def _case(seed: int) -> tuple:
    r = random.Random(seed)
    passes = [POOL[k]() for k in r.sample(range(len(POOL)), r.randint(0, 3))]
    for k in r.sample(range(len(OPTIMIZATIONS)), r.randint(1, 2)):
        passes.insert(r.randint(0, len(passes)) if r.random() < 0.3 else len(passes), OPTIMIZATIONS[k]())
    model = _random_graph(seed)
    kwargs = {}
    if r.random() < 0.3:   # the user's inputs, large: Clip's whole-model check fails
        dims = [d.dim_value or 2 for d in model.graph.input[0].type.tensor_type.shape.dim]
        kwargs["inputs"] = {"x": np.random.default_rng(seed).uniform(-100, 100, dims).astype(np.float32)}
    return model, passes, r, kwargs


FAST_SEEDS = range(12)


@pytest.mark.parametrize("seed", FAST_SEEDS)
def test_random_graphs_with_optimization_passes_are_the_same_started_ahead(monkeypatch, seed):
    model, passes, r, kwargs = _case(seed)
    _differential(monkeypatch, model, passes, r, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(len(FAST_SEEDS), 400))
def test_random_graphs_with_optimization_passes_are_the_same_started_ahead_sweep(monkeypatch, seed):
    model, passes, r, kwargs = _case(seed)
    _differential(monkeypatch, model, passes, r, **kwargs)


# --- the sample models: through the CLI, and the passes in other orders -------------------

MODELS = sorted(glob.glob(os.path.join(ROOT, "models", "*.onnx")))
FAST_MODELS = [os.path.join(ROOT, "models", m) for m in ("all_three.onnx", "fpn_nearest_qdq_uint8.onnx")]


def _cli_outcome(path: str, tmp_path, extra: list):
    import cli

    out, report = tmp_path / "out.onnx", tmp_path / "report.json"
    code = cli.main(["optimize", path, "-o", str(out), "--report", str(report), "--quiet", *extra])
    data = json.loads(report.read_text())
    data.pop("timings")
    data["verification"].pop("bisection_seconds")
    return code, out.read_bytes(), data


def _cli_differential(monkeypatch, tmp_path, path: str, extra: list, seed: int) -> None:
    with monkeypatch.context() as m:
        watch = _Watch(m, random.Random(seed))
        deferred = _cli_outcome(path, tmp_path, extra)
        assert _check_threads() == []
    with monkeypatch.context() as m:
        m.setattr(oracle, "runs_in_background", lambda model: False)
        before = _cli_outcome(path, tmp_path, extra)
    assert deferred == before and deferred[0] == 0
    assert all(watch.handed) and watch.runs


def _reordered(seed: int) -> list:
    """The real passes, the optimization ones first, in the middle or shuffled in."""
    from passes import make_passes

    passes = list(make_passes(None, {}))
    optimizations = [p for p in passes if getattr(p, "optimization", False)]
    lowering = [p for p in passes if p not in optimizations]
    order = [optimizations + lowering, lowering[:1] + optimizations + lowering[1:],
             lowering + optimizations[::-1]][seed % 3]
    return order


@pytest.mark.parametrize("path", FAST_MODELS, ids=os.path.basename)
def test_sample_models_through_the_cli_are_the_same_started_ahead(monkeypatch, tmp_path, path):
    _cli_differential(monkeypatch, tmp_path, path, [], 0)


@pytest.mark.slow
@pytest.mark.parametrize("target", [[], ["--target", "tflite"]], ids=["no target", "tflite"])
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("path", MODELS, ids=os.path.basename)
def test_every_sample_model_through_the_cli_is_the_same_started_ahead(monkeypatch, tmp_path, path, seed, target):
    _cli_differential(monkeypatch, tmp_path, path, target, seed)


@pytest.mark.slow
@pytest.mark.parametrize("order", range(3), ids=["optimizations first", "in the middle", "last, reversed"])
@pytest.mark.parametrize("path", MODELS, ids=os.path.basename)
def test_sample_models_with_the_passes_in_other_orders_are_the_same_started_ahead(monkeypatch, path, order):
    _differential(monkeypatch, path, _reordered(order), random.Random(order))
