"""The chooser's cost model: a lowering's estimated run time from its Cost.

Every form works out its figures before anything is built (core/forms.Cost):
MACs, the part of them in grouped convolutions, bytes moved by data-movement
ops and nodes.  The estimate is linear in them:

    ns = mac_ns * dense MACs + grouped_mac_ns * grouped MACs
         + byte_ns * bytes moved + streamed_byte_ns * bytes streamed + node_ns * nodes

Dense MACs run compute-bound; grouped ones (few input channels per group:
depthwise) memory-bound, several times slower each; data-movement ops read
and write their tensors; a GEMM-based kernel streams its im2col matrix (or
column buffer) whatever its output channels, which is what makes a Conv of
few output channels slow per MAC; every node pays a fixed dispatch cost.  The
coefficients are measured, never typed: `benchmarks/calibrate_cost.py
--write convrewrite/core/cost_model.json` times rewritten models on
onnxruntime's CPU provider and fits them (docs/cost_model.md).  The file is
read when the chooser first needs it, not at import.

The chooser (core/forms.rank) uses the estimate only where a form says the
model decides its place (`Form.estimated`): where no rule with a measured
basis does.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Optional

from .forms import Cost

COEFFICIENTS = ("mac_ns", "grouped_mac_ns", "byte_ns", "node_ns", "streamed_byte_ns")
CALIBRATION = Path(__file__).with_name("cost_model.json")


@dataclass(frozen=True)
class CostModel:
    name: str
    mac_ns: float
    grouped_mac_ns: float
    byte_ns: float
    node_ns: float
    streamed_byte_ns: float

    def seconds(self, cost: Cost) -> Optional[float]:
        """The estimated run time of a replacement of this Cost (None where a figure is unknown)."""
        figures = (cost.macs, cost.moved_bytes, cost.nodes, cost.grouped_macs, cost.streamed_bytes)
        if any(f is None for f in figures):
            return None
        grouped = min(cost.grouped_macs, cost.macs)
        return 1e-9 * (self.mac_ns * (cost.macs - grouped) + self.grouped_mac_ns * grouped
                       + self.byte_ns * cost.moved_bytes + self.streamed_byte_ns * cost.streamed_bytes
                       + self.node_ns * cost.nodes)


def from_mapping(name: str, raw: Mapping) -> CostModel:
    """A CostModel from its coefficients (ValueError naming what is wrong)."""
    missing = [k for k in COEFFICIENTS if k not in raw]
    if missing:
        raise ValueError(f"cost model {name}: missing {', '.join(missing)}")
    values = {}
    for k in COEFFICIENTS:
        v = raw[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise ValueError(f"cost model {name}: {k} must be a number >= 0, not {v!r}")
        values[k] = float(v)
    return CostModel(name, **values)


@lru_cache(maxsize=None)
def onnxruntime_cpu() -> CostModel:
    """The calibrated default: onnxruntime's CPU provider, one thread."""
    with open(CALIBRATION) as f:
        raw = json.load(f)
    return from_mapping(raw.get("runtime", CALIBRATION.name), raw)
