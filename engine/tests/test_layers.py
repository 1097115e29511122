"""The engine's imports flow one way (layers in engine/tests/layers.py, docs/engine.md), with no cycle."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.layers import LAYERS, violations

ENGINE = Path(__file__).resolve().parents[1]


def test_engine_imports_flow_one_way_without_cycles():
    assert violations(ENGINE) == []


def test_every_layer_unit_exists_so_the_map_does_not_rot():
    placed = [unit.replace(".", "/") for _, layer in LAYERS for unit in layer]
    root = ENGINE / "trainforge"
    missing = [u for u in placed if not (root / u).is_dir() and not (root / f"{u}.py").is_file()]
    assert missing == []


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(
        ENGINE / "trainforge", tmp_path / "trainforge", ignore=shutil.ignore_patterns("*.yaml", "__pycache__")
    )
    return tmp_path


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}\n")


def test_a_planted_upward_import_is_reported(tmp_path):
    root = _copy(tmp_path)
    before = violations(root)
    # Inside a function, as a lazy import would be: still a dependency of data on models.
    _append(root / "trainforge/data/digits.py", "def _f():\n    from trainforge.models import Model")
    _append(root / "trainforge/tasks/regression.py", "from ..data import split")
    new = set(violations(root)) - set(before)
    assert new == {
        "upward import: trainforge.data.digits (data) imports trainforge.models (models)",
        "upward import: trainforge.tasks.regression (tasks) imports trainforge.data.split (data)",
    }


def test_a_planted_cycle_is_reported(tmp_path):
    root = _copy(tmp_path)
    before = set(violations(root))
    (root / "trainforge/training/ping.py").write_text("from trainforge.training import pong\n")
    (root / "trainforge/training/pong.py").write_text("import trainforge.training.ping\n")
    new = set(violations(root)) - before
    assert new == {"import cycle: trainforge.training.ping <-> trainforge.training.pong"}


def test_a_package_in_no_layer_is_reported_not_passed(tmp_path):
    root = _copy(tmp_path)
    (root / "trainforge/newthing").mkdir()
    (root / "trainforge/newthing/__init__.py").write_text("from trainforge.errors import TemplateError\n")
    assert (
        "trainforge.newthing is in no layer: add it to LAYERS in engine/tests/layers.py (and docs/engine.md)"
        in violations(root)
    )
