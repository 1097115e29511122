"""Recipes end to end through the CLI: SWA (with resume mid-SWA, and with SGDR), EMA, regularisation and
class balance in one run, and the finders / overfit check."""

import csv
import json
import subprocess
from pathlib import Path

import pytest
import torch

from tests.conftest import FAST, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TINY = [*FAST, "--data.batch_size=16", "--trainer.limit_val_batches=1"]
SWA_CALLBACK = (
    "trainer:\n  callbacks:\n    - class_path: trainforge.training.swa.SWA\n"
    "      init_args: {{swa_epoch_start: 2, {extra}}}\n"
)
SGDR_SWA = "trainer:\n  callbacks:\n    - class_path: trainforge.training.swa.CycleAveraging\n      init_args: {swa_epoch_start: 2}\n"


def run_tune(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """`python -m trainforge.tools.tune ...` in the environment run_cli gives the CLI."""
    return run_cli(*args, cwd=cwd, check=check, module="trainforge.tools.tune")


def _metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _lrs_per_epoch(run_dir: Path, steps_per_epoch: int = 4) -> dict[int, list[float]]:
    """Learning rates logged per step (LearningRateMonitor), grouped by epoch (TINY: 4 steps per epoch)."""
    rows = _metrics(run_dir)
    key = next(k for k in rows[0] if k.startswith("lr-"))
    out: dict[int, list[float]] = {}
    for row in rows:
        if row.get(key):
            out.setdefault(int(row["step"]) // steps_per_epoch, []).append(float(row[key]))
    return out


def _config(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_swa_resumed_mid_swa_averages_every_epoch_and_is_the_model_tested(tmp_path):
    swa = _config(tmp_path, "swa.yaml", SWA_CALLBACK.format(extra="swa_lrs: 0.0005, annealing_epochs: 1"))
    args = ["fit", "--experiment", "swa", *TINY, "--run.name=swa", "--trainer.max_epochs=4", "--config", swa]
    # First run stops after epoch index 1 (8 steps), in the middle of SWA (epochs 1-3); the same command then resumes it.
    run_cli(*args, "--trainer.max_steps=8", cwd=tmp_path)
    run_dir = tmp_path / "runs" / "swa" / "swa"
    assert not (run_dir / "checkpoints" / "swa.ckpt").exists()
    out = run_cli(*args, cwd=tmp_path)
    assert "Resuming run" in out.stdout + out.stderr
    swa = torch.load(run_dir / "checkpoints" / "swa.ckpt", weights_only=False)
    state = next(v for k, v in swa["callbacks"].items() if "SWA" in k)
    # swa_epoch_start is 1-based: Lightning averages at the start of epochs 1..3, 3 snapshots, as an
    # uninterrupted run does; a resume that lost or replayed the average would count 2 or 4.
    assert state["n_averaged"] == 3 and state["latest_update_epoch"] == 3
    # BatchNorm statistics were recomputed from zero in the extra pass over the 4 training batches.
    bn = [v for k, v in swa["state_dict"].items() if k.endswith("num_batches_tracked")]
    assert bn and all(int(v) == 4 for v in bn)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["checkpoint_used"].endswith("swa.ckpt") and "test/acc" in summary["metrics"]
    # SWALR (epoch interval, annealing 1 epoch) replaced the per-step cosine: constant swa_lrs after epoch 1.
    lrs = _lrs_per_epoch(run_dir)
    assert lrs[2] == pytest.approx([0.0005] * len(lrs[2])) and lrs[3] == pytest.approx([0.0005] * len(lrs[3]))


def test_swa_with_sgdr_keeps_the_restarts_and_averages_at_cycle_ends(tmp_path):
    out = run_cli(
        "fit", "--experiment", "swa_sgdr", *TINY, "--run.name=s", "--trainer.max_epochs=4",
        "--model.scheduler_kwargs={T_0: 1, T_mult: 1}", "--config", _config(tmp_path, "s.yaml", SGDR_SWA),
        cwd=tmp_path,
    )  # fmt: skip
    assert "averaging at the ends of epochs [2, 3, 4]" in out.stdout + out.stderr
    run_dir = tmp_path / "runs" / "swa_sgdr" / "s"
    swa = torch.load(run_dir / "checkpoints" / "swa.ckpt", weights_only=False)
    assert int(swa["averaging_state"]["n_averaged"]) == 3  # Lightning's WeightAveraging state
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["checkpoint_used"].endswith("swa.ckpt")
    lrs = _lrs_per_epoch(run_dir)
    for epoch in (1, 2, 3):  # every epoch restarts at the peak (AdamW lr 1e-3): no SWALR swapped in
        assert lrs[epoch][0] == pytest.approx(1e-3)


def test_ema_validates_and_checkpoints_the_average(tmp_path):
    run_cli("fit", "--experiment", "ema", *TINY, "--run.name=e", cwd=tmp_path)
    run_dir = tmp_path / "runs" / "ema" / "e"
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    live, avg = ckpt["current_model_state"], ckpt["state_dict"]
    assert not torch.allclose(live["head.1.weight"], avg["head.1.weight"])
    # The val/acc logged during training is the one of the averaged weights that the checkpoint holds.
    logged = [float(r["val/acc"]) for r in _metrics(run_dir) if r.get("val/acc")][-1]
    out = run_cli("validate", "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt"), cwd=tmp_path)
    assert out.returncode == 0
    validated = json.loads((run_dir / "validate_metrics.json").read_text())["metrics"]["val/acc"]
    assert validated == pytest.approx(logged)


def test_regularisation_and_class_balance_in_one_run(tmp_path):
    stop = _config(
        tmp_path,
        "stop.yaml",
        "trainer:\n  callbacks:\n"
        "    - class_path: trainforge.training.regularization.MaxNorm\n      init_args: {max_norm: 0.5}\n"
        "    - class_path: lightning.pytorch.callbacks.EarlyStopping\n"
        "      init_args: {monitor: val/acc, mode: max, patience: 0, min_delta: 10.0}\n",
    )
    run_cli(
        "fit", "--experiment", "regularized", *TINY, "--run.name=r", "--config", stop, "--trainer.max_epochs=4",
        "--data.imbalance={classes: [0, 1, 2, 3, 4], keep: 0.1}", "--data.sampler=balanced",
        "--model.class_weights=balanced", "--model.lr=0.05", cwd=tmp_path,
    )  # fmt: skip
    run_dir = tmp_path / "runs" / "regularized" / "r"
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["state_dict"]["head.1.weight"].norm(dim=1).max() <= 0.5 + 1e-5  # max-norm held
    weights = ckpt["state_dict"]["loss_fn.weight"]
    assert weights[:5].min() > 3 * weights[5:].max()  # thinned classes weigh ~10x more
    assert any(r.get("train/l1") for r in _metrics(run_dir))  # the L1 penalty was added
    assert (
        ckpt["epoch"] <= 1
    )  # early stopping: no epoch can improve val/acc by 10; stopped before max_epochs=4
    assert ckpt["hyper_parameters"]["backbone_kwargs"] == {"drop_path_rate": 0.1}


def test_finders_and_overfit_check(tmp_path):
    small = [*TINY, "--data.augment=false", "--trainer.max_epochs=8"]  # 32 steps: room for 16 lr-find steps
    out = run_tune("lr-find", *small, "--steps", "16", "--run.name=lr", cwd=tmp_path)
    run_dir = tmp_path / "runs" / "default" / "lr"
    assert (run_dir / "lr_find.png").stat().st_size > 0
    lr = float(next(line for line in out.stdout.splitlines() if line.startswith("suggested lr:")).split()[-1])
    assert "lr: " in (run_dir / "lr_find.yaml").read_text()
    out = run_tune("bs-find", *small, "--max-trials", "3", "--run.name=bs", cwd=tmp_path)
    assert "suggested batch_size: 8" in out.stdout  # 2, 4, 8 tried; a multiple of 8 kept
    # The global batch and what one device holds: N ranks keep batch 8 and would accumulate beyond 8 each.
    fragment = (tmp_path / "runs" / "default" / "bs" / "bs_find.yaml").read_text()
    assert fragment == "data:\n  init_args:\n    batch_size: 8\n    max_batch_per_device: 8\n"
    # The suggested lr is a usable config value; a tiny lr cannot memorise one batch in 3 epochs: loud failure.
    bad = run_tune(
        "overfit", *small, "--config", str(run_dir / "lr_find.yaml"), "--model.lr=1e-7",
        "--trainer.max_epochs=3", "--run.name=of", cwd=tmp_path, check=False,
    )  # fmt: skip
    assert bad.returncode == 1 and "OVERFIT CHECK FAILED" in bad.stderr
    assert lr > 0
