#!/usr/bin/env python3
"""Latency of rewritten models against the originals, on onnxruntime CPU.

    python benchmarks/bench_latency.py [--models NAME,...] [--repeats 25] [--real DIR | --no-real]
                                       [--target PROFILE] [--options k=v[,k=v]] [--json OUT.json]
                                       [--update-readme]
    python benchmarks/bench_latency.py --profile NAME [--profile-runs 20] [--passes all|resize,...]
                                       [--top 15] [--target PROFILE] [--options k=v]

Models: every `models/*.onnx` (sample models) and every `.onnx` in the real
folder (default `benchmarks/real/`, written by `benchmarks/export_real.py`;
skipped when absent).  `--models` keeps the models whose file name contains
one of the comma-separated words.

Variants per model: the original; each pass alone (`resize`,
`convtranspose`, `dilated-conv`) where it rewrites something; all passes.
Every variant is produced by `convrewrite.optimize(..., verify=True)`, so
every timed model passed the per-rewrite and whole-model checks (the table
flags any that did not).

Timing: onnxruntime CPUExecutionProvider, 1 intra-op and 1 inter-op thread,
sequential execution, default graph optimizations, batch 1, one seeded random
input shared by all variants.  After warm-up the variants run round-robin
(the starting variant rotates every round), so slow drift of a shared
machine hits all of them alike; a sample is k consecutive runs (k chosen so
a sample of the original takes >= 20 ms).  Reported: the median per variant,
the interquartile range as a percentage of the median (the noise), and the
ratio rewritten / original as the median of the per-round ratios.

MACs, bytes moved by data-movement ops and node counts, all of the whole
model at batch 1 (convrewrite.core.cost.model_cost), original -> rewritten.
(The JSON also keeps the sums of the Report's records, `*_before` /
`*_after`; those do not add up across passes, as a shuffle-motion region
starts from nodes the convtranspose pass built.)

`--profile NAME`: onnxruntime's profiler (SessionOptions.enable_profiling)
on the original and on the rewritten model (`--passes`, default all): the
kernel time per op type and per node, averaged over the runs, and the
rewritten model's time grouped by the original node each new node came from
(new nodes are named `<original node>/<pass>/<what>`) -- where the extra time
of a rewrite goes.
"""
from __future__ import annotations

import argparse
import bisect
import glob
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict

import onnx
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from convrewrite import optimize  # noqa: E402
from convrewrite.core.cost import model_cost  # noqa: E402
from convrewrite.core.equivalence import random_feeds, runtime_inputs  # noqa: E402
from convrewrite.core.report import REWRITTEN  # noqa: E402
from passes import option_names, pass_names  # noqa: E402

DEFAULT_REAL = os.path.join(ROOT, "benchmarks", "real")
README = os.path.join(ROOT, "README.md")
BEGIN, END = "<!-- bench_latency:begin -->", "<!-- bench_latency:end -->"
MIN_SAMPLE_S = 0.01
ALL = "all"


# --- models and variants -----------------------------------------------------------------------

def find_models(real_dir, words) -> list:
    """Sample models, then real exports; filtered by `words` (substrings of the file name)."""
    paths = sorted(p for p in glob.glob(os.path.join(ROOT, "models", "*.onnx")) if not p.endswith(".opt.onnx"))
    if real_dir and os.path.isdir(real_dir):
        paths += sorted(glob.glob(os.path.join(real_dir, "*.onnx")))
    return [p for p in paths if not words or any(w in os.path.basename(p) for w in words)]


def rewrite(path: str, passes, options: dict, target):
    """optimize() with verification; (model, report, error text or "").  Of
    `options`, the ones of the passes run (a pass's own column leaves the
    others' out, which optimize refuses)."""
    options = {k: v for k, v in options.items() if passes is None or option_names()[k] in passes}
    try:
        model, report = optimize(path, passes=passes, options=options or None, verify=True, target=target)
    except Exception as e:  # noqa: BLE001 -- a benchmark reports the failure and goes on
        return None, None, f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
    return model, report, ""


def verified(report) -> bool:
    v = report.verification
    return (not v.performed) or bool(v.equivalent) or bool(v.within_noise)


