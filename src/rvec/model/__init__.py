"""One model state per backend: load a target, set ``Σ αᵢ·vᵢ`` in place, restore exactly, fingerprint
the weights, and hand the evaluation object to ``rvec eval`` and ``rvec run`` (see docs/model-state.md).

Importing this package imports no engine: :class:`~rvec.model.hf.HFModelState` (torch) is loaded
when the ``hf`` backend is, :class:`~rvec.model.vllm_state.VllmModelState` (vLLM) when ``vllm`` is.
"""

from rvec.model.fingerprint import vector_fingerprint
from rvec.model.registry import BACKENDS, get_backend, open_model_state, parse_backend_settings
from rvec.model.settings import BackendSettings, HFSettings
from rvec.model.state import BackendSpec, ModelState
from rvec.model.vllm_spec import VLLMSettings

__all__ = [
    "BACKENDS",
    "BackendSettings",
    "BackendSpec",
    "HFSettings",
    "ModelState",
    "VLLMSettings",
    "get_backend",
    "open_model_state",
    "parse_backend_settings",
    "vector_fingerprint",
]
