"""Micro-benchmark of the element-wise steps behind two engine choices, on one thread:

- survival counts (``rvec apply``): torch vs numpy for ``x != 0`` on float32, ``a != b`` on int16
  views, the AND of two masks and the count of a mask;
- the in-memory α switch of a bf16 parameter: ``torch.add(bf16, float32, out=float32)`` vs
  ``copy_`` then ``add_``.

Run::

    python bench/elementwise_ops.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

N = 1 << 20  # elements per call (the apply engine's block size)


def per_call_us(fn: Callable[[], object], calls: int = 300) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    result = torch.randn(N, generator=gen).to(torch.bfloat16)
    base = result.clone()
    base[::3] += 1
    total = torch.randn(N, generator=gen)
    total[::5] = 0
    m1, m2 = torch.empty(N, dtype=torch.bool), torch.empty(N, dtype=torch.bool)
    r16, b16, t32 = result.view(torch.int16), base.view(torch.int16), total
    n1, n2 = m1.numpy(), m2.numpy()

    def torch_survival() -> None:
        torch.ne(t32, 0, out=m1)
        torch.ne(r16, b16, out=m2)
        int(torch.count_nonzero(m1))
        m2.logical_and_(m1)
        int(torch.count_nonzero(m2))

    def numpy_survival() -> None:
        np.not_equal(t32.numpy(), 0, out=n1)
        np.not_equal(r16.numpy(), b16.numpy(), out=n2)
        int(np.count_nonzero(n1))
        np.logical_and(n2, n1, out=n2)
        int(np.count_nonzero(n2))

    chunk = 262_144  # the in-memory switch's chunk
    original = torch.randn(chunk, generator=gen).to(torch.bfloat16)
    tmp, acc = torch.randn(chunk, generator=gen), torch.empty(chunk)

    rows = [
        ("survival counts, torch (per 1M elements)", per_call_us(torch_survival)),
        ("survival counts, numpy (per 1M elements)", per_call_us(numpy_survival)),
        ("bf16 + f32 -> f32, torch.add mixed (per 262,144)", per_call_us(lambda: torch.add(original, tmp, out=acc), 2000)),
        ("bf16 + f32 -> f32, copy_ then add_ (per 262,144)", per_call_us(lambda: (acc.copy_(original), acc.add_(tmp)), 2000)),
    ]  # fmt: skip
    print(f"torch {torch.__version__}, numpy {np.__version__}, 1 thread\n")
    print("| step | µs per call |\n|---|---:|")
    for name, us in rows:
        print(f"| {name} | {us:.0f} |")


if __name__ == "__main__":
    main()
