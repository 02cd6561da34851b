"""Fuzz the command line with mutated models: absurd and wrong attributes,
weights of the wrong dtype or shape, dangling inputs, odd opsets and input
shapes, flipped and truncated bytes.  Whatever comes in, `optimize` must

  * never report an internal error (exit 4) or print a traceback,
  * say what is wrong in one line on stderr when it exits 2,
  * answer within a few seconds (no loop bounded by an attribute's magnitude),
  * leave no output (partial or not) unless it exits 0, and then a valid one.

Every case is built from a fixed seed, so a failure reproduces: run the one
test id, or build the model with `case_bytes(index)`.
"""
from __future__ import annotations

import io
import os
import random
import signal
import time
from contextlib import redirect_stdout

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import cli

try:
    import resource
except ImportError:  # not POSIX: the module is skipped
    resource = None

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not hasattr(signal, "setitimer") or not hasattr(resource, "RLIMIT_AS"),
                                 reason="needs POSIX timers and address-space limits")]

SEED = 20240614
CASES = 600
TIME_LIMIT = 6.0        # seconds per model, verification included
BIG = (1 << 31) - 1


# --- small valid models ----------------------------------------------------------

def _init(rng, name, shape, dtype=np.float32):
    return numpy_helper.from_array(rng.standard_normal(shape).astype(dtype), name)


def _model(nodes, x_shape, inits, opset=17):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * len(x_shape))  # as inferred
    g = helper.make_graph(nodes, "fuzz", [x], [y], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def convtranspose_2d(rng):
    node = helper.make_node("ConvTranspose", ["x", "W", "B"], ["y"], name="up", strides=[2, 2],
                            pads=[1, 1, 1, 1], output_padding=[1, 1], kernel_shape=[3, 3])
    return _model([node], [1, 2, 5, 5], [_init(rng, "W", (2, 3, 3, 3)), _init(rng, "B", (3,))])


def convtranspose_1d(rng):
    node = helper.make_node("ConvTranspose", ["x", "W"], ["y"], name="up1d", strides=[8], pads=[4, 4])
    return _model([node], [1, 2, 6], [_init(rng, "W", (2, 2, 16))])


def dilated_conv_2d(rng):
    node = helper.make_node("Conv", ["x", "W", "B"], ["y"], name="aspp", dilations=[2, 3], pads=[2, 3, 2, 3],
                            kernel_shape=[3, 3])
    return _model([node], [1, 2, 9, 9], [_init(rng, "W", (3, 2, 3, 3)), _init(rng, "B", (3,))])


def dilated_conv_strided(rng):
    node = helper.make_node("Conv", ["x", "W"], ["y"], name="tcn", dilations=[4], strides=[3], pads=[4, 4])
    return _model([node], [1, 2, 20], [_init(rng, "W", (2, 2, 3))])


def resize_linear(rng):
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    roi = numpy_helper.from_array(np.zeros(0, np.float32), "roi")
    node = helper.make_node("Resize", ["x", "roi", "scales"], ["y"], name="rs", mode="linear",
                            coordinate_transformation_mode="half_pixel")
    return _model([node], [1, 2, 4, 4], [roi, scales], opset=13)


def resize_nearest_sizes(rng):
    sizes = numpy_helper.from_array(np.array([1, 2, 8, 12], np.int64), "sizes")
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="rn", mode="nearest",
                            nearest_mode="floor", coordinate_transformation_mode="asymmetric")
    return _model([node], [1, 2, 4, 4], [sizes], opset=18)


def all_three(rng):
    """Resize -> ConvTranspose -> dilated Conv, as a decoder has them."""
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["r"], name="rs", mode="cubic"),
             helper.make_node("ConvTranspose", ["r", "W1"], ["u"], name="up", strides=[2, 2]),
             helper.make_node("Conv", ["u", "W2"], ["y"], name="dil", dilations=[2, 2], pads=[2, 2, 2, 2])]
    return _model(nodes, [1, 2, 3, 3], [scales, _init(rng, "W1", (2, 2, 2, 2)), _init(rng, "W2", (2, 2, 3, 3))])


