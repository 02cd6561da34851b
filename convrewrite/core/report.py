"""The record of a run: one entry per candidate node, plus totals.

`Report.to_dict()` is the JSON schema documented in the README; `summary()`
is the human text the command line prints.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Optional

from .rewrite import Code

REWRITTEN, SKIPPED, ROLLED_BACK, PLANNED = "rewritten", "skipped", "rolled_back", "planned"

# What a dry run's plan is: every pass builds and splices as the run does (the worklist too, so a
# Resize's ConvTranspose appears lowered by convtranspose), but nothing is checked.
DRY_RUN_NOTE = ("plan: what the run would write, every pass built and spliced as the run does (second stages "
                "included), but not checked: a rewrite whose local or whole-model check fails would be rolled back")


@dataclass
class RewriteRecord:
    """One candidate node: what became of it.  `form` / `variant` name the
    lowering used (rewritten, planned, rolled back); `code` is the stable
    word for why it was left alone (convrewrite.core.rewrite.CODES)."""

    pass_name: str
    node: str
    op: str
    status: str
    reason: str = ""
    code: str = ""
    form: str = ""
    variant: str = ""
    max_abs_error: Optional[float] = None
    max_rel_error: Optional[float] = None
    new_nodes: list = field(default_factory=list)
    # the original nodes the rewrite replaces, the candidate first (a dilated chain: its Convs and the
    # pointwise ops between them; a ConvTranspose with the BatchNormalization folded into it; not a
    # quantized group's Q/DQ nodes, which it emits again); [] unless rewritten or planned
    replaced_nodes: list = field(default_factory=list)
    macs_before: Optional[int] = None
    macs_after: Optional[int] = None
    moved_bytes_before: Optional[int] = None
    moved_bytes_after: Optional[int] = None
    nodes_before: Optional[int] = None
    nodes_after: Optional[int] = None
    streamed_bytes_before: Optional[int] = None   # what GEMM-based nodes stream (core/cost.py)
    streamed_bytes_after: Optional[int] = None
    notes: list = field(default_factory=list)
    # a quantized rewrite's difference in quantization steps (core/qdq_check.py): {"spec": {"mean", "p99",
    # "max"}, "fused": {...} under onnxruntime's fused int8 execution}; null for float rewrites
    quantized_steps: Optional[dict] = None
    sketch_before: Optional[object] = field(default=None, repr=False)   # for the HTML report only
    sketch_after: Optional[object] = field(default=None, repr=False)

    def to_dict(self) -> dict:
        d = {k: v for k, v in vars(self).items() if not k.startswith("sketch_")}
        d["pass"] = d.pop("pass_name")
        return {k: list(v) if isinstance(v, list) else v for k, v in d.items()}

    def set_costs(self, before, after) -> None:
        """The Cost of the original nodes and of the replacement."""
        self.macs_before, self.macs_after = before.macs, after.macs
        self.moved_bytes_before, self.moved_bytes_after = before.moved_bytes, after.moved_bytes
        self.nodes_before, self.nodes_after = before.nodes, after.nodes
        self.streamed_bytes_before, self.streamed_bytes_after = before.streamed_bytes, after.streamed_bytes


@dataclass
class Verification:
    """The whole-model check: original versus result on the same inputs.

    The original's own noise is measured only when a comparison failed:
    `noise_*` stay empty otherwise.  `unstable`: the original's outputs move
    beyond the tolerance by themselves (inputs moved by one ulp, onnxruntime's
    graph optimizations: `noise_probes`), by up to `noise_abs_error` /
    `noise_rel_error`.  `within_noise`: the result was accepted because its
    difference is within a small factor of that noise; the local checks are
    the evidence.  `bisection_*`: the time bisection took, the rewrites it
    rolled back, and which bound stopped it ("" if none)."""

    performed: bool = False
    equivalent: Optional[bool] = None
    max_abs_error: Optional[float] = None
    max_rel_error: Optional[float] = None
    inputs: str = "random"
    detail: str = ""
    unstable: bool = False
    noise_abs_error: Optional[float] = None
    noise_rel_error: Optional[float] = None
    noise_probes: list = field(default_factory=list)
    within_noise: bool = False
    within_tie_noise: bool = False   # a quantized output accepted within the original's own rounding-tie noise
    bisection_seconds: float = 0.0
    bisection_rolled_back: int = 0
    bisection_stopped: str = ""
    quantized_steps: Optional[dict] = None   # a quantized model's outputs in steps: {"spec": ..., "fused": ...}


@dataclass
class Report:
    input: Optional[str] = None
    output: Optional[str] = None
    passes: list = field(default_factory=list)
    optimization_passes: list = field(default_factory=list)   # optimizations, not lowerings (left_alone)
    op_counts_before: dict = field(default_factory=dict)
    op_counts_after: dict = field(default_factory=dict)
    rewrites: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    verification: Verification = field(default_factory=Verification)
    dry_run: bool = False
    target: Optional[dict] = None  # the target compatibility check, when a profile is given

    # --- queries --------------------------------------------------------
    def records(self, status: Optional[str] = None, pass_name: Optional[str] = None) -> list:
        return [r for r in self.rewrites
                if (status is None or r.status == status) and (pass_name is None or r.pass_name == pass_name)]

    @property
    def rewritten(self) -> int:
        return len(self.records(REWRITTEN))

    def per_pass(self) -> dict:
        """Per pass: `rewrites` (records rewritten, or planned in a dry run:
        one rewrite may replace several nodes, a dilated chain of 4 Convs is
        one) and `nodes_replaced` (the original nodes those rewrites replace)."""
        done = self.records(PLANNED if self.dry_run else REWRITTEN)
        return {p: {"rewrites": sum(1 for r in done if r.pass_name == p),
                    "nodes_replaced": sum(len(r.replaced_nodes) for r in done if r.pass_name == p)}
                for p in self.passes}

    @property
    def left_alone(self) -> list:
        """Candidates not rewritten: skipped or rolled back -- of the passes
        that lower operators.  An optimization pass (shuffle-motion) leaves
        no operator a target lacks, so what it does not move is not counted
        (`--strict`); its records are in the JSON report all the same."""
        return [r for r in self.rewrites if r.status in (SKIPPED, ROLLED_BACK)
                and r.pass_name not in self.optimization_passes]

    @property
    def unfinished(self) -> list:
        """What `--strict` counts: the records left alone except those a
        target runs as they are (code `target-runs-it`, or a node the target
        check of the output finds nothing against: a costly dense dilation
        no form runs better is left with `no-form`, yet it runs).  Nothing
        is left there for the target to lack; whether every node fits is the
        target check's own verdict.  A node the target's rules could not
        judge (`target-undecided`: a size or factor they read is unknown, so
        the check found nothing it *knows* is broken) counts: nothing says
        the target runs it."""
        left = [r for r in self.left_alone if r.code != Code.TARGET_RUNS_IT]
        if self.target is None:
            return left
        not_fitting = {v["node"] for v in self.target.get("violations", [])}
        return [r for r in left if r.node in not_fitting or r.code == Code.TARGET_UNDECIDED]

    def worst_local_error(self) -> Optional[RewriteRecord]:
        checked = [r for r in self.rewrites if r.max_rel_error is not None and r.status == REWRITTEN]
        return max(checked, key=lambda r: r.max_rel_error, default=None)

    # --- output -----------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "input": self.input,
            "output": self.output,
            "passes": list(self.passes),
            "optimization_passes": list(self.optimization_passes),
            "dry_run": self.dry_run,
            "op_counts": {"before": dict(self.op_counts_before), "after": dict(self.op_counts_after)},
            "per_pass": self.per_pass(),
            "rewrites": [r.to_dict() for r in self.rewrites],
            "verification": asdict(self.verification),
            "target": self.target,
            "timings": {k: round(v, 6) for k, v in self.timings.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=_json_default)

    def summary(self) -> str:
        return "\n".join(printable(line) for line in _summary_lines(self))


def printable(text: str) -> str:
    """`text` with control characters written as escapes: a node name from
    the model ("a\\r\\x1b[2K...") must not move the cursor or erase lines
    of the summary on a terminal."""
    return "".join(c if c.isprintable() or c == "\t" else repr(c)[1:-1] for c in text)


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(type(o).__name__)


def pass_count_text(n: dict) -> str:
    """"4 node(s) in 1 rewrite": the original nodes replaced, and in how many
    rewrites where that differs (a dilated chain is one rewrite of its Convs
    and the ops between them)."""
    nodes, rewrites = n["nodes_replaced"], n["rewrites"]
    return f"{nodes} node(s)" + (f" in {rewrites} rewrite(s)" if rewrites != nodes else "")


def op_count_rows(before: dict, after: dict) -> list[tuple]:
    """(op, count before, count after), the most common before first."""
    ops = sorted(set(before) | set(after), key=lambda op: (-before.get(op, 0), op))
    return [(op, before.get(op, 0), after.get(op, 0)) for op in ops]


def op_count_table(before: dict, after: dict) -> list[str]:
    rows = op_count_rows(before, after)
    width = max([len("op")] + [len(op) for op, _, _ in rows])
    lines = [f"  {'op':<{width}}  {'before':>7}  {'after':>7}"]
    for op, b, a in rows:
        mark = "" if a == b else ("  -" if a < b else "  +")
        lines.append(f"  {op:<{width}}  {b:>7}  {a:>7}{mark}")
    return lines


def target_lines(target: dict) -> list[str]:
    """The compatibility check: a header, then one line per broken rule."""
    if target["fits"]:
        return [f"target {target['profile']}: every node fits"]
    lines = [f"target {target['profile']}: {target['nodes_not_fitting']} node(s) do not fit"]
    return lines + [printable(f"  {v['message']}  [{v['rule']}]") for v in target["violations"]]


def steps_line(steps: Optional[dict]) -> str:
    """A quantized comparison's difference in quantization steps, in one line ("" if none)."""
    parts = []
    for key, label in (("spec", "spec"), ("fused", "onnxruntime fused int8")):
        s = (steps or {}).get(key)
        if s is not None:
            parts.append(f"{label} mean {s['mean']:.3g}, p99 {s['p99']:.3g}, max {s['max']:.3g}")
    float_abs = (steps or {}).get("fused_float_max_abs")
    if float_abs is not None:
        parts.append(f"float outputs under onnxruntime fused int8 max abs {float_abs:.3g}")
    return "difference in quantization steps: " + "; ".join(parts) if parts else ""


