"""Defaults every layer shares, so a value means the same wherever it is left out."""

from __future__ import annotations

__all__ = ["DEFAULT_SEED"]

DEFAULT_SEED = 1234
"""The seed of every ``--seed`` and of a study's ``seed:`` when none is given: perturbations,
bootstrap resamples, random controls, sampling, pair training data."""
