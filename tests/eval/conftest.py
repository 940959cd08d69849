"""Shared fixtures for the eval tests: the benchmark data folder, found only via RVEC_TEST_DATA_DIR."""

from __future__ import annotations

from pathlib import Path

import pytest

from rvec.eval.data import DataSource


@pytest.fixture(scope="session")
def source(data_dir: Path) -> DataSource:
    """A DataSource on the shared data folder (never the Hub)."""
    return DataSource(data_dir)
