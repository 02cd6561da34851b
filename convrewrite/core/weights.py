"""Weight stubs: a tensor's name, type and dims without its data.

Shape inference, onnx.checker and the per-rewrite checks never need a
weight's values, only its dims and type, so they run on copies of the model
whose large weights are stubs (external data in a file that is never read).
The model's own weights are then never copied.
"""
from __future__ import annotations

import sys
from math import prod

import numpy as np
import onnx
from onnx import helper, numpy_helper

WEIGHT_STUB_LOCATION = "weights-not-loaded"  # the external data file a stub names; never read

# Integer initializers are kept up to this size: shape inference reads their
# values (Reshape shapes, Slice starts, ...); it never reads float weights.
SHAPE_DATA_BYTES = 1 << 20
_SHAPE_TYPES = {onnx.TensorProto.INT64, onnx.TensorProto.INT32}


def weightless_copy(model: onnx.ModelProto, min_bytes: int = 1024) -> onnx.ModelProto:
    """The model with each weight (see `stubbed`) replaced by a stub of the
    same dims and type (see weight_stub); everything else is copied as it is."""
    out = copy_without_initializers(model)
    for t in model.graph.initializer[:]:   # a slice: see graph._indexes
        if stubbed(t, min_bytes):
            out.graph.initializer.append(weight_stub(t.name, t.data_type, t.dims))
        else:
            out.graph.initializer.append(t)
    return out


def stubbed(t: onnx.TensorProto, min_bytes: int = 1024) -> bool:
    """Whether weightless_copy stubs this initializer: a float (or other
    non-index) tensor of >= min_bytes, an integer one of >= SHAPE_DATA_BYTES,
    or one whose data is external (not loaded, or not readable from here)."""
    if t.data_location == onnx.TensorProto.EXTERNAL:
        return True
    return data_bytes(t) >= (SHAPE_DATA_BYTES if t.data_type in _SHAPE_TYPES else min_bytes)


