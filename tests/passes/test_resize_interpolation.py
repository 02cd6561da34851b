"""Resize interpolation (passes/resize/interpolation.py) on its own: the
per-phase kernels reproduce the spec's formulas, checked without onnxruntime."""
from __future__ import annotations

import itertools
from fractions import Fraction
import numpy as np
import pytest
from convrewrite.core.graph import GraphView
from convrewrite.core.rewrite import Code
from passes.resize.interpolation import (AxisResize, Interpolation, axis_kernel, interpolation_matrix,
                                       phase_taps, read_resize, source_coordinate, taps)
from builders import resize_model

PERIODIC = ["half_pixel", "pytorch_half_pixel", "asymmetric", "half_pixel_symmetric", "tf_half_pixel_for_nn"]
NEAREST_MODES = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]


def _spec(model):
    return read_resize(model.graph.node[-1], GraphView(model))


# --- interpolation: the identity, checked without onnxruntime --------------------

def deconv_matrix(kernel, n: int) -> np.ndarray:
    """The [n*s, n] matrix of Pad(edge) -> ConvTranspose(kernel, stride s, pads) on one axis."""
    s, (lo, hi), (begin, _) = kernel.factor, kernel.edge, kernel.pads
    clamp = np.eye(n)[np.clip(np.arange(-lo, n + hi), 0, n - 1)]          # [n + lo + hi, n]
    k = np.asarray(kernel.kernel)
    full = np.zeros(((len(clamp) - 1) * s + len(k), n))
    for i, row in enumerate(clamp):
        full[i * s:i * s + len(k)] += np.outer(k, row)
    return full[begin:begin + n * s]


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("ctm", PERIODIC)
def test_phase_kernels_reproduce_the_interpolation_matrix(mode, ctm):
    """(3) of passes.resize.interpolation: the edge-padded transposed convolution
    equals the spec's matrix for every size, borders included."""
    for nearest, a, s in itertools.product(NEAREST_MODES if mode == "nearest" else ["round_prefer_floor"],
                                           [-0.75, -0.5] if mode == "cubic" else [-0.75], range(2, 6)):
        interp = Interpolation(mode, ctm, nearest, a)
        kernel = axis_kernel(phase_taps(interp, s), s)
        for n in range(1, 7):
            want, _ = interpolation_matrix(interp, AxisResize(2, n, n * s, Fraction(s)), exact=True)
            np.testing.assert_allclose(deconv_matrix(kernel, n), want, atol=1e-12,
                                       err_msg=f"{interp} factor {s} size {n}")


def test_kernels_are_the_textbook_ones():
    """Derived, not typed in: bilinear x2 is the triangle, plain nearest a box."""
    bilinear = axis_kernel(phase_taps(Interpolation("linear"), 2), 2)
    assert bilinear.kernel == (0.25, 0.75, 0.75, 0.25) and bilinear.edge == (1, 1)
    box = axis_kernel(phase_taps(Interpolation("nearest", "asymmetric", "floor"), 4), 4)
    assert box.kernel == (1.0,) * 4 and box.edge == (0, 0) and box.pads == (0, 0)
    cubic = phase_taps(Interpolation("cubic", cubic_a=-0.75), 2)
    assert all(abs(sum(w for _, w in phase) - 1) < 1e-12 for phase in cubic)


@pytest.mark.parametrize("ctm", PERIODIC)
def test_float32_coordinates_pick_the_exact_taps_at_integer_factors(ctm):
    """onnxruntime's float32 coordinates select the same samples as exact
    arithmetic at integer factors (no tie is within rounding), so the phase
    kernels, derived exactly, are what onnxruntime computes."""
    for mode, nearest in [("nearest", m) for m in NEAREST_MODES] + [("cubic", "floor")]:
        interp = Interpolation(mode, ctm, nearest)
        for s, n in itertools.product(range(1, 13), (1, 3, 7, 20)):
            ax = AxisResize(2, n, n * s, Fraction(s))
            for t in range(n * s):
                exact = taps(interp, source_coordinate(interp, t, ax), ax.scale)
                rounded = taps(interp, source_coordinate(interp, t, ax, exact=False), ax.scale)
                assert [i for i, _ in exact] == [i for i, _ in rounded], (interp, s, n, t)
                # weights differ by float32 rounding of a coordinate below 20 (ulp 2e-6)
                assert np.allclose([w for _, w in exact], [w for _, w in rounded], rtol=0, atol=1e-5)


@pytest.mark.parametrize("op,opset,mode", [("Upsample", 7, "nearest"), ("Upsample", 9, "linear"),
                                           ("Resize", 10, "nearest"), ("Resize", 11, "cubic")])
def test_reading_old_opsets(op, opset, mode):
    spec = _spec(resize_model([1, 2, 3, 4], [1, 1, 2, 3], opset=opset, op=op, mode=mode))
    assert [ax.factor for ax in spec.axes] == [1, 1, 2, 3]
    assert [ax.n_out for ax in spec.axes] == [1, 2, 6, 12]
    expected = "asymmetric" if op == "Upsample" or opset == 10 else "half_pixel"
    assert spec.interp.coordinate_mode == expected and spec.interp.mode == mode


def test_reading_axes_and_keep_aspect_ratio_policy():
    spec = _spec(resize_model([1, 2, 2, 3], sizes=[12, 7], opset=18, axes=[3, 2],
                              keep_aspect_ratio_policy="not_smaller", mode="nearest"))
    assert [ax.n_out for ax in spec.axes] == [1, 2, 8, 12]
    assert [ax.scale for ax in spec.axes][2:] == [4, 4]
    # the same with a negative axis: onnxruntime computes [1, 2, 7, 3] there (it ignores the
    # policy), the reference raises, so the node's result is not what any engine checks
    refused = _spec(resize_model([1, 2, 2, 3], sizes=[12, 7], opset=18, axes=[-1, 2],
                                 keep_aspect_ratio_policy="not_smaller", mode="nearest"))
    assert refused.code == Code.SPEC_AMBIGUOUS and "write the axes as [3, 2]" in refused.reason
