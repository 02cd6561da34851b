"""1-D Resize ([N, C, L]) on the Ethos-U profiles, against onnx2tf and Vela.

onnx2tf 2.6.9 runs a 1-D Resize as RESHAPE, RESIZE_NEAREST_NEIGHBOR or
RESIZE_BILINEAR on an [N, 1, L, C] map (the unit axis' factor 1), RESHAPE. The
profiles keep a 1-D Resize exactly where its (mode, coordinate mode) was measured
exact and all on the NPU at every factor measured; elsewhere convrewrite lowers it.

Recorded (benchmarks/ethos_u_resize1d.py: a single Resize node, x [1, 4, 16],
float32; onnx2tf -oiqt, Vela 5.2.0): per (mode, coordinate_transformation_mode,
nearest_mode, factor): (exact, all on the NPU of ethos-u55-128, of ethos-u85-256).
exact: LiteRT's reference kernels on the float32 and the full-integer int8
.tflite against onnxruntime: nearest takes every output value from the input
sample onnxruntime takes; linear is within 2 int8 output steps (float32: 1e-5).
Every case converted with flatbuffer_direct. The comments give the int8 linear
error in output steps, and Vela's reason for the CPU. half_pixel x2's 1.99 steps
is a bias, not a coordinate: LiteRT's int8 kernel is 0.1 to 2.0 steps low on
every output value (it rounds down), where a quarter-sample error would move a
value by about 20 steps (neighbouring samples differ by about 0.3).

- test_profile_keeps_a_1d_resize_where_onnx2tf_computes_it_on_the_npu
  (default suite): the profiles' verdict on each recorded case.
- test_onnx2tf_and_vela_do_as_recorded (needs onnx2tf and vela, skipped
  otherwise; about 5 s a case on 2 shared cores):

      /work/venv-vela/bin/python -m pytest -q -m slow tests/target/test_vela_resize1d.py
"""
from __future__ import annotations

import pytest

from benchmarks.ethos_u_resize1d import resize_1d
from tests.target.test_vela import U55, U85, _toolchain, profile_fits

# (mode, ctm, nearest_mode, factor): (exact, U55 NPU, U85 NPU)
RESIZE_1D_5_2 = {
    ("nearest", "asymmetric", "floor", 2): (True, True, True),
    ("nearest", "asymmetric", "floor", 4): (True, True, True),
    ("nearest", "asymmetric", "floor", 8): (True, True, True),
    # U55: 'HW scale-factor is not equal and Resize Bilinear has half pixel centers, h scale-factor=1'
    ("linear", "half_pixel", "floor", 2): (True, False, True),  # 1.99 steps: see below
    ("linear", "half_pixel", "floor", 4): (True, False, True),  # 1.0 step
    ("linear", "half_pixel", "floor", 8): (True, False, True),  # 0.72 steps
    ("linear", "asymmetric", "floor", 2): (True, True, True),  # 0.28 steps
    ("linear", "asymmetric", "floor", 4): (True, True, True),  # 0.28 steps
    ("linear", "asymmetric", "floor", 8): (True, True, True),  # 0.76 steps
}


@pytest.mark.parametrize("accelerator", [U55, U85])
@pytest.mark.parametrize("case", sorted(RESIZE_1D_5_2), ids=lambda c: "_".join(map(str, c)))
def test_profile_keeps_a_1d_resize_where_onnx2tf_computes_it_on_the_npu(case, accelerator):
    exact, on_u55, on_u85 = RESIZE_1D_5_2[case]
    on_npu = {U55: on_u55, U85: on_u85}[accelerator]
    assert profile_fits(resize_1d(*case), accelerator) == (exact and on_npu), (
        f"{case} on {accelerator}: onnx2tf's values {'exact' if exact else 'not exact'}, Vela placed it "
        f"{'all on the NPU' if on_npu else 'partly on the CPU'}")


@pytest.mark.parametrize("accelerator", [U55, U85])
@pytest.mark.parametrize("factor", [3, 16])
def test_profile_does_not_claim_an_unmeasured_1d_factor(factor, accelerator):
    """The rank-1 forms name the factors measured (2, 4, 8), not the 2-D rules' others."""
    for mode in ("nearest", "linear"):
        assert not profile_fits(resize_1d(mode, "asymmetric", "floor", factor), accelerator), (mode, factor)


@pytest.mark.slow   # about 5 s a case on 2 shared cores (skipped without onnx2tf and Vela)
@pytest.mark.parametrize("case", sorted(RESIZE_1D_5_2), ids=lambda c: "_".join(map(str, c)))
def test_onnx2tf_and_vela_do_as_recorded(case, tmp_path):
    _toolchain()
    from benchmarks.ethos_u_resize1d import measure

    row = measure(*case, str(tmp_path))
    assert "error" not in row, f"{case}: onnx2tf failed: {row.get('error')}"
    exact, on_u55, on_u85 = RESIZE_1D_5_2[case]
    assert row["float_exact"] == row["int8_exact"] == exact, f"{case}: {row}"
    assert (row[U55]["npu"], row[U85]["npu"]) == (on_u55, on_u85), f"{case}: {row[U55]}, {row[U85]}"
    assert row["backend"] == "flatbuffer_direct"
