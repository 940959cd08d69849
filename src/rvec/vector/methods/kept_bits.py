"""Keep masks held between a tensor's two passes, one bit an element, within a memory budget.

Why: ``rescale`` (DARE's default) needs each vector's keep mask twice, for the L1 sums before the
merge and in the merge itself. Drawing a DARE mask costs ~2.7 ns an element (a SeedSequence, SFC64
words, a partition; measured on the 2-core bench machine) against ~0.2 ns to pack and unpack it, so
the L1 pass keeps it packed. Holding every tensor's masks would cost n/8 bytes per vector for the
whole model; a :class:`MaskBudget` caps the bytes held at once, and a tensor's masks are dropped as
soon as it has been served whole. A mask not held (over the budget) or dropped is drawn again: the
same bits, since a mask depends only on its key and the tensor, so holding one never changes a result.
"""

from __future__ import annotations

import threading

import numpy as np

MASK_BUDGET_BYTES = 64 << 20
"""Bytes of packed masks a merge holds at once: a 0.5B model's largest tensor (the 136M-entry embedding)
is 17 MB a vector; a 7B model's embedding (525M entries) is over it and is drawn twice instead."""


class KeptBits:
    """One vector's keep mask of one tensor, packed; filled block by block, read once complete."""

    def __init__(self, numel: int) -> None:
        self.numel = numel
        self.nbytes = (numel + 7) // 8
        self._packed: np.ndarray | None = np.empty(self.nbytes, np.uint8)
        self.complete = False  # set by the pass that stored every block

    def store(self, start: int, mask: np.ndarray) -> None:
        """Record the bool ``mask`` of the block at flat ``start``.

        Blocks of the pass must own whole bytes: one that starts inside a byte (a pass whose block
        size is not a multiple of 8) gives the holding up, and the mask is drawn again instead.
        """
        packed = self._packed
        if packed is None:
            return
        if start % 8:
            self.drop()
            return
        packed[start // 8 : (start + mask.size + 7) // 8] = np.packbits(mask)

    def load(self, start: int, out: np.ndarray) -> np.ndarray | None:
        """The mask of the block at ``start`` into the bool buffer ``out``; ``None`` when not held."""
        packed = self._packed  # one read: drop() may run on another thread
        if packed is None or not self.complete:
            return None
        skip, n = start % 8, out.size
        bits = np.unpackbits(packed[start // 8 : (start + n + 7) // 8], count=skip + n)
        np.copyto(out.view(np.uint8), bits[skip:])
        return out

    def drop(self) -> None:
        self._packed = None

    @property
    def held(self) -> bool:
        return self._packed is not None


class MaskBudget:
    """Hands out :class:`KeptBits` while the bytes held stay within ``limit``.

    ``served`` counts the elements of each tensor handed out; once a tensor has been served whole,
    its masks are dropped and their bytes count no more. Thread-safe.
    """

    def __init__(self, limit: int = MASK_BUDGET_BYTES) -> None:
        self.limit = limit
        self.held_bytes = 0
        self._held: dict[str, list[KeptBits]] = {}
        self._served: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, name: str, numel: int) -> KeptBits | None:
        """Room for one more mask of tensor ``name``, or ``None`` (it is then drawn twice)."""
        with self._lock:
            nbytes = (numel + 7) // 8
            if numel == 0 or self.held_bytes + nbytes > self.limit:
                return None
            bits = KeptBits(numel)
            self._held.setdefault(name, []).append(bits)
            self.held_bytes += nbytes
            return bits

    def served(self, name: str, elements: int) -> None:
        """``elements`` more of tensor ``name`` were handed out; drop its masks once all were."""
        with self._lock:
            held = self._held.get(name)
            if not held:
                return
            done = self._served.get(name, 0) + elements
            if done < held[0].numel:
                self._served[name] = done
                return
            for bits in self._held.pop(name):
                bits.drop()
                self.held_bytes -= bits.nbytes
            self._served.pop(name, None)
