"""Target profiles: what an accelerator can run, as data.

A profile is a JSON object (format in the README, "Target profiles").  It describes
*restrictions*: an operator the profile does not mention is allowed, unless
`"unlisted_operators": "unsupported"` turns the table into the complete list
of what the target runs.  Each operator entry is either one rule (an object)
or a list of alternative rules ("forms"): a node fits when it satisfies every
limit of at least one of them.

Loading is strict: every key, type and value is checked, and the first
problem is reported in one line that names the file and the key path:

    profile foo.json: operators.ConvTranspose: unknown key 'kernal_shapes'
    (did you mean 'kernel_shapes'? expected one of: ...)

The JSON schema and its validation live in schema.py.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Mapping, Optional

from ..core.errors import InputError
from .schema import json_type, validate


@dataclass(frozen=True)
class OpRule:
    """One set of limits for one operator; None / False means "no limit".

    `where` is the rule's path in the profile ("operators.Conv[1]"), used to
    name the rule a node breaks.
    """

    supported: bool = True
    note: str = ""
    max_rank: Optional[int] = None
    max_non_unit_dims: Optional[int] = None
    spatial_ranks: Optional[tuple] = None
    kernel_sizes: Optional[tuple] = None
    kernel_shapes: Optional[tuple] = None
    max_kernel_area: Optional[int] = None
    strides: Optional[tuple] = None
    equal_strides: bool = False
    dilations: Optional[tuple] = None
    equal_dilations: bool = False
    dilation_requires_unit_stride: bool = False
    groups: Optional[tuple] = None
    pads: Optional[tuple] = None
    output_size: Optional[tuple] = None
    modes: Optional[tuple] = None
    coordinate_transformation_modes: Optional[tuple] = None
    nearest_modes: Optional[tuple] = None
    factors: Optional[tuple] = None
    equal_factors: bool = False
    max_factor: Optional[int] = None
    unit_input: bool = False
    no_identity: bool = False
    block_sizes: Optional[tuple] = None
    steps: Optional[tuple] = None
    spatial_only: bool = False
    batch_axis_fixed: bool = False
    corner_factors: Optional[tuple] = None
    equal_corner_factors: bool = False
    strided_axes: Optional[tuple] = None
    within_last_axes: Optional[int] = None
    max_dim: Optional[int] = None
    max_product_of_rank_minus_2_dims: Optional[int] = None
    computed_operands: bool = False
    gather_axes: Optional[tuple] = None
    channel_reduction_needs_unit_dim: bool = False
    no_channel_join_of_spatial_joins: bool = False
    no_reshaped_inputs: bool = False
    where: str = ""

    def to_dict(self) -> dict:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "where" or v == f.default:
                continue
            out[f.name] = [list(x) if isinstance(x, tuple) else x for x in v] if isinstance(v, tuple) else v
        return out


@dataclass(frozen=True)
class DenseDilation:
    """How a target computes a dilated Conv it cannot dilate by itself: as a
    dense kernel that stores the skipped positions as zeros and multiplies
    them too (the profile's `dense_dilation`).

    The hardware steps over the input by a factor of `native_dilations` (1
    always).  A dilation d on an axis is split into the largest native factor
    n dividing d, done by the hardware, and d/n, written into the kernel:
    k taps become (k - 1) * d/n + 1 dense ones.  A Conv is worth lowering
    when its dense kernel costs at least `min_macs_saved_per_output` more
    multiply-accumulates per output value than its true taps, and at least
    `min_dense_ratio` times as many (a target that runs the true taps'
    one-tap Convs less efficiently than one large kernel needs the ratio).
    """

    native_dilations: tuple = (1,)
    min_macs_saved_per_output: int = 1
    min_dense_ratio: float = 1.0
    note: str = ""

    def dense_kernel(self, kernel: tuple, dilations: tuple) -> tuple:
        """The taps per axis of the kernel the target computes."""
        return tuple((k - 1) * (d // self.native_factor(d)) + 1 for k, d in zip(kernel, dilations))

    def native_factor(self, dilation: int) -> int:
        """The part of `dilation` the hardware does itself."""
        return max(n for n in (1,) + tuple(self.native_dilations) if dilation % n == 0)

    def to_dict(self) -> dict:
        out = {"native_dilations": list(self.native_dilations),
               "min_macs_saved_per_output": self.min_macs_saved_per_output,
               "min_dense_ratio": self.min_dense_ratio}
        return {**out, "note": self.note} if self.note else out


@dataclass(frozen=True)
class Profile:
    """A target: global limits plus per-operator rules.

    The questions passes ask are `max_rank`, `batch_must_be_one`,
    `supports(op)` and `allows_op(op, **facts)` (see convrewrite.target).
    """

    name: str
    description: str = ""
    references: tuple = ()
    max_rank: Optional[int] = None
    batch_must_be_one: bool = False
    int8_only: bool = False        # computes int8 only: float compute left in a quantized model does not fit
    # the toolchain turns a Conv's padding other than VALID/SAME into a PAD op of its own (TFLite's
    # CONV_2D pads only VALID or SAME): form variants whose Convs pad their own input go after the others
    separate_conv_padding: bool = False
    # a preference, not a limit: a toolchain path of the target fails on depthwise and grouped Convs
    # (onnx2tf's full-integer int8 quantizer and DEPTHWISE_CONV_2D): where a node has a lowering whose
    # Convs are all group 1, it is taken before one that builds Convs with groups
    standard_convs_first: bool = False
    # a preference, not a limit: the toolchain's int8 quantizer can give a pixel shuffle's output the
    # quantization of what reads it while its input keeps the Conv's (onnx2tf: DEPTH_TO_SPACE before a
    # CONCATENATION), so a lowered ConvTranspose adds its bias after the shuffle (the Add requantizes)
    bias_after_shuffle: bool = False
    # every graph input's shape must be static: the toolchain keeps the shape arithmetic of a symbolic
    # dimension (onnx2tf: SHAPE, SLICE, CONCATENATION), which the target runs on the host
    static_shapes: bool = False
    # a preference, not a limit: the target runs a dilated Conv, but as a dense kernel (DenseDilation);
    # one whose dense kernel costs enough more than its true taps is lowered to a form with only true taps
    dense_dilation: Optional[DenseDilation] = None
    unlisted_operators: str = "allowed"
    operators: Mapping[str, tuple] = field(default_factory=lambda: MappingProxyType({}))
    origin: str = ""  # "built-in" or the file it was read from

    def __hash__(self) -> int:  # `operators` is a read-only mapping; hash what names a profile
        return hash((self.name, self.origin))

    def rules(self, op_type: str) -> Optional[tuple]:
        """The alternative rules for `op_type` (None: not in the table)."""
        return self.operators.get(op_type)

    def supports(self, op_type: str) -> bool:
        """False when the target has no such operator at all."""
        rules = self.rules(op_type)
        if rules is None:
            return self.unlisted_operators == "allowed"
        return any(r.supported for r in rules)

    def allows_op(self, op_type: str, **facts) -> bool:
        """Can the target run `op_type` with these attributes (ONNX defaults
        for those not given) and facts (rank, factors, steps, group_kind, ...;
        not checked when not given)?  See convrewrite.target.op_violations."""
        from .check import op_violations

        return not op_violations(self, op_type, **facts)

    def to_dict(self) -> dict:
        ops = {op: (rules[0].to_dict() if len(rules) == 1 else [r.to_dict() for r in rules])
               for op, rules in self.operators.items()}
        return {"name": self.name, "description": self.description, "references": list(self.references),
                "max_rank": self.max_rank, "batch_must_be_one": self.batch_must_be_one, "int8_only": self.int8_only,
                "separate_conv_padding": self.separate_conv_padding,
                "standard_convs_first": self.standard_convs_first, "bias_after_shuffle": self.bias_after_shuffle,
                "static_shapes": self.static_shapes,
                "dense_dilation": self.dense_dilation.to_dict() if self.dense_dilation else None,
                "unlisted_operators": self.unlisted_operators, "operators": ops}


# --- loading -------------------------------------------------------------------

def builtin_names() -> list[str]:
    return sorted(p.name[:-5] for p in _builtin_dir().iterdir() if p.name.endswith(".json"))


def builtin_profiles() -> list[tuple[str, str]]:
    """(name, one-line description) of every built-in profile."""
    return [(name, load_profile(name).description) for name in builtin_names()]


def load_profile(name_or_path: "str | Path") -> Profile:
    """A built-in profile by name, or a JSON profile file.  Raises InputError
    with a one-line message naming the problem and where it is."""
    if isinstance(name_or_path, Profile):
        return name_or_path
    text = str(name_or_path)
    if text in builtin_names():
        return _load_builtin(text)
    path = Path(text)
    if not path.exists():
        if path.suffix.lower() == ".json" or "/" in text or "\\" in text:
            raise InputError(f"profile {text}: no such file")
        raise InputError(f"unknown target profile '{text}': not a built-in profile "
                         f"({', '.join(builtin_names())}) and not a file")
    return _build(_resolve(path, str(path), seen=()), origin=str(path))


@lru_cache(maxsize=None)
def _load_builtin(name: str) -> Profile:
    return _build(_resolve(_builtin_dir() / f"{name}.json", f"'{name}' (built-in)", seen=()), origin="built-in")


def _builtin_dir():
    return resources.files("convrewrite") / "profiles"


def _read(path, label: str) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise InputError(f"profile {label}: is a directory, not a JSON file") from None
    except UnicodeDecodeError:
        raise InputError(f"profile {label}: not UTF-8 text") from None
    except OSError as e:
        raise InputError(f"profile {label}: cannot read it ({e.strerror or e})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"profile {label}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:   # json's decoder recurses once per nested array or object
        raise InputError(f"profile {label}: not a profile: JSON nested too deeply") from None
    if not isinstance(raw, dict):
        raise InputError(f"profile {label}: the top level must be a JSON object, not {json_type(raw)}")
    return raw


def _resolve(path, label: str, seen: tuple) -> dict:
    """Read, validate, and merge onto the profile it `extends`."""
    spec = validate(_read(path, label), label)
    spec.setdefault("name", Path(str(path)).stem)
    base_name = spec.pop("extends", None)
    if base_name is None:
        return spec
    if base_name in builtin_names():
        base_path, base_label = _builtin_dir() / f"{base_name}.json", f"'{base_name}' (built-in)"
    else:
        base_path = Path(str(path)).parent / base_name
        base_label = str(base_path)
        if not base_path.is_file():
            raise InputError(f"profile {label}: extends: '{base_name}' is neither a built-in profile "
                             f"({', '.join(builtin_names())}) nor a file next to this one")
    chain = seen + (_key(path),)
    if _key(base_path) in chain:
        raise InputError(f"profile {label}: extends: circular chain through '{base_name}'")
    return _merge(_resolve(base_path, base_label, chain), spec)


def _key(path) -> str:
    try:
        return str(Path(str(path)).resolve())
    except OSError:
        return str(path)


def _merge(base: dict, child: dict) -> dict:
    """Child keys override; operator entries are replaced whole, per operator."""
    out = {**base, **{k: v for k, v in child.items() if k not in ("operators", "unsupported_operators")}}
    if "description" not in child:
        out["description"] = f"{base['name']} as modified by {child['name']}"
    ops = dict(base.get("operators", {}))
    missing = [op for op in base.get("unsupported_operators", []) if op not in child.get("operators", {})]
    for op in child.get("unsupported_operators", []):
        ops.pop(op, None)
        if op not in missing:
            missing.append(op)
    ops.update(child.get("operators", {}))
    out["operators"], out["unsupported_operators"] = ops, missing
    return out


def _build(spec: dict, origin: str) -> Profile:
    ops = {}
    for op in spec.get("unsupported_operators", []):
        ops[op] = (OpRule(supported=False, where="unsupported_operators"),)
    for op, entry in spec.get("operators", {}).items():
        if isinstance(entry, dict):
            ops[op] = (OpRule(where=f"operators.{op}", **entry),)
        else:
            ops[op] = tuple(OpRule(where=f"operators.{op}[{k}]", **e) for k, e in enumerate(entry))
    return Profile(name=spec["name"], description=spec.get("description", ""),
                   references=tuple(spec.get("references", ())), max_rank=spec.get("max_rank"),
                   batch_must_be_one=spec.get("batch_must_be_one", False), int8_only=spec.get("int8_only", False),
                   separate_conv_padding=spec.get("separate_conv_padding", False),
                   standard_convs_first=spec.get("standard_convs_first", False),
                   bias_after_shuffle=spec.get("bias_after_shuffle", False),
                   static_shapes=spec.get("static_shapes", False),
                   dense_dilation=DenseDilation(**spec["dense_dilation"]) if spec.get("dense_dilation") else None,
                   unlisted_operators=spec.get("unlisted_operators", "allowed"),
                   operators=MappingProxyType(ops), origin=origin)
