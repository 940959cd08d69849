"""Fuzzing the study loader: whatever a study file holds, ``load_study`` returns a config or raises
one ConfigError — never another exception — and a config it returns never places the run folder
outside the working folder (``name`` a plain folder name, ``output:`` relative and inside).

Seeds: tests/study/corpus/ (valid studies, and hostile ones: ``../`` names, absolute outputs, a
YAML alias bomb, nesting thousands deep, control characters).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import FUZZ_SLOW, corpus, mutated
from rvec.errors import ConfigError
from rvec.study.config import load_study
from rvec.study.validation import inside_working_folder, plain_folder_name

pytestmark = pytest.mark.fuzz

CORPUS = Path(__file__).parent / "corpus"
SEEDS = [p.read_bytes() for p in corpus(CORPUS)]
VALID = yaml.safe_load((CORPUS / "valid-minimal.yaml").read_text())
KEYS = sorted({*VALID, "output", "alphas", "controls", "conditions", "models", "vector", "limit", "backend"})


def load_or_refuse(text: bytes) -> bool:
    """Whether the study was accepted; asserts where an accepted one may write."""
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "study.yaml"
        file.write_bytes(text)
        try:
            config = load_study(file)
        except ConfigError:  # its text quotes the file's values; the CLI prints it escaped (rvec.terminal)
            return False
    assert plain_folder_name(config.name)
    assert config.output is None or inside_working_folder(config.output)
    return True


@pytest.mark.parametrize("seed", corpus(CORPUS), ids=lambda p: p.name)
def test_corpus_seed(seed: Path) -> None:
    assert load_or_refuse(seed.read_bytes()) is seed.name.startswith("valid")


@FUZZ_SLOW
@given(mutated(SEEDS))
def test_mutated_files(text: bytes) -> None:
    load_or_refuse(text)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
PATHS = st.sampled_from(
    ["/etc", "../x", "a/../../b", "~/x", ".", "", "runs/ok", "a\x1b[2J", "x\n", "..", "ok"]
)


@FUZZ_SLOW
@given(st.dictionaries(st.sampled_from(KEYS), JSON | PATHS, max_size=4))
def test_a_valid_study_with_keys_replaced(changes: dict) -> None:
    load_or_refuse(yaml.safe_dump({**VALID, **changes}).encode())
