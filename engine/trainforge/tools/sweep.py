"""`python -m trainforge.tools.sweep` (`make sweep`): an Optuna study whose trials are real training runs.

Each trial is `python -m trainforge fit` run in this process with the trial's overrides, in its own run
directory `runs/<experiment>/<study>-trial-<n>` and W&B group `<study>`; its objective is the metric in
the run's summary.json. The study lives in `runs/sweeps/<study>/study.db` (SQLite) unless `--storage`
names another database: rerunning the same command continues the study, and several processes or
machines given one PostgreSQL URL share it (Optuna hands each a different trial).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn
from optuna.trial import TrialState
from optuna_integration import PyTorchLightningPruningCallback
from sqlalchemy.exc import SQLAlchemyError

from trainforge.errors import ConfigError
from trainforge.launch import run_cli
from trainforge.tools.sweep_report import write_plots, write_tables
from trainforge.tools.sweep_space import Space, SpaceError, build_pruner, load_space

DEFAULT_SPACE = "configs/sweeps/digits.yaml"
HEARTBEAT_S = 60


class SweepError(RuntimeError):
    """Stops the sweep: every further trial would fail the same way."""


class TrialFailed(RuntimeError):
    """One trial's training raised; the trial is recorded as FAIL and the sweep goes on."""


class FitPruning(PyTorchLightningPruningCallback):
    """optuna-integration's callback (works with `lightning` 2.6 as is), reporting during fit only.

    Its `on_validation_end` would also fire in the validation of the best checkpoint after fit, where it
    could prune a finished trial.
    """

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_validation_end(trainer, pl_module)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _format(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def trial_args(
    experiment: str, root: str, study: str, number: int, fixed: list[str], values: dict[str, Any]
) -> list[str]:
    """The CLI arguments of one trial: fixed overrides, then the sampled values, then its run identity."""
    return [
        "fit",
        "--experiment",
        experiment,
        *fixed,
        *[f"--{key}={_format(value)}" for key, value in values.items()],
        f"--run.root={root}",
        f"--run.name={study}-trial-{number}",
        "--run.fresh=true",  # a number reused after the study was deleted must not resume an old run
        f"--wandb.group={study}",
    ]


def _close_wandb() -> None:
    """A pruned or crashed trial leaves its W&B run open (Lightning re-raises before our finish)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def make_objective(space: Space, experiment: str, root: str, fixed: list[str]):
    def objective(trial: optuna.Trial) -> float:
        values = space.suggest(trial)
        study = trial.study.study_name
        run_dir = (Path(root) / experiment / f"{study}-trial-{trial.number}").resolve()
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("worker", worker_id())
        args = trial_args(experiment, root, study, trial.number, fixed, values)
        pruning = FitPruning(trial, monitor=space.metric)
        try:
            run_cli(args, callbacks=[pruning])
        except optuna.TrialPruned:
            raise
        except ConfigError as err:
            raise SweepError(
                f"trial {trial.number}: the training CLI rejected its configuration ({err}); check the keys of "
                f"{space.path} and the extra overrides. Arguments: {' '.join(args)}"
            ) from err
        except SystemExit as err:
            if err.code not in (0, None):
                raise SweepError(f"trial {trial.number}: training exited with status {err.code}") from err
        except Exception as err:
            trial.set_user_attr("error", repr(err)[:1000])
            raise TrialFailed(f"trial {trial.number} failed: {err!r}") from err
        finally:
            _close_wandb()
        summary = run_dir / "summary.json"
        if not summary.is_file():
            raise TrialFailed(f"trial {trial.number}: {summary} was not written")
        metrics = json.loads(summary.read_text()).get("metrics", {})
        if space.metric not in metrics:
            raise SweepError(
                f"metric '{space.metric}' (from {space.path} or --metric) is not in {summary}; "
                f"it has: {', '.join(sorted(metrics))}"
            )
        return float(metrics[space.metric])

    return objective


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats, so trials of killed workers on any machine end up FAIL."""
    engine_kwargs: dict[str, Any] = (
        {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    )
    for attempt in range(5):
        try:
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=3 * HEARTBEAT_S
            )
        except SQLAlchemyError as err:
            # Two workers creating the schema at the same moment: one loses the race, then finds it made.
            if attempt == 4:
                raise SweepError(f"cannot open the study storage {url}: {err}") from err
            time.sleep(1 + attempt)
    raise AssertionError("unreachable")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_dead_trials(study: optuna.Study, storage: optuna.storages.BaseStorage) -> list[int]:
    """Mark RUNNING trials of dead processes on this host FAIL at once (heartbeats take minutes)."""
    host = socket.gethostname()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = str(trial.user_attrs.get("worker", ""))
        name, _, pid = worker.rpartition(":")
        if name == host and pid.isdigit() and not _alive(int(pid)):
            study_id = storage.get_study_id_from_name(study.study_name)
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            if storage.set_trial_state_values(trial_id, TrialState.FAIL):
                failed.append(trial.number)
    return failed


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m trainforge.tools.sweep",
        description="Optuna sweep over config keys; unknown --options are passed to every trial.",
        allow_abbrev=False,
    )
    parser.add_argument("--space", default=DEFAULT_SPACE, help="search space YAML (configs/sweeps/*.yaml)")
    parser.add_argument("--trials", type=int, default=None, help="trials to run now (default: the space's)")
    parser.add_argument("--total-trials", type=int, default=None, help="stop when the study has this many")
    parser.add_argument("--study", default=None, help="study name (default: the space file's name)")
    parser.add_argument("--storage", default=None, help="database URL (default: SQLite in the study dir)")
    parser.add_argument(
        "--experiment", default=None, help="configs/experiments/<name>.yaml (default: space's)"
    )
    parser.add_argument("--root", default="runs", help="folder of runs and of sweeps/")
    parser.add_argument("--metric", default=None, help="summary.json metric to optimise (default: space's)")
    parser.add_argument("--direction", choices=("maximize", "minimize"), default=None)
    parser.add_argument("--pruner", default=None, help="optuna.pruners class name or none")
    parser.add_argument("--pruner-kwargs", default="{}", help="JSON, e.g. '{\"n_warmup_steps\": 1}'")
    parser.add_argument("--seed", type=int, default=None, help="TPE sampler seed (one worker only)")
    parser.add_argument("--timeout", type=float, default=None, help="stop starting trials after N seconds")
    return parser.parse_known_args(argv)


