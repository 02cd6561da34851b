"""Loading and saving models: clear one-line errors, atomic writes.

A bad input never produces a traceback, never touches the input file and
never leaves a partial output: the model is written to a temporary file in
the destination folder and renamed over the target only when complete.
"""
from __future__ import annotations

import errno
import mmap
import os
import re
import tempfile
import warnings
from pathlib import Path, PurePosixPath, PureWindowsPath

import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper
from onnx.external_data_helper import load_external_data_for_model

from .errors import TEMPORARY_FOLDER, InputError, retold
from .graph import inference_over_declarations
from .weights import (WEIGHT_STUB_LOCATION, copy_without_initializers, data_bytes, stubbed, weight_stub,
                      weightless_copy)

TWO_GB = (1 << 31) - (1 << 20)  # protobuf's limit, less a margin for the envelope


def file_stamp(path: "str | os.PathLike") -> tuple:
    """What tells a file apart from itself changed or replaced: its device,
    inode, size and modification time (the model file alone, not its
    external data)."""
    s = os.stat(path)
    return s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns


def load_model(path: "str | os.PathLike") -> onnx.ModelProto:
    """Load and check a model (external data included) or raise InputError."""
    return load_and_infer(path)[0]


def load_and_infer(path: "str | os.PathLike") -> tuple:
    """load_model, and the model's shape inference where its check ran it
    (check_and_infer; None where not)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not an ONNX model file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: file is empty")
    try:
        model = _read_model(p)
    except (DecodeError, RuntimeError, ValueError, TypeError) as e:
        raise InputError(f"{p}: not a readable ONNX protobuf ({_short(e)})") from None
    except OSError as e:
        raise InputError(f"{p}: cannot read ({e.strerror or _short(e)})") from None
    _load_external_data(model, p)
    return model, check_and_infer(model, str(p))


# Files at least this large are parsed one weight at a time (_read_weights_apart).
STREAM_LOAD_BYTES = 64 << 20
_GRAPH, _INITIALIZER = 7, 5  # field numbers: ModelProto.graph, GraphProto.initializer


def _read_model(path: Path) -> onnx.ModelProto:
    """onnx.load_model (external data not loaded), a large file parsed one
    weight at a time: protobuf parses a message from bytes it is given whole,
    so onnx.load_model holds the file's bytes and the parsed model at once
    (2x the file).  Here each initializer of the top-level graph is read and
    parsed on its own, everything else in one piece: 1x the file and its
    largest weight.  Anything the reader does not expect (a group, a
    truncated field) gets onnx.load_model, and its error."""
    if path.stat().st_size >= STREAM_LOAD_BYTES:
        try:
            with open(path, "rb") as f:
                return _read_weights_apart(f, path.stat().st_size)
        except (_WireError, DecodeError, RuntimeError, ValueError, TypeError):
            pass
    return onnx.load_model(str(path), load_external_data=False)


class _WireError(Exception):
    """Not the protobuf wire format this reader expects."""


def _read_weights_apart(f, size: int) -> onnx.ModelProto:
    model, rest, graph_rest, graphs = onnx.ModelProto(), [], [], 0
    for number, kind, start, end in _fields(f, 0, size):
        if number != _GRAPH or kind != 2:
            f.seek(start)
            rest.append(f.read(end - start))
            continue
        graphs += 1
        for n, k, s, e in _fields(f, _value_start(f, start), end):
            if n == _INITIALIZER and k == 2:
                f.seek(_value_start(f, s))
                model.graph.initializer.add().ParseFromString(f.read(e - f.tell()))
            else:
                f.seek(s)
                graph_rest.append(f.read(e - s))
    if graphs:
        model.graph.MergeFromString(b"".join(graph_rest))
    model.MergeFromString(b"".join(rest))
    return model


def _fields(f, start: int, end: int):
    """(field number, wire type, start, end) of each field in f[start:end],
    `start` at its tag and `end` past its value."""
    pos = f.seek(start)
    while pos < end:
        tag = _varint(f)
        number, kind = tag >> 3, tag & 7
        if kind == 0:
            _varint(f)
        elif kind == 1:
            f.seek(8, os.SEEK_CUR)
        elif kind == 2:
            f.seek(_varint(f), os.SEEK_CUR)
        elif kind == 5:
            f.seek(4, os.SEEK_CUR)
        else:  # groups (deprecated) and invalid wire types
            raise _WireError(f"wire type {kind}")
        after = f.tell()
        if number == 0 or after > end:
            raise _WireError("truncated")
        yield number, kind, pos, after
        pos = f.seek(after)


def _value_start(f, start: int) -> int:
    """Where the value of the length-delimited field at `start` begins."""
    f.seek(start)
    _varint(f)
    _varint(f)
    return f.tell()


def _varint(f) -> int:
    value, shift = 0, 0
    while True:
        b = f.read(1)
        if not b or shift > 63:
            raise _WireError("bad varint")
        value |= (b[0] & 0x7F) << shift
        if b[0] < 0x80:
            return value
        shift += 7


def _load_external_data(model: onnx.ModelProto, path: Path) -> None:
    """Read the model's external data, each reference checked first.

    onnx refuses a reference that leaves the model's folder, but with an
    exception the caller cannot tell from a bug; checking every reference
    up front turns it into bad input, before a single byte is read."""
    folder = path.parent.absolute()
    external = [t for t in _all_tensors(model) if t.data_location == onnx.TensorProto.EXTERNAL]
    for t in external:
        problem = external_data_problem(t, folder)
        if problem:
            raise InputError(f"{path}: tensor {t.name!r}: {problem}")
    if not external:
        return
    try:
        with warnings.catch_warnings():  # e.g. unknown keys onnx ignores: not worth a multi-line warning
            warnings.simplefilter("ignore")
            load_external_data_for_model(model, str(folder))
    except (onnx.checker.ValidationError, RuntimeError, ValueError) as e:  # a race, or a check of onnx's own
        raise InputError(f"{path}: cannot read the external data ({_short(e)})") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the external data ({e.strerror or _short(e)})") from None


def external_data_problem(t: onnx.TensorProto, folder: Path) -> str | None:
    """Why tensor `t`'s external data reference is unusable from `folder`, or None.

    The data must be a regular file inside the model's folder: no absolute
    path, no `..`, no symbolic link (onnx follows none, and one could lead
    anywhere), and offset / length must lie within the file."""
    info = {e.key: e.value for e in t.external_data}
    location = info.get("location", "")
    if not location:
        return "external data without a location"
    shown = f"external data path {location!r}"
    if os.path.isabs(location) or PureWindowsPath(location).anchor:
        return f"{shown} is absolute; external data must be a relative path inside the model's folder"
    if ".." in PurePosixPath(location.replace("\\", "/")).parts:
        return f"{shown} points outside the model's folder {folder}"
    try:
        target = folder / location
        if os.path.realpath(target) == os.path.realpath(folder):   # "." or "sub/..": the folder itself
            return f"{shown} names the model's folder, not a file"
        inside = os.path.realpath(target).startswith(os.path.join(os.path.realpath(folder), ""))
        if not inside:
            return f"{shown} leads outside the model's folder {folder} through a symbolic link"
        if target.is_symlink():
            return f"{shown} is a symbolic link; external data must be a regular file"
        if not target.exists():
            return f"{shown}: no such file beside the model"
        if not target.is_file():
            return f"{shown} is not a regular file"
        size = target.stat().st_size
    except (OSError, ValueError) as e:  # an unreadable folder, a NUL byte in the name
        return f"{shown} cannot be used ({_short(e)})"
    return _extent_problem(info, shown, size)


def _extent_problem(info: dict, shown: str, size: int) -> str | None:
    """offset and length, when given, are whole numbers that stay within the file."""
    numbers = {}
    for key in ("offset", "length"):
        text = info.get(key)
        if text is None:
            continue
        if not re.fullmatch(r"\s*[0-9]+\s*", text):
            return f"{shown}: {key} {text!r} is not a non-negative whole number"
        numbers[key] = int(text)
    offset, length = numbers.get("offset", 0), numbers.get("length", 0)
    if offset + length > size:
        return f"{shown}: offset {offset} + length {length} is beyond the file's {size} bytes"
    return None


def _all_tensors(model: onnx.ModelProto):
    """Every tensor onnx may load external data for: initializers and tensor
    attributes, in the graph, its subgraphs and the model's functions."""
    yield from _graph_tensors(model.graph)
    for f in model.functions:
        yield from _node_tensors(f.node)


