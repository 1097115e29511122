"""Write a new project: the user's surface of a template checkout (package renamed, answers applied) and
the engine pinned as a wheel in vendor/.

Cookiecutter calls `render` from hooks/post_gen_project.py; `python -m template new <dest>` does the same
without cookiecutter. The project gets no engine source, only `vendor/trainforge-<version>-*.whl`: it never
edits the engine, so `make update-engine` (tools/update.py) can swap the wheel without touching its code.
"""

from __future__ import annotations

import argparse
import json
import keyword
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from trainforge.errors import TemplateError
from trainforge.gitinfo import git_commit
from trainforge.tools.update import RECORD, VENDOR, build_wheel, set_pins, wheel_version

PACKAGE = "template"
# What a project is made of (everything else in the template — engine/, docs/, scripts/, hooks/ — stays).
SURFACE = (
    f"{PACKAGE}/", "configs/", "tests/", ".ci/", ".github/", "slurm/",
    "Makefile", "pyproject.toml", "constraints.txt", ".gitignore", ".pre-commit-config.yaml",
)  # fmt: skip
# The template's tests of this machinery; a project does not scaffold others.
TEMPLATE_ONLY = (
    "tests/test_scaffold.py",
    "tests/test_update.py",
    "tests/test_update_template.py",
    "tests/scaffold_helpers.py",
)
# Names a generated package must not shadow: the dependencies it imports and common stdlib modules.
TAKEN = {
    "torch", "torchvision", "lightning", "pytorch_lightning", "timm", "torchmetrics", "jsonargparse",
    "wandb", "sklearn", "numpy", "pandas", "matplotlib", "rich", "safetensors", "PIL", "yaml", "optuna",
    "tests", "test", "hooks", "configs", "docs", "runs", "vendor", "onnx", "onnxruntime", "cookiecutter",
    "copier", "trainforge", "engine",
} | set(sys.stdlib_module_names)  # fmt: skip
EXAMPLES = ("digits", "bring_your_own")
LICENSES = {
    "MIT": "MIT License\n\nCopyright (c) {author}\n\nPermission is hereby granted, free of charge, to any "
    "person obtaining a copy of this software, to deal in the Software without restriction.\n",
    "Apache-2.0": "Copyright {author}\n\nLicensed under the Apache License, Version 2.0: "
    "https://www.apache.org/licenses/LICENSE-2.0\n",
    "BSD-3-Clause": "Copyright (c) {author}\n\nRedistribution and use in source and binary forms, with or "
    "without modification, are permitted under the BSD 3-Clause License.\n",
    "Proprietary": "Copyright (c) {author}. All rights reserved.\n",
}


class ScaffoldError(TemplateError, ValueError):
    """A bad answer or an unusable template; raised before anything is written."""


@dataclass
class Answers:
    project_name: str
    package_name: str = ""
    author: str = "Your Name"
    license: str = "MIT"
    wandb: bool = True
    example: str = "digits"

    def __post_init__(self) -> None:
        if not self.package_name:
            self.package_name = re.sub(r"\W+", "_", self.project_name.strip().lower()).strip("_")

    @property
    def slug(self) -> str:
        return self.package_name.replace("_", "-")


def validate(answers: Answers) -> None:
    name = answers.package_name
    if not name.isidentifier() or not name.isascii() or name != name.lower():
        raise ScaffoldError(
            f"package name '{name}' is not a lowercase Python identifier: use letters, digits and '_' "
            "(e.g. leaf_doctor), not starting with a digit"
        )
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise ScaffoldError(f"package name '{name}' is a Python keyword: choose another name")
    if name in TAKEN or name == PACKAGE:
        raise ScaffoldError(
            f"package name '{name}' clashes with a module the project imports: choose another name"
        )
    if answers.license not in LICENSES:
        raise ScaffoldError(f"license '{answers.license}' is not one of {', '.join(LICENSES)}")
    if answers.example not in EXAMPLES:
        raise ScaffoldError(f"example '{answers.example}' is not one of {', '.join(EXAMPLES)}")


def is_template(path: Path) -> bool:
    """A template checkout: the engine's source next to the project package."""
    return (path / "engine" / "pyproject.toml").is_file() and (path / PACKAGE).is_dir()


