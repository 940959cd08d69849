"""RAM (Reinforced Agent Merging): average the entries several RL vectors share, keep the ones each
has alone at full size.

Per entry, the vectors whose ``|vᵢ| > epsilon`` contribute; with ``c`` of them the merged entry is
``Σᵢ vᵢ / c`` when ``c > 1``, the one ``vᵢ`` when ``c = 1``, and 0 when ``c = 0`` (entries at or below
``epsilon`` never enter, even where another vector has that entry). RL updates are sparse, so
averaging everything would shrink each vector's unique updates by ``1/n``; RAM keeps them whole.

arXiv 2601.13572, https://arxiv.org/abs/2601.13572; in mergekit 0.1.5 as ``ram``, whose one
parameter is the shared ``epsilon`` (default 1e-5); no weights, no ``lambda``. Element-wise: no
per-tensor statistic, one block of each vector at a time. Float32, sums left to right.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rvec.checkpoint.reader import Workspace
from rvec.vector.methods.base import ParamDef, Params, TensorInput, shared_param

EPSILON = shared_param(
    "epsilon", float, 1e-5, "an entry with |v| at or below it counts as untouched by that vector", low=0.0
)


@dataclass(frozen=True)
class Ram:
    name: str = "ram"
    pretty_name: str = "Reinforced Agent Merging"
    draws_masks: bool = False
    reference_url: str = "https://arxiv.org/abs/2601.13572"
    params: tuple[ParamDef, ...] = (EPSILON,)

    def prepare(self, inputs: Sequence[TensorInput], params: Params, *, seed: int, ws: Workspace) -> None:
        return None  # element-wise

    def kept(self, state: None, numel: int, n_vectors: int) -> list[int]:
        return [numel] * n_vectors

    def combine(
        self,
        state: None,
        deltas: Sequence[np.ndarray],
        start: int,
        out: np.ndarray,
        params: Params,
        ws: Workspace,
    ) -> np.ndarray:
        n = out.size
        eps = np.float32(params.shared["epsilon"])
        touched = [ws.get(f"ram:touched{i}", np.bool_, n) for i in range(len(deltas))]
        count = ws.get(
            "ram:count", np.float32, n
        )  # float32, as mergekit's int count promoted in the division
        count.fill(0)
        magnitude = ws.get("ram:abs", np.float32, n)
        for delta, mask in zip(deltas, touched):
            np.greater(np.abs(delta, out=magnitude), eps, out=mask)
            np.add(count, mask, out=count)
        # ÷ max(count, 1) everywhere: entries one vector touched divide by 1 (exact), untouched are 0.
        np.maximum(count, 1, out=count)
        out.fill(0)
        term = ws.get("ram:term", np.float32, n)
        for delta, mask in zip(deltas, touched):
            np.multiply(delta, mask, out=term)  # untouched entries → 0
            np.add(out, np.divide(term, count, out=term), out=out)
        return out


RAM = Ram()
