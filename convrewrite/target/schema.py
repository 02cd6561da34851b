"""The profile JSON format: its keys, their vocabulary, and strict validation.

`validate(raw, label)` checks a parsed JSON object key by key and returns it
normalized (lists as tuples); the first problem raises InputError with one
line naming the file and the key path.
"""
from __future__ import annotations

import difflib
import json
from functools import lru_cache
from typing import Any, Optional

import onnx.defs

from ..core.errors import InputError

# --- vocabulary --------------------------------------------------------------

GROUP_KINDS = ("standard", "depthwise", "grouped")
PAD_KINDS = ("valid", "same_upper", "same_lower", "same_symmetric", "symmetric", "any")
OUTPUT_SIZE_KINDS = ("input_times_stride", "full", "onnx2tf_valid")
COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                    "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
AXIS_KINDS = ("batch", "channel", "spatial")   # axis 0, axis 1, axes 2 and up (ONNX's N, C, spatial order)
MODES = {
    "DepthToSpace": ("DCR", "CRD"),
    "Resize": ("nearest", "linear", "cubic"),
    "Upsample": ("nearest", "linear"),
    "Pad": ("constant", "reflect", "edge", "wrap"),
}

# Keys every operator entry takes, then the keys of each operator family.
COMMON_KEYS = ("supported", "note", "max_rank", "max_non_unit_dims")
_CONV = ("spatial_ranks", "kernel_sizes", "kernel_shapes", "max_kernel_area", "strides",
         "equal_strides", "dilations", "equal_dilations", "dilation_requires_unit_stride", "groups")
_RESIZE = ("spatial_ranks", "modes", "factors", "max_factor", "equal_factors", "unit_input", "no_identity")
OP_KEYS = {
    "Conv": _CONV + ("pads",),
    "ConvTranspose": _CONV + ("output_size",),
    "Resize": _RESIZE + ("coordinate_transformation_modes", "nearest_modes", "corner_factors",
                         "equal_corner_factors"),
    "Upsample": _RESIZE,
    "DepthToSpace": ("modes", "block_sizes"),
    "SpaceToDepth": ("block_sizes",),
    "Pad": ("modes", "spatial_only"),
    "Slice": ("steps", "strided_axes", "no_reshaped_inputs"),
    "Transpose": ("batch_axis_fixed", "within_last_axes", "max_dim", "max_product_of_rank_minus_2_dims"),
    "MatMul": ("computed_operands",),
    "Gather": ("gather_axes",),
    "LayerNormalization": ("channel_reduction_needs_unit_dim",),
    "Concat": ("no_channel_join_of_spatial_joins", "no_reshaped_inputs"),
}
# Keys that measure align_corners' scale, (output - 1) / (input - 1): meaningless for another mode.
ALIGN_CORNERS_KEYS = ("corner_factors", "equal_corner_factors")
GLOBAL_KEYS = ("name", "description", "references", "extends", "max_rank", "batch_must_be_one", "int8_only",
               "separate_conv_padding", "standard_convs_first", "bias_after_shuffle", "static_shapes",
               "dense_dilation",
               "unlisted_operators", "unsupported_operators", "operators")


# --- validation ----------------------------------------------------------------

