"""Ties on the monitored value go to the later checkpoint; summary.json says which epoch and why."""

from __future__ import annotations

import csv
import json

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tests.conftest import run_cli
from trainforge.training.best_checkpoint import BestCheckpoint


class Scripted(L.LightningModule):
    """Logs the monitored value it is given for each epoch (a saturating validation, told exactly)."""

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.values = values
        self.layer = nn.Linear(2, 1)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0]).sum()

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.log("val/acc", self.values[self.current_epoch])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(tmp_path, values: list[float], callback: ModelCheckpoint) -> ModelCheckpoint:
    loader = DataLoader(TensorDataset(torch.ones(2, 2)), batch_size=2)
    trainer = L.Trainer(
        max_epochs=len(values),
        callbacks=[callback],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(Scripted(values), loader, loader)
    return callback


def options(tmp_path, **extra) -> dict:
    return {
        "dirpath": tmp_path / "ckpt",
        "monitor": "val/acc",
        "mode": "max",
        "filename": "e{epoch}",
        **extra,
    }


SATURATING = [0.5, 1.0, 0.9, 1.0, 1.0, 0.8]  # val/acc 1.0 at epochs 1, 3 and 4


def test_lightning_keeps_the_first_of_tied_values_which_is_why_this_exists(tmp_path):
    plain = fit(tmp_path, SATURATING, ModelCheckpoint(**options(tmp_path), auto_insert_metric_name=False))
    assert plain.best_model_path.endswith("e1.ckpt")


@pytest.mark.parametrize("top_k", [1, 2, -1])
def test_ties_go_to_the_latest_and_top_k_keeps_its_meaning(tmp_path, top_k):
    best = fit(
        tmp_path,
        SATURATING,
        BestCheckpoint(**options(tmp_path, save_top_k=top_k), auto_insert_metric_name=False),
    )
    assert best.best_model_path.endswith("e4.ckpt")
    files = sorted(p.name for p in (tmp_path / "ckpt").glob("e*.ckpt"))
    # top 2 of tied values: the two latest; -1: every epoch.
    assert files == {1: ["e4.ckpt"], 2: ["e3.ckpt", "e4.ckpt"], -1: [f"e{i}.ckpt" for i in range(6)]}[top_k]
    # The file holds the choice too (its callback state), so a resumed run keeps it.
    state = torch.load(best.best_model_path, weights_only=False)["callbacks"]
    # Keyed as Lightning's ModelCheckpoint: a run saved before BestCheckpoint existed resumes its ranking.
    saved = state[ModelCheckpoint(**options(tmp_path, save_top_k=top_k)).state_key]
    assert saved["best_model_path"] == best.best_model_path
    assert best.summary_fields()["best"] == {
        "path": best.best_model_path,
        "epoch": 4,
        "step": 5,
        "monitor": "val/acc",
        "mode": "max",
        "value": 1.0,
        "rule": "latest of 3 validations tied at 1 (epochs 1, 3, 4)",
    }


def test_min_mode_and_a_single_best(tmp_path):
    best = fit(
        tmp_path,
        [0.4, 0.2, 0.3],
        BestCheckpoint(**{**options(tmp_path), "mode": "min"}, auto_insert_metric_name=False),
    )
    assert best.best_model_path.endswith("e1.ckpt")
    assert best.summary_fields()["best"]["rule"] == "the single lowest val/acc"


def test_a_saturating_run_through_the_cli_reports_the_latest_tied_epoch(tmp_path):
    """TinyBinary (separable vectors) reaches val/acc 1.0 at epochs 2, 3 and 4: the run reports epoch 4, which
    Lightning's ModelCheckpoint would have left for epoch 2."""
    run_cli(
        "fit",
        "--data=tests.task_modules.TinyBinary",
        "--model=tests.task_modules.VectorModel",
        "--trainer.max_epochs=5",
        "--model.warmup_epochs=0",
        "--model.lr=0.01",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--wandb.enabled=false",
        "--outputs.reports=false",
        f"--run.root={tmp_path / 'runs'}",
        cwd=tmp_path,
    )
    run = next((tmp_path / "runs").rglob("summary.json")).parent
    summary = json.loads((run / "summary.json").read_text())
    epochs = [row for row in csv.DictReader((run / "metrics.csv").open()) if row.get("val/acc")][:5]
    accs = [float(row["val/acc"]) for row in epochs]
    tied = [i for i, acc in enumerate(accs) if acc == max(accs)]
    assert max(accs) == 1.0 and len(tied) >= 2, accs  # the premise: validation saturates
    assert summary["best"]["epoch"] == tied[-1] and summary["best"]["value"] == 1.0
    assert summary["best"]["rule"] == (
        f"latest of {len(tied)} validations tied at 1 (epochs {', '.join(map(str, tied))})"
    )
    assert (
        summary["best_checkpoint"] == summary["best"]["path"]
        and f"epoch{tied[-1]:03d}" in summary["best_checkpoint"]
    )
    # The final evaluation ran the later checkpoint: its val/loss is that epoch's, not the first tie's.
    assert summary["metrics"]["val/loss"] == pytest.approx(float(epochs[tied[-1]]["val/loss"]), abs=1e-5)
    assert float(epochs[tied[0]]["val/loss"]) != pytest.approx(summary["metrics"]["val/loss"], abs=1e-5)


def test_weights_a_feature_reported_after_ranking_are_left_as_they_are(tmp_path):
    """SWA and WiSE-FT point best_model_path at their own file (report_weights); a later save keeps it."""
    best = fit(tmp_path, [1.0, 1.0], BestCheckpoint(**options(tmp_path), auto_insert_metric_name=False))
    best.best_model_path = str(tmp_path / "swa.ckpt")
    best._prefer_latest()
    assert best.best_model_path == str(tmp_path / "swa.ckpt")
    assert best.summary_fields()["best"]["rule"] == (
        "set after ranking by a training feature, not by the monitored value"
    )
