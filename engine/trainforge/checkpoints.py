"""A trained run, loaded back for predictions, export, distillation: its model, task and preprocessing.

Everything comes from the checkpoint and the run's saved config, never from the files the run started
from: a run directory moved to another folder or machine still predicts and exports without the
pretrained weights file, and a new folder of images needs no training data.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch import LightningModule

from trainforge.data.datamodule import DataModule
from trainforge.errors import TemplateError
from trainforge.rundir import RunDir


def resolve_checkpoint(path: str | Path) -> Path:
    """A `.ckpt` as given; a run directory gives the checkpoint it reported (summary.json), else its
    best, else `last.ckpt`."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise TemplateError(f"checkpoint or run directory '{path}' not found")
    run = RunDir(path)
    found = run.best_checkpoint() or run.last_checkpoint()
    if found is None:
        raise TemplateError(f"run directory '{path}' has no checkpoints/best-*.ckpt or checkpoints/last.ckpt")
    return found


def run_config(ckpt: Path) -> dict[str, Any]:
    """The saved `config.yaml` of the run that wrote `ckpt` (checkpoints/ lives inside the run)."""
    run = RunDir.of_checkpoint(ckpt)
    if run is None or not run.config.is_file():
        raise TemplateError(
            f"no config.yaml beside {ckpt}: a checkpoint is loaded with the config of the run that made it "
            "(keep the checkpoint inside its run directory's checkpoints/)"
        )
    return yaml.safe_load(run.config.read_text())


def _import(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def load_model(ckpt: str | Path, device: str = "cpu") -> tuple[LightningModule, dict[str, Any]]:
    """The model in eval mode (built without reading its pretrained file), and its run config."""
    path = resolve_checkpoint(ckpt)
    config = run_config(path)
    cls = _import(config["model"]["class_path"])
    model = cls.load_from_checkpoint(path, map_location=device, weights_only=False)
    model.eval()
    return model, config


def build_datamodule(config: dict[str, Any], ckpt: str | Path | None = None) -> DataModule:
    """The run's DataModule from its saved `data` section, with the preprocessing the checkpoint recorded
    (so its eval transform is the run's own, whatever model is attached or not)."""
    data = config["data"]
    datamodule = _import(data["class_path"])(**(data.get("init_args") or {}))
    if ckpt is not None:
        datamodule.load_state_dict(datamodule_state(resolve_checkpoint(ckpt), type(datamodule)))
    return datamodule


def datamodule_state(ckpt: str | Path, datamodule_class: type) -> dict[str, Any]:
    """The DataModule state a checkpoint holds (its preprocessing); {} for a checkpoint without one."""
    state = torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True)
    return state.get(datamodule_class.__qualname__) or {}
