"""rvec — reasoning vectors: extract θ_RL − θ_SFT, add α·v to other models, measure the transfer.

Try: rvec inspect MODEL, then rvec check --sft A --rl B --to T.
"""

from __future__ import annotations

import os
import sys

# Before numpy loads: the vector commands' array work is elementwise and runs on rvec's own worker
# threads, and OpenBLAS's idle threads spin on the cores those workers need (2% of an apply's CPU
# samples). Not for the commands that run a model: torch builds without MKL (aarch64) use OpenBLAS
# for their matrix products.
if not {"eval", "run"} & set(sys.argv[1:2]):
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from rvec.cli.app import app, main

__all__ = ["app", "main"]
