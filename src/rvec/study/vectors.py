"""The study's vectors: ``v`` (read from ``vector:``, or extracted once from the donors, or a random
stand-in where no donor pair exists) and the norm-matched random controls, in ``RUN/vectors/``,
reused on resume."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rvec.study.config import StudyConfig
from rvec.vector.artifact import ReasoningVector, read_vector

__all__ = ["prepare_vectors"]


def prepare_vectors(
    config: StudyConfig, folder: Path, *, local: Callable[[str], str], notes: list[str]
) -> dict[str, ReasoningVector]:
    """``v`` and the random controls by label (``"v"``, ``"random:<seed>"``); what the report must
    say about where v came from is appended to ``notes``.

    Args:
        config (StudyConfig): The study.
        folder (Path): ``RUN/vectors``: vectors made here are reused when complete.
        local (callable): Maps a source to a local folder (a GGUF target's conversion).
        notes (list[str]): The run's report notes.
    """
    from rvec.vector.control import norm_matched_random, relative_random
    from rvec.vector.extract import extract

    c = config
    if c.vector is not None:
        v = read_vector(c.vector)
        if c.donors is not None:
            notes.append(
                f"v is read from {c.vector}, not extracted from the donors; the donors are evaluated as rows."
            )
    elif c.donors is not None:
        v = _made(folder / "v", lambda out: extract(c.donors.sft, c.donors.rl, out))
    else:
        rel = float(c.random_in_place_of_v or 0.0)
        v = _made(
            folder / f"random-as-v-{c.seed}",
            lambda out: relative_random(local(c.targets[0]), out, rel_norm=rel, seed=c.seed),
        )
        notes.append(
            f"No real SFT/RL donor pair exists for this target: 'v' is a random control with per-tensor norm {rel:g}·‖θ‖ "
            f"(seed {c.seed}), labelled 'random-as-v'. Differences measure sensitivity to a random perturbation, not reasoning transfer."
        )
    vectors = {"v": v}
    for seed in c.controls.random_seeds:
        vectors[f"random:{seed}"] = _made(
            folder / f"random-{seed}", lambda out, seed=seed: norm_matched_random(v, out, seed=seed)
        )
    return vectors


def _made(folder: Path, make: Callable[[Path], ReasoningVector]) -> ReasoningVector:
    """The vector in ``folder`` when a complete one is there (vectors appear whole), else made now."""
    return read_vector(folder) if (folder / "rvec.json").is_file() else make(folder)
