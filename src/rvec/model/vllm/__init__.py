"""The vLLM engine (an optional extra): settings, the engine with rvec's worker extension, the model
state whose α is set in the running engine, the language model, and persistent Ray replicas.

Importing this package imports neither vLLM nor torch: only :mod:`rvec.model.vllm.engine` and the
worker it names do, when an engine starts.
"""