def _graph_tensors(graph: onnx.GraphProto):
    yield from graph.initializer
    yield from _node_tensors(graph.node)


def _node_tensors(nodes):
    for node in nodes:
        for a in node.attribute[:]:   # slices, len() first: see graph._indexes (most attributes hold neither)
            if a.HasField("t"):
                yield a.t
            if len(a.tensors):
                yield from a.tensors[:]
            for g in ([a.g] if a.HasField("g") else []) + (a.graphs[:] if len(a.graphs) else []):
                yield from _graph_tensors(g)


def check_model(model: onnx.ModelProto, label: str = "model") -> None:
    """onnx.checker, with its verdict turned into a one-line InputError."""
    check_and_infer(model, label)


def check_and_infer(model: onnx.ModelProto, label: str = "model") -> onnx.ModelProto | None:
    """check_model; and the model's shape inference (graph.inference_over_declarations),
    where the check of declared types ran it without a complaint, else None."""
    if not model.HasField("graph") or not model.graph.node and not model.graph.output:
        raise InputError(f"{label}: not an ONNX model (no graph)")
    known = onnx.defs.onnx_opset_version()
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and imp.version > known:
            raise InputError(f"{label}: opset {imp.version} is newer than the installed onnx knows "
                             f"(up to {known}); upgrade onnx or export at a lower opset")
    problem = _value_type_problem(model)
    if problem:
        raise InputError(f"{label}: invalid ONNX model ({problem})")
    weightless = weightless_copy(model)
    try:
        _check_weightless(model, weightless)
    except onnx.checker.ValidationError as e:
        raise InputError(f"{label}: invalid ONNX model ({_short(e)})") from None
    except Exception as e:  # unknown opsets and friends surface as other types
        raise InputError(f"{label}: invalid ONNX model ({_short(e)})") from None
    problem, inferred = _declared_types(model, weightless)
    if problem:
        raise InputError(f"{label}: invalid ONNX model ({problem})")
    return inferred


