"""The layout of the test tree itself."""

from __future__ import annotations

from pathlib import Path

# Packages that rvec's dependencies probe for with importlib.util.find_spec (TRL: vllm, deepspeed…;
# transformers and accelerate: many). A folder of tests/ without __init__.py is a namespace package
# whenever tests/ is on sys.path (pytest's prepend import mode puts it there), so a folder named
# tests/vllm made TRL believe vLLM was installed and fail to import GRPOTrainer (version "N/A").
PROBED = {"vllm", "ray", "trl", "peft", "deepspeed", "flash_attn", "bitsandbytes", "liger_kernel", "torch"}


def test_no_test_folder_shadows_a_package_that_dependencies_probe_for() -> None:
    tests = Path(__file__).parent
    folders = {p.name for p in tests.iterdir() if p.is_dir()}
    assert not folders & PROBED, f"rename tests/{sorted(folders & PROBED)}: it shadows an optional package"
