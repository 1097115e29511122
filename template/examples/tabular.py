"""Tabular classification through the two hooks: scikit-learn's breast cancer data (569 patients, 30
measurements, malignant or benign; shipped offline) and a small MLP, your own `nn.Module` in place of timm.

`make train EXPERIMENT=tabular`, then `make predict CKPT=<run dir> DATA=test` and `make export CKPT=<run dir>`.
The feature standardisation is preprocessing: fitted on the training split, saved with every checkpoint
(`resolve_preprocessing`), applied by the eval transform everywhere, and written into export.json.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from torch import nn
from torch.utils.data import TensorDataset

from trainforge.data import DataModule, Splits
from trainforge.data.split import stratified_split
from trainforge.models import Model
from trainforge.tasks import Binary


class Standardize:
    """(x - mean) / std per feature, with the training split's statistics."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        self.mean, self.std = torch.tensor(mean), torch.tensor(std)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class TabularData(DataModule):
    """Rows of numeric features from arrays: split 70/15/15 by `split_seed` (stratified on `strata`),
    features standardised with the training split's statistics. Subclasses load the arrays and declare
    the task in `__init__`."""

    features: np.ndarray
    targets: np.ndarray

    def split(self, strata: np.ndarray) -> None:
        self.parts = stratified_split(strata, [0.15, 0.15], seed=self.split_seed)
        self.input_shape = [self.features.shape[1]]

    def build_datasets(self) -> Splits:
        x = torch.tensor(self.features, dtype=torch.float32)
        y = torch.tensor(self.targets, dtype=torch.float32 if self.targets.dtype.kind == "f" else torch.long)
        return Splits(*(TensorDataset(x[i], y[i]) for i in self.parts))

    def resolve_preprocessing(self) -> dict[str, Any]:
        train = self.features[self.parts[0]]
        return {"mean": train.mean(0).tolist(), "std": np.maximum(train.std(0), 1e-8).tolist()}

    def build_transforms(self, stage: Literal["train", "eval"]) -> Standardize:
        return Standardize(self.preprocessing["mean"], self.preprocessing["std"])


class BreastCancer(TabularData):
    """Binary classification of 30 tumour measurements."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.features, self.targets = load_breast_cancer(return_X_y=True)
        self.task = Binary(["malignant", "benign"])  # sklearn's target 0 = malignant, 1 = benign
        self.split(self.targets)


class MLP(Model):
    """Two hidden layers on a feature vector. `hidden` is set after `super().__init__()`: the hooks run
    later, in `configure_model`, so they can read it."""

    def __init__(self, hidden: int = 64, dropout: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hidden = hidden
        self.dropout = dropout

    def build_backbone(self) -> nn.Module:
        (features,) = self.hparams.input_shape  # declared by the DataModule, linked by the CLI
        net = nn.Sequential(
            nn.Linear(features, self.hidden), nn.GELU(), nn.Dropout(self.dropout),
            nn.Linear(self.hidden, self.hidden), nn.GELU(),
        )  # fmt: skip
        net.num_features = self.hidden  # the engine's one requirement on a backbone
        return net
