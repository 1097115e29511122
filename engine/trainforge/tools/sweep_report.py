"""What a sweep leaves in runs/sweeps/<study>/: trials.csv, best.yaml and the Optuna plots."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import yaml
from optuna.trial import TrialState

# Keys that belong to the trial's own run, not to the recipe: dropped so best.yaml starts a new run.
RUN_KEYS = (("run", "name"), ("run", "fresh"), ("trainer", "default_root_dir"), ("checkpoint", "dirpath"))
TOP_KEYS = ("ckpt_path",)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def trials_frame(study: optuna.Study, metric: str) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for t in study.get_trials(deepcopy=False):
        duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
        last_reported = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                metric: t.value if t.state == TrialState.COMPLETE else None,
                "last_reported": last_reported,
                "epochs_reported": len(t.intermediate_values),
                "duration_s": round(duration, 2) if duration is not None else None,
                **{f"params.{k}": v for k, v in t.params.items()},
                "run_dir": t.user_attrs.get("run_dir"),
                "worker": t.user_attrs.get("worker"),
                "started": t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None,
            }
        )
    return pd.DataFrame(rows)


def best_config(study: optuna.Study, metric: str, experiment: str, out: Path) -> str | None:
    """The best trial's saved config without its run identity, with the command that retrains it."""
    try:
        best = study.best_trial
    except ValueError:
        return None  # no completed trial yet
    saved = Path(str(best.user_attrs.get("run_dir", ""))) / "config.yaml"
    if not saved.is_file():
        return None  # the best trial ran on another machine: its run directory is there
    config = yaml.safe_load(saved.read_text())
    for section, key in RUN_KEYS:
        if isinstance(config.get(section), dict):
            config[section].pop(key, None)
    if isinstance(config.get("wandb"), dict):
        config["wandb"]["group"] = None
    for key in TOP_KEYS:
        config.pop(key, None)
    target = out / "best.yaml"
    header = [
        f"# Best trial of study '{study.study_name}': trial {best.number}, {metric} = {best.value:.6g}",
        f"# from {saved}",
        "# Tuned values:",
        *[f"#   {k}: {v!r}" for k, v in best.params.items()],
        "# Retrain it (same seed, same data split):",
        f'#   make train EXPERIMENT={experiment} RUN={study.study_name}-best ARGS="--config {target}"',
        "",
    ]
    return "\n".join(header) + yaml.safe_dump(config, sort_keys=False)


def write_tables(study: optuna.Study, out: Path, metric: str, experiment: str) -> None:
    """trials.csv and best.yaml: cheap, so rewritten after every trial (a killed sweep keeps them)."""
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / "trials.csv", trials_frame(study, metric).to_csv(index=False))
    text = best_config(study, metric, experiment, out)
    if text is not None:
        _write_atomic(out / "best.yaml", text)


def write_plots(study: optuna.Study, out: Path, metric: str) -> list[str]:
    """History, importances and intermediate values as PNGs; returns notes about plots it could not make."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    notes: list[str] = []
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    plots = {
        "history.png": lambda: ovm.plot_optimization_history(study, target_name=metric),
        "intermediate.png": lambda: ovm.plot_intermediate_values(study),
    }
    if len(complete) >= 2 and len({tuple(sorted(t.params.items())) for t in complete}) >= 2:
        plots["importances.png"] = lambda: ovm.plot_param_importances(study, target_name=metric)
    else:
        notes.append(f"importances.png: needs 2 completed trials with different values, has {len(complete)}")
        (out / "importances.png").unlink(missing_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna's matplotlib plots are marked experimental
        for name, plot in plots.items():
            try:
                ax = plot()
                figure = ax.figure if hasattr(ax, "figure") else ax.flatten()[0].figure
                figure.set_size_inches(8, 5)
                figure.tight_layout()
                figure.savefig(out / name, dpi=100)
                plt.close(figure)
            except (ValueError, RuntimeError) as err:
                notes.append(f"{name}: {err}")
    return notes