BASES = [convtranspose_2d, convtranspose_1d, dilated_conv_2d, dilated_conv_strided, resize_linear,
         resize_nearest_sizes, all_three]


# --- mutations ---------------------------------------------------------------------

# Sane, wrong or absurd; no middling sizes such as 2**20, which are valid,
# just slow to verify (the original model runs in onnxruntime first).
ABSURD_INTS = [0, -1, -7, 1, 2, 7, BIG, -BIG, 1 << 40]
INT_LIST_ATTRS = ["strides", "dilations", "pads", "output_padding", "output_shape", "kernel_shape", "axes"]
STRING_ATTRS = {"auto_pad": ["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID", "BOGUS", ""],
                "mode": ["nearest", "linear", "cubic", "bilinear", ""],
                "coordinate_transformation_mode": ["align_corners", "tf_crop_and_resize", "asymmetric",
                                                   "half_pixel_symmetric", "nonsense"],
                "nearest_mode": ["ceil", "round_prefer_ceil", "legacy", "x"],
                "keep_aspect_ratio_policy": ["not_larger", "not_smaller", "stretch", "?"]}
NUMBER_ATTRS = {"group": [0, -1, 2, 3, BIG], "cubic_coeff_a": [float("nan"), float("inf"), -0.5, 1e30],
                "exclude_outside": [1, 2, -1], "antialias": [1, 5], "extrapolation_value": [float("nan")]}


def _int_list(r: random.Random, rank: int) -> list:
    length = r.choice([rank, rank, 2 * rank, 0, 1, 5, rank + 1])
    if r.random() < 0.5:  # one absurd entry among sane ones
        values = [r.choice([1, 2]) for _ in range(length)]
        if values:
            values[r.randrange(length)] = r.choice(ABSURD_INTS)
        return values
    return [r.choice(ABSURD_INTS) for _ in range(length)]


def _set_attribute(model, r: random.Random):
    node = r.choice(model.graph.node)
    kind = r.random()
    if kind < 0.55:
        name, value = r.choice(INT_LIST_ATTRS), _int_list(r, 2)
    elif kind < 0.75:
        name = r.choice(list(STRING_ATTRS))
        value = r.choice(STRING_ATTRS[name])
    elif kind < 0.9:
        name = r.choice(list(NUMBER_ATTRS))
        value = r.choice(NUMBER_ATTRS[name])
        value = float(value) if name in ("cubic_coeff_a", "extrapolation_value") else int(value)
    else:  # the right name with the wrong type
        name, value = r.choice(INT_LIST_ATTRS + ["group", "mode"]), r.choice([[1.5, 2.5], "two", 3.0])
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    empty = onnx.AttributeProto.INTS if value == [] else None
    node.attribute.extend(kept + [helper.make_attribute(name, value, attr_type=empty)])
    return f"{node.name}.{name}={value!r}"


def _drop_attribute(model, r: random.Random):
    node = r.choice(model.graph.node)
    if not node.attribute:
        return "no attribute to drop"
    victim = r.randrange(len(node.attribute))
    name = node.attribute[victim].name
    del node.attribute[victim]
    return f"{node.name} without {name}"


def _weight_dtype(model, r: random.Random):
    t = r.choice(model.graph.initializer)
    dtype = r.choice([np.float16, np.float64, np.int64, np.int8, np.bool_, np.uint8])
    t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(dtype), t.name))
    return f"{t.name} as {np.dtype(dtype).name}"


def _weight_shape(model, r: random.Random):
    t = r.choice(model.graph.initializer)
    a = numpy_helper.to_array(t)
    choice = r.randrange(5)
    if choice == 0:
        shape = a.shape[:-1] if a.ndim > 1 else (0,)
    elif choice == 1:
        shape = a.shape + (2,)
    elif choice == 2:
        shape = tuple(r.choice([0, 1, 2, 5]) for _ in a.shape)
    elif choice == 3:
        shape = tuple(reversed(a.shape))
    else:  # the dims say one thing, the data another
        t.dims[0] = t.dims[0] + 1 if t.dims else 1
        return f"{t.name} dims {list(t.dims)} for {a.size} values"
    values = np.resize(a, shape) if a.size else np.zeros(shape, a.dtype)
    t.CopyFrom(numpy_helper.from_array(values.astype(a.dtype), t.name))
    return f"{t.name} reshaped to {list(shape)}"


