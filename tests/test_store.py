"""The resumable feature store: atomic parts, resume, fingerprint, consolidation."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from engine.store import META_COLUMNS, FeatureStore, part_name, read_part


def _meta(n, key):
    return {c: [f"{c}{i}" for i in range(n)] for c in META_COLUMNS} | {"chunk": [key] * n}


def test_write_gather_consolidate(tmp_path):
    store = FeatureStore(tmp_path, {"a": 1})
    rng = np.random.default_rng(0)
    f1, f2 = rng.normal(size=(3, 5)), rng.normal(size=(2, 5))
    store.write("k1", f1, _meta(3, "k1"), {"files_read": 1})
    store.write("k0", np.zeros((0, 0)), _meta(0, "k0"))
    store.write("k2", f2, _meta(2, "k2"))
    X, meta, stats = store.gather(["k1", "k0", "k2"])
    np.testing.assert_allclose(X, np.vstack([f1, f2]).astype(np.float32))
    assert meta["chunk"] == ["k1"] * 3 + ["k2"] * 2
    assert stats[0] == {"files_read": 1}
    path = store.consolidate(X, meta)
    with h5py.File(path) as h5:
        np.testing.assert_array_equal(h5["features"][()], X)
        assert [s.decode() for s in h5["event_id"][()]] == meta["event_id"]


def test_resume_skips_done_chunks_and_cleans_temporaries(tmp_path):
    store = FeatureStore(tmp_path, {"a": 1})
    store.write("k1", np.ones((1, 2)), _meta(1, "k1"))
    # a killed writer leaves only a temporary file, never a half part
    (store.parts_dir / (part_name("k2") + ".123.tmp")).write_bytes(b"partial")
    again = FeatureStore(tmp_path, {"a": 1})
    assert again.todo(["k1", "k2", "k3"]) == ["k2", "k3"]
    assert not list(again.parts_dir.glob("*.tmp"))


def test_other_configuration_is_refused_unless_fresh(tmp_path):
    store = FeatureStore(tmp_path, {"weights": "a", "fs": 100.0})
    store.write("k1", np.ones((1, 2)), _meta(1, "k1"))
    with pytest.raises(ValueError, match="differs in: weights"):
        FeatureStore(tmp_path, {"weights": "b", "fs": 100.0})
    fresh = FeatureStore(tmp_path, {"weights": "b", "fs": 100.0}, fresh=True)
    assert fresh.todo(["k1"]) == ["k1"]


def test_corrupt_or_missing_part_is_named(tmp_path):
    store = FeatureStore(tmp_path, {})
    with pytest.raises(ValueError, match="lacks chunk 'zz'"):
        store.gather(["zz"])
    (store.parts_dir / part_name("bad")).write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="unreadable"):
        store.gather(["bad"])


def test_metadata_length_mismatch(tmp_path):
    store = FeatureStore(tmp_path, {})
    with pytest.raises(ValueError, match="event_id"):
        store.write("k", np.ones((2, 3)), {"event_id": ["a"]})
    part = store.write("k", np.ones((1, 3)), _meta(1, "k"))
    assert read_part(part)["key"] == "k"
