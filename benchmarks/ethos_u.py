"""A real accelerator compiler: ONNX -> onnx2tf int8 -> Arm Vela (not a test).

For every sample model in models/ (or the models given on the command line):

1. the ORIGINAL model, and the model rewritten by convrewrite with
   `--target arm-ethos-u55` and with `--target arm-ethos-u85`;
2. each converted by onnx2tf (its default backend) to a full-integer int8
   .tflite (`-oiqt`), calibrated on seeded random data in [0, 1) made for every
   graph input in onnx2tf's channel-last layout (no download, no sample images);
3. each compiled by Vela: the original for both accelerators, a rewritten model
   for the accelerator of its target (`ethos-u55-128` / `ethos-u85-256`, Vela's
   default system configuration and memory mode for each);
4. Vela's summary read back: NPU and CPU operators (the CPU ones named by their
   TFLite operator, read from Vela's output .tflite, where every operator Vela
   did not place on the NPU stays as it was), estimated inference time, SRAM and
   off-chip memory (flash for the U55's default system, DRAM for the U85's);
5. a Markdown table, printed, and with --update-doc written between the markers
   of docs/ethos_u.md; with --update-readme the README's summary (one line per
   model, both targets) between its markers (benchmarks/ethos_u_rows.py makes both).

`--real DIR` takes every DIR/*.onnx instead (the real exports of
benchmarks/export_real.py, benchmarks/real/ by default) and writes its table
between the second pair of markers ("REAL TABLES"). A rewritten model whose
graph is the original's (nothing rewritten) is not converted again: its row
reuses the original's compile for that accelerator ("left alone"). `--timeout`
bounds each onnx2tf conversion; `--targets` restricts the run to one target;
`--json FILE` appends every model's rows to FILE as they finish, `--from-json
FILE...` makes the tables from such files without running anything (a long run
may go model by model).

The rows the tables are made from are committed, benchmarks/results/ethos_u_samples.jsonl
and ethos_u_real.jsonl. Each row records the digest of the original and of the rewritten
graph it compiled and the convrewrite commit; `--from-json FILE --stale` rewrites every
row's model again (convrewrite only, seconds) and lists the rows whose graph is no longer
the one compiled: compile those again (`--targets`, `--json`), replace their lines, and
make the tables again. `--from-json FILE --recount` makes each current row's check-target
counts again (convrewrite only: the nodes `check-target` reports, a node breaking two rules
once) and writes them back to FILE:

    python benchmarks/ethos_u.py --from-json benchmarks/results/ethos_u_samples.jsonl --stale
    python benchmarks/ethos_u.py --from-json benchmarks/results/ethos_u_samples.jsonl \\
        --update-doc docs/ethos_u.md --update-readme README.md
    python benchmarks/ethos_u.py --real --from-json benchmarks/results/ethos_u_real.jsonl \\
        --update-doc docs/ethos_u.md --update-readme README.md

"Never worse" (issue 15): with the arm-ethos-u55 target, no rewritten model may
have more CPU operators than the original, and at an equal count its estimated
time may be at most 5 % above the original's. Rows that break it are marked.

It needs onnx2tf, TensorFlow and ethos-u-vela, so it is not part of the test
suite or CI:

    python3.12 -m venv /work/venv-vela
    /work/venv-vela/bin/pip install -r benchmarks/requirements-ethos-u.txt
    /work/venv-vela/bin/python benchmarks/ethos_u.py --update-doc docs/ethos_u.md
    /work/venv-vela/bin/python benchmarks/ethos_u.py --real benchmarks/real --update-doc docs/ethos_u.md

The functions here (convert_int8, run_vela, compile_onnx) are also used by
tests/target/test_vela.py.
"""
from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from typing import Optional

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks.ethos_u_rows import (ACCELERATORS, DOC_BEGIN, DOC_END, README_BEGIN, README_END,  # noqa: E402
                                     README_REAL_BEGIN, README_REAL_END, REAL_BEGIN, REAL_END, Row,
                                     VelaResult, never_worse_summary, provenance, summary_table, table,
                                     update_doc)

# onnx2tf's backends: its default first; TensorFlow's converter where the first fails.
BACKENDS = ("flatbuffer_direct", "tf_converter")
CALIBRATION_SAMPLES = 8
CONVERT_TIMEOUT = 900
VELA_TIMEOUT = 900
SEED = 0
REAL_DIR = os.path.join(ROOT, "benchmarks", "real")


