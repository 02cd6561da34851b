"""The chooser (convrewrite.core.forms.rank): its ordering rules, one by one,
on toy forms whose costs are given."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from convrewrite.core.cost_model import CostModel
from convrewrite.core.forms import Cost, Form, Variant, rank


@dataclass
class Toy(Form):
    name: str
    macs: int = 0
    refuse: str = None
    favour: str = None
    opt_in: bool = False
    labels: tuple = ("",)
    weighed: bool = False    # the cost model places it
    grouped: int = 0
    favour_weighed: bool = False   # the cost model may overrule its favour

    def estimated(self, match, graph):
        return self.weighed

    def applies(self, match, graph):
        return self.refuse

    def favoured(self, match, graph):
        return self.favour

    def variants(self, match, graph):
        return tuple(Variant(label) for label in self.labels)

    def cost(self, match, variant, graph):
        return Cost(macs=self.macs, moved_bytes=0, nodes=1, grouped_macs=self.grouped, streamed_bytes=0)


@dataclass
class ToyPass:
    forms: tuple
    prefer: tuple = ()
    mac_bound: float = None

    def preferred(self):
        return self.prefer


def order(p, node_macs=100, variants=False, opt_in=False, cost_model=None):
    return [o.label for o in rank(p, None, None, node_macs, variants, opt_in, cost_model=cost_model).options]


# 1 ns per dense MAC, 10 per grouped one, 100 per node
MODEL = CostModel("toy runtime", mac_ns=1.0, grouped_mac_ns=10.0, byte_ns=0.0, node_ns=100.0, streamed_byte_ns=0.0)


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


def test_a_cost_model_places_the_estimated_forms_at_the_first_ones_place():
    """deconv: 50 grouped MACs (600 ns); matmul: 300 dense (400 ns): matmul
    first, where deconv stood (after identity, before pointwise)."""
    p = ToyPass((Toy("identity", refuse="scales are not 1"), Toy("shuffle"),
                 Toy("deconv", macs=50, grouped=50, weighed=True), Toy("matmul", macs=300, weighed=True),
                 Toy("pointwise")))
    assert order(p) == ["shuffle", "deconv", "matmul", "pointwise"]          # no cost model: the list
    assert order(p, cost_model=MODEL) == ["shuffle", "matmul", "deconv", "pointwise"]
    r = rank(p, None, None, 100, False, False, cost_model=MODEL)
    assert r.options[1].why == "the shortest time estimated for toy runtime (deconv 0.6 us, matmul 0.4 us)"
    assert r.options[2].why == "estimated slower than matmul on toy runtime (deconv 0.6 us, matmul 0.4 us)"
    cheaper = ToyPass(p.forms[:2] + (Toy("deconv", macs=20, grouped=20, weighed=True),) + p.forms[3:])
    assert order(cheaper, cost_model=MODEL) == ["shuffle", "deconv", "matmul", "pointwise"]


def test_an_opt_in_form_comes_in_to_be_weighed_and_only_then():
    deconv, matmul = Toy("deconv", macs=50, grouped=50, weighed=True), Toy("matmul", macs=300, opt_in=True, weighed=True)
    assert order(ToyPass((deconv, matmul)), cost_model=MODEL) == ["matmul", "deconv"]
    # nothing to weigh it against (the deconv form does not apply): opt-in as before, left out
    alone = ToyPass((Toy("deconv", refuse="align_corners", weighed=True), matmul))
    assert order(alone, cost_model=MODEL) == []
    assert order(alone, opt_in=True, cost_model=MODEL) == ["matmul"]


def test_rules_come_before_the_estimate():
    """The user's preference and a favoured form keep their place; forms
    that do not say `estimated` keep the list order."""
    deconv, matmul = Toy("deconv", macs=50, grouped=50, weighed=True), Toy("matmul", macs=300, weighed=True)
    assert order(ToyPass((deconv, matmul), prefer=("deconv",)), cost_model=MODEL) == ["deconv", "matmul"]
    favoured = Toy("deconv", macs=50, grouped=50, weighed=True, favour="a rule")
    assert order(ToyPass((favoured, matmul)), cost_model=MODEL) == ["deconv", "matmul"]
    assert order(ToyPass((Toy("a", macs=900), Toy("b", macs=1))), cost_model=MODEL) == ["a", "b"]


def test_the_mac_bound_comes_before_the_estimate():
    """With a MAC bound, only the estimated forms within it are weighed: one
    beyond it goes after them by its MACs, however fast it is estimated,
    and no note calls the form chosen by the bound "estimated slower"."""
    lean = Toy("single", macs=105, weighed=True)                 # 205 ns, within 1.1x of 100 MACs
    wasteful = Toy("phases", macs=50 + 70, weighed=True)         # 120 MACs: beyond the bound, 220 ns
    fast = Toy("phases", macs=108, weighed=True)                 # within it, 208 ns
    assert order(ToyPass((lean, wasteful), mac_bound=1.1), cost_model=MODEL) == ["single", "phases"]
    r = rank(ToyPass((lean, wasteful), mac_bound=1.1), None, None, 100, False, False, cost_model=MODEL)
    assert "estimated" not in r.options[0].why and r.options[0].why.startswith("the simplest form within")
    assert order(ToyPass((fast, lean), mac_bound=1.1), cost_model=MODEL) == ["single", "phases"]
    beyond = Toy("single", macs=200, weighed=True)
    cheap_beyond = Toy("phases", macs=150, weighed=True)
    assert order(ToyPass((beyond, cheap_beyond), mac_bound=1.1), cost_model=MODEL) == ["phases", "single"]


def test_a_cost_model_overrules_a_weighed_favour_only_beyond_the_margin():
    """A favour_weighed form loses its favour when estimated more than
    OVERRULE times slower than the form that comes first without it; below
    the margin, without a cost model, or when the user asked for another
    form, the rule stands."""
    from convrewrite.core.forms import OVERRULE
    rival = Toy("batch", macs=1000)                          # 1.1 us
    slow = Toy("taps", macs=900, favour="tiny phase images", favour_weighed=True)
    slow.cost = lambda match, variant, graph: Cost(macs=900, moved_bytes=0, nodes=9, grouped_macs=0,
                                                                 streamed_bytes=0)   # 1.8 us
    p = ToyPass((rival, slow))
    assert order(p) == ["taps", "batch"]                              # no cost model: the rule
    r = rank(p, None, None, 100, False, False, cost_model=MODEL)
    assert [o.label for o in r.options] == ["batch", "taps"]
    assert r.options[0].why == ("the first form in the pass's order that applies; taps was favoured, overruled: "
                                f"estimated 1.8 us on toy runtime, more than {OVERRULE}x batch's 1.1 us")
    assert r.options[1].why.startswith("tiny phase images, but overruled")
    assert order(ToyPass((rival, slow), prefer=("taps",)), cost_model=MODEL) == ["taps", "batch"]
    assert order(ToyPass((rival, slow), prefer=("batch",)), cost_model=MODEL) == ["batch", "taps"]
    close = Toy("taps", macs=900, favour="tiny phase images", favour_weighed=True)   # 1.0 us: within the margin
    assert order(ToyPass((rival, close)), cost_model=MODEL) == ["taps", "batch"]
    first_anyway = rank(ToyPass((slow, rival)), None, None, 100, False, False, cost_model=MODEL)
    assert [o.label for o in first_anyway.options] == ["taps", "batch"]      # its favour decides nothing
    assert "overruled" not in first_anyway.options[0].why + first_anyway.options[1].why
    plain = Toy("taps", macs=900, favour="tiny phase images")          # not favour_weighed
    plain.cost = slow.cost
    assert order(ToyPass((rival, plain)), cost_model=MODEL) == ["taps", "batch"]


def test_a_favour_measured_on_the_cpu_holds_only_with_its_cost_model():
    """An opt-in form whose favour needs the cost model (reshape: measured on
    onnxruntime CPU) goes first given one (no target); without one (a
    target) it is opt-in again: after the others, or not ranked at all."""
    @dataclass
    class CpuFavoured(Toy):
        favour_needs_cost_model = True

    reshape = CpuFavoured("reshape", favour="measured fastest", opt_in=True)
    p = ToyPass((Toy("batch"), reshape, Toy("taps")))
    assert order(p, cost_model=MODEL) == ["reshape", "batch", "taps"]
    assert order(p) == ["batch", "taps"]
    assert order(p, opt_in=True) == ["batch", "taps", "reshape"]
    ordinary = Toy("reshape", favour="measured fastest", opt_in=True)   # a favour any chooser keeps
    assert order(ToyPass((Toy("batch"), ordinary, Toy("taps"))), opt_in=True) == ["reshape", "batch", "taps"]
