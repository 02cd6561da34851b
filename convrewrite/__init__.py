"""convrewrite: rewrite ConvTranspose, dilated Conv and Resize into operators
every accelerator has, and prove each rewrite computes the same function."""
from .core.driver import optimize, op_counts
from .core.equivalence import Comparison, check_models, compare_outputs
from .core.errors import ConvRewriteError, InputError
from .core.model_io import load_model, save_model
from .core.report import Report

__all__ = ["optimize", "op_counts", "Comparison", "check_models", "compare_outputs",
           "ConvRewriteError", "InputError", "load_model", "save_model", "Report"]
