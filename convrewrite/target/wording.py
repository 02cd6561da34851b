"""A violation's sentence as parts: its words (str) and the names it quotes
(`Quoted`: a value's or a node's), each name a field of its own.

A lowering judges an existing node that reads its outputs in a small model
of the replacement (convrewrite.core.lowering `judged`), where that node
reads the replacement's values under their new names and has a label of
that model; what it breaks is said of the graph, so those names are
substituted (`renamed`).  A substitution of fields cannot miss a name a rule
quotes in words of its own, nor change a word of the sentence that happens
to spell the same name, as a search of the rendered text could.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Union

VALUE, NODE = "value", "node"


@dataclass(frozen=True)
class Quoted:
    """A name a sentence quotes, rendered 'name'; `kind` says whose: a
    value's (VALUE) or a node label (NODE)."""

    name: str
    kind: str = VALUE

    def __str__(self) -> str:
        return f"'{self.name}'"


Part = Union[str, Quoted]


def value(name: str) -> Quoted:
    return Quoted(name, VALUE)


def node(label: str) -> Quoted:
    return Quoted(label, NODE)


def parts(*items) -> tuple:
    """One sentence from `items` (str, Quoted, or sentences: tuples of
    them), adjacent words merged and empty ones dropped, so that a sentence
    has one spelling as parts (two rules saying the same are equal)."""
    out: list = []
    for item in _flat(items):
        if isinstance(item, str) and out and isinstance(out[-1], str):
            out[-1] += item
        elif not (isinstance(item, str) and not item):
            out.append(item)
    return tuple(out)


def _flat(items) -> Iterable[Part]:
    for item in items:
        if isinstance(item, (tuple, list)):
            yield from _flat(item)
        elif isinstance(item, (str, Quoted)):
            yield item
        else:
            raise TypeError(f"a sentence is made of str and Quoted, not {type(item).__name__}")


def joined(separator: str, sentences: Iterable) -> tuple:
    """`separator`.join for sentences."""
    out: list = []
    for k, s in enumerate(sentences):
        out += [separator, s] if k else [s]
    return parts(*out)


def render(sentence: Iterable[Part]) -> str:
    return "".join(map(str, sentence))


def quoted(sentence: Iterable[Part], kind: str) -> tuple:
    """The names of `kind` the sentence quotes, in order, each once."""
    return tuple(dict.fromkeys(p.name for p in sentence if isinstance(p, Quoted) and p.kind == kind))


def renamed(sentence: Iterable[Part], values: Mapping[str, str] = {}, nodes: Mapping[str, str] = {}) -> tuple:
    """The sentence with each quoted value in `values` and node in `nodes`
    named by what they map it to (the words untouched)."""
    names = {VALUE: values, NODE: nodes}
    return tuple(Quoted(names[p.kind].get(p.name, p.name), p.kind) if isinstance(p, Quoted) else p
                 for p in sentence)