def _value_type_problem(model: onnx.ModelProto) -> str | None:
    """A graph input or output of an element type ONNX does not define (or,
    for an input, of none): onnx.checker lets it through, but no tensor of
    that type can be fed or compared.  Or one without a shape: IR.md requires
    the main graph's inputs and outputs to state their rank, and onnx.checker
    refuses them with a message that names no tensor (onnxruntime runs them)."""
    defined = set(onnx.TensorProto.DataType.values())
    fed = {i.name for i in model.graph.initializer[:]}
    for kind, values in (("input", model.graph.input), ("output", model.graph.output)):
        for vi in values:
            if not vi.type.HasField("tensor_type"):
                continue
            elem = vi.type.tensor_type.elem_type
            if elem not in defined or elem == onnx.TensorProto.UNDEFINED and kind == "input" and vi.name not in fed:
                return f"graph {kind} {vi.name!r} has element type {elem}, which ONNX does not define"
            if not vi.type.tensor_type.HasField("shape"):
                return (f"graph {kind} {vi.name!r} declares no shape; ONNX requires the main graph's inputs "
                        f"and outputs to give their rank: declare its shape (dims may be symbolic names)")
    return _passed_through_type_problem(model)


def _passed_through_type_problem(model: onnx.ModelProto) -> str | None:
    """A graph input (or initializer) listed as a graph output too, declared
    there of another element type.  onnx's inference then reads the value
    in the output's type, and its complaint blamed the first node reading
    it ("output 'y' of node 'up' is declared float but the node computes
    float16") for a declaration that is right."""
    types = {t.name: t.data_type for t in model.graph.initializer[:]}
    types.update((i.name, i.type.tensor_type.elem_type) for i in model.graph.input
                 if i.type.HasField("tensor_type"))
    for out in model.graph.output:
        if not out.type.HasField("tensor_type") or out.name not in types:
            continue
        declared, elem = out.type.tensor_type.elem_type, types[out.name]
        if declared != elem and onnx.TensorProto.UNDEFINED not in (declared, elem):
            return (f"graph output {out.name!r} is the graph's {_source_kind(model, out.name)} of element type "
                    f"{_type_name(elem)} but is declared {_type_name(declared)}; correct that graph output's "
                    "element type")
    return None


