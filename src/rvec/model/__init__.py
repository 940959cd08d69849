"""Every engine behind one model-state seam: load a target, set ``Σ αᵢ·vᵢ`` in place, restore exactly,
fingerprint the weights, answer evaluation requests (docs/model-state.md).

* :mod:`rvec.model.state` — the seam (:class:`ModelState`, :class:`BackendSpec`);
  :mod:`rvec.model.registry` — backends by name; :mod:`rvec.model.settings` — their settings' base.
* :mod:`rvec.model.text` — the text rules every engine shares (rendering, tokenisation, stopping).
* :mod:`rvec.model.hf` — the embedded ``transformers`` engine; :mod:`rvec.model.vllm` — vLLM (optional).
* :mod:`rvec.model.evaluate` — evaluate one model (``rvec eval``'s library call).

Importing this package imports no engine: torch is loaded when the ``hf`` backend loads a model,
vLLM when ``vllm`` does.
"""

from rvec.model.fingerprint import weights_fingerprint
from rvec.model.hf.settings import HFSettings
from rvec.model.registry import BACKENDS, get_backend, open_model_state, parse_backend_settings
from rvec.model.settings import BackendSettings
from rvec.model.state import BackendSpec, ModelState
from rvec.model.vllm.settings import VLLMSettings

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
    "weights_fingerprint",
]
