"""Hugging Face Hub sources: download only the files a command needs, resolve the commit.

Works offline against the local cache (``HF_HUB_OFFLINE=1`` or no network): a repository that was
downloaded before resolves from ``$HF_HUB_CACHE`` exactly as online.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from rvec.checkpoint.confine import is_plain_name
from rvec.checkpoint.header import validate_header
from rvec.checkpoint.index import TensorIndex, TensorInfo
from rvec.errors import CorruptCheckpointError, HubUnavailableError, SourceNotFoundError, UnsafeNameError

logger = logging.getLogger(__name__)

# Config, tokenizer, chat template, generation config and the shard index: everything but weights.
METADATA_PATTERNS = [
    "config.json",
    "generation_config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "*.jinja",
    "chat_template*",
    "*.safetensors.index.json",
]
WEIGHT_PATTERNS = ["*.safetensors"]
PICKLE_PATTERNS = ["*.bin", "*.bin.index.json"]


def _cache_options() -> dict[str, object]:
    """The cache folder and offline switch as the environment says *now*: huggingface_hub reads
    them once at import, which would ignore a change made later in the same process."""
    options: dict[str, object] = {}
    if os.environ.get("HF_HUB_CACHE"):
        options["cache_dir"] = os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        options["local_files_only"] = True
    return options


def snapshot(
    repo_id: str, *, revision: str | None, weights: bool, allow_pickle: bool = False
) -> tuple[Path, str]:
    """Download (or find in the cache) the needed files of ``repo_id`` and return ``(folder, commit)``.

    Raises:
        HubUnavailableError: the hub is unreachable and the repository is not cached.
        SourceNotFoundError: the repository or revision does not exist (or is gated).
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    patterns = list(METADATA_PATTERNS)
    if weights:
        patterns += WEIGHT_PATTERNS + (PICKLE_PATTERNS if allow_pickle else [])
    label = f"{repo_id}@{revision}" if revision else repo_id
    try:
        folder = Path(
            snapshot_download(repo_id, revision=revision, allow_patterns=patterns, **_cache_options())
        )
    except GatedRepoError as err:
        raise SourceNotFoundError(
            f"{label}: gated repository; accept its licence on the hub and log in (hf auth login)",
            source=label,
        ) from err
    except RevisionNotFoundError as err:
        raise SourceNotFoundError(
            f"{label}: revision '{revision}' not found on the hub", source=label
        ) from err
    except RepositoryNotFoundError as err:
        raise SourceNotFoundError(
            f"{label}: not a local path and no such repository on the Hugging Face Hub", source=label
        ) from err
    except LocalEntryNotFoundError as err:
        raise HubUnavailableError(
            f"{label}: not a local path, the Hugging Face Hub is unreachable and the repository is not in the cache "
            "(HF_HUB_CACHE); check the id, go online, or run `rvec prefetch` where the hub is reachable",
            source=label,
        ) from err
    except OSError as err:  # connection errors surface as OSError subclasses
        raise HubUnavailableError(
            f"{label}: cannot reach the Hugging Face Hub ({err.__class__.__name__}); go online or use a local folder",
            source=label,
        ) from err
    if weights and not any(folder.glob("*.safetensors")) and not (allow_pickle and any(folder.glob("*.bin"))):
        logger.warning("%s: snapshot has no safetensors weights", label)
    return folder, folder.name


def remote_index(repo_id: str, revision: str | None) -> TensorIndex:
    """Tensor names, dtypes and shapes from the hub's safetensors headers, without downloading weights.

    The returned entries point at files that are not on disk: they describe, they cannot be read.
    Each header is validated as a local one is (:mod:`rvec.checkpoint.header`), and shard names
    must be plain file names.

    Raises:
        HubUnavailableError: the hub cannot be reached.
        CorruptCheckpointError: a header that is unreadable or breaks the format's rules.
        UnsafeNameError: the shard index names a file outside the repository's folder.
    """
    from huggingface_hub import get_safetensors_metadata
    from huggingface_hub.errors import NotASafetensorsRepoError, SafetensorsParsingError

    try:
        meta = get_safetensors_metadata(repo_id, revision=revision)
    except (SafetensorsParsingError, NotASafetensorsRepoError) as err:
        raise CorruptCheckpointError(
            f"{repo_id}: the hub's safetensors headers cannot be read ({err.__class__.__name__}); "
            "pass a repository with safetensors weights",
            path=repo_id,
        ) from err
    except OSError as err:
        raise HubUnavailableError(
            f"{repo_id}: cannot read safetensors headers from the hub ({err.__class__.__name__})",
            source=repo_id,
        ) from err
    tensors: dict[str, TensorInfo] = {}
    for filename, file_meta in meta.files_metadata.items():
        where = f"{repo_id}/{filename}"
        if not is_plain_name(filename):
            raise UnsafeNameError(
                f"{repo_id}: its shard index names {filename!r}, not a plain file name of the repository; "
                "the repository is damaged or was made to mislead",
                path=where,
            )
        header = {
            name: {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": list(t.data_offsets)}
            for name, t in file_meta.tensors.items()
        }
        # The remote reader gives no file size: every rule but "covers the file exactly" applies.
        entries, _ = validate_header(header, where=where, data_size=None)
        for e in entries:
            if e.name in tensors:
                raise CorruptCheckpointError(
                    f"{repo_id}: tensor {e.name!r} appears in both {tensors[e.name].file} and {filename}; "
                    "the checkpoint is inconsistent",
                    path=where,
                )
            tensors[e.name] = TensorInfo(
                name=e.name, dtype=e.dtype, shape=e.shape, file=Path(filename), start=e.begin, end=e.end
            )
    return TensorIndex(tensors=tensors, files=tuple(Path(f) for f in meta.files_metadata))
