"""Every ONNX nearest Resize mode on the Ethos-U profiles, against onnx2tf and Vela.

onnx2tf 2.6.9 writes every nearest Resize as TFLite's RESIZE_NEAREST_NEIGHBOR,
whatever its nearest_mode: floor(x * in/out) for asymmetric, floor((x + 0.5) *
in/out) (half_pixel_centers) for the half-pixel modes, round(x * (in-1)/(out-1))
with ties up (align_corners) for align_corners. So only some combinations compute
what onnxruntime does, and the profiles keep a nearest Resize exactly where its
combination does and Vela places it on the NPU; elsewhere convrewrite lowers it.

Recorded (benchmarks/ethos_u_nearest.py, the `resize` case of test_vela.py with
the identity as its 1x1 Conv, 4 channels; onnx2tf -oiqt, Vela 5.2.0): per
(coordinate_transformation_mode, nearest_mode, input side, output side):
(exact, all on the NPU of ethos-u55-128, of ethos-u85-256, onnx2tf backend).
exact: LiteRT's reference kernels take every output pixel from the input pixel
onnxruntime takes, for the float32 and the full-integer int8 .tflite alike (they
never differed); the comment gives the share of output pixels that do not.
Backend "tf": flatbuffer_direct wrote a custom ONNX_RESIZE its int8 calibration
could not run, and onnx2tf's tf_converter made the .tflite.

- test_profile_keeps_a_nearest_resize_where_onnx2tf_computes_it_on_the_npu
  (default suite): the profiles' verdict on each recorded case.
- test_onnx2tf_and_vela_do_as_recorded (needs onnx2tf and vela, skipped
  otherwise; about 20 s a case on 2 shared cores):

      /work/venv-vela/bin/python -m pytest -q tests/target/test_vela_nearest.py
"""
from __future__ import annotations

import pytest

from tests.target.test_vela import U55, U85, _toolchain, profile_fits, resize

