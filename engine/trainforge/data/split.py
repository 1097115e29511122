"""Seeded, stratified splits: the same seed gives the same split on every machine and every rank."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import train_test_split


def stratified_split(
    labels: Sequence[int] | np.ndarray, fractions: Sequence[float], seed: int = 0
) -> list[np.ndarray]:
    """Split indices 0..n-1 into parts: the first takes what the `fractions` of the others leave.

    `stratified_split(y, [0.15, 0.15])` returns (train, val, test) index arrays with the class
    proportions of `y` kept in each part. A fraction of 0 gives an empty part.
    """
    labels = np.asarray(labels)
    if any(f < 0 for f in fractions) or sum(fractions) >= 1:
        raise ValueError(f"split fractions {list(fractions)} must be >= 0 and sum to less than 1")
    remaining = np.arange(len(labels))
    parts: list[np.ndarray] = []
    left = 1.0
    for fraction in fractions:
        if fraction == 0:
            parts.append(np.array([], dtype=int))
            continue
        remaining, taken = train_test_split(
            remaining, test_size=fraction / left, stratify=labels[remaining], random_state=seed
        )
        parts.append(np.sort(taken))
        left -= fraction
    return [np.sort(remaining), *parts]
