"""Quantized rewrites at the low opsets QDQ exists at (10 to 13), written
without verification (`--no-verify`): onnxruntime must create a session for
the written model with its default graph optimizations (ORT_ENABLE_ALL,
which fuse the QDQ groups the forms build) and it must compute what the
original computes.

The hazard these guard: onnxruntime fuses DequantizeLinear -> DepthToSpace
-> QuantizeLinear into a DepthToSpace of the integers, for which it has no
kernel below DepthToSpace-11 (opset 10), so a quantized form that spelled a
pixel shuffle as DepthToSpace there wrote a model no session can load."""
from __future__ import annotations

import logging
import re

import onnxruntime as ort
import pytest

pytest.importorskip("onnxruntime.quantization")

from convrewrite import optimize
from convrewrite.core.equivalence import check_models
from convrewrite.core.report import REWRITTEN
from passes import make_passes
from qdq_models import DILATED_GEOMETRIES, DILATED_GROUPED_GEOMETRIES, quantized

logging.getLogger().setLevel(logging.ERROR)
OPSETS = (10, 11, 12, 13)
ACTIVATIONS = ("uint8", "int8")

# every quantized form each model family can take: the default choice, each selectable form, and the
# targets whose variant orders pick other spellings (tflite: DCR pixel shuffles, the im2col pixels variant;
# the Ethos-N78: DCR single-conv)
CHOICES = {
    "convt": [{"convtranspose_form": f} for f in ("auto", "single-conv", "phase-convs", "border-split")],
    "dilated": [{}] + [{"dilated_mode": m} for m in ("batch", "depth", "slices", "reshape", "taps", "im2col")],
    "resize": [{}] + [{"resize_mode": m} for m in ("deconv", "matmul", "pointwise")] + [{"resize_nearest": "deconv"}],
    "decoder": [{}],
}
TARGETS = ("tflite", "arm-ethos-n78")
# resize_then_conv3 is left out: its rewrite moves the output by the original's own rounding-tie noise,
# which the verified run accepts as such (test_qdq_verify) and a plain comparison does not.
MODELS = ("decoder", "dilated", "dilated_tiny", "dilated_s2", "convt", "convt_depthwise", "convt_s1", "convt_k2",
          "convt_s23", "resize_nearest", "resize_nearest_x3", "resize_nearest_edge", "resize_linear",
          "resize_linear_x3", "resize_linear_x4", "resize_cubic", *DILATED_GEOMETRIES, *DILATED_GROUPED_GEOMETRIES)
RESIZE_10 = ("nearest", "linear")   # Resize-10's modes, and no other attribute (qdq_models.resize_for_opset)


def _family(name: str) -> str:
    return next(f for f in CHOICES if name.startswith(f))


def _spelled_at(name: str, opset: int) -> bool:
    """Whether the test model has a spelling at `opset` (Resize-10: nearest and linear, no attributes)."""
    return opset > 10 or name in ("resize_nearest", "resize_nearest_x3", "resize_linear", "resize_linear_x3",
                                  "resize_linear_x4") or not name.startswith("resize")


def _model(name, act, opset):
    # per-channel weights need DequantizeLinear's axis (opset 13)
    return quantized(name, act, opset=opset, per_channel=opset >= 13)


def assert_runs_unverified(model, options=None, target=None) -> set:
    """Rewrite without verification; onnxruntime (default optimizations)
    loads and runs the result, which equals the original.  Returns the
    (node, form, variant) rewritten."""
    new, report = optimize(model, passes=make_passes(None, options or {}), verify=False, target=target)
    done = {(r.node, r.form, r.variant) for r in report.records(REWRITTEN)}
    try:
        ort.InferenceSession(new.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as e:   # noqa: BLE001 -- any refusal is the failure this test is about
        pytest.fail(f"onnxruntime refuses the written model ({sorted(done)}): {str(e).splitlines()[0]}")
    result = check_models(model, new)
    assert result, f"{sorted(done)}:\n{result}"
    return done


# --- the cases that wrote a model onnxruntime refused (opset 10, DepthToSpace between Q/DQ) ----------

@pytest.mark.parametrize("act", ACTIVATIONS)
def test_opset10_quantized_dilated_batch_form_loads_and_matches_unverified(act):
    done = assert_runs_unverified(_model("dilated", act, 10))
    assert ("aspp", "batch", "") in done, done


@pytest.mark.parametrize("name, options, form", [
    ("dilated_depthwise", {"dilated_mode": "im2col"}, "im2col"),
    ("dilated_depthwise_dropped", {}, "batch"),
    ("convt", {"convtranspose_form": "phase-convs"}, "phase-convs"),
    ("convt_k2", {"convtranspose_form": "single-conv"}, "single-conv"),
    ("resize_nearest", {}, "shuffle"),
])
def test_opset10_quantized_pixel_shuffles_are_reshape_transpose_and_load_unverified(name, options, form):
    model = _model(name, "uint8", 10)
    new, _ = optimize(model, passes=make_passes(None, options), verify=False)
    assert "DepthToSpace" not in {n.op_type for n in new.graph.node}
    assert {"Reshape", "Transpose"} <= {n.op_type for n in new.graph.node}
    done = assert_runs_unverified(model, options)
    assert form in {f for _, f, _ in done}, done


@pytest.mark.parametrize("name", ["dilated_depthwise_s2", "convt_k2", "resize_nearest", "resize_linear"])
def test_opset10_quantized_pixel_shuffles_for_a_rank4_target_leave_the_node_and_say_so(name):
    """tflite takes rank 4 at most: the Reshape/Transpose pixel shuffle
    (rank 6) does not fit, and the DepthToSpace that would is not built; the
    reason says why the rank is 6 and what lets it be 4 (a bilinear Resize:
    through the ConvTranspose its deconv form builds, which stays for that
    reason)."""
    model = _model(name, "uint8", 10)
    assert not assert_runs_unverified(model, target="tflite")
    _, report = optimize(model, passes=make_passes(None, {}), verify=False, target="tflite")
    (r,) = report.rewrites
    assert r.code == "no-form", r.reason
    assert re.search(r"it needs rank-6 tensors, above the target's max_rank 4 \(between QuantizeLinear/"
                     r"DequantizeLinear at opset 10 the pixel shuffle is Reshape/Transpose, since onnxruntime has no "
                     r"8-bit DepthToSpace before opset 11: upgrade the opset to 11\+ for a rank-4 DepthToSpace\)",
                     r.reason), r.reason
    at11 = _model(name, "uint8", 11)
    _, report = optimize(at11, passes=make_passes(None, {}), verify=False, target="tflite")
    assert "upgrade the opset" not in " ".join(x.reason for x in report.rewrites)


@pytest.mark.slow
@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name", MODELS)
def test_every_quantized_form_at_low_opsets_loads_and_matches_unverified(name, opset):
    if not _spelled_at(name, opset):
        pytest.skip(f"{name} has no opset-{opset} spelling")
    fam = _family(name)
    rewritten = 0
    for act in ACTIVATIONS:
        model = _model(name, act, opset)
        for options in CHOICES[fam]:
            rewritten += bool(assert_runs_unverified(model, options))
        for target in TARGETS:
            assert_runs_unverified(model, target=target)
    if name != "resize_cubic":   # cubic's 2-D taps do not fit 8 bits: left alone (test_qdq)
        assert rewritten, "nothing was rewritten at all"
