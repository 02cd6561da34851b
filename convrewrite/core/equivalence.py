"""Numerical equivalence: run models, compare outputs, say by how much.

Tolerance is scaled to the magnitude of the reference output:

    |got - want| <= atol + rtol * scale,   scale = max |want| over finite values

so float32 summation-order noise passes whatever the output's range, and any
real mistake (a wrong tap, a shifted border) fails.  NaN matches NaN, +Inf
matches +Inf, and shapes and dtypes must match exactly.  `max_rel_error` is
max |got - want| / scale.

A reference that is itself unstable (its outputs move beyond that tolerance
when its inputs move by one ulp) is compared by `compare_within_noise`, given
how far the reference's own outputs move (`spread`, measured by the caller).
"""
from __future__ import annotations

import math
import numbers
import os
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np
import onnx
from onnx import helper

from . import model_io
from .errors import TEMPORARY_FOLDER, InputError, retold, without_addresses
from .model_io import save_external
from .weights import as_external, data_bytes, detachable, detached, reattached

# (rtol, atol) per reference dtype.  float16 keeps about 3 decimal digits:
# a few units in the last place at the output's magnitude.
DEFAULT_TOLERANCES = {
    np.dtype(np.float64): (1e-7, 1e-9),
    np.dtype(np.float32): (1e-4, 1e-6),
    np.dtype(np.float16): (5e-3, 1e-4),
}


def default_tolerance(dtype) -> tuple[float, float]:
    return DEFAULT_TOLERANCES.get(np.dtype(dtype), (0.0, 0.0))


@dataclass
class OutputComparison:
    name: str
    equivalent: bool
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    allowed_error: float = 0.0
    message: str = ""
    noise: Optional[float] = None  # the reference's own spread, when the verdict rests on it
    steps: Optional[object] = None  # qdq.Steps, when compared in quantization steps
    fused: bool = False             # compared under onnxruntime's fused int8 execution (core/qdq_check.py)
    tie_noise: Optional[object] = None  # qdq.Steps: the original's own rounding-tie noise, when the verdict rests on it
    compared: Optional[int] = None  # elements compared by value (0: empty, or NaN/Inf in both wherever it is)

    def __bool__(self) -> bool:
        return self.equivalent

    def __str__(self) -> str:
        verdict = "ok" if self.equivalent else "MISMATCH"
        text = (f"{self.name}: {verdict} max_abs={self.max_abs_error:.3g} "
                f"max_rel={self.max_rel_error:.3g} allowed_abs={self.allowed_error:.3g}")
        return text + (f" ({self.message})" if self.message else "")


@dataclass
class Comparison:
    """Truthy when every output is equivalent; carries the errors."""

    outputs: list = field(default_factory=list)

    def __bool__(self) -> bool:
        return all(self.outputs)

    @property
    def max_abs_error(self) -> float:
        return max((o.max_abs_error for o in self.outputs), default=0.0)

    @property
    def max_rel_error(self) -> float:
        return max((o.max_rel_error for o in self.outputs), default=0.0)

    @property
    def compared_nothing(self) -> bool:
        """An agreement that says nothing of the function: no outputs, or
        none with an element compared by value (empty, or NaN/Inf at the
        same places in both)."""
        return all(o.compared == 0 for o in self.outputs)

    def worst(self) -> Optional[OutputComparison]:
        bad = [o for o in self.outputs if not o]
        pool = bad or self.outputs
        return max(pool, key=lambda o: o.max_rel_error, default=None)

    def __str__(self) -> str:
        return "\n".join(str(o) for o in self.outputs)

    def merge(self, other: "Comparison") -> "Comparison":
        return Comparison(self.outputs + other.outputs)


