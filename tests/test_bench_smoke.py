"""Smoke run of every benchmark at tiny sizes (the real runs are kept out of CI)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_benchmark_runs_at_smoke_size(tmp_path):
    env = dict(os.environ, MQE_BENCH_SMOKE="1", MQE_NO_PROGRESS="1")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "bench", "-p", "no:cacheprovider",
         "--benchmark-json", str(out), "--benchmark-min-rounds", "1",
         "--benchmark-max-time", "0.01", "--benchmark-warmup", "off"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    names = {b["name"].split("[")[0] for b in data["benchmarks"]}
    files = {b["fullname"].split("::")[0] for b in data["benchmarks"]}
    assert {"bench/bench_superlet.py", "bench/bench_sources.py", "bench/bench_features.py",
            "bench/bench_cluster.py", "bench/bench_pipeline.py"} <= files, files
    assert all(b["stats"]["rounds"] >= 1 for b in data["benchmarks"]), names
    # the report script turns the JSON into a markdown table
    md = subprocess.run([sys.executable, str(ROOT / "bench" / "report.py"), str(out)],
                        capture_output=True, text=True, check=True).stdout
    assert "| benchmark |" in md and "station_days_per_hour" in md
