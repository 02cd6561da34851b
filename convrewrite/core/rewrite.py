"""The pass contract: match is pure, forms say how, the driver alone edits.

A pass is a small object:

    name          short id used on the command line ("convtranspose")
    description   one line for `cli.py passes`
    op_types      the operators it looks at (a cheap filter before candidate)
    forms         its lowering forms, in order of simplicity (see forms.py)
    mac_bound     None, or: prefer forms within this factor of the node's MACs
    options       a frozen dataclass of its typed options (OPTION_KEYS maps
                  the option names users write to its fields)
    preferred()   the form names the user asked for, best first
    preferred_for(match)   (optional) the same for one match, where an
                  option concerns some nodes only (resize_nearest: nearest)
    candidate(node, graph) -> bool
                  cheap filter: is this a node the pass is about at all?
                  Nodes that are not candidates never appear in the report.
    match(node, graph) -> Match | Skip
                  pure: decides whether the candidate can be rewritten at all.
                  A Skip carries a reason a user can act on and a stable code;
                  a Match carries a frozen dataclass of what the forms need.
    match_alone(node, graph)   (optional) the node never as part of a larger
                  match, for the members of a multi-node match that failed.
    structure(match, name_of)  (optional) the params with every value or node
                  name written as name_of(name) (its position in the match),
                  or None: the pass's word that its forms' choice reads
                  nothing else beside the matched values' types; matches of
                  one structure then share the chooser's decision (plans.py).
    optimization  (optional, True) an optimization measured on onnxruntime
                  CPU rather than a lowering: the driver gives it no
                  candidates when a target is set, and what it leaves is not
                  "left alone" (the report's left_alone, `--strict`).

The driver asks the target whether a node must be lowered at all, asks the
chooser which form to use, builds it, checks it against the target and
numerically, and splices it in or rolls it back.  A pass never holds the
target and never touches the model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Optional, Protocol, Sequence, Union

import onnx


class Code:
    """Why a candidate was left alone, as a stable word a pipeline can test."""

    RUNTIME_WEIGHT = "runtime-weight"
    DYNAMIC_SHAPE = "dynamic-shape"
    UNSUPPORTED_TYPE = "unsupported-type"
    UNSUPPORTED_ATTRIBUTE = "unsupported-attribute"
    INVALID_NODE = "invalid-node"
    OLD_OPSET = "old-opset"
    SPEC_AMBIGUOUS = "spec-ambiguous"
    EMPTY_OUTPUT = "empty-output"
    TOO_LARGE = "too-large"
    TARGET_RUNS_IT = "target-runs-it"
    TARGET_UNDECIDED = "target-undecided"
    NO_FORM = "no-form"
    OVERLAP = "overlap"
    INTERNAL_ERROR = "internal-error"
    UNCHECKABLE = "uncheckable"
    VERIFICATION_FAILED = "verification-failed"
    MODEL_CHECK_FAILED = "model-check-failed"
    QUANTIZED = "quantized"
    NESTED = "nested"


# Every code and what it means (the README's table is checked against it).
CODES = {
    Code.RUNTIME_WEIGHT: "a weight, bias or scale is computed at run time; make it an initializer",
    Code.DYNAMIC_SHAPE: "a size the rewrite needs is not static; fix the input's dimensions",
    Code.UNSUPPORTED_TYPE: ("an element type the pass does not lower: onnxruntime has no kernel to verify its "
                            "rewrite in (a Conv of float64), or the pass is for floating point only"),
    Code.UNSUPPORTED_ATTRIBUTE: "an attribute combination no form of the pass expresses",
    Code.INVALID_NODE: "the node breaks its operator's specification",
    Code.OLD_OPSET: "the model's opset lacks an operator the rewrite needs; upgrade the opset",
    Code.SPEC_AMBIGUOUS: "onnxruntime and the ONNX reference disagree on this node",
    Code.EMPTY_OUTPUT: "the node's output is empty",
    Code.TOO_LARGE: "the rewrite would build tensors beyond the size budget",
    Code.TARGET_RUNS_IT: "the target profile runs the node as it is",
    Code.TARGET_UNDECIDED: ("the target profile's rules read a size or scale factor not known before run time, so "
                            "they cannot say the target runs the node; give the graph's inputs static shapes (or the "
                            "Resize constant scales)"),
    Code.NO_FORM: "no lowering form applies, or none can be built",
    Code.OVERLAP: ("the node belongs to another rewrite of the same pass (a chain that reaches a node another "
                   "rewrite took is first matched alone: its start is lowered by itself)"),
    Code.INTERNAL_ERROR: "a bug in a pass (the message says where)",
    Code.UNCHECKABLE: "the replacement could not be checked, so it was not used",
    Code.VERIFICATION_FAILED: "the replacement's local check against the original failed",
    Code.MODEL_CHECK_FAILED: "the whole-model check failed with this rewrite in place",
    Code.QUANTIZED: "the node is in a quantized (QDQ) region and no form of the pass keeps it quantized",
    Code.NESTED: "the node is in a subgraph (If, Loop, Scan) or a model-local function, which are not rewritten",
}


@dataclass(frozen=True, eq=False)
class Match:
    """A candidate the pass can rewrite.

    `params` is a frozen dataclass the pass defines; `nodes` lists every node
    the replacement removes (the matched node first).  `notes` are short
    facts for the report ("dropped taps that only read padding").
    """

    node: onnx.NodeProto
    params: Any
    nodes: tuple = ()
    notes: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.nodes:
            object.__setattr__(self, "nodes", (self.node,))


@dataclass(frozen=True)
class Skip:
    """A candidate left alone: why, for a person, and a code from `Code`."""

    reason: str
    code: str

    def __post_init__(self):
        if self.code not in CODES:
            raise ValueError(f"unknown skip code {self.code!r}")


@dataclass(frozen=True, eq=False)
class Replacement:
    """What a form builds: the driver splices these in place of match.nodes.

    `outputs` maps every output name of the removed nodes that is still used
    to the new value that replaces it; the driver renames the new value to the
    original name, so consumers and graph outputs are unchanged.
    """

    nodes: tuple[onnx.NodeProto, ...]
    initializers: tuple[onnx.TensorProto, ...]
    outputs: Mapping[str, str]
    notes: tuple[str, ...] = ()


MatchResult = Union[Match, Skip]


class Pass(Protocol):
    name: str
    description: str
    op_types: tuple
    forms: Sequence
    mac_bound: Optional[float]

    def preferred(self) -> tuple[str, ...]: ...

    def candidate(self, node: onnx.NodeProto, graph) -> bool: ...

    def match(self, node: onnx.NodeProto, graph) -> MatchResult: ...


@dataclass(frozen=True)
class PassOptions:
    """Base of a pass's typed options.  KEYS maps the option names users
    write (the CLI's, optimize's `options`) to the dataclass's fields."""

    KEYS: ClassVar[dict] = {}
    CHOICES: ClassVar[dict] = {}   # option name -> allowed values (form names), where it names a form

    @classmethod
    def from_dict(cls, options: Mapping[str, Any]) -> "PassOptions":
        return cls(**{f: options[key] for key, f in cls.KEYS.items() if options.get(key) is not None})

    def check_choices(self) -> None:
        """ValueError naming the option when a value is not one of its CHOICES."""
        for key, allowed in self.CHOICES.items():
            value = getattr(self, self.KEYS[key])
            if value is not None and value not in allowed:
                raise ValueError(f"{key} must be one of {', '.join(allowed)}, not {value!r}")
