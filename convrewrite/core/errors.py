"""Errors the command line turns into one-line messages and exit codes."""
from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Mapping

# What an error's text says for a temporary folder (tempfile's): its random
# name would make two runs of one command report differently.
TEMPORARY_FOLDER = "<temporary folder>"

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+>")   # the end of "<function f at 0x7f3a...>"


class ConvRewriteError(Exception):
    """Base class for errors convrewrite reports to the user."""


class InputError(ConvRewriteError):
    """The input model or an argument is unusable (exit code 2)."""


@contextmanager
def retold(replacements: Mapping[str, str]):
    """An exception raised inside, its text with each key of `replacements`
    replaced by its value (in order): for text a run makes up, such as a
    temporary folder's path, which would reach a report or a message.
    Raised as an exception of its type where that type takes the text
    alone, else as a RuntimeError (the callers read its text); one whose
    text names no key is raised as it is."""
    try:
        yield
    except Exception as e:
        text = told = str(e)
        for old, new in replacements.items():
            told = told.replace(old, new)
        if told == text:
            raise
        raise _saying(e, told) from e


def _saying(e: Exception, text: str) -> Exception:
    try:
        again = type(e)(text)
    except Exception:   # a type that takes other arguments
        return RuntimeError(text)
    return again if str(again) == text else RuntimeError(text)


def without_addresses(text: str) -> str:
    """`text` without the addresses of Python's default reprs ("<function f
    at 0x7f3a...>" -> "<function f>"): they differ from run to run, and a
    report that quotes one would too."""
    return _ADDRESS.sub(">", text)


def error_text(e: Exception) -> str:
    """An exception as a reason quotes it, "Type: text", without addresses."""
    return f"{type(e).__name__}: {without_addresses(str(e))}"
