"""A sketch (sketch.py) drawn as inline SVG, with a small layered layout.

Layers: each node sits one layer below the deepest node it reads from
(longest path from the inputs), so data flows top to bottom.  Within a
layer, nodes are ordered by the mean position of the nodes they read from
(the barycenter heuristic, two sweeps), which keeps most edges short and
uncrossed on the small graphs a rewrite produces.  No layout library: the
graphs have a few dozen nodes, and the report must open with no network and
no extra dependency.
"""
from __future__ import annotations

from collections import defaultdict
from html import escape

from .sketch import Sketch

ROW, GAP, BOX_H, CHAR_W, PAD = 74, 18, 34, 6.6, 10
DASHED = ' stroke-dasharray="4,3"'
COLOURS = {"match": "#fde2c5", "new": "#d6ecff", "neighbour": "#eeeeee", "input": "#ffffff", "output": "#ffffff"}


def layers(sketch: Sketch) -> dict:
    """node id -> layer (longest path from a node nothing feeds)."""
    preds = defaultdict(list)
    for a, b, _ in sketch.edges:
        preds[b].append(a)
    layer: dict = {}

    def depth(n, trail=()):
        if n not in layer:
            if n in trail:  # a cycle cannot occur in ONNX; guard anyway
                return 0
            layer[n] = 1 + max((depth(p, trail + (n,)) for p in preds[n]), default=-1)
        return layer[n]

    for node in sketch.nodes:
        depth(node.id)
    return layer


def _order(sketch: Sketch, layer: dict) -> dict:
    """layer -> node ids, left to right (barycenter of the predecessors)."""
    rows = defaultdict(list)
    for node in sketch.nodes:
        rows[layer[node.id]].append(node.id)
    preds = defaultdict(list)
    for a, b, _ in sketch.edges:
        preds[b].append(a)
    for _ in range(2):
        pos = {n: k for row in rows.values() for k, n in enumerate(row)}
        for r in sorted(rows)[1:]:
            rows[r].sort(key=lambda n: sum(pos[p] for p in preds[n]) / len(preds[n]) if preds[n] else pos[n])
    return rows


def _width(node) -> float:
    text = max(len(node.op), len(node.detail))
    return max(60.0, text * CHAR_W + 2 * PAD)


def render(sketch: Sketch, title: str) -> str:
    """The sketch as an <svg> element."""
    if not sketch.nodes:
        return f'<p class="empty">{escape(title)}: nothing to draw</p>'
    layer = layers(sketch)
    rows = _order(sketch, layer)
    widths = {n.id: _width(n) for n in sketch.nodes}
    row_w = {r: sum(widths[n] for n in ids) + GAP * (len(ids) - 1) for r, ids in rows.items()}
    total_w = max(row_w.values()) + 2 * GAP + 80  # room for the shape labels right of the edges
    xy = {}
    for r, ids in rows.items():
        x = (total_w - row_w[r]) / 2
        for n in ids:
            xy[n] = (x, GAP + r * ROW)
            x += widths[n] + GAP
    height = GAP + (max(rows) + 1) * ROW
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" role="img" aria-label="{escape(title)}" '
             f'width="{total_w:.0f}" height="{height:.0f}" viewBox="0 0 {total_w:.0f} {height:.0f}">',
             f"<title>{escape(title)}</title>",
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>']
    for a, b, label in sketch.edges:
        (xa, ya), (xb, yb) = xy[a], xy[b]
        x1, y1, x2, y2 = xa + widths[a] / 2, ya + BOX_H, xb + widths[b] / 2, yb
        parts.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="#555" '
                     f'marker-end="url(#arrow)"/>')
        if label:
            parts.append(f'<text class="shape" x="{(x1 + x2) / 2 + 4:.1f}" y="{(y1 + y2) / 2 + 4:.1f}">'
                         f"{escape(label)}</text>")
    for n in sketch.nodes:
        x, y = xy[n.id]
        w, fill = widths[n.id], COLOURS.get(n.role, "#ffffff")
        shape = (f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{BOX_H}" rx="{BOX_H / 2 if n.role in ("input", "output") else 4}" '
                 f'fill="{fill}" stroke="{"#999" if n.role == "neighbour" else "#333"}"'
                 f'{DASHED if n.role in ("input", "output") else ""}/>')
        text = f'<text class="op" x="{x + w / 2:.1f}" y="{y + (14 if n.detail else 21):.1f}">{escape(n.op)}</text>'
        detail = (f'<text class="detail" x="{x + w / 2:.1f}" y="{y + 28:.1f}">{escape(n.detail)}</text>'
                  if n.detail else "")
        parts.append(f'<g class="node {n.role}"><title>{escape(n.id)}</title>{shape}{text}{detail}</g>')
    if sketch.truncated:
        parts.append(f'<text class="detail" x="{GAP}" y="{height - 4:.0f}">... and {sketch.truncated} more nodes</text>')
    parts.append("</svg>")
    return "".join(parts)