class _Bad(Exception):
    """A validation problem at a key path; turned into InputError once."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}" if path else message)


def validate(raw: dict, label: str) -> dict:
    try:
        return _validate_top(raw)
    except _Bad as e:
        raise InputError(f"profile {label}: {e}") from None


def _validate_top(raw: dict) -> dict:
    _check_keys(raw, GLOBAL_KEYS, "")
    out = {}
    for key in ("name", "description", "extends"):
        if key in raw:
            out[key] = _string(raw[key], key, allow_empty=(key == "description"))
    if "references" in raw:
        out["references"] = [_string(v, f"references[{k}]") for k, v in enumerate(_list(raw["references"], "references"))]
    if "max_rank" in raw:  # null: no limit (overrides the limit of an extended profile)
        out["max_rank"] = None if raw["max_rank"] is None else _positive_int(raw["max_rank"], "max_rank")
    for key in ("batch_must_be_one", "int8_only", "separate_conv_padding", "standard_convs_first",
                "bias_after_shuffle", "static_shapes"):
        if key in raw:
            out[key] = _bool(raw[key], key)
    if "dense_dilation" in raw:  # null: none (overrides an extended profile's)
        value = raw["dense_dilation"]
        out["dense_dilation"] = None if value is None else _dense_dilation(value, "dense_dilation")
    if "unlisted_operators" in raw:
        out["unlisted_operators"] = _choice(raw["unlisted_operators"], ("allowed", "unsupported"),
                                            "unlisted_operators")
    missing = []
    for k, op in enumerate(_list(raw.get("unsupported_operators", []), "unsupported_operators")):
        missing.append(_op_name(op, f"unsupported_operators[{k}]"))
    out["unsupported_operators"] = missing
    ops = raw.get("operators", {})
    if not isinstance(ops, dict):
        raise _Bad("operators", f"must be an object mapping operator names to rules, not {json_type(ops)}")
    out["operators"] = {}
    for op, entry in ops.items():
        _op_name(op, "operators")
        if op in missing:
            raise _Bad(f"operators.{op}", "also listed in unsupported_operators; keep one of the two")
        out["operators"][op] = _validate_entry(op, entry, f"operators.{op}")
    return out


def _validate_entry(op: str, entry: Any, path: str):
    if isinstance(entry, dict):
        return _validate_rule(op, entry, path)
    if isinstance(entry, list):
        if not entry:
            raise _Bad(path, 'empty list of forms; use {"supported": false} for an operator the target lacks')
        rules = [_validate_rule(op, e, f"{path}[{k}]") for k, e in enumerate(entry)]
        if len(rules) > 1 and any(r.get("supported") is False for r in rules):
            raise _Bad(path, '"supported": false cannot be one of several forms; give it alone')
        return rules
    raise _Bad(path, f"must be an object (one rule) or a list of objects (alternative forms), not {json_type(entry)}")


def _validate_rule(op: str, rule: Any, path: str) -> dict:
    if not isinstance(rule, dict):
        raise _Bad(path, f"must be an object, not {json_type(rule)}")
    _check_keys(rule, COMMON_KEYS + OP_KEYS.get(op, ()), path, op=op)
    out = {}
    for key, value in rule.items():
        out[key] = _VALUE_CHECKS[key](value, f"{path}.{key}", op)
    if out.get("supported") is False and set(out) - {"supported", "note"}:
        extra = sorted(set(out) - {"supported", "note"})[0]
        raise _Bad(path, f"'\"supported\": false' takes no limits (found '{extra}')")
    corner = [k for k in ALIGN_CORNERS_KEYS if k in out]
    if corner and out.get("coordinate_transformation_modes") != ("align_corners",):
        raise _Bad(path, f"'{corner[0]}' measures align_corners' scale (output-1)/(input-1): "
                         f'give it with "coordinate_transformation_modes": ["align_corners"]')
    return out


def _check_keys(obj: dict, allowed: tuple, path: str, op: Optional[str] = None) -> None:
    for key in obj:
        if key in allowed:
            continue
        where = path or "top level"
        other = [o for o, keys in OP_KEYS.items() if key in keys]
        if op is not None and other:
            raise _Bad(where, f"key '{key}' does not apply to {op} (it is for {', '.join(other)}); "
                              f"keys for {op}: {', '.join(allowed)}")
        close = difflib.get_close_matches(str(key), allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise _Bad(where, f"unknown key '{key}' ({hint}expected one of: {', '.join(allowed)})")


# --- value checkers (value, path, op) -> normalized value -----------------------

def json_type(v) -> str:
    return {bool: "true/false", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object", type(None): "null"}.get(type(v), type(v).__name__)


def _string(v, path, allow_empty=False) -> str:
    if not isinstance(v, str) or (not v and not allow_empty):
        raise _Bad(path, f"must be a non-empty string, not {json_type(v) if not isinstance(v, str) else 'an empty string'}")
    return v


def _bool(v, path, op=None) -> bool:
    if not isinstance(v, bool):
        raise _Bad(path, f"must be true or false, not {json_type(v)} {json.dumps(v)}")
    return v


def _list(v, path) -> list:
    if not isinstance(v, list):
        raise _Bad(path, f"must be a list, not {json_type(v)}")
    return v


def _positive_int(v, path, op=None) -> int:
    if type(v) is not int or v < 1:
        raise _Bad(path, f"must be a positive integer, not {json.dumps(v)}")
    return v


def _choice(v, choices, path) -> str:
    if v not in choices or not isinstance(v, str):
        raise _Bad(path, f"{json.dumps(v)} is not one of: {', '.join(choices)}")
    return v


def _int_list(nonzero_only=False):
    def check(v, path, op=None) -> tuple:
        items = _list(v, path)
        if not items:
            raise _Bad(path, "empty list: nothing would be allowed; leave the key out for no limit, "
                             'or use "supported": false')
        for k, x in enumerate(items):
            ok = type(x) is int and (x != 0 if nonzero_only else x >= 1)
            if not ok:
                kind = "non-zero integer" if nonzero_only else "positive integer"
                raise _Bad(f"{path}[{k}]", f"must be a {kind}, not {json.dumps(x)}")
        return tuple(items)
    return check


def _shape_list(v, path, op=None) -> tuple:
    items = _list(v, path)
    if not items:
        raise _Bad(path, "empty list: nothing would be allowed; leave the key out for no limit")
    return tuple(_int_list()(s, f"{path}[{k}]") for k, s in enumerate(items))


def _choices(vocab_of):
    def check(v, path, op=None) -> tuple:
        vocab = vocab_of(op)
        items = _list(v, path)
        if not items:
            raise _Bad(path, "empty list: nothing would be allowed; leave the key out for no limit")
        for k, x in enumerate(items):
            if x not in vocab or not isinstance(x, str):
                raise _Bad(f"{path}[{k}]", f"{json.dumps(x)} is not one of: {', '.join(vocab)}")
        return tuple(items)
    return check


def _note(v, path, op=None) -> str:
    return _string(v, path, allow_empty=True)


DENSE_DILATION_KEYS = ("native_dilations", "min_macs_saved_per_output", "min_dense_ratio", "note")


def _dense_dilation(v, path) -> dict:
    """{"native_dilations": [1, 2], "min_macs_saved_per_output": N, "min_dense_ratio": R,
    "note": "..."}: the native factors are required, the rest optional."""
    if not isinstance(v, dict):
        raise _Bad(path, f"must be null or an object with {', '.join(DENSE_DILATION_KEYS)}, not {json_type(v)}")
    _check_keys(v, DENSE_DILATION_KEYS, path)
    if "native_dilations" not in v:
        raise _Bad(path, "needs 'native_dilations': the dilation factors the hardware steps by itself, e.g. [1, 2]")
    out = {"native_dilations": _int_list()(v["native_dilations"], f"{path}.native_dilations")}
    if "min_macs_saved_per_output" in v:
        key = "min_macs_saved_per_output"
        out[key] = _positive_int(v[key], f"{path}.{key}")
    if "min_dense_ratio" in v:
        ratio = v["min_dense_ratio"]
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio >= 1:
            raise _Bad(f"{path}.min_dense_ratio", f"must be a number of at least 1, not {json.dumps(ratio)}")
        out["min_dense_ratio"] = float(ratio)
    if "note" in v:
        out["note"] = _note(v["note"], f"{path}.note")
    return out


_VALUE_CHECKS = {
    "supported": _bool, "note": _note, "max_rank": _positive_int, "max_non_unit_dims": _positive_int,
    "spatial_ranks": _int_list(), "kernel_sizes": _int_list(), "kernel_shapes": _shape_list,
    "max_kernel_area": _positive_int, "strides": _int_list(), "equal_strides": _bool,
    "dilations": _int_list(), "equal_dilations": _bool, "dilation_requires_unit_stride": _bool,
    "groups": _choices(lambda op: GROUP_KINDS), "pads": _choices(lambda op: PAD_KINDS),
    "output_size": _choices(lambda op: OUTPUT_SIZE_KINDS), "modes": _choices(lambda op: MODES[op]),
    "coordinate_transformation_modes": _choices(lambda op: COORDINATE_MODES),
    "nearest_modes": _choices(lambda op: NEAREST_MODES), "factors": _int_list(),
    "max_factor": _positive_int,
    "equal_factors": _bool, "unit_input": _bool, "no_identity": _bool, "block_sizes": _int_list(), "steps": _int_list(nonzero_only=True),
    "spatial_only": _bool, "batch_axis_fixed": _bool,
    "corner_factors": _int_list(), "equal_corner_factors": _bool,
    "strided_axes": _choices(lambda op: AXIS_KINDS), "within_last_axes": _positive_int,
    "max_dim": _positive_int, "max_product_of_rank_minus_2_dims": _positive_int, "computed_operands": _bool,
    "gather_axes": _choices(lambda op: AXIS_KINDS),
    "channel_reduction_needs_unit_dim": _bool, "no_channel_join_of_spatial_joins": _bool,
    "no_reshaped_inputs": _bool,
}


@lru_cache(maxsize=1)
def _onnx_op_names() -> tuple:
    return tuple(sorted({s.name for s in onnx.defs.get_all_schemas_with_history()
                         if s.domain in ("", "ai.onnx")}))


def _op_name(op: Any, path: str) -> str:
    """An ONNX operator name, or 'domain.Op' for another domain."""
    if not isinstance(op, str) or not op:
        raise _Bad(path, f"operator names must be non-empty strings, not {json.dumps(op)}")
    if "." in op:
        domain, _, name = op.rpartition(".")
        if domain and name:
            return op
    if op in _onnx_op_names():
        return op
    close = difflib.get_close_matches(op, _onnx_op_names(), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise _Bad(path, f"unknown ONNX operator '{op}'{hint}; write 'domain.Op' for operators of other domains")
