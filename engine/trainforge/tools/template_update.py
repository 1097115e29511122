"""Take a newer template's project files into a generated project: `make update-template
TEMPLATE_FROM=<template checkout>` (which runs `python -m <project> update-template <checkout>`).

cruft's principle, three-way per file: the project is rendered with its recorded answers (`.template.json`)
from the template commit it was made from (the base) and from the checkout's HEAD (or `--to`); each file's
change between the two is merged into the project's own file with `git merge-file`, so user edits stay and a
clash shows as inline conflict markers, listed at the end. Not cruft itself: it needs a project made by
cruft (`.cruft.json`) and falls back to `.rej` files where a patch does not apply; projects here come from
`new` or cookiecutter with their answers in `.template.json`.

Nothing is written unless the project's git tree is clean (so `git diff` shows the update and
`git checkout .` undoes it), and every merge is computed before the first file changes. The engine (vendor/,
the trainforge pins) is `make update-engine`'s: both renders use the project's engine version.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from trainforge.errors import TemplateError
from trainforge.tools.scaffold import Answers, is_template, render_surface
from trainforge.tools.update import RECORD, VENDOR


@dataclass
class Plan:
    """What the update writes (relative path -> new bytes, None: delete), and what it tells the user."""

    writes: dict[str, bytes | None] = field(default_factory=dict)
    merged: list[str] = field(default_factory=list)  # the template's change taken in, no clash
    conflicts: list[str] = field(default_factory=list)  # conflict markers written, to resolve
    kept: list[str] = field(default_factory=list)  # left as the user has it, with the reason


def _git(cwd: Path, *args: str, binary: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=not binary)


def check_clean(project: Path) -> None:
    """Refuse a project whose changes the merge would mix with its own (or that git does not track)."""
    status = _git(project, "status", "--porcelain")
    if status.returncode:
        raise TemplateError(
            f"{project} is not a git repository: the update must be reviewable and undoable; run "
            "`git init && git add -A && git commit -m start` first"
        )
    dirty = status.stdout.splitlines()
    if dirty:
        raise TemplateError(
            f"{project} has {len(dirty)} uncommitted change(s) (e.g. {dirty[0][3:]}): commit or stash them "
            "first; nothing was written"
        )


def template_at(source: Path, rev: str, dest: Path) -> str:
    """The template's files at `rev` (a commit of the checkout `source`) in `dest`; returns the full sha."""
    sha = _git(source, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if sha.returncode:
        raise TemplateError(
            f"{source} has no commit {rev}: give the template's git checkout this project was made from "
            "(or one that holds its history)"
        )
    archive = _git(source, "archive", "--format=tar", sha.stdout.strip(), binary=True)
    if archive.returncode:
        raise TemplateError(f"git archive {rev} in {source} failed: {archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        # The "data" filter (no links out, no device files) where this Python has it (3.10.12+).
        tar.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    if not is_template(dest):
        raise TemplateError(f"{source} at {rev} is not a template checkout (engine/ and template/)")
    return sha.stdout.strip()


def project_files(root: Path) -> dict[str, bytes]:
    """A rendered project's files (relative path -> bytes), without the engine and the record."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] not in (VENDOR, RECORD)
    }


def merge_file(ours: bytes, base: bytes, theirs: bytes, labels: tuple[str, str, str]) -> tuple[bytes, int]:
    """`git merge-file`'s result and its conflict count (0: merged cleanly)."""
    with tempfile.TemporaryDirectory(prefix="trainforge-merge-") as tmp:
        paths = [Path(tmp) / name for name in ("ours", "base", "theirs")]
        for path, data in zip(paths, (ours, base, theirs), strict=True):
            path.write_bytes(data)
        label_args = [arg for label in labels for arg in ("-L", label)]
        result = subprocess.run(
            ["git", "merge-file", "-p", *label_args, *map(str, paths)], capture_output=True
        )
    if result.returncode < 0 or result.returncode > 127:
        raise TemplateError(f"git merge-file failed: {result.stderr.decode().strip()}")
    return result.stdout, result.returncode


def plan(project: Path, base: dict[str, bytes], new: dict[str, bytes], labels: tuple[str, str]) -> Plan:
    """Each file the template changed between `base` and `new`, merged into the project's own."""
    result = Plan()
    for rel in sorted(base.keys() | new.keys()):
        old, theirs = base.get(rel), new.get(rel)
        if old == theirs:
            continue  # the template did not change it: the user's version stands
        path = project / rel
        ours = path.read_bytes() if path.is_file() else None
        if ours == theirs:
            continue  # already as the newer template has it
        if theirs is None:  # removed from the template
            if ours == old:
                result.writes[rel] = None
                result.merged.append(f"{rel} (removed)")
            elif ours is not None:
                result.kept.append(f"{rel}: removed from the template, kept because you changed it")
            continue
        if ours is None:
            if old is None:
                result.writes[rel] = theirs
                result.merged.append(f"{rel} (new)")
            else:
                result.kept.append(f"{rel}: you deleted it; the template changed it (left deleted)")
            continue
        if b"\0" in ours + theirs + (old or b""):
            result.kept.append(f"{rel}: a binary file changed on both sides; yours kept")
            continue
        merged, conflicts = merge_file(ours, old or b"", theirs, ("yours", *labels))
        result.writes[rel] = merged
        (result.conflicts if conflicts else result.merged).append(rel)
    return result


def apply(project: Path, todo: Plan, modes: dict[str, int]) -> None:
    """Write the plan; a file new to the project gets the template's mode (an executable .ci/run stays so)."""
    for rel, data in todo.writes.items():
        path = project / rel
        if data is None:
            path.unlink()
            continue
        existed = path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if not existed and rel in modes:
            path.chmod(modes[rel])


def update_template(project: Path | str, source: Path | str, to: str = "HEAD") -> Plan:
    """Merge the template's changes from the project's recorded commit to `to` of `source` into `project`."""
    project, source = Path(project).resolve(), Path(source).expanduser().resolve()
    record_path = project / RECORD
    if not record_path.is_file():
        raise TemplateError(f"no {RECORD} in {project}: run this in a generated project, from its root")
    record = json.loads(record_path.read_text())
    commit = (record.get("commit") or "").removesuffix("-dirty")
    if not commit or "answers" not in record:
        raise TemplateError(
            f"{RECORD} has no template commit or answers: this project was made from a template without "
            "git history, so there is no base to merge from"
        )
    check_clean(project)
    try:
        answers, version = Answers(**record["answers"]), record["engine"]
    except (TypeError, KeyError) as error:
        raise TemplateError(
            f"{record_path} is not a template record ({error}): restore it from git"
        ) from error
    with tempfile.TemporaryDirectory(prefix="trainforge-template-") as tmp:
        renders = []
        for name, rev in (("base", commit), ("new", to)):
            tree, out = Path(tmp) / f"{name}-template", Path(tmp) / f"{name}-project"
            sha = template_at(source, rev, tree)
            render_surface(tree, out, answers, version)
            renders.append((sha, project_files(out)))
        modes = {
            p.relative_to(out).as_posix(): p.stat().st_mode & 0o777 for p in out.rglob("*") if p.is_file()
        }
    (old_sha, base), (new_sha, new) = renders
    todo = plan(project, base, new, (f"template {old_sha[:8]}", f"template {new_sha[:8]}"))
    apply(project, todo, modes)
    record.update(template=str(source), commit=new_sha)
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return todo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="update-template",
        description="Merge a newer template's project files (Makefile, CI, configs, ...) into this project.",
        allow_abbrev=False,
    )
    parser.add_argument("source", type=Path, help="the template's git checkout (holding the old commit too)")
    parser.add_argument("--to", default="HEAD", help="the template revision to update to (default: HEAD)")
    parser.add_argument("--project", type=Path, default=Path.cwd(), help="the project (default: here)")
    args = parser.parse_args(argv)
    todo = update_template(args.project, args.source, args.to)
    for title, items in (
        ("merged", todo.merged),
        ("kept as you have it", todo.kept),
        ("CONFLICTS (resolve the <<<<<<< ======= >>>>>>> markers, then commit)", todo.conflicts),
    ):
        if items:
            print(f"{title}:\n" + "\n".join(f"  {item}" for item in items))
    if not (todo.merged or todo.kept or todo.conflicts):
        print("the template's changes were already in this project")
    print(f"{RECORD} now records the template at {json.loads((args.project / RECORD).read_text())['commit']}")
    print("review with `git diff`, undo with `git checkout .`; the engine itself: `make update-engine`")
    return 1 if todo.conflicts else 0
