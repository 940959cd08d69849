"""Fuzzing the GGUF header reader (rvec.checkpoint.gguf_header): whatever bytes a ``.gguf`` holds,
reading its header ends in a checked header or one CorruptCheckpointError — never another
exception, never a header whose tensors lie past the end of the file or whose sizes are out of
bounds (what transformers would then build a model of).

Seeds: tests/checkpoint/corpus/gguf/ (tiny llama files made with gguf.GGUFWriter; the hostile ones
declare sizes the tensors contradict).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given

from fuzzing import FUZZ, corpus, mutated
from rvec.checkpoint.gguf_header import GGUFArray, read_gguf_header
from rvec.errors import CorruptCheckpointError

pytestmark = pytest.mark.fuzz

CORPUS = Path(__file__).parent / "corpus" / "gguf"
SEEDS = [p.read_bytes() for p in corpus(CORPUS)]


def read_or_refuse(blob: bytes) -> bool:
    """Whether the header was accepted; asserts what an accepted one guarantees."""
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "m.gguf"
        file.write_bytes(blob)
        try:
            header = read_gguf_header(file)
        except CorruptCheckpointError as err:
            assert "\n" not in str(err)
            return False
    for t in header.tensors:
        assert all(d >= 0 for d in t.shape) and t.numel < 1 << 48
    for key, value in header.values.items():
        if key.endswith(".block_count") and not isinstance(value, GGUFArray):
            assert 0 < value <= 4096
    return True


@pytest.mark.parametrize("seed", corpus(CORPUS), ids=lambda p: p.name)
def test_corpus_seed(seed: Path) -> None:
    assert read_or_refuse(seed.read_bytes()) is seed.name.startswith("valid")


@FUZZ
@given(mutated(SEEDS))
def test_mutated_files(blob: bytes) -> None:
    read_or_refuse(blob)
