"""Local execution plans: worker processes, cross-chunk batches, bounded work in flight."""
from __future__ import annotations

import csv
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from engine.parallel import MIN_CHUNKS_PER_WORKER, _bounded, _core_sets, make_plan
from engine.run import main


def test_cpu_plan_uses_every_core_once():
    plan = make_plan("cpu", 0, n_chunks=1000, batch=32, cores=16)
    assert plan.workers == 16 and plan.threads == 1 and plan.workers * plan.threads == 16
    plan = make_plan("cpu", 4, n_chunks=1000, batch=32, cores=16)
    assert plan.workers == 4 and plan.threads == 4
    assert 1 <= plan.chunks_per_task <= 16


def test_small_inputs_stay_in_one_process():
    plan = make_plan("cpu", 0, n_chunks=MIN_CHUNKS_PER_WORKER * 2 - 1, batch=32, cores=16)
    assert plan.workers == 1 and plan.threads == 16
    assert make_plan("cpu", 3, n_chunks=2, batch=32, cores=16).workers == 2  # asked for


def test_gpu_plan_feeds_large_batches_from_readers():
    plan = make_plan("cuda", 0, n_chunks=1000, batch=32, cores=16)
    assert plan.workers == 15 and plan.batch_target >= 256
    with pytest.raises(ValueError, match="--workers"):
        make_plan("cpu", -1, 10, 32)


def test_core_sets_are_disjoint():
    import os

    n = len(os.sched_getaffinity(0))
    sets = _core_sets(n)
    flat = [c for s in sets for c in s]
    assert len(flat) == len(set(flat)) == n
    assert _core_sets(n + 1) == []  # more workers than cores: no pinning


def test_bounded_submission_keeps_work_in_flight_limited():
    live, peak = [0], [0]
    lock = threading.Lock()

    def job(i):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        time.sleep(0.01)
        with lock:
            live[0] -= 1
        return i

    with ThreadPoolExecutor(8) as pool:
        got = sorted(f.result() for f in _bounded(pool, job, [(i,) for i in range(40)], 3))
    assert got == list(range(40)) and peak[0] <= 3


def _clusters(out):
    with open(out / "assignments.csv", newline="") as fh:
        return {r["event_id"]: r["cluster"] for r in csv.DictReader(fh)}


@pytest.mark.slow
def test_worker_processes_give_the_same_results_as_one_process(tmp_path):
    argv = ["--synthetic-days", "0.1", "--synthetic-rate", "20", "--chunk-length", "600",
            "--k", "3", "--no-report", "--device", "cpu"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(argv + ["--out", str(one), "--workers", "1"]) == 0
    (two).mkdir()
    import shutil

    shutil.copytree(one / "synthetic_archive", two / "synthetic_archive")
    assert main(argv + ["--out", str(two), "--workers", "2"]) == 0
    s1 = json.loads((one / "summary.json").read_text())
    s2 = json.loads((two / "summary.json").read_text())
    assert s2["workers"] == 2 and s1["workers"] == 1
    assert s1["events"] == s2["events"] > 10
    assert len(list((two / "store" / "parts").glob("*.npz"))) == s2["chunks"]
    import h5py

    with h5py.File(one / "features.h5") as a, h5py.File(two / "features.h5") as b:
        assert list(a["event_id"][:]) == list(b["event_id"][:])
        fa, fb = a["features"][:], b["features"][:]
    # batch company changes features only through float rounding
    assert np.abs(fa - fb).max() <= 1e-3 * np.abs(fa).max()
    from sklearn.metrics import adjusted_rand_score

    c1, c2 = _clusters(one), _clusters(two)
    assert adjusted_rand_score(list(c1.values()), [c2[k] for k in c1]) >= 0.99
    assert "read+detect" in s2["busy_seconds"]


@pytest.mark.slow
def test_a_failing_worker_stops_the_run_and_leaves_whole_parts(tmp_path, monkeypatch):
    """An error in one worker ends the run with it; parts on disk are complete files."""
    from engine import parallel

    argv = ["--synthetic-days", "0.1", "--synthetic-rate", "20", "--chunk-length", "600",
            "--k", "3", "--no-report", "--device", "cpu", "--workers", "2",
            "--out", str(tmp_path / "o")]
    real = parallel.run_cpu
    calls = []

    def failing(plan, source, todo, featurizer, parts_dir, label_catalog, on_chunks):
        def boom(n):
            calls.append(n)
            if len(calls) == 2:
                raise RuntimeError("disk full (simulated)")
            on_chunks(n)
        return real(plan, source, todo, featurizer, parts_dir, label_catalog, boom)

    monkeypatch.setattr(parallel, "run_cpu", failing)
    assert main(argv) == 1
    parts = list((tmp_path / "o" / "store" / "parts").glob("*"))
    assert all(p.suffix == ".npz" for p in parts)  # no temporaries left as parts
    monkeypatch.setattr(parallel, "run_cpu", real)
    assert main(argv) == 0  # the re-run resumes and completes


@pytest.mark.slow
def test_reader_processes_feed_cross_chunk_batches(tmp_path):
    """The GPU plan's plumbing (readers -> batches -> one part per chunk), on the CPU."""
    from engine import parallel, pipeline
    from engine.features import make_featurizer
    from engine.sources import open_source
    from engine.store import FeatureStore
    from engine.synth import write_archive

    archive = write_archive(tmp_path / "a", days=0.05, stations=2, seed=2, rate=30)
    source = open_source(archive=str(archive), chunk_length=600)
    keys = source.chunks()
    plan = parallel.Plan(workers=2, threads=1, chunks_per_task=1, batch_target=12,
                         device="cuda")
    featurizer = make_featurizer("pixels").fit()
    store = FeatureStore(tmp_path / "out", {"test": 1})
    sizes, done = [], []
    real = pipeline.compute_chunks

    def spy(results, *a, **k):
        sizes.append(sum(len(r.events) for r in results))
        return real(results, *a, **k)

    pipeline.compute_chunks = spy
    try:
        parallel.run_gpu(plan, source, keys, featurizer, str(store.parts_dir), None,
                         done.append)
    finally:
        pipeline.compute_chunks = real
    assert sum(done) == len(keys) and len(store.todo(keys)) == 0
    X, meta, _ = store.gather(keys)
    assert X.shape[0] == sum(sizes) > 12
    assert all(s >= 12 for s in sizes[:-1])  # every batch but the last is full
    assert len(sizes) < len(keys)  # events of several chunks per batch
