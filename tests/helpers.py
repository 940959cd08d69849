"""Small helpers for assertions: load a whole folder's tensors with the safetensors library itself;
check that a CLI run ended in rvec's one-line user error."""

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


def assert_user_error(result, fragment: str) -> None:
    """A ``CliRunner`` result: exit 1, exactly one stderr line ``rvec: error: …`` holding ``fragment``."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rvec: error: "), result.stderr
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output
