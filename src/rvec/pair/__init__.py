"""Making a reasoning pair the paper's way with TRL: one initialisation, SFT on a task, then GRPO from
the SFT result, the vector ``v = θ_RL − θ_SFT`` (factored when GRPO is LoRA), and a held-out check
that RL beats SFT. Entry point: :func:`rvec.pair.workflow.make_pair` (``rvec pair``).
"""

__all__: list[str] = []
