"""`python -m trainforge.tools.spotcheck`: two backbones on the same split, ranked, as a table, CSV and PNG."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import timm
import yaml
from PIL import Image

from tests.conftest import FAST
from tests.test_sweep import sweep_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_spotcheck_ranks_backbones_on_the_same_split(tmp_path: Path) -> None:
    overrides = [a for a in FAST if not a.startswith(("--model.backbone", "--trainer.max_epochs"))]
    command = [
        sys.executable, "-m", "trainforge.tools.spotcheck", "--models", "resnet10t", "test_resnet", "--epochs", "1",
        "--name", "tiny", *overrides, "--trainer.limit_test_batches=1", "--wandb.enabled=false",
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=tmp_path, env=sweep_env(), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = tmp_path / "runs" / "spotcheck" / "tiny"
    frame = pd.read_csv(out / "results.csv")
    assert sorted(frame["model"]) == ["resnet10t", "test_resnet"]
    assert list(frame["rank"]) == [1, 2]
    assert frame["val/acc"].is_monotonic_decreasing and frame["val/acc"].between(0, 1).all()
    assert frame["fit_s"].gt(0).all()
    for row in frame.to_dict("records"):
        backbone = timm.create_model(row["model"], num_classes=0, in_chans=1)
        expected = sum(p.numel() for p in backbone.parameters()) + backbone.num_features * 10 + 10
        assert row["params_M"] == round(expected / 1e6, 3)
    configs = [yaml.safe_load((Path(d) / "config.yaml").read_text()) for d in frame["run_dir"]]
    assert configs[0]["data"] == configs[1]["data"]  # same data, same split
    assert {c["model"]["init_args"]["backbone"] for c in configs} == {"resnet10t", "test_resnet"}
    with Image.open(out / "ranking.png") as image:
        assert image.size[0] >= 400
    assert "resnet10t" in result.stdout and "spotcheck directory:" in result.stdout
