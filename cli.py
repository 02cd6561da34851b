#!/usr/bin/env python3
"""convrewrite command line: a thin layer over the library.

Exit codes: 0 written and verified; 1 verification failed (nothing written
unless --force); 2 bad usage or bad input, or an output that cannot be
written (found before the run, or when written); 3 with --strict, some
candidate node of a requested lowering pass was left unrewritten (not one
the --target runs as it is) or some node does not fit the --target profile;
4 internal error (a bug).
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
from contextlib import contextmanager
from pathlib import Path

EXIT_OK, EXIT_NOT_EQUIVALENT, EXIT_BAD_INPUT, EXIT_STRICT, EXIT_INTERNAL = 0, 1, 2, 3, 4

# Progress on stderr: shown when stderr is a terminal, once a run has taken
# PROGRESS_DELAY seconds.  CONVREWRITE_PROGRESS=always shows it at once
# whatever stderr is; CONVREWRITE_PROGRESS=never never shows it.
PROGRESS_DELAY = 2.0
PROGRESS_INTERVAL = 0.1   # redraw at most this often


class ProgressLine:
    """One status line on stderr, rewritten in place ("\r"), cleared at
    the end: `stage done/total`, elapsed seconds.  A plain line is all a
    few stages need, so no display library."""

    def __init__(self, stream=None, delay: "float | None" = None, enabled: bool = True):
        import time

        self.stream = stream or sys.stderr
        self.clock = time.monotonic
        self.start = self.clock()
        self.delay, self.enabled = PROGRESS_DELAY if delay is None else delay, enabled
        self.last_draw, self.width = -1.0, 0
        self.pending, self.timer = None, None
        import threading

        self.lock = threading.Lock()   # the timer's thread and the caller's draw and close
        if enabled and self.delay > 0:  # a long first stage (loading) shows once the delay is over
            self.timer = threading.Timer(self.delay, self._draw_pending)
            self.timer.daemon = True
            self.timer.start()

    def _draw_pending(self) -> None:
        with self.lock:
            pending = self.pending
            if self.enabled and pending is not None and self.width == 0:
                self._draw(*pending)

    @classmethod
    def for_stderr(cls, quiet: bool) -> "ProgressLine":
        mode = os.environ.get("CONVREWRITE_PROGRESS", "").lower()
        if quiet or mode == "never":
            return cls(enabled=False)
        if mode == "always":
            return cls(delay=0.0)
        return cls(enabled=sys.stderr.isatty())

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if stage == "done":
            self.close()
            return
        self.pending = (stage, done, total)
        now = self.clock()
        if now - self.start < self.delay or (now - self.last_draw < PROGRESS_INTERVAL and 0 < done < total):
            return
        with self.lock:
            self._draw(stage, done, total)

    def _draw(self, stage: str, done: int, total: int) -> None:
        self.last_draw = now = self.clock()
        count = f" {done}/{total}" if total else ""
        text = f"convrewrite: {stage}{count}  [{now - self.start:.0f} s]"
        self.stream.write("\r" + text.ljust(self.width))
        self.stream.flush()
        self.width = len(text)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        with self.lock:
            self.enabled, self.pending = False, None
            if self.width:
                self.stream.write("\r" + " " * self.width + "\r")
                self.stream.flush()
                self.width = 0


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def _prog(argv0: str) -> str:
    """How the user started the command: the `convrewrite` script, `python -m
    convrewrite` or `python cli.py`."""
    if argv0.endswith("convrewrite"):
        return os.path.basename(argv0)
    if argv0.endswith("__main__.py"):
        return "python -m convrewrite"
    return "cli.py"


def build_parser() -> argparse.ArgumentParser:
    from passes import option_choices, pass_names

    choices = option_choices()

    p = _Parser(prog=_prog(sys.argv[0]), description="Rewrite ConvTranspose, dilated Conv and Resize into "
                "operators every accelerator has, and prove every rewrite equivalent.")
    p.add_argument("--version", action="version", version=f"convrewrite {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    o = sub.add_parser("optimize", help="rewrite a model and verify it")
    o.add_argument("model", help="input .onnx file")
    o.add_argument("-o", "--output", help="output path (default: MODEL.opt.onnx beside the input)")
    o.add_argument("--passes", default=",".join(pass_names()),
                   help=f"comma-separated, run in the default order (default: {','.join(pass_names())})")
    o.add_argument("--report", help="write the JSON report here")
    o.add_argument("--html", help="write a self-contained HTML report here (each rewrite drawn)")
    o.add_argument("--no-verify", action="store_true", help="skip all numerical verification")
    _tolerance_args(o)
    o.add_argument("--seed", type=_whole_number, default=0, help="seed of the random verification inputs")
    o.add_argument("--dry-run", action="store_true",
                   help="print the plan (what the run would write, built but not checked), write nothing")
    o.add_argument("--strict", action="store_true",
                   help="exit 3 if any candidate node of a requested lowering pass is left unrewritten (a node "
                        "the --target runs as it is does not count) or a node does not fit the --target")
    o.add_argument("--force", action="store_true",
                   help="write even if verification fails; allow output == input")
    o.add_argument("--convtranspose-form", choices=choices["convtranspose_form"],
                   help="convtranspose lowering form (default: auto: the simplest within 1.1x the MACs)")
    o.add_argument("--dilated-mode", choices=choices["dilated_mode"],
                   help="dilated-conv lowering form (default: batch; small phase images use taps, without a "
                        "target unless estimated slower; without a target 1-D Convs of 16+ channels use reshape)")
    o.add_argument("--depth-weight-limit", type=int, metavar="BYTES",
                   help="largest tiled weight the depth form may create (default: 16 MiB)")
    o.add_argument("--dilated-taps-below", type=int, metavar="N",
                   help="use the taps form when a phase image has fewer than N outputs (default: 64)")
    o.add_argument("--no-dilated-chains", action="store_true",
                   help="lower each dilated Conv on its own, never keeping a chain in batch form")
    o.add_argument("--no-dilated-estimates", action="store_true",
                   help="dilated-conv forms by the rules alone: no cost-model overrule of the taps form, no "
                   "reshape form unasked (as with a target)")
    o.add_argument("--resize-mode", choices=choices["resize_mode"],
                   help="resize lowering form (default: deconv; a linear Resize without a target: deconv or "
                   "matmul, whichever the cost model estimates faster; deconv: never matmul unasked)")
    o.add_argument("--resize-nearest", choices=choices["resize_nearest"],
                   help="nearest upsampling form: MAC-free copies + DepthToSpace, or a ConvTranspose "
                   "(default: shuffle; without a target matmul on maps of at most 48 samples per axis)")
    o.add_argument("--target", help="accelerator profile (a built-in name or a JSON file): lower only "
                   "what it cannot run, in forms it can run, and report what still does not fit")
    _quiet_arg(o)

    t = sub.add_parser("check-target", help="report which nodes of a model a target cannot run")
    t.add_argument("model")
    t.add_argument("--target", required=True, help="a built-in profile name or a JSON file")
    t.add_argument("--strict", action="store_true", help="exit 3 if any node does not fit")
    t.add_argument("--report", help="write the JSON target report here")
    t.add_argument("--html", help="write a self-contained HTML report here")
    _quiet_arg(t)

    sub.add_parser("targets", help="list the built-in target profiles")

    c = sub.add_parser("check", help="compare two models on the same inputs")
    c.add_argument("model_a")
    c.add_argument("model_b")
    _tolerance_args(c)
    c.add_argument("--seed", type=_whole_number, default=0)

    sub.add_parser("passes", help="list the passes")
    return p


def _quiet_arg(p):
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print nothing but errors: no summary on stdout, no progress on stderr "
                   "(exit code, output files and --report are unchanged)")


def _version() -> str:
    from convrewrite import __version__

    return __version__


def _tolerance_args(p):
    p.add_argument("--inputs", help="npz file of input tensors keyed by input name (default: random)")
    p.add_argument("--rtol", type=_tolerance, help="relative tolerance, times max |reference| "
                   "(default: 1e-4 float32, 5e-3 float16)")
    p.add_argument("--atol", type=_tolerance, help="absolute tolerance (default: 1e-6 float32, 1e-4 float16)")


def _whole_number(text: str) -> int:
    """A seed: numpy's generators take whole numbers >= 0 only."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return value


