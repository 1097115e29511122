"""Leave-one-set-out (LOSO) view of a recipe study: is a recipe chosen on some data sets still ahead of the
probe on a set that played no part in choosing it?

The rule, applied to a group of sets (docs/recipe-study.md#leave-one-set-out), puts issue 31's targets
first and the gain second:

- per run, gap = 100 * (accuracy - the run's own probe accuracy), in points of the reported split;
- per (recipe, set), misses = 1 if the mean gap over seeds is below 0 (the mean below the probe), plus 1 for
  every run more than `tolerance` points below its probe;
- a recipe on the group: its misses summed over the sets, and its gain, the mean over the sets of the mean
  gap; only recipes run on every set of the group compete; fewest misses win, then the larger gain, then
  the faster recipe (mean seconds per run), then the name.

For every held-out set, the winner of the other sets is looked up on the held-out set and reported beside
the probe. The default the study recommends is the recipe that wins the most folds (ties: the winner on
all sets). Written here, not taken from a library: it is twenty lines of arithmetic on the results table.
"""

from __future__ import annotations

import csv
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainforge.errors import TemplateError

TOLERANCE = 1.0  # points: a run further below its probe than this misses the target
SLACK = 1e-3  # points: results.csv keeps 6 decimals, so equal accuracies may differ by 1e-4 points
NUMBERS = ("acc", "probe_acc", "seconds", "selection_acc", "optimism")


def read_results(path: Path) -> list[dict[str, Any]]:
    """The rows of a study's results.csv, with the figures as floats (empty cells: None)."""
    if not path.is_file():
        raise TemplateError(
            f"results table {path} not found (a study's results.csv, e.g. docs/recipe-study-results.csv)"
        )
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    need = {"dataset", "recipe", "seed", "acc", "probe_acc"}
    missing = need - set(rows[0] if rows else ())
    if missing:
        raise TemplateError(
            f"{path}: columns {', '.join(sorted(missing))} missing; it needs {', '.join(sorted(need))}"
        )
    for row in rows:
        for key in NUMBERS:
            value = row.get(key)
            row[key] = float(value) if value not in (None, "", "None") else None
    return [r for r in rows if r["acc"] is not None and r["probe_acc"] is not None]


def _runs(rows: list[dict[str, Any]], recipe: str, dataset: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["recipe"] == recipe and r["dataset"] == dataset]


def gaps(runs: list[dict[str, Any]]) -> list[float]:
    return [100 * (r["acc"] - r["probe_acc"]) for r in runs]


def below(runs: list[dict[str, Any]], tolerance: float = TOLERANCE) -> int:
    """The runs that end more than `tolerance` points below their probe."""
    return sum(1 for g in gaps(runs) if g < -tolerance - SLACK)


def misses(runs: list[dict[str, Any]], tolerance: float = TOLERANCE) -> int:
    """The targets one set's runs miss: the mean below the probe (1), each run more than `tolerance` below."""
    return int(statistics.mean(gaps(runs)) < -SLACK) + below(runs, tolerance)


def rank(
    rows: list[dict[str, Any]], datasets: Sequence[str], tolerance: float = TOLERANCE
) -> list[tuple[str, int, float]]:
    """(recipe, misses, gain) of every recipe run on all of `datasets`, best first."""
    scored = []
    for recipe in dict.fromkeys(r["recipe"] for r in rows):
        per_set = [_runs(rows, recipe, d) for d in datasets]
        if not datasets or not all(per_set):
            continue
        seconds = [r["seconds"] for runs in per_set for r in runs if r["seconds"] is not None]
        missed = sum(misses(runs, tolerance) for runs in per_set)
        gain = statistics.mean(statistics.mean(gaps(runs)) for runs in per_set)
        scored.append((recipe, missed, gain, statistics.mean(seconds) if seconds else 0.0))
    scored.sort(key=lambda item: (item[1], -item[2], item[3], item[0]))
    return [(recipe, missed, gain) for recipe, missed, gain, _ in scored]


