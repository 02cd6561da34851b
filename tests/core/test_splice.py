"""The splice's walks over the graph, each done once: the producers and the
order check of toposort, the read counts, producers and kept values of
remove_dead give what the separate walks they replace give."""
import random
from collections import Counter

import pytest
from onnx import TensorProto, helper

from convrewrite.core.graph import _indexes, node_outer_references, subgraph_outer_references
from convrewrite.core.splice import _dead_positions, _filter, _in_order, _producers, _uses, toposort


def _body(reads: str):
    """An If branch reading `reads` from the outer scope."""
    out = helper.make_tensor_value_info("b_out", TensorProto.FLOAT, None)
    return helper.make_graph([helper.make_node("Identity", [reads], ["b_out"])], "body", [], [out])


def _graph(seed: int, subgraphs: bool = False, self_read: bool = False, twice: bool = False):
    """A chain-and-branch graph of 12 nodes, shuffled; optionally with an If
    whose branches read a value from outside, a node reading its own
    output, a value produced twice."""
    rng = random.Random(seed)
    nodes = []
    for k in range(12):
        reads = ["x"] + [f"v{j}" for j in rng.sample(range(k), min(k, 2))]
        nodes.append(helper.make_node("Sum", reads + ([""] if k % 5 == 0 else []), [f"v{k}"], name=f"n{k}"))
    if subgraphs:
        nodes.append(helper.make_node("If", ["cond"], ["if_out"], name="if",
                                      then_branch=_body("v7"), else_branch=_body("v3")))
    if self_read:
        nodes.append(helper.make_node("Sum", ["v2", "loop"], ["loop"], name="self"))
    if twice:
        nodes.append(helper.make_node("Relu", ["v1"], ["v5"], name="again"))
    rng.shuffle(nodes)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("v11", TensorProto.FLOAT, [1])
    return helper.make_graph(nodes, "g", [x], [y])


CASES = [dict(), dict(subgraphs=True), dict(self_read=True), dict(twice=True),
         dict(subgraphs=True, self_read=True, twice=True)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "+".join(c) or "plain")
@pytest.mark.parametrize("seed", range(8))
def test_producers_and_order_in_one_walk_are_the_separate_walks(case, seed):
    for g in (_graph(seed, **case), _sorted(_graph(seed, **case))):
        nodes = list(g.node)
        producer = {o: k for k, n in enumerate(nodes) for o in n.output if o}
        assert _producers(nodes) == (producer, _in_order(nodes, producer))


def _sorted(g):
    toposort(g)
    return g


def test_a_sorted_graph_is_in_order_and_a_shuffled_one_mostly_not():
    verdicts = [_producers(list(_graph(seed).node))[1] for seed in range(8)]
    assert not all(verdicts)
    assert all(_producers(list(_sorted(_graph(seed)).node))[1] for seed in range(8))


@pytest.mark.parametrize("case", CASES, ids=lambda c: "+".join(c) or "plain")
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("sort", [False, True])
def test_uses_in_one_walk_are_the_separate_walks(case, seed, sort):
    g = _sorted(_graph(seed, **case)) if sort else _graph(seed, **case)
    uses, producer, keep, in_order, readers = _uses(g)
    assert uses == Counter(i for n in g.node for i in n.input if i)
    # in order only where toposort keeps the order (a value produced twice: toposort decides)
    assert in_order == (not case.get("twice") and _producers(list(g.node))[1])
    assert producer == {o: n for n in g.node for o in n.output if o}
    assert (producer, readers) == _indexes(list(g.node))
    every_node = set().union(*(node_outer_references(n) for n in g.node))   # asked of every node
    assert keep == {o.name for o in g.output} | every_node
    assert subgraph_outer_references(g) == every_node
    assert bool(every_node) == bool(case.get("subgraphs"))


@pytest.mark.parametrize("seed", range(4))
def test_filter_keeps_the_order_and_the_messages_themselves(seed):
    """_filter moves the kept nodes (the same messages, in their order) and drops the others."""
    g = _graph(seed)
    before = list(g.node)
    rng = random.Random(seed)
    gone = {n.name for n in rng.sample(before, 5)}
    _filter(g.node, lambda n: n.name not in gone)
    kept = [n for n in before if n.name not in gone]
    assert [n.name for n in g.node] == [n.name for n in kept]
    assert all(a is b for a, b in zip(g.node, kept))   # moved, not copied
    kept[0].name = "edited"
    assert g.node[0].name == "edited"


def _spliced_as_before(g, groups: list, replacements: list) -> list:
    """The splice's order as it was before it moved nodes in place (issue 12):
    each replacement where its first matched node was, dead code out, then
    toposort -- the node names, in order."""
    from convrewrite.core.splice import remove_dead, renamed_nodes

    out = helper.make_graph([], "ref", list(g.input), list(g.output))
    position = {id(n): k for k, n in enumerate(g.node)}
    start = {min(position[id(n)] for n in group): r for group, r in zip(groups, replacements)}
    removed = {position[id(n)] for group in groups for n in group}
    dead_inputs = set()
    for k, node in enumerate(g.node):
        if k in start:
            out.node.extend(renamed_nodes(start[k]))
        if k in removed:
            dead_inputs.update(i for i in node.input if i)
        else:
            out.node.append(node)
    remove_dead(out, dead_inputs, set())
    toposort(out)
    return [n.name for n in out.node]