def compare_arrays(name: str, want: np.ndarray, got: np.ndarray,
                   rtol: Optional[float] = None, atol: Optional[float] = None) -> OutputComparison:
    want, got = np.asarray(want), np.asarray(got)
    if want.dtype != got.dtype:
        return OutputComparison(name, False, np.inf, np.inf, 0.0, f"dtype {got.dtype} != {want.dtype}")
    if want.shape != got.shape:
        return OutputComparison(name, False, np.inf, np.inf, 0.0, f"shape {got.shape} != {want.shape}")
    d_rtol, d_atol = default_tolerance(want.dtype)
    rtol = d_rtol if rtol is None else rtol
    atol = d_atol if atol is None else atol
    if want.dtype.kind not in "fc":
        bad = int(np.count_nonzero(want != got))
        return OutputComparison(name, bad == 0, float(bad > 0), float(bad > 0), 0.0,
                                f"{bad} elements differ" if bad else "", compared=int(want.size))
    w, g = want.astype(np.float64), got.astype(np.float64)
    # The common case, no element to set aside, is told by the two maxima the
    # comparison needs anyway: a NaN or Inf in w makes its scale NaN or Inf
    # (max propagates NaN), then one in g (w finite) the largest error; a
    # finite pair means none (or w - g overflowed float64: the path below
    # computes that alike).  w - g only once w is finite: inf - inf would warn.
    scale = float(np.abs(w).max(initial=0.0))   # the method: np.max's dispatch costs as much again
    max_abs = math.nan
    if math.isfinite(scale):
        err = np.abs(w - g)
        max_abs = float(err.max(initial=0.0))
    if math.isfinite(max_abs):
        compared = int(w.size)
    else:
        same_special = (np.isnan(w) & np.isnan(g)) | (np.isinf(w) & (w == g))
        special = ~np.isfinite(w) | ~np.isfinite(g)
        if np.any(special & ~same_special):
            n = int(np.count_nonzero(special & ~same_special))
            return OutputComparison(name, False, np.inf, np.inf, 0.0, f"{n} NaN/Inf elements differ")
        finite = ~special
        scale = float(np.abs(w[finite]).max(initial=0.0))
        err = np.abs(w[finite] - g[finite])
        compared = int(np.count_nonzero(finite))
        max_abs = float(err.max(initial=0.0))
    allowed = atol + rtol * scale
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else np.inf)
    return OutputComparison(name, max_abs <= allowed, max_abs, rel, allowed, compared=compared)


def compare_within_noise(name: str, want: np.ndarray, got: np.ndarray, spread: np.ndarray, factor: float,
                         rtol: Optional[float] = None, atol: Optional[float] = None) -> OutputComparison:
    """`got` against a reference `want` that is unstable.  `spread` holds, per
    element, how far the reference itself moves under changes that leave its
    function the same (inputs moved by one ulp, another summation order);
    np.inf where such a change made it NaN or Inf.

    With `allowed` the ordinary tolerance and `noise` the largest finite
    spread, every element must satisfy

        |got - want| <= factor * (allowed + n),   n = spread  where spread <= allowed
                                                  n = noise   elsewhere

    so an element where the reference is stable keeps (nearly) the ordinary
    tolerance, and only where it is unstable does the output's noise excuse a
    difference.  When noise <= allowed the output is stable and the ordinary
    comparison stands; NaN/Inf, shape and dtype mismatches are never excused.
    """
    base = compare_arrays(name, want, got, rtol, atol)
    if base or not np.isfinite(base.max_abs_error):
        return base
    spread = np.asarray(spread, np.float64)
    finite = np.isfinite(spread)
    noise = float(np.max(spread[finite], initial=0.0))
    allowed = base.allowed_error
    if noise <= allowed:
        return base
    w = np.asarray(want).astype(np.float64)
    err = np.nan_to_num(np.abs(np.asarray(got).astype(np.float64) - w), nan=0.0)  # NaN = NaN matched above
    stable = spread <= allowed
    over = err > factor * (allowed + np.where(stable, spread, noise))
    if not over.any():
        message = f"within {factor:g}x the reference's own noise: it moves by up to {noise:.3g} by itself"
    elif (over & stable).any():
        message = (f"{int(np.count_nonzero(over & stable))} element(s) where the reference is stable differ "
                   f"beyond {factor:g}x its own spread there (it moves by up to {noise:.3g} elsewhere)")
    else:
        message = f"beyond {factor:g}x the reference's own noise ({noise:.3g})"
    return OutputComparison(name, not over.any(), base.max_abs_error, base.max_rel_error,
                            factor * (allowed + noise), message, noise)