def loso(rows: list[dict[str, Any]], tolerance: float = TOLERANCE) -> tuple[list[dict[str, Any]], str | None]:
    """One record per held-out set (the winner of the others and its held-out figures), and the default."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    folds = []
    for held in datasets:
        ranking = rank(rows, [d for d in datasets if d != held], tolerance)
        winner = ranking[0][0] if ranking else None
        runs = _runs(rows, winner, held) if winner else []
        record: dict[str, Any] = {"held_out": held, "winner": winner, "ranking": ranking, "runs": runs}
        if runs:
            accs = [r["acc"] for r in runs]
            probe = statistics.mean(r["probe_acc"] for r in runs)
            optimism = [r["optimism"] for r in runs if r["optimism"] is not None]
            record.update(
                mean=statistics.mean(accs), min=min(accs), per_seed=accs, probe=probe,
                gap=100 * (statistics.mean(accs) - probe), misses=misses(runs, tolerance),
                below=below(runs, tolerance),
                optimism=statistics.mean(optimism) if optimism else None,
            )  # fmt: skip
        folds.append(record)
    wins = Counter(f["winner"] for f in folds if f["winner"])
    overall = rank(rows, datasets, tolerance)
    if not wins:
        return folds, None
    top = max(wins.values())
    tied = [recipe for recipe, n in wins.items() if n == top]
    default = next((recipe for recipe, _, _ in overall if recipe in tied), sorted(tied)[0])
    return folds, default


def _ranked(entry: tuple[str, int, float]) -> str:
    return f"{entry[0]} ({entry[1]} missed, {entry[2]:+.2f})"


def loso_table(rows: list[dict[str, Any]], tolerance: float = TOLERANCE) -> str:
    """Markdown: the held-out figures of each fold's winner beside the probe, then the default."""
    folds, default = loso(rows, tolerance)
    lines = [
        "\n**Leave-one-set-out** (rule: fewest targets missed on the other sets (a set's mean below its probe, "
        f"a run more than {tolerance:g} point below it), then the largest mean gain over the probe in points; "
        "the winner on the other sets, shown on the held-out set)\n",
        "| held-out set | winner on the others (missed, gain) | runner-up | mean acc | min acc | per seed | probe "
        "| mean - probe (points) | runs < probe - 1 point | optimism of selection |",
        "| --- | --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for f in folds:
        ranking = f["ranking"]
        first = _ranked(ranking[0]) if ranking else "none run on all the others"
        second = _ranked(ranking[1]) if len(ranking) > 1 else "-"
        if not f["runs"]:
            hint = (
                f"not run on this set: --recipes {f['winner']} --only {f['held_out']}" if f["winner"] else "-"
            )
            lines.append(f"| {f['held_out']} | {first} | {second} | {hint} | | | | | | |")
            continue
        optimism = "-" if f["optimism"] is None else f"{100 * f['optimism']:+.1f} points"
        lines.append(
            f"| {f['held_out']} | {first} | {second} | {f['mean']:.4f} | {f['min']:.4f} | "
            f"{' '.join(f'{a:.4f}' for a in f['per_seed'])} | {f['probe']:.4f} | {f['gap']:+.1f} | "
            f"{f['below']}/{len(f['runs'])} | {optimism} |"
        )
    wins = Counter(f["winner"] for f in folds if f["winner"])
    counts = ", ".join(f"{recipe} {n}/{len(folds)}" for recipe, n in wins.most_common())
    lines.append(f"\nfolds won: {counts or 'none'}; default (most folds won): {default or 'none'}")
    return "\n".join(lines) + "\n"


def read_baseline(path: Path) -> list[dict[str, Any]]:
    """A baseline's results (dataset, recipe, seed, acc), e.g. scripts/fastai_baseline.py's CSV."""
    if not path.is_file():
        raise TemplateError(f"baseline table {path} not found (e.g. runs/recipe-study/fastai/results.csv)")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    missing = {"dataset", "recipe", "seed", "acc"} - set(rows[0] if rows else ())
    if missing:
        raise TemplateError(f"{path}: columns {', '.join(sorted(missing))} missing")
    return [{**r, "acc": float(r["acc"])} for r in rows if r["acc"] not in ("", "None")]


def baseline_table(rows: list[dict[str, Any]], baseline: list[dict[str, Any]], recipe: str) -> str:
    """Markdown: per set, `recipe`'s mean reported accuracy beside the baseline's, and on how many sets
    it is ahead (sets the baseline has not run are listed, not counted)."""
    name = baseline[0]["recipe"] if baseline else "baseline"
    lines = [
        f"\n**{recipe} against {name}** (mean over seeds of the reported accuracy; same sets and splits)\n",
        f"| set | {recipe}: mean (per seed) | {name}: mean (per seed) | difference (points) |",
        "| --- | --- | --- | ---: |",
    ]
    ahead = compared = 0
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        ours = [r["acc"] for r in _runs(rows, recipe, dataset)]
        theirs = [r["acc"] for r in baseline if r["dataset"] == dataset]
        if not ours:
            continue
        if not theirs:
            lines.append(f"| {dataset} | {statistics.mean(ours):.4f} | not run | |")
            continue
        diff = 100 * (statistics.mean(ours) - statistics.mean(theirs))
        compared += 1
        ahead += diff > 0
        lines.append(
            f"| {dataset} | {statistics.mean(ours):.4f} ({' '.join(f'{a:.4f}' for a in ours)}) | "
            f"{statistics.mean(theirs):.4f} ({' '.join(f'{a:.4f}' for a in theirs)}) | {diff:+.1f} |"
        )
    lines.append(f"\n{recipe} ahead of {name} on {ahead} of {compared} sets")
    return "\n".join(lines) + "\n"
