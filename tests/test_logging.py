"""configure_logging (one format, warnings captured) and progress (bars only on a terminal)."""
from __future__ import annotations

import io
import logging
import re
import threading
import warnings
from pathlib import Path

import pytest

from engine import _util
from engine._util import configure_logging, progress, progress_enabled, quiet

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (DEBUG|INFO|WARNING|ERROR) [\w.]+: .+$")


@pytest.fixture
def logged():
    """configure_logging into a buffer; undo everything afterwards."""
    saved_show = warnings.showwarning
    saved_levels = {n: logging.getLogger(n).level for n in ("engine", "py.warnings")}
    buf = io.StringIO()
    handlers = []

    def setup(**kw):
        handlers.append(configure_logging(stream=buf, **kw))
        return buf

    yield setup
    for name, level in saved_levels.items():
        lg = logging.getLogger(name)
        for h in handlers:
            lg.removeHandler(h)
        lg.setLevel(level)
    logging.captureWarnings(False)
    warnings.showwarning = saved_show


def test_one_format_for_library_messages_and_warnings(logged):
    buf = logged()
    configure_logging(stream=buf)      # twice: still one handler, no doubled lines
    logged()
    assert warnings.showwarning is _util._show_warning and logging._warnings_showwarning
    logging.getLogger("engine.sources").warning("skipped %s: %s", "a.mseed", "garbled")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _util._show_warning
        warnings.warn("something odd\nsecond line", UserWarning)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert all(LINE.match(ln) for ln in lines), lines
    assert lines[0].endswith("WARNING engine.sources: skipped a.mseed: garbled")
    assert "py.warnings: UserWarning: something odd (+1 more line(s))" in lines[1]
    assert "second line" not in buf.getvalue()
    assert "warnings.warn(" not in buf.getvalue()          # no source line
    handlers = [h for h in logging.getLogger("engine").handlers
                if getattr(h, "_mqe_handler", False)]
    assert len(handlers) == 1


def test_warnings_from_worker_threads_reach_the_log(logged):
    """Dask's threaded workers (and the local scheduler) run tasks in threads of this
    process: their warnings must come out through the same handler."""
    buf = logged()

    def task():
        warnings.warn("from a worker thread", RuntimeWarning)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _util._show_warning
        t = threading.Thread(target=task)
        t.start()
        t.join()
    (line,) = buf.getvalue().splitlines()
    assert LINE.match(line) and "RuntimeWarning: from a worker thread" in line


def test_level_filters_debug(logged):
    buf = logged(level="WARNING")
    logging.getLogger("engine.x").info("hidden")
    logging.getLogger("engine.x").warning("shown")
    assert buf.getvalue().count("\n") == 1 and "shown" in buf.getvalue()


def test_progress_logs_one_line_per_stage_off_a_terminal(monkeypatch, caplog, capsys):
    monkeypatch.delenv("MQE_NO_PROGRESS", raising=False)
    monkeypatch.delenv("MQE_PROGRESS", raising=False)
    assert not progress_enabled()                  # pytest's stderr is not a terminal
    with caplog.at_level(logging.INFO, logger="engine"):
        assert list(progress(range(5), desc="chunks", unit="chunk")) == list(range(5))
    msgs = [r.getMessage() for r in caplog.records if r.name == "engine.progress"]
    assert len(msgs) == 1 and re.fullmatch(r"chunks: 5 chunk in \d+\.\d s", msgs[0])
    err = capsys.readouterr().err
    assert "\r" not in err and "chunks" not in err
    caplog.clear()
    with quiet(), caplog.at_level(logging.INFO, logger="engine"):
        assert list(progress(range(3), desc="inner")) == [0, 1, 2]
    assert not [r for r in caplog.records if r.name == "engine.progress"]


def test_progress_bar_when_asked_or_on_a_terminal(monkeypatch, capsys):
    monkeypatch.delenv("MQE_NO_PROGRESS", raising=False)
    monkeypatch.setenv("MQE_PROGRESS", "1")
    assert progress_enabled()
    assert list(progress(range(3), desc="bar", unit="x")) == [0, 1, 2]
    err = capsys.readouterr().err
    assert "bar" in err and "\r" in err            # tqdm drew on stderr
    monkeypatch.setenv("MQE_NO_PROGRESS", "1")     # the explicit off switch wins
    assert not progress_enabled()
    monkeypatch.delenv("MQE_NO_PROGRESS")
    monkeypatch.delenv("MQE_PROGRESS")

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stderr", Tty())
    assert progress_enabled()


MY_MODULES = ["engine/_util.py", "engine/report/outputs.py", "engine/report/figures.py",
              "engine/report/html.py", "engine/sources/archive.py", "engine/sources/base.py",
              "engine/sources/eventfiles.py", "engine/sources/_common.py"]


@pytest.mark.parametrize("module", MY_MODULES)
def test_library_modules_log_instead_of_print_or_warn(module):
    src = (ROOT / module).read_text()
    code = re.sub(r'""".*?"""', "", src, flags=re.S)       # docstrings may mention them
    assert not re.search(r"\bprint\(", code), module
    assert not re.search(r"warnings\.warn\(", code), module
