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


def test_every_test_module_has_a_unique_basename() -> None:
    # Test folders are not packages (rootdir import mode): two test files of one name collide at
    # collection ("import file mismatch") on a clean clone, whatever order a warm cache hid it in.
    names = [f.name for f in Path(__file__).parent.rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_tests_mirror_the_package_layout() -> None:
    """Every test folder names a package of rvec (or the vLLM group): a newcomer finds the tests of
    rvec/<package>/ in tests/<package>/."""
    tests = Path(__file__).parent
    src = tests.parent / "src" / "rvec"
    packages = {p.relative_to(src) for p in src.rglob("*") if p.is_dir() and (p / "__init__.py").is_file()}
    folders = {
        p.relative_to(tests)
        for p in tests.rglob("*")
        if p.is_dir() and p.name != "__pycache__" and any(p.glob("test_*.py"))
    }
    strays = sorted(str(f) for f in folders - packages - {Path("vllm_backend")})
    assert not strays, (
        f"tests/{strays[0]} mirrors no package of src/rvec; move its tests beside their package"
    )


def test_no_private_name_is_imported_from_another_package() -> None:
    """``from rvec.a.b import _name`` only inside package ``rvec.a``: a private name is the business of
    its own package (the HF and vLLM backends once shared text rules by borrowing such names)."""
    import ast

    src = Path(__file__).parents[1] / "src"
    offenders = []
    for path in (src / "rvec").rglob("*.py"):
        importer = ".".join(path.relative_to(src).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rvec."):
                private = [
                    a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")
                ]
                module = src / Path(*node.module.split("."))
                # The package that owns the name: the module itself when it is a package (the name is
                # one of its modules), else the module's package.
                owner = node.module if (module / "__init__.py").is_file() else node.module.rsplit(".", 1)[0]
                if private and not importer.startswith(owner + "."):
                    offenders.append(f"{importer} imports {', '.join(private)} from {node.module}")
    assert not offenders, offenders[0]


def test_every_rvec_import_in_bench_scripts_resolves() -> None:
    """bench/ is not imported by the suite, so a moved module broke a benchmark silently once
    (math500_agreement.py kept ``rvec.model.settings.HFSettings`` after the engines moved)."""
    import ast
    import importlib

    bench = Path(__file__).parents[1] / "bench"
    broken = []
    for path in sorted(bench.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rvec"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name):
                        try:
                            importlib.import_module(f"{node.module}.{alias.name}")
                        except ImportError:
                            broken.append(f"{path.name}: from {node.module} import {alias.name}")
    assert broken == [], f"{broken[0]}: update the benchmark to the module's new place"