def _tolerance(text: str) -> float:
    """A finite number >= 0 (a NaN or negative tolerance would let no rewrite pass)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number >= 0")
    return value


def load_inputs(path):
    import zipfile
    import zlib

    import numpy as np

    from convrewrite import InputError

    if path is None:
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    # a damaged archive: BadZipFile (truncated, a bad CRC-32), zlib.error (a damaged compressed member)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise InputError(f"--inputs {path}: not a readable .npz file ({str(e).splitlines()[0]})") from None


def lowering_options(args) -> dict:
    """The pass options the user gave explicitly (a pass tells an explicit
    choice from its default: with a target, an explicit form is tried first)."""
    given = {"convtranspose_form": args.convtranspose_form, "dilated_mode": args.dilated_mode,
             "depth_weight_limit": args.depth_weight_limit, "dilated_taps_below": args.dilated_taps_below,
             "resize_mode": args.resize_mode, "resize_nearest": args.resize_nearest}
    options = {k: v for k, v in given.items() if v is not None}
    if args.no_dilated_chains:
        options["dilated_chains"] = False
    if args.no_dilated_estimates:
        options["dilated_estimates"] = False
    return options


def _check_options_run(options: dict, names: list) -> None:
    """A pass option whose pass --passes leaves out would change nothing: bad usage, in flag names."""
    from convrewrite import InputError
    from passes import option_names, pass_names

    unknown = [n for n in names if n not in pass_names()]
    if unknown:   # that first: an option is not "left out" by a misspelt pass
        raise InputError(f"unknown pass {unknown[0]!r}; choose from {', '.join(pass_names())}")
    owner = option_names()
    for key in options:
        if owner.get(key) and owner[key] not in names:
            flag = "--no-" + key.replace("_", "-") if options[key] is False else "--" + key.replace("_", "-")
            raise InputError(f"{flag} is an option of the {owner[key]} pass, which --passes {','.join(names)} "
                             "leaves out")


@contextmanager
def _writing(path, what: str):
    """A write after the run that fails (a full disk, a directory put in
    the way, a rename a bind mount refuses) is an output path found
    unusable, as check_output_paths words one before the run, not a bug:
    one line, exit 2.  The writers leave no temporary file behind."""
    from convrewrite import InputError

    try:
        yield
    except OSError as e:   # strerror: without the paths (and their reprs) str(e) adds
        reason = e.strerror or (str(e).splitlines() or [type(e).__name__])[0]
        raise InputError(f"{path}: cannot write {what}: {reason}") from None


def default_output(model: Path) -> Path:
    stem = model.name[:-5] if model.name.endswith(".onnx") else model.name
    return model.with_name(stem + ".opt.onnx")


def cmd_optimize(args) -> int:
    from convrewrite import optimize, save_model, write_html
    from convrewrite.core.model_io import check_output_paths, write_text

    model_path = Path(args.model)
    output = Path(args.output) if args.output else default_output(model_path)
    writes = {"-o": output} if not args.dry_run else {}
    writes.update({option: Path(path) for option, path in (("--report", args.report), ("--html", args.html)) if path})
    check_output_paths(writes, model_path, force_option="-o" if args.force else "", model_option="-o")
    names = [n.strip() for n in args.passes.split(",") if n.strip()]
    if not names:
        from convrewrite import InputError
        from passes import pass_names

        raise InputError(f"--passes {args.passes!r} names no pass; choose from {', '.join(pass_names())}")
    options = lowering_options(args)
    _check_options_run(options, names)
    progress = ProgressLine.for_stderr(args.quiet)
    try:
        model, report = optimize(model_path, passes=names, options=options, verify=not args.no_verify,
                                 rtol=args.rtol, atol=args.atol, seed=args.seed,
                                 inputs=load_inputs(args.inputs), dry_run=args.dry_run, target=args.target,
                                 sketches=bool(args.html), progress=progress)
    finally:
        progress.close()
    v = report.verification
    failed = not args.no_verify and not args.dry_run and v.equivalent is not True
    write = not args.dry_run and (not failed or args.force)
    report.output = str(output) if write else None
    if write:
        with _writing(output, "the output model (-o)"):
            save_model(model, output)
    if args.report:
        with _writing(args.report, "the JSON report (--report)"):
            write_text(Path(args.report), report.to_json() + "\n")
    if args.html:
        with _writing(args.html, "the HTML report (--html)"):
            write_html(report, args.html, title=f"convrewrite: {model_path.name}")
    if not args.quiet:
        print(report.summary())
    if failed:
        print(f"verification failed: {'written anyway (--force)' if write else 'nothing written'}",
              file=sys.stderr)
        return EXIT_NOT_EQUIVALENT
    if args.strict and report.unfinished:
        print(f"--strict: {len(report.unfinished)} candidate node(s) left unrewritten", file=sys.stderr)
        return EXIT_STRICT
    if args.strict and report.target is not None and not report.target["fits"]:
        print(f"--strict: {report.target['nodes_not_fitting']} node(s) do not fit target "
              f"{report.target['profile']}", file=sys.stderr)
        return EXIT_STRICT
    return EXIT_OK


def cmd_check_target(args) -> int:
    import json

    from convrewrite import Report, load_model, op_counts, write_html
    from convrewrite.core.driver import check_target
    from convrewrite.core.model_io import check_output_paths, write_text
    from convrewrite.core.report import target_lines
    from convrewrite.target import load_profile

    check_output_paths({option: Path(path) for option, path in (("--report", args.report), ("--html", args.html))
                        if path}, Path(args.model))
    profile = load_profile(args.target)
    model = load_model(args.model)
    result = check_target(model, profile)
    if args.report:
        with _writing(args.report, "the JSON target report (--report)"):
            write_text(Path(args.report), json.dumps(result, indent=2) + "\n")
    if args.html:
        counts = op_counts(model)
        report = Report(input=args.model, op_counts_before=counts, op_counts_after=counts, target=result)
        with _writing(args.html, "the HTML report (--html)"):
            write_html(report, args.html, title=f"check-target {profile.name}: {Path(args.model).name}")
    if not args.quiet:
        print("\n".join(target_lines(result)))
    return EXIT_STRICT if args.strict and not result["fits"] else EXIT_OK


def cmd_targets(args) -> int:
    from convrewrite.target import builtin_profiles

    profiles = builtin_profiles()
    width = max(len(name) for name, _ in profiles)
    for name, description in profiles:
        print(f"{name:<{width}}  {description}")
    return EXIT_OK


def cmd_check(args) -> int:
    from convrewrite import check_models, load_model
    from convrewrite.core.equivalence import RunError

    a, b = load_model(args.model_a), load_model(args.model_b)
    try:
        result = check_models(a, b, load_inputs(args.inputs), args.seed, args.rtol, args.atol)
    except RunError as e:
        from convrewrite import InputError
        raise InputError(f"cannot run the models: {e}") from None
    for o in result.outputs:
        print(o)
    if result and result.compared_nothing:   # agreement on nothing: said, still exit 0 (nothing differs)
        print("equivalent, but no value was compared: the models have no outputs, or every output is empty or "
              "NaN/Inf at the same places in both on these inputs")
    else:
        print("equivalent" if result else "NOT equivalent")
    return EXIT_OK if result else EXIT_NOT_EQUIVALENT


def cmd_passes(args) -> int:
    from passes import PASSES

    width = max(len(p.name) for p in PASSES)
    for p in PASSES:
        print(f"{p.name:<{width}}  {p.description}")
    return EXIT_OK


def main(argv=None) -> int:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from convrewrite import ConvRewriteError

    args = build_parser().parse_args(argv)
    if argv is None:
        # The process's own command line: what the imports created lives as
        # long as the process, and moved out of the cyclic garbage
        # collector's sight, the collections a run triggers no longer walk it
        # (5-10% of a run of a thousand candidates otherwise).  Not for a
        # caller that runs commands in its own process (argv given): freezing
        # would keep its cyclic garbage of the moment for good.
        gc.freeze()
    commands = {"optimize": cmd_optimize, "check": cmd_check, "passes": cmd_passes,
                "targets": cmd_targets, "check-target": cmd_check_target}
    try:
        return commands[args.command](args)
    except ConvRewriteError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: one line, not a traceback (CONVREWRITE_DEBUG=1 shows it)
        if os.environ.get("CONVREWRITE_DEBUG"):
            raise
        from convrewrite.core.errors import without_addresses

        print(f"internal error: {type(e).__name__}: {without_addresses(str(e).splitlines()[0]) if str(e) else ''} "
              "(set CONVREWRITE_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
