"""DDP on CPU (gloo): 2 processes from one command, then 2 "nodes" on localhost under torchrun."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import FAST, run_cli
from tests.fault_helpers import state_digest
from tests.launchers import torchrun_nodes
from tests.test_resume import _env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DDP = [
    *FAST,
    "--trainer.accelerator=cpu",
    "--trainer.devices=2",
    "--trainer.strategy=ddp",
    "--data.num_workers=1",  # DataLoader workers under DDP: where 'terminate called...' came from (#21703)
    "--data.test_fraction=0.0505",  # 91 test samples: a padded DistributedSampler would count one twice
    "--trainer.callbacks+=tests.fault_helpers.RankReport",
]


def _reports(run: Path) -> list[dict]:
    return [json.loads((run / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.fixture(scope="module")
def ddp(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    cwd = tmp_path_factory.mktemp("ddp")
    result = run_cli("fit", *DDP, cwd=cwd, timeout=240)  # no run name: the launcher's choice reaches rank 1
    runs = list((cwd / "runs" / "default").iterdir())
    assert len(runs) == 1, runs  # one run directory for both ranks
    return runs[0], result


def test_ddp_ranks_agree_and_exit_cleanly(ddp: tuple[Path, subprocess.CompletedProcess]) -> None:
    run, result = ddp
    assert "terminate called" not in result.stderr
    rank0, rank1 = _reports(run)
    assert rank0["world_size"] == rank1["world_size"] == 2
    assert rank0["global_step"] == rank1["global_step"] == 8
    assert rank0["batches"] == rank1["batches"] == 8
    assert rank0["digest"] == rank1["digest"]  # bit-identical weights on both ranks
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 8 and state_digest(last["state_dict"]) == rank0["digest"]
    assert sorted(p.name for p in (run / "checkpoints").glob("last*")) == ["last.ckpt"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["global_step"] == 8
    assert result.stdout.count("run directory:") == 1  # one summary, printed by rank 0
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1  # one W&B run (rank 0)


def test_ddp_test_metrics_count_each_sample_once(ddp: tuple[Path, subprocess.CompletedProcess]) -> None:
    run, _ = ddp
    summary = json.loads((run / "summary.json").read_text())
    best = summary["best_checkpoint"]
    run_cli(
        "test",
        f"--ckpt_path={best}",
        "--trainer.devices=1",
        "--trainer.accelerator=cpu",
        cwd=run.parent.parent.parent,
    )
    single = json.loads((run / "test_metrics.json").read_text())["metrics"]
    ddp_metrics = summary["metrics"]
    # Accuracy and F1 are torchmetrics states synced across ranks: exactly the 1-process numbers.
    assert ddp_metrics["test/acc"] == pytest.approx(single["test/acc"], abs=1e-6)
    assert ddp_metrics["test/f1"] == pytest.approx(single["test/f1"], abs=1e-6)
    # The loss is the mean of the ranks' means (46 and 45 samples), so it is close, not equal.
    assert ddp_metrics["test/loss"] == pytest.approx(single["test/loss"], rel=0.02)


def test_ddp_resume_keeps_wandb_run(ddp: tuple[Path, subprocess.CompletedProcess]) -> None:
    run, _ = ddp
    wandb_id = (run / "wandb_id.txt").read_text().strip()
    args = [a for a in DDP if a != "--trainer.max_epochs=2"]
    result = run_cli(
        "fit",
        *args,
        "--trainer.max_epochs=3",
        f"--run.name={run.name}",
        cwd=run.parent.parent.parent,
        timeout=240,
    )
    assert f"Resuming run {run}" in result.stdout + result.stderr
    assert "terminate called" not in result.stderr
    rank0, rank1 = _reports(run)
    assert rank0["global_step"] == rank1["global_step"] == 12
    assert rank0["batches"] == rank1["batches"] == 4  # only the new epoch was trained
    assert rank0["digest"] == rank1["digest"]
    runs = sorted((run / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(path.name.endswith(wandb_id) for path in runs)  # the same W&B run, resumed


def test_two_nodes_under_torchrun(tmp_path: Path) -> None:
    fit = [
        "fit",
        *[a for a in FAST if "max_epochs" not in a and "limit_train" not in a],
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=3",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.num_nodes=2",
        "--trainer.strategy=ddp",
        "--trainer.precision=bf16-mixed",
        "--data.test_fraction=0.0505",
        "--wandb.enabled=false",
        "--run.name=two-nodes",
        "--trainer.callbacks+=tests.fault_helpers.RankReport",
    ]
    for code, output in torchrun_nodes(fit, tmp_path, _env(), timeout=240):
        assert code == 0, output[-4000:]
        assert "terminate called" not in output
    run = tmp_path / "runs" / "default" / "two-nodes"
    rank0, rank1 = _reports(run)
    assert rank0["world_size"] == 2 and rank0["global_step"] == rank1["global_step"] == 3
    assert rank0["digest"] == rank1["digest"]
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["trainer"]["precision"] == "bf16-mixed"  # the choice is recorded in the run config
    assert (run / "summary.json").is_file()
