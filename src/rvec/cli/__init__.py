"""rvec — reasoning vectors: extract θ_RL − θ_SFT, add α·v to other models, measure the transfer.

Try: rvec inspect MODEL, then rvec check --sft A --rl B --to T.
"""

from __future__ import annotations

import os

# Before numpy loads: rvec's array work is elementwise and runs on its own worker threads, and
# OpenBLAS's idle threads spin on the cores those workers need (2% of an apply's CPU samples).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from rvec.cli.app import app, main

__all__ = ["app", "main"]