def _source_kind(model: onnx.ModelProto, name: str) -> str:
    return "input" if any(i.name == name for i in model.graph.input) else "initializer"


# One complaint of onnx's strict inference: a node's inferred output type
# contradicts the type the model declares for that output (value_info or graph
# output).  "(op_type:Relu, node name: relu): [TypeInferenceError] ...: (1) vs (7)",
# inferred first; an unnamed node has no "node name", and a clash in a subgraph
# is nested in its holder's complaint on the same line ("(op_type:If, node name:
# if): [ShapeInferenceError] Inference error(s): (op_type:Neg, ...): [Type...").
# A node name stops before "): [", so a match never spans two complaints.
_TYPE_CLASH = re.compile(r"\(op_type:([^,)]*)(?:, node name: ((?:(?!\): \[).)*))?\): \[TypeInferenceError\] "
                         r"Inferred elem type differs from existing elem type: \((\d+)\) vs \((\d+)\)")
_HOLDER = re.compile(r"\(op_type:([^,)]*)(?:, node name: ((?:(?!\): \[).)*))?\): \[ShapeInferenceError\] "
                     r"Inference error\(s\): $")


def _declared_types(model: onnx.ModelProto, weightless: onnx.ModelProto) -> tuple:
    """(_declared_type_problem, the model's shape inference or None).  The
    inference the first view of the model runs (graph.inference_over_declarations), strict:
    where it has no complaint, no element type can clash (the clash is one),
    and its result is the view's; only where it has one, the check below
    runs to tell which.  A clash is a complaint about types, with data
    propagation or without, so the verdict is the check's alone."""
    try:
        return None, inference_over_declarations(model, strict=True)
    except Exception:  # noqa: BLE001 -- a complaint, or inference's own failure: the check tells
        return _declared_type_problem(weightless), None


def _declared_type_problem(weightless: onnx.ModelProto) -> str | None:
    """A tensor whose declared element type (value_info, graph output) is not
    the type its node computes: onnx.checker lets it through, onnxruntime
    refuses to load the model, and shape inference, which keeps the
    declaration, stops at that node (every candidate after it would be left
    alone for "unknown rank").  Found by onnx's strict inference on the
    model without its weights; its other complaints (a stale declared shape,
    which onnxruntime overrides) are not errors here.  The first clash is
    the cause: the nodes after it compute from the declared type, and a
    later clash may blame a declaration that is right."""
    try:
        onnx.shape_inference.infer_shapes(weightless, check_type=False, strict_mode=True)
    except onnx.shape_inference.InferenceError as e:
        text = str(e)
        clash = _TYPE_CLASH.search(text)
        if clash is None:
            return _constant_type_problem(text)
        return _clash_text(weightless, clash, _HOLDER.search(text[text.rfind("\n", 0, clash.start()) + 1:
                                                                   clash.start()]))
    except Exception:  # noqa: BLE001 -- inference's other failures are reported where a pass needs shapes
        return None
    return None


# Another complaint of strict inference: a constant input an operator reads as data (Resize's
# scales, Reshape's shape, Pad's pads) is not of the type the operator takes there, which
# onnx.checker lets through and onnxruntime refuses ("Type Error: Type 'tensor(float16)' of
# input parameter (scales) of operator (Resize) ... is invalid").
_PARSE_DATA = re.compile(r"\(op_type:([^,)]*)(?:, node name: ((?:(?!\): \[).)*))?\): \[ShapeInferenceError\] "
                         r"ParseData type mismatch for tensor: (.*?)\. Expected:(\w+) Actual:(\w+)")