def region_cost(report) -> dict:
    """Sums over the rewritten records: MACs, moved bytes and nodes before/after."""
    keys = ("macs_before", "macs_after", "moved_bytes_before", "moved_bytes_after", "nodes_before", "nodes_after")
    recs = report.records(REWRITTEN)
    return {k: sum(getattr(r, k) or 0 for r in recs) for k in keys}


def model_figures(model: onnx.ModelProto) -> dict:
    """Whole-model MACs, bytes read and written by its data-movement ops and
    node count, at batch 1: the table's columns.  (The records' region
    figures do not add up across passes: a shuffle-motion region starts from
    nodes the convtranspose pass built.)"""
    c = model_cost(model)
    return {"macs": c.macs, "moved_bytes": c.moved_bytes, "nodes": len(model.graph.node)}


def make_variants(path: str, options: dict, target) -> tuple:
    """[(name, model, info)] for the original, each pass that rewrites alone, and all passes;
    plus a list of error lines."""
    original = onnx.load(path)
    variants, errors = [("original", original, model_figures(original))], []
    for name in pass_names() + [ALL]:
        model, report, err = rewrite(path, None if name == ALL else [name], options, target)
        if err:
            errors.append(f"{name}: {err}")
            continue
        if report.rewritten == 0:
            continue
        info = {"rewritten": report.rewritten, "verified": verified(report), **model_figures(model),
                "max_rel_error": report.verification.max_rel_error, **region_cost(report)}
        variants.append((name, model, info))
    return variants, errors


# --- timing ------------------------------------------------------------------------------------

def session_options(profile_prefix=None) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return so


def make_session(model: onnx.ModelProto, profile_prefix=None) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), session_options(profile_prefix),
                                providers=["CPUExecutionProvider"])


def feeds_for(model: onnx.ModelProto) -> dict:
    return random_feeds(runtime_inputs(model), seed=0, batch=1)


def time_runs(sess, feeds, k: int) -> tuple:
    """(CPU seconds of this thread, wall seconds) per run, over k consecutive runs.  With one
    intra-op thread onnxruntime computes in the calling thread, so the thread's CPU time is
    the run's time without the time other processes held the core."""
    c0, w0 = time.thread_time(), time.perf_counter()
    for _ in range(k):
        sess.run(None, feeds)
    return (time.thread_time() - c0) / k, (time.perf_counter() - w0) / k


def runs_per_sample(sess, feeds) -> int:
    once = min(time_runs(sess, feeds, 1)[1] for _ in range(3))
    return max(1, math.ceil(MIN_SAMPLE_S / max(once, 1e-6)))


def measure(models: list, feeds: dict, repeats: int) -> list:
    """Per model, `repeats` samples of (CPU s, wall s) per run, interleaved round-robin."""
    sessions = [make_session(m) for m in models]
    for s in sessions:
        time_runs(s, feeds, 2)
    k = runs_per_sample(sessions[0], feeds)
    samples = [[] for _ in sessions]
    n = len(sessions)
    for r in range(repeats):
        for j in range(n):
            i = (r + j) % n
            samples[i].append(time_runs(sessions[i], feeds, k))
    return samples


def stats(samples: list, base: list) -> dict:
    """Median CPU ms, IQR as % of it, median per-round ratio to `base`; the same ratio by wall time."""
    cpu = [c for c, _ in samples]
    q1, _, q3 = statistics.quantiles(cpu, n=4) if len(cpu) > 1 else (cpu[0],) * 3
    med = statistics.median(cpu)
    return {"ms": med * 1e3, "iqr_pct": 100 * (q3 - q1) / med,
            "ratio": statistics.median(c / b[0] for (c, _), b in zip(samples, base)),
            "wall_ms": statistics.median(w for _, w in samples) * 1e3,
            "wall_ratio": statistics.median(w / b[1] for (_, w), b in zip(samples, base))}


# --- the benchmark -----------------------------------------------------------------------------

