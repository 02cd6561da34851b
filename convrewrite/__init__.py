"""convrewrite: rewrite ConvTranspose, dilated Conv and Resize into operators
every accelerator has, and prove each rewrite computes the same function."""
from .driver import optimize, op_counts
from .equivalence import Comparison, check_models, compare_outputs
from .errors import ConvRewriteError, InputError
from .model_io import load_model, save_model
from .report import Report

__all__ = ["optimize", "op_counts", "Comparison", "check_models", "compare_outputs",
           "ConvRewriteError", "InputError", "load_model", "save_model", "Report"]
