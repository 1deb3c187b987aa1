"""Whole-pipeline throughput: station-days per hour of wall time, and peak memory.

A synthetic archive of 1 and 7 days (one station) goes through the main job
(read, detect, superlet images, CNN features, store; clustering without the
report) in a child process whose peak resident memory (VmHWM) is read from
``/proc``. Cost should grow linearly with the days and memory stay flat; the
figures are extrapolated to a station-year. ``MQE_BENCH_SMOKE=1`` runs a
30-minute archive instead.

Run: ``pytest bench/bench_pipeline.py --benchmark-json out.json -s``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SMOKE = os.environ.get("MQE_BENCH_SMOKE", "") not in ("", "0")
DAYS = [0.02] if SMOKE else [1, 7, 28]
RATE = 40.0 if SMOKE else 6.0  # planted events per hour

# Peak memory is VmHWM of the child's own address space: getrusage's ru_maxrss is
# not used because Linux carries the parent's high-water mark across fork + exec.
_CHILD = r"""
import json, runpy, sys, time
sys.argv = ["engine.run"] + sys.argv[1:]
t0 = time.perf_counter()
try:
    runpy.run_module("engine.run", run_name="__main__")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:")]
print("MQE_CHILD " + json.dumps({"code": code, "seconds": time.perf_counter() - t0,
      "maxrss_mb": int(hwm[0].split()[1]) / 1024 if hwm else float("nan")}))
"""


def run_job(args: list[str]) -> dict:
    """Run the main job in a child process; its exit code, wall time and peak RSS."""
    env = dict(os.environ, MQE_NO_PROGRESS="1")
    proc = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True,
                          text=True, env=env, cwd=Path(__file__).resolve().parents[1])
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("MQE_CHILD ")]
    assert line, proc.stdout[-2000:] + proc.stderr[-2000:]
    res = json.loads(line[-1][len("MQE_CHILD "):])
    assert res["code"] == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    res["stdout"] = proc.stdout
    return res


@pytest.mark.parametrize("days", DAYS)
def test_pipeline_station_days_per_hour(benchmark, tmp_path_factory, days):
    from engine.synth import write_archive

    root = tmp_path_factory.mktemp(f"pipe{days}")
    archive = write_archive(root / "archive", days=days, stations=1, seed=1, rate=RATE)
    out = root / "out"
    args = ["--archive", str(archive), "--out", str(out), "--k", "2" if SMOKE else "3", "--no-report",
            "--device", "cpu"]

    def once():
        return run_job(args + ["--fresh"])

    res = benchmark.pedantic(once, rounds=1, iterations=1)
    summary = json.loads((out / "summary.json").read_text())
    station_days = float(days)
    per_hour = station_days / (res["seconds"] / 3600.0)
    benchmark.extra_info.update({
        "station_days": station_days,
        "events": summary["events"],
        "seconds": round(res["seconds"], 2),
        "station_days_per_hour": round(per_hour, 3),
        "hours_per_station_year": round(365.0 / per_hour, 2),
        "peak_rss_mb": round(res["maxrss_mb"], 1),
        "events_per_s": round(summary["events"] / res["seconds"], 3),
    })
    print(f"\n{days} station-day(s): {summary['events']} events in {res['seconds']:.1f} s "
          f"-> {per_hour:.2f} station-days/hour, peak RSS {res['maxrss_mb']:.0f} MB, "
          f"station-year ~ {365.0 / per_hour:.1f} h")
    assert summary["events"] > 0