def run(argv: list[str] | None = None) -> optuna.Study:
    options, fixed = parse_args(sys.argv[1:] if argv is None else argv)
    space = load_space(options.space)
    space.metric = options.metric or space.metric
    space.direction = options.direction or space.direction
    if options.pruner is not None:
        space.pruner = {"name": options.pruner, **json.loads(options.pruner_kwargs)}
    experiment = options.experiment or space.experiment
    name = options.study or space.path.stem
    out = Path(options.root) / "sweeps" / name
    out.mkdir(parents=True, exist_ok=True)
    url = options.storage or f"sqlite:///{(out / 'study.db').resolve()}"
    storage = open_storage(url)
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction=space.direction,
        sampler=optuna.samplers.TPESampler(seed=options.seed),
        pruner=build_pruner(space.pruner),
        load_if_exists=True,
    )
    dead = fail_dead_trials(study, storage)
    if dead:
        print(f"sweep: trials {dead} belonged to killed workers on this host; marked FAIL", flush=True)
    print(f"sweep: study '{name}' in {url.split('@')[-1]}: {len(study.trials)} trials so far", flush=True)

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        write_tables(study, out, space.metric, experiment)

    callbacks: list[Any] = [after_trial]
    if options.total_trials is not None:
        states = (TrialState.COMPLETE, TrialState.PRUNED)
        callbacks.append(optuna.study.MaxTrialsCallback(options.total_trials, states=states))
    study.optimize(
        make_objective(space, experiment, options.root, [*space.args, *fixed]),
        n_trials=options.trials if options.trials is not None else space.trials,
        timeout=options.timeout,
        catch=(TrialFailed,),
        callbacks=callbacks,
        gc_after_trial=True,
    )
    write_tables(study, out, space.metric, experiment)
    for note in write_plots(study, out, space.metric):
        print(f"sweep: skipped {note}", flush=True)
    _print_result(study, out, space.metric)
    return study


def _print_result(study: optuna.Study, out: Path, metric: str) -> None:
    counts: dict[str, int] = {}
    for trial in study.trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    print("sweep: trials " + ", ".join(f"{k.lower()} {v}" for k, v in sorted(counts.items())))
    try:
        best = study.best_trial
        print(f"sweep: best trial {best.number}: {metric} = {best.value:.4f} with {best.params}")
    except ValueError:
        print("sweep: no completed trial yet")
    print(f"sweep directory: {out.resolve()}", flush=True)


def main(argv: list[str] | None = None) -> None:
    try:
        run(argv)
    except (SpaceError, SweepError) as err:
        raise SystemExit(f"error: {err}") from err


if __name__ == "__main__":
    main()
