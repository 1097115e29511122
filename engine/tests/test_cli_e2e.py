"""End to end through the CLI as a user types it: fit, then test and predict on the saved checkpoint."""

import csv
import json

import pytest
import torch
import yaml

from tests.conftest import FAST, last_line, run_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("e2e")
    result = run_cli(
        "fit", "--experiment", "default", "--run.name", "first", f"--run.root={cwd / 'runs'}", *FAST, cwd=cwd
    )
    return cwd, result


def test_fit_writes_a_complete_run_directory(trained):
    cwd, result = trained
    run_dir = cwd / "runs" / "default" / "first"
    assert last_line(result.stdout) == f"run directory: {run_dir}"
    for name in ("config.yaml", "metrics.csv", "summary.json", "checkpoints/last.ckpt", "wandb_id.txt"):
        assert (run_dir / name).exists(), name
    assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb")), "W&B offline files"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["experiment"] == "default" and summary["run"] == "first"
    assert {"val/acc", "val/f1", "val/loss", "test/acc", "test/f1", "test/loss"} <= set(summary["metrics"])
    assert all(0.0 <= summary["metrics"][k] <= 1.0 for k in ("val/acc", "test/acc", "test/f1"))
    assert summary["global_step"] == 8 and summary["epoch"] == 2  # 2 epochs x 4 batches
    assert summary["best_checkpoint"].startswith(str(run_dir / "checkpoints" / "best-"))
    assert summary["last_checkpoint"] == str(run_dir / "checkpoints" / "last.ckpt")
    assert summary["wall_time_s"] > 0
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["init_args"]["backbone"] == "resnet10t"  # command-line override resolved
    hparams = yaml.safe_load((run_dir / "hparams.yaml").read_text())
    assert hparams["task"]["init_args"]["names"] == [str(i) for i in range(10)]  # linked from the data
    assert hparams["in_chans"] == 1
    # config.yaml is what the user ran: not the run directory wiring, nor the monitor the task resolved.
    assert config["checkpoint"]["dirpath"] is None and config["checkpoint"]["monitor"] == "auto"
    assert config["trainer"]["default_root_dir"] is None and summary["monitor"] == {
        "key": "val/acc",
        "mode": "max",
    }
    assert config["seed_everything"] == 0
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss_step", "val/acc", "lr-AdamW/head", "lr-AdamW/backbone"} <= set(header)


def test_test_and_predict_on_the_saved_checkpoint(trained):
    cwd, _ = trained
    run_dir = cwd / "runs" / "default" / "first"
    best = json.loads((run_dir / "summary.json").read_text())["best_checkpoint"]
    result = run_cli("test", "--ckpt_path", best, cwd=cwd)
    assert last_line(result.stdout) == f"run directory: {run_dir}"
    tested = json.loads((run_dir / "test_metrics.json").read_text())["metrics"]
    summary = json.loads((run_dir / "summary.json").read_text())["metrics"]
    assert tested["test/acc"] == pytest.approx(summary["test/acc"], abs=1e-6)  # same checkpoint, same data

    run_cli("predict", "--ckpt_path", best, cwd=cwd)
    rows = list(csv.DictReader((run_dir / "predictions.csv").open()))
    assert len(rows) == 270  # the digits test split
    probs = [[float(r[f"prob_{c}"]) for c in range(10)] for r in rows]
    assert all(abs(sum(p) - 1) < 1e-4 for p in probs)
    assert all(int(r["pred"]) == max(range(10), key=p.__getitem__) for r, p in zip(rows, probs, strict=True))
    assert (run_dir / "config.yaml").exists() and (run_dir / "config_predict.yaml").exists()


@pytest.mark.slow
def test_rerun_with_the_same_name_resumes(trained):
    cwd, _ = trained
    run_dir = cwd / "runs" / "default" / "first"
    before = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    overrides = [a for a in FAST if not a.startswith("--trainer.max_epochs")] + ["--trainer.max_epochs=3"]
    result = run_cli(
        "fit",
        "--experiment",
        "default",
        "--run.name",
        "first",
        f"--run.root={cwd / 'runs'}",
        *overrides,
        cwd=cwd,
    )
    assert "Resuming run" in result.stdout + result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert before == 8 and summary["global_step"] == 12 and summary["epoch"] == 3
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    epochs = {int(r["epoch"]) for r in rows if r.get("train/loss_epoch")}
    assert epochs == {0, 1, 2}  # the first launch's rows are kept, the resumed one's appended
    ids = {p.name.rsplit("-", 1)[-1] for p in (run_dir / "wandb").glob("offline-run-*")}
    assert ids == {(run_dir / "wandb_id.txt").read_text().strip()}  # the same W&B run, resumed


@pytest.mark.slow
def test_unnamed_runs_get_distinct_timestamped_directories(tmp_path):
    args = [
        "fit",
        f"--run.root={tmp_path / 'runs'}",
        *FAST,
        "--trainer.max_epochs=1",
        "--wandb.enabled=false",
    ]
    first = last_line(run_cli(*args, cwd=tmp_path).stdout)
    second = last_line(run_cli(*args, cwd=tmp_path).stdout)
    assert first != second and first.startswith(f"run directory: {tmp_path / 'runs' / 'default'}")


def test_unknown_experiment_is_a_clear_error(tmp_path):
    result = run_cli("fit", "--experiment", "nope", cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert "no experiment 'nope'" in result.stderr and "default" in result.stderr


@pytest.mark.slow
def test_last_checkpoint_is_current_even_when_the_best_is_old(tmp_path):
    # Best by "lowest epoch" is epoch 0 forever; Lightning alone would leave last.ckpt at epoch 0.
    args = [f"--run.root={tmp_path / 'runs'}", "--run.name=stale", *FAST, "--trainer.max_epochs=3"]
    run_cli(
        "fit",
        *args,
        "--checkpoint.monitor=epoch",
        "--checkpoint.mode=min",
        "--wandb.enabled=false",
        cwd=tmp_path,
    )
    checkpoints = tmp_path / "runs" / "default" / "stale" / "checkpoints"
    assert torch.load(checkpoints / "last.ckpt", weights_only=False)["global_step"] == 12
    assert [p.name for p in checkpoints.glob("best-*")] == ["best-epoch000-step4.ckpt"]
