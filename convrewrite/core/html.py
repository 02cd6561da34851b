"""The HTML report: one self-contained file a person reads in a browser.

A summary (op counts, passes, the verification verdict, timings, the target
fit), then one section per record: for a rewrite, the original node among
its neighbours and the replacement drawn as inline SVG (svg.py), the form
and why, MACs / bytes moved / nodes before and after, the local check's
error; for a node left alone, its reason and code; for a rollback, the error.
Filters by status, pass and name.  No external file, script or font: it
opens from disk with no network.  Plain string templates: the page is small
and a template engine would be one more dependency for nothing.
"""
from __future__ import annotations

from collections import Counter
from html import escape

from .report import (DRY_RUN_NOTE, PLANNED, REWRITTEN, ROLLED_BACK, SKIPPED, Report, op_count_rows,
                     pass_count_text, steps_line)
from .svg import render

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f3a5f;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;opacity:.85}main{padding:18px 28px;max-width:1400px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}.card{background:#fff;border:1px solid #ddd;
border-radius:8px;padding:10px 14px;min-width:150px}.card b{display:block;font-size:20px}
.ok{color:#1b7a2f}.bad{color:#b3261e}.warn{color:#a15c00}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f0f3f7}td:first-child,th:first-child{text-align:left}
.summary{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
.filters{position:sticky;top:0;background:#fafafa;padding:10px 0;border-bottom:1px solid #ddd;z-index:1}
.filters label{margin-right:12px}.filters input[type=search]{padding:3px 6px;width:220px}
section.record{background:#fff;border:1px solid #ddd;border-left:6px solid #999;border-radius:6px;margin:8px 0}
section.record[data-status=rewritten]{border-left-color:#2e7d32}section.record[data-status=planned]{border-left-color:#1565c0}
section.record[data-status=skipped]{border-left-color:#9e9e9e}section.record[data-status=rolled_back]{border-left-color:#c62828}
summary{cursor:pointer;padding:8px 12px;list-style:none}summary::-webkit-details-marker{display:none}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;color:#fff;margin-right:6px}
.b-rewritten{background:#2e7d32}.b-planned{background:#1565c0}.b-skipped{background:#757575}.b-rolled_back{background:#c62828}
.body{padding:4px 14px 14px}.graphs{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.graphs figure{margin:0;overflow:auto;max-width:100%}figcaption{font-weight:600;margin-bottom:4px}
svg.graph text{font:11px system-ui,sans-serif;text-anchor:middle}svg.graph text.op{font-weight:600}
svg.graph text.shape{text-anchor:start;fill:#555;font-size:10px}svg.graph text.detail{fill:#444;font-size:10px}
code{background:#f3f3f3;padding:0 3px;border-radius:3px}ul.notes{margin:6px 0;padding-left:20px;color:#444}
.hidden{display:none}
"""

SCRIPT = """
function applyFilters(){
  const show=new Set([...document.querySelectorAll('.f-status:checked')].map(e=>e.value));
  const pass=document.getElementById('f-pass').value;
  const text=document.getElementById('f-text').value.toLowerCase();
  let shown=0;
  document.querySelectorAll('section.record').forEach(s=>{
    const ok=show.has(s.dataset.status)&&(!pass||s.dataset.pass===pass)&&(!text||s.dataset.node.toLowerCase().includes(text));
    s.classList.toggle('hidden',!ok); if(ok) shown++;
  });
  document.getElementById('f-count').textContent=shown+' shown';
}
document.querySelectorAll('.filters input,.filters select').forEach(e=>e.addEventListener('input',applyFilters));
applyFilters();
"""


def render_report(report: Report, title: str = "convrewrite report") -> str:
    parts = ["<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
             f"<meta name=viewport content='width=device-width'><title>{escape(title)}</title>",
             f"<style>{STYLE}</style></head><body>",
             f"<header><h1>{escape(title)}</h1><p>{escape(report.input or 'model')}"
             f"{' &rarr; ' + escape(report.output) if report.output else ''}</p></header><main>",
             _summary(report), *((_filters(report), *(_record(r, k) for k, r in enumerate(report.rewrites)))
                                  if report.passes else ()),
             f"</main><script>{SCRIPT}</script></body></html>"]
    return "".join(parts)


def _summary(r: Report) -> str:
    counts = Counter(x.status for x in r.rewrites)
    v = r.verification
    if v.performed:
        verdict = (f'<b class="{"ok" if v.equivalent else "bad"}">{"equivalent" if v.equivalent else "NOT equivalent"}</b>'
                   f"max abs {v.max_abs_error:.3g}, max rel {v.max_rel_error:.3g} ({escape(v.inputs)} inputs)"
                   + (f"<br>{escape(v.detail)}" if v.detail and (v.within_noise or v.within_tie_noise) else ""))
    else:
        verdict = f'<b class="warn">not run</b>{escape(v.detail or (f"dry run: {DRY_RUN_NOTE}" if r.dry_run else ""))}'
    per_pass = r.per_pass()
    total = {k: sum(n[k] for n in per_pass.values()) for k in ("rewrites", "nodes_replaced")}
    cards = [("would rewrite" if r.dry_run else "rewritten", pass_count_text(total), "ok"),
             ("left alone", counts.get(SKIPPED, 0), ""), ("rolled back", counts.get(ROLLED_BACK, 0),
                                                         "bad" if counts.get(ROLLED_BACK) else "")]
    html = ['<div class="cards">']
    if r.passes:  # check-target runs no pass: only the target's verdict
        html += [f'<div class="card">{name}<b class="{cls}">{n}</b></div>' for name, n, cls in cards]
    if r.rewrites or v.performed or v.detail:  # check-target has no records and no check
        html.append(f'<div class="card">whole-model check{verdict}</div>')
    if r.target is not None:
        fits = r.target["fits"]
        html.append(f'<div class="card">target {escape(r.target["profile"])}<b class="{"ok" if fits else "bad"}">'
                    f'{"fits" if fits else str(r.target["nodes_not_fitting"]) + " node(s) do not fit"}</b></div>')
    if r.passes:
        html.append(f'<div class="card">passes<b>{escape(", ".join(r.passes))}</b>' + "".join(
            f"<br>{escape(p)}: {escape(pass_count_text(n))}" for p, n in per_pass.items()) + "</div>")
    html.append('</div><div class="summary"><div><h3>Operators</h3>' + _op_table(r) + "</div>")
    if r.timings:
        html.append("<div><h3>Timings (s)</h3><table>" + "".join(
            f"<tr><td>{escape(k)}</td><td>{v_:.3f}</td></tr>" for k, v_ in r.timings.items()) + "</table></div>")
    if r.target is not None and r.target["violations"]:
        html.append("<div><h3>Target misfits</h3><ul>" + "".join(
            f"<li>{escape(x['message'])} <code>{escape(x['rule'])}</code></li>" for x in r.target["violations"])
            + "</ul></div>")
    return "".join(html) + "</div>"


def _op_table(r: Report) -> str:
    rows = op_count_rows(r.op_counts_before, r.op_counts_after)   # cells from the counts: an op type may hold spaces
    width = 3 if r.passes else 2   # before and after, or the model's counts only
    head = "<th>op</th><th>before</th><th>after</th>" if r.passes else "<th>op</th><th>nodes</th>"
    cells = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row[:width]) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{cells}</table>"


def _filters(r: Report) -> str:
    statuses = [s for s in (REWRITTEN, PLANNED, SKIPPED, ROLLED_BACK) if any(x.status == s for x in r.rewrites)]
    boxes = "".join(f'<label><input type=checkbox class="f-status" value="{s}" checked> {s.replace("_", " ")}'
                    f"</label>" for s in statuses)
    options = "".join(f'<option value="{escape(p)}">{escape(p)}</option>' for p in r.passes)
    return (f'<h2>Records ({len(r.rewrites)})</h2><div class="filters">{boxes}'
            f'<label>pass <select id="f-pass"><option value="">all</option>{options}</select></label>'
            '<label><input id="f-text" type=search placeholder="node name"></label>'
            '<span id="f-count"></span></div>')


def _record(x, k: int) -> str:
    head = (f'<span class="badge b-{x.status}">{x.status.replace("_", " ")}</span>'
            f"<b>{escape(x.op)}</b> <code>{escape(x.node)}</code> &middot; {escape(x.pass_name)}"
            + (f" &middot; form <b>{escape(x.form)}</b>" + (f" ({escape(x.variant)})" if x.variant else "") if x.form else "")
            + (f" &middot; <code>{escape(x.code)}</code>" if x.code else ""))
    body = [_costs(x)] if x.status in (REWRITTEN, PLANNED) else []
    if x.reason:
        body.append(f"<p><b>{'Error' if x.status == ROLLED_BACK else 'Why left alone'}:</b> {escape(x.reason)}</p>")
    if x.sketch_before is not None or x.sketch_after is not None:
        figures = []
        for caption, sk in (("original", x.sketch_before), ("replacement", x.sketch_after)):
            if sk is not None:
                figures.append(f"<figure><figcaption>{caption}</figcaption>{render(sk, f'{caption} of {x.node}')}</figure>")
        body.append(f'<div class="graphs">{"".join(figures)}</div>')
    if x.notes:
        body.append('<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in x.notes) + "</ul>")
    open_ = " open" if k < 20 and x.status != SKIPPED else ""
    return (f'<section class="record" id="r{k}" data-node="{escape(x.node)}" data-status="{x.status}" '
            f'data-pass="{escape(x.pass_name)}"><details{open_}><summary>{head}</summary>'
            f'<div class="body">{"".join(body)}</div></details></section>')


def _costs(x) -> str:
    def fmt(v):
        return "?" if v is None else f"{v:,}"
    rows = [("MACs", x.macs_before, x.macs_after), ("bytes moved", x.moved_bytes_before, x.moved_bytes_after),
            ("bytes streamed", x.streamed_bytes_before, x.streamed_bytes_after),
            ("nodes", x.nodes_before, x.nodes_after)]
    table = "".join(f"<tr><td>{name}</td><td>{fmt(a)}</td><td>{fmt(b)}</td></tr>" for name, a, b in rows)
    check = ("" if x.max_abs_error is None else
             f"<p>local check: max abs error {x.max_abs_error:.3g}, max rel error {x.max_rel_error:.3g}</p>")
    steps = getattr(x, "quantized_steps", None)
    if steps:
        check += f"<p>{escape(steps_line(steps))}</p>"
    return f"<table><tr><th></th><th>before</th><th>after</th></tr>{table}</table>{check}"