def verification_lines(v: Verification) -> list[str]:
    """The whole-model check's verdict; the original's own noise when it was
    measured and matters; what bisection did."""
    lines = []
    if v.performed:
        verdict = ("equivalent within the original's own noise" if v.within_noise
                   else "equivalent within the original's own rounding-tie noise" if v.within_tie_noise
                   else "equivalent" if v.equivalent else "NOT EQUIVALENT")
        lines.append(f"whole-model check ({v.inputs} inputs): {verdict}, max abs {v.max_abs_error:.3g}, "
                     f"max rel {v.max_rel_error:.3g}" + (f" -- {v.detail}" if v.detail else ""))
    elif v.detail:
        lines.append(f"whole-model check: {v.detail}")
    if v.performed and v.quantized_steps:
        lines.append("  " + steps_line(v.quantized_steps))
    if v.unstable and not v.within_noise:
        lines.append(f"  the original model is numerically unstable: its own outputs move by up to "
                     f"{v.noise_abs_error:.3g} ({v.noise_rel_error:.3g} relative to their largest value) under "
                     f"{', '.join(v.noise_probes)}")
    if v.bisection_rolled_back or v.bisection_stopped:
        lines.append(f"  bisection: rolled back {v.bisection_rolled_back} rewrite(s) in {v.bisection_seconds:.1f} s"
                     + (f"; stopped: {v.bisection_stopped}" if v.bisection_stopped else ""))
    return lines


