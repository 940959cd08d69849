"""KL(p_target ‖ p_variant) per cell: how far a variant's next-token distribution moved from the
target's on the task's own prompts — a forgetting proxy that needs no labels.

Position: the token after each rendered prompt (the first token the model would generate; a
log-likelihood request's context end), one position per item, the cheap and standard choice. The
target's distributions are computed once per (target, task key, condition, items) with the target's
weights untouched and kept in the run folder (``RUN/kl/<target fingerprint>/<condition>/<task>-<items>.npy``:
float16 log-probabilities, one row per item, and a ``.json`` naming the items); each variant's are
computed after its evaluation, with the same batches. Both sides are rounded to float16 and
renormalised (``log_softmax`` in float32) before ``Σ p_t·(log p_t − log p_v)``, so a variant whose
weights equal the target's gives exactly 0; small negative sums from rounding are clipped to 0.

The HF and vLLM backends give whole distributions (:class:`~rvec.eval.types.NextTokenScoring`;
vLLM: every token's log-probability of one step). A backend without them measures nothing: its
cells carry no ``kl`` and the report says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import log_softmax

from rvec.atomic import atomic_file, write_json
from rvec.eval.cache import request_digest
from rvec.eval.data import DataSource
from rvec.eval.perturb import parse_perturbations
from rvec.eval.plan import Unit, plan_units, resolve_condition, with_counterparts
from rvec.eval.tasks import expand_task_names, get_task
from rvec.eval.types import LanguageModel, NextTokenScoring

__all__ = ["POSITION", "KLMeter", "kl_rows"]

logger = logging.getLogger(__name__)

POSITION = "next token after the prompt"
"""Where the distributions are compared, as results.json records it."""

_CHUNK = 256
"""Prompts per call: bounds the float32 rows held at once (256 × a 152k vocabulary = 155 MB)."""


def kl_rows(reference: np.ndarray, variant: np.ndarray) -> np.ndarray:
    """KL(p_ref ‖ p_var) per row of two log-probability arrays (any float dtype), both rounded to
    float16 and renormalised first (see the module docstring); clipped at 0.

    Args:
        reference (np.ndarray): (N, V) log-probabilities of the reference.
        variant (np.ndarray): (N, V) log-probabilities of the variant.

    Returns:
        np.ndarray: (N,) float64 divergences in nats.
    """
    lp_r = log_softmax(reference.astype(np.float16).astype(np.float32), axis=-1)  # (N, V)
    lp_v = log_softmax(variant.astype(np.float16).astype(np.float32), axis=-1)  # (N, V)
    kl = np.sum(np.exp(lp_r) * (lp_r - lp_v), axis=-1, dtype=np.float64)
    return np.maximum(kl, 0.0)


class KLMeter:
    """Measures the cells of one run against their target's stored distributions.

    Args:
        folder (Path): ``RUN/kl``.
        source (DataSource): Where task items come from.
        enabled (bool): ``False`` measures nothing (``kl: false``).
    """

    def __init__(self, folder: Path, *, source: DataSource, enabled: bool) -> None:
        self.folder = folder
        self.source = source
        self.enabled = enabled
        self.skipped: set[str] = set()
        """Why some cells have no KL (the report lists these)."""

    # ------------------------------------------------------------------------------ references
    def missing(self, lm: LanguageModel, args: dict[str, Any], reference: str) -> bool:
        """Whether ``lm`` could measure ``args``' cells but the target's distributions of some
        unit are not stored yet."""
        return self._able(lm) and any(
            not self._path(reference, args, u).with_suffix(".npy").is_file() for u in self._units(args)
        )

    def ensure_reference(self, lm: LanguageModel, args: dict[str, Any], reference: str) -> None:
        """Store the target's distributions for every unit of ``args`` not stored yet; ``lm`` must
        hold the target's own weights (fingerprint ``reference``)."""
        if not self._able(lm):
            return
        for unit in self._units(args):
            path = self._path(reference, args, unit)
            if not path.with_suffix(".npy").is_file():
                self._store(path, self._logprobs(lm, unit.requests), reference, args, unit)

    def measure(
        self, lm: LanguageModel, args: dict[str, Any], reference: str, current: str
    ) -> dict[str, tuple[dict[str, Any], dict[str, float]]]:
        """Per task key of ``args``: the cell's KL summary and the per-item values by doc id.

        Args:
            lm (LanguageModel): The backend with the variant's weights.
            args (dict): :func:`rvec.eval.runner.evaluate`'s arguments for this part.
            reference (str): The target's fingerprint.
            current (str): ``lm``'s fingerprint (equal to ``reference``: 0 without computing).

        Returns:
            dict: ``{task key: (summary, {doc_id: kl})}``; empty where nothing can be measured.
        """
        if not self._able(lm):
            return {}
        out = {}
        for unit in self._units(args):
            path = self._path(reference, args, unit)
            if current == reference:
                values = np.zeros(len(unit.docs))
            elif not path.with_suffix(".npy").is_file():
                self.skipped.add(f"{unit.key}: the target's distributions were not stored")
                continue
            else:
                values = self._divergences(lm, unit, np.load(path.with_suffix(".npy")))
                if values is None:
                    continue
            out[unit.key] = (
                _summary(values, reference),
                {d.doc_id: float(x) for d, x in zip(unit.docs, values)},
            )
        return out

    # --------------------------------------------------------------------------------- helpers
    def _able(self, lm: LanguageModel) -> bool:
        if self.enabled and not isinstance(lm, NextTokenScoring):
            self.skipped.add(f"backend {lm.name} gives no whole next-token distribution (docs/atlas.md)")
        return self.enabled and isinstance(lm, NextTokenScoring)

    def _divergences(self, lm: LanguageModel, unit: Unit, reference: np.ndarray) -> np.ndarray | None:
        values = []
        for start in range(0, len(unit.requests), _CHUNK):
            variant = lm.next_token_logprobs(unit.requests[start : start + _CHUNK])  # type: ignore[attr-defined]
            ref = reference[start : start + len(variant)]
            if variant.shape != ref.shape:
                self.skipped.add(
                    f"{unit.key}: vocabulary rows differ from the target's ({variant.shape[-1]} ≠ {ref.shape[-1]})"
                )
                return None
            values.append(kl_rows(ref, variant))
        return np.concatenate(values) if values else np.zeros(0)

    def _logprobs(self, lm: LanguageModel, requests: Sequence[Any]) -> np.ndarray:
        chunks = [
            np.asarray(lm.next_token_logprobs(requests[s : s + _CHUNK]), dtype=np.float16)  # type: ignore[attr-defined]
            for s in range(0, len(requests), _CHUNK)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float16)

    def _units(self, args: dict[str, Any]) -> list[Unit]:
        """The units :func:`rvec.eval.runner.evaluate` builds from ``args`` (same docs, same requests)."""
        preset = args["preset"]
        condition = resolve_condition(preset, args["condition"])
        requested = expand_task_names(list(args["tasks"]))
        tasks = [get_task(n) for n in with_counterparts(requested)]
        perts = parse_perturbations(",".join(args["perturbations"])) if args["perturbations"] else []
        units, _ = plan_units(
            tasks,
            requested,
            preset,
            condition,
            perts,
            self.source,
            args["limit"],
            args["seed"],
            doc_ids=args.get("doc_ids"),
        )
        return units

    def _path(self, reference: str, args: dict[str, Any], unit: Unit) -> Path:
        """``RUN/kl/<target>/<condition>/<task>-<items and prompts digest>`` (suffix added by callers)."""
        items = hashlib.sha256(
            json.dumps([[d.doc_id, request_digest(r)] for d, r in zip(unit.docs, unit.requests)]).encode()
        ).hexdigest()[:16]
        slug = re.sub(r"[^A-Za-z0-9_.+-]", "_", unit.key)
        return self.folder / reference[:16] / str(args["condition"]) / f"{slug}-{items}"

    def _store(
        self, path: Path, logprobs: np.ndarray, reference: str, args: dict[str, Any], unit: Unit
    ) -> None:
        # The rows first, the record second: a record is only ever beside a whole array.
        with atomic_file(path.with_suffix(".npy"), fsync=False) as fh:
            np.save(fh, logprobs)
        write_json(
            path.with_suffix(".json"),
            {
                "reference": reference,
                "task": unit.key,
                "condition": args["condition"],
                "position": POSITION,
                "dtype": "float16 log-probabilities",
                "doc_ids": [d.doc_id for d in unit.docs],
            },
            fsync=False,
        )


def _summary(values: np.ndarray, reference: str) -> dict[str, Any]:
    return {
        "mean": float(np.mean(values)) if len(values) else None,
        "median": float(np.median(values)) if len(values) else None,
        "p90": float(np.quantile(values, 0.9)) if len(values) else None,
        "n": len(values),
        "reference": reference,
        "position": POSITION,
    }
