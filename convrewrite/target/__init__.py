"""Accelerator target profiles: what a target runs, and what does not fit.

    profile = load_profile("generic-npu")          # or a JSON file
    check_model(model, profile)   -> [Violation]    # the compatibility report
    needs_lowering(node, graph, profile) -> reason or None
    undecided_reason(node, graph, profile) -> why its rules cannot say the target runs it, or None
    profile.allows_op("DepthToSpace", mode="CRD", blocksize=2) -> bool

profile.py holds the data model and the strict JSON loader, facts.py reads
what the rules need from a node, check.py applies the rules.  The format is
documented in the README (Target profiles).
"""
from .check import (check_model, check_node, format_violations, needs_lowering, node_violations,
                    op_violations, replacement_violations_in, runs_as_is_reason, target_report,
                    undecided_reason)
from .rules import Violation
from .profile import OpRule, Profile, builtin_names, builtin_profiles, load_profile

__all__ = ["OpRule", "Profile", "Violation", "builtin_names", "builtin_profiles", "check_model",
           "check_node", "format_violations", "load_profile", "needs_lowering", "node_violations",
           "op_violations", "replacement_violations_in", "runs_as_is_reason", "target_report",
           "undecided_reason"]