def _dangling_input(model, r: random.Random):
    node = r.choice(model.graph.node)
    k = r.randrange(len(node.input) + 1)
    if k == len(node.input):
        node.input.append(r.choice(["", "nowhere"]))
    else:
        node.input[k] = r.choice(["nowhere", "", "y"])
    return f"{node.name}.input = {list(node.input)}"


def _weight_as_input(model, r: random.Random):
    t = r.choice(model.graph.initializer)
    model.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    if r.random() < 0.5:
        model.graph.initializer.remove(t)
        return f"{t.name} is a graph input"
    return f"{t.name} is an overridable initializer"


def _opset(model, r: random.Random):
    version = r.choice([1, 5, 6, 7, 9, 10, 11, 12, 18, 19, 21, 22, 999])
    model.opset_import[0].version = version
    if r.random() < 0.2:
        model.opset_import.append(helper.make_opsetid("com.example", 1))
    return f"opset {version}"


def _ir_version(model, r: random.Random):
    model.ir_version = r.choice([0, 1, 3, 4, 100])
    return f"ir_version {model.ir_version}"


def _input_shape(model, r: random.Random):
    dims = model.graph.input[0].type.tensor_type.shape.dim
    choice = r.randrange(4)
    if choice == 0 and len(dims) > 0:
        del dims[-1]
        return "input rank - 1"
    if choice == 1:
        dims.add().dim_value = 3
        return "input rank + 1"
    d = dims[r.randrange(len(dims))]
    if choice == 2:
        d.dim_param = r.choice(["N", "H"])
        return f"symbolic dim {d.dim_param}"
    d.dim_value = r.choice([0, 1, 2, 63, BIG])
    return f"input dim {d.dim_value}"


def _resize_values(model, r: random.Random):
    targets = [t for t in model.graph.initializer if t.name in ("scales", "sizes", "roi")]
    if not targets:
        return _set_attribute(model, r)
    t = r.choice(targets)
    a = numpy_helper.to_array(t).copy()
    if a.size == 0 or r.random() < 0.2:
        a = np.array(r.choice([[1, 1, 2], [1, 1, 2, 2, 2], []]), a.dtype if a.size else np.float32)
    elif a.dtype.kind == "f":
        a[r.randrange(a.size)] = r.choice([0.0, -2.0, 1e9, 1e-9, 3e38, 2.5, 1.0 / 3, float("nan"), float("inf")])
    else:
        a[r.randrange(a.size)] = r.choice([0, -3, 1, 5, 1 << 40, BIG])
    t.CopyFrom(numpy_helper.from_array(a, t.name))
    return f"{t.name} = {a.tolist()}"


MUTATIONS = [_set_attribute] * 6 + [_drop_attribute, _weight_dtype, _weight_shape, _dangling_input,
                                    _weight_as_input, _opset, _ir_version, _input_shape] + [_resize_values] * 3


def _corrupt(data: bytes, r: random.Random) -> tuple[bytes, str]:
    if r.random() < 0.5:
        cut = r.randrange(len(data))
        return data[:cut], f"truncated to {cut} bytes"
    b = bytearray(data)
    for _ in range(r.randint(1, 4)):
        b[r.randrange(len(b))] = r.randrange(256)
    return bytes(b), "bytes flipped"


def case_bytes(index: int) -> tuple[bytes, str, list]:
    """The serialized model of case `index`, what was done to it, and the CLI options."""
    r = random.Random(SEED * 1000 + index)
    base = BASES[index % len(BASES)]
    model = base(np.random.default_rng(index))
    steps = [base.__name__]
    for _ in range(r.choice([1, 1, 2, 3])):
        mutation = r.choice(MUTATIONS)
        try:
            steps.append(mutation(model, r))
        except (ValueError, IndexError, OverflowError):  # e.g. a weight an earlier mutation made unreadable
            steps.append(f"{mutation.__name__} not applicable")
    data = model.SerializeToString()
    if r.random() < 0.12:
        data, what = _corrupt(data, r)
        steps.append(what)
    options = ["--no-verify"] if r.random() < 0.2 else []
    return data, "; ".join(steps), options


