"""The ConvTranspose geometry (passes/convtranspose/geometry.py) on its own:
sub-pixel phases and tiles against the operator's definition."""
from __future__ import annotations

import itertools
import numpy as np
from passes.convtranspose.geometry import (border_tiles, conv_transpose_macs, output_geometry, output_size, phase_kernel,
                                  plan_macs, shared_plan, split_plan, split_tiles)


# --- the arithmetic on its own -----------------------------------------------

def scatter_1d(x, w, g):
    """ConvTranspose by its definition: z[i*s + j*d] += x[i] * w[j], y[t] = z[t + head]."""
    z = np.zeros(g.full + g.out + abs(g.head) + 1)
    for i, j in itertools.product(range(g.n), range(g.k)):
        z[i * g.s + j * g.d] += x[i] * w[j]
    return np.array([z[t + g.head] if t + g.head >= 0 else 0.0 for t in range(g.out)])


def run_plan_1d(x, w, plan):
    """Each phase conv in plain numpy (negative pads slice the input), interleaved, cropped."""
    grid = np.zeros(plan.blocks * plan.stride)
    for r, conv in enumerate(plan.phases):
        if conv is None:
            continue
        kern = phase_kernel(w[None, None], [conv])[0, 0]
        xs = np.pad(x, (max(conv.begin, 0), max(conv.end, 0)))[max(-conv.begin, 0): len(x) + max(conv.begin, 0)
                                                                + max(conv.end, 0) - max(-conv.end, 0)]
        span = (conv.size - 1) * conv.dilation + 1
        y = [sum(xs[q + u * conv.dilation] * kern[u] for u in range(conv.size)) for q in range(len(xs) - span + 1)]
        assert len(y) == conv.count <= plan.blocks
        grid[r::plan.stride][:conv.count] = y
    return grid[plan.shift: plan.shift + plan.out]


def test_phase_plans_reproduce_the_definition_in_1d():
    rng = np.random.default_rng(0)
    for n, k, s, d, pb, pe in itertools.product([1, 2, 5], [1, 2, 3, 5], [1, 2, 3, 5], [1, 2, 3], [0, 1, 4], [0, 2]):
        for op in range(s):
            (g,) = output_geometry([n], [k], [s], [d], "NOTSET", [pb, pe], [op])
            if g.out <= 0:
                continue
            x, w = rng.standard_normal(n), rng.standard_normal(k)
            want = scatter_1d(x, w, g)
            for plan in (split_plan(g), shared_plan(g)):
                if all(c is None for c in plan.phases):
                    assert not want.any()
                    continue
                np.testing.assert_allclose(run_plan_1d(x, w, plan), want, atol=1e-12,
                                           err_msg=f"{plan.form} n={n} k={k} s={s} d={d} pads={pb},{pe} op={op}")


def test_output_size_per_spec():
    assert output_size([3, 3], [3, 3], [3, 2], [1, 1], pads=[1, 2, 1, 2]) == [7, 3]
    assert output_size([3, 3], [3, 3], [3, 2], [1, 1], output_padding=[1, 1]) == [10, 8]
    assert output_size([5], [3], [2], [1], auto_pad="SAME_LOWER") == [10]
    assert output_size([5], [3], [2], [1], auto_pad="VALID") == [11]
    assert output_size([5], [3], [2], [2], output_shape=[8]) == [8]
    (g,) = output_geometry([5], [3], [2], [1], "NOTSET", None, None, [8])      # total 3: more at the start
    assert g.head == 2
    (g,) = output_geometry([5], [3], [2], [1], "SAME_UPPER", None, None, [8])  # ... unless SAME_UPPER
    assert g.head == 1


def test_without_border_split_the_uncropped_borders_exceed_the_bound():
    """What border-split is for: the dense phase convs read zero padding where
    the ConvTranspose keeps uncropped borders."""
    cases = {(3, 2, 0, 0): 1.085, (4, 2, 0, 0): 1.129, (7, 1, 0, 0): 1.891}
    for (k, s, p, op), ratio in cases.items():
        geometry = output_geometry([16, 16], [k, k], [s, s], [1, 1], "NOTSET", [p] * 4, [op] * 2)
        before = conv_transpose_macs(1, 1, 1, [16, 16], [k, k])
        dense = min(plan_macs([split_plan(g) for g in geometry], 1, 1, 1),
                    plan_macs([shared_plan(g) for g in geometry], 1, 1, 1))
        assert round(dense / before, 3) == ratio
        assert border_tiles(geometry, int(1.1 * before)).macs_factor() <= 1.1 * before


def test_tiles_reproduce_the_definition_in_1d_and_the_exact_tiling_costs_the_definitions_pairs():
    rng = np.random.default_rng(0)
    for n, k, s, d, pb, pe in itertools.product([1, 3, 6], [1, 3, 5], [1, 2, 3], [1, 2, 3], [0, 2], [0, 3]):
        for op in range(s):
            (g,) = output_geometry([n], [k], [s], [d], "NOTSET", [pb, pe], [op])
            if g.out <= 0:
                continue
            x, w = rng.standard_normal(n), rng.standard_normal(k)
            want = scatter_1d(x, w, g)
            pairs = sum(1 for i in range(n) for j in range(k) if 0 <= i * s + j * d - g.head < g.out)
            exact = border_tiles([g], pairs)
            assert exact is not None and exact.macs_factor() == pairs <= n * k
            for tiles in (exact, split_tiles([g]), border_tiles([g], n * k * 2)):
                np.testing.assert_allclose(run_tiles_1d(x, w, g, tiles), want, atol=1e-12,
                                           err_msg=f"n={n} k={k} s={s} d={d} pads={pb},{pe} op={op}")


def run_tiles_1d(x, w, g, tiles):
    """Each piece a plain numpy correlation, pieces concatenated, phases interleaved, cropped."""
    stride = max(g.s, (g.k - 1) * g.d + 1) if g.n == 1 else g.s  # subpixel's one-input stride
    grid_ = np.zeros(-(-g.out // stride) * stride)
    for r, pieces in enumerate(tiles.pieces):
        values = []
        for piece in pieces:
            if not piece.taps:
                values += [0.0] * piece.count
                continue
            kern = phase_kernel(w[None, None], [piece])[0, 0]
            xs = np.pad(x, (max(piece.begin, 0), max(piece.end, 0)))
            xs = xs[max(-piece.begin, 0): len(xs) - max(-piece.end, 0)]
            span = (piece.size - 1) * piece.dilation + 1
            ys = [sum(xs[q + u * piece.dilation] * kern[u] for u in range(piece.size))
                  for q in range(len(xs) - span + 1)]
            assert len(ys) == piece.count
            values += ys
        grid_[r::stride][:len(values)] = values
    return grid_[:g.out]
