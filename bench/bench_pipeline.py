"""Whole-pipeline throughput: station-days per hour of wall time, and peak memory.

Synthetic archives of 1, 7 and 30 station-days go through the main job (read,
detect, superlet images, CNN features, store; clustering without the report)
in a child process whose peak resident memory (VmHWM) is read from ``/proc``,
in each execution mode: the CPU in one process (``--workers 1``), the CPU with
the automatic plan (one worker process per core), and CUDA when a GPU is
present. Per archive, the ratio of each mode to one process is measured in the
same run. The stage breakdown (read+detect, images, CNN: busy seconds summed
over workers) shows which stage bounds the rate. Cost should grow linearly with
the days and memory stay flat; the figures are extrapolated to a station-year.
``MQE_BENCH_SMOKE=1`` runs a 30-minute archive instead.

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
DAYS = [0.02] if SMOKE else [1, 7, 30]


def _modes() -> list[str]:
    modes = ["cpu-1", "cpu-auto"]
    try:
        import torch

        if torch.cuda.is_available():
            modes.append("cuda")
    except ImportError:  # pragma: no cover
        pass
    return modes


MODES = _modes()
_FIRST: dict = {}  # seconds of the one-process CPU run per archive, for the ratios
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
import resource  # worker processes have ended: the largest one's peak
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print("MQE_CHILD " + json.dumps({"code": code, "seconds": time.perf_counter() - t0,
      "maxrss_mb": int(hwm[0].split()[1]) / 1024 if hwm else float("nan"),
      "worker_maxrss_mb": kids}))
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


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """One synthetic archive per size (1 station), made once for every mode."""
    from engine.synth import write_archive

    made = {}

    def get(days):
        if days not in made:
            root = tmp_path_factory.mktemp(f"pipe{days}")
            made[days] = write_archive(root / "archive", days=days, stations=1, seed=1,
                                       rate=RATE)
        return made[days]
    return get


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("days", DAYS)
def test_pipeline_station_days_per_hour(benchmark, archives, tmp_path, days, mode):
    archive = archives(days)
    out = tmp_path / "out"
    device, workers = ("cuda", "0") if mode == "cuda" else ("cpu", mode.split("-")[1])
    args = ["--archive", str(archive), "--out", str(out), "--k", "2" if SMOKE else "3",
            "--no-report", "--device", device,
            "--workers", "0" if workers == "auto" else workers]

    def once():
        return run_job(args + ["--fresh"])

    res = benchmark.pedantic(once, rounds=1, iterations=1)
    summary = json.loads((out / "summary.json").read_text())
    station_days = float(days)
    per_hour = station_days / (res["seconds"] / 3600.0)
    if mode == "cpu-1":
        _FIRST[days] = res["seconds"]
    ratio = _FIRST[days] / res["seconds"] if days in _FIRST else float("nan")
    busy = summary.get("busy_seconds", {})
    benchmark.extra_info.update({
        "mode": mode,
        "workers": summary.get("workers"),
        "station_days": station_days,
        "events": summary["events"],
        "seconds": round(res["seconds"], 2),
        "station_days_per_hour": round(per_hour, 3),
        "hours_per_station_year": round(365.0 / per_hour, 2),
        "peak_rss_mb": round(res["maxrss_mb"], 1),
        "worker_peak_rss_mb": round(res["worker_maxrss_mb"], 1),
        "events_per_s": round(summary["events"] / res["seconds"], 3),
        "speedup_vs_one_process": round(ratio, 2),
        **{f"busy_{k}_s": round(v, 2) for k, v in busy.items()},
    })
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in busy.items())
    print(f"\n{days} station-day(s), {mode} ({summary.get('workers')} worker(s)): "
          f"{summary['events']} events in {res['seconds']:.1f} s -> {per_hour:.2f} "
          f"station-days/hour, {ratio:.2f}x one process, peak RSS {res['maxrss_mb']:.0f} MB, "
          f"station-year ~ {365.0 / per_hour:.1f} h; busy: {stages}")
    assert summary["events"] > 0
