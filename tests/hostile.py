"""Builders of hostile inputs: safetensors files with crafted headers, checkpoints and vectors whose
metadata names files outside their folder, vectors holding NaN with their hashes recomputed. Shared
by the regression tests and bench/bad_inputs.py, so both try the same attacks.

Every builder edits a *copy* the caller made; none touches a session fixture.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ESC = "\x1b"
# What a hostile name carries: a fake red "rvec: error" line, a screen clear, a window title.
TERMINAL_ATTACK = f"{ESC}[31mrvec: error: fake{ESC}[0m{ESC}[2J{ESC}]0;pwned\x07"


def safetensors_bytes(header: dict[str, Any] | str, data: bytes = b"") -> bytes:
    """A safetensors file from a header (a dict, or raw JSON text to keep duplicates) and data."""
    text = header if isinstance(header, str) else json.dumps(header)
    raw = text.encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def read_raw(file: Path) -> tuple[dict[str, Any], bytes]:
    """``(header, data)`` of a safetensors file, parsed without validation."""
    blob = file.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def edit_header(file: Path, edit: Callable[[dict[str, Any]], dict[str, Any] | str | None]) -> None:
    """Rewrite ``file``'s header through ``edit`` (which may mutate it, or return a replacement)."""
    header, data = read_raw(file)
    new = edit(header)
    file.write_bytes(safetensors_bytes(header if new is None else new, data))


def largest_tensor_file(folder: Path) -> Path:
    """The shard of ``folder`` holding the most tensors (so edits have neighbours to overlap)."""
    return max(sorted(folder.glob("*.safetensors")), key=lambda f: len(read_raw(f)[0]))


def overlap_offsets(file: Path) -> str:
    """Point the second tensor (by offset) at the first one's bytes; returns the edited name."""
    header, _ = read_raw(file)
    ordered = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"])
    first, second = ordered[0], ordered[1]
    begin = header[first]["data_offsets"][0]
    size = header[second]["data_offsets"][1] - header[second]["data_offsets"][0]

    def edit(h: dict[str, Any]) -> None:
        h[second]["data_offsets"] = [begin, begin + size]

    edit_header(file, edit)
    return second


def duplicate_name(file: Path) -> str:
    """The header names one tensor twice (JSON text with a repeated key); returns the name."""
    header, _ = read_raw(file)
    name = next(k for k in header if k != "__metadata__")
    body = json.dumps(header)
    entry = json.dumps({name: header[name]})[1:-1]
    edit_header(file, lambda _: body[:-1] + ", " + entry + "}")
    return name


def list_metadata(file: Path) -> None:
    """``__metadata__`` is a JSON list instead of a map of strings."""
    edit_header(file, lambda h: h.update({"__metadata__": ["format", "pt"]}))


def negative_shape(file: Path) -> str:
    """The first 2-D tensor gets the shape ``(-rows, -cols)`` (same byte count); returns its name."""
    header, _ = read_raw(file)
    name = next(k for k in header if k != "__metadata__" and len(header[k]["shape"]) == 2)
    edit_header(file, lambda h: h[name].update(shape=[-d for d in h[name]["shape"]]))
    return name


def overflowing_shape(file: Path) -> str:
    """A 1-D tensor of n elements gets the shape ``(2³², 2³², n)``: 2⁶⁴·n elements wrap to n in
    64-bit arithmetic; returns its name."""
    header, _ = read_raw(file)
    name = next(k for k in header if k != "__metadata__" and len(header[k]["shape"]) == 1)
    edit_header(file, lambda h: h[name].update(shape=[2**32, 2**32, *h[name]["shape"]]))
    return name


def index_names(folder: Path, shard: str) -> None:
    """Every tensor of ``folder``'s ``*.safetensors.index.json`` is said to live in ``shard``."""
    for index in folder.glob("*.index.json"):
        data = json.loads(index.read_text())
        data["weight_map"] = dict.fromkeys(data["weight_map"], shard)
        index.write_text(json.dumps(data))


def sha256(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


def manifest_edit(vec: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Edit a vector's ``rvec.json`` in place."""
    file = vec / "rvec.json"
    manifest = json.loads(file.read_text())
    edit(manifest)
    file.write_text(json.dumps(manifest, indent=2))


def poison_vector(vec: Path, value: float = float("nan"), *, tensor: str | None = None) -> str:
    """Set one element of a dense vector tensor to ``value`` and recompute the shard's sha256 in
    ``rvec.json`` (so verification passes: the attack is on the values); returns the tensor name."""
    shard = sorted(vec.glob("vector*.safetensors"))[0]
    header, data = read_raw(shard)
    name = tensor or next(k for k in header if k != "__metadata__" and header[k]["dtype"] == "F32")
    begin = header[name]["data_offsets"][0]
    buf = bytearray(data)
    buf[begin : begin + 4] = np.float32(value).tobytes()
    blob = shard.read_bytes()
    shard.write_bytes(blob[: len(blob) - len(data)] + bytes(buf))
    manifest_edit(vec, lambda m: m["files"].update({shard.name: sha256(shard)}))
    return name


def poison_factors(vec: Path, name: str, value: float = float("inf")) -> None:
    """Set the first element of factored tensor ``name``'s ``A`` to ``value``; hashes recomputed."""
    for shard in sorted(vec.glob("vector*.safetensors")):
        header, data = read_raw(shard)
        if f"{name}:A" in header:
            begin = header[f"{name}:A"]["data_offsets"][0]
            buf = bytearray(data)
            buf[begin : begin + 4] = np.float32(value).tobytes()
            blob = shard.read_bytes()
            shard.write_bytes(blob[: len(blob) - len(data)] + bytes(buf))
            manifest_edit(vec, lambda m, s=shard: m["files"].update({s.name: sha256(s)}))
            return
    raise AssertionError(f"{name}:A not found")
