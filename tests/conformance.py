"""The ONNX conformance cases that ship with the onnx package, shaped the way
exported models have them: every input but the first (weights, bias, scales,
sizes, roi) becomes an initializer."""
from __future__ import annotations

import glob
import os
import warnings
from functools import lru_cache

import numpy as np
import onnx
from onnx import numpy_helper

PYTORCH_CONVERTED = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "pytorch-converted")


@lru_cache(maxsize=1)
def _all_node_cases():
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tuple(collect_testcases())


def with_initializers(model: onnx.ModelProto, values: list, keep: int = 1) -> onnx.ModelProto:
    """Turn graph inputs keep.. into initializers holding `values[keep:]`."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    names = [i.name for i in g.input]
    for name, value in list(zip(names, values))[keep:]:
        g.initializer.append(numpy_helper.from_array(np.asarray(value), name))
    kept = [i for i in g.input if i.name in names[:keep]]
    del g.input[:]
    g.input.extend(kept)
    return m


def node_cases(*substrings: str):
    """(name, model, inputs dict, expected outputs) for node cases whose name
    contains any of `substrings`, first data set of each."""
    for case in _all_node_cases():
        if not any(s in case.name.lower() for s in substrings) or not case.data_sets:
            continue
        ins, outs = case.data_sets[0]
        model = with_initializers(case.model, list(ins))
        first = case.model.graph.input[0].name
        yield case.name, model, {first: np.asarray(ins[0])}, [np.asarray(o) for o in outs]


def _load_pb(path: str) -> np.ndarray:
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def pytorch_converted_cases(*names: str):
    """(name, model, inputs dict, expected outputs) for pytorch-converted tests.
    Those models already hold their weights as initializers."""
    for name in names:
        folder = os.path.join(PYTORCH_CONVERTED, name)
        model = onnx.load(os.path.join(folder, "model.onnx"))
        data = os.path.join(folder, "test_data_set_0")
        ins = [_load_pb(p) for p in sorted(glob.glob(os.path.join(data, "input_*.pb")))]
        outs = [_load_pb(p) for p in sorted(glob.glob(os.path.join(data, "output_*.pb")))]
        init_names = {t.name for t in model.graph.initializer}
        runtime = [i.name for i in model.graph.input if i.name not in init_names]
        yield name, model, dict(zip(runtime, ins)), outs