def copy_without_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose graph has every field but its initializers.

    Fields are copied one by one, which skips fields this onnx does not
    know (written by a newer one); where there are such fields the whole
    model is copied, unknown fields and all, and the initializers dropped
    from the copy."""
    out = onnx.ModelProto()
    for field, value in model.ListFields():
        if field.name != "graph":
            _copy_field(out, field.name, value)
    out.graph.SetInParent()
    for field, value in model.graph.ListFields():
        if field.name != "initializer":
            _copy_field(out.graph, field.name, value)
    if _has_unknown_fields(model) or _has_unknown_fields(model.graph):
        out.CopyFrom(model)
        del out.graph.initializer[:]
    return out


def _has_unknown_fields(message) -> bool:
    try:
        from google.protobuf import unknown_fields  # protobuf >= 4.22
        return len(unknown_fields.UnknownFieldSet(message)) > 0
    except ImportError:
        return len(message.UnknownFields()) > 0


def _copy_field(message, name: str, value) -> None:
    if hasattr(value, "CopyFrom"):      # a message
        getattr(message, name).CopyFrom(value)
    elif hasattr(value, "extend"):      # a repeated field
        getattr(message, name).extend(value)
    else:                               # a scalar
        setattr(message, name, value)


def weight_stub(name: str, data_type: int, dims, location: str = WEIGHT_STUB_LOCATION,
                **where: int) -> onnx.TensorProto:
    """A tensor with a weight's name, type and dims whose data is external:
    by default in a file that is never read (enough for shape inference),
    else at `location` (with `offset` and `length` given in `where`)."""
    stub = onnx.TensorProto(name=name, data_type=data_type)
    stub.dims.extend(dims)
    stub.data_location = onnx.TensorProto.EXTERNAL
    stub.external_data.add(key="location", value=location)
    for key, value in where.items():
        stub.external_data.add(key=key, value=str(value))
    return stub


_ITEMSIZE: dict = {}  # TensorProto data type -> bytes per element (None: ask ByteSize)


def data_bytes(t: onnx.TensorProto) -> int:
    """The size of a tensor's data from its dims and type (ByteSize would
    serialise the whole tensor to tell)."""
    itemsize = _ITEMSIZE.get(t.data_type, 0)
    if itemsize == 0:
        try:
            itemsize = None if t.data_type == onnx.TensorProto.STRING else \
                helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        except KeyError:  # an undefined type
            itemsize = None
        _ITEMSIZE[t.data_type] = itemsize
    if itemsize is None:
        return t.ByteSize()
    return prod(t.dims[:]) * itemsize   # [:]: one list, not an iteration over the repeated field


# Models with at least this many bytes of weights release memory at the
# peaks of a run (release_memory); for smaller ones it is not worth the time.
RELEASE_BYTES = 32 << 20


def weight_bytes(model: onnx.ModelProto) -> int:
    return sum(data_bytes(t) for t in model.graph.initializer[:])


def release_memory(model_bytes: int = RELEASE_BYTES) -> None:
    """Collect garbage and hand the freed heap back to the system, for a
    model with `model_bytes` of weights (nothing below RELEASE_BYTES).

    Below glibc's mmap threshold, which rises up to 32 MiB as large blocks
    are freed, weights are allocated on the heap, and memory freed there is
    kept by the process: a model's worth of it freed in one pass would add
    to every later peak.  Only the garbage collection where there is no glibc."""
    import gc

    if model_bytes < RELEASE_BYTES:
        return
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


_TRIM: list = []


def _malloc_trim():
    if not _TRIM:
        try:
            import ctypes

            _TRIM.append(ctypes.CDLL("libc.so.6").malloc_trim)
        except (OSError, AttributeError):
            _TRIM.append(None)
    return _TRIM[0]


# Element types whose raw data is the numpy array's own bytes (little-endian).
_RAW_DTYPES = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.DOUBLE: np.float64,
               onnx.TensorProto.FLOAT16: np.float16, onnx.TensorProto.INT8: np.int8,
               onnx.TensorProto.UINT8: np.uint8, onnx.TensorProto.INT16: np.int16,
               onnx.TensorProto.UINT16: np.uint16, onnx.TensorProto.INT32: np.int32,
               onnx.TensorProto.INT64: np.int64, onnx.TensorProto.BOOL: np.bool_}


def to_array(t: onnx.TensorProto) -> np.ndarray:
    """numpy_helper.to_array(t) (read-only), without its overhead for the
    common case: raw data of a plain numpy type on a little-endian machine."""
    dtype = _RAW_DTYPES.get(t.data_type)
    if (dtype is None or sys.byteorder != "little" or t.data_location == onnx.TensorProto.EXTERNAL
            or not t.HasField("raw_data")):
        return numpy_helper.to_array(t)
    return np.frombuffer(t.raw_data, dtype).reshape(t.dims[:])


_RAW_TYPES = {np.dtype(v): k for k, v in _RAW_DTYPES.items()}


def from_array(array: np.ndarray, name: str) -> onnx.TensorProto:
    """numpy_helper.from_array(array, name), the same message, without its
    overhead for the common case: a plain numpy type in the machine's
    (little-endian) byte order."""
    data_type = _RAW_TYPES.get(array.dtype)
    if data_type is None or sys.byteorder != "little" or array.dtype.byteorder == ">":
        return numpy_helper.from_array(array, name)
    t = onnx.TensorProto()
    t.dims.extend(array.shape)
    if name:
        t.name = name
    t.raw_data = array.tobytes()
    t.data_type = data_type
    return t


# --- compaction ------------------------------------------------------------------

# Weights of at least this size are moved out of a model by `detached`; smaller
# ones are copied.
MOVE_BYTES = 64 << 10


def compacted(held: list) -> onnx.ModelProto:
    """The model in `held` (a list holding the only reference to it, which
    is emptied) as a new message in fresh memory: the same fields, the same
    bytes when serialised, without the weights a splice took out, which stay
    allocated as long as the model they were parsed into lives (README
    "Memory", 3.).  At no point more than the old model and one weight."""
    import tempfile

    with tempfile.TemporaryFile() as f:
        model, moved = detached(held, f)
        return reattached(model, moved, f)


class Spill:
    """New weights waiting on disk until their splice: a temporary file, and
    where each weight's data is in it.  `put` keeps a copy of each large
    tensor without its data (the built one is freed with the replacement
    that held it); `filled` gives a model its data back."""

    def __init__(self):
        import tempfile

        self._file = tempfile.TemporaryFile()
        self._where: dict = {}   # name -> (offset, length)

    def put(self, tensors) -> tuple:
        out = []
        for t in tensors:
            if not _movable(t):
                out.append(t)
                continue
            data = t.raw_data
            self._where[t.name] = (self._file.seek(0, 2), len(data))
            self._file.write(data)
            del data
            head = onnx.TensorProto()
            _copy_all_but_data(t, head)
            out.append(head)
        return tuple(out)

    def waiting(self, model: onnx.ModelProto) -> bool:
        """Whether `model` holds a tensor whose data is here."""
        return any(t.name in self._where and not t.HasField("raw_data") for t in model.graph.initializer[:])

    def filled(self, model: onnx.ModelProto) -> onnx.ModelProto:
        """`model` with the data of each of its tensors put here read back into it, one at a time."""
        for t in model.graph.initializer:
            if t.name in self._where and not t.HasField("raw_data"):
                offset, n = self._where[t.name]
                self._file.seek(offset)
                t.raw_data = self._file.read(n)
        return model

    def close(self) -> None:
        self._file.close()


def detached(held: list, f) -> tuple[onnx.ModelProto, list]:
    """The model in `held` (its only reference; the list is emptied) without
    the data of its large weights, which is written to the binary file `f`
    one weight at a time; the old model is freed.  Returns the new model and
    (initializer index, offset, length) of each weight moved out, for
    `reattached` (or for onnxruntime: as_external).  On an error the model is
    given back in `held` as it was."""
    model = held.pop()
    try:
        out = copy_without_initializers(model)
        moved, t = [], None
        for k, t in enumerate(model.graph.initializer):
            if not _movable(t):
                out.graph.initializer.append(t)
                continue
            data = t.raw_data
            moved.append((k, f.tell(), len(data)))
            f.write(data)
            del data
            _copy_all_but_data(t, out.graph.initializer.add())
        f.flush()
    except BaseException:
        held.append(model)
        raise
    bytes_moved = sum(n for _, _, n in moved)
    del model, t
    release_memory(bytes_moved)   # the old model: its arena goes with its last reference
    return out, moved


def reattached(model: onnx.ModelProto, moved: list, f) -> onnx.ModelProto:
    """`model` with the data `detached` moved to `f` read back into it, one weight at a time."""
    for k, offset, n in moved:
        f.seek(offset)
        model.graph.initializer[k].raw_data = f.read(n)
    return model


def as_external(model: onnx.ModelProto, moved: list, location: str) -> onnx.ModelProto:
    """A copy of a detached `model` (small: the moved weights have no data)
    whose moved weights name their data in the file `location`."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for k, offset, n in moved:
        t = out.graph.initializer[k]
        t.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", str(offset)), ("length", str(n))):
            t.external_data.add(key=key, value=value)
    return out


def detachable(model: onnx.ModelProto) -> bool:
    """Whether `detached` moves every large weight of `model` out (each is
    raw data held in the model: none external, none in typed fields)."""
    return all(_movable(t) or data_bytes(t) < MOVE_BYTES for t in model.graph.initializer[:])


def _movable(t: onnx.TensorProto) -> bool:
    return (t.HasField("raw_data") and t.data_location != onnx.TensorProto.EXTERNAL
            and data_bytes(t) >= MOVE_BYTES and not _has_unknown_fields(t))


def _copy_all_but_data(t: onnx.TensorProto, out: onnx.TensorProto) -> None:
    """Every field of `t` but raw_data into `out` (ListFields would read the
    data too: a copy of it)."""
    for field in t.DESCRIPTOR.fields:
        if field.name == "raw_data":
            continue
        repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED
        if repeated and len(getattr(t, field.name)) or not repeated and t.HasField(field.name):
            _copy_field(out, field.name, getattr(t, field.name))
