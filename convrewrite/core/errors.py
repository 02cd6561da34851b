"""Errors the command line turns into one-line messages and exit codes."""


class ConvRewriteError(Exception):
    """Base class for errors convrewrite reports to the user."""


class InputError(ConvRewriteError):
    """The input model or an argument is unusable (exit code 2)."""
