"""Loads a trained model (and its DataModule) from a checkpoint file or a run directory."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import LightningModule

from trainforge.data.datamodule import DataModule


def resolve_checkpoint(path: str | Path) -> Path:
    """A `.ckpt` as given; a run directory gives its best checkpoint (summary.json), else `last.ckpt`."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise SystemExit(f"error: checkpoint or run directory '{path}' not found")
    summary = path / "summary.json"
    if summary.is_file():
        best = json.loads(summary.read_text()).get("best_checkpoint")
        if best and Path(best).is_file():
            return Path(best)
    candidates = sorted((path / "checkpoints").glob("best-*.ckpt")) or sorted(
        (path / "checkpoints").glob("last.ckpt")
    )
    if not candidates:
        raise SystemExit(
            f"error: run directory '{path}' has no checkpoints/best-*.ckpt or checkpoints/last.ckpt"
        )
    return candidates[-1]


def run_config(ckpt: Path) -> dict[str, Any]:
    """The saved `config.yaml` of the run that wrote `ckpt` (checkpoints/ lives inside the run)."""
    config = ckpt.resolve().parent.parent / "config.yaml"
    if not config.is_file():
        raise SystemExit(
            f"error: {config} not found; a checkpoint is loaded with the config of the run that made it"
        )
    return yaml.safe_load(config.read_text())


def _import(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def load_model(ckpt: str | Path, device: str = "cpu") -> tuple[LightningModule, dict[str, Any]]:
    """The model in eval mode, and its run config."""
    path = resolve_checkpoint(ckpt)
    config = run_config(path)
    cls = _import(config["model"]["class_path"])
    model = cls.load_from_checkpoint(path, map_location=device, weights_only=False)
    model.eval()
    return model, config


def build_datamodule(config: dict[str, Any]) -> DataModule:
    """The run's DataModule, built from its saved `data` section (class_path + init_args)."""
    data = config["data"]
    return _import(data["class_path"])(**(data.get("init_args") or {}))
