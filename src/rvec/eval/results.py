"""The files an evaluation leaves behind: ``results.json`` and ``samples/<task>.jsonl``.

``results.json`` follows lm-evaluation-harness's layout where it has one, so tools that read lm-eval
output read ours: ``results[task]["metric,filter"]`` (with ``"metric_stderr,filter"``), ``groups``,
``configs``, ``versions``, ``n-shot``, ``higher_is_better``, ``n-samples``, ``config``, ``date``,
``total_evaluation_time_seconds``. Everything rvec adds sits under one ``"rvec"`` key: the resolved
preset, the model and backend fingerprints, data fingerprints, the clean task each perturbed or
adversarial task pairs with (and both scores on the paired items), timings and tokens/s.

Every file is written to a temporary sibling and renamed into place; ``results.json`` is written
last, so its presence means the samples beside it are complete.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rvec.eval.types import EvalResult, SampleRecord

__all__ = ["mean_stderr", "sample_filename", "write_json_atomic", "write_outputs"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]")


def sample_filename(task_key: str) -> str:
    """``"bbh:navigate"`` -> ``"bbh_navigate.jsonl"`` (no ``:`` in file names, for Windows)."""
    return _UNSAFE.sub("_", task_key) + ".jsonl"


def mean_stderr(values: Sequence[float]) -> float:
    """Standard error of the mean with the n−1 sample deviation, as lm-eval's ``mean_stderr``."""
    n = len(values)
    if n < 2:
        return float("nan")
    mean = sum(values) / n
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return math.sqrt(variance / n)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a unique temporary sibling, then rename it over ``path``."""
    _write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def write_outputs(
    out_dir: Path,
    result: EvalResult,
    document: Mapping[str, Any],
    *,
    extras: Mapping[str, list[dict[str, Any]]] | None = None,
) -> Path:
    """Write ``samples/<task>.jsonl`` for every task key, then ``results.json``.

    Args:
        out_dir (Path): Output folder (created when missing).
        result (EvalResult): What :func:`~rvec.eval.runner.evaluate` produced.
        document (Mapping): The ``results.json`` content.
        extras (Mapping | None, default None): Per task key, one dict per sample of extra fields
            merged into its line (log-likelihoods, token counts, paired doc ids).

    Returns:
        Path: The ``results.json`` path.
    """
    out_dir = Path(out_dir)
    (out_dir / "samples").mkdir(parents=True, exist_ok=True)
    for key, records in result.samples.items():
        more = (extras or {}).get(key, [{}] * len(records))
        lines = [_sample_line(r, m) for r, m in zip(records, more, strict=True)]
        _write_text_atomic(out_dir / "samples" / sample_filename(key), "".join(lines))
    path = out_dir / "results.json"
    write_json_atomic(path, document)
    return path


def _sample_line(record: SampleRecord, extra: Mapping[str, Any]) -> str:
    line = {**asdict(record), **extra}
    line["metrics"] = dict(record.metrics)
    return json.dumps(line, ensure_ascii=False, default=_json_default) + "\n"


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _json_default(value: Any) -> Any:
    # Mappings and tuples from frozen dataclasses; NaN stays NaN (json writes it as NaN, as lm-eval).
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)
