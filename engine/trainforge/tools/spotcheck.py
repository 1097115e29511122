"""`python -m trainforge.tools.spotcheck` (`make spotcheck`): train several backbones briefly, rank them.

Every model is a real `python -m trainforge fit` run of the same experiment, seed, data and split, in
`runs/<experiment>/spotcheck-<name>-<model>`; the ranking (accuracy, training time, parameters) goes to
`runs/spotcheck/<name>/` as results.csv and ranking.png, and is printed as a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
from lightning.pytorch import Callback, LightningModule, Trainer
from rich.console import Console
from rich.table import Table

from trainforge.errors import ConfigError
from trainforge.launch import run_cli

DEFAULT_MODELS = ["resnet10t", "resnet18", "efficientnet_lite0", "mobilenetv3_small_100"]


class FitStats(Callback):
    """Parameter count and training time of one run (summary.json's wall time includes evaluation)."""

    params = 0
    fit_s = 0.0

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.params = sum(p.numel() for p in pl_module.parameters())
        self._start = time.perf_counter()

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.fit_s = time.perf_counter() - self._start


def train_one(model: str, options: argparse.Namespace, fixed: list[str]) -> dict[str, Any]:
    run_name = f"spotcheck-{options.name}-{model}"
    run_dir = (Path(options.root) / options.experiment / run_name).resolve()
    args = [
        "fit",
        "--experiment",
        options.experiment,
        *fixed,
        f"--model.init_args.backbone={model}",
        f"--trainer.max_epochs={options.epochs}",
        f"--run.root={options.root}",
        f"--run.name={run_name}",
        "--run.fresh=true",  # a spot check always starts over: EPOCHS or ARGS may have changed
        f"--wandb.group=spotcheck-{options.name}",
    ]
    stats = FitStats()
    row: dict[str, Any] = {"model": model}
    try:
        run_cli(args, callbacks=[stats])
    except ConfigError as err:
        raise SystemExit(f"error: training {model}: {err}") from err
    except SystemExit as err:
        if err.code not in (0, None):
            raise SystemExit(
                f"error: training {model} stopped with status {err.code}; arguments: {args}"
            ) from err
    except Exception as err:  # one model that cannot run (e.g. too small an input) must not stop the rest
        return {**row, "error": repr(err)[:300], "run_dir": str(run_dir)}
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = summary.get("metrics", {})
    return {
        **row,
        options.metric: metrics.get(options.metric),
        **{k: metrics.get(k) for k in ("val/loss", "test/acc") if k != options.metric},
        "params_M": round(stats.params / 1e6, 3),
        "fit_s": round(stats.fit_s, 1),
        "epochs": options.epochs,
        "run_dir": str(run_dir),
        "error": None,
    }


def rank(rows: list[dict[str, Any]], metric: str) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for column in (metric, "fit_s", "params_M", "error"):
        if column not in frame.columns:  # every model failed
            frame[column] = None
    ascending = metric.rsplit("/", 1)[-1] in ("loss", "mae", "mse", "rmse")  # errors: lower is better
    frame = frame.sort_values([metric, "fit_s"], ascending=[ascending, True], na_position="last")
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame.reset_index(drop=True)


def plot(frame: pd.DataFrame, metric: str, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = frame[frame[metric].notna()]
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(done) + 1.5))
    bars = ax.barh(done["model"], done[metric], color="tab:blue")
    ax.invert_yaxis()  # rank 1 on top
    for bar, row in zip(bars, done.to_dict("records"), strict=True):
        label = f" {row[metric]:.3f}  ({row['fit_s']:.0f} s, {row['params_M']:.2f} M params)"
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, label, va="center", fontsize=9)
    ax.set_xlabel(metric)
    ax.set_xlim(0, max(1.0, float(done[metric].max()) * 1.6) if len(done) else 1.0)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_table(frame: pd.DataFrame, metric: str, title: str) -> None:
    table = Table(title=title)
    columns = ["rank", "model", metric, "test/acc", "fit_s", "params_M", "error"]
    columns = [c for c in columns if c in frame.columns]
    for column in columns:
        table.add_column(column, justify="left" if column in ("model", "error") else "right")
    for row in frame.to_dict("records"):
        table.add_row(*[_cell(row[c]) for c in columns])
    Console().print(table)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m trainforge.tools.spotcheck",
        description="Train each backbone briefly on the same split and rank them; unknown --options go to every run.",
        allow_abbrev=False,
    )
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="timm model names")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--name", default=None, help="name of the comparison (default: the experiment's)")
    parser.add_argument("--experiment", default="default")
    parser.add_argument("--root", default="runs")
    parser.add_argument("--metric", default="val/acc", help="summary.json metric to rank by")
    return parser.parse_known_args(argv)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    options, fixed = parse_args(sys.argv[1:] if argv is None else argv)
    if options.epochs < 1:
        raise SystemExit(f"error: --epochs must be at least 1 (got {options.epochs})")
    options.name = options.name or options.experiment
    out = Path(options.root) / "spotcheck" / options.name
    out.mkdir(parents=True, exist_ok=True)
    rows = [train_one(model, options, fixed) for model in options.models]
    frame = rank(rows, options.metric)
    frame.to_csv(out / "results.csv", index=False)
    title = f"spot check '{options.name}': {options.epochs} epochs each, ranked by {options.metric}"
    plot(frame, options.metric, out / "ranking.png", title)
    print_table(frame, options.metric, title)
    print(f"spotcheck directory: {out.resolve()}", flush=True)
    return frame


if __name__ == "__main__":
    main()
