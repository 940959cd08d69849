"""Small readers for assertions: load a whole folder's tensors with the safetensors library itself."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file


def load_folder(folder: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        if file.name == "lineage.safetensors":
            continue
        tensors.update(load_file(file))
    return tensors
