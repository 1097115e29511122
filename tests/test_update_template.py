"""The template update: `python -m <package> update-template <checkout>` (what `make update-template` runs)
merges the template's changes to its project files three-way into a generated project: user edits kept,
clashes marked and listed, nothing written when the project's git tree is dirty."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from scaffold_helpers import cookiecutter_project, files, run_in, template_copy

from trainforge.errors import TemplateError
from trainforge.tools.template_update import plan, update_template

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def commit_all(cwd: Path, message: str) -> str:
    git(cwd, "add", "-A")
    git(cwd, "commit", "-q", "-m", message)
    return git(cwd, "rev-parse", "HEAD")


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, (path, old)
    path.write_text(text.replace(old, new))


LINES = [f"line {i}\n" for i in range(12)]


def test_plan_merges_each_changed_file_into_the_users_own(tmp_path):
    ours = LINES.copy()
    ours[1] = "line 1 (mine)\n"
    ours[9] = "line 9 (mine)\n"
    (tmp_path / "Makefile").write_text("".join(ours))
    (tmp_path / "edited.cfg").write_text("mine\n")
    (tmp_path / "same.cfg").write_text("a\n")
    base = {
        "Makefile": "".join(LINES).encode(),
        "edited.cfg": b"orig\n",
        "same.cfg": b"a\n",
        "gone.cfg": b"x\n",
    }
    theirs = LINES.copy()
    theirs[1] = "line 1 (template)\n"  # the user's line 1 too: a conflict
    theirs[5] = "line 5 (template)\n"  # a part the user left alone: merged
    new = {
        "Makefile": "".join(theirs).encode(),
        "edited.cfg": b"orig\n",
        "same.cfg": b"a\n",
        "added.cfg": b"new\n",
    }
    todo = plan(tmp_path, base, new, ("template old", "template new"))
    makefile = todo.writes["Makefile"].decode()
    assert todo.conflicts == ["Makefile"]
    assert "<<<<<<< yours\nline 1 (mine)\n=======\nline 1 (template)\n>>>>>>> template new\n" in makefile
    assert "line 5 (template)\n" in makefile and "line 9 (mine)\n" in makefile
    # edited.cfg and same.cfg: the template did not change them; gone.cfg: the user already deleted it.
    assert todo.merged == ["added.cfg (new)"] and todo.writes["added.cfg"] == b"new\n"
    assert set(todo.writes) == {"Makefile", "added.cfg"} and todo.kept == []


def test_plan_keeps_what_the_user_changed_or_deleted_when_the_template_removes_or_changes_it(tmp_path):
    (tmp_path / "removed_but_mine.cfg").write_text("mine\n")
    (tmp_path / "removed.cfg").write_text("orig\n")
    base = {"removed_but_mine.cfg": b"orig\n", "removed.cfg": b"orig\n", "deleted_by_me.cfg": b"orig\n"}
    new = {"deleted_by_me.cfg": b"changed\n"}
    todo = plan(tmp_path, base, new, ("old", "new"))
    assert todo.writes == {"removed.cfg": None} and todo.merged == ["removed.cfg (removed)"]
    assert todo.kept == [
        "deleted_by_me.cfg: you deleted it; the template changed it (left deleted)",
        "removed_but_mine.cfg: removed from the template, kept because you changed it",
    ]


def _project_repo(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    record = {"template": "x", "commit": "0" * 40, "engine": "0.2.0", "answers": {"project_name": "Leaf"}}
    (project / ".template.json").write_text(json.dumps(record))
    (project / "Makefile").write_text("all:\n")
    git(project, "init", "-q")
    commit_all(project, "start")
    return project


@pytest.mark.parametrize("dirt", ["edited", "untracked"])
def test_a_dirty_project_is_refused_and_nothing_is_written(tmp_path, dirt):
    project = _project_repo(tmp_path)
    if dirt == "edited":
        (project / "Makefile").write_text("all:\n\techo mine\n")
    else:
        (project / "notes.txt").write_text("mine\n")
    before = files(project, skip=(".git",))
    with pytest.raises(
        TemplateError, match="uncommitted change.*commit or stash them first; nothing was written"
    ):
        update_template(project, tmp_path)
    assert files(project, skip=(".git",)) == before


def test_a_project_outside_git_or_without_a_template_commit_is_refused(tmp_path):
    project = _project_repo(tmp_path)
    with pytest.raises(TemplateError, match="has no commit 0000000"):
        update_template(project, project)  # a git checkout, but not the template's
    (project / ".template.json").write_text(json.dumps({"engine": "0.2.0", "answers": {}}))
    commit_all(project, "no commit")
    with pytest.raises(TemplateError, match="no template commit or answers"):
        update_template(project, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ".template.json").write_text(
        json.dumps({"commit": "0" * 40, "engine": "0.2.0", "answers": {}})
    )
    with pytest.raises(TemplateError, match="is not a git repository"):
        update_template(outside, tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_make_update_template_merges_a_template_change_into_an_edited_makefile(tmp_path):
    template = template_copy(tmp_path / "template")
    git(template, "init", "-q")
    made_from = commit_all(template, "the template the project is made from")
    project = cookiecutter_project(tmp_path, template=template, project_name="Leaf Doctor")
    assert json.loads((project / ".template.json").read_text())["commit"] == made_from
    help_text = subprocess.run(["make", "-s", "help"], cwd=project, capture_output=True, text=True).stdout
    assert "update-template" in help_text and "TEMPLATE_FROM=" in help_text
    git(project, "init", "-q")
    commit_all(project, "generated")

    # The user edits one line of the Makefile and adds a target of their own.
    makefile = project / "Makefile"
    replace(makefile, "EXPERIMENT ?= default\n", "EXPERIMENT ?= leaves\n")
    with makefile.open("a") as handle:
        handle.write("\nmine: ## my own target\n\t@echo mine\n")
    mine = commit_all(project, "my edits")

    # The template changes the same line (a conflict) and another part of the Makefile (merged), adds a file.
    replace(template / "Makefile", "EXPERIMENT ?= default\n", "EXPERIMENT ?= fast\n")
    replace(template / "Makefile", "List every target with one line each", "List every target, one line each")
    (template / "configs" / "experiments").mkdir(exist_ok=True)
    (template / "configs" / "experiments" / "brand_new.yaml").write_text("trainer:\n  max_epochs: 2\n")
    (template / ".ci" / "extra_check").write_text("#!/bin/sh\necho ok\n")
    (template / ".ci" / "extra_check").chmod(0o755)
    newer = commit_all(template, "a newer template")

    # The project's own CLI on the engine source of the template it came from (its vendored wheel's code).
    engine = template / "engine"
    (project / "scratch.txt").write_text("not committed\n")
    refused = run_in(project, engine, "-m", "leaf_doctor", "update-template", str(template), ok=False)
    assert refused.returncode == 2 and "uncommitted change" in refused.stderr
    assert git(project, "rev-parse", "HEAD") == mine and "<<<<<<<" not in makefile.read_text()
    (project / "scratch.txt").unlink()

    done = run_in(project, engine, "-m", "leaf_doctor", "update-template", str(template), ok=False)
    assert done.returncode == 1, done.stdout + done.stderr  # conflicts remain to be resolved
    out = done.stdout
    assert "CONFLICTS" in out and "\n  Makefile" in out.split("CONFLICTS")[1], out
    assert "configs/experiments/brand_new.yaml (new)" in out.split("CONFLICTS")[0], out
    text = makefile.read_text()
    assert (
        f"<<<<<<< yours\nEXPERIMENT ?= leaves\n=======\nEXPERIMENT ?= fast\n>>>>>>> template {newer[:8]}\n"
        in text
    )
    assert "List every target, one line each" in text  # the other part, merged cleanly
    assert "mine: ## my own target" in text  # the user's own addition kept
    assert (project / "configs/experiments/brand_new.yaml").read_text() == "trainer:\n  max_epochs: 2\n"
    assert (project / ".ci/extra_check").stat().st_mode & 0o777 == 0o755  # a new script stays executable
    assert json.loads((project / ".template.json").read_text())["commit"] == newer
    changed = git(project, "status", "--porcelain").splitlines()
    assert sorted(line.split()[-1] for line in changed) == [
        ".ci/extra_check",
        ".template.json",
        "Makefile",
        "configs/experiments/brand_new.yaml",
    ]
