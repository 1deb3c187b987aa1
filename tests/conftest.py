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
    """``../shared/data`` (CI has it); tests that need it skip with a reason if absent."""
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip(f"shared test data not found at {data} (set MQE_SHARED)")
    return data
