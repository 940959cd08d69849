"""Shared fixtures for the eval tests: the benchmark data folder, found only via RVEC_TEST_DATA_DIR."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rvec.eval.data import DataSource

DATA_ENV = "RVEC_TEST_DATA_DIR"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data folder; skip when the variable is unset, fail when it points nowhere."""
    value = os.environ.get(DATA_ENV)
    if not value:
        pytest.skip(f"{DATA_ENV} is not set; point it at shared/data to run data tests")
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"{DATA_ENV}={value} is set but that folder does not exist")
    return path


@pytest.fixture(scope="session")
def source(data_dir: Path) -> DataSource:
    """A DataSource on the shared data folder (never the Hub)."""
    return DataSource(data_dir)