def bench_model(path: str, args, options: dict) -> dict:
    name = os.path.basename(path)[:-5]
    t0 = time.perf_counter()
    variants, errors = make_variants(path, options, args.target)
    t_opt = time.perf_counter() - t0
    feeds = feeds_for(variants[0][1])
    samples = measure([m for _, m, _ in variants], feeds, args.repeats)
    group = "sample" if os.path.dirname(os.path.abspath(path)) == os.path.join(ROOT, "models") else "real"
    row = {"model": name, "group": group, "errors": errors, "optimize_s": round(t_opt, 2), "variants": {}}
    for (vname, _, info), s in zip(variants, samples):
        row["variants"][vname] = {**info, **stats(s, samples[0])}
    return row


def geomean(xs: list) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def all_ratio(row) -> float:
    """The all-passes ratio (a model no pass rewrites counts as 1)."""
    return row["variants"].get(ALL, row["variants"]["original"])["ratio"]


def summary(rows: list) -> list:
    """Geometric mean and max of the all-passes ratio: over every model, the sample models, the real ones."""
    out = []
    for label, group in (("all", rows), ("sample", [r for r in rows if r["group"] == "sample"]),
                         ("real", [r for r in rows if r["group"] == "real"])):
        if group and (label == "all" or len(group) < len(rows)):
            worst = max(group, key=all_ratio)
            out.append({"models": label, "count": len(group), "geomean_ratio": geomean([all_ratio(r) for r in group]),
                        "max_ratio": all_ratio(worst), "max_model": worst["model"]})
    return out


# --- output ------------------------------------------------------------------------------------

def fmt_variant(v) -> str:
    if v is None:
        return "="
    flag = "" if v.get("verified", True) else " UNVERIFIED"
    return f"{v['ms']:.2f} ({v['ratio']:.2f}x){flag}"


def fmt_pair(a, b, scale: float, digits: int = 1) -> str:
    if a is None or b is None:
        return "?"
    return f"{a / scale:.{digits}f} → {b / scale:.{digits}f}"