def _constant_type_problem(text: str) -> str | None:
    """What the first ParseData complaint of strict inference says is typed wrong, or None."""
    m = _PARSE_DATA.search(text)
    if m is None:
        return None
    op, name, tensor, expected, actual = m.groups()
    node = f"{op} node {name!r}" if name else f"an unnamed {op} node"
    return (f"{node} reads {tensor!r} as {expected}, but it is {actual}; correct that tensor's element type "
            "(onnxruntime refuses the model)")


def _clash_text(model: onnx.ModelProto, clash: re.Match, holder: re.Match | None) -> str:
    """What is declared wrong, where, and what to correct."""
    op, name, computed, declared = clash.group(1), clash.group(2) or "", int(clash.group(3)), int(clash.group(4))
    node = f"node {name!r}" if name else f"an unnamed {op} node"
    if holder is not None:
        node += f" in a subgraph of {holder.group(1)} " + (repr(holder.group(2)) if holder.group(2) else "(unnamed)")
    said = _declarations(model, op, name, declared)
    if len(said) != 1:
        return (f"an output of {node} is declared {_type_name(declared)} but the node computes "
                f"{_type_name(computed)}; correct or remove that value_info entry")
    (tensor, kind), = said
    fix = ("correct or remove that value_info entry" if kind == "value_info entry" else
           f"correct that {kind}'s element type")
    return (f"output {tensor!r} of {node} is declared {_type_name(declared)} but the node computes "
            f"{_type_name(computed)}; {fix}")


def _declarations(model: onnx.ModelProto, op: str, name: str, elem: int) -> list:
    """(tensor, where it is declared) for each output of the nodes `op` named `name`
    (in any graph) declared of element type `elem`."""
    found = []
    for k, g in enumerate(_graphs(model.graph)):
        outputs = {o for n in g.node if n.op_type == op and n.name == name for o in n.output}
        declared = (("value_info entry", g.value_info), ("subgraph output" if k else "graph output", g.output))
        for kind, values in declared:
            found += [(v.name, kind) for v in values if v.name in outputs and v.type.tensor_type.elem_type == elem]
    return list(dict.fromkeys(found))


def _graphs(graph: onnx.GraphProto):
    """`graph` and its nodes' subgraphs, at any depth."""
    yield graph
    for n in graph.node:
        for a in n.attribute[:]:   # a slice: see graph._indexes
            for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else
                      list(a.graphs) if a.type == onnx.AttributeProto.GRAPHS else []):
                yield from _graphs(g)


def _type_name(elem: int) -> str:
    try:
        return onnx.helper.tensor_dtype_to_string(elem).removeprefix("TensorProto.").lower()
    except (ValueError, KeyError):
        return f"element type {elem}"


def _check_weightless(model: onnx.ModelProto, weightless: onnx.ModelProto) -> None:
    """onnx.checker on the model with its weights stubbed out, then on each
    stubbed weight alone.

    The checker serialises the model and parses it again in C++: on the
    whole model that is two more copies of every weight (and impossible
    above 2 GB).  The stubs name an external data file that exists, empty;
    the checker only asks that it be a regular file.  Each weight the stubs
    stand for then goes through the checker's own tensor check (one value
    field, no negative dims, data that fills the shape, external data that
    exists), one at a time.  An error names the temporary folder
    TEMPORARY_FOLDER (its random name would make the message differ from run
    to run): a tensor outside the graph's initializers whose data is
    external and not loaded is looked for there."""
    with tempfile.TemporaryDirectory() as tmp:
        open(os.path.join(tmp, WEIGHT_STUB_LOCATION), "wb").close()
        path = os.path.join(tmp, "model.onnx")
        onnx.save_model(weightless, path)
        with retold({tmp: TEMPORARY_FOLDER}):
            onnx.checker.check_model(path)
    ctx = onnx.checker.C.CheckerContext()
    ctx.ir_version = model.ir_version
    ctx.opset_imports = {i.domain: i.version for i in model.opset_import}
    for t in model.graph.initializer[:]:
        if stubbed(t):
            onnx.checker.check_tensor(t, ctx)