# (ctm, nearest_mode, in, out): (exact, U55 NPU, U85 NPU, backend)
NEAREST_5_2 = {
    ('asymmetric', 'floor', 8, 16): (True, True, True, 'fb'),
    ('asymmetric', 'floor', 8, 32): (True, True, True, 'fb'),
    ('asymmetric', 'floor', 8, 64): (True, True, True, 'fb'),
    ('asymmetric', 'ceil', 8, 16): (False, True, True, 'tf'),  # 68% off
    ('asymmetric', 'ceil', 8, 32): (False, True, True, 'tf'),  # 88% off
    ('asymmetric', 'ceil', 8, 64): (False, True, True, 'tf'),  # 95% off
    ('asymmetric', 'round_prefer_floor', 8, 16): (True, True, True, 'fb'),
    ('asymmetric', 'round_prefer_floor', 8, 32): (False, True, True, 'fb'),  # 39% off
    ('asymmetric', 'round_prefer_floor', 8, 64): (False, True, True, 'fb'),  # 55% off
    ('asymmetric', 'round_prefer_ceil', 8, 16): (False, True, True, 'tf'),  # 68% off
    ('asymmetric', 'round_prefer_ceil', 8, 32): (False, True, True, 'tf'),  # 68% off
    ('asymmetric', 'round_prefer_ceil', 8, 64): (False, True, True, 'tf'),  # 68% off
    ('half_pixel', 'floor', 8, 16): (False, True, True, 'fb'),  # 68% off
    ('half_pixel', 'floor', 8, 32): (False, True, True, 'fb'),  # 68% off
    ('half_pixel', 'floor', 8, 64): (False, True, True, 'fb'),  # 68% off
    ('half_pixel', 'ceil', 8, 16): (False, True, True, 'tf'),  # 68% off
    ('half_pixel', 'ceil', 8, 32): (False, True, True, 'tf'),  # 68% off
    ('half_pixel', 'ceil', 8, 64): (False, True, True, 'tf'),  # 68% off
    ('half_pixel', 'round_prefer_floor', 8, 16): (True, True, True, 'fb'),
    ('half_pixel', 'round_prefer_floor', 8, 32): (True, True, True, 'fb'),
    ('half_pixel', 'round_prefer_floor', 8, 64): (True, True, True, 'fb'),
    ('half_pixel', 'round_prefer_ceil', 8, 16): (True, True, True, 'fb'),
    ('half_pixel', 'round_prefer_ceil', 8, 32): (True, True, True, 'fb'),
    ('half_pixel', 'round_prefer_ceil', 8, 64): (True, True, True, 'fb'),
    ('pytorch_half_pixel', 'floor', 8, 16): (False, True, True, 'tf'),  # 68% off
    ('pytorch_half_pixel', 'floor', 8, 32): (False, True, True, 'tf'),  # 68% off
    ('pytorch_half_pixel', 'floor', 8, 64): (False, True, True, 'tf'),  # 68% off
    ('pytorch_half_pixel', 'ceil', 8, 16): (False, True, True, 'tf'),  # 68% off
    ('pytorch_half_pixel', 'ceil', 8, 32): (False, True, True, 'tf'),  # 68% off
    ('pytorch_half_pixel', 'ceil', 8, 64): (False, True, True, 'tf'),  # 68% off
    ('pytorch_half_pixel', 'round_prefer_floor', 8, 16): (True, True, True, 'tf'),
    ('pytorch_half_pixel', 'round_prefer_floor', 8, 32): (True, True, True, 'tf'),
    ('pytorch_half_pixel', 'round_prefer_floor', 8, 64): (True, True, True, 'tf'),
    ('pytorch_half_pixel', 'round_prefer_ceil', 8, 16): (True, True, True, 'tf'),
    ('pytorch_half_pixel', 'round_prefer_ceil', 8, 32): (True, True, True, 'tf'),
    ('pytorch_half_pixel', 'round_prefer_ceil', 8, 64): (True, True, True, 'tf'),
    ('tf_half_pixel_for_nn', 'floor', 8, 16): (True, True, True, 'tf'),
    ('tf_half_pixel_for_nn', 'floor', 8, 32): (True, True, True, 'tf'),
    ('tf_half_pixel_for_nn', 'floor', 8, 64): (True, True, True, 'tf'),
    ('tf_half_pixel_for_nn', 'ceil', 8, 16): (False, True, True, 'tf'),  # 98% off
    ('tf_half_pixel_for_nn', 'ceil', 8, 32): (False, True, True, 'tf'),  # 98% off
    ('tf_half_pixel_for_nn', 'ceil', 8, 64): (False, True, True, 'tf'),  # 98% off
    ('tf_half_pixel_for_nn', 'round_prefer_floor', 8, 16): (False, True, True, 'tf'),  # 68% off
    ('tf_half_pixel_for_nn', 'round_prefer_floor', 8, 32): (False, True, True, 'tf'),  # 68% off
    ('tf_half_pixel_for_nn', 'round_prefer_floor', 8, 64): (False, True, True, 'tf'),  # 68% off
    ('tf_half_pixel_for_nn', 'round_prefer_ceil', 8, 16): (False, True, True, 'tf'),  # 68% off
    ('tf_half_pixel_for_nn', 'round_prefer_ceil', 8, 32): (False, True, True, 'tf'),  # 68% off
    ('tf_half_pixel_for_nn', 'round_prefer_ceil', 8, 64): (False, True, True, 'tf'),  # 68% off
    ('half_pixel_symmetric', 'floor', 8, 16): (False, True, True, 'tf'),  # 68% off
    ('half_pixel_symmetric', 'floor', 8, 32): (False, True, True, 'tf'),  # 68% off
    ('half_pixel_symmetric', 'floor', 8, 64): (False, True, True, 'tf'),  # 68% off
    ('half_pixel_symmetric', 'ceil', 8, 16): (False, True, True, 'tf'),  # 68% off
    ('half_pixel_symmetric', 'ceil', 8, 32): (False, True, True, 'tf'),  # 68% off
    ('half_pixel_symmetric', 'ceil', 8, 64): (False, True, True, 'tf'),  # 68% off
    ('half_pixel_symmetric', 'round_prefer_floor', 8, 16): (True, True, True, 'tf'),
    ('half_pixel_symmetric', 'round_prefer_floor', 8, 32): (True, True, True, 'tf'),
    ('half_pixel_symmetric', 'round_prefer_floor', 8, 64): (True, True, True, 'tf'),
    ('half_pixel_symmetric', 'round_prefer_ceil', 8, 16): (True, True, True, 'tf'),
    ('half_pixel_symmetric', 'round_prefer_ceil', 8, 32): (True, True, True, 'tf'),
    ('half_pixel_symmetric', 'round_prefer_ceil', 8, 64): (True, True, True, 'tf'),
    ('align_corners', 'floor', 5, 9): (False, True, True, 'tf'),  # 69% off
    ('align_corners', 'floor', 5, 17): (False, True, True, 'tf'),  # 72% off
    ('align_corners', 'floor', 5, 33): (False, True, True, 'tf'),  # 73% off
    ('align_corners', 'ceil', 5, 9): (True, True, True, 'tf'),
    ('align_corners', 'ceil', 5, 17): (False, True, True, 'tf'),  # 42% off
    ('align_corners', 'ceil', 5, 33): (False, True, True, 'tf'),  # 60% off
    ('align_corners', 'round_prefer_floor', 5, 9): (False, True, True, 'tf'),  # 69% off
    ('align_corners', 'round_prefer_floor', 5, 17): (False, True, True, 'tf'),  # 42% off
    ('align_corners', 'round_prefer_floor', 5, 33): (False, True, True, 'tf'),  # 23% off
    ('align_corners', 'round_prefer_ceil', 5, 9): (True, True, True, 'tf'),
    ('align_corners', 'round_prefer_ceil', 5, 17): (True, True, True, 'tf'),
    ('align_corners', 'round_prefer_ceil', 5, 33): (True, True, True, 'tf'),
    ('align_corners', 'floor', 8, 16): (False, False, True, 'tf'),  # 68% off
    ('align_corners', 'ceil', 8, 16): (False, False, True, 'tf'),  # 68% off
    ('align_corners', 'round_prefer_floor', 8, 16): (True, False, True, 'tf'),
    ('align_corners', 'round_prefer_ceil', 8, 16): (True, False, True, 'tf'),
}
# the ratios only the U85 takes, for the combinations exact at x2/x4/x8 (`benchmarks/ethos_u_nearest.py --other-ratios`)
NEAREST_5_2_OTHER_RATIOS = {
    ('asymmetric', 'floor', 2, 34): (True, False, True, 'fb'),
    ('asymmetric', 'floor', 8, 12): (True, False, True, 'fb'),
    ('asymmetric', 'floor', 8, 24): (True, False, True, 'fb'),
    ('asymmetric', 'floor', 8, 4): (True, False, True, 'fb'),
    ('half_pixel', 'round_prefer_ceil', 2, 34): (True, False, True, 'fb'),
    ('half_pixel', 'round_prefer_ceil', 8, 12): (True, False, True, 'fb'),
    ('half_pixel', 'round_prefer_ceil', 8, 24): (True, False, True, 'fb'),
    ('half_pixel', 'round_prefer_ceil', 8, 4): (True, False, True, 'fb'),
    ('half_pixel', 'round_prefer_floor', 2, 34): (True, False, True, 'fb'),
    ('half_pixel', 'round_prefer_floor', 8, 12): (False, False, True, 'fb'),  # 56% off
    ('half_pixel', 'round_prefer_floor', 8, 24): (True, False, True, 'fb'),
    ('half_pixel', 'round_prefer_floor', 8, 4): (False, False, True, 'fb'),  # 100% off
    ('pytorch_half_pixel', 'round_prefer_ceil', 2, 34): (True, False, True, 'tf'),
    ('pytorch_half_pixel', 'round_prefer_ceil', 8, 12): (True, False, True, 'tf'),
    ('pytorch_half_pixel', 'round_prefer_ceil', 8, 24): (True, False, True, 'tf'),
    ('pytorch_half_pixel', 'round_prefer_ceil', 8, 4): (True, False, True, 'tf'),
    ('pytorch_half_pixel', 'round_prefer_floor', 2, 34): (True, False, True, 'tf'),
    ('pytorch_half_pixel', 'round_prefer_floor', 8, 12): (False, False, True, 'tf'),  # 56% off
    ('pytorch_half_pixel', 'round_prefer_floor', 8, 24): (True, False, True, 'tf'),
    ('pytorch_half_pixel', 'round_prefer_floor', 8, 4): (False, False, True, 'tf'),  # 100% off
    ('tf_half_pixel_for_nn', 'floor', 2, 34): (True, False, True, 'tf'),
    ('tf_half_pixel_for_nn', 'floor', 8, 12): (True, False, True, 'tf'),
    ('tf_half_pixel_for_nn', 'floor', 8, 24): (True, False, True, 'tf'),
    ('tf_half_pixel_for_nn', 'floor', 8, 4): (True, False, True, 'tf'),
}
RECORDED = {**NEAREST_5_2, **NEAREST_5_2_OTHER_RATIOS}
# Exact and on the NPU, but not claimed, and why.
NOT_CLAIMED = {
    ("align_corners", "round_prefer_floor", 8, 16): {U85: "(OFM-1)/(IFM-1) = 15/7: corner_factors are integers"},
    ("align_corners", "round_prefer_ceil", 8, 16): {U85: "(OFM-1)/(IFM-1) = 15/7: corner_factors are integers"},
}