def table_lines(rows: list, summ: dict) -> list:
    # a column per pass that rewrites some model alone (shuffle-motion moves
    # the shuffles the others build: alone it has nothing to move)
    passes = [p for p in pass_names() if any(p in r["variants"] for r in rows)]
    head = (["model", "original ms (IQR %)"] + [f"{p} ms (ratio)" for p in passes]
            + ["all ms (ratio)", "all IQR %", "MACs M", "moved KB", "nodes"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        v = r["variants"]
        o, a = v["original"], v.get(ALL)
        cells = [r["model"], f"{o['ms']:.2f} ({o['iqr_pct']:.0f})"] + [fmt_variant(v.get(p)) for p in passes]
        cells += [fmt_variant(a), f"{a['iqr_pct']:.0f}" if a else "",
                  fmt_pair(o["macs"], (a or o)["macs"], 1e6),
                  fmt_pair(o.get("moved_bytes"), a.get("moved_bytes"), 1e3, 0) if a else "",
                  f"{o.get('nodes')} → {a.get('nodes')}" if a else ""]
        lines.append("| " + " | ".join(cells) + " |")
    pad = "| " * (len(passes) + 1)
    for g in summ:
        lines.append(f"| **geometric mean**, {g['models']} ({g['count']} models) | {pad}"
                     f"**{g['geomean_ratio']:.2f}x** | | | | |")
        lines.append(f"| **max**, {g['models']} ({g['max_model']}) | {pad}**{g['max_ratio']:.2f}x** | | | | |")
    return lines


def print_rows(rows: list, summ: dict) -> None:
    print("\n".join(table_lines(rows, summ)))
    for r in rows:
        for e in r["errors"]:
            print(f"{r['model']}: {e}", file=sys.stderr)


def update_readme(lines: list, header: str) -> None:
    """Replace the generated block between the markers (added at the end of
    the Benchmarks section, before '## Layout', if absent)."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    block = BEGIN + "\n" + header + "\n\n" + "\n".join(lines) + "\n" + END
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        section = ("#### Latency of rewritten models (onnxruntime CPU)\n\n"
                   "Generated by `python benchmarks/bench_latency.py --update-readme`; how to read it and what "
                   "costs the time: [docs/latency.md](docs/latency.md).\n\n" + block + "\n\n")
        text = text.replace("\n## Layout\n", "\n" + section + "## Layout\n", 1)
    with open(README, "w", encoding="utf-8") as f:
        f.write(text)


def _git(*args) -> str:
    import subprocess
    return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True).stdout.strip()


def git_commit() -> str:
    """The checkout's short commit (+ "-dirty" when the library has uncommitted changes), or "?"."""
    try:
        dirty = _git("status", "--porcelain", "--", "convrewrite", "passes")
        return (_git("rev-parse", "--short", "HEAD") or "?") + ("-dirty" if dirty else "")
    except OSError:
        return "?"


def run_header(args, options: dict) -> str:
    flags = [f"--repeats {args.repeats}"] + ([f"--target {args.target}"] if args.target else []) + (
        ["--options " + ",".join(f"{k}={v}" for k, v in options.items())] if options else [])
    return (f"`python benchmarks/bench_latency.py {' '.join(flags)}` (convrewrite at {git_commit()}, "
            f"onnxruntime {ort.__version__}, CPU, 1 thread): ms = median CPU time of the running thread per run, IQR = interquartile range in % "
            "of the median, ratio = median of the per-round ratios rewritten / original; `=`: the pass "
            "rewrites nothing in the model; MACs, moved KB (read and written by data-movement ops) and "
            "nodes: the whole model at batch 1, original → rewritten.")


# --- profiling ---------------------------------------------------------------------------------

def profile_events(model: onnx.ModelProto, feeds: dict, runs: int, warmup: int = 3) -> list:
    """Node kernel events of onnxruntime's profiler over `runs` runs, after `warmup` runs
    (dropped by their timestamps: the trace's model_run events mark each run)."""
    with tempfile.TemporaryDirectory() as tmp:
        sess = make_session(model, os.path.join(tmp, "prof"))
        for _ in range(warmup + runs):
            sess.run(None, feeds)
        with open(sess.end_profiling(), encoding="utf-8") as f:
            trace = json.load(f)
    starts = sorted(e["ts"] for e in trace if e.get("name") == "model_run")
    events = [e for e in trace if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    for e in events:
        e["run"] = bisect.bisect_right(starts, e["ts"]) - 1 - warmup
    return [e for e in events if e["run"] >= 0]


def per_key(events: list, runs: int, key) -> dict:
    """Microseconds per run by key(event): each run's sum, the median over the runs (a run that
    another process slowed down moves no figure)."""
    sums = defaultdict(lambda: [0.0] * runs)
    for e in events:
        sums[key(e)][e["run"]] += e["dur"]
    return {k: statistics.median(v) for k, v in sums.items()}


FUSED_INTO_CONV = frozenset({"Relu", "Clip", "LeakyRelu", "HardSigmoid", "Sigmoid", "HardSwish", "Tanh", "Add",
                             "BatchNormalization", "Mul"})


def node_resolver(model: onnx.ModelProto):
    """A function from a profiler event to the model's node name.  onnxruntime renames what it
    rewrites: a kernel is named after a node, or after the value it writes plus `_nchwc` (the
    blocked layout), or `<name>_token_<n>`; a Conv fused with the activation after it is named
    after the activation's output -- such time goes to the Conv it started from."""
    nodes = {n.name: n for n in model.graph.node}
    producer = {o: n for n in model.graph.node for o in n.output}

    def conv_above(node):
        while node is not None and node.op_type in FUSED_INTO_CONV and node.input:
            node = producer.get(node.input[0])
        return node if node is not None and node.op_type == "Conv" else None

    def resolve(e) -> str:
        name = re.sub(r"(_token_\d+)+$", "", e["name"][: -len("_kernel_time")])
        name = re.sub(r"_nchwc$", "", name)
        node = nodes.get(name) or producer.get(name)
        if node is None:
            return None
        if op_of(e) in ("Conv", "FusedConv") and node.op_type != "Conv":
            node = conv_above(node) or node
        return node.name
    return resolve


def annotate(events: list, model: onnx.ModelProto) -> list:
    """Sets e["node"] on every event: the model's node it ran; a kernel onnxruntime added (the
    ReorderInput/ReorderOutput of its blocked layout) goes to the node that ran before it."""
    resolve, last = node_resolver(model), "(start)"
    for e in sorted(events, key=lambda e: e["ts"]):
        e["node"] = last = resolve(e) or last
    return events


def origin(name: str) -> str:
    """The original node a new node came from (`<node>/<pass>/<what>`), else the node itself."""
    for p in pass_names():
        if f"/{p}/" in name:
            return name.split(f"/{p}/")[0]
    return name


def what(name: str) -> str:
    """The part of a new node's name after its pass (what it does), else ''."""
    for p in pass_names():
        if f"/{p}/" in name:
            return name.split(f"/{p}/", 1)[1]
    return ""


def op_of(e) -> str:
    return e.get("args", {}).get("op_name", "?")


def print_profile(args, options: dict) -> None:
    paths = [p for p in find_models(args.real, None)
             if os.path.basename(p)[:-5] == args.profile or p == args.profile] or [args.profile]
    path = paths[0]
    passes = None if args.passes == ALL else args.passes.split(",")
    model, report, err = rewrite(path, passes, options, args.target)
    if err:
        sys.exit(f"{path}: {err}")
    original = onnx.load(path)
    feeds = feeds_for(original)
    ev_o, ev_r = profile_events(original, feeds, args.profile_runs), profile_events(model, feeds, args.profile_runs)
    runs = args.profile_runs
    total_o, total_r = sum(per_key(ev_o, runs, op_of).values()), sum(per_key(ev_r, runs, op_of).values())
    print(f"{os.path.basename(path)}: passes {args.passes}, {report.rewritten} rewritten, "
          f"verified {verified(report)}; kernel time per run (median): original {total_o / 1e3:.2f} ms, "
          f"rewritten {total_r / 1e3:.2f} ms ({total_r / total_o:.2f}x)\n")
    print_op_types(per_key(ev_o, runs, op_of), per_key(ev_r, runs, op_of), total_r)
    annotate(ev_o, original), annotate(ev_r, model)
    print_origins(ev_o, ev_r, runs, report, args.top)
    print_whats(ev_r, runs, total_r, args.top)


def print_op_types(o: dict, r: dict, total_r: float) -> None:
    print("per op type (ms per run)\n| op | original | rewritten | delta | % of rewritten |\n|---|---|---|---|---|")
    for op in sorted(set(o) | set(r), key=lambda k: -(r.get(k, 0) - o.get(k, 0))):
        a, b = o.get(op, 0) / 1e3, r.get(op, 0) / 1e3
        print(f"| {op} | {a:.3f} | {b:.3f} | {b - a:+.3f} | {100 * r.get(op, 0) / total_r:.1f} |")
    print()


def print_origins(ev_o, ev_r, runs: int, report, top: int) -> None:
    """Per rewritten original node: its time before, its replacement's time after, and the
    replacement's time per op type."""
    by_node = per_key(ev_o, runs, lambda e: e["node"])
    members = {r.node: region(r) for r in report.records(REWRITTEN)}
    before = {n: sum(by_node.get(m, 0) for m in ms) for n, ms in members.items()}
    after = per_key(ev_r, runs, lambda e: origin(e["node"]))
    ops = defaultdict(dict)
    for (n, op), t in per_key([e for e in ev_r if what(e["node"])], runs,
                              lambda e: (origin(e["node"]), op_of(e))).items():
        ops[n][op] = t
    rows = sorted(ops, key=lambda n: -(after.get(n, 0) - before.get(n, 0)))
    forms = {r.node: f"{r.op}: {r.form}{'/' + r.variant if r.variant else ''}" for r in report.records(REWRITTEN)}
    print(f"per rewritten node, largest extra time first (top {top}; ms per run; before: the node and the "
          "nodes its form also rewrote)\n| original node | form | nodes | before | after | after by op |\n"
          "|---|---|---|---|---|---|")
    for n in rows[:top]:
        by_op = ", ".join(f"{op} {t / 1e3:.3f}" for op, t in sorted(ops[n].items(), key=lambda kv: -kv[1]))
        print(f"| {n} | {forms.get(n, '?')} | {len(members.get(n, [n]))} | {before.get(n, 0) / 1e3:.3f} | {after.get(n, 0) / 1e3:.3f} | {by_op} |")
    print()


def region(record) -> list:
    """The original nodes one rewrite replaced: its node, and those its notes say it also
    rewrote (a dilated-conv chain keeps pointwise ops and same-rate Convs in batch form)."""
    also = [n for note in record.notes if note.startswith("also rewrites") for n in re.findall(r"'([^']*)'", note)]
    return [record.node] + also


def print_whats(ev_r, runs: int, total_r: float, top: int) -> None:
    """The rewritten model's new nodes grouped by what they do (name after the pass, digits dropped)."""
    kinds = per_key([e for e in ev_r if what(e["node"])], runs,
                    lambda e: re.sub(r"\d+", "#", what(e["node"])) + f" [{op_of(e)}]")
    print(f"new nodes by kind (top {top}; ms per run, % of rewritten model)\n| kind [op] | ms | % |\n|---|---|---|")
    for k, t in sorted(kinds.items(), key=lambda kv: -kv[1])[:top]:
        print(f"| {k} | {t / 1e3:.3f} | {100 * t / total_r:.1f} |")


# --- command line ------------------------------------------------------------------------------

def parse_options(text: str) -> dict:
    """'k=v,k2=v2' -> dict; integers and true/false are converted."""
    out = {}
    for item in filter(None, (text or "").split(",")):
        k, _, v = item.partition("=")
        out[k.strip()] = int(v) if v.strip().lstrip("-").isdigit() else {"true": True, "false": False}.get(v, v)
    return out


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="", help="comma-separated substrings of model file names")
    ap.add_argument("--repeats", type=int, default=25, help="interleaved rounds after warm-up (default 25)")
    ap.add_argument("--real", default=DEFAULT_REAL, help="folder of real exports (default benchmarks/real)")
    ap.add_argument("--no-real", dest="real", action="store_const", const=None, help="sample models only")
    ap.add_argument("--target", default=None, help="target profile passed to optimize")
    ap.add_argument("--options", default="", help="lowering options, k=v[,k=v] (e.g. dilated_mode=batch)")
    ap.add_argument("--json", default=None, help="write the results as JSON")
    ap.add_argument("--update-readme", action="store_true", help="write the table into README.md")
    ap.add_argument("--from-json", default=None, help="print (and --update-readme) a saved --json run, measuring nothing")
    ap.add_argument("--profile", default=None, help="per-op-type profile of one model (name or path)")
    ap.add_argument("--profile-runs", type=int, default=20)
    ap.add_argument("--passes", default=ALL, help="for --profile: 'all' or comma-separated pass names")
    ap.add_argument("--top", type=int, default=15)
    return ap.parse_args(argv)


def render_saved(args) -> int:
    with open(args.from_json, encoding="utf-8") as f:
        saved = json.load(f)
    summ = summary(saved["rows"])
    print_rows(saved["rows"], summ)
    if args.update_readme:
        update_readme(table_lines(saved["rows"], summ), saved["header"])
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    options = parse_options(args.options)
    if args.profile:
        print_profile(args, options)
        return 0
    if args.from_json:
        return render_saved(args)
    rows = []
    for path in find_models(args.real, [w for w in args.models.split(",") if w]):
        rows.append(bench_model(path, args, options))
        print(f"  {rows[-1]['model']}: " + ", ".join(f"{k} {v['ms']:.2f} ms ({v['ratio']:.2f}x)"
                                                     for k, v in rows[-1]["variants"].items()),
              file=sys.stderr, flush=True)
    if not rows:
        sys.exit("no models matched")
    summ = summary(rows)
    print_rows(rows, summ)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"header": run_header(args, options), "summary": summ, "rows": rows}, f, indent=1)
    if args.update_readme:
        update_readme(table_lines(rows, summ), run_header(args, options))
    return 1 if any(not v.get("verified", True) for r in rows for v in r["variants"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
