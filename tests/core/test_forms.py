"""The chooser (convrewrite.core.forms.rank): its ordering rules, one by one,
on toy forms whose costs are given."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from convrewrite.core.forms import Cost, Form, Variant, rank


@dataclass
class Toy(Form):
    name: str
    macs: int = 0
    refuse: str = None
    favour: str = None
    opt_in: bool = False
    labels: tuple = ("",)

    def applies(self, match, graph):
        return self.refuse

    def favoured(self, match, graph):
        return self.favour

    def variants(self, match, graph):
        return tuple(Variant(label) for label in self.labels)

    def cost(self, match, variant, graph):
        return Cost(macs=self.macs)


@dataclass
class ToyPass:
    forms: tuple
    prefer: tuple = ()
    mac_bound: float = None

    def preferred(self):
        return self.prefer


def order(p, node_macs=100, variants=False, opt_in=False):
    return [o.label for o in rank(p, None, None, node_macs, variants, opt_in).options]


def test_list_order_is_the_default():
    assert order(ToyPass((Toy("a"), Toy("b"), Toy("c")))) == ["a", "b", "c"]


def test_forms_that_do_not_apply_are_passed_over_with_their_reason():
    r = rank(ToyPass((Toy("a", refuse="no"), Toy("b"))), None, None, 1, False, False)
    assert [o.label for o in r.options] == ["b"] and r.passed_over == [("a", "no")]


def test_the_users_preference_comes_first_in_its_own_order():
    p = ToyPass((Toy("a"), Toy("b"), Toy("c")), prefer=("c", "b"))
    assert order(p) == ["c", "b", "a"]


def test_favoured_forms_come_before_the_list_order_but_after_the_user():
    p = ToyPass((Toy("a"), Toy("b", favour="tiny images")))
    assert order(p) == ["b", "a"]
    assert rank(p, None, None, 1, False, False).options[0].why == "tiny images"
    assert order(ToyPass(p.forms, prefer=("a",))) == ["a", "b"]


def test_mac_bound_prefers_forms_within_it_then_the_fewest_macs():
    p = ToyPass((Toy("simple", macs=150), Toy("exact", macs=105), Toy("cheap", macs=120), Toy("cheaper", macs=130)),
                mac_bound=1.1)
    assert order(p, node_macs=100) == ["exact", "cheap", "cheaper", "simple"]
    assert order(ToyPass(p.forms), node_macs=100) == ["simple", "exact", "cheap", "cheaper"]  # no bound


@pytest.mark.parametrize("with_target", [False, True])
def test_opt_in_forms_only_when_asked_or_for_a_target(with_target):
    p = ToyPass((Toy("matmul", opt_in=True), Toy("deconv")))
    assert order(p, opt_in=with_target) == (["deconv", "matmul"] if with_target else ["deconv"])
    assert order(ToyPass(p.forms, prefer=("matmul",))) == ["matmul", "deconv"]


def test_variants_follow_their_form_only_when_asked_for():
    p = ToyPass((Toy("a", labels=("", "pad nodes")), Toy("b")))
    assert order(p) == ["a", "b"]
    assert order(p, variants=True) == ["a", "a, pad nodes", "b"]
