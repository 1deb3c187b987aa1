"""Turn pytest-benchmark JSON into a markdown table with machine details.

Usage::

    pytest bench --benchmark-json results.json
    python bench/report.py results.json [more.json ...] > results.md

Each benchmark's ``extra_info`` (ratios, throughputs, sizes, device) becomes
columns of the table, so the figures that matter (kernel vs reference, CPU vs
GPU, events/s, station-days/hour, peak memory) are read off one line each.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v == 0 or 1e-3 <= abs(v) < 1e5:
            return f"{v:.4g}"
        return f"{v:.3e}"
    return str(v)


def machine_lines(data: dict[str, Any]) -> list[str]:
    """Markdown bullet lines describing the machine a JSON file was made on."""
    m = data.get("machine_info", {})
    cpu = m.get("cpu", {})
    lines = [
        f"- date: {data.get('datetime', '?')}",
        f"- machine: {m.get('node', '?')}, {m.get('system', '?')} {m.get('release', '')}",
        f"- cpu: {cpu.get('brand_raw', m.get('processor', '?'))}, "
        f"{cpu.get('count', '?')} logical cores",
        f"- python: {m.get('python_implementation', '')} {m.get('python_version', '?')}",
    ]
    commit = data.get("commit_info", {})
    if commit.get("id"):
        lines.append(f"- commit: {commit['id'][:12]}{' (dirty)' if commit.get('dirty') else ''}")
    return lines


def table(benches: list[dict[str, Any]]) -> str:
    """Markdown table of benchmarks (one column per ``extra_info`` key among them)."""
    extra_keys: list[str] = []
    for b in benches:
        for k in b.get("extra_info", {}):
            if k not in extra_keys:
                extra_keys.append(k)
    head = ["benchmark", "mean (s)", "min (s)", "rounds", *extra_keys]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for b in benches:
        st = b.get("stats", {})
        cells = [b.get("name", b.get("fullname", "?")).split("::")[-1],
                 _fmt(st.get("mean", float("nan"))), _fmt(st.get("min", float("nan"))),
                 str(st.get("rounds", ""))]
        cells += [_fmt(b.get("extra_info", {}).get(k, "")) for k in extra_keys]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def tables(data: dict[str, Any]) -> str:
    """One markdown table per benchmark file of a pytest-benchmark JSON document."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for b in data.get("benchmarks", []):
        groups.setdefault(b.get("fullname", "?").split("::")[0], []).append(b)
    return "\n\n".join(f"### {name}\n\n{table(benches)}" for name, benches in groups.items())


def render(paths: list[Path]) -> str:
    """The markdown report of several JSON files."""
    parts = ["# microquake-engine benchmark results", ""]
    for p in paths:
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"error: {p} is not a pytest-benchmark JSON file ({exc})")
        parts += [f"## {p.name}", "", *machine_lines(data), "", tables(data), ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", nargs="+", type=Path, help="pytest-benchmark JSON file(s)")
    ap.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    args = ap.parse_args(argv)
    text = render(args.json)
    if args.output:
        tmp = args.output.with_name(args.output.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(args.output)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