def compare_outputs(names: Sequence[str], want: Sequence[np.ndarray], got: Sequence[np.ndarray],
                    rtol=None, atol=None) -> Comparison:
    return Comparison([compare_arrays(n, w, g, rtol, atol) for n, w, g in zip(names, want, got)])


# --- running models -------------------------------------------------------

class RunError(Exception):
    """Neither onnxruntime nor (where allowed) the reference evaluator ran it."""


def run_onnxruntime(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], optimized: bool = False) -> list:
    """Run on onnxruntime's CPU provider.  By default without graph
    optimizations: the check is of the graph as written, and onnxruntime's
    optimizers cost session-creation time that grows faster than linearly
    with the node count (a 45,000-node model: 16 s with basic optimizations,
    7.5 s without).  `optimized` turns all of them on (fusions, the blocked
    NCHWc convolution layout): the same function, other summation orders."""
    if not _through_a_file(model):
        return onnxruntime_session(model.SerializeToString(), optimized).run(None, dict(feeds))
    with _model_file() as path:
        save_external(model, path, "model.data")
        sess = onnxruntime_session(path, optimized)
        out = sess.run(None, dict(feeds))
        del sess  # before its files go
        return out


def run_handed_over(held: list, feeds: Mapping[str, np.ndarray]) -> list:
    """run_onnxruntime(held[0], feeds) for a model handed over: `held` is a
    list holding the only reference to it.  A model that goes to onnxruntime
    as a file (see _through_a_file) is not in memory while onnxruntime runs
    it: its weights are written to the file one at a time, the model freed,
    and after the run read back into a new model (weights.detached), which
    `held` then holds: the same message, in fresh memory, without the
    weights any splice took out.  Whatever happens, `held` holds the model
    again when this returns or raises."""
    if not _through_a_file(held[0]) or not detachable(held[0]):
        return run_onnxruntime(held[0], feeds)
    with _model_file() as path:
        with open(os.path.join(os.path.dirname(path), "model.data"), "w+b") as data:
            model, moved = detached(held, data)
            try:
                with open(path, "wb") as f:
                    f.write(as_external(model, moved, "model.data").SerializeToString())
                sess = onnxruntime_session(path)
                out = sess.run(None, dict(feeds))
                del sess  # before its files go
                return out
            finally:
                held.append(reattached(model, moved, data))


@contextmanager
def _model_file():
    """The path of a model file in a new temporary folder, for a model
    onnxruntime reads as a file (its weights beside it, in model.data).  An
    error raised meanwhile says what onnxruntime says of the model given as
    bytes: its "Load model from <path> failed:" dropped, any other mention
    of the folder TEMPORARY_FOLDER.  The folder's random name would make two
    runs report differently (a rollback's reason, the whole-model check's
    detail), and whether a model goes as a file depends on its weights alone."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        with retold({f"Load model from {path} failed:": "", tmp: TEMPORARY_FOLDER}):
            yield path


class InBackground:
    """run_onnxruntime of a model that goes to onnxruntime as bytes, on a
    thread of its own: onnxruntime releases the GIL while it builds the
    session and runs it, so on a machine with a second core the run costs
    the caller next to nothing while it works on.  The model is serialised
    here, before this returns: the caller may then edit it in place.
    `fused_too` runs it a second time with onnxruntime's optimizations on
    (a quantized model's fused int8 execution).  `outputs()` and `fused()`
    wait, and give that run's outputs or raise what it raised."""

    def __init__(self, model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], fused_too: bool = False):
        self._data, self._feeds = model.SerializeToString(), dict(feeds)
        self._runs = (False, True) if fused_too else (False,)
        self._results: list = []   # per run: (outputs, None) or (None, the exception it raised)
        # Waited for through an Event, not Thread.join: on Python 3.11 a join that Ctrl-C interrupts
        # while the thread runs marks it stopped (bpo-45274's handler releases the thread's own lock),
        # so the join after it returns at once and the thread is left in onnxruntime as Python exits
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._run, name="convrewrite-check", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for optimized in self._runs:
                try:
                    self._results.append((onnxruntime_session(self._data, optimized).run(None, self._feeds), None))
                except Exception as e:  # onnxruntime raises several unrelated types: the caller's to judge
                    self._results.append((None, e))
        finally:
            self._data = None
            self._ended.set()   # its sessions are gone: out of onnxruntime

    def join(self) -> None:
        """Wait for the run to end (interrupted, a later join waits again)."""
        self._ended.wait()
        self._thread.join()   # out of onnxruntime already: a moment

    def done(self) -> bool:
        """Whether the run has ended (outputs() would not wait)."""
        return self._ended.is_set()

    def outputs(self) -> list:
        return self._result(0)

    def fused(self) -> list:
        return self._result(1)

    def _result(self, k: int) -> list:
        self.join()
        out, error = self._results[k]
        if error is not None:
            raise error
        return out


