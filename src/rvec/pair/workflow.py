"""``rvec pair``: one initialisation → SFT → GRPO from the SFT result → ``v = θ_RL − θ_SFT``.

Output folder::

    pair/recipe.json     the recipe, written before any training (``--resume`` checks it)
    pair/sft/  pair/rl/  ordinary Hugging Face folders of one initialisation (LoRA phases merged)
    pair/vector/         v = rl − sft (low-rank factors when GRPO is LoRA: exact, small)
    pair/sft-delta/      θ_SFT − θ_init, when SFT is LoRA (so a pair can be shipped as two small vectors)
    pair/log.jsonl       one line per optimizer step of both phases
    pair/curves.png      SFT loss, GRPO reward, held-out greedy accuracy
    pair/rvec.json       recipe, versions, hashes, calibration, held-out results, timings
    pair/.work/          trainer checkpoints and the converted init (removed when the pair is done)

Each product is written atomically; a killed run leaves the finished products and the last trainer
checkpoint, and ``--resume`` continues from there.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rvec import __version__
from rvec.atomic import write_json
from rvec.errors import InvalidArgumentError, OutputExistsError
from rvec.pair.data import training_set
from rvec.pair.logbook import StepReport
from rvec.pair.recipe import PairRecipe, recipe_differences
from rvec.pair.stages import PairResult, PairStages

__all__ = ["make_pair"]

logger = logging.getLogger(__name__)

RECIPE = "recipe.json"


def make_pair(
    recipe: PairRecipe,
    out: Path,
    *,
    resume: bool = False,
    data_dir: Path | None = None,
    device: str = "cpu",
    on_step: Callable[[StepReport], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
    callbacks: Sequence[Any] = (),
) -> PairResult:
    """Train an SFT donor, then a GRPO donor from it, and extract the reasoning vector.

    Args:
        recipe (PairRecipe): What to train (see :class:`~rvec.pair.recipe.PairRecipe`).
        out (Path): The pair folder (created; with ``resume``, continued).
        resume (bool, default False): Continue a folder made by the same recipe from its last
            finished product or trainer checkpoint.
        data_dir (Path | None, default None): Local benchmark data (``gsm8k`` task).
        device (str, default "cpu"): ``cpu`` or ``cuda``.
        on_step (callable | None): Called after every optimizer step (progress bars).
        on_stage (callable | None): Called with a short text when a stage starts.
        callbacks (Sequence, default ()): Extra ``transformers.TrainerCallback``s for both phases.

    Returns:
        PairResult: the folder and its ``rvec.json`` manifest.

    Raises:
        OutputExistsError: ``out`` exists and ``resume`` is false.
        InvalidArgumentError: ``resume`` on a folder made by another recipe, or with nothing to
            resume; an init model without a chat template.
        TrainingError: a training phase failed.

    Example:
        >>> make_pair(PairRecipe(init="HuggingFaceTB/SmolLM2-135M-Instruct"), Path("pair/"))  # doctest: +SKIP
    """
    out = Path(out).absolute()
    _claim(out, recipe, resume=resume)
    training = training_set(recipe.task, data_dir=data_dir)
    stages = PairStages(
        recipe, out, training, device=device, on_step=on_step, on_stage=on_stage, callbacks=callbacks
    )
    return stages.run()


def _claim(out: Path, recipe: PairRecipe, *, resume: bool) -> None:
    saved_file = out / RECIPE
    if resume:
        if not saved_file.is_file():
            raise InvalidArgumentError(
                f"{out}: nothing to resume (no {RECIPE}); run rvec pair without --resume to start it"
            )
        saved = json.loads(saved_file.read_text())
        diff = recipe_differences(saved.get("recipe", {}), recipe)
        if diff:
            raise InvalidArgumentError(
                f"{out}: made by another recipe ({'; '.join(diff)}); resume with the same options or choose another -o"
            )
        return
    if out.exists() and any(out.iterdir()):
        raise OutputExistsError(
            f"{out}: already exists; pass --resume to continue the pair in it, or choose another -o"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_json(saved_file, {"recipe": recipe.to_json(), "rvec": __version__})
