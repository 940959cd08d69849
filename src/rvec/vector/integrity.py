"""A vector folder proves its bytes: shards against the sha256 its manifest recorded, the manifest's
``family`` against its config and tensors, index files against the shards on disk.

Hashes are streamed (8 MB at a time) and remembered per file version by
:func:`rvec.checkpoint.hashing.sha256_file`, so a vector verified once is not read again until a file
changes (its inode, size, mtime or ctime). Hub blob links are not trusted here: a blob edited after
download keeps its name.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rvec.checkpoint import hashing
from rvec.checkpoint.confine import allowed_roots, member
from rvec.checkpoint.index import TensorIndex
from rvec.errors import VectorFormatError, VectorIntegrityError
from rvec.vector import family

logger = logging.getLogger(__name__)

_REWRITE = "re-run the command that wrote it (rvec extract, compress…)"
_FIX = f"{_REWRITE}, or pass --no-verify"


def verify_files(folder: Path, manifest: Mapping[str, Any], *, shard_glob: str) -> None:
    """Every shard (and auxiliary file) hashes to what ``rvec.json`` recorded; no shard is unrecorded.

    Raises:
        VectorIntegrityError: a recorded file is missing or its sha256 differs, a shard on disk is not
            recorded, or the manifest records no hashes at all.
        UnsafeNameError: a recorded name is not a plain file name, or is a link out of the folder.
    """
    recorded: Mapping[str, str] = manifest.get("files") or {}
    if not recorded:
        raise VectorIntegrityError(
            f"{folder / 'rvec.json'}: records no shard hashes, so the vector's bytes cannot be verified; {_FIX}",
            path=str(folder),
        )
    unrecorded = sorted(p.name for p in folder.glob(shard_glob) if p.name not in recorded)
    if unrecorded:
        raise VectorIntegrityError(
            f"{folder / unrecorded[0]}: a shard rvec.json does not record; remove it or {_FIX}",
            path=str(folder / unrecorded[0]),
        )
    aux: Mapping[str, str] = manifest.get("aux_files") or {}
    roots = allowed_roots(folder)
    for name, expected in [*recorded.items(), *aux.items()]:
        # A plain name inside the folder (rvec.vector.manifest), and not a link out of it: nothing
        # outside the vector is opened or hashed, whatever rvec.json says.
        _verify_one(member(folder, name, listed_in=str(folder / "rvec.json"), roots=roots), expected)
    logger.info("verified %d files of %s against rvec.json", len(recorded) + len(aux), folder)


def _verify_one(path: Path, expected: str) -> None:
    if not path.is_file():
        raise VectorIntegrityError(
            f"{path}: missing, but rvec.json records it (sha256 {expected[:12]}…); the vector is incomplete: "
            "copy it again, or re-run the command that wrote it",
            path=str(path),
        )
    found = hashing.sha256_file(path, trust_blob_links=False)
    if found != expected:
        raise VectorIntegrityError(
            f"{path}: sha256 {found[:12]}… ≠ rvec.json {expected[:12]}…; the vector was modified after it was "
            f"written: {_FIX}",
            path=str(path),
        )


def verify_family(folder: Path, manifest: Mapping[str, Any]) -> None:
    """The manifest's ``family`` agrees with its ``config`` and with the tensors it lists.

    Keys that older rvec versions did not record are not required. Checked against the tensors:
    the embedding is (vocab_size, hidden_size), block indices run to num_hidden_layers − 1, and an
    untied family with an embedding has an output projection.

    Raises:
        VectorIntegrityError: any disagreement (an edited ``family``, ``config`` or tensor list).
    """
    where = folder / "rvec.json"
    fam = manifest.get("family")
    if not isinstance(fam, dict):
        raise VectorIntegrityError(f"{where}: 'family' is missing or not an object; {_FIX}", path=str(where))
    config = manifest.get("config")
    if isinstance(config, dict) and config:
        expected = family.family_signature(config)
        for key, value in fam.items():
            if key in expected and expected[key] != value:
                raise VectorIntegrityError(
                    f"{where}: family.{key} is {value!r} but the vector's config says {expected[key]!r}; "
                    f"the manifest was edited: {_FIX}",
                    path=str(where),
                )
    shapes = {n: tuple(r["shape"]) for n, r in manifest["tensors"].items()}
    for problem in _tensor_problems(fam, shapes):
        raise VectorIntegrityError(f"{where}: {problem}; the manifest was edited: {_FIX}", path=str(where))


def _tensor_problems(fam: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    problems = []
    embed = family.embed_name(set(shapes))
    vocab, hidden = fam.get("vocab_size"), fam.get("hidden_size")
    if embed and vocab and hidden and shapes[embed] != (vocab, hidden):
        problems.append(f"{embed} is {shapes[embed]} but family says vocab {vocab} × hidden {hidden}")
    layers = {layer for n in shapes if (layer := family.layer_of(n)) is not None}
    num_layers = fam.get("num_hidden_layers")
    if layers and num_layers and max(layers) + 1 != num_layers:
        problems.append(
            f"tensors span {max(layers) + 1} blocks but family says num_hidden_layers {num_layers}"
        )
    if embed and fam.get("tie_word_embeddings") is False and not family.lm_head_name(set(shapes)):
        problems.append("family says untied embeddings but the vector has no lm_head")
    return problems


def validate_index_files(folder: Path, index: TensorIndex) -> None:
    """Each ``*.index.json`` beside the shards names exactly the shards and tensors on disk.

    Structural (file names and headers only, no data), so it runs under ``--no-verify`` too.

    Raises:
        VectorFormatError: an index names a missing shard, a tensor no shard holds, or the wrong
            shard for a tensor; or a stored tensor is absent from it.
        UnsafeNameError: it names a shard outside the folder (``..``, absolute, a link out).
    """
    roots = allowed_roots(folder)
    for file in sorted(folder.glob("*.index.json")):
        try:
            weight_map = json.loads(
                member(folder, file.name, listed_in=str(folder), roots=roots).read_text()
            )["weight_map"]
            if not isinstance(weight_map, dict) or not all(isinstance(s, str) for s in weight_map.values()):
                raise TypeError
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as err:
            raise VectorFormatError(
                f"{file}: not a safetensors index (no weight_map object of shard names); {_REWRITE}"
            ) from err
        shards = {s: member(folder, s, listed_in=str(file), roots=roots) for s in set(weight_map.values())}
        missing = sorted(s for s, path in shards.items() if not path.is_file())
        if missing:
            raise VectorFormatError(
                f"{file}: names shard {missing[0]}, which is missing; the vector is incomplete: copy it again, or {_REWRITE}"
            )
        unknown = sorted(set(weight_map) - set(index.names))
        if unknown:
            raise VectorFormatError(
                f"{file}: names {len(unknown)} tensor(s) no shard holds (e.g. '{unknown[0]}'); {_REWRITE}"
            )
        misplaced = sorted(n for n, s in weight_map.items() if index[n].file.name != s)
        if misplaced:
            n = misplaced[0]
            raise VectorFormatError(
                f"{file}: puts '{n}' in {weight_map[n]} but it is in {index[n].file.name}; {_REWRITE}"
            )
        unlisted = sorted(set(index.names) - set(weight_map))
        if unlisted:
            raise VectorFormatError(
                f"{file}: lacks {len(unlisted)} stored tensor(s) (e.g. '{unlisted[0]}'); {_REWRITE}"
            )
