"""A table's preprocessing as tensor ops (TableEncoder: what the exported graph carries) and its rows."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset


class TableEncoder(nn.Module):
    """Raw rows to model inputs as tensor ops, so the exported graph carries them: empty numeric cells
    (NaN) take the training fill value, numbers are standardised with the training mean/std, and category
    indices become one-hot vectors (an index outside the categories gives zeros). Input: `(..., numeric +
    categorical)` floats in preprocessing order; output: `(..., numeric + sum(categories))`."""

    def __init__(self, fill: list[float], mean: list[float], std: list[float], sizes: list[int]) -> None:
        super().__init__()
        self.register_buffer("fill", torch.tensor(fill, dtype=torch.float32))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
        self.sizes = list(sizes)
        self.numeric = len(mean)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        numbers = x[..., : self.numeric]
        numbers = torch.where(torch.isnan(numbers), self.fill, numbers)
        parts = [(numbers - self.mean) / self.std]
        for i, size in enumerate(self.sizes):
            code = x[..., self.numeric + i : self.numeric + i + 1]
            parts.append((code == torch.arange(size, device=x.device, dtype=x.dtype)).to(x.dtype))
        return torch.cat(parts, dim=-1)


class TableRows(TensorDataset):
    """Encoded rows and targets, with the id of each row for predictions."""

    def __init__(self, x: np.ndarray, y: torch.Tensor, ids: list[str]) -> None:
        super().__init__(torch.as_tensor(x, dtype=torch.float32), y)
        self.ids = ids
