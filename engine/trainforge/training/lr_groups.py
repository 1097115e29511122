"""Optimizer parameter groups for fine-tuning: head at `lr`, backbone at `lr * backbone_lr_mult`.

Optional layer-wise decay on the backbone (timm's `param_groups_layer_decay`: the stage nearest the
head keeps the backbone LR, each earlier one is multiplied by `layer_decay` once more). Norm and bias
parameters never get weight decay. Every group has a `name`, so LearningRateMonitor logs
`lr-AdamW/head`, `lr-AdamW/backbone`...
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from timm.optim import param_groups_layer_decay, param_groups_weight_decay
from torch import nn


@contextmanager
def all_trainable(*modules: nn.Module | None) -> Iterator[None]:
    """timm's group helpers skip frozen parameters; frozen ones must be in the optimizer for unfreezing."""
    params = [p for m in modules if m is not None for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


def _no_decay_names(module: nn.Module) -> set[str]:
    return set(module.no_weight_decay()) if hasattr(module, "no_weight_decay") else set()


def finetune_param_groups(
    backbone: nn.Module,
    head: nn.Module,
    lr: float,
    weight_decay: float,
    backbone_lr_mult: float = 1.0,
    layer_decay: float | None = None,
    others: nn.Module | None = None,
) -> list[dict[str, Any]]:
    """Named groups with their own `lr` (set explicitly, so schedules scale each one from its own peak)."""
    with all_trainable(backbone, head, others):
        return _groups(backbone, head, lr, weight_decay, backbone_lr_mult, layer_decay, others)


def _groups(
    backbone: nn.Module,
    head: nn.Module,
    lr: float,
    weight_decay: float,
    backbone_lr_mult: float,
    layer_decay: float | None,
    others: nn.Module | None,
) -> list[dict[str, Any]]:
    if backbone_lr_mult < 0:
        raise ValueError(f"model.backbone_lr_mult must be >= 0, got {backbone_lr_mult}")
    groups: list[dict[str, Any]] = []
    for group, suffix in zip(param_groups_weight_decay(head, weight_decay), ("_no_decay", ""), strict=True):
        groups.append({**group, "lr": lr, "name": f"head{suffix}"})
    backbone_lr = lr * backbone_lr_mult
    if layer_decay is not None:
        if not 0 < layer_decay <= 1:
            raise ValueError(f"model.layer_decay must be in (0, 1], got {layer_decay}")
        decayed = param_groups_layer_decay(
            backbone, weight_decay, no_weight_decay_list=_no_decay_names(backbone), layer_decay=layer_decay
        )
        for index, group in enumerate(decayed):
            scale = group.pop("lr_scale", 1.0)
            wd = "no_decay" if group["weight_decay"] == 0 else "decay"
            groups.append({**group, "lr": backbone_lr * scale, "name": f"backbone_{index:02d}_{wd}"})
    else:
        pairs = zip(param_groups_weight_decay(backbone, weight_decay), ("_no_decay", ""), strict=True)
        for group, suffix in pairs:
            groups.append({**group, "lr": backbone_lr, "name": f"backbone{suffix}"})
    if others is not None:
        seen = {id(p) for g in groups for p in g["params"]}
        rest = [p for p in others.parameters() if id(p) not in seen]
        if rest:
            groups.append({"params": [p for p in rest if p.ndim > 1], "lr": lr, "name": "other"})
            groups.append(
                {
                    "params": [p for p in rest if p.ndim <= 1],
                    "lr": lr,
                    "weight_decay": 0.0,
                    "name": "other_no_decay",
                }
            )
    return [g for g in groups if g["params"]]
