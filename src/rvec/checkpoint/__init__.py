"""Checkpoints as rvec reads and writes them, without torch: resolving a source (folder, hub id,
GGUF, ``pkg:`` file) to a :class:`~rvec.checkpoint.source.Checkpoint` (config, header-only tensor
index, byte-range reads), the one local folder an engine loads (:func:`~rvec.checkpoint.local.local_folder`),
dtypes, hashing, streamed sharded writing and GGUF conversion.
"""

__all__: list[str] = []
