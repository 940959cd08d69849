"""Backends answer requests with responses (the :class:`~rvec.eval.types.LanguageModel` protocol).

Only the ``transformers`` backend exists so far (:class:`HFBackend`); vLLM would be a sibling module.
Each is handed out by its model state (:mod:`rvec.model`), which loads the weights and sets α;
``rvec eval --backend`` and a study's ``backend.name`` choose one from :mod:`rvec.model.registry`.
"""

from rvec.eval.backends.hf import DECODE_VERSION, HFBackend

__all__ = ["DECODE_VERSION", "HFBackend"]
