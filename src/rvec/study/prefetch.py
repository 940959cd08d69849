"""Download every model and dataset a study needs, so it can later run offline."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from pathlib import Path

from rvec.checkpoint.source import resolve
from rvec.eval.data import DataSource
from rvec.eval.tasks.registry import expand_task_names, get_task
from rvec.study.config import MadeModel, StudyConfig
from rvec.study.mergekit_models import MergekitModel, mergekit_references, resolve_reference
from rvec.study.plan import clean_task_of

logger = logging.getLogger(__name__)


def prefetch(config: StudyConfig, *, on_item: Callable[[str], None] | None = None) -> list[str]:
    """Resolve (download) every model and load every dataset of the study; return what was fetched.

    Models go to the Hugging Face cache (``HF_HUB_CACHE``), datasets to the ``datasets`` cache; a
    later run with ``HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1`` finds them there.
    """
    fetched: list[str] = []
    models = list(config.targets)
    if config.donors is not None:
        models += [config.donors.sft, config.donors.rl]
    models += [ref for made in config.models.values() for ref in _inputs_of(made, config.models)]
    models += [row.model for row in config.rows.values()]
    for model in dict.fromkeys(models):
        if model in config.models:
            continue  # made in the run folder from a base listed here and local vectors
        ckpt = resolve(model)
        fetched.append(f"model {ckpt.display}")
        if on_item:
            on_item(fetched[-1])
    source = DataSource()
    names = expand_task_names(config.tasks) + (
        expand_task_names(config.adversarial) if config.adversarial else []
    )
    for name in dict.fromkeys(names + [clean_task_of(n) for n in names]):
        docs = get_task(name).docs(source, limit=config.limit_for(name))
        fetched.append(f"data {name} ({len(docs)} items)")
        if on_item:
            on_item(fetched[-1])
    return fetched


def _inputs_of(made: MadeModel | MergekitModel, models: Collection[str]) -> list[str]:
    """The models a study model is made from: its base, or every model its mergekit YAML names."""
    if isinstance(made, MadeModel):
        return [made.base]
    file = Path(made.mergekit)
    return [resolve_reference(ref, file, models) for ref in mergekit_references(made)]