def runs_in_background(model: onnx.ModelProto) -> bool:
    """Whether InBackground may run `model`: one that goes to onnxruntime as
    bytes (weights under RUN_FROM_FILE_BYTES).  A larger one runs in the
    foreground, through a file: onnxruntime's copy of its weights beside the
    passes' work would raise the run's peak memory (README "Memory")."""
    return not _through_a_file(model)


def onnxruntime_session(model: "bytes | str", optimized: bool = False, threads: int = 0):
    """An onnxruntime CPU session of a serialised model or a model file, with
    the options every check uses (see run_onnxruntime).  `threads`: its
    intra-op threads (0: onnxruntime's default, one per core)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # fatal only: a refusal is reported as a RunError, not as stderr noise
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized
                                     else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    # No memory arena: the weights a kernel prepacks (copies into its own layout)
    # come from it, and glibc kept 0.75x of a 206 MiB model's weights of it after
    # the session was gone, adding to every later peak (README "Memory").
    # (Prepacking off frees them too, but changes the kernels: other roundings.)
    opts.enable_cpu_mem_arena = False
    # Idle worker threads block instead of spinning for work: the checks'
    # models are small (their kernels seldom split across threads), and a
    # spinning thread is CPU time taken from the run on a shared machine.
    # Which thread computes what, and so every result, is the same either way.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


# Models with at least this many bytes of weights go to onnxruntime as a file
# with external data rather than as serialised bytes (see _through_a_file).
RUN_FROM_FILE_BYTES = 32 << 20


def _through_a_file(model: onnx.ModelProto) -> bool:
    """Whether onnxruntime gets `model` as a file with its weights external.

    Given bytes, onnxruntime parses its own copy of the model and copies
    every weight again into its tensors: with the bytes themselves (whose
    serialisation needs a growing buffer of its own) that is about 2.5x the
    model's weights beside the model in memory.  From a file with external
    data (written one weight at a time) it maps the weights: about 1x.
    Models above 2 GB, which protobuf cannot serialise, go this way too;
    weights already external (not loaded, resolved from the working folder)
    keep the bytes path below 2 GB."""
    inits = model.graph.initializer
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in inits):
        return model.ByteSize() >= model_io.TWO_GB
    weights = sum(data_bytes(t) for t in inits)
    return weights >= RUN_FROM_FILE_BYTES or model.ByteSize() >= model_io.TWO_GB  # the latter: small weights


# What onnx's reference evaluator may build for one dilated Conv, in elements
# of its largest array.  Its Conv (onnx/reference/ops/op_conv.py) dilates the
# weight to [O, C/G, (k-1)*d+1, ...], pads x to [N, C, n + pads ...], and
# makes im2col columns [C * prod((k-1)*d+1), N * prod(out)] (beside one int64
# index array per spatial axis of those columns' size without N, and a
# transposed copy: measured on float32 2-D Convs at batch 1, its peak memory
# grew by 22 bytes per element counted here, about 6 GB at the bound):
# the kernel and columns grow with the dilation, not with the tensors, and a
# Conv onnxruntime refuses (auto_pad SAME with a dilation) whose taps all read
# padding would take minutes and all the machine's memory at a dilation of a
# few thousand.
REFERENCE_ELEMENTS = 1 << 28


def reference_conv_elements(x_shape: Sequence[int], w_shape: Sequence[int], auto_pad: Optional[str],
                            dilations: Optional[Sequence[int]], strides: Optional[Sequence[int]],
                            pads: Optional[Sequence[int]]) -> int:
    """The elements of the largest array onnx's reference Conv builds for
    these shapes and attributes (see REFERENCE_ELEMENTS)."""
    from ..geometry import conv_pads, conv_output_size, extent

    n, c, sizes = x_shape[0], x_shape[1], list(x_shape[2:])
    kernel = list(w_shape[2:])
    dilations = list(dilations or [1] * len(kernel))
    strides = list(strides or [1] * len(kernel))
    padded = conv_pads(auto_pad or "NOTSET", sizes, kernel, strides, dilations, pads)
    spread = math.prod(extent(k, d) for k, d in zip(kernel, dilations))
    out = math.prod(max(0, conv_output_size(size, k, max(s, 1), d, b, e))
                    for size, k, s, d, (b, e) in zip(sizes, kernel, strides, dilations, padded))
    return max(w_shape[0] * w_shape[1] * spread, n * c * math.prod(size + b + e for size, (b, e) in zip(sizes, padded)),
               n * c * spread * out)


def _bounded_conv():
    """onnx's reference Conv, refusing a dilated Conv whose arrays would
    exceed REFERENCE_ELEMENTS before it builds them.  It judges the shapes it
    is given at run time: a model's declared shapes may be symbolic (a batch
    named N), which a bound read from them would not see."""
    from onnx.reference.ops.op_conv import Conv as ReferenceConv

    class Conv(ReferenceConv):   # the evaluator takes an operator's class by its name (new_ops)
        op_domain = ""

        def _run(self, X, W, B=None, auto_pad=None, dilations=None, group=None, kernel_shape=None, pads=None,
                 strides=None):
            if dilations is not None and any(d > 1 for d in dilations):
                need = reference_conv_elements(X.shape, W.shape, auto_pad, dilations, strides, pads)
                if need > REFERENCE_ELEMENTS:
                    raise RunError(f"Conv '{self.onnx_node.name}' with dilations {list(dilations)} would need "
                                   f"{need:.3g} elements in onnx's reference evaluator (its dilated kernel and "
                                   f"im2col), above {REFERENCE_ELEMENTS:.3g}; with explicit pads instead of "
                                   "auto_pad SAME onnxruntime runs it, or --no-verify skips the check")
            return super()._run(X, W, B, auto_pad=auto_pad, dilations=dilations, group=group,
                                kernel_shape=kernel_shape, pads=pads, strides=strides)

    return Conv


def run_reference(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> list:
    import warnings

    from onnx.reference import ReferenceEvaluator

    with warnings.catch_warnings():  # numpy's overflow warnings say nothing the comparison does not
        warnings.simplefilter("ignore")
        evaluator = ReferenceEvaluator(model, new_ops=[_bounded_conv()])
        return [np.asarray(o) for o in evaluator.run(None, dict(feeds))]


def run_model(model: "onnx.ModelProto | list", feeds: Mapping[str, np.ndarray],
              allow_reference: bool = False) -> tuple[list, str]:
    """Outputs and the engine that produced them ("onnxruntime" or "reference").

    With allow_reference, a model onnxruntime refuses (for example a dilated
    Conv with auto_pad SAME) is run by onnx's reference evaluator instead.
    `model` may be a list holding the only reference to the model, handed
    over (run_handed_over): the list holds the model again after.
    """
    held = model if isinstance(model, list) else None
    try:
        if held is not None:
            return run_handed_over(held, feeds), "onnxruntime"
        return run_onnxruntime(model, feeds), "onnxruntime"
    except Exception as ort_error:  # onnxruntime raises several unrelated types
        model = held[0] if held is not None else model
        if not allow_reference or "alloc" in str(ort_error).lower():  # out of memory: Python would be worse
            raise RunError(f"onnxruntime: {first_line(ort_error)}") from None
        try:
            return run_reference(model, feeds), "reference"
        except Exception as ref_error:
            raise RunError(f"onnxruntime: {first_line(ort_error)}; "
                           f"reference evaluator: {first_line(ref_error)}") from None


def first_line(e: Exception) -> str:
    """The error's first line (at most 300 characters): onnxruntime states
    what failed there, and its later lines are details -- a kernel lookup's
    list of versions ends with a line ")", a scales check's list of allowed
    ranks with its last item.  Without the addresses of Python's default
    reprs (the reference evaluator's "Unable to instantiate class ... with
    run_params={'log': <function ... at 0x7f...>"): they differ from run to run."""
    text = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    return without_addresses(text[0])[:300] if text else type(e).__name__


# --- inputs -----------------------------------------------------------------

def concrete_shape(dims: Sequence, batch: int = 2, symbolic: int = 16) -> tuple:
    """Replace symbolic/unknown dims: the leading one by `batch`, others by `symbolic`."""
    return tuple(d if isinstance(d, int) and d >= 0 else (batch if k == 0 else symbolic)
                 for k, d in enumerate(dims))


def _feedable(elem_type: int) -> bool:
    """random_tensor makes values of this type: numpy's own floats, integers and bool."""
    try:
        dtype = helper.tensor_dtype_to_np_dtype(elem_type)
    except (KeyError, TypeError, ValueError):
        return False
    return dtype.kind in "iub" or dtype.kind == "f" and dtype in (np.float16, np.float32, np.float64)


def random_tensor(rng: np.random.Generator, shape, elem_type: int) -> np.ndarray:
    dtype = helper.tensor_dtype_to_np_dtype(elem_type)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind in "iu":
        return rng.integers(0, 4, size=shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    raise ValueError(f"cannot make random inputs of type {dtype}")


# Random inputs are made up to this many elements per tensor (1 GiB of float32).
MAX_RANDOM_ELEMENTS = 1 << 28


class FeedTooLarge(ValueError):
    """A random input would be larger than MAX_RANDOM_ELEMENTS."""

    def __init__(self, name: str, shape: tuple):
        self.name, self.shape = name, shape
        super().__init__(f"input '{name}' of shape {list(shape)} would need {int(np.prod(shape, dtype=np.float64)):.4g} "
                         f"random values, more than {MAX_RANDOM_ELEMENTS}")


class UnfeedableType(ValueError):
    """A graph input of an element type random values are not made for
    (bfloat16, float8, int4, string, complex), or not a tensor (a sequence,
    a map, an optional).  `advice`: what the user can do -- real inputs
    (--inputs) where an .npz can hold them and onnxruntime takes them
    (strings), else skipping the check (--no-verify)."""

    def __init__(self, name: str, elem_type: int):
        self.name = name
        kind = (f"element type {onnx.TensorProto.DataType.Name(elem_type)}" if elem_type
                else "no tensor type (a sequence, a map or an optional)")
        self.advice = ("give real inputs with --inputs FEEDS.npz" if elem_type == onnx.TensorProto.STRING
                       else "an .npz cannot give onnxruntime such inputs: skip the check with --no-verify")
        super().__init__(f"input '{name}' has {kind}, for which no random values are made")


def random_feeds(inputs: Sequence[onnx.ValueInfoProto], seed: int = 0, batch: int = 2,
                 pinned: Optional[Mapping[str, Mapping[int, int]]] = None) -> dict:
    """Seeded random tensors for graph inputs (symbolic batch -> `batch`,
    a symbolic dim that `pinned` gives -> its size: pinned_dims);
    FeedTooLarge or UnfeedableType before any is made when one would be too
    large or is of a type without random values."""
    shapes = feed_shapes(inputs, batch, pinned)
    return dict(zip([name for name, _, _ in shapes], random_values(shapes, seed)))


def feed_shapes(inputs: Sequence[onnx.ValueInfoProto], batch: int = 2,
                pinned: Optional[Mapping[str, Mapping[int, int]]] = None) -> list:
    """(name, shape, element type) of each input's random tensor, in order:
    random_feeds without the values (FeedTooLarge or UnfeedableType as it)."""
    shapes = {}   # by name: an input named twice is fed once, where it first stands, as its last says
    for vi in inputs:
        tt = vi.type.tensor_type
        if not _feedable(tt.elem_type):
            raise UnfeedableType(vi.name, tt.elem_type)
        sizes = (pinned or {}).get(vi.name, {})
        dims = [d.dim_value if d.HasField("dim_value") else sizes.get(k) for k, d in enumerate(tt.shape.dim)]
        shapes[vi.name] = (concrete_shape(dims, batch), tt.elem_type)
        if math.prod(shapes[vi.name][0]) > MAX_RANDOM_ELEMENTS:   # exact (dims are ints >= 0)
            raise FeedTooLarge(vi.name, shapes[vi.name][0])
    return [(name, shape, elem_type) for name, (shape, elem_type) in shapes.items()]


def random_values(shapes: Sequence[tuple], seed: int) -> list:
    """random_feeds' tensors for feed_shapes' `shapes`, in their order."""
    rng = _generator(seed)
    return [random_tensor(rng, shape, elem_type) for _, shape, elem_type in shapes]


_SEEDED_STATES: dict = {}    # seed -> the PCG64 state seeding with it leaves
_SEEDED_LIMIT = 1 << 12      # seeds kept, at most (~600 bytes each)
_bits = threading.local()    # per thread, one bit generator that takes those states


def _generator(seed) -> np.random.Generator:
    """np.random.default_rng(seed), the same stream, cheaper for a seed seen
    before: seeding (its SeedSequence) costs ~25 us, setting a state kept
    from it ~2, and the local checks of every pass use seeds 0, 1, 2, ...
    The generator is for immediate use: the next call resets its state."""
    state = _SEEDED_STATES.get(seed) if type(seed) is int else None
    if state is None:
        rng = np.random.default_rng(seed)
        if type(seed) is int and len(_SEEDED_STATES) < _SEEDED_LIMIT:
            _SEEDED_STATES[seed] = rng.bit_generator.state
        return rng
    bits = getattr(_bits, "pcg64", None)
    if bits is None:
        bits = _bits.pcg64 = np.random.PCG64(0)
    bits.state = state
    return np.random.Generator(bits)


# Ops that keep their first input's channel axis: a Conv behind them fixes it just the same.
_CHANNELS_KEPT = frozenset({"DequantizeLinear", "QuantizeLinear", "Identity", "Cast", "Relu"})


def pinned_dims(graph: onnx.GraphProto) -> dict:
    """{graph input: {axis: size}} for the symbolic dims a consumer fixes:
    the channel axis (1) of a Conv's input is its weight's dim 1 x group,
    of a ConvTranspose's its weight's dim 0 (also behind DequantizeLinear,
    QuantizeLinear, Identity, Cast or Relu).  Random inputs with any other
    channel count could not run the graph at all."""
    dims = [vi.type.tensor_type.shape.dim for vi in graph.input]
    if not any(len(d) >= 2 and not d[1].HasField("dim_value") for d in dims):
        return {}               # the common case, and the cheap one: every channel dim is a number
    static = _static_shapes(graph)
    consumers: dict = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, i))
    pinned = {}
    for vi in graph.input:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) >= 2 and not dims[1].HasField("dim_value"):
            channels = _channels_read(vi.name, consumers, static)
            if channels:
                pinned[vi.name] = {1: channels}
    return pinned


