"""The scaffold: cookiecutter renders the live template into a project that passes its own tests."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter

REPO = Path(__file__).resolve().parent.parent
CODE_REF = re.compile(r"\b(import|from) template\b|-m trainforge\b|\btemplate\.\w|\"template\"")


def _generate(out: Path, **answers: str) -> Path:
    return Path(cookiecutter(str(REPO), no_input=True, output_dir=str(out), extra_context=answers))


def _run(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(project), "WANDB_MODE": "offline"}
    env.pop("TRAINFORGE_CONFIGS", None)
    result = subprocess.run(
        [sys.executable, *args], cwd=project, env=env, capture_output=True, text=True, timeout=600
    )
    if check and result.returncode:
        raise AssertionError(result.stdout[-3000:] + result.stderr[-3000:])
    return result


@pytest.mark.parametrize(
    "answers",
    [
        {"project_name": "Leaf Doctor"},
        {
            "project_name": "Pet Scan",
            "package_name": "petscan",
            "example": "bring_your_own",
            "wandb": "no",
            "license": "Apache-2.0",
        },
    ],
    ids=["defaults", "byo-nowandb"],
)
def test_generated_project_is_renamed_and_passes_its_own_tests(tmp_path, answers):
    project = _generate(tmp_path, **answers)
    package = answers.get("package_name", "leaf_doctor")
    assert (
        project.name == package.replace("_", "-")
        if "package_name" in answers
        else project.name == "leaf-doctor"
    )
    assert (project / package / "cli.py").is_file() and not (project / "template").exists()
    for path in project.rglob("*"):
        if path.is_file() and (path.suffix in {".py", ".toml", ".yaml", ".yml"} or path.name == "Makefile"):
            assert not CODE_REF.search(path.read_text()), f"{path} still refers to the template package"
    assert f'{package} = "{package}.cli:main"' in (project / "pyproject.toml").read_text()
    record = json.loads((project / ".trainforge.json").read_text())
    assert (
        re.fullmatch(r"[0-9a-f]{40}(-dirty)?", record["commit"])
        and record["answers"]["package_name"] == package
    )
    assert (project / "LICENSE").read_text().startswith(("MIT", "Copyright"))
    assert ("enabled: false" in (project / "configs/logger.yaml").read_text()) == (
        answers.get("wandb") == "no"
    )
    for name in (
        "README.md",
        "Makefile",
        ".ci/run",
        ".github/workflows/ci.yml",
        ".gitignore",
        ".pre-commit-config.yaml",
    ):
        assert (project / name).is_file(), name

    _run(
        project, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_split.py", "tests/test_hooks.py"
    )
    fast = [
        "--model.backbone=resnet10t",
        "--data.image_size=16",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=3",
        "--trainer.limit_val_batches=2",
        "--trainer.enable_progress_bar=false",
    ]
    fit = _run(project, "-m", package, "fit", *fast)
    run_dir = Path(fit.stdout.strip().splitlines()[-1].removeprefix("run directory: "))
    assert run_dir.parent == project / "runs" / "default"
    assert "test/acc" in json.loads((run_dir / "summary.json").read_text())["metrics"]
    if answers.get("example") == "bring_your_own":
        byo_args = [a for a in fast if not a.startswith("--data.")]
        byo = _run(project, "-m", package, "fit", "--experiment", "my_data", *byo_args, check=False)
        assert byo.returncode != 0
        assert f"fill in MyDataModule.build_datasets in {package}/data/my_data.py" in byo.stderr


@pytest.mark.parametrize("bad", ["class", "torch", "1leaf", "Leaf-Doctor", "json"])
def test_invalid_package_names_are_refused_before_anything_is_written(tmp_path, bad):
    with pytest.raises(FailedHookException):
        _generate(tmp_path, project_name="Leaf Doctor", package_name=bad)
    assert list(tmp_path.iterdir()) == []


def test_render_refuses_with_a_clear_message():
    from trainforge.tools.scaffold import Answers, ScaffoldError, validate

    with pytest.raises(ScaffoldError, match="'torch' clashes with a module"):
        validate(Answers("x", "torch"))
    with pytest.raises(ScaffoldError, match="'class' is a Python keyword"):
        validate(Answers("x", "class"))
    assert Answers("Leaf Doctor").package_name == "leaf_doctor"
