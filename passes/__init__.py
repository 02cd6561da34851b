"""The rewrite passes, in the order `optimize` runs them by default.

resize runs first so that the ConvTranspose it produces is lowered by
convtranspose; dilated-conv is independent of both.
"""
from __future__ import annotations

from .convtranspose.rewrite import ConvTransposeToConv
from .dilated_conv.rewrite import DilatedConvToSpaceToBatch
from .resize.rewrite import ResizeToConvTranspose

PASSES = (ResizeToConvTranspose, ConvTransposeToConv, DilatedConvToSpaceToBatch)


def pass_names() -> list[str]:
    return [p.name for p in PASSES]


def make_passes(names=None, options=None) -> tuple:
    """Instances of the named passes (default: all), in the default order.

    `options` is a dict of lowering options (dilated_mode, resize_mode, ...);
    each pass class takes the ones it knows in `from_options`.
    """
    options = dict(options or {})
    wanted = pass_names() if names is None else list(names)
    unknown = [n for n in wanted if n not in pass_names()]
    if unknown:
        raise ValueError(f"unknown pass {unknown[0]!r}; choose from {', '.join(pass_names())}")
    if ConvTransposeToConv.name in wanted:  # it lowers the ConvTranspose resize emits
        options["resize_finisher"] = ConvTransposeToConv.from_options(options)
    return tuple(p.from_options(options) for p in PASSES if p.name in wanted)
