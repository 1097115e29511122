"""Head initialisation by a linear probe: logistic regression on the frozen backbone's pooled features.

LP-FT (Kumar et al., 2022): starting the fine-tune from a fitted head keeps the first gradients from
distorting the pretrained features; one L-BFGS fit is cheaper than a frozen training epoch and does
not depend on how many SGD steps a small data set allows (see the research report in the README).
Written here because no kept library fits a torch head in place (sklearn would need a copy round-trip).
"""

from __future__ import annotations

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from trainforge.data.datamodule import DataModule, TransformDataset
from trainforge.models.modes import evaluating


@torch.no_grad()
def extract_features(
    backbone: nn.Module, dataset: Dataset, batch_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features and labels of `dataset` (eval mode; each submodule's mode is restored after)."""
    device = next(backbone.parameters()).device
    feats, labels = [], []
    with evaluating(backbone):
        for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            feats.append(backbone(x.to(device)).float())
            labels.append(torch.as_tensor(y).to(device))
    return torch.cat(feats), torch.cat(labels)


def fit_linear_probe(
    linear: nn.Linear, features: torch.Tensor, labels: torch.Tensor, c: float = 0.1, max_iter: int = 500
) -> float:
    """Multinomial logistic regression (L2 = 1/(C*N) on the weights, as sklearn's C); writes `linear`."""
    weight = torch.zeros_like(linear.weight, dtype=torch.float32, requires_grad=True)
    bias = torch.zeros_like(linear.bias, dtype=torch.float32, requires_grad=True)
    lam = 1.0 / (c * len(labels))
    optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(features @ weight.T + bias, labels) + 0.5 * lam * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)  # returns the loss before the fit, so the fitted one is computed below
    with torch.no_grad():
        loss = F.cross_entropy(features @ weight.T + bias, labels) + 0.5 * lam * weight.pow(2).sum()
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
    return float(loss)


def train_images_for_eval(datamodule: DataModule) -> Dataset:
    """The training split seen through the evaluation transform (no augmentation)."""
    datamodule.setup("fit")
    train = datamodule.splits.train
    base = train.base if isinstance(train, TransformDataset) else train
    return TransformDataset(base, datamodule.build_transforms("eval"))


def init_head_by_linear_probe(model: nn.Module, datamodule: DataModule, c: float = 0.1) -> None:
    """Fit `model.head[-1]` on the training images seen through the eval transform."""
    if model.hparams.multilabel or model.hparams.head_hidden:
        raise ValueError("model.head_init=linear_probe needs a single-label linear head (no head_hidden)")
    features, labels = extract_features(model.backbone, train_images_for_eval(datamodule))
    head = model.head[-1]
    loss = fit_linear_probe(head, features, labels, c)
    report = f"loss {loss:.4f}, train acc {probe_accuracy(head, features, labels):.4f}"
    if datamodule.splits.val is not None:  # the number a fine-tune must beat, from the probe itself
        report += (
            f", val acc {probe_accuracy(head, *extract_features(model.backbone, datamodule.splits.val)):.4f}"
        )
    rank_zero_info(f"head initialised by a linear probe on {len(labels)} training images: {report}")


@torch.no_grad()
def probe_accuracy(linear: nn.Linear, features: torch.Tensor, labels: torch.Tensor) -> float:
    return float(((features @ linear.weight.T.float() + linear.bias).argmax(1) == labels).float().mean())