# --- the run ---------------------------------------------------------------------

MEMORY_HEADROOM = 4 << 30  # bytes of address space a run may add


@pytest.fixture(scope="module", autouse=True)
def bounded_memory():
    """Cap the address space while the fuzz runs.  A mutated model may ask
    for absurd tensors; with the cap the allocation fails at once, the same
    on every machine, instead of paging the machine to death (the driver
    still tries to run such models, in onnxruntime and then in onnx's
    reference evaluator)."""
    if not os.path.exists("/proc/self/statm"):  # no way to tell what is in use: run uncapped
        yield
        return
    with open("/proc/self/statm") as f:
        in_use = int(f.read().split()[0]) * resource.getpagesize()
    previous = resource.getrlimit(resource.RLIMIT_AS)
    cap = in_use + MEMORY_HEADROOM
    if previous[1] != resource.RLIM_INFINITY:
        cap = min(cap, previous[1])
    resource.setrlimit(resource.RLIMIT_AS, (cap, previous[1]))
    yield
    resource.setrlimit(resource.RLIMIT_AS, previous)


class TimeLimit(BaseException):
    """Raised by the alarm; a BaseException so no `except Exception` swallows it."""


def _alarm(signum, frame):
    raise TimeLimit()


def run_cli(argv: list, seconds: float) -> tuple[int, str, float]:
    """cli.main(argv) in-process under a wall-clock limit: (exit code, stdout, seconds)."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    t = time.perf_counter()
    out = io.StringIO()
    try:
        with redirect_stdout(out):
            try:
                code = cli.main(argv)
            except SystemExit as e:  # argparse
                code = e.code if isinstance(e.code, int) else 2
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return code, out.getvalue(), time.perf_counter() - t


# Cases the fuzz finds whose fix belongs in files this change may not touch:
# index -> reason.  Each must still fail (strict), so a fix shows up here.
KNOWN: dict = {}   # case index -> why it is expected to fail (none now)


def _params():
    for i in range(CASES):
        marks = [pytest.mark.xfail(strict=True, reason=KNOWN[i])] if i in KNOWN else []
        yield pytest.param(i, id=f"case{i}", marks=marks)


@pytest.mark.parametrize("index", list(_params()))
def test_mutated_model(index, tmp_path, capfd):
    data, steps, options = case_bytes(index)
    check_contract(data, f"case {index} ({steps})", options, tmp_path, capfd)


def check_contract(data: bytes, what: str, options: list, tmp_path, capfd) -> str:
    """Run optimize on `data` and assert the contract; the printed summary."""
    src, out = tmp_path / "m.onnx", tmp_path / "out.onnx"
    src.write_bytes(data)
    try:
        code, summary, took = run_cli(["optimize", str(src), "-o", str(out), *options], TIME_LIMIT)
    except TimeLimit:
        pytest.fail(f"{what}: no answer within {TIME_LIMIT} s")
    err = capfd.readouterr().err
    where = f"{what}, exit {code}, {took:.1f} s, stderr: {err!r}"
    assert code in (0, 1, 2, 3), where
    assert "Traceback" not in err and "internal error" not in err, where
    bugs = [line.strip() for line in summary.splitlines() if "internal error in" in line]
    assert not bugs, (where, bugs)  # an exception in a pass, which the driver turned into a skip
    if code == 2:
        assert len(err.strip().splitlines()) == 1, where
    assert src.read_bytes() == data, where  # the input is never touched
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ("m.onnx", "out.onnx")]
    assert not leftovers, (where, leftovers)
    if code != 0 or "--dry-run" in options:
        assert not out.exists(), where
        return summary
    onnx.checker.check_model(str(out))
    return summary


# --- crafted cases: the ones the issue names, and what the fuzz found ------------

def _with(base, node_attrs=None, inits=None, x_dims=None):
    """A base model with some attributes, initializer values or input dims replaced."""
    model = base(np.random.default_rng(0))
    node = model.graph.node[-1] if base is not all_three else model.graph.node[1]
    for name, value in (node_attrs or {}).items():
        kept = [a for a in node.attribute if a.name != name]
        del node.attribute[:]
        node.attribute.extend(kept + [helper.make_attribute(name, value)])
    for name, value in (inits or {}).items():
        t = next(t for t in model.graph.initializer if t.name == name)
        t.CopyFrom(numpy_helper.from_array(np.asarray(value, numpy_helper.to_array(t).dtype), name))
    for k, d in (x_dims or {}).items():
        model.graph.input[0].type.tensor_type.shape.dim[k].dim_value = d
    return model


CRAFTED = {
    # name: (model builder, CLI options, a reason the summary must give, or None)
    "convtranspose strides [7, 1048576]": (
        lambda: _with(convtranspose_2d, {"strides": [7, 1048576], "output_padding": [0, 0]}), ["--no-verify"],
        "more than the 268435456 a rewrite is built and checked for"),
    "convtranspose strides [7, 1048576], dry run": (
        lambda: _with(convtranspose_2d, {"strides": [7, 1048576], "output_padding": [0, 0]}), ["--dry-run"],
        "more than the 268435456 a rewrite is built and checked for"),
    "dilated Conv pads 2**31 - 1": (lambda: _with(dilated_conv_2d, {"pads": [BIG] * 4}), [], None),
    "dilated Conv pads 2**31 - 1, no verification": (
        lambda: _with(dilated_conv_2d, {"pads": [BIG] * 4}), ["--no-verify"], None),
    "dilated Conv with five pads": (
        lambda: _with(dilated_conv_2d, {"pads": [2, 3, 2, 3, 1]}), [], "pads=[2, 3, 2, 3, 1] does not have 4 entries"),
    "dilated Conv dilation 2**30, pads 2**31 - 1, stride 3": (
        lambda: _with(dilated_conv_2d, {"pads": [BIG] * 4, "dilations": [1 << 30, 2], "strides": [3, 1]}),
        ["--no-verify"], None),
    "Resize scale 1e9": (lambda: _with(resize_linear, inits={"scales": [1, 1, 1e9, 2]}), [],
                         "more than the 268435456 a rewrite is built and checked for"),
    "Resize sizes 2**40": (lambda: _with(resize_nearest_sizes, inits={"sizes": [1, 2, 1 << 40, 8]}), [],
                           "more than the 268435456 a rewrite is built and checked for"),
    "Resize factor 8192": (lambda: _with(resize_nearest_sizes, inits={"sizes": [1, 2, 4 * 8192, 8]}),
                           ["--no-verify"], "upsampling factor 8192 has more phases than"),
    "graph input of 2**31 - 1 samples": (lambda: _with(dilated_conv_strided, x_dims={2: BIG}), [], None),
    "dilated Conv after a Resize of scale 1e9": (
        lambda: _with(all_three, inits={"scales": [1, 1, 1e9, 2]}), [], None),
    "dilated Conv with one pads entry, for a target": (
        lambda: _with(dilated_conv_strided, {"pads": [BIG]}), ["--target", "generic-npu"], "does not have 2 entries"),
    "dilated Conv with stride 0, for a target": (
        lambda: _with(dilated_conv_strided, {"strides": [0]}), ["--target", "generic-npu"], None),
    "ConvTranspose with group 0, for a target": (
        lambda: _with(convtranspose_1d, {"group": 0}), ["--target", "generic-npu"], None),
}

# Crafted cases whose fix belongs in files this change does not touch.
CRAFTED_KNOWN: dict = {}   # crafted case -> why it is expected to fail (none now)


def _crafted():
    for name in CRAFTED:
        marks = [pytest.mark.xfail(strict=True, reason=CRAFTED_KNOWN[name])] if name in CRAFTED_KNOWN else []
        yield pytest.param(name, id=name.replace(" ", "-"), marks=marks)


@pytest.mark.parametrize("name", list(_crafted()))
def test_crafted_model(name, tmp_path, capfd):
    build, options, reason = CRAFTED[name]
    summary = check_contract(build().SerializeToString(), name, options, tmp_path, capfd)
    if reason is not None:
        assert reason in summary, summary