def save_external(model: onnx.ModelProto, path: "str | os.PathLike", data_name: str,
                  min_bytes: int = 1024, data_path: "str | os.PathLike | None" = None) -> None:
    """Save `model` with its large tensors in the file `data_name` beside
    `path`, without touching `model` (onnx.save_model with external data
    moves the tensors out of the model it is given).  `data_path`: write the
    data there instead (a temporary file the caller renames to `data_name`)."""
    out = copy_without_initializers(model)
    folder = os.path.dirname(os.fspath(path)) or "."
    with open(data_path or os.path.join(folder, data_name), "wb") as data:
        for t in model.graph.initializer:
            if data_bytes(t) < min_bytes or t.data_type == onnx.TensorProto.STRING or \
                    t.data_location == onnx.TensorProto.EXTERNAL:
                out.graph.initializer.append(t)
                continue
            raw = t.raw_data if t.HasField("raw_data") else _little_endian_bytes(numpy_helper.to_array(t))
            out.graph.initializer.append(weight_stub(t.name, t.data_type, t.dims, data_name,
                                                     offset=data.tell(), length=len(raw)))
            data.write(raw)
            del raw
    with open(path, "wb") as f:
        f.write(out.SerializeToString())


def check_output_path(output: Path, input_path: Path | None, force: bool) -> None:
    """Refuse before any work is done: missing or read-only folder, or the input itself."""
    output = written_path(output)
    if is_stream(output):
        return
    folder = output.parent if str(output.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"{output}: output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise InputError(f"{output}: output folder {folder} is not writable")
    if output.is_dir():
        raise InputError(f"{output}: is a directory")
    if input_path is not None and output.resolve() == input_path.resolve() and not force:
        raise InputError(f"{output}: output path is the input path; only -o may be, with --force")


def written_path(path: Path) -> Path:
    """The file an output is written to: the path itself, or where it links
    to (the link is kept: outputs are written to a temporary file renamed
    over the file, which would replace the link itself).  A stream
    (is_stream) is written as it is."""
    path = Path(path)
    if is_stream(path):
        return path
    target = Path(os.path.realpath(path)) if os.path.islink(path) else path
    if target.exists() and not target.is_file() and not target.is_dir():
        raise InputError(f"{path}: is not a regular file, a character device or a pipe (a block device?); "
                         "give a file path")
    return target


def is_stream(path: Path) -> bool:
    """A character device or a pipe, or a path into /dev or /proc that leads
    to one or to a file of the shell's redirection (/dev/stdout, /dev/null):
    written in place, as a stream (a rename over it would replace the device
    itself, or a redirection target the shell still writes to)."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return True
    return str(Path(path).absolute()).startswith(("/dev/", "/proc/")) and stat.S_ISREG(mode)


def _temp_beside(path: Path) -> str:
    """A new empty file beside `path`, created with mode 0666 less the umask
    (the kernel applies it, as open() does for a new file; mkstemp's would
    be private, 0600).  Numbered, the first free number, not random: an
    error that names it (a failed rename) says the same in every run."""
    for k in range(100):
        name = path.with_name(f".{path.name}.{k}.tmp")
        try:
            os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return str(name)
    raise FileExistsError(errno.EEXIST, f"no free temporary name beside it (.{path.name}.0.tmp to .99.tmp are taken)",
                          str(path))


def _keep_mode(tmp: str, path: Path) -> None:
    """Before the rename, once written: a file that replaces another keeps its permissions."""
    if path.is_file():
        os.chmod(tmp, path.stat().st_mode & 0o7777)


def check_output_paths(outputs: "dict[str, Path]", input_path: Path, force_option: str = "",
                       model_option: str = "") -> None:
    """Every file a command writes, by the option that names it ({"-o": path,
    "--report": path, ...}), refused before any work is done: each as
    check_output_path (`force_option`'s path may be the input), no file named
    twice (the later write would replace the earlier one), and none the
    input model's external data (the input would read it back damaged;
    --force or not).  `model_option` names the model's output, whose
    external data file (save_model: over 2 GB) must not be the input's
    either, unless that output replaces the input itself (--force)."""
    seen: dict = {}
    for option, path in outputs.items():
        check_output_path(path, input_path, force=option == force_option)
        key = os.path.realpath(path)
        if key in seen:
            raise InputError(f"{path}: given for both {seen[key]} and {option}; each output needs its own path")
        seen[key] = option
    for path in input_external_data(input_path, list(outputs.values())):
        option = seen[os.path.realpath(path)]
        raise InputError(f"{path} ({option}) is external data the input model {input_path} reads; "
                         "writing it would damage the input, choose another path")
    model = outputs.get(model_option)
    if model is None or is_stream(written_path(model)) or written_path(model).resolve() == Path(input_path).resolve():
        return
    for data in input_external_data(input_path, [external_data_path(model)]):
        raise InputError(f"{data} is external data the input model {input_path} reads, and the file {model_option} "
                         f"{model} writes its weights to if the model exceeds 2 GB: that would damage the input, "
                         f"choose another {model_option}")


def external_data_path(path: Path) -> Path:
    """Where save_model writes the weights of a model over 2 GB saved at `path`."""
    p = written_path(Path(path))
    return written_path(p.with_name(p.name + ".data"))


def input_external_data(model_path: Path, candidates: list) -> list:
    """The `candidates` (existing files) that the model at `model_path` reads
    as external data: the same file, by a symlink, a hard link or a name in
    another case (a file system may fold it).  A location is stored verbatim
    in the model, so a file whose name (or whose link target's) does not
    occur in the model's bytes, in either case, and that has no other hard
    link, cannot be one: the model is parsed only when one may be (and then
    without its data)."""
    existing = [Path(c) for c in candidates if os.path.isfile(c)]
    if not existing or not os.path.isfile(model_path) or os.path.getsize(model_path) == 0:
        return []
    try:
        with open(model_path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            existing = [c for c in existing if os.stat(c).st_nlink > 1 or any(
                _occurs_folded(name.encode(), data) for name in (c.name, Path(os.path.realpath(c)).name))]
        if not existing:
            return []
        model = _read_model(Path(model_path))
    except Exception:  # unreadable: loading the model reports it, in its own words
        return []
    folder = Path(model_path).parent.absolute()
    read = {folder / loc for loc in
            ({e.key: e.value for e in t.external_data}.get("location", "") for t in _all_tensors(model)
             if t.data_location == onnx.TensorProto.EXTERNAL) if loc}
    read = [r for r in read if r.is_file()]
    return [c for c in existing if any(os.path.samefile(c, r) for r in read)]   # links and case folded


def _occurs_folded(name: bytes, data, chunk: int = 64 << 20) -> bool:
    """Whether `name` occurs in `data` in any ASCII case (what a bytes regex
    with IGNORECASE finds), a chunk at a time, chunks overlapping by the
    name's length: bytes.lower and find scan a model ~30x faster than the
    regex (~25 ms on a 0.6 MB model, each run whose output file exists)."""
    name, reach = name.lower(), chunk + len(name) - 1   # a match starting in a chunk ends in its reach
    return any(name in data[k:k + reach].lower() for k in range(0, len(data), chunk))


# Models with fewer bytes of weights than this are serialised whole by
# protobuf (the same bytes as weight by weight, in one call: a model of many
# small weights spent seconds in the per-weight writes); larger ones weight
# by weight, so that the model is never held twice (_write_weights_apart).
SAVE_WHOLE_BYTES = 32 << 20


def save_model(model: onnx.ModelProto, path: "str | os.PathLike") -> None:
    """Write atomically; models over 2 GB get their tensors in `<name>.data`.
    Each file is written to a temporary file beside it and renamed over its
    name when complete (the data first, then the model), so a failed write
    leaves the files that were there; only a failure between the two renames
    would leave the old model beside the new data."""
    p = written_path(Path(path))
    if is_stream(p):
        return _save_to_stream(model, p)
    tmp, tmp_data = _temp_beside(p), None
    try:
        inits = model.graph.initializer
        if sum(data_bytes(t) for t in inits) < SAVE_WHOLE_BYTES and \
                not any(t.data_location == onnx.TensorProto.EXTERNAL for t in inits):
            data = model.SerializeToString()
            if len(data) < TWO_GB:
                with open(tmp, "wb") as f:
                    f.write(data)
                _keep_mode(tmp, p)
                os.replace(tmp, p)
                return
            del data
        head = copy_without_initializers(model).SerializeToString()
        sizes = [t.ByteSize() for t in model.graph.initializer]
        if len(head) + sum(sizes) + 16 * len(sizes) < TWO_GB:
            with open(tmp, "wb") as f:
                _write_weights_apart(f, head, model.graph.initializer, sizes)
        else:
            data = external_data_path(p)
            tmp_data = _temp_beside(data)
            save_external(model, tmp, data.name, data_path=tmp_data)
            _keep_mode(tmp_data, data)
            os.replace(tmp_data, data)
        _keep_mode(tmp, p)
        os.replace(tmp, p)
    except BaseException:
        for left in (tmp, tmp_data):
            if left and os.path.exists(left):
                os.unlink(left)
        raise


def _save_to_stream(model: onnx.ModelProto, p: Path) -> None:
    """A model to a stream (-o /dev/stdout, /dev/null): one protobuf, as it
    is written; a model that needs external data (over 2 GB) cannot be one."""
    head = copy_without_initializers(model).SerializeToString()
    sizes = [t.ByteSize() for t in model.graph.initializer]
    if len(head) + sum(sizes) + 16 * len(sizes) >= TWO_GB or \
            any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise InputError(f"{p}: a model with external data (over 2 GB) cannot be written to a stream")
    with open(p, "wb") as f:
        _write_weights_apart(f, head, model.graph.initializer, sizes)


def _write_weights_apart(f, head: bytes, initializers, sizes: list) -> None:
    """The bytes model.SerializeToString() would give, written without them:
    `head` is the model serialised without its initializers, which go in one
    at a time where protobuf puts them (in field order: after the graph's
    nodes and name, before its doc string, inputs and outputs).  Protobuf
    serialises a message whole, into a buffer it grows as it goes, then
    copies it into the bytes returned: up to 2x the model at once."""
    from io import BytesIO

    fields = BytesIO(head)
    graph_seen = False
    for number, kind, start, end in list(_fields(fields, 0, len(head))):
        if number != _GRAPH or kind != 2 or graph_seen:
            f.write(head[start:end])
            continue
        graph_seen = True
        value = _value_start(fields, start)
        graph = head[value:end]
        parts = [(n, s, e) for n, _, s, e in _fields(BytesIO(graph), 0, len(graph))]
        cut = next((s for n, s, _ in parts if n > _INITIALIZER), len(graph))
        tag = _varint_bytes(_INITIALIZER << 3 | 2)
        length = len(graph) + sum(len(tag) + len(_varint_bytes(n)) + n for n in sizes)
        f.write(head[start:value - len(_varint_bytes(len(graph)))] + _varint_bytes(length) + graph[:cut])
        for t, n in zip(initializers, sizes):
            f.write(tag + _varint_bytes(n))
            f.write(t.SerializeToString())
        f.write(graph[cut:])
    if not graph_seen and len(sizes):
        raise ValueError("initializers without a graph")


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _little_endian_bytes(a) -> bytes:
    """raw_data is little-endian whatever the machine."""
    return a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()


def _short(e: Exception) -> str:
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(e).__name__
    return text[:240]


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically: a temporary file beside it, renamed over it."""
    path = written_path(Path(path))
    if is_stream(path):
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return
    tmp = _temp_beside(path)
    try:
        Path(tmp).write_text(text, encoding="utf-8")
        _keep_mode(tmp, path)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
