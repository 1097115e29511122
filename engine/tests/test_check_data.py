"""`python -m trainforge.tools.check_data <folder>` (make check-data) on a good and on a broken image folder."""

from __future__ import annotations

import subprocess
import sys

from PIL import Image

from tests.conftest import REPO


def image(path, size=(12, 10), color=(200, 0, 0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def check(folder):
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "trainforge.tools.check_data", str(folder)],
        capture_output=True,
        text=True,
        env=env,
    )


def test_good_folder_reports_counts_imbalance_and_sizes(tmp_path):
    for i in range(4):
        image(tmp_path / "train" / "cat" / f"{i}.png", size=(10 + i, 20))
    image(tmp_path / "train" / "dog" / "0.jpg", size=(30, 40))
    image(tmp_path / "train" / "dog" / "1.jpg", size=(30, 40))
    image(tmp_path / "val" / "cat" / "0.png")
    image(tmp_path / "val" / "dog" / "0.png")
    result = check(tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.split() == ["cat", "4", "1"] for line in lines)
    assert any(line.split() == ["dog", "2", "1"] for line in lines)
    assert "imbalance ratio (largest / smallest train class): 2.00" in result.stdout
    assert "min 10x10, median 12x20, max 30x40" in result.stdout
    assert "looks trainable" in result.stdout


def test_broken_folder_names_every_problem(tmp_path):
    image(tmp_path / "train" / "cat" / "ok.png")
    image(tmp_path / "train" / "cat" / "ok2.png")
    image(tmp_path / "train" / "dog" / "ok.png")
    good = (tmp_path / "train" / "dog" / "ok.png").read_bytes()
    (tmp_path / "train" / "dog" / "truncated.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "train" / "dog" / "notes.jpg").write_text("not an image")
    (tmp_path / "train" / "bird").mkdir()
    image(tmp_path / "val" / "cat" / "0.png")
    result = check(tmp_path)
    assert result.returncode == 1
    err = result.stderr
    assert f"bad file: {tmp_path / 'train' / 'dog' / 'truncated.png'}" in err
    assert f"bad file: {tmp_path / 'train' / 'dog' / 'notes.jpg'}: not an image" in err
    assert f"{tmp_path / 'train' / 'bird'}: empty class folder" in err
    assert f"{tmp_path / 'val'}: class(es) missing from this split: bird, dog" in err
    assert "--data.skip_bad_images=true" in err and "cannot be trained on" in err


def test_single_class_and_missing_folder(tmp_path):
    image(tmp_path / "train" / "only" / "0.png")
    result = check(tmp_path)
    assert result.returncode == 1 and "1 class folder(s); a classifier needs at least 2" in result.stderr
    missing = check(tmp_path / "nope")
    assert missing.returncode == 1 and f"{tmp_path / 'nope'}: folder not found" in missing.stderr
