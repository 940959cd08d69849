"""Checkpoint I/O: header parsing, pinned writer bytes, corruption detection, atomic outputs."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from rvec.atomic import atomic_dir
from rvec.checkpoint.dtypes import BF16, from_torch, to_torch
from rvec.checkpoint.index import TensorIndex, read_header
from rvec.checkpoint.reader import FileReader
from rvec.checkpoint.writer import PlannedTensor, ShardedWriter, parse_size, plan_shards
from rvec.errors import CorruptCheckpointError, ForeignOutputError, InvalidArgumentError, OutputExistsError


def test_writer_pins_exact_bytes_of_a_2x2_tensor(tmp_path: Path) -> None:
    plan = [PlannedTensor("w", torch.float32, (2, 2))]
    writer = ShardedWriter(tmp_path, plan, prefix="m", metadata={})
    writer.write("w", from_torch(torch.tensor([1.0, 2.0, 3.0, 4.0])))
    assert writer.finish() == ["m.safetensors"]
    raw = (tmp_path / "m.safetensors").read_bytes()
    header = b'{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}'
    header += b" " * (-len(header) % 8)
    assert raw == struct.pack("<Q", len(header)) + header + struct.pack("<4f", 1, 2, 3, 4)
    assert torch.equal(load_file(tmp_path / "m.safetensors")["w"], torch.tensor([[1.0, 2.0], [3.0, 4.0]]))


def test_writer_streams_blocks_into_shards_readable_by_safetensors(tmp_path: Path) -> None:
    tensors = {f"t{i}": torch.randn(10, 7).to(torch.bfloat16) for i in range(5)}
    plan = [PlannedTensor(n, t.dtype, tuple(t.shape)) for n, t in tensors.items()]
    writer = ShardedWriter(tmp_path, plan, prefix="model", max_shard_bytes=300)
    for n, t in tensors.items():
        flat = t.reshape(-1)
        writer.write(n, from_torch(flat[:33]))
        writer.write(n, from_torch(flat[33:]))
    names = writer.finish()
    assert len(names) == 3 and names[0] == "model-00001-of-00003.safetensors"  # 140 B tensors, 300 B shards
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(tensors)
    loaded = {}
    for name in names:
        loaded.update(load_file(tmp_path / name))
    assert all(torch.equal(loaded[n], tensors[n]) for n in tensors)


def test_plan_shards_respects_limit() -> None:
    plan = [PlannedTensor(f"t{i}", torch.float32, (10,)) for i in range(7)]
    shards = plan_shards(plan, 100)
    assert [len(s) for s in shards] == [2, 2, 2, 1]


def test_header_index_and_ranged_reads_match_safetensors(tmp_path: Path) -> None:
    tensors = {
        "a": torch.arange(12, dtype=torch.float32).reshape(3, 4),
        "b": torch.randn(5).to(torch.bfloat16),
    }
    save_file(tensors, tmp_path / "x.safetensors")
    index = TensorIndex.from_files([tmp_path / "x.safetensors"])
    assert (
        index["a"].shape == (3, 4) and index["b"].dtype == BF16 and index["b"].dtype.torch == torch.bfloat16
    )
    with FileReader() as reader:
        assert torch.equal(torch.from_numpy(reader.read(index["a"])), tensors["a"])
        assert torch.equal(
            torch.from_numpy(reader.read_range(index["a"], 5, 9)), torch.arange(5, 9, dtype=torch.float32)
        )
        assert torch.equal(to_torch(reader.read(index["b"]), BF16), tensors["b"])


def test_corrupted_header_is_detected(tmp_path: Path) -> None:
    file = tmp_path / "bad.safetensors"
    save_file({"a": torch.zeros(4)}, file)
    raw = bytearray(file.read_bytes())
    raw[10:14] = b"\xff\xfe{{"
    file.write_bytes(bytes(raw))
    with pytest.raises(CorruptCheckpointError, match="corrupted safetensors header"):
        read_header(file)


def test_truncated_file_is_detected(tmp_path: Path) -> None:
    file = tmp_path / "short.safetensors"
    save_file({"a": torch.zeros(1000)}, file)
    file.write_bytes(file.read_bytes()[:-100])
    with pytest.raises(CorruptCheckpointError, match="truncated"):
        read_header(file)


def test_parse_size() -> None:
    assert parse_size("2GB") == 2_000_000_000
    assert parse_size("1GiB") == 1024**3
    with pytest.raises(InvalidArgumentError):
        parse_size("lots")


def test_atomic_dir_leaves_nothing_on_failure(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "model.safetensors").write_bytes(b"partial")
        raise RuntimeError("crash in the middle")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_refuses_existing_and_overwrites_on_request(tmp_path: Path) -> None:
    final = tmp_path / "out"
    final.mkdir()
    (final / "old").write_text("old")
    with pytest.raises(OutputExistsError, match="--overwrite"), atomic_dir(final):
        pass
    with pytest.raises(ForeignOutputError, match="--overwrite-foreign"), atomic_dir(final, overwrite=True):
        pass
    assert sorted(p.name for p in final.iterdir()) == ["old"]
    with atomic_dir(final, overwrite_foreign=True) as tmp:
        (tmp / "rvec.json").write_text('{"kind": "test", "rvec_version": "0"}')
    assert sorted(p.name for p in final.iterdir()) == ["rvec.json"]
    with atomic_dir(final, overwrite=True) as tmp:  # now rvec's own output
        (tmp / "new").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_file_hash_is_remembered_in_process_when_the_cache_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    from rvec.checkpoint import hashing

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("RVEC_CACHE", str(blocker / "cache"))
    weights = tmp_path / "w.bin"
    weights.write_bytes(bytes(range(256)) * 1000)
    assert hashing.known_sha256(weights) is None
    background = hashing.BackgroundHashes([weights])
    background.wait()
    expected = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert hashing.known_sha256(weights) == expected  # no memo file: remembered by the process
    assert hashing.sha256_file(weights) == expected
    assert not (blocker / "cache").exists()