def _static_shapes(graph: onnx.GraphProto) -> dict:
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    for vi in [*graph.input, *graph.value_info]:
        tt = vi.type.tensor_type
        if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            shapes.setdefault(vi.name, [d.dim_value for d in tt.shape.dim])
    return shapes


def _channels_read(name: str, consumers: dict, static: dict, depth: int = 0) -> Optional[int]:
    """The channel count a Conv / ConvTranspose reading `name` (directly or
    behind _CHANNELS_KEPT ops) requires, or None."""
    for node, i in consumers.get(name, ()):
        if i != 0:
            continue
        if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1:
            w = static.get(node.input[1])
            if w and len(w) >= 2 and w[0] > 0:
                group = next((a.i for a in node.attribute if a.name == "group"), 1) or 1
                return w[1] * group if node.op_type == "Conv" else w[0]
        elif node.op_type in _CHANNELS_KEPT and depth < 8:
            found = _channels_read(node.output[0], consumers, static, depth + 1)
            if found:
                return found
    return None


def nudged(feeds: Mapping[str, np.ndarray], toward: float) -> dict:
    """The feeds with every floating-point element moved by one ulp toward
    `toward` (np.inf or -np.inf); other tensors unchanged."""
    return {k: np.nextafter(v, np.asarray(toward, v.dtype)) if np.asarray(v).dtype.kind == "f" else v
            for k, v in feeds.items()}


