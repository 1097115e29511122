"""Class-balanced sampling that shards per rank under DDP, and class counts for class-weighted losses.

Written by hand because torch's WeightedRandomSampler draws a different stream on each rank and
Lightning's DistributedSamplerWrapper would then shard overlapping draws; this sampler is a
DistributedSampler (so Lightning leaves it alone) that draws one balanced epoch from a seed shared by all
ranks and gives each rank its own slice.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import torch
from torch.utils.data import Dataset, DistributedSampler, Subset, TensorDataset


def dataset_labels(dataset: Dataset, strict: bool = True) -> torch.Tensor | None:
    """The target of every sample, read without loading inputs where the dataset allows it.

    `strict=False` returns None instead of loading every sample when the targets are not exposed
    (`targets`/`labels` attributes, TensorDataset, Subset and TransformDataset of those).
    """
    if isinstance(dataset, Subset):
        parent = dataset_labels(dataset.dataset, strict)
        return parent[torch.as_tensor(dataset.indices, dtype=torch.long)] if parent is not None else None
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        return dataset.tensors[1]
    for attr in ("targets", "labels"):
        values = getattr(dataset, attr, None)
        if values is not None:
            return _as_tensor(list(values))
    if hasattr(dataset, "base"):  # TransformDataset: targets are the wrapped dataset's
        return dataset_labels(dataset.base, strict)  # type: ignore[attr-defined]
    if not strict:
        return None
    return _as_tensor([dataset[i][1] for i in range(len(dataset))])  # type: ignore[arg-type]


def _as_tensor(values: list[Any]) -> torch.Tensor:
    if values and isinstance(values[0], torch.Tensor):
        return torch.stack(values)
    return torch.as_tensor(values)


def class_counts(labels: Sequence[int], num_classes: int) -> torch.Tensor:
    return torch.bincount(torch.as_tensor(list(labels), dtype=torch.long), minlength=num_classes)


def balanced_class_weights(counts: torch.Tensor) -> torch.Tensor:
    """`n / (k * n_c)` (scikit-learn's "balanced"); classes absent from training get weight 0."""
    counts = counts.float()
    present = counts > 0
    weights = torch.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


class BalancedSampler(DistributedSampler):
    """Draws every class equally often per epoch; a DistributedSampler, so it shards per rank.

    Args:
        labels: Class index of every training sample.
        mode: `oversample` (each class drawn as often as the largest: repeats minority samples) or
            `undersample` (each class drawn as often as the smallest: drops majority samples each epoch).
        num_replicas, rank: World size and rank (1 and 0 without DDP).
        seed: Shared by all ranks; `set_epoch` (called by Lightning) changes the draw every epoch.
    """

    def __init__(
        self,
        labels: Sequence[int],
        mode: Literal["oversample", "undersample"] = "oversample",
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
    ) -> None:
        if mode not in ("oversample", "undersample"):
            raise ValueError(f"data.sampler_mode: use 'oversample' or 'undersample', got '{mode}'")
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)
        self.by_class = [torch.nonzero(self.labels == c).flatten() for c in torch.unique(self.labels)]
        sizes = [len(idx) for idx in self.by_class]
        self.per_class = max(sizes) if mode == "oversample" else min(sizes)
        self.mode = mode
        self.num_replicas, self.rank, self.seed, self.epoch = num_replicas, rank, seed, 0
        self.shuffle, self.drop_last = True, False
        self.total_size = self.per_class * len(self.by_class)
        self.num_samples = math.ceil(self.total_size / num_replicas)
        self.dataset = self.labels  # DistributedSampler API; only its length is ever used

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        drawn = []
        for idx in self.by_class:
            # Every sample of a class once before any repeats, so oversampling never drops a minority sample.
            reps = math.ceil(self.per_class / len(idx))
            order = torch.cat([idx[torch.randperm(len(idx), generator=g)] for _ in range(reps)])
            drawn.append(order[: self.per_class])
        epoch = torch.cat(drawn)[torch.randperm(self.total_size, generator=g)].tolist()
        epoch += epoch[: self.num_samples * self.num_replicas - len(epoch)]  # pad so every rank gets as many
        return iter(epoch[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples


def thin_classes(
    labels: Sequence[int], indices: Sequence[int], classes: Sequence[int], keep: float, seed: int = 0
):
    """Keep a seeded `keep` fraction (at least one) of the `indices` whose label is in `classes`."""
    import numpy as np

    if not 0 < keep <= 1:
        raise ValueError(f"data.imbalance.keep must be in (0, 1], got {keep}")
    labels, indices = np.asarray(labels), np.asarray(indices)
    rng = np.random.default_rng(seed)
    kept = [indices[~np.isin(labels[indices], list(classes))]]
    for c in classes:
        members = indices[labels[indices] == c]
        kept.append(rng.choice(members, size=max(1, round(keep * len(members))), replace=False))
    return np.sort(np.concatenate(kept))
