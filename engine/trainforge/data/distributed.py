"""Evaluation under DDP that counts every sample exactly once."""

from __future__ import annotations

import torch.distributed as dist
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import Dataset, Sampler


def eval_sampler(dataset: Dataset) -> Sampler | None:
    """Under DDP, a sampler that splits `dataset` across ranks without padding; None in one process.

    Lightning's default DistributedSampler pads the last ranks with repeated samples so that all ranks get
    as many batches (#12862), which biases validation and test metrics. Ranks may then run one batch less;
    that is safe in evaluation because nothing syncs per step (metrics sync once, in torchmetrics, at the
    end, and torchmetrics gathers uneven states). Lightning keeps a sampler that is a DistributedSampler.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return UnrepeatedDistributedSampler(
        dataset, num_replicas=dist.get_world_size(), rank=dist.get_rank(), shuffle=False
    )
