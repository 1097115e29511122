"""`summary.json`: the machine-readable result of a run, and the table printed at its end."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

SUMMARY_FILE = "summary.json"


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write then rename, so a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def _number(value: Any) -> Any:
    return round(float(value), 6) if hasattr(value, "__float__") else value


def write_summary(run_dir: Path, summary: dict[str, Any]) -> Path:
    for key in ("metrics", "last_epoch_metrics"):
        if key in summary:
            summary[key] = {k: _number(v) for k, v in sorted(summary[key].items())}
    path = run_dir / SUMMARY_FILE
    write_json_atomic(path, summary)
    return path


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    table = Table(
        title=f"{summary.get('experiment')}/{summary.get('run')}: {Path(str(summary.get('checkpoint_used'))).name}"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in summary.get("metrics", {}).items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    if summary.get("optimism") is not None:  # optimism.py: how much the selection split flattered the model
        table.add_row("optimism (selection over reported)", f"{summary['optimism']:+.4f}")
    if (best := summary.get("best")) and best.get("epoch") is not None:  # best_checkpoint.py: which and why
        table.add_row("best checkpoint", f"epoch {best['epoch']}: {best['rule']}")
    table.add_row("epochs / steps", f"{summary.get('epoch')} / {summary.get('global_step')}")
    if batch := summary.get("batch"):  # launch_report.py: the batch rule as this run applied it
        table.add_row(
            "global batch (ranks x accumulation x per device)",
            f"{batch['global_batch']} ({batch['world_size']} x {batch['accumulation']} x {batch['per_device']})",
        )
    segments = summary.get("segments", 1)
    table.add_row(
        "wall time (s)" + (f", {segments} segments" if segments > 1 else ""),
        f"{summary.get('wall_time_s', 0):.1f}",
    )
    console.print(table)
