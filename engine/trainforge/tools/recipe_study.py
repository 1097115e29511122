"""`make recipe-study`: fine-tune recipes against the linear probe they start from, over data sets x seeds.

A study file (YAML) names the data sets (image folders), the recipes (overrides of `--experiment
finetune`, the default recipe being `[]`), the seeds and the weights. Every (data set, recipe, seed) is a
real `fit` run in `<out>/runs/<set>/<recipe>-s<seed>`; a rerun skips the finished ones. The probe is the
run's own: `finetune.head_init=linear_probe` fits it on the same features and training images, with C
chosen on the selection split from `finetune.probe_c`, and summary.json reports its figures on the
reported split beside the fine-tune's. Nothing is selected on the reported split (see finish.py).

Writes `<out>/results.csv` (one row per run) and `<out>/table.md`: per data set and recipe the mean, the
minimum and every seed's reported accuracy (and balanced accuracy where classes are imbalanced), the
probe beside it, the mean difference in images of the reported split, the runs that end below the probe
by more than one image, the last-epoch figure and the time per run. The last line is `study table: <path>`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from trainforge.errors import TemplateError
from trainforge.tools.recipe_loso import baseline_table, loso, loso_table, read_baseline, read_results
from trainforge.tools.recipe_rules import check_own_choice, check_rules, replay

METRIC = "test/acc"


def load_study(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise TemplateError(f"study file {path} not found")
    study = yaml.safe_load(path.read_text()) or {}
    for key in ("datasets", "recipes"):
        if not isinstance(study.get(key), dict) or not study[key]:
            raise TemplateError(
                f"{path}: `{key}` must map names to {'folders' if key == 'datasets' else 'overrides'}"
            )
    missing = [f"{n}: {p}" for n, p in study["datasets"].items() if not (Path(p) / "train").is_dir()]
    if missing:
        raise TemplateError(f"{path}: data sets without a train/ folder: {', '.join(missing)}")
    study = {"seeds": [0, 1, 2], "experiment": "finetune", "args": [], **study}
    study["rules"] = check_rules(study.get("rules") or {}, study["recipes"], str(path))
    return study


def rule_rows(study: dict[str, Any], out: Path, row: dict[str, Any]) -> list[dict[str, Any]]:
    """The base run's row, then one row per rule replayed on it (recipe_rules.py): same training, the
    figures its selection rule reports."""
    run_dir = out / "runs" / row["dataset"] / f"{row['recipe']}-s{row['seed']}"
    rules = {n: r for n, r in study["rules"].items() if r["base"] == row["recipe"]}
    if not rules:
        return [row]
    summary = json.loads((run_dir / "summary.json").read_text())
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    check_own_choice(summary, config.get("finetune") or {}, str(run_dir))
    rows = [row]
    for name, rule in rules.items():
        replayed = replay(summary, rule, str(run_dir))
        rows.append(
            {**row, "recipe": name, "acc": replayed["acc"], "bal_acc": None, "last_acc": None,
             "checkpoint": f"replayed a={replayed['alpha']}", "selection_acc": replayed["selection_acc"],
             "optimism": replayed["optimism"]}
        )  # fmt: skip
    return rows


def run_one(study: dict[str, Any], out: Path, dataset: str, recipe: str, seed: int) -> dict[str, Any]:
    """One fit (skipped when its summary.json exists); the figures of its summary."""
    run_dir = out / "runs" / dataset / f"{recipe}-s{seed}"
    if not (run_dir / "summary.json").is_file():
        command = [
            sys.executable, "-m", "trainforge", "fit", "--experiment", study["experiment"],
            f"--data.root={study['datasets'][dataset]}", f"--seed_everything={seed}",
            f"--run.root={out / 'runs'}", f"--run.experiment={dataset}", f"--run.name={recipe}-s{seed}",
            "--run.fresh=true", "--wandb.enabled=false", "--trainer.enable_progress_bar=false",
            *([f"--model.weights={study['weights']}"] if study.get("weights") else []),
            *map(str, study["args"]), *map(str, study["recipes"][recipe] or []),
        ]  # fmt: skip
        print(f"[{time.strftime('%H:%M:%S')}] {dataset} {recipe} seed {seed}", flush=True)
        log = out / "logs" / f"{dataset}-{recipe}-s{seed}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as handle:
            done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=os.environ.copy())
        if done.returncode:
            raise TemplateError(
                f"the run {dataset}/{recipe}/seed {seed} failed (exit {done.returncode}); see {log}"
            )
    summary = json.loads((run_dir / "summary.json").read_text())
    probe = summary.get("linear_probe") or {}
    reported = summary["metrics"]
    return {
        "dataset": dataset, "recipe": recipe, "seed": seed,
        "acc": reported.get(METRIC), "bal_acc": reported.get("test/bal_acc"),
        "last_acc": (summary.get("last_epoch_metrics") or {}).get(METRIC),
        "probe_acc": probe.get(METRIC), "probe_bal_acc": probe.get("test/bal_acc"), "probe_c": probe.get("c"),
        "reported_on": summary.get("evaluated_on"), "selected_on": summary.get("selected_on"),
        "checkpoint": Path(str(summary.get("checkpoint_used"))).name, "seconds": summary.get("wall_time_s"),
        "reported_images": _reported_size(Path(study["datasets"][dataset])),
        "selection_acc": (summary.get("selection") or {}).get("value"), "optimism": summary.get("optimism"),
    }  # fmt: skip


def _reported_size(folder: Path) -> int:
    split = folder / ("test" if (folder / "test").is_dir() else "val")
    return sum(1 for p in split.rglob("*") if p.is_file()) if split.is_dir() else 0


def _fmt(values: Sequence[float | None]) -> str:
    return " ".join(f"{v:.4f}" for v in values if v is not None)


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one block per data set, one line per recipe, the probe beside each."""
    lines = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == dataset]
        first = mine[0]
        n = max(1, first["reported_images"])
        lines += [
            f"\n**{dataset}** (reported on {first['reported_on']}, {n} images; selection on {first['selected_on']}; "
            f"probe C={first['probe_c']} chosen on the selection split)\n",
            "| recipe | mean acc | min acc | per seed | probe | mean - probe (images) | runs < probe - 1 image "
            "| mean bal. acc (probe) | last epoch mean | s / run |",
            "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for recipe in dict.fromkeys(r["recipe"] for r in mine):
            runs = [r for r in mine if r["recipe"] == recipe and r["acc"] is not None]
            if not runs:
                continue
            accs = [r["acc"] for r in runs]
            probes = [r["probe_acc"] for r in runs if r["probe_acc"] is not None]
            probe = statistics.mean(probes) if probes else None
            below = sum(
                1 for r in runs if r["probe_acc"] is not None and (r["probe_acc"] - r["acc"]) * n > 1 + 1e-6
            )
            gap = f"{(statistics.mean(accs) - probe) * n:+.1f}" if probe is not None else "-"
            bal = [r["bal_acc"] for r in runs if r["bal_acc"] is not None]
            bal_probe = [r["probe_bal_acc"] for r in runs if r["probe_bal_acc"] is not None]
            bal_cell = (
                f"{statistics.mean(bal):.4f} ({statistics.mean(bal_probe):.4f})" if bal and bal_probe else "-"
            )
            last = [r["last_acc"] for r in runs if r["last_acc"] is not None]
            lines.append(
                f"| {recipe} | {statistics.mean(accs):.4f} | {min(accs):.4f} | {_fmt(accs)} | "
                f"{probe if probe is None else f'{probe:.4f}'} | {gap} | {below}/{len(runs)} | {bal_cell} | "
                f"{statistics.mean(last) if last else float('nan'):.4f} | {statistics.mean(r['seconds'] for r in runs):.0f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="make recipe-study", description=__doc__.split("\n")[0], allow_abbrev=False
    )
    parser.add_argument("study", type=Path, help="the study file (YAML): datasets, recipes, seeds, weights")
    parser.add_argument("--out", type=Path, default=None, help="default: runs/recipe-study/<study file name>")
    parser.add_argument("--only", nargs="+", default=None, help="data sets to run (default: all)")
    parser.add_argument("--recipes", nargs="+", default=None, help="recipes to run (default: all)")
    parser.add_argument(
        "--loso", action="store_true", help="also the leave-one-set-out table (recipe_loso.py): loso.md"
    )
    parser.add_argument(
        "--from-csv",
        type=Path,
        default=None,
        help="only the leave-one-set-out table, from this results.csv: nothing is run",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="with --loso: a baseline's results.csv (scripts/fastai_baseline.py) beside the default it picks",
    )
    args = parser.parse_args(argv)
    if args.from_csv is not None:  # no runs, so no data folders needed: the table is computed from the CSV
        rows = read_results(args.from_csv)
        if args.only:
            rows = [r for r in rows if r["dataset"] in args.only]
        if args.recipes:
            rows = [r for r in rows if r["recipe"] in args.recipes]
        _write_loso(rows, args.out or Path("runs") / "recipe-study" / args.study.stem, args.baseline)
        return
    study = load_study(args.study)
    for flag, chosen, known in (
        ("--only", args.only, study["datasets"]),
        ("--recipes", args.recipes, study["recipes"]),
    ):
        unknown = sorted(set(chosen or ()) - set(known))
        if unknown:
            parser.error(f"{flag}: {', '.join(unknown)} not in {args.study} (it has: {', '.join(known)})")
    out = args.out or Path("runs") / "recipe-study" / args.study.stem
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        row
        for dataset in study["datasets"]
        if args.only is None or dataset in args.only
        for recipe in study["recipes"]
        if args.recipes is None or recipe in args.recipes
        for seed in study["seeds"]
        for row in rule_rows(study, out, run_one(study, out, dataset, recipe, int(seed)))
    ]
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    text = table(rows)
    (out / "table.md").write_text(text)
    print(text)
    print(f"study table: {(out / 'table.md').resolve()}", flush=True)
    if args.loso:
        _write_loso(read_results(out / "results.csv"), out, args.baseline)


def _write_loso(rows: list[dict[str, Any]], out: Path, baseline: Path | None = None) -> None:
    if not rows:
        raise TemplateError("no finished runs with an accuracy and a probe to compare: nothing to rank")
    out.mkdir(parents=True, exist_ok=True)
    text = loso_table(rows)
    default = loso(rows)[1]
    if baseline is not None and default is not None:
        text += baseline_table(rows, read_baseline(baseline), default)
    (out / "loso.md").write_text(text)
    print(text)
    print(f"leave-one-set-out table: {(out / 'loso.md').resolve()}", flush=True)


if __name__ == "__main__":
    main()
