"""One self-contained HTML page (figures embedded as base64 data URIs)."""
from __future__ import annotations

import base64
import html
import json
from typing import Any, Sequence

__all__ = ["img_tag", "table", "page", "esc"]

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
