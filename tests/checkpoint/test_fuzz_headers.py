"""Fuzzing the safetensors header reader against the ``safetensors`` library itself (differential):
whatever bytes a file holds, rvec's reader either refuses it with one CorruptCheckpointError or
reads exactly the tensors the library reads; and it never accepts a file the library refuses.
The one deliberate difference: rvec also refuses a key repeated in the JSON text and dtypes it does
not compute with (rvec.checkpoint.header).

Seeds: tests/checkpoint/corpus/safetensors/ (valid files and one file per hostile class of issue 19).
"""

from __future__ import annotations

import json
import math
import struct
import tempfile
from pathlib import Path

import pytest
import safetensors
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import FUZZ, corpus, mutated
from rvec.checkpoint.dtypes import BY_NAME
from rvec.checkpoint.index import read_header
from rvec.errors import CorruptCheckpointError

pytestmark = pytest.mark.fuzz

CORPUS = Path(__file__).parent / "corpus" / "safetensors"
SEEDS = [p.read_bytes() for p in corpus(CORPUS)]
# Every dtype of the format (safetensors 0.8), and a few that are not.
DTYPES = [*BY_NAME, "U16", "U32", "U64", "F8_E8M0", "C64", "F33", "", "f32"]
ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "C64": 8}


def _duplicate_keys(blob: bytes) -> bool:
    """Whether the header's JSON repeats a key anywhere (which serde keeps as its last value)."""
    seen = False

    def hook(pairs: list[tuple[str, object]]) -> dict:
        nonlocal seen
        seen |= len({k for k, _ in pairs}) != len(pairs)
        return dict(pairs)

    (n,) = struct.unpack("<Q", blob[:8])
    json.loads(blob[8 : 8 + n], object_pairs_hook=hook)
    return seen


def check_against_library(blob: bytes) -> None:
    """The differential property for one file's bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "x.safetensors"
        file.write_bytes(blob)
        try:
            ours = read_header(file)[0]
        except CorruptCheckpointError as err:
            assert "\n" not in str(err)
            ours = None
    try:
        theirs = dict(safetensors.deserialize(blob))
    except Exception:  # SafetensorError, or a Python error on a header it cannot decode
        theirs = None
    if ours is not None:
        assert theirs is not None, "rvec read a file the safetensors library refuses"
        assert list(ours) == list(theirs) or set(ours) == set(theirs)
        for name, info in ours.items():
            assert info.dtype_name == theirs[name]["dtype"]
            assert list(info.shape) == theirs[name]["shape"]
            assert blob[info.start : info.end] == bytes(theirs[name]["data"])
    elif theirs is not None:
        unsupported = any(t["dtype"] not in BY_NAME for t in theirs.values())
        assert unsupported or _duplicate_keys(blob), "rvec refused a file the library reads"


@pytest.mark.parametrize("seed", corpus(CORPUS), ids=lambda p: p.name)
def test_corpus_seed(seed: Path) -> None:
    check_against_library(seed.read_bytes())


@FUZZ
@given(mutated(SEEDS))
def test_mutated_files(blob: bytes) -> None:
    check_against_library(blob)


@st.composite
def headers(draw: st.DrawFn) -> bytes:
    """A structured file: tensors laid out validly, then (maybe) one field bent — a dtype, a shape
    entry, an offset, the metadata, or the data's length."""
    names = draw(st.lists(st.text(max_size=6), min_size=0, max_size=4, unique=True))
    header: dict[str, object] = {}
    position = 0
    for name in names:
        dtype = draw(st.sampled_from(DTYPES))
        shape = draw(st.lists(st.integers(0, 3), max_size=3))
        size = math.prod(shape) * ITEMSIZE.get(dtype, BY_NAME[dtype].itemsize if dtype in BY_NAME else 4)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [position, position + size]}
        position += size
    if draw(st.booleans()):
        header["__metadata__"] = draw(
            st.one_of(
                st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
                st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                st.lists(st.text(max_size=3), max_size=2),
            )
        )
    if names and draw(st.booleans()):
        entry = header[draw(st.sampled_from(names))]
        field = draw(st.sampled_from(["shape", "data_offsets"]))
        values = entry[field]  # type: ignore[index]
        if values:
            at = draw(st.integers(0, len(values) - 1))
            values[at] = draw(st.one_of(st.integers(-3, 2**65), st.floats(), st.none(), st.text(max_size=2)))
    data = bytes(position + draw(st.integers(-2, 2)) if position > 1 else position)
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


@FUZZ
@given(headers())
def test_structured_headers(blob: bytes) -> None:
    check_against_library(blob)


def test_the_corpus_holds_valid_and_hostile_seeds() -> None:
    """The seeds cover both sides: some files the library reads, some it refuses."""
    read = 0
    for blob in SEEDS:
        try:
            safetensors.deserialize(blob)
            read += 1
        except Exception:
            pass
    assert 0 < read < len(SEEDS)
