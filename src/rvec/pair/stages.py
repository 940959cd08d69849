"""The stages of one ``rvec pair`` run, each skipped when its product is already complete:
init → SFT → calibration → GRPO → vector → held-out check → manifest."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rvec import __version__
from rvec.atomic import atomic_dir, write_json
from rvec.checkpoint.files import copy_metadata
from rvec.checkpoint.hashing import sha256_file
from rvec.checkpoint.local import local_folder
from rvec.checkpoint.source import resolve
from rvec.errors import InvalidArgumentError, RvecError, TrainingError
from rvec.pair.data import TrainingSet, draw_grpo_items, mix_worked_solutions
from rvec.pair.logbook import Logbook, StepReport, plot_curves, step_rates
from rvec.pair.phases import (
    Factors,
    latest_checkpoint,
    load_model,
    quiet_training_libraries,
    run_grpo,
    run_sft,
)
from rvec.pair.recipe import PairRecipe

__all__ = ["MANIFEST", "PairResult", "PairStages"]

logger = logging.getLogger(__name__)

MANIFEST = "rvec.json"


@dataclass(frozen=True)
class PairResult:
    """What :func:`~rvec.pair.workflow.make_pair` produced: the folder and its ``rvec.json``."""

    out: Path
    manifest: dict[str, Any]


class PairStages:
    """One run of :func:`~rvec.pair.workflow.make_pair` over a claimed folder."""

    def __init__(
        self,
        recipe: PairRecipe,
        out: Path,
        training: TrainingSet,
        *,
        device: str,
        on_step: Callable[[StepReport], None] | None,
        on_stage: Callable[[str], None] | None,
        callbacks: Sequence[Any],
    ) -> None:
        self.recipe = recipe
        self.out = out
        self.work = out / ".work"
        self.training = training
        self.device = device
        self.on_stage = on_stage or (lambda text: None)
        self.callbacks = list(callbacks)
        self.log = Logbook(out / "log.jsonl", on_step=on_step)
        self.timings: dict[str, float] = self._saved("timings") or {}

    # ---------------------------------------------------------------------------------- driver
    def run(self) -> PairResult:
        quiet_training_libraries()
        init = self.init_folder()
        sft_factors = self.sft(init)
        calibration = vector = None
        if self.recipe.grpo_steps > 0:
            calibration = self.calibration()
            vector = self.vector(self.grpo(calibration))
        if sft_factors is not None:
            self.sft_delta(init, sft_factors)
        held_out = self.held_out(init)
        manifest = self.manifest(init, vector, calibration, held_out)
        plot_curves(
            self.log.path,
            self.out / "curves.png",
            held_out={k: v["accuracy"] for k, v in held_out.get("models", {}).items()},
            title=f"rvec pair: {self.recipe.init} on {self.recipe.task} (seed {self.recipe.seed})",
        )
        write_json(self.out / MANIFEST, manifest)
        shutil.rmtree(self.work, ignore_errors=True)
        return PairResult(self.out, manifest)

    # ---------------------------------------------------------------------------------- stages
    def init_folder(self) -> Path:
        """The init as a local HF folder (:func:`rvec.checkpoint.local.local_folder`: a GGUF is
        dequantized once into rvec's cache)."""
        ckpt = resolve(self.recipe.init)
        if ckpt.gguf_file is not None:
            self.on_stage("the GGUF init as a float32 folder")
        folder = local_folder(ckpt)
        if not _has_chat_template(folder):
            raise InvalidArgumentError(
                f"{self.recipe.init}: the tokenizer has no chat template; rvec pair trains on chat turns — "
                "use an instruct model, or add a chat_template to its tokenizer_config.json"
            )
        return folder

    def sft(self, init: Path) -> Factors | None:
        folder = self.out / "sft"
        if _complete(folder):
            return (
                None
                if self.recipe.sft_lora_rank == 0 or (self.out / "sft-delta").is_dir()
                else self._factors("sft")
            )
        self.on_stage(f"SFT: {self.recipe.sft_steps} steps")
        work = self.work / "sft"
        self._truncate_log("sft", work)
        levels = self.recipe.levels if self.recipe.task == "arith" else None
        items = self.training.items(
            self.recipe.sft_steps * self.recipe.sft_batch_size, seed=self.recipe.seed, levels=levels
        )
        items = mix_worked_solutions(
            items, self.training, worked_fraction=self.recipe.worked_fraction, seed=self.recipe.seed
        )
        start = time.perf_counter()
        model, factors = self._phase("SFT", run_sft, init, items, work=work)
        if factors is not None:  # before the folder: a complete folder implies its factors are saved
            _save_factors(self.work / "sft-factors.npz", factors)
        self._save_model(model, init, folder)
        self._time("sft", start)
        return factors

    def calibration(self) -> dict[str, Any] | None:
        if not (self.recipe.task == "arith" and self.recipe.calibrate):
            return None
        saved = self._saved("calibration")
        if saved is not None:
            return saved
        self.on_stage("calibrating GRPO's levels on the SFT model")
        from rvec.pair.calibrate import calibrate_levels

        model, tokenizer = load_model(self.out / "sft")
        n = self.recipe.calibration_prompts
        items = [
            it
            for lv in self.recipe.levels
            for it in self.training.items(n, seed=self.recipe.seed + 7, levels=[lv])
        ]
        start = time.perf_counter()
        result = calibrate_levels(
            model,
            tokenizer,
            items,
            self.training,
            group=self.recipe.num_generations,
            temperature=self.recipe.temperature,
            max_new_tokens=self.recipe.max_completion_length,
            seed=self.recipe.seed,
        ).to_json()
        self._time("calibration", start)
        self._save("calibration", result)
        return result

    def grpo(self, calibration: dict[str, Any] | None) -> Factors | None:
        folder = self.out / "rl"
        if _complete(folder):
            return None if self.recipe.grpo_lora_rank == 0 else self._factors("grpo")
        weights = {int(k): float(v) for k, v in calibration["weights"].items()} if calibration else None
        self.on_stage(
            f"GRPO: {self.recipe.grpo_steps} steps" + (f", level weights {weights}" if weights else "")
        )
        work = self.work / "grpo"
        self._truncate_log("grpo", work)
        n = self.recipe.grpo_steps * self.recipe.prompts_per_step
        items = draw_grpo_items(self.training, n=n, seed=self.recipe.seed, weights=weights)
        start = time.perf_counter()
        model, factors = self._phase("GRPO", run_grpo, self.out / "sft", items, work=work)
        if factors is not None:
            _save_factors(self.work / "grpo-factors.npz", factors)
        self._save_model(model, self.out / "sft", folder)
        self._time("grpo", start)
        return factors

    def vector(self, factors: Factors | None) -> Path:
        from rvec.pair.vectors import write_pair_vector

        folder = self.out / "vector"
        if not (folder / "rvec.json").is_file():
            self.on_stage("writing v = rl − sft")
            write_pair_vector(
                self.out / "sft", self.out / "rl", folder, factors=factors, label="v = θ_RL − θ_SFT"
            )
        return folder

    def sft_delta(self, init: Path, factors: Factors) -> None:
        from rvec.pair.vectors import write_pair_vector

        folder = self.out / "sft-delta"
        if not (folder / "rvec.json").is_file():
            write_pair_vector(init, self.out / "sft", folder, factors=factors, label="θ_SFT − θ_init")

    def held_out(self, init: Path) -> dict[str, Any]:
        saved = self._saved("held_out")
        if saved is not None or self.recipe.eval_items == 0:
            return saved or {}
        from rvec.pair.heldout import held_out_check

        self.on_stage(
            f"held-out check: {self.recipe.eval_items} {self.training.eval_task} items × init, SFT, RL"
        )
        start = time.perf_counter()
        models = {"init": init, "sft": self.out / "sft"}
        if self.recipe.grpo_steps > 0:
            models["rl"] = self.out / "rl"
        result = held_out_check(
            models,
            self.training.eval_task,
            limit=self.recipe.eval_items,
            work=self.work / "eval",
            device=self.device,
        )
        self._time("held_out", start)
        self._save("held_out", result)
        return result

    def manifest(
        self, init: Path, vector: Path | None, calibration: dict[str, Any] | None, held_out: dict[str, Any]
    ) -> dict[str, Any]:
        import peft
        import torch
        import transformers
        import trl

        return {
            "kind": "reasoning-pair",
            "format_version": 1,
            "rvec": __version__,
            "recipe": self.recipe.to_json(),
            "init": {"source": self.recipe.init, "sha256": _weight_hashes(init)},
            "sft": {"sha256": _weight_hashes(self.out / "sft")},
            "rl": {"sha256": _weight_hashes(self.out / "rl"), "trained_from": "sft"} if vector else None,
            "vector": json.loads((vector / "rvec.json").read_text()).get("files", {}) if vector else None,
            "calibration": calibration,
            "held_out": held_out,
            "timings_seconds": self.timings,
            "rates": step_rates(
                self.log.path, completions_per_step=self.recipe.prompts_per_step * self.recipe.num_generations
            ),
            "versions": {
                "trl": trl.__version__,
                "peft": peft.__version__,
                "transformers": transformers.__version__,
                "torch": torch.__version__,
            },
            "device": self.device,
        }

    # ---------------------------------------------------------------------------------- helpers
    def _phase(
        self, name: str, fn: Callable[..., Any], model_dir: Path, items: list[Any], *, work: Path
    ) -> Any:
        callbacks = [self.log.callback(name.lower()), *self.callbacks]
        try:
            return fn(
                model_dir,
                items,
                self.recipe,
                self.training,
                work=work,
                device=self.device,
                callbacks=callbacks,
            )
        except (ValueError, RuntimeError, OSError) as err:
            if isinstance(err, RvecError):
                raise
            raise TrainingError(
                f"{name} failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}; "
                f"fix the cause and continue with rvec pair ... --resume -o {self.out}"
            ) from err

    def _save_model(self, model: Any, tokenizer_from: Path, folder: Path) -> None:
        with atomic_dir(folder) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            copy_metadata(tokenizer_from, tmp)

    def _truncate_log(self, phase: str, work: Path) -> None:
        checkpoint = latest_checkpoint(work)
        self.log.truncate(phase, int(checkpoint.name.split("-")[1]) if checkpoint else 0)

    def _factors(self, phase: str) -> Factors | None:
        path = self.work / f"{phase}-factors.npz"
        return _load_factors(path) if path.is_file() else None

    def _time(self, stage: str, start: float) -> None:
        self.timings[stage] = round(time.perf_counter() - start, 1)
        self._save("timings", self.timings)

    def _saved(self, name: str) -> Any:
        path = self.work / f"{name}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def _save(self, name: str, data: Any) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        write_json(self.work / f"{name}.json", data)


def _complete(folder: Path) -> bool:
    return (folder / "config.json").is_file()  # folders appear by atomic rename: present = complete


def _has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file():
        return True
    config = folder / "tokenizer_config.json"
    return config.is_file() and bool(json.loads(config.read_text()).get("chat_template"))


def _weight_hashes(folder: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(folder.glob("*.safetensors"))}


def _save_factors(path: Path, factors: Factors) -> None:
    import numpy as np

    arrays = {f"{name}|A": a for name, (a, _) in factors.items()} | {
        f"{name}|B": b for name, (_, b) in factors.items()
    }
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _load_factors(path: Path) -> Factors:
    import numpy as np

    with np.load(path) as data:
        names = sorted({k.rsplit("|", 1)[0] for k in data.files})
        return {n: (data[f"{n}|A"], data[f"{n}|B"]) for n in names}