def feed_problem(inputs: Sequence[onnx.ValueInfoProto], feeds: Mapping[str, np.ndarray]) -> Optional[str]:
    """Why a given tensor cannot be fed to the graph input of its name (its
    element type, its rank or a static dimension differs), or None.
    onnxruntime refuses such a feed, and the reference evaluator, which the
    checks fall back to, would run the model on it anyway."""
    for vi in inputs:
        if vi.name not in feeds or not vi.type.HasField("tensor_type"):
            continue
        tt, value = vi.type.tensor_type, np.asarray(feeds[vi.name])
        try:
            want = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type))
        except (KeyError, TypeError, ValueError):
            want = None
        strings = want is not None and want.kind == "O" and value.dtype.kind in "OUS"   # an .npz has no object
        if want is not None and value.dtype != want and not strings:
            return f"{vi.name!r} has element type {value.dtype}, the model's input is {want}"
        if not tt.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None for d in tt.shape.dim]
        if value.ndim != len(dims) or any(d is not None and d != n for d, n in zip(dims, value.shape)):
            shown = [d if d is not None else "?" for d in dims]
            return f"{vi.name!r} has shape {list(value.shape)}, the model's input is {shown}"
    return None


def runtime_inputs(model: onnx.ModelProto) -> list:
    """Graph inputs that are not initializers (the ones a caller must feed)."""
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def check_numbers(rtol, atol, seed) -> None:
    """InputError unless the tolerances are finite real numbers >= 0 (a NaN
    or negative one lets no rewrite pass, silently; an infinite one any) and
    the seed a whole number >= 0 (numpy's generators take no other)."""
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is not None and not (isinstance(value, numbers.Real) and not isinstance(value, bool)
                                      and math.isfinite(value) and value >= 0):
            raise InputError(f"{name} must be a finite number >= 0, not {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise InputError(f"seed must be a whole number >= 0, not {seed!r}")


def check_models(reference: onnx.ModelProto, candidate: onnx.ModelProto,
                 feeds: Optional[Mapping[str, np.ndarray]] = None, seed: int = 0,
                 rtol=None, atol=None) -> Comparison:
    """Run both models on the same inputs; compare every output by name.
    Where `reference` is quantized (QDQ), its quantized outputs (a
    QuantizeLinear's integers, a per-tensor DequantizeLinear's floats) are
    compared in quantization steps, as optimize's whole-model check compares
    them: a rounding tie that falls the other way is one step, which a float
    tolerance would call a mismatch."""
    from . import qdq

    check_numbers(rtol, atol, seed)
    if feeds is None:
        try:
            feeds = random_feeds(runtime_inputs(reference), seed, pinned=pinned_dims(reference.graph))
        except UnfeedableType as e:
            raise RunError(f"{e}; {e.advice}") from None
    else:
        problem = feed_problem(runtime_inputs(reference), feeds)
        if problem:
            raise RunError(f"the inputs do not fit the model: {problem}")
    # the second model's inputs too: onnxruntime refuses a feed its declared type or shape does not fit,
    # and the reference evaluator it falls back to would run it anyway (a [1, 4] feed to a [1, 5] input
    # was called equivalent)
    problem = feed_problem(runtime_inputs(candidate), feeds)
    if problem:
        raise RunError(f"the inputs do not fit the second model: {problem}")
    want, _ = run_model(reference, feeds, allow_reference=True)
    got, _ = run_model(candidate, feeds, allow_reference=True)
    names = [o.name for o in reference.graph.output]
    other = [o.name for o in candidate.graph.output]
    if names != other:
        return Comparison([OutputComparison("outputs", False, np.inf, np.inf, 0.0,
                                            f"output names differ: {other} vs {names}")])
    steps = qdq.output_steps(reference) if qdq.has_qdq(reference) else None
    return qdq.compare_outputs(names, want, got, rtol, atol, steps)
