"""`python -m trainforge.tools.sweep` end to end: outputs, continuing a study, pruning, best.yaml, dead workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from PIL import Image

from tests.conftest import CONFIGS, FAST, REPO, run_cli

# Trials as small as a run can be: digits at 16 px, resnet10t, a few batches, no W&B files to write.
TRIAL_ARGS = [
    *FAST,
    "--trainer.limit_train_batches=3",
    "--trainer.limit_test_batches=1",
    "--wandb.enabled=false",
]
SPACE = {
    "metric": "val/acc",
    "direction": "maximize",
    "pruner": "none",
    "params": {
        "model.init_args.lr": {"type": "log_uniform", "low": 1.0e-3, "high": 3.0e-2},
        "model.init_args.drop_rate": {"type": "uniform", "low": 0.0, "high": 0.3},
    },
}


def sweep_env() -> dict[str, str]:
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "TRAINFORGE_CONFIGS": str(CONFIGS), "PYTHONPATH": pythonpath}


def sweep_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "trainforge.tools.sweep", *args, *TRIAL_ARGS]


def run_sweep(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        sweep_command(*args), cwd=cwd, env=sweep_env(), capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, f"STDOUT:\n{result.stdout[-3000:]}\nSTDERR:\n{result.stderr[-5000:]}"
    return result


@pytest.fixture(scope="module")
def sqlite_sweep(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """3 trials, then the same command again with a pruner that prunes every trial after its first epoch."""
    cwd = tmp_path_factory.mktemp("sweep")
    (cwd / "space.yaml").write_text(yaml.safe_dump(SPACE))
    first = run_sweep(cwd, "--space", "space.yaml", "--study", "s", "--trials", "3", "--seed", "0")
    out = cwd / "runs" / "sweeps" / "s"
    snapshot = {name: (out / name).read_bytes() for name in ("trials.csv", "best.yaml")}
    # val/acc never exceeds 1, so a lower threshold of 1.01 prunes each trial at its first report.
    prune = ["--pruner", "ThresholdPruner", "--pruner-kwargs", '{"lower": 1.01}']
    second = run_sweep(cwd, "--space", "space.yaml", "--study", "s", "--trials", "3", *prune)
    storage = f"sqlite:///{out / 'study.db'}"
    study = optuna.load_study(study_name="s", storage=storage)
    return {"cwd": cwd, "out": out, "first": first, "second": second, "snapshot": snapshot, "study": study}


@pytest.mark.slow
def test_first_sweep_writes_all_outputs(sqlite_sweep: dict) -> None:
    out = sqlite_sweep["out"]
    first = pd.read_csv(pd.io.common.BytesIO(sqlite_sweep["snapshot"]["trials.csv"]))
    assert list(first["number"]) == [0, 1, 2]
    assert set(first["state"]) == {"COMPLETE"}
    assert first["val/acc"].between(0, 1).all() and first["duration_s"].gt(0).all()
    assert {"params.model.init_args.lr", "params.model.init_args.drop_rate", "run_dir"} <= set(first.columns)
    for row in first.to_dict("records"):
        run_dir = Path(row["run_dir"])
        assert run_dir.name == f"s-trial-{row['number']}" and run_dir.parent.name == "default"
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["metrics"]["val/acc"] == pytest.approx(row["val/acc"])
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["model"]["init_args"]["lr"] == pytest.approx(row["params.model.init_args.lr"])
        assert config["wandb"]["group"] == "s"  # each trial a W&B run in the study's group
    for name in ("history.png", "importances.png", "intermediate.png"):
        with Image.open(out / name) as image:
            assert image.size[0] >= 400 and image.size[1] >= 300
    assert "sweep directory:" in sqlite_sweep["first"].stdout


@pytest.mark.slow
def test_rerun_continues_the_same_study_and_records_pruned_trials(sqlite_sweep: dict) -> None:
    study, out = sqlite_sweep["study"], sqlite_sweep["out"]
    assert "3 trials so far" in sqlite_sweep["second"].stdout
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.number for t in trials] == list(range(6))
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3 + ["PRUNED"] * 3
    for trial in trials[3:]:
        assert list(trial.intermediate_values) == [0]  # reported epoch 0, then stopped
        run_dir = Path(trial.user_attrs["run_dir"])
        assert not (run_dir / "summary.json").exists()
        metrics = pd.read_csv(run_dir / "metrics.csv")
        assert metrics["epoch"].max() == 0  # max_epochs is 2: pruning stopped training
    table = pd.read_csv(out / "trials.csv")
    assert list(table["state"]) == ["COMPLETE"] * 3 + ["PRUNED"] * 3
    assert table["last_reported"].notna().all()


@pytest.mark.slow
def test_best_yaml_reproduces_the_best_trial(sqlite_sweep: dict) -> None:
    study, out, cwd = sqlite_sweep["study"], sqlite_sweep["out"], sqlite_sweep["cwd"]
    best = study.best_trial
    text = (out / "best.yaml").read_text()
    assert f"trial {best.number}" in text and "make train" in text
    config = yaml.safe_load(text)
    assert "name" not in config["run"] and "dirpath" not in config["checkpoint"]
    assert config["model"]["init_args"]["lr"] == best.params["model.init_args.lr"]
    # What `make train ARGS="--config .../best.yaml"` runs.
    result = run_cli(
        "fit", "--experiment", "default", "--config", str(out / "best.yaml"), "--run.name=repro", cwd=cwd
    )
    summary = json.loads((cwd / "runs" / "default" / "repro" / "summary.json").read_text())
    # Same seed, same split, CPU: the same weights, so the same accuracy.
    assert summary["metrics"]["val/acc"] == pytest.approx(best.value, abs=1e-6), result.stdout[-2000:]


@pytest.mark.slow
def test_trials_of_killed_workers_are_marked_failed(tmp_path: Path) -> None:
    from trainforge.tools.sweep import fail_dead_trials, worker_id

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.create_study(study_name="k", storage=storage)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    host = worker_id().rsplit(":", 1)[0]
    for worker in (f"{host}:{dead.stdout.strip()}", worker_id()):  # a killed worker, and this live one
        trial = study.ask()
        trial.set_user_attr("worker", worker)
    assert fail_dead_trials(study, storage) == [0]
    assert [t.state.name for t in study.trials] == ["FAIL", "RUNNING"]


def test_bad_space_names_the_file_and_key(tmp_path: Path) -> None:
    from trainforge.tools.sweep_space import SpaceError, load_space

    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump({"params": {"model.init_args.lr": {"type": "log_uniform", "low": 0, "high": 1}}})
    )
    with pytest.raises(SpaceError, match=r"bad.yaml: params.model.init_args.lr: a log scale needs low > 0"):
        load_space(path)


@pytest.mark.parametrize("name", ["digits", "finetune"])
def test_ready_spaces_name_real_config_keys(name):
    """Every key of the shipped search spaces is a key the experiment's config accepts."""
    from trainforge.tools.sweep_space import load_space

    space = load_space(CONFIGS / "sweeps" / f"{name}.yaml")
    trial = optuna.trial.FixedTrial(
        {k: (s["choices"][0] if s["type"] == "categorical" else s["low"]) for k, s in space.params.items()}
    )
    overrides = [f"--{key}={value}" for key, value in space.suggest(trial).items()]
    result = run_cli("fit", "--experiment", space.experiment, *overrides, "--print_config", cwd=REPO)
    for key, value in space.suggest(trial).items():
        assert f"{key.rsplit('.', 1)[-1]}: {value}" in result.stdout, key
