"""Safetensors headers from strangers are validated as the ``safetensors`` library validates them,
before any byte is used: by every reader (checkpoints, vector shards, lineage probes) and every verb.

Each hostile header below was accepted before (issue 19): an overlap gave a vector 7.6× too long.
For each, the safetensors library itself refuses the file too, so "valid" means the same here and
there.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

import hostile
from fixtures import Family
from helpers import assert_user_error
from rvec.checkpoint.index import read_header
from rvec.cli import app
from rvec.errors import CorruptCheckpointError

runner = CliRunner()

F32_2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
DATA = np.arange(4, dtype=np.float32).tobytes()  # 16 bytes: two F32[2] tensors


def write(tmp_path: Path, header: dict | str, data: bytes = DATA) -> Path:
    file = tmp_path / "x.safetensors"
    file.write_bytes(hostile.safetensors_bytes(header, data))
    return file


# Each case: a header (dict or raw JSON text), the data, and a fragment of rvec's message.
CASES = {
    "overlapping offsets": (
        {"a": F32_2, "b": {**F32_2, "data_offsets": [4, 12]}},
        DATA[:12],
        "'b' data_offsets [4, 12] overlaps the previous tensor",
    ),
    "same bytes twice": ({"a": F32_2, "b": F32_2}, DATA[:8], "'b' data_offsets [0, 8] overlaps"),
    "gap between tensors": (
        {"a": F32_2, "b": {**F32_2, "data_offsets": [12, 20]}},
        DATA + b"\0" * 4,
        "leaves a gap before it",
    ),
    "offsets past the end": ({"a": {**F32_2, "data_offsets": [0, 8]}}, DATA[:4], "truncated"),
    "trailing bytes": ({"a": F32_2}, DATA, "trailing bytes"),
    "end before begin": ({"a": {**F32_2, "data_offsets": [8, 0]}}, DATA[:8], "ends before it begins"),
    "name given twice": (
        '{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, '
        '"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}',
        DATA,
        "key 'a' appears twice",
    ),
    "metadata is a list": ({"__metadata__": ["format", "pt"], "a": F32_2}, DATA[:8], "__metadata__"),
    "metadata value not a string": ({"__metadata__": {"n": 1}, "a": F32_2}, DATA[:8], "__metadata__"),
    "negative shape": ({"a": {**F32_2, "shape": [-1, -2]}}, DATA[:8], "shape [-1, -2]"),
    "shape overflows 64 bits": (
        {"a": {**F32_2, "shape": [2**32, 2**32, 2]}},
        DATA[:8],
        "overflows 64 bits",
    ),
    "shape of floats": ({"a": {**F32_2, "shape": [2.0]}}, DATA[:8], "shape [2.0]"),
    "shape of bools": ({"a": {**F32_2, "shape": [True, True]}}, DATA[:8], "shape [true, true]"),
    "bytes do not match shape": ({"a": {**F32_2, "shape": [3]}}, DATA[:8], "needs 12"),
    "unknown dtype": ({"a": {**F32_2, "dtype": "F33"}}, DATA[:8], "not a safetensors dtype"),
    "dtype rvec does not read": ({"a": {**F32_2, "dtype": "U32"}}, DATA[:8], "a dtype rvec does not read"),
    "offsets not a pair": ({"a": {**F32_2, "data_offsets": [0]}}, DATA[:8], "data_offsets [0]"),
    "entry not an object": ({"a": [1, 2]}, b"", "not an object"),
    "NaN in the header": (
        '{"a": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 8]}}',
        DATA[:8],
        "not JSON",
    ),
    "a JSON list": ("[1, 2]", b"", "a JSON list"),
    "deeply nested": ("[" * 100_000 + "]" * 100_000, b"", "nested too deeply"),
    "not UTF-8": (b"\xff\xfe".decode("latin-1"), b"", "not UTF-8"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_header_is_refused_as_the_safetensors_library_refuses_it(case: str, tmp_path: Path) -> None:
    header, data, fragment = CASES[case]
    if case == "not UTF-8":
        raw = b'{"a\xff": 1}'
        file = tmp_path / "x.safetensors"
        file.write_bytes(struct.pack("<Q", len(raw)) + raw)
    else:
        file = write(tmp_path, header, data)
    with pytest.raises(CorruptCheckpointError) as err:
        read_header(file)
    assert fragment in str(err.value), str(err.value)
    assert len(str(err.value).splitlines()) == 1
    if case != "dtype rvec does not read":  # U32 is valid safetensors: rvec refuses what it cannot read
        with pytest.raises(Exception):  # noqa: B017 — the library raises its own untyped errors
            load_file(str(file))


def test_valid_files_are_read_exactly_as_the_library_reads_them(tmp_path: Path) -> None:
    tensors = {
        "empty": np.zeros((0, 3), np.float32),
        "scalar": np.array(3.5, np.float64),
        "m": np.arange(6, dtype=np.int64).reshape(2, 3),
        "z": np.zeros((4, 0), np.float32),
    }
    file = tmp_path / "ok.safetensors"
    save_file(tensors, str(file), metadata={"format": "pt"})
    found, metadata = read_header(file)
    assert metadata == {"format": "pt"}
    assert {n: (t.shape, t.dtype.name) for n, t in found.items()} == {
        "empty": ((0, 3), "F32"),
        "scalar": ((), "F64"),
        "m": ((2, 3), "I64"),
        "z": ((4, 0), "F32"),
    }
    assert load_file(str(file)).keys() == found.keys()


def test_header_longer_than_the_limit_is_not_read(tmp_path: Path) -> None:
    file = tmp_path / "big.safetensors"
    file.write_bytes(struct.pack("<Q", 100_000_001) + b"{}" + b" " * 100)
    with pytest.raises(CorruptCheckpointError, match="at most 100,000,000"):
        read_header(file)


def test_a_pipe_named_like_a_shard_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(CorruptCheckpointError, match="not a regular file"):
        read_header(fifo)


# ---- through the verbs: one line, exit 1, nothing written ---------------------------------------


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def extract(family: Family, rl: Path, out: Path):
    return runner.invoke(
        app, ["extract", "--sft", str(family.sft), "--rl", str(rl), "-o", str(out), "--no-progress"]
    )


EDITS = {
    "overlapping offsets": (hostile.overlap_offsets, "overlaps the previous tensor"),
    "name given twice": (hostile.duplicate_name, "appears twice"),
    "metadata is a list": (hostile.list_metadata, "__metadata__ is not a map"),
    "negative shape": (hostile.negative_shape, "expected a list of integers ≥ 0"),
    "shape overflows 64 bits": (hostile.overflowing_shape, "overflows 64 bits"),
}


@pytest.mark.parametrize("case", sorted(EDITS))
def test_extract_refuses_a_hostile_donor_and_writes_nothing(
    case: str, qwen_untied: Family, tmp_path: Path
) -> None:
    """Before issue 19 each of these was accepted with exit 0 and a vector written (an overlap made
    ‖v‖ 7.6× the clean one), or, for a negative 2-D shape, left a complete-looking folder behind."""
    edit, fragment = EDITS[case]
    rl = copy_model(qwen_untied.rl, tmp_path / "rl")
    edit(hostile.largest_tensor_file(rl))
    result = extract(qwen_untied, rl, tmp_path / "vec")
    assert_user_error(result, fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rl"]  # no vector, no partial folder


@pytest.mark.parametrize("case", ["negative shape", "shape overflows 64 bits", "name given twice"])
def test_inspect_refuses_what_it_used_to_print(case: str, qwen_untied: Family, tmp_path: Path) -> None:
    edit, fragment = EDITS[case]
    model = copy_model(qwen_untied.target, tmp_path / "m")
    edit(hostile.largest_tensor_file(model))
    assert_user_error(runner.invoke(app, ["inspect", str(model)]), fragment)


def test_a_hostile_vector_shard_is_refused_by_apply_without_verification(
    qwen_untied: Family, tmp_path: Path
) -> None:
    vec = tmp_path / "vec"
    assert extract(qwen_untied, qwen_untied.rl, vec).exit_code == 0
    shard = sorted(vec.glob("vector*.safetensors"))[0]
    hostile.overlap_offsets(shard)
    hostile.manifest_edit(vec, lambda m: m["files"].update({shard.name: hostile.sha256(shard)}))
    out = tmp_path / "out"
    for extra in ([], ["--no-verify"]):
        result = runner.invoke(
            app,
            [
                "apply",
                str(vec),
                "--to",
                str(qwen_untied.target),
                "-a",
                "1",
                "-o",
                str(out),
                "--no-progress",
                *extra,
            ],
        )
        assert_user_error(result, "overlaps the previous tensor")
        assert not out.exists()


def test_a_hostile_lineage_probe_is_refused(qwen_untied: Family, tmp_path: Path) -> None:
    vec = tmp_path / "vec"
    assert extract(qwen_untied, qwen_untied.rl, vec).exit_code == 0
    probe = vec / "lineage.safetensors"
    hostile.duplicate_name(probe)
    hostile.manifest_edit(vec, lambda m: m["aux_files"].update({probe.name: hostile.sha256(probe)}))
    result = runner.invoke(app, ["check", "--vector", str(vec), "--to", str(qwen_untied.target)])
    assert_user_error(result, "appears twice")
