"""The evaluation protocol, engine-free: what a language model is asked (requests), how items are
drawn and prompted (tasks, presets, perturbations), how answers are judged (scoring, the HumanEval
sandbox), how results are kept (the response cache, results.json) and compared (paired statistics).

* :mod:`rvec.eval.types` — requests, responses, the :class:`~rvec.eval.types.LanguageModel` protocol
  every engine in :mod:`rvec.model` implements.
* :mod:`rvec.eval.tasks` — the benchmarks; :mod:`rvec.eval.presets` — pinned, versioned protocols.
* :mod:`rvec.eval.runner` — :func:`~rvec.eval.runner.evaluate`: one language model on tasks.
* :mod:`rvec.eval.stats` — paired bootstrap CIs, McNemar, flips.
"""

from rvec.eval.types import EvalResult, GenerateRequest, LanguageModel, LoglikelihoodRequest, Response

__all__ = ["EvalResult", "GenerateRequest", "LanguageModel", "LoglikelihoodRequest", "Response"]
