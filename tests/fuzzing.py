"""Shared settings of the fuzz and property tests (hypothesis): a bounded number of examples per
target, no per-example deadline (the machine is shared), and no example database written into the
repository. The whole ``fuzz`` group runs in under a minute on CI (docs/security.md).

Seeds live in ``tests/<package>/corpus/``: every seed is replayed on every run, and the fuzzers
start from them; a new crash found by hand or by a longer run is added there as a file.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# RVEC_FUZZ_EXAMPLES raises the count for a longer local run (e.g. 20000); CI keeps the default.
EXAMPLES = int(os.environ.get("RVEC_FUZZ_EXAMPLES", "300"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Targets whose every example costs milliseconds (YAML and pydantic, files through the CLI's library).
FUZZ_SLOW = settings(FUZZ, max_examples=max(EXAMPLES // 4, 1))
PROPERTY = settings(
    max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def corpus(folder: Path) -> list[Path]:
    """The seed files of a corpus folder, sorted (so a failure names the same seed every time)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with a few byte-level mutations: flips, overwrites with extreme 8-byte integers,
    truncation, insertion, deletion — what a damaged download or a hand-edited file looks like."""
    data = bytearray(draw(st.sampled_from(seeds)))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            data += bytes(rng.randrange(256) for _ in range(8))
        at = rng.randrange(len(data))
        kind = rng.randrange(5)
        if kind == 0:
            data[at] ^= 1 << rng.randrange(8)
        elif kind == 1:
            value = rng.choice([0, 1, 2**31, 2**32 - 1, 2**63 - 1, 2**64 - 1, rng.randrange(2**64)])
            data[at : at + 8] = value.to_bytes(8, "little")
        elif kind == 2:
            del data[at:]
        elif kind == 3:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
        else:
            del data[at : at + rng.randrange(1, 16)]
    return bytes(data)
