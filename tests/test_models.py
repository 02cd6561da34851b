"""End to end on the sample models in models/, as exporters wrote them."""
import glob
import os

import onnx
import pytest

from convrewrite import optimize
from convrewrite.core.equivalence import check_models
from convrewrite.core.graph import attributes
from convrewrite.core.report import REWRITTEN

MODELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models")
SAMPLES = sorted(p for p in glob.glob(os.path.join(MODELS, "*.onnx")) if not p.endswith(".opt.onnx"))

# Resize nodes that are documented as left alone by the default (deconv)
# lowering: align_corners has no periodic sampling grid.
UNTOUCHABLE = {"seg_head_align_corners.onnx": 2}


def target_ops(model: onnx.ModelProto) -> dict:
    counts = {"ConvTranspose": 0, "dilated Conv": 0, "Resize": 0}
    for n in model.graph.node:
        if n.op_type in ("Resize", "Upsample"):
            counts["Resize"] += 1
        elif n.op_type == "ConvTranspose":
            counts["ConvTranspose"] += 1
        elif n.op_type == "Conv" and any(d > 1 for d in attributes(n).get("dilations", [])):
            counts["dilated Conv"] += 1
    return counts


def _io(model):
    def sig(vi):
        t = vi.type.tensor_type
        return vi.name, t.elem_type, [d.dim_value or d.dim_param for d in t.shape.dim]
    return [sig(v) for v in model.graph.input], [sig(v) for v in model.graph.output]


def test_there_are_sample_models():
    assert len(SAMPLES) >= 9


@pytest.mark.parametrize("path", SAMPLES, ids=os.path.basename)
def test_sample_model_end_to_end(path):
    original = onnx.load(path)
    new, report = optimize(path)
    onnx.checker.check_model(new, full_check=True)
    left = target_ops(new)
    expected_resize = UNTOUCHABLE.get(os.path.basename(path), 0)
    assert left == {"ConvTranspose": 0, "dilated Conv": 0, "Resize": expected_resize}, \
        [f"{r.node}: {r.reason}" for r in report.left_alone]
    assert report.verification.equivalent is True, report.verification
    assert report.verification.performed == bool(report.records(REWRITTEN)), report.verification
    assert _io(new) == _io(original)
    assert check_models(original, new, seed=7)
    assert len(report.left_alone) == expected_resize, [r.reason for r in report.left_alone]
    for r in report.records(REWRITTEN):
        assert r.max_abs_error is not None and r.new_nodes, r


QDQ_SAMPLES = [p for p in SAMPLES if "_qdq_" in os.path.basename(p)]


def test_there_are_quantized_samples():
    assert len(QDQ_SAMPLES) >= 3 and {"uint8", "int8"} <= {p.rsplit("_", 1)[1][:-5] for p in QDQ_SAMPLES}


# The README's "Quantized models" table: op counts after onnxruntime's QDQ fusion of the
# rewritten samples (Q/DQ not counted), and the float compute left (the DeepLab's two 1x1
# Convs, which onnxruntime does not fuse in the original either).
QDQ_AFTER = {
    "unet_decoder_qdq_uint8.onnx": ({"QLinearConv": 18, "DepthToSpace": 3, "QLinearConcat": 3, "MaxPool": 3}, 0),
    "deeplab_aspp_qdq_int8.onnx": ({"QLinearConv": 12, "Conv": 2, "Expand": 1, "SpaceToDepth": 7, "DepthToSpace": 7,
                                    "Reshape": 14, "Transpose": 0, "Pad": 7, "Slice": 7, "Relu": 12}, 2),
    "fpn_nearest_qdq_uint8.onnx": ({"QLinearConv": 6, "Tile": 2, "DepthToSpace": 2, "QLinearAdd": 2}, 0),
}


@pytest.mark.parametrize("path", QDQ_SAMPLES, ids=os.path.basename)
def test_quantized_samples_stay_quantized(path):
    """After onnxruntime's QDQ fusion (what a deployment runs) the rewritten
    model computes no more in float than the original and keeps every int8
    convolution, with exactly the op counts the README states; the int8
    results are the original's up to rounding ties (mean difference <= 0.05
    step, 99th percentile <= 1 step)."""
    from qdq_models import float_compute, fused_counts

    model = onnx.load(path)
    new, report = optimize(model)
    assert report.records(REWRITTEN) and report.verification.equivalent is True
    before, after = fused_counts(model), fused_counts(new)
    assert float_compute(after) <= float_compute(before), (before, after)
    assert after["QLinearConv"] >= before["QLinearConv"], (before, after)
    counts, float_left = QDQ_AFTER[os.path.basename(path)]   # exactly the README's table
    assert {op: after[op] for op in counts} == counts, (before, after)
    assert float_compute(after) == float_left, (before, after)
    for record in report.records(REWRITTEN):
        steps = record.quantized_steps
        for run in () if steps is None else ("spec", "fused"):
            assert steps[run]["mean"] <= 0.05 and steps[run]["p99"] <= 1, (record.node, steps)