# --- tools ----------------------------------------------------------------------

def tool(name: str) -> Optional[str]:
    """The command `name` of this interpreter's environment, else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    return here if os.path.exists(here) else shutil.which(name)


def tools_missing() -> str:
    """Why the toolchain cannot run here ("" when it can)."""
    missing = [n for n in ("onnx2tf", "vela") if tool(n) is None]
    return f"not installed: {', '.join(missing)} (pip install -r benchmarks/requirements-ethos-u.txt)" if missing else ""


def _env() -> dict:
    # onnx2tf runs the `onnxsim` command of its own environment: put it on PATH.
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return dict(os.environ, PATH=path, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")


# --- onnx2tf, full-integer int8 ---------------------------------------------------

def _input_shapes(onnx_path: str) -> list:
    import onnx

    model = onnx.load(onnx_path, load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    out = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        out.append((vi.name, dims, vi.type.tensor_type.elem_type))
    return out


def calibration_args(onnx_path: str, work: str) -> tuple[list, bool]:
    """onnx2tf's -cind arguments: seeded random data in [0, 1) for every input,
    channel-last (N, spatial..., C) as onnx2tf feeds it, mean 0 and std 1; and
    whether a batch dimension is symbolic (then fixed to 1 with -b 1)."""
    rng = np.random.default_rng(SEED)
    args, symbolic = [], False
    for name, dims, _ in _input_shapes(onnx_path):
        symbolic |= bool(dims) and dims[0] is None
        dims = [1 if d is None else d for d in dims]
        shape = [CALIBRATION_SAMPLES] + (dims[2:] + [dims[1]] if len(dims) >= 3 else dims[1:])
        path = os.path.join(work, re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".calib.npy")
        np.save(path, rng.random(shape, dtype=np.float32))
        unit = "[" * len(shape) + "{}" + "]" * len(shape)
        args += ["-cind", name, path, unit.format("0.0"), unit.format("1.0")]
    return args, symbolic


def convert_int8(onnx_path: str, work: str, backend: str = BACKENDS[0]) -> tuple[Optional[str], str, float]:
    """onnx2tf -oiqt in a child process; returns (full-integer .tflite or None, log path, seconds)."""
    os.makedirs(work, exist_ok=True)
    out_dir = os.path.join(work, f"tflite-{backend}")
    log = os.path.join(work, f"onnx2tf-{backend}.log")
    cind, symbolic = calibration_args(onnx_path, work)
    cmd = [tool("onnx2tf") or "onnx2tf", "-i", os.path.abspath(onnx_path), "-o", out_dir, "-oiqt",
           "-tb", backend] + cind
    if symbolic:
        cmd += ["-b", "1"]
    t = time.perf_counter()
    with open(log, "w") as f:
        f.write(" ".join(cmd) + "\n")
        f.flush()
        try:
            subprocess.run(cmd, cwd=work, env=_env(), stdout=f, stderr=subprocess.STDOUT, timeout=CONVERT_TIMEOUT)
        except subprocess.TimeoutExpired:
            f.write(f"\nethos_u: onnx2tf did not finish within {CONVERT_TIMEOUT} s\n")
    seconds = time.perf_counter() - t
    found = sorted(glob.glob(os.path.join(out_dir, "*_full_integer_quant.tflite")))
    return (found[0] if found else None), log, seconds


def onnx2tf_error(log: str) -> str:
    """The last error line of an onnx2tf log, without colour codes."""
    try:
        text = open(log, errors="replace").read()
    except OSError:
        return "no log"
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", l).strip() for l in text.splitlines()]
    timeout = [l for l in lines if l.startswith("ethos_u: onnx2tf did not finish")]
    if timeout:
        return timeout[-1][len("ethos_u: "):]
    # the exception itself rather than flatbuffer_direct's wrapper ("fast path failed")
    raised = [i for i, l in enumerate(lines) if re.match(r"[\w.]*(Error|Exception): ", l)
              and "fast path failed" not in l]
    if raised:
        i = raised[-1]
        msg = re.sub(r"^[\w]+\.(?:[\w]+\.)*(?=\w+(Error|Exception): )", "", lines[i])
        if msg.endswith("(type TFOpLambda)."):
            msg += " " + next((l for l in lines[i + 1:] if l), "")
        return msg[:240]
    errs = [l for l in lines if re.search(r"Error|ERROR|error:", l)]
    return (errs[-1] if errs else (lines[-1] if lines else "no output"))[:200]


# --- Vela ------------------------------------------------------------------------

def tflite_operators(path: str) -> list:
    """The operator names of a .tflite, in order (CUSTOM:<code> for custom ones)."""
    from ai_edge_litert import schema_py_generated as schema

    with open(path, "rb") as f:
        model = schema.ModelT.InitFromPackedBuf(f.read(), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    out = []
    for sg in model.subgraphs:
        for op in sg.operators:
            code = model.operatorCodes[op.opcodeIndex]
            name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
            if name == "CUSTOM" and code.customCode:
                name = f"CUSTOM:{code.customCode.decode()}"
            out.append(name)
    return out


def cpu_reasons(vela_output: str) -> list:
    """Vela's warnings for the operators it does not place on the NPU, one line each:
    "OPERATOR 'ofm': reason" (the first line of Vela's "Reason:")."""
    out = []
    for m in re.finditer(r"Warning \(supported operators\) operator: (\w+), ofm: '([^']*)'\s*\nReason: ([^\n]*)",
                         vela_output):
        out.append(f"{m.group(1)} '{m.group(2)}': {m.group(3).strip()}")
    return out


def run_vela(tflite: str, accelerator: str, work: str) -> VelaResult:
    """Compile with Vela for `accelerator`; parse its summary and CSV."""
    res = VelaResult(accelerator)
    out_dir = os.path.join(work, f"vela-{accelerator}")
    cmd = [tool("vela") or "vela", tflite, "--accelerator-config", accelerator, "--output-dir", out_dir]
    try:
        p = subprocess.run(cmd, cwd=work, env=_env(), capture_output=True, text=True, timeout=VELA_TIMEOUT)
    except subprocess.TimeoutExpired:
        res.error = f"vela did not finish within {VELA_TIMEOUT} s"
        return res
    with open(os.path.join(work, f"vela-{accelerator}.log"), "w") as f:
        f.write(p.stdout + p.stderr)
    cpu = re.search(r"CPU operators = (\d+)", p.stdout)
    npu = re.search(r"NPU operators = (\d+)", p.stdout)
    csvs = glob.glob(os.path.join(out_dir, "*_summary_*.csv"))
    if p.returncode != 0 or not (cpu and npu and csvs):
        # the exception Vela raised, else its last line that is not a warning (stdout holds the
        # warnings about operators left to the CPU, whose "Reason" lines are not the failure)
        raised = [l for l in p.stderr.splitlines() if re.match(r"\w*(Error|Exception): ", l)]
        lines = raised or [l for l in (p.stdout + "\n" + p.stderr).splitlines()
                           if l.strip() and not l.startswith("Warning")]
        res.error = (lines[-1] if lines else f"vela exit code {p.returncode}")[:200]
        return res
    res.cpu, res.npu = int(cpu.group(1)), int(npu.group(1))
    res.cpu_reasons = cpu_reasons(p.stdout + p.stderr)
    with open(csvs[0]) as f:
        row = next(csv.DictReader(f))
    res.ms = float(row["inference_time"]) * 1000.0
    res.sram_kib = float(row["sram_memory_used"])
    res.offchip_kib = float(row["off_chip_flash_memory_used"]) + float(row["dram_memory_used"])
    compiled = glob.glob(os.path.join(out_dir, "*_vela.tflite"))
    if compiled:
        res.cpu_ops = Counter(op for op in tflite_operators(compiled[0]) if op != "CUSTOM:ethos-u")
    res.ok = True
    return res


def compile_onnx(onnx_path: str, accelerators, work: str) -> tuple[Optional[str], dict, str]:
    """ONNX -> int8 .tflite -> Vela per accelerator, with onnx2tf's default
    backend, or with tf_converter where that fails to convert.
    Returns (tflite path or None, {accelerator: VelaResult}, conversion error);
    a path converted by tf_converter has "tflite-tf_converter" in it."""
    errors = []
    # onnx2tf simplifies its input file in place (onnxsim): give it a copy
    os.makedirs(work, exist_ok=True)
    copy = os.path.join(work, "input." + os.path.basename(onnx_path))
    shutil.copyfile(onnx_path, copy)
    for backend in BACKENDS:
        tfl, log, _ = convert_int8(copy, work, backend)
        if tfl is not None:
            vela_work = os.path.join(work, backend)
            os.makedirs(vela_work, exist_ok=True)
            return tfl, {a: run_vela(tfl, a, vela_work) for a in accelerators}, ""
        errors.append(f"{backend}: {onnx2tf_error(log)}")
    return None, {}, "; ".join(errors)


def backend_of(tflite: Optional[str]) -> str:
    return next((b for b in BACKENDS if tflite and f"tflite-{b}" in tflite), "")


# --- convrewrite --------------------------------------------------------------------

def rewrite(path: str, target: str, out: str) -> tuple[Optional[str], str, int, bool]:
    """convrewrite with --target; returns (path or None, one-line summary, misfits left,
    whether the graph is the original's: same nodes, same initializers)."""
    import onnx

    from convrewrite import optimize, save_model

    try:
        model, report = optimize(path, target=target)
    except Exception as e:  # noqa: BLE001 - a benchmark reports, it does not stop
        return None, f"optimize failed: {str(e).splitlines()[0][:150]}", -1, False
    v = report.verification
    if v.performed and not v.equivalent:
        return None, "verification failed", -1, False
    save_model(model, out)
    misfits = misfit_nodes(model, target)
    unchanged = report.rewritten == 0 and _same_graph(onnx.load(path), model)
    return out, f"{report.rewritten} rewritten", misfits, unchanged


def _graph_key(m) -> list:
    """What a compile depends on: the nodes in order, the initializers, the inputs and the
    output names (value_info and metadata left out: onnx2tf infers shapes again)."""
    g = m.graph
    return ([n.SerializeToString() for n in g.node],
            sorted((i.name, i.SerializeToString()) for i in g.initializer),
            [i.SerializeToString() for i in g.input], [o.name for o in g.output])


def _same_graph(a, b) -> bool:
    """Same nodes in the same order and the same initializers (value_info may differ)."""
    return _graph_key(a) == _graph_key(b)


def graph_digest(model) -> str:
    """A short digest of `_graph_key`: two models with the same digest compile alike. A row
    records its rewritten model's, so a row made at older code is found stale (`--stale`)."""
    h = hashlib.sha256()
    nodes, inits, inputs, outputs = _graph_key(model)
    for part in nodes + [n.encode() + b for n, b in inits] + inputs + [o.encode() for o in outputs]:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()[:16]


def misfit_nodes(model, target: str) -> int:
    """How many nodes (and graph inputs) `check-target` reports as not fitting:
    the distinct nodes of its violations (a node breaking two rules counts once,
    as the command's "N node(s) do not fit" line counts it)."""
    from convrewrite.target import check_model, load_profile

    return len({v.node for v in check_model(model, load_profile(target))})


def check_target(path: str, target: str) -> int:
    """How many nodes `check-target` reports as not fitting (-1: the check failed)."""
    import onnx

    try:
        return misfit_nodes(onnx.load(path), target)
    except Exception:  # noqa: BLE001 - reported as -1
        return -1


def convrewrite_commit() -> str:
    """This checkout's short commit, with "+" when it has changes not committed ("" outside git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return head + ("+" if dirty else "")


def environment() -> str:
    from importlib.metadata import PackageNotFoundError, version

    vs = []
    for pkg in ("ethos-u-vela", "onnx2tf", "tensorflow", "onnx", "onnxruntime", "numpy"):
        try:
            vs.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            vs.append(f"{pkg} (not installed)")
    return f"Python {sys.version.split()[0]}; " + ", ".join(vs)


def run_model(path: str, work_root: str, log=print, targets=tuple(ACCELERATORS)) -> list:
    import onnx

    name = os.path.splitext(os.path.basename(path))[0]
    work = os.path.join(work_root, name)
    os.makedirs(work, exist_ok=True)
    t = time.perf_counter()
    accels = [ACCELERATORS[t] for t in targets]
    _, orig, orig_err = compile_onnx(path, accels, os.path.join(work, "original"))
    rows = []
    for target in targets:
        accel = ACCELERATORS[target]
        row = Row(name, target, orig.get(accel), None, original_error=orig_err)
        row.original_misfits = check_target(path, target)
        row.original_digest = graph_digest(onnx.load(path))
        out = os.path.join(work, f"{name}.{target}.onnx")
        rpath, row.rewrite, row.rewritten_misfits, unchanged = rewrite(path, target, out)
        if rpath is not None:
            row.rewritten_digest = graph_digest(onnx.load(rpath))
        if rpath is None:
            row.rewritten_error = row.rewrite
        elif unchanged:
            row.rewritten, row.rewritten_error, row.reused = row.original, orig_err, True
        else:
            _, res, err = compile_onnx(rpath, [accel], os.path.join(work, target))
            row.rewritten, row.rewritten_error = res.get(accel), err
        rows.append(row)
    log(f"{name}: {time.perf_counter() - t:.0f} s")
    return rows


def stale(rows: list, paths: dict, work: str) -> list:
    """The rows this code would make differently, each with why: the model is rewritten again
    for the row's target and its graph digest compared with the one the row recorded (a row
    without digests is stale: what it compiled is not known). Runs convrewrite only."""
    import onnx

    out = []
    for r in rows:
        path = paths.get(r.model)
        if path is None:
            out.append((r, "no model file"))
            continue
        rpath, _, _, _ = rewrite(path, r.target, os.path.join(work, f"{r.model}.{r.target}.onnx"))
        now = (graph_digest(onnx.load(path)), graph_digest(onnx.load(rpath)) if rpath else "")
        if not (r.original_digest and r.rewritten_digest):
            out.append((r, "no digest recorded"))
        elif now[0] != r.original_digest:
            out.append((r, "the original model changed"))
        elif now[1] != r.rewritten_digest:
            out.append((r, "rewritten differently"))
    return out


def recount(files, paths: dict, work: str) -> list:
    """`--recount`: each row's check-target counts made again (convrewrite only) and written
    back to its file, for the rows whose original and rewritten graphs are still the ones
    compiled (the others are stale: compile them again); (model, target, counts before,
    counts now) of the rows whose counts changed."""
    import onnx

    changed = []
    for fn in files:
        with open(fn) as f:
            lines = [json.loads(l) for l in f if l.strip()]
        for d in lines:
            r = Row.from_json(d)
            path = paths.get(r.model)
            if path is None or not r.original_digest:
                continue
            rpath, _, after, _ = rewrite(path, r.target, os.path.join(work, f"{r.model}.{r.target}.onnx"))
            now = (graph_digest(onnx.load(path)), graph_digest(onnx.load(rpath)) if rpath else "")
            if now != (r.original_digest, r.rewritten_digest):
                continue
            before = check_target(path, r.target)
            if (before, after) != (r.original_misfits, r.rewritten_misfits):
                changed.append((r.model, r.target, (r.original_misfits, r.rewritten_misfits), (before, after)))
                d["original_misfits"], d["rewritten_misfits"] = before, after
        with open(fn, "w") as f:
            f.writelines(json.dumps(d) + "\n" for d in lines)
    return changed


def read_rows(files) -> list:
    rows = []
    for fn in files:
        with open(fn) as f:
            rows += [Row.from_json(json.loads(l)) for l in f if l.strip()]
    return rows


def model_paths(args) -> list:
    if args.models:
        models = args.models
    else:
        models = sorted(glob.glob(os.path.join(args.real or os.path.join(ROOT, "models"), "*.onnx")))
    return [m for m in models if not m.endswith(".opt.onnx")]


def main(argv=None) -> int:
    global CONVERT_TIMEOUT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", help="ONNX models (default: models/*.onnx)")
    ap.add_argument("--work", help="folder for the converted files (default: a temporary one, removed)")
    ap.add_argument("--update-doc", metavar="DOC", help="write the table between the markers of DOC")
    ap.add_argument("--update-readme", metavar="README",
                    help="write the summary (one line per model) between the ETHOS-U SUMMARY markers of README")
    ap.add_argument("--real", metavar="DIR", nargs="?", const=REAL_DIR,
                    help=f"every DIR/*.onnx (default {os.path.relpath(REAL_DIR, ROOT)}), "
                         "its tables between the REAL markers")
    ap.add_argument("--timeout", type=float, default=CONVERT_TIMEOUT,
                    help=f"seconds for each onnx2tf conversion (default {CONVERT_TIMEOUT})")
    ap.add_argument("--targets", nargs="+", choices=list(ACCELERATORS), default=list(ACCELERATORS),
                    help="only these targets (default: both)")
    ap.add_argument("--json", metavar="FILE", help="append every model's rows to FILE (JSON lines)")
    ap.add_argument("--from-json", metavar="FILE", nargs="+",
                    help="make the tables from the rows of these files; run nothing")
    ap.add_argument("--stale", action="store_true",
                    help="with --from-json: rewrite each row's model (models/, --real DIR or the models "
                         "given) and list the rows whose rewritten graph is no longer the one compiled")
    ap.add_argument("--recount", action="store_true",
                    help="with --from-json: make each current row's check-target counts again (convrewrite "
                         "only) and write them back to its file")
    args = ap.parse_args(argv)
    CONVERT_TIMEOUT = args.timeout
    if args.from_json and args.recount:
        return print_recount(args.from_json, model_paths(args))
    if args.from_json:
        rows = read_rows(args.from_json)
        env = _json_environment(args.from_json) or environment()
        if args.stale:
            return print_stale(rows, model_paths(args))
    else:
        rows, env = run(args)
        if rows is None:
            return 2
    rows.sort(key=lambda r: (r.model, r.target))
    made = made_by(args, env, rows)
    text = made + "\n\n" + table(rows) + "\n\n" + never_worse_summary(rows)
    print(text)
    if args.update_doc:
        update_doc(args.update_doc, text, *((REAL_BEGIN, REAL_END) if args.real else (DOC_BEGIN, DOC_END)))
    if args.update_readme:
        summary = made + "\n\n" + summary_table(rows) + "\n\n" + never_worse_summary(rows)
        update_doc(args.update_readme, summary,
                   *((README_REAL_BEGIN, README_REAL_END) if args.real else (README_BEGIN, README_END)))
    return 0


def made_by(args, env: str, rows: list) -> str:
    """The line above a table: the command that makes it again, the toolchain, the commits."""
    real = " --real" if args.real else ""
    if args.from_json:
        files = " ".join(os.path.relpath(f, ROOT) if os.path.abspath(f).startswith(ROOT) else f
                         for f in args.from_json)
        how = f"`benchmarks/ethos_u.py{real} --from-json {files}`, rows compiled"
    else:
        how = f"`benchmarks/ethos_u.py{real}`"
    return f"Generated by {how} with {env}; convrewrite commit of the rows: {provenance(rows)}."


def print_recount(files: list, models: list) -> int:
    """`--recount`: print the rows whose counts changed."""
    paths = {os.path.splitext(os.path.basename(m))[0]: m for m in models}
    with tempfile.TemporaryDirectory(prefix="ethos-u-recount-") as work:
        changed = recount(files, paths, work)
    for model, target, (o, w), (o2, w2) in changed:
        print(f"recounted: {model} {target}: {o} / {w} -> {o2} / {w2}")
    print(f"{len(changed)} row(s) recounted")
    return 0


def print_stale(rows: list, models: list) -> int:
    """`--stale`: print the stale rows; exit status 1 when there is one."""
    paths = {os.path.splitext(os.path.basename(m))[0]: m for m in models}
    with tempfile.TemporaryDirectory(prefix="ethos-u-stale-") as work:
        found = stale(rows, paths, work)
    for r, why in found:
        print(f"stale: {r.model} {r.target}: {why}")
    print(f"{len(found)} of {len(rows)} row(s) stale")
    return 1 if found else 0


def run(args) -> tuple:
    """Compile every model (module docstring); returns (rows, environment), or (None, "") when
    the toolchain or the models are missing."""
    why = tools_missing()
    if why:
        print(f"ethos_u: {why}", file=sys.stderr)
        return None, ""
    models = model_paths(args)
    if not models:
        print(f"ethos_u: no models in {args.real or 'models/'}", file=sys.stderr)
        return None, ""
    env, commit = environment(), convrewrite_commit()
    work = args.work or tempfile.mkdtemp(prefix="ethos-u-")
    rows = []
    try:
        for m in models:
            new = run_model(m, work, log=lambda s: print(s, file=sys.stderr), targets=args.targets)
            for r in new:
                r.convrewrite = commit
            rows += new
            if args.json:
                with open(args.json, "a") as f:
                    for r in new:
                        f.write(json.dumps(dict(r.to_json(), env=env)) + "\n")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return rows, env


def _json_environment(files) -> str:
    """The environment recorded with the first row of the files ("" if none)."""
    for fn in files:
        with open(fn) as f:
            for line in f:
                if line.strip():
                    return json.loads(line).get("env", "")
    return ""


if __name__ == "__main__":
    sys.exit(main())