def _random_rewrites(g, rng: random.Random) -> tuple[list, list]:
    """Disjoint groups of 1-3 nodes (listed in any order, so the first listed
    is not always the earliest); each replaced by 1-2 new nodes that read a
    part of what the group reads (the rest may die) and make every output
    of the group that another node, a body or the graph reads."""
    from convrewrite.core.rewrite import Replacement

    candidates = [n for n in g.node if n.op_type == "Sum"]
    rng.shuffle(candidates)
    groups, replacements, taken = [], [], set()
    while candidates and len(groups) < 3:
        group = [n for n in candidates[:rng.randint(1, 3)] if n.name not in taken]
        candidates = candidates[len(group):]
        if not group:
            continue
        if not _convex(g, group):
            continue    # a replacement would read what it makes: no pass matches so
        names = {n.name for n in group}   # another group's replacement may read what this one makes
        taken |= names
        made = {o for n in group for o in n.output}
        outside = [i for n in group for i in n.input if i and i not in made]
        needed = [o for o in made if any(o in n.input for n in g.node if n.name not in names)
                  or o in {v.name for v in g.output} or o in subgraph_outer_references(g)]
        tag = "+".join(n.name for n in group)
        reads = rng.sample(outside, rng.randint(1, len(outside)))
        nodes = [helper.make_node("Sum", reads, [f"{tag}/t"], name=f"{tag}/t")]
        nodes += [helper.make_node("Neg", [f"{tag}/t"], [f"{tag}/{o}"], name=f"{tag}/{o}") for o in sorted(needed)]
        replacement = Replacement(tuple(nodes), (), {o: f"{tag}/{o}" for o in needed})
        if _acyclic(g, groups + [group], replacements + [replacement]):   # else two groups feed each other
            groups.append(group)
            replacements.append(replacement)
    return groups, replacements


def _acyclic(g, groups: list, replacements: list) -> bool:
    """Whether the rewrites together leave a graph that has an order."""
    from convrewrite.core.splice import renamed_nodes

    inside = {id(n) for group in groups for n in group}
    nodes = [n for n in g.node if id(n) not in inside] + [m for r in replacements for m in renamed_nodes(r)]
    out = helper.make_graph(nodes, "check", list(g.input), list(g.output))
    toposort(out)
    return _producers(list(out.node))[1]


def _convex(g, group: list) -> bool:
    """Whether no path leaves the group and comes back into it (the values
    a node outside makes from the group's outputs, bodies' reads included)."""
    names = {n.name for n in group}
    reached = {o for n in group for o in n.output}
    for n in g.node:   # in order: g is sorted
        if n.name not in names and (reached & set(n.input) or reached & node_outer_references(n)):
            reached.update(n.output)
    return not any(set(n.input) & (reached - {o for m in group for o in m.output}) for n in group)


@pytest.mark.parametrize("subgraphs", [False, True])
@pytest.mark.parametrize("seed", range(24))
def test_a_splice_in_place_orders_as_a_full_sort_and_hands_on_the_fresh_indexes(subgraphs, seed):
    """splice_in_place moves nodes in place and sorts only where a
    replacement reads a value made after its first matched node: the order
    is the one of inserting and sorting everything, and the indexes it hands
    on are graph._indexes of the result, node for node."""
    import onnx
    from convrewrite.core.rewrite import Match
    from convrewrite.core.splice import apply_rewrites, splice_in_place

    rng = random.Random(seed)
    g = _sorted(_graph(seed, subgraphs=subgraphs))
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    groups, replacements = _random_rewrites(model.graph, rng)
    want = _spliced_as_before(model.graph, groups, replacements)
    pairs = [(Match(group[0], None, nodes=tuple(group)), r) for group, r in zip(groups, replacements)]
    copied = apply_rewrites(model, pairs)
    _, indexes = splice_in_place(model, list(pairs))
    assert [n.name for n in model.graph.node] == want == [n.name for n in copied.graph.node]
    assert _producers(list(model.graph.node))[1]
    if indexes is not None:
        producer, consumers = _indexes(list(model.graph.node))
        ids = lambda index: {k: [id(n) for n in v] if isinstance(v, list) else id(v) for k, v in index.items()}
        assert ids(indexes[0]) == ids(producer) and ids(indexes[1]) == ids(consumers)
    onnx.checker.check_graph(model.graph) if not subgraphs else None


@pytest.mark.parametrize("twice", [False, True])
def test_dead_initializers_found_through_a_view_are_those_a_scan_finds(twice):
    """splice_in_place finds the dead initializers through a view's
    {name: tensor} by identity; a name given twice (two tensors, the view
    holds one) makes it read every name as before."""
    names = ["a", "b", "c", "d", "b" if twice else "e"]
    g = helper.make_graph([], "g", [], [], [helper.make_tensor(n, TensorProto.FLOAT, [1], [float(k)])
                                            for k, n in enumerate(names)])
    held = g.initializer[:]
    view = {t.name: t for t in held}
    for dead in [set(), {"b"}, {"a", "d", "new"}, set(names)]:
        scanned = [k for k, t in enumerate(held) if t.name in dead]
        assert _dead_positions(held, dead, view) == scanned == _dead_positions(held, dead, None)
    assert _dead_positions(held, {"b"}, view) == ([1, 4] if twice else [1])
