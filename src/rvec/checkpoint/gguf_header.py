"""A GGUF file's header, read and checked before transformers builds or dequantizes a model from it.

GGUF files come from strangers too. The ``gguf`` library parses them with bare ``ValueError``,
``KeyError``, ``IndexError``… and computes element counts in wrapping 64-bit numpy arithmetic;
transformers then builds a model of whatever size the metadata claims (a ``block_count`` of
10⁹ is a model it tries to build). So rvec reads the header through :class:`gguf.GGUFReader`
once, turns any failure into one :class:`~rvec.errors.CorruptCheckpointError`, and checks what the
conversion relies on: every tensor's element count (recomputed without wrapping) and byte range
inside the file, tensor names unique, the architecture one transformers converts, and the sizes
in the metadata (layers, widths, heads, vocabulary, context; the same names under any prefix) positive, bounded and consistent with
the tensors actually present.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from rvec.checkpoint.gguf_extent import check_extents
from rvec.errors import CorruptCheckpointError

__all__ = ["GGUFArray", "GGUFHeader", "GGUFTensor", "read_gguf_header"]

# Upper bounds far above any released model; a value past them describes no real checkpoint.
_LIMITS = {
    "block_count": 4096,
    "embedding_length": 1 << 20,
    "feed_forward_length": 1 << 22,
    "attention.head_count": 1 << 14,
    "attention.head_count_kv": 1 << 14,
    "context_length": 1 << 26,
    "vocab_size": 1 << 24,
    "rope.dimension_count": 1 << 16,
}
_MAX_ELEMENTS = 1 << 48  # 256 T elements: beyond any file
_BLOCK = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor of a GGUF file: its GGUF name, quantization type and shape (rows first)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    numel: int


@dataclass(frozen=True)
class GGUFHeader:
    """The checked header: architecture, the scalar metadata values and the tensor table."""

    architecture: str
    values: dict[str, Any]
    tensors: list[GGUFTensor]


def _refuse(path: Path, problem: str) -> CorruptCheckpointError:
    return CorruptCheckpointError(
        f"{path}: not a usable GGUF checkpoint: {problem}; the file is damaged or was made to mislead: "
        "get it again from a source you trust",
        path=str(path),
    )


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """Parse ``path``'s GGUF header and check it (see the module docstring); reads no tensor data.

    Remembered per file version (parsing a real tokenizer's arrays takes seconds; ``inspect`` and
    ``convert`` need the header twice).

    Raises:
        CorruptCheckpointError: not a readable GGUF file, or metadata the tensors or any real
            model contradict (named).
    """
    path = Path(path).resolve()
    st = path.stat()
    return _read(path, st.st_size, st.st_mtime_ns, st.st_ino)


@lru_cache(maxsize=8)
def _read(path: Path, size: int, mtime_ns: int, inode: int) -> GGUFHeader:
    check_extents(path)  # before the library: it loops without end on a count past the end
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(path))
        values = {name: _scalar(field) for name, field in reader.fields.items()}
        file_size = reader.data.size
        raw = [
            (
                t.name,
                t.tensor_type.name,
                [int(d) for d in t.shape.tolist()],
                int(t.data_offset),
                int(t.n_bytes),
            )
            for t in reader.tensors
        ]
    except OSError:
        raise  # an unreadable file, not a malformed one: the caller's one-line OS error
    except Exception as err:  # the gguf library says "malformed" with any builtin error
        raise _refuse(path, f"unreadable header ({err.__class__.__name__})") from None
    tensors = [
        _tensor(path, name, dtype, dims, offset, n_bytes, file_size)
        for name, dtype, dims, offset, n_bytes in raw
    ]
    architecture = values.get("general.architecture")
    if not isinstance(architecture, str) or not re.fullmatch(r"[a-z0-9_]{1,40}", architecture):
        raise _refuse(path, f"general.architecture is {_short(architecture)}, not an architecture name")
    _check_sizes(path, architecture, values, tensors)
    return GGUFHeader(architecture=architecture, values=values, tensors=tensors)


@dataclass(frozen=True)
class GGUFArray:
    """An array field, by its length: rvec checks no array's items (tokenizer arrays hold 10⁵ strings)."""

    length: int


def _scalar(field: Any) -> Any:
    """A field's value when it is one number, bool or string; a :class:`GGUFArray` otherwise."""
    from gguf import GGUFValueType

    if field.types and field.types[0] == GGUFValueType.ARRAY:
        return GGUFArray(len(field.data))
    return field.contents()


def _tensor(
    path: Path, name: str, dtype: str, dims: list[int], offset: int, n_bytes: int, size: int
) -> GGUFTensor:
    numel = 1
    for d in dims:
        numel *= d  # Python integers: the library's np.prod wraps at 2⁶⁴
        if numel > _MAX_ELEMENTS:
            raise _refuse(
                path, f"tensor {name[:80]!r} has shape {dims[:8]}, more elements than any file holds"
            )
    if offset < 0 or n_bytes < 0 or offset + n_bytes > size:
        raise _refuse(
            path, f"tensor {name[:80]!r} lies past the end of the file ({offset} + {n_bytes} > {size})"
        )
    return GGUFTensor(name=name, dtype=dtype, shape=tuple(reversed(dims)), numel=numel)


def _check_sizes(path: Path, arch: str, values: dict[str, Any], tensors: list[GGUFTensor]) -> None:
    """Sizes in the metadata: positive integers under :data:`_LIMITS`, agreeing with the tensors."""
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    if arch not in GGUF_CONFIG_MAPPING:
        raise _refuse(path, f"architecture {arch!r} is not one transformers converts")
    sizes: dict[str, int] = {}  # the architecture's own, for the checks against the tensors
    for name, value in values.items():  # a size under any prefix is bounded alike
        key = next((k for k in _LIMITS if name.endswith(f".{k}")), None)
        if key is None or isinstance(value, GGUFArray):
            continue  # not a size, or per-layer values (some architectures): transformers reads those
        if type(value) is not int or not 0 < value <= _LIMITS[key]:
            raise _refuse(
                path, f"{name[:80]} is {_short(value)}; expected an integer from 1 to {_LIMITS[key]:,}"
            )
        if name == f"{arch}.{key}":
            sizes[key] = value
    blocks = {int(m.group(1)) for t in tensors if (m := _BLOCK.match(t.name))}
    if "block_count" in sizes and blocks and max(blocks) + 1 != sizes["block_count"]:
        raise _refuse(
            path,
            f"{arch}.block_count is {sizes['block_count']} but the tensors span {max(blocks) + 1} blocks",
        )
    embed = next((t for t in tensors if t.name == "token_embd.weight"), None)
    if embed is not None and "embedding_length" in sizes and embed.shape[-1:] != (sizes["embedding_length"],):
        raise _refuse(
            path,
            f"{arch}.embedding_length is {sizes['embedding_length']} but token_embd.weight is {embed.shape}",
        )
    heads, kv = sizes.get("attention.head_count"), sizes.get("attention.head_count_kv")
    if heads and kv and heads % kv:
        raise _refuse(path, f"{heads} attention heads cannot be shared by {kv} key-value heads")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
