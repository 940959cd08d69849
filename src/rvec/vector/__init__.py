"""The reasoning vector as an artifact and everything done to it, streamed and torch-free where it
can be: read and write (:func:`~rvec.vector.artifact.read_vector`, :func:`~rvec.vector.writing.write_vector`),
extract ``θ_RL − θ_SFT``, check compatibility, apply ``θ + Σ αᵢ·vᵢ`` (to a folder, or in memory),
compress, export as LoRA, random controls, statistics.
"""

__all__: list[str] = []
