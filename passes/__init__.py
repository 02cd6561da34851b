"""The rewrite passes, in the order `optimize` runs them by default.

resize runs first so that the ConvTranspose it produces is lowered by
convtranspose (the driver's worklist would lower it in any order);
dilated-conv is independent of both; shuffle-motion runs after them, as it
moves the pixel shuffles the others build, and shuffle-spelling last, as it
respells the DepthToSpace nodes shuffle-motion reads.
"""
from __future__ import annotations

from .convtranspose.rewrite import ConvTransposeToConv
from .dilated_conv.rewrite import DilatedConvToSpaceToBatch
from .resize.rewrite import ResizeToConvTranspose
from .shuffle_motion.rewrite import ShuffleMotion
from .shuffle_spelling.rewrite import ShuffleSpelling

PASSES = (ResizeToConvTranspose, ConvTransposeToConv, DilatedConvToSpaceToBatch, ShuffleMotion, ShuffleSpelling)


def pass_names() -> list[str]:
    return [p.name for p in PASSES]


def option_names() -> dict[str, str]:
    """Every lowering option users can set, and the pass it belongs to."""
    return {key: p.name for p in PASSES for key in p.Options.KEYS}


def option_choices() -> dict[str, tuple]:
    """The allowed values of every option that names a form (the CLI's choices)."""
    return {key: values for p in PASSES for key, values in p.Options.CHOICES.items()}


def make_passes(names=None, options=None) -> tuple:
    """Instances of the named passes (default: all), in the default order.

    `options` maps option names (option_names()) to values; each pass takes
    its own into its typed Options.  An unknown name is an error."""
    options = dict(options or {})
    wanted = pass_names() if names is None else list(names)
    unknown = [n for n in wanted if n not in pass_names()]
    if unknown:
        raise ValueError(f"unknown pass {unknown[0]!r}; choose from {', '.join(pass_names())}")
    stray = [k for k in options if k not in option_names()]
    if stray:
        raise ValueError(f"unknown option {stray[0]!r}; options are: {', '.join(option_names())}")
    idle = [k for k in options if option_names()[k] not in wanted]
    if idle:   # given but read by no pass of this run: it would change nothing, silently
        raise ValueError(f"option {idle[0]!r} is the {option_names()[idle[0]]} pass's, which this run leaves out "
                         f"(passes: {', '.join(n for n in pass_names() if n in wanted)})")
    return tuple(p(p.Options.from_dict(options)) for p in PASSES if p.name in wanted)
