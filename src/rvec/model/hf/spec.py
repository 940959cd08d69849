"""The ``hf`` registry entry: how the embedded ``transformers`` backend loads (torch only in ``load``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rvec.model.hf.settings import HFSettings
from rvec.model.settings import BackendSettings, checked_settings
from rvec.model.state import ModelState

__all__ = ["HFSpec"]


class HFSpec:
    """The embedded ``transformers`` backend (:class:`~rvec.model.hf.state.HFModelState`)."""

    name = "hf"
    reference_url = "https://huggingface.co/docs/transformers/main_classes/text_generation"
    settings_type = HFSettings

    def load(self, source: str | Path, settings: BackendSettings) -> ModelState:
        """Load ``source`` as a live ``transformers`` module (see :meth:`HFModelState.load`)."""
        from rvec.model.hf.state import HFModelState  # torch and transformers: only when this backend runs

        return HFModelState.load(source, checked_settings(settings, HFSettings))

    def cache_identity(self, settings: BackendSettings) -> dict[str, Any]:
        """``{"dtype": "torch.float32"}``: the resolved parameter dtype (the key of every HF study
        cell since the first run folders; the rest of the HF identity is in the response cache key)."""
        from rvec.model.hf.loading import pick_device, pick_dtype

        return {"dtype": str(pick_dtype(settings.dtype, pick_device(settings.device)))}