def model(ctm, nearest, n, m):
    return resize("nearest", ctm, size=m, nearest=nearest, h=n, opset=19 if ctm == "half_pixel_symmetric" else 17)


@pytest.mark.parametrize("accelerator", [U55, U85])
@pytest.mark.parametrize("case", sorted(RECORDED), ids=lambda c: "_".join(map(str, c)))
def test_profile_keeps_a_nearest_resize_where_onnx2tf_computes_it_on_the_npu(case, accelerator):
    exact, on_u55, on_u85, _ = RECORDED[case]
    on_npu = {U55: on_u55, U85: on_u85}[accelerator]
    why = NOT_CLAIMED.get(case, {}).get(accelerator)
    want = exact and on_npu and why is None
    assert profile_fits(model(*case), accelerator) == want, (
        f"{case} on {accelerator}: onnx2tf's values {'exact' if exact else 'not exact'}, Vela placed it "
        f"{'all on the NPU' if on_npu else 'partly on the CPU'}" + (f" (not claimed: {why})" if why else ""))


@pytest.mark.slow   # about 20 s a case on 2 shared cores (skipped without onnx2tf and Vela)
@pytest.mark.parametrize("case", sorted(RECORDED), ids=lambda c: "_".join(map(str, c)))
def test_onnx2tf_and_vela_do_as_recorded(case, tmp_path):
    _toolchain()
    from benchmarks.ethos_u_nearest import measure

    row = measure(*case, str(tmp_path))
    assert "error" not in row, f"{case}: onnx2tf failed: {row.get('error')}"
    exact, on_u55, on_u85, backend = RECORDED[case]
    assert row["float_exact"] == row["int8_exact"] == exact, (
        f"{case}: float {row['float_exact']}, int8 {row['int8_exact']}; rows taken "
        f"{row['float_rows']}, onnxruntime {row['onnxruntime_rows']}")
    assert (row[U55]["npu"], row[U85]["npu"]) == (on_u55, on_u85), f"{case}: {row[U55]}, {row[U85]}"
    assert row["backend"] == {"fb": "flatbuffer_direct", "tf": "tf_converter"}[backend]
