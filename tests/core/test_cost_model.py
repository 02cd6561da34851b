"""The chooser's cost model (convrewrite.core.cost_model): the estimate's
arithmetic, the checks on coefficients, and the committed calibration."""
from __future__ import annotations

import json

import pytest

from convrewrite.core.cost_model import CALIBRATION, COEFFICIENTS, CostModel, from_mapping, onnxruntime_cpu
from convrewrite.core.forms import Cost


def test_the_estimate_is_linear_in_the_figures_with_grouped_macs_apart():
    m = CostModel("m", mac_ns=1.0, grouped_mac_ns=10.0, byte_ns=0.5, node_ns=100.0, streamed_byte_ns=2.0)
    # 200 MACs of which 50 grouped, 40 bytes moved, 30 streamed, 3 nodes: 150 + 500 + 20 + 60 + 300 ns
    assert m.seconds(Cost(macs=200, grouped_macs=50, moved_bytes=40, nodes=3, streamed_bytes=30)) == \
        pytest.approx(1030e-9)
    assert m.seconds(Cost(macs=None, grouped_macs=0, moved_bytes=40, nodes=3, streamed_bytes=0)) is None  # symbolic
    assert m.seconds(Cost(macs=200, grouped_macs=0, moved_bytes=40, nodes=3)) is None   # streamed bytes unknown


ONES = dict.fromkeys(COEFFICIENTS, 1)


@pytest.mark.parametrize("raw,message", [
    ({"mac_ns": 1, "grouped_mac_ns": 1, "byte_ns": 1}, "missing node_ns, streamed_byte_ns"),
    ({"mac_ns": 1, "grouped_mac_ns": 1, "byte_ns": 1, "node_ns": 1}, "missing streamed_byte_ns"),
    ({**ONES, "mac_ns": -1}, "mac_ns must be a number >= 0"),
    ({**ONES, "mac_ns": True}, "mac_ns must be a number >= 0"),
    ({**ONES, "mac_ns": "1"}, "mac_ns must be a number >= 0"),
])
def test_coefficients_are_checked(raw, message):
    with pytest.raises(ValueError, match=message):
        from_mapping("m", raw)


def test_the_committed_calibration_is_the_scripts_and_prices_every_figure():
    with open(CALIBRATION) as f:
        raw = json.load(f)
    assert raw["generated_by"] == "benchmarks/calibrate_cost.py"
    model = onnxruntime_cpu()
    assert model.name == raw["runtime"] and model.name.startswith("onnxruntime ")
    assert all(getattr(model, k) >= 0 for k in COEFFICIENTS) and model.mac_ns > 0
    # what it was calibrated for: a depthwise MAC costs more than a dense one, and a Conv's
    # im2col matrix costs its bytes (a Conv of few output channels is slow per MAC)
    assert model.grouped_mac_ns > model.mac_ns and model.streamed_byte_ns > 0
