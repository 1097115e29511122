"""`recipe-study`: its table's arithmetic, and a real two-set study through the command a user types."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from tests.conftest import last_line, run_cli
from tests.transfer_helpers import make_folder, save_timm_weights
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
        ],
        "datasets": {"photos": str(tmp_path / "photos"), "scans": str(tmp_path / "scans")},
        "recipes": {"default": [], "frozen": ["--finetune.freeze_backbone=true"]},
    }  # fmt: skip
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    out = tmp_path / "out"
    command = ("recipe-study", str(tmp_path / "study.yaml"), "--out", str(out))
    result = run_cli(*command, cwd=tmp_path)
    assert last_line(result.stdout) == f"study table: {(out / 'table.md').resolve()}"
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["dataset"], r["recipe"]) for r in rows] == [
        ("photos", "default"), ("photos", "frozen"), ("scans", "default"), ("scans", "frozen"),
    ]  # fmt: skip
    for r in rows:
        assert 0 <= float(r["acc"]) <= 1 and 0 <= float(r["probe_acc"]) <= 1 and float(r["probe_c"]) > 0
        # selection never on the reported split: a folder without test/ reports val/ and selects on train's part
        assert r["selected_on"].startswith("15% of train")
        assert r["reported_on"] == ("test" if r["dataset"] == "photos" else "val (no test split)")
        assert r["reported_images"] == "9"
    text = (out / "table.md").read_text()
    assert "**photos** (reported on test, 9 images" in text and "| frozen |" in text
    # A rerun trains nothing: every run has its summary.json.
    logs = {p: p.stat().st_mtime_ns for p in (out / "logs").iterdir()}
    again = run_cli(*command, "--only", "scans", "--recipes", "frozen", cwd=tmp_path)
    assert " scans frozen seed 0" not in again.stdout
    assert {p: p.stat().st_mtime_ns for p in (out / "logs").iterdir()} == logs
    assert Path(last_line(again.stdout).split(": ", 1)[1]).read_text().count("| frozen |") == 1
