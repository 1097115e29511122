"""The table path's reference figure (docs/tasks.md): breast cancer and diabetes written from
scikit-learn to CSV, trained with `python -m template fit --experiment table` (no Python) over 3 seeds,
beside scikit-learn's HistGradientBoosting and logistic/ridge regression fitted on the same training rows
and scored on the same test rows (the TableDataModule's own split, split_seed 0).

    .venv/bin/python scripts/table_reference.py --out /tmp/table_reference   # about 10 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import accuracy_score, mean_absolute_error
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from trainforge.data.table import TableDataModule


def write_csvs(folder: Path) -> dict[str, tuple[Path, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    cancer = load_breast_cancer(as_frame=True).frame
    cancer.insert(0, "id", [f"p{i}" for i in range(len(cancer))])
    cancer["label"] = cancer.pop("target").map({0: "malignant", 1: "benign"})
    diabetes = load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": "progression"})
    cancer.to_csv(folder / "breast_cancer.csv", index=False)
    diabetes.to_csv(folder / "diabetes.csv", index=False)
    return {
        "breast_cancer": (folder / "breast_cancer.csv", "label"),
        "diabetes": (folder / "diabetes.csv", "progression"),
    }


def mlp_runs(name: str, csv: Path, target: str, seeds: list[int], root: Path, metric: str) -> list[float]:
    scores = []
    for seed in seeds:
        command = [sys.executable, "-m", "template", "fit", "--experiment", "table", f"--data.path={csv}",
                   f"--data.target={target}", f"--seed_everything={seed}", f"--run.root={root}",
                   f"--run.name={name}-seed{seed}"]  # fmt: skip
        subprocess.run(command, check=True, env={**os.environ, "WANDB_MODE": "offline"}, capture_output=True)
        summary = json.loads((root / "table" / f"{name}-seed{seed}" / "summary.json").read_text())
        scores.append(summary["metrics"][f"test/{metric}"])
        print(f"{name} MLP seed {seed}: test/{metric} {scores[-1]:.4f}", flush=True)
    return scores


def sklearn_runs(csv: Path, target: str, seeds: list[int], regression: bool) -> dict[str, list[float]]:
    data = TableDataModule(path=str(csv), target=target)
    train, _, test = data.split_positions()  # the MLP's own train and test rows
    frame = pd.read_csv(csv)
    x = frame.drop(columns=[c for c in (target, "id") if c in frame]).to_numpy(dtype=float)
    y = frame[target].to_numpy()
    results: dict[str, list[float]] = {}
    for seed in seeds:
        models = (
            {"HistGradientBoosting": HistGradientBoostingRegressor(random_state=seed),
             "ridge": make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))}
            if regression else
            {"HistGradientBoosting": HistGradientBoostingClassifier(random_state=seed),
             "logistic": make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))}
        )  # fmt: skip
        for name, model in models.items():
            predicted = model.fit(x[train], y[train]).predict(x[test])
            score = (
                mean_absolute_error(y[test], predicted) if regression else accuracy_score(y[test], predicted)
            )
            results.setdefault(name, []).append(float(score))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/table_reference"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    rows = []
    for name, (csv, target) in write_csvs(args.out / "data").items():
        regression = name == "diabetes"
        metric = "mae" if regression else "acc"
        results = {
            "MLP (make train EXPERIMENT=table)": mlp_runs(
                name, csv, target, args.seeds, args.out / "runs", metric
            )
        }
        results.update(sklearn_runs(csv, target, args.seeds, regression))
        for model, scores in results.items():
            rows.append({"data": name, "metric": f"test {metric}", "model": model, "mean": np.mean(scores),
                         "min": np.min(scores), "max": np.max(scores), "scores": " ".join(f"{s:.4f}" for s in scores)})  # fmt: skip
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "table_reference.csv", index=False)
    print("| data | metric | model | mean | min | max |\n| --- | --- | --- | ---: | ---: | ---: |")
    for row in rows:  # a markdown table for docs/tasks.md
        print(
            f"| {row['data']} | {row['metric']} | {row['model']} | {row['mean']:.4f} | {row['min']:.4f} | {row['max']:.4f} |"
        )


if __name__ == "__main__":
    main()
