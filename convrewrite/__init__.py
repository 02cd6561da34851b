"""convrewrite: rewrite ConvTranspose, dilated Conv and Resize into operators
every accelerator has, and prove each rewrite computes the same function.

This module is the package's public face.  Like the command line, it is a
caller of the library: it hands the default pass list (`passes.PASSES`) to
the driver, which itself never imports the passes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

from .core.driver import op_counts
from .core.equivalence import Comparison, check_models, compare_outputs
from .core.errors import ConvRewriteError, InputError
from .core.model_io import load_model, save_model
from .core.report import Report

__version__ = "0.2.0"

__all__ = ["optimize", "write_html", "op_counts", "Comparison", "check_models", "compare_outputs",
           "ConvRewriteError", "InputError", "load_model", "save_model", "Report", "__version__"]


def optimize(model: "object | str | Path", passes=None, options: Optional[dict] = None, verify: bool = True,
             rtol: Optional[float] = None, atol: Optional[float] = None, seed: int = 0,
             inputs: Optional[Mapping] = None, dry_run: bool = False, target=None, sketches: bool = False,
             progress=None):
    """Rewrite `model` (an onnx.ModelProto or a path) and verify every rewrite.

    `passes`: pass names (default: all, in the default order) or pass
    objects.  `options`: lowering options by name ("dilated_mode": "slices",
    ...; see `passes.option_names()`), for named passes only; an unknown
    name, or an option of a pass `passes` leaves out, is an error.  `target`: a built-in profile name, a JSON path or a
    Profile, applied whatever the passes.  Returns (new model, Report); the
    input model is never modified.
    """
    from passes import make_passes  # the caller wires the passes; the driver never imports them

    from .core import driver

    if passes is None or all(isinstance(p, str) for p in passes):
        try:
            pass_list = make_passes(passes, options)
        except ValueError as e:
            raise InputError(str(e)) from None
    elif options:
        raise InputError("options are for named passes; configure pass objects through their own options")
    else:
        pass_list = tuple(passes)
    return driver.optimize(model, pass_list, verify=verify, rtol=rtol, atol=atol, seed=seed, inputs=inputs,
                           dry_run=dry_run, target=target, sketches=sketches, progress=progress)


def write_html(report: Report, path: "str | Path", title: str = "convrewrite report") -> None:
    """The report as one self-contained HTML file (atomic write)."""
    from .core.html import render_report
    from .core.model_io import write_text

    write_text(Path(path), render_report(report, title))
