"""One self-contained HTML page (figures embedded as base64 data URIs)."""
from __future__ import annotations

import base64
import html
import json
from typing import Any, Sequence

__all__ = ["img_tag", "table", "page", "esc", "explorer", "swatch", "pre_json"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;
  background:#f6f7f9;color:#1d2330}
header{background:#1d3557;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;opacity:.85;font-size:14px}
main{max-width:1150px;margin:0 auto;padding:12px 24px 40px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);
  margin:16px 0;padding:14px 20px}
h2{font-size:18px;margin:4px 0 10px;color:#1d3557} h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border:1px solid #d8dde6;padding:3px 8px;text-align:right}
th{background:#eef1f6} td.l,th.l{text-align:left}
img{max-width:100%;height:auto;border:1px solid #e3e6ec;border-radius:4px;margin:4px 0}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#eef3fb;border-radius:6px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:20px;color:#1d3557} .card span{font-size:12px;color:#555}
pre{background:#f0f2f5;padding:8px;border-radius:4px;font-size:12px;overflow-x:auto}
.note{font-size:13px;color:#555}
.sw{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:5px;
  vertical-align:-1px}
.xp{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.xp svg{background:#fbfcfe;border:1px solid #e3e6ec;border-radius:4px;max-width:100%;height:auto}
.xp circle{cursor:pointer;stroke:#fff;stroke-width:.5}
.xp circle.sel{stroke:#000;stroke-width:2}
.xp-panel{min-width:230px;max-width:300px;font-size:13px}
.xp-panel img{width:227px;height:227px;image-rendering:auto;background:#eee;display:block}
.xp-panel div{margin:3px 0;word-break:break-all}
.xp-wrap button{margin:0 6px 6px 0;padding:3px 10px;border:1px solid #9aa7bd;border-radius:4px;
  background:#fff;cursor:pointer} .xp-wrap button.on{background:#1d3557;color:#fff}
"""

_EXPLORER_JS = """
(function(){
  var root = document.getElementById('xp');
  if (!root) return;
  var data = JSON.parse(document.getElementById('xp-data').textContent);
  var img = document.getElementById('xp-img'), sel = null;
  function show(c){
    var p = data.points[+c.getAttribute('data-i')];
    img.src = p.th >= 0 ? data.thumbs[p.th] : '';
    img.alt = p.th >= 0 ? 'scalogram of ' + p.id : 'no image for this event';
    document.getElementById('xp-id').textContent = p.id;
    document.getElementById('xp-time').textContent = p.t ? p.t + ' (UTC)' : 'time unknown';
    document.getElementById('xp-cluster').textContent = data.names[String(p.c)] +
      (p.l ? ' \u00b7 catalogue label ' + p.l : '');
    var all = root.querySelectorAll('circle[data-id="' + CSS.escape(p.id) + '"]');
    if (sel) sel.forEach(function(e){ e.classList.remove('sel'); });
    all.forEach(function(e){ e.classList.add('sel'); });
    sel = all;
    root.setAttribute('data-shown', p.id);
  }
  root.addEventListener('mouseover', function(e){
    if (e.target.tagName === 'circle') show(e.target); });
  root.addEventListener('click', function(e){
    if (e.target.tagName === 'circle') show(e.target); });
  root.querySelectorAll('button[data-proj]').forEach(function(b){
    b.addEventListener('click', function(){
      root.querySelectorAll('button[data-proj]').forEach(function(o){
        o.classList.toggle('on', o === b); });
      root.querySelectorAll('svg[data-proj]').forEach(function(s){
        s.style.display = s.getAttribute('data-proj') === b.getAttribute('data-proj') ? '' : 'none';
      });
    });
  });
  function fromHash(){
    var m = location.hash.match(/^#event=(.+)$/);
    if (!m) return;
    var id = decodeURIComponent(m[1]);
    var c = root.querySelector('svg:not([style*="none"]) circle[data-id="' + CSS.escape(id) + '"]');
    if (c) c.dispatchEvent(new MouseEvent('click', {bubbles: true}));
  }
  window.addEventListener('hashchange', fromHash);
  fromHash();
  root.setAttribute('data-ready', '1');
})();
"""


def esc(x: Any) -> str:
    """HTML-escape ``str(x)``."""
    return html.escape(str(x))


def img_tag(png: bytes, alt: str) -> str:
    """``<img>`` with the PNG embedded as a data URI.

    Parameters
    ----------
    png : bytes
        PNG file contents.
    alt : str
        Alternative text.

    Returns
    -------
    str
    """
    b64 = base64.b64encode(png).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{b64}">'


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:
            return "n/a"
        return f"{v:.4g}"
    return esc(v)


def _is_text(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    try:
        float(v.rstrip("%"))
        return False
    except ValueError:
        return True


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> str:
    """A small HTML table; the first ``left`` columns and text columns are left-aligned."""
    text_cols = {i for r in rows for i, c in enumerate(r) if _is_text(c)}
    lcols = set(range(left)) | text_cols
    th = "".join(f'<th class="{"l" if i in lcols else ""}">{esc(h)}</th>'
                 for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f'<td class="{"l" if i in lcols else ""}">{_fmt(c)}</td>'
                         for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str]]) -> str:
    """Assemble the page.

    Parameters
    ----------
    title, subtitle : str
    sections : sequence of (heading, inner HTML)

    Returns
    -------
    str
        A complete HTML document with no external resources.
    """
    body = "".join(f'<section id="s{i}"><h2>{esc(h)}</h2>{inner}</section>'
                   for i, (h, inner) in enumerate(sections))
    nav = " &middot; ".join(f'<a href="#s{i}" style="color:#cfe0ff">{esc(h)}</a>'
                            for i, (h, _) in enumerate(sections))
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width\"><title>{esc(title)}</title>"
            f"<style>{_CSS}</style></head><body><header><h1>{esc(title)}</h1>"
            f"<p>{esc(subtitle)}</p><p style=\"font-size:12px\">{nav}</p></header>"
            f"<main>{body}</main></body></html>")


def pre_json(obj: Any) -> str:
    """Pretty JSON in a ``<pre>`` block."""
    return f"<pre>{esc(json.dumps(obj, indent=2, default=str, sort_keys=True))}</pre>"


def swatch(colour_hex: str) -> str:
    """A small square of ``colour_hex`` (inline, before a cluster name)."""
    return f'<span class="sw" style="background:{esc(colour_hex)}"></span>'


def _svg_points(name: str, Y, axis_labels, points, colours, visible: bool,
                width: int = 720, height: int = 520) -> str:
    import numpy as np

    Y = np.asarray(Y, dtype=float)
    m = 46
    lo, hi = Y.min(axis=0), Y.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    px = m + (Y[:, 0] - lo[0]) / span[0] * (width - 2 * m)
    py = height - m - (Y[:, 1] - lo[1]) / span[1] * (height - 2 * m)
    order = sorted(range(len(points)), key=lambda i: (points[i]["c"] >= 0, i))  # novel below
    dots = "".join(
        f'<circle cx="{px[i]:.1f}" cy="{py[i]:.1f}" r="4.5" fill="{esc(colours[points[i]["c"]])}" '
        f'data-i="{i}" data-id="{esc(points[i]["id"])}"><title>{esc(points[i]["id"])}</title>'
        "</circle>" for i in order)
    axes = (f'<line x1="{m}" y1="{height - m}" x2="{width - m}" y2="{height - m}" stroke="#888"/>'
            f'<line x1="{m}" y1="{m}" x2="{m}" y2="{height - m}" stroke="#888"/>'
            f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle" font-size="13">'
            f"{esc(axis_labels[0])}</text>"
            f'<text x="14" y="{height / 2}" text-anchor="middle" font-size="13" '
            f'transform="rotate(-90 14 {height / 2})">{esc(axis_labels[1])}</text>')
    style = "" if visible else ' style="display:none"'
    return (f'<svg data-proj="{esc(name)}" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{esc(name)} of the events"{style}>'
            f"{axes}{dots}</svg>")


def explorer(projections: Sequence[tuple[str, Any, Sequence[str]]],
             points: Sequence[dict], colours: dict, names: dict,
             thumbs: Sequence[str]) -> str:
    """Interactive map of the feature space: hover or click a point to see the event.

    Everything is inline (SVG points, JSON data, thumbnails as data URIs, a
    small script): the page stays self-contained and works offline. Opening
    the page at ``#event=<id>`` selects that event as a click would.

    Parameters
    ----------
    projections : sequence of (name, Y, axis_labels)
        2-D coordinates of the points, one set per projection (``"PCA"``,
        ``"t-SNE"``); the first is shown, buttons switch.
    points : sequence of dict
        Per point: ``id``, ``t`` (ISO UTC or ""), ``c`` (cluster), ``l``
        (catalogue label or ""), ``th`` (index into ``thumbs`` or -1).
    colours : dict
        ``{cluster: "#rrggbb"}``.
    names : dict
        ``{cluster: display name}``.
    thumbs : sequence of str
        Thumbnail images as data URIs.

    Returns
    -------
    str
        HTML (a ``div#xp`` with its data and script).
    """
    buttons = "".join(
        f'<button type="button" data-proj="{esc(n)}" class="{"on" if j == 0 else ""}">'
        f"{esc(n)}</button>" for j, (n, _, _) in enumerate(projections))
    svgs = "".join(_svg_points(n, Y, ax, points, colours, j == 0)
                   for j, (n, Y, ax) in enumerate(projections))
    legend = " ".join(f"{swatch(colours[c])}{esc(names[c])}" for c in sorted(
        names, key=lambda c: (c < 0, c)))
    data = json.dumps({"points": list(points), "thumbs": list(thumbs),
                       "names": {str(k): v for k, v in names.items()}},
                      separators=(",", ":")).replace("</", "<\\/")
    panel = ('<div class="xp-panel"><img id="xp-img" alt="hover or click a point">'
             '<div id="xp-id"><b>hover or click a point</b></div><div id="xp-time"></div>'
             '<div id="xp-cluster"></div></div>')
    return (f'<div id="xp" class="xp-wrap"><div>{buttons}</div>'
            f'<p class="note">{legend}</p><div class="xp"><div>{svgs}</div>{panel}</div>'
            f'<script type="application/json" id="xp-data">{data}</script>'
            f"<script>{_EXPLORER_JS}</script></div>")
