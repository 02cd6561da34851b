"""benchmarks/bench_pipeline.py's models: the issue-12 model and its floor
(the same size with nothing to rewrite)."""
import onnx

from benchmarks.bench_pipeline import pipeline_model
from convrewrite import optimize
from convrewrite.core.report import REWRITTEN
from passes import make_passes


def test_the_pipeline_model_has_three_candidates_per_block_all_rewritten():
    m = pipeline_model(30)
    onnx.checker.check_model(m, full_check=True)
    _, report = optimize(m, make_passes(), verify=False)
    ops = [r.op for r in report.records(REWRITTEN)]
    assert sorted(set(ops)) == ["Conv", "ConvTranspose", "Resize"] and len(ops) == 30


def test_the_floor_model_is_the_same_size_with_nothing_to_rewrite():
    m, plain = pipeline_model(30), pipeline_model(30, plain=True)
    onnx.checker.check_model(plain, full_check=True)
    assert len(plain.graph.node) == len(m.graph.node)
    assert [t.dims for t in plain.graph.initializer] == [t.dims for t in m.graph.initializer]
    result, report = optimize(plain, make_passes())
    assert report.rewrites == [] and result.SerializeToString() == plain.SerializeToString()