def source_files(src: Path) -> list[str]:
    """The surface files of the template: what git tracks or would track (a file just added counts), or,
    outside a checkout, every file but caches, builds and runs."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=src,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        files = out.splitlines()
    except (OSError, subprocess.CalledProcessError):
        files = [p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file() and not _ignored(p)]
    keep = [f for f in files if f.startswith(SURFACE) and f not in TEMPLATE_ONLY and (src / f).is_file()]
    return sorted(f for f in keep if "__pycache__" not in f)


def _ignored(path: Path) -> bool:
    junk = {".git", ".venv", "runs", "__pycache__", ".pytest_cache", ".ruff_cache", "build", "dist", "wandb"}
    return any(part in junk or part.endswith(".egg-info") for part in path.parts)


def rename(text: str, package: str) -> str:
    """Rename code references to the template package. Prose that says 'template' stays, and the engine
    (`trainforge`, TRAINFORGE_* variables, `.template.json`) is never renamed: projects share one engine."""
    text = re.sub(r"(?<!\.)\btemplate(?=[./:][\w*])", package, text)  # template.data, template/data.py
    text = re.sub(r"(-m |import |from |^)template(?![\w-])", rf"\g<1>{package}", text, flags=re.M)
    text = re.sub(
        r"(\bimport (?:[\w.]+, )+)template(?![\w-])", rf"\g<1>{package}", text
    )  # import a, template
    text = re.sub(r"\"template(\*?)\"", rf'"{package}\1"', text)  # pyproject name and package include
    text = re.sub(r"^(PACKAGE\s*:?=\s*)template\s*$", rf"\g<1>{package}", text, flags=re.M)  # Makefile
    return re.sub(r"(--job-name=|project: )template$", rf"\g<1>{package.replace('_', '-')}", text, flags=re.M)


def render(src: Path, dest: Path, answers: Answers) -> Path:
    """Write the project into `dest` (which may exist and hold only cookiecutter's own file)."""
    validate(answers)
    src = src.resolve()
    if not is_template(src):
        raise ScaffoldError(f"{src} is not a template checkout (no engine/pyproject.toml next to {PACKAGE}/)")
    with tempfile.TemporaryDirectory(prefix="trainforge-wheel-") as tmp:
        wheel = build_wheel(src / "engine", Path(tmp))  # first: a failed build leaves nothing written
        (dest / VENDOR).mkdir(parents=True, exist_ok=True)
        shutil.copy2(wheel, dest / VENDOR / wheel.name)
        version = wheel_version(wheel)
    render_surface(src, dest, answers, version)
    return dest


def render_surface(src: Path, dest: Path, answers: Answers, version: str) -> None:
    """The project without its engine wheel: the template's surface, renamed, with the answers applied
    for engine `version` (`update-template` renders two of these, old and new, to merge)."""
    package = answers.package_name
    for rel in source_files(src):
        target = dest / re.sub(rf"^{PACKAGE}/", f"{package}/", rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            text = (src / rel).read_text()
        except UnicodeDecodeError:
            shutil.copy2(src / rel, target)
            continue
        target.write_text(rename(text, package))
        target.chmod((src / rel).stat().st_mode)
    _apply_options(dest, answers, src, version)


def _apply_options(dest: Path, answers: Answers, src: Path, version: str) -> None:
    package = answers.package_name
    pyproject = dest / "pyproject.toml"
    text = pyproject.read_text().replace(
        'license = { text = "Apache-2.0" }', f'license = {{ text = "{answers.license}" }}'
    )
    text = text.replace(
        'requires-python = ">=3.10"',
        f'requires-python = ">=3.10"\nauthors = [{{ name = "{answers.author}" }}]',
    )
    # The template also runs engine/tests; a project has only its own.
    text = re.sub(r"^testpaths\s*=.*$", 'testpaths = ["tests"]', text, flags=re.M)
    pyproject.write_text(set_pins(text, version))
    constraints = dest / "constraints.txt"
    if constraints.is_file():
        constraints.write_text(set_pins(constraints.read_text(), version))
    (dest / "LICENSE").write_text(LICENSES[answers.license].format(author=answers.author))
    if not answers.wandb:
        logger = dest / "configs" / "logger.yaml"
        logger.write_text(logger.read_text().replace("enabled: true", "enabled: false"))
    if answers.example == "bring_your_own":
        (dest / package / "my_data.py").write_text(BYO_MODULE.replace("PKG", package))
        (dest / "configs" / "experiments" / "my_data.yaml").write_text(BYO_EXPERIMENT.replace("PKG", package))
    (dest / "README.md").write_text(_readme(answers, version))
    record = {"template": str(src), "commit": git_commit(src), "engine": version, "answers": asdict(answers)}
    (dest / RECORD).write_text(json.dumps(record, indent=2) + "\n")


BYO_MODULE = '''"""Your data: fill in `MyData.build_datasets`, then `make train EXPERIMENT=my_data`.
`ProjectData` in data.py is a working example (the digits) to copy from.
"""

from __future__ import annotations

from typing import Any

from trainforge.data import DataModule, Splits
from trainforge.tasks import Multiclass


class MyData(DataModule):
    """Your data.

    Args:
        root: Where your data lives.
        **kwargs: The engine's DataModule options: batch_size, num_workers, split_seed, sampler, ...
    """

    def __init__(self, root: str = "data", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = root
        # TODO: your class names in label order (or Binary, Multilabel, Regression from trainforge.tasks).
        self.task = Multiclass(["class_a", "class_b"])
        self.in_chans = 3  # channels of your images

    def build_datasets(self) -> Splits:
        # TODO: return Splits(train=..., val=..., test=...) of (input, target) pairs.
        raise NotImplementedError(
            "fill in MyData.build_datasets in PKG/my_data.py: return Splits(train=..., val=..., test=...)"
        )
'''
BYO_EXPERIMENT = """# Your data (PKG/my_data.py): fill in MyData.build_datasets, then `make train EXPERIMENT=my_data`.
data:
  class_path: PKG.my_data.MyData
  init_args:
    root: data
    batch_size: 32
"""


def _readme(answers: Answers, version: str) -> str:
    p, a = answers.package_name, answers
    byo = (
        f" Your own data: `{p}/my_data.py`, then `make train EXPERIMENT=my_data`."
        if a.example != "digits"
        else ""
    )
    return f"""# {a.project_name}

A deep-learning project on the trainforge engine ({version}, pinned: `vendor/`, `pyproject.toml`).

```bash
make install  # .venv with the engine from vendor/ and this package
make train    # trains the default experiment, tests the best checkpoint, prints a summary
make test     # this project's tests
make help     # every target
```

- `{p}/data.py`: hook 1, your data (`ProjectData.build_datasets`).{byo}
- `{p}/model.py`: hook 2, your model (`ProjectModel.build_backbone`, `build_head`).
- `configs/`: this project's configs; the engine's built-in ones (e.g. `--experiment swa`) fill in the rest.
- `tests/`: this project's tests. Runs land in `runs/<experiment>/<run>/`.
- `.template.json`: the template commit, engine version and answers this project was made with.

## A newer engine

`make update-engine ENGINE_FROM=<newer template checkout or trainforge-*.whl>` replaces the wheel in
`vendor/`, moves the `trainforge==` pins and `.template.json`, and reinstalls. It never touches `{p}/`,
`configs/` or `tests/`. Review with `git diff`, then `make test`.

## A newer template

`make update-template TEMPLATE_FROM=<the template's git checkout>` merges what changed in the template's
project files (Makefile, CI, configs, ...) since this project was made, three-way with your edits (the
answers above, in `.template.json`): clashes get conflict markers and are listed. It needs a clean git tree.
"""


def template_root(given: Path | None) -> Path:
    """The template checkout to render: --template, else the one this engine runs from, else the cwd."""
    here = Path(__file__).resolve().parents[3]  # <checkout>/engine/trainforge/tools/scaffold.py
    for candidate in [given] if given else [here, Path.cwd()]:
        if candidate is not None and is_template(candidate.resolve()):
            return candidate.resolve()
    where = given or Path.cwd()
    raise ScaffoldError(
        f"{where} is not a template checkout (engine/ and {PACKAGE}/): run `python -m {PACKAGE} new` in "
        "the template's repository, or give --template <checkout>"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="new",
        description="Write a new project: the template's surface plus the pinned engine wheel.",
        allow_abbrev=False,
    )
    parser.add_argument("dest", type=Path)
    parser.add_argument("--project-name", required=True)
    parser.add_argument("--package-name", default="")
    parser.add_argument("--author", default="Your Name")
    parser.add_argument("--license", default="MIT", choices=list(LICENSES))
    parser.add_argument("--no-wandb", action="store_true")
    parser.add_argument("--example", default="digits", choices=EXAMPLES)
    parser.add_argument("--template", type=Path, default=None, help="template checkout (default: this one)")
    args = parser.parse_args(argv)
    answers = Answers(
        args.project_name, args.package_name, args.author, args.license, not args.no_wandb, args.example
    )
    validate(answers)
    src = template_root(args.template)
    dest: Path = args.dest
    if dest.exists() and any(dest.iterdir()):
        raise ScaffoldError(f"{dest} exists and is not empty; choose a new folder")
    existed = dest.exists()
    try:
        render(src, dest, answers)
    except BaseException:  # a half-written project is worse than none: remove what this call wrote
        if existed:
            for child in dest.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        else:
            shutil.rmtree(dest, ignore_errors=True)
        raise
    print(f"project written to {dest}: cd there, then `make install`, `make test` and `make train`")


if __name__ == "__main__":
    try:
        main()
    except TemplateError as error:
        sys.exit(f"error: {error}")
