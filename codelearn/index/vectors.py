"""What every embedding backend shares: the version of the text recipe its vectors are named
by, batching by length, and normalisation. Both backends import this; neither imports the other
(`embedder` picks a backend lazily)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy loads only when something is embedded
    import numpy as np

#: Bump when `descriptor` changes what it produces: vectors made from the old
#: recipe no longer match queries made the new way.
RECIPE_VERSION = 2


def length_sorted_batches(
    lengths: Sequence[int], *, max_batch: int = 128, token_budget: int = 8192
) -> list[np.ndarray]:
    """Indices grouped into batches of similar length, shortest first.

    A batch is padded to its longest member, so sorting cuts padding; the
    token budget keeps long batches from growing large in memory.
    """
    import numpy as np

    order = np.argsort(np.asarray(lengths), kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and end - start < max_batch:
            if (end - start + 1) * lengths[order[end]] > token_budget:
                break
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


def l2_normalise(x: np.ndarray) -> np.ndarray:
    import numpy as np

    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.clip(norms, 1e-12, None)).astype(np.float32, copy=False)
