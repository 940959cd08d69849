"""Backends answer requests with responses (the :class:`~rvec.eval.types.LanguageModel` protocol).

Only the ``transformers`` backend exists so far (:class:`HFBackend`); vLLM would be a sibling module.
"""

from rvec.eval.backends.hf import DECODE_VERSION, HFBackend

__all__ = ["DECODE_VERSION", "HFBackend"]
