"""Shared fixtures: location of the read-only test data beside the checkout."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MQE_NO_PROGRESS", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MQE_SHARED", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: CI has it, so there a missing folder fails the tests loudly.

    Outside CI (``CI`` unset) the real-data tests skip with the reason.
    """
    data = SHARED / "data"
    if not data.is_dir():
        msg = f"shared test data not found at {data} (set MQE_SHARED)"
        if os.environ.get("CI"):
            pytest.fail(msg + ": CI must have it", pytrace=False)
        pytest.skip(msg)
    return data
