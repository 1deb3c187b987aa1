"""Benchmarks of the sources: synthetic archive writing, archive read + detect throughput.

Sizes: one day x 2 stations (full) or about 15 minutes x 1 station when
``MQE_BENCH_SMOKE=1``. The archive is generated once per session in a temp dir.
Figures recorded in ``benchmark.extra_info``:

- ``station_days_per_s``: synthetic archive generation speed;
- ``samples_per_s``: archive read + resample + detect + cut, input samples per second;
- ``vs_raw_read``: that throughput divided by a bare ``obspy.read`` of the same
  files (how much the detection pipeline costs over decoding miniSEED).
"""
from __future__ import annotations

import os
import time

import pytest

from engine.sources import open_source
from engine.synth import write_archive

SMOKE = os.environ.get("MQE_BENCH_SMOKE", "") not in ("", "0")
DAYS = 0.01 if SMOKE else 1.0
STATIONS = 1 if SMOKE else 2


@pytest.fixture(scope="session")
def bench_archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_sds")
    t = time.perf_counter()
    write_archive(root, days=DAYS, stations=STATIONS, seed=0)
    return root, time.perf_counter() - t


def test_synth_speed(benchmark, tmp_path):
    days = 0.01 if SMOKE else 0.5
    out = tmp_path / "syn"
    benchmark.pedantic(write_archive, args=(out,), kwargs=dict(days=days, stations=1, seed=1),
                       rounds=1, iterations=1)
    secs = benchmark.stats.stats.mean if benchmark.stats else None
    if secs is None:  # --benchmark-disable: time it ourselves
        t = time.perf_counter()
        write_archive(out, days=days, stations=1, seed=1)
        secs = time.perf_counter() - t
    rate = days / secs
    benchmark.extra_info["station_days_per_s"] = rate
    print(f"\nsynth: {rate:.3f} station-days/s ({secs:.2f} s for {days} station-day)")
    assert rate > 0


def test_read_detect_throughput(benchmark, bench_archive):
    from obspy import read

    root, _ = bench_archive
    files = sorted(p for p in root.rglob("*.D.*") if p.is_file())
    t = time.perf_counter()
    n_raw = sum(tr.stats.npts for f in files for tr in read(str(f)))
    raw_s = time.perf_counter() - t

    def run():
        src = open_source(archive=root)
        events, summary = src.read_all()
        return events, summary

    t = time.perf_counter()
    events, summary = benchmark.pedantic(run, rounds=1, iterations=1)
    secs = time.perf_counter() - t
    assert events and summary.samples >= n_raw
    sps = n_raw / secs
    raw_sps = n_raw / raw_s
    benchmark.extra_info.update(samples_per_s=sps, raw_read_samples_per_s=raw_sps,
                                vs_raw_read=sps / raw_sps, events=len(events))
    print(f"\nread+detect: {sps / 1e6:.2f} M samples/s ({len(events)} events), "
          f"raw obspy.read {raw_sps / 1e6:.2f} M samples/s, ratio {sps / raw_sps:.3f}")
