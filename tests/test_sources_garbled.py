"""Bad data inside readable files: garbled miniSEED data records and .npy files of text.

A miniSEED file with valid headers but garbled Steim-2 frames makes ObsPy raise
one error listing every bad frame (thousands of lines). The sources must log ONE
warning line per file, keep a one-line reason, and count the file once even
when several chunks read it.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from engine.sources import open_source
from engine.sources.base import SourceSummary, unique_skipped
from engine.synth import write_archive


def garble_mseed(src: Path, dst: Path, seed: int = 0) -> int:
    """Copy ``src`` to ``dst`` with the data part of every record replaced by noise.

    Headers (fixed header and blockette 1000) are kept, so ObsPy indexes the
    file (``headonly``) but cannot decode its Steim frames. Returns the number
    of records garbled.
    """
    b = bytearray(src.read_bytes())
    rng = np.random.default_rng(seed)
    off, n = 0, 0
    while off < len(b):
        data_off = int.from_bytes(b[off + 44: off + 46], "big")
        assert b[off + 48: off + 50] == b"\x03\xe8", "expected blockette 1000 at byte 48"
        reclen = 2 ** b[off + 54]
        b[off + data_off: off + reclen] = rng.integers(0, 256, reclen - data_off,
                                                       dtype=np.uint8).tobytes()
        off += reclen
        n += 1
    dst.write_bytes(bytes(b))
    return n


@pytest.fixture(scope="module")
def sds(tmp_path_factory) -> Path:
    """3 h SDS archive, 2 stations, Steim-2 encoded (ObsPy writes it)."""
    return write_archive(tmp_path_factory.mktemp("sds"), days=3 / 24, stations=2, seed=5,
                         rate=6.0, start="2020-01-01", encoding="STEIM2")


def _day_file(root: Path, station: str) -> Path:
    (f,) = [p for p in root.rglob(f"XX.{station}..HHZ.D.*") if p.is_file()]
    return f


def _check_one_line(caplog, capfd, name: str, summary: SourceSummary) -> str:
    hits = [r for r in caplog.records if name in r.getMessage()]
    assert len(hits) == 1, [r.getMessage()[:120] for r in hits]
    assert hits[0].levelname == "WARNING" and hits[0].name == "engine.sources"
    (reason,) = [r for p, r in summary.skipped if p.endswith(name)]
    assert "\n" not in reason and len(reason) <= 300 and "Steim2" in reason
    assert "more line(s)" in reason         # the thousand-line message was cut
    out, err = capfd.readouterr()
    assert "Steim2" not in out and "Steim2" not in err   # no flood on the console
    return reason


def test_garbled_day_file_in_sds_one_warning_per_file(sds, tmp_path, caplog, capfd):
    root = tmp_path / "sds"
    shutil.copytree(sds, root)
    bad = _day_file(root, "SYN02")
    assert garble_mseed(bad, bad) > 10
    src = open_source(archive=root, chunk_length=1800.0)
    keys = src.chunks()
    bad_keys = [k for k in keys if k.startswith("XX.SYN02")]
    assert len(bad_keys) >= 6                # one file, read by many chunks
    capfd.readouterr()
    with caplog.at_level("WARNING", logger="engine"):
        results = [src.read_chunk(k) for k in keys]
    # every chunk that reads the file records it (the truth per chunk) ...
    per_chunk = [r.summary.skipped for r in results if r.key in bad_keys]
    assert all(len(s) == 1 and s[0][0] == str(bad) for s in per_chunk)
    # ... but the user sees one warning and the merged summary counts one file
    merged = SourceSummary()
    for r in results:
        merged.merge(r.summary)
    assert [p for p, _ in merged.skipped] == [str(bad)]
    assert unique_skipped(p for r in results for p in r.summary.skipped) == merged.skipped
    _check_one_line(caplog, capfd, bad.name, merged)
    # the good station is read normally
    assert sum(len(r.events) for r in results if r.key.startswith("XX.SYN01")) > 0


def test_garbled_file_in_plain_folder(sds, tmp_path, caplog, capfd):
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(_day_file(sds, "SYN01"), flat / "good.mseed")
    garble_mseed(_day_file(sds, "SYN02"), flat / "garbled.mseed", seed=3)
    capfd.readouterr()
    with caplog.at_level("WARNING", logger="engine"):
        events, summary = open_source(archive=flat, chunk_length=1800.0).read_all()
    assert events and len(summary.skipped) == 1
    reason = _check_one_line(caplog, capfd, "garbled.mseed", summary)
    assert reason.startswith("not readable by ObsPy (InternalMSEEDError")


def test_garbled_file_as_event_file(sds, tmp_path, caplog, capfd):
    folder = tmp_path / "events" / "LP"
    folder.mkdir(parents=True)
    shutil.copy(_day_file(sds, "SYN01"), folder / "good.mseed")
    garble_mseed(_day_file(sds, "SYN02"), folder / "garbled.mseed", seed=4)
    capfd.readouterr()
    with caplog.at_level("WARNING", logger="engine"):
        events, summary = open_source(events=folder.parent).read_all()
    assert len(events) == 1 and events[0].label == "LP"
    _check_one_line(caplog, capfd, "garbled.mseed", summary)


def test_npy_of_strings_names_the_file(tmp_path, caplog):
    words = np.array([["a", "b", "c"], ["d", "e", "f"]])
    np.save(tmp_path / "words.npy", words)
    with pytest.raises(ValueError,
                       match=r"words\.npy: holds <U1 values \(text\), expected numeric"):
        open_source(events=tmp_path / "words.npy").chunks()
    np.savez(tmp_path / "mixed.npz", LP=np.ones((2, 50)), names=np.array(["x", "y"]))
    np.save(tmp_path / "good.npy", np.ones((3, 40)))
    with caplog.at_level("WARNING", logger="engine"):
        events, summary = open_source(events=tmp_path).read_all()
    assert len(events) == 5                                       # LP (2) + good (3)
    skipped = dict(summary.skipped)
    assert set(skipped) == {str(tmp_path / "mixed.npz") + ":names", str(tmp_path / "words.npy")}
    assert all("text" in r for r in skipped.values())
    assert sum("words.npy" in r.getMessage() for r in caplog.records) == 1
    # object arrays (pickles) are refused by np.load: the error also names the file
    np.save(tmp_path / "objs.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"objs\.npy is not a readable NumPy file"):
        open_source(events=tmp_path / "objs.npy").chunks()
