"""The files of a Hugging Face model folder besides its weights, by role: one list for every reader
and writer (``rvec apply`` copies the target's, ``rvec pair`` the init's, loaders check the vocabulary).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rvec.checkpoint.confine import allowed_roots, member

__all__ = ["METADATA_FILES", "TOKENIZER_VOCAB_FILES", "copy_metadata", "metadata_files"]

METADATA_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
)
"""Files a model folder carries besides weights; the target's copies go into every output."""

TOKENIZER_VOCAB_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")
"""Files that hold a tokenizer's vocabulary, one of which every loadable tokenizer folder has."""


def metadata_files(folder: Path, *, with_config: bool = True) -> list[Path]:
    """The :data:`METADATA_FILES` present in ``folder`` (``config.json`` left out unless ``with_config``).

    Raises:
        UnsafeNameError: one is a link to a file outside the folder (it would be copied into outputs).
    """
    names = METADATA_FILES if with_config else METADATA_FILES[1:]
    roots = allowed_roots(folder)
    found = [member(folder, n, listed_in=str(folder), roots=roots) for n in names]
    return [f for f in found if f.is_file()]


def copy_metadata(src: Path, dst: Path) -> None:
    """Copy ``src``'s tokenizer, chat template and generation config (not its config) into ``dst``."""
    for file in metadata_files(src, with_config=False):
        shutil.copyfile(file, dst / file.name)