def _summary_lines(r: Report) -> list[str]:
    lines = [f"convrewrite: {r.input or 'model'}" + (" (dry run: nothing written)" if r.dry_run else "")]
    if r.dry_run:
        lines.append(f"  {DRY_RUN_NOTE}")
    lines += op_count_table(r.op_counts_before, r.op_counts_after)
    verb = "would rewrite" if r.dry_run else "rewrote"
    for p, n in r.per_pass().items():
        lines.append(f"pass {p}: {verb} {pass_count_text(n)}")
    rolled_back = [x for x in r.records(ROLLED_BACK) if x.pass_name in r.optimization_passes]
    for x in r.left_alone + rolled_back:
        tag = "rolled back" if x.status == ROLLED_BACK else "left alone"
        who = f"{x.op} '{x.node}'"
        reason = x.reason if x.reason.startswith(who) else f"{who}: {x.reason}"
        lines.append(f"  {tag} [{x.pass_name}" + (f", {x.code}" if x.code else "") + f"]: {reason}")
    worst = r.worst_local_error()
    if worst is not None:
        lines.append(f"worst local error: {worst.max_abs_error:.3g} abs, {worst.max_rel_error:.3g} rel "
                     f"({worst.op} '{worst.node}')")
    lines += verification_lines(r.verification)
    if r.target is not None:
        lines += target_lines(r.target)
    total = r.timings.get("total")
    if total is not None:
        lines.append(f"time: {total:.2f} s")
    if r.output and not r.dry_run:
        lines.append(f"written: {r.output}")
    return lines
