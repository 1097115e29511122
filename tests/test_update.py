"""The engine update: a project generated on an older engine moves to this checkout's engine with
`python -m <package> update <checkout>` (what `make update-engine` runs), keeps every user edit byte for
byte, and trains on the new engine; downgrades, the template's own repository and odd paths are refused."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from scaffold_helpers import (
    ENGINE,
    REPO,
    cookiecutter_project,
    engine_seen,
    files,
    install_engine,
    project_tests,
    quick_tests,
    run_in,
    short_fit,
    template_copy,
    vendored,
)

from trainforge.errors import TemplateError
from trainforge.gitinfo import git_commit
from trainforge.tools.update import engine_version, main, set_pins, update

OLD = "0.1.9"
WHEEL = "trainforge-{}-py3-none-any.whl"
MY_TEST = """from leaf_doctor.data import ProjectData
from leaf_doctor.my_transforms import SCALE


def test_my_edits_survive_the_engine_update():
    assert SCALE == 2 and ProjectData().my_note == "leaves"
"""


def _edit(project) -> None:
    """What a user does after generating: hook code and docstring, a config value, new files."""
    data = project / "leaf_doctor" / "data.py"
    text = data.read_text()
    assert '"""The project\'s data.' in text and "self.in_chans = 1\n" in text
    text = text.replace('"""The project\'s data.', '"""Leaves, photographed by me.')
    data.write_text(
        text.replace("self.in_chans = 1\n", 'self.in_chans = 1\n        self.my_note = "leaves"\n')
    )
    config = project / "configs" / "data.yaml"
    assert "batch_size: 64" in config.read_text()
    config.write_text(config.read_text().replace("batch_size: 64", "batch_size: 48"))
    (project / "leaf_doctor" / "my_transforms.py").write_text("SCALE = 2\n")
    (project / "tests" / "test_my_edit.py").write_text(MY_TEST)
    with (project / "Makefile").open("a") as makefile:
        makefile.write("\nmine: ## my own target\n\t@echo mine\n")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_update_moves_an_older_project_to_this_engine_and_keeps_every_user_edit(tmp_path):
    new = engine_version(ENGINE)
    old_template = template_copy(tmp_path / "old-template", OLD)
    project = cookiecutter_project(tmp_path, template=old_template, project_name="Leaf Doctor")
    assert [w.name for w in vendored(project)] == [WHEEL.format(OLD)]
    assert f'"trainforge=={OLD}"' in (project / "pyproject.toml").read_text()
    assert json.loads((project / ".template.json").read_text())["engine"] == OLD
    old_site = install_engine(project, tmp_path / "old-site")
    assert engine_seen(project, old_site)["marker"] == OLD  # the project really runs the old engine
    old_wheel = Path(shutil.copy(vendored(project)[0], tmp_path))
    _edit(project)
    before, record_before = files(project), json.loads((project / ".template.json").read_text())

    done = run_in(project, old_site, "-m", "leaf_doctor", "update", str(REPO))  # the old engine's tool
    assert f"trainforge {OLD} -> {new}" in done.stdout, done.stdout

    after = files(project)
    changed = {rel for rel in before.keys() | after.keys() if before.get(rel) != after.get(rel)}
    expected = {
        f"vendor/{WHEEL.format(OLD)}",
        f"vendor/{WHEEL.format(new)}",
        "pyproject.toml",
        ".template.json",
    }
    if "trainforge==" in before["constraints.txt"].decode():
        expected.add("constraints.txt")
    assert changed == expected, changed ^ expected  # every user edit (and every other file) byte-identical
    assert [w.name for w in vendored(project)] == [WHEEL.format(new)]
    assert after["pyproject.toml"].decode() == set_pins(before["pyproject.toml"].decode(), new)
    assert f'"trainforge=={new}"' in after["pyproject.toml"].decode()
    record = json.loads(after[".template.json"])
    assert record["engine"] == new and record["answers"] == record_before["answers"]
    assert record["template"] == str(REPO) and record["commit"] == git_commit(REPO)

    new_site = install_engine(project, tmp_path / "new-site")
    seen = engine_seen(project, new_site)
    assert seen["version"] == new and seen["marker"] is None and seen["file"].startswith(str(new_site)), seen
    project_tests(project, new_site, *quick_tests(project), "tests/test_my_edit.py")
    short_fit(project, new_site, "leaf_doctor")
    dry = subprocess.run(
        ["make", "-n", "update-engine", "ENGINE_FROM=/some/checkout"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert "-m leaf_doctor update /some/checkout" in dry.stdout, dry.stdout + dry.stderr

    settled = files(project)
    with pytest.raises(TemplateError, match=f"already has trainforge {new}; .* {OLD}, which is not newer"):
        update(project, old_wheel)
    with pytest.raises(TemplateError, match="not newer"):
        update(project, REPO)
    assert files(project) == settled


# ----------------------------------------------------------------------------- fast: refusals, pins
def _fake_project(root, version="0.2.0"):
    """A generated project's engine-facing files, with a stand-in wheel (the update never opens it)."""
    (root / "vendor").mkdir(parents=True)
    (root / "vendor" / WHEEL.format(version)).write_bytes(b"old wheel")
    (root / "pyproject.toml").write_text(
        f'dependencies = ["trainforge=={version}"]\ndev = ["trainforge[export]=={version}", "pytest>=8"]\n'
    )
    (root / "constraints.txt").write_text(f"torch==2.14.1\ntrainforge=={version}\n")
    (root / ".template.json").write_text(json.dumps({"engine": version, "commit": "abc", "answers": {}}))
    (root / "pkg").mkdir()
    (root / "pkg" / "data.py").write_text("# mine, trainforge==0.0.1 in a comment of my own\n")
    return root


def test_update_from_a_wheel_moves_only_the_wheel_the_pins_and_the_record(tmp_path, capsys):
    project = _fake_project(tmp_path / "p")
    (tmp_path / WHEEL.format("0.3.0")).write_bytes(b"new wheel")
    main([str(tmp_path / WHEEL.format("0.3.0")), "--project", str(project)])
    assert "trainforge 0.2.0 -> 0.3.0" in capsys.readouterr().out
    assert [w.name for w in vendored(project)] == [WHEEL.format("0.3.0")]
    assert (project / "vendor" / WHEEL.format("0.3.0")).read_bytes() == b"new wheel"
    assert (project / "pyproject.toml").read_text().count("==0.3.0") == 2
    assert (project / "constraints.txt").read_text() == "torch==2.14.1\ntrainforge==0.3.0\n"
    assert json.loads((project / ".template.json").read_text()) == {
        "engine": "0.3.0",
        "commit": "abc",
        "answers": {},
    }
    assert (project / "pkg" / "data.py").read_text() == "# mine, trainforge==0.0.1 in a comment of my own\n"


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_update_refuses_an_older_or_equal_engine_unless_forced(tmp_path, version):
    project = _fake_project(tmp_path / "p")
    source = tmp_path / WHEEL.format(version)
    source.write_bytes(b"other wheel")
    before = files(project)
    with pytest.raises(
        TemplateError, match=f"already has trainforge 0.2.0; .* holds {version}, which is not newer"
    ):
        update(project, source)
    assert files(project) == before
    update(project, source, force=True)
    assert [w.read_bytes() for w in vendored(project)] == [b"other wheel"]
    assert f"trainforge=={version}" in (project / "constraints.txt").read_text()


def test_update_refuses_the_template_repository_a_project_without_wheel_and_other_paths(tmp_path):
    with pytest.raises(TemplateError, match="is the template's own repository"):
        main([str(tmp_path), "--project", str(REPO)])
    (tmp_path / "bare").mkdir()
    with pytest.raises(TemplateError, match="no vendor/trainforge-\\*.whl"):
        update(tmp_path / "bare", tmp_path)
    project = _fake_project(tmp_path / "p")
    (tmp_path / "notes.txt").write_text("x")
    before = files(project)
    for neither in (tmp_path / "bare", tmp_path / "notes.txt", tmp_path / "missing.whl"):
        with pytest.raises(TemplateError, match="is neither a template checkout"):
            update(project, neither)
    assert files(project) == before


def test_an_interrupted_update_finishes_when_run_again(tmp_path):
    project = _fake_project(tmp_path / "p")
    source = tmp_path / WHEEL.format("0.3.0")
    source.write_bytes(b"new wheel")
    shutil.copy(source, project / "vendor")  # stopped after copying the new wheel, before anything else
    update(project, source)
    assert [w.name for w in vendored(project)] == [WHEEL.format("0.3.0")]
    assert "trainforge==0.3.0" in (project / "constraints.txt").read_text()
