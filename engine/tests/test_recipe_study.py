"""`recipe-study`: its table's arithmetic, and a real two-set study through the command a user types."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from tests.conftest import last_line, run_cli
from tests.transfer_helpers import make_folder, save_timm_weights
from trainforge.tools.recipe_loso import loso, loso_table, misses, rank
from trainforge.tools.recipe_study import table


def row(recipe: str, seed: int, acc: float, probe: float) -> dict:
    return {
        "dataset": "cells", "recipe": recipe, "seed": seed, "acc": acc, "bal_acc": None, "last_acc": acc,
        "probe_acc": probe, "probe_bal_acc": None, "probe_c": 0.1, "reported_on": "test",
        "selected_on": "15% of train", "checkpoint": "wise.ckpt", "seconds": 10, "reported_images": 100,
    }  # fmt: skip


def test_table_counts_runs_below_the_probe_by_more_than_one_image():
    rows = [row("default", 0, 0.90, 0.91), row("default", 1, 0.88, 0.90), row("default", 2, 0.93, 0.90)]
    line = next(x for x in table(rows).splitlines() if x.startswith("| default"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    # mean 0.9033, min 0.88, probe mean 0.9033 -> +0.0 images; only seed 1 (2 images below) counts.
    assert cells[1:6] == ["0.9033", "0.8800", "0.9000 0.8800 0.9300", "0.9033", "+0.0"]
    assert cells[6] == "1/3"


@pytest.mark.slow
def test_study_runs_every_set_recipe_and_seed_reports_beside_the_probe_and_skips_finished_runs(tmp_path):
    make_folder(tmp_path / "photos", {"train": 8, "test": 3})
    make_folder(tmp_path / "scans", {"train": 8, "val": 3}, seed=1)  # no test/: reported on val
    save_timm_weights(tmp_path / "w.safetensors")
    study = {
        "weights": str(tmp_path / "w.safetensors"),
        "seeds": [0],
        "args": [
            "--model.backbone=resnet10t", "--data.image_size=32", "--data.num_workers=0",
            "--trainer.max_epochs=1", "--outputs.reports=false", "--trainer.enable_model_summary=false",
            "--finetune.wise_audit=[0, 0.5, 1]",
        ],
        "datasets": {"photos": str(tmp_path / "photos"), "scans": str(tmp_path / "scans")},
        "recipes": {"default": [], "frozen": ["--finetune.freeze_backbone=true"]},
        # replayed on the default's runs (recipe_rules.py), no training of their own:
        "rules": {"probe": {"base": "default", "alphas": [0]}, "safe": {"base": "default", "alphas": [0, 0.5, 1],
                  "keep": "probe", "evidence_p": 0.3}},
    }  # fmt: skip
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    out = tmp_path / "out"
    command = ("recipe-study", str(tmp_path / "study.yaml"), "--out", str(out))
    result = run_cli(*command, cwd=tmp_path)
    assert last_line(result.stdout) == f"study table: {(out / 'table.md').resolve()}"
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["dataset"], r["recipe"]) for r in rows] == [
        ("photos", "default"), ("photos", "probe"), ("photos", "safe"), ("photos", "frozen"),
        ("scans", "default"), ("scans", "probe"), ("scans", "safe"), ("scans", "frozen"),
    ]  # fmt: skip
    # The replayed a = 0 is the probe model itself: its reported accuracy is the probe's own figure.
    for r in (rows[1], rows[5]):
        assert r["recipe"] == "probe" and float(r["acc"]) == pytest.approx(float(r["probe_acc"]), abs=1e-6)
    default = rows[0]
    assert default["recipe"] == "default" and float(default["optimism"]) == pytest.approx(
        float(default["selection_acc"]) - float(default["acc"]), abs=1e-5
    )
    for r in rows:
        assert 0 <= float(r["acc"]) <= 1 and 0 <= float(r["probe_acc"]) <= 1 and float(r["probe_c"]) > 0
        # selection never on the reported split: a folder without test/ reports val/ and selects on train's part
        assert r["selected_on"].startswith("15% of train")
        assert r["reported_on"] == ("test" if r["dataset"] == "photos" else "val (no test split)")
        assert r["reported_images"] == "9"
    text = (out / "table.md").read_text()
    assert "**photos** (reported on test, 9 images" in text and "| frozen |" in text and "| safe |" in text
    # A rerun trains nothing: every run has its summary.json.
    logs = {p: p.stat().st_mtime_ns for p in (out / "logs").iterdir()}
    again = run_cli(*command, "--only", "scans", "--recipes", "frozen", cwd=tmp_path)
    assert " scans frozen seed 0" not in again.stdout
    assert {p: p.stat().st_mtime_ns for p in (out / "logs").iterdir()} == logs
    assert Path(last_line(again.stdout).split(": ", 1)[1]).read_text().count("| frozen |") == 1


def loso_rows(gaps: dict[tuple[str, str], list[float]], seconds: float = 10.0) -> list[dict]:
    """Rows of a results table: the probe at 0.80 on every set, each run `gap` points from it."""
    return [
        {"dataset": s, "recipe": r, "seed": i, "acc": 0.80 + g / 100, "probe_acc": 0.80, "seconds": seconds,
         "selection_acc": None, "optimism": 0.02}
        for (r, s), gs in gaps.items() for i, g in enumerate(gs)
    ]  # fmt: skip


# "steady" is 2 points ahead everywhere; "spiky" 10 ahead on A and B, and on C a mean of 3 behind with one
# run 9 points below the probe.
GAPS = {
    ("steady", "A"): [2, 2, 2], ("steady", "B"): [2, 2, 2], ("steady", "C"): [2, 2, 2],
    ("spiky", "A"): [10, 10, 10], ("spiky", "B"): [10, 10, 10], ("spiky", "C"): [-9, 0, 0],
}  # fmt: skip


def test_loso_puts_the_targets_first_and_ranks_on_the_other_sets_only():
    # A's fold ranks on B and C: spiky misses two targets on C (mean 3 below, one run 9 below), steady none, so
    # steady wins though spiky gains more; the same for B. C's fold ranks on A and B, where neither misses:
    # spiky's larger gain wins, and C shows what that costs out of sample. Steady wins 2 of 3: the default.
    folds, default = loso(loso_rows(GAPS))
    assert [(f["held_out"], f["winner"]) for f in folds] == [("A", "steady"), ("B", "steady"), ("C", "spiky")]
    assert default == "steady"
    assert folds[0]["ranking"] == [("steady", 0, pytest.approx(2.0)), ("spiky", 2, pytest.approx(3.5))]
    c = folds[2]
    assert c["ranking"] == [("spiky", 0, pytest.approx(10.0)), ("steady", 0, pytest.approx(2.0))]
    assert c["gap"] == pytest.approx(-3.0) and c["below"] == 1 and c["misses"] == 2
    assert c["min"] == pytest.approx(0.71)
    assert folds[0]["gap"] == pytest.approx(2.0) and folds[0]["optimism"] == pytest.approx(0.02)
    # A run 1 point below its probe is within the tolerance; a mean 0.1 point below is a miss.
    assert misses(loso_rows({("r", "A"): [-1.0, 2.0, 2.0]})) == 0
    assert misses(loso_rows({("r", "A"): [-0.3, 0.0, 0.0]})) == 1
    # Seeds 2 images either side of the probe: a mean 0.0001 point below (6-decimal rounding) is not a miss.
    assert misses(loso_rows({("r", "A"): [-1.3072, 0.0, 1.3071]})) == 1


def test_loso_needs_a_recipe_on_every_other_set_and_says_when_the_winner_was_not_run_held_out():
    gaps = {**GAPS, ("partial", "A"): [20, 20, 20], ("partial", "B"): [20, 20, 20]}
    folds, _ = loso(loso_rows(gaps))
    assert "partial" not in {r for r, _, _ in folds[0]["ranking"]}  # not run on C, so not in A's fold
    assert folds[2]["winner"] == "partial" and folds[2]["runs"] == []
    text = loso_table(loso_rows(gaps))
    assert (
        "| C | partial (0 missed, +20.00) | spiky (0 missed, +10.00) | not run on this set: "
        "--recipes partial --only C |" in text
    )
    # A tie goes to the faster recipe.
    tied = loso_rows({("slow", "A"): [1], ("slow", "B"): [1]}, seconds=20) + loso_rows(
        {("quick", "A"): [1], ("quick", "B"): [1]}, seconds=5
    )
    assert rank(tied, ["A", "B"])[0][0] == "quick"


def write_study(folder: Path) -> None:
    """GAPS as a results.csv, and a study file that names no real folder (nothing is run from a CSV)."""
    rows = loso_rows(GAPS)
    with (folder / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (folder / "study.yaml").write_text("datasets: {A: /nowhere}\nrecipes: {steady: []}\n")


def test_loso_from_a_results_csv_through_the_command(tmp_path):
    write_study(tmp_path)
    out = tmp_path / "out"
    command = ("recipe-study", "study.yaml", "--loso", "--from-csv", "results.csv", "--out", str(out))
    result = run_cli(*command, cwd=tmp_path)  # no data folder needed: nothing is run
    assert last_line(result.stdout) == f"leave-one-set-out table: {(out / 'loso.md').resolve()}"
    text = (out / "loso.md").read_text()
    assert "folds won: steady 2/3, spiky 1/3; default (most folds won): steady" in text
    assert (
        "| C | spiky (0 missed, +10.00) | steady (0 missed, +2.00) | 0.7700 | 0.7100 | 0.7100 0.8000 0.8000 "
        "| 0.8000 | -3.0 | 1/3 |" in text
    )
    bad = run_cli(*command[:-2], "--from-csv", "missing.csv", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "missing.csv not found" in bad.stderr.strip().splitlines()[0]


def test_the_default_beside_a_baseline_counts_the_sets_it_is_ahead_on(tmp_path):
    write_study(tmp_path)
    # The baseline (as scripts/fastai_baseline.py writes it): 0.81 on A (the default, steady at 0.82, ahead),
    # 0.91 on B (behind), nothing on C.
    (tmp_path / "fastai.csv").write_text(
        "dataset,recipe,seed,acc,seconds\nA,fastai-fine_tune,0,0.80,1\nA,fastai-fine_tune,1,0.82,1\n"
        "B,fastai-fine_tune,0,0.91,1\n"
    )
    command = (
        "recipe-study",
        "study.yaml",
        "--loso",
        "--from-csv",
        "results.csv",
        "--baseline",
        "fastai.csv",
    )
    run_cli(*command, "--out", "out", cwd=tmp_path)
    text = (tmp_path / "out" / "loso.md").read_text()
    assert "| A | 0.8200 (0.8200 0.8200 0.8200) | 0.8100 (0.8000 0.8200) | +1.0 |" in text
    assert "| B | 0.8200 (0.8200 0.8200 0.8200) | 0.9100 (0.9100) | -9.0 |" in text
    assert "| C | 0.8200 | not run | |" in text
    assert "steady ahead of fastai-fine_tune on 1 of 2 sets" in text
    (tmp_path / "bad.csv").write_text("dataset,seed,acc\nA,0,0.8\n")
    bad = run_cli(*command[:-1], "bad.csv", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "bad.csv: columns recipe missing" in bad.stderr.strip().splitlines()[0]
