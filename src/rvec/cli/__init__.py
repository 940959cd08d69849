"""rvec — reasoning vectors: extract θ_RL − θ_SFT, add α·v to other models, measure the transfer.

Try: rvec inspect MODEL, then rvec check --sft A --rl B --to T.
"""

from __future__ import annotations

from rvec.cli.app import app, main

__all__ = ["app", "main"]
