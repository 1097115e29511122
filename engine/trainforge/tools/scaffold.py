"""Render a new project from this repository's live files: package renamed, options applied.

Cookiecutter calls `render` from hooks/post_gen_project.py; `python -m trainforge.tools.scaffold` does the same
without cookiecutter. The template keeps no second copy of its code that could drift.
"""

from __future__ import annotations

import argparse
import json
import keyword
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from trainforge.gitinfo import git_commit

PACKAGE = "template"
# Names a generated package must not shadow: the dependencies it imports and common stdlib modules.
TAKEN = {
    "torch",
    "torchvision",
    "lightning",
    "pytorch_lightning",
    "timm",
    "torchmetrics",
    "jsonargparse",
    "wandb",
    "sklearn",
    "numpy",
    "pandas",
    "matplotlib",
    "rich",
    "safetensors",
    "PIL",
    "yaml",
    "optuna",
    "tests",
    "test",
    "hooks",
    "configs",
    "docs",
    "runs",
    "onnx",
    "onnxruntime",
    "cookiecutter",
    "copier",
} | set(sys.stdlib_module_names)
LICENSES = {
    "MIT": "MIT License\n\nCopyright (c) {author}\n\nPermission is hereby granted, free of charge, to any "
    "person obtaining a copy of this software, to deal in the Software without restriction.\n",
    "Apache-2.0": "Copyright {author}\n\nLicensed under the Apache License, Version 2.0: "
    "https://www.apache.org/licenses/LICENSE-2.0\n",
    "BSD-3-Clause": "Copyright (c) {author}\n\nRedistribution and use in source and binary forms, with or "
    "without modification, are permitted under the BSD 3-Clause License.\n",
    "Proprietary": "Copyright (c) {author}. All rights reserved.\n",
}
EXAMPLES = ("digits", "bring_your_own")
# Scaffold machinery stays with the template; the generated project does not scaffold others.
SKIP = (
    "cookiecutter.json",
    "hooks/",
    "{{cookiecutter.project_slug}}/",
    "tests/test_scaffold.py",
    "template/scaffold.py",
)


class ScaffoldError(ValueError):
    """A bad answer; raised before anything is written."""


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


def source_files(src: Path) -> list[str]:
    """The files git tracks (what a clone has), or every file but caches and runs outside a checkout."""
    try:
        out = subprocess.run(["git", "ls-files"], cwd=src, capture_output=True, text=True, check=True).stdout
        files = out.splitlines()
    except (OSError, subprocess.CalledProcessError):
        ignored = (".git/", ".venv/", "runs/", "__pycache__", ".pytest_cache/", ".ruff_cache/")
        files = [str(p.relative_to(src)) for p in src.rglob("*") if p.is_file()]
        files = [f for f in files if not any(part in f + "/" for part in ignored)]
    return [f for f in files if not f.startswith(SKIP) and (src / f).is_file()]


def rename(text: str, package: str) -> str:
    """Rename code references to the package; prose that says 'template' stays as it is."""
    text = re.sub(r"\btemplate(?=[./:][\w*])", package, text)  # trainforge.cli, template/data, trainforge.x:main
    text = re.sub(r"(-m |import |from |^)template(?![\w-])", rf"\g<1>{package}", text, flags=re.M)
    text = re.sub(r"\"template(\*?)\"", rf'"{package}\1"', text)  # pyproject name and package include
    text = re.sub(r"\bTRAINFORGE_(?=[A-Z])", f"{package.upper()}_", text)  # env var names
    return text.replace("project: template", f"project: {package.replace('_', '-')}")


def render(src: Path, dest: Path, answers: Answers) -> Path:
    """Write the project into `dest` (which may exist and hold only cookiecutter's own file)."""
    validate(answers)
    package = answers.package_name
    for rel in source_files(src):
        target_rel = re.sub(rf"^{PACKAGE}/", f"{package}/", rel)
        target = dest / target_rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            text = (src / rel).read_text()
        except UnicodeDecodeError:
            shutil.copy2(src / rel, target)
            continue
        target.write_text(rename(text, package))
        target.chmod((src / rel).stat().st_mode)
    _apply_options(dest, answers, src)
    return dest


def _apply_options(dest: Path, answers: Answers, src: Path) -> None:
    package = answers.package_name
    pyproject = dest / "pyproject.toml"
    text = pyproject.read_text().replace(
        'license = { text = "Apache-2.0" }', f'license = {{ text = "{answers.license}" }}'
    )
    text = text.replace(
        'requires-python = ">=3.10"',
        f'requires-python = ">=3.10"\nauthors = [{{ name = "{answers.author}" }}]',
    )
    pyproject.write_text(text)
    (dest / "LICENSE").write_text(LICENSES[answers.license].format(author=answers.author))
    if not answers.wandb:
        logger = dest / "configs" / "logger.yaml"
        logger.write_text(logger.read_text().replace("enabled: true", "enabled: false"))
    if answers.example == "bring_your_own":
        _write_byo(dest, package)
    (dest / "README.md").write_text(_readme(answers))
    record = {"template": str(src), "commit": git_commit(src), "answers": asdict(answers)}
    (dest / ".trainforge.json").write_text(json.dumps(record, indent=2) + "\n")


def _write_byo(dest: Path, package: str) -> None:
    (dest / package / "data" / "my_data.py").write_text(
        f'''"""Your data. Fill in `build_datasets`; then `make train EXPERIMENT=my_data`."""

from {package}.data.datamodule import DataModule, Splits


class MyDataModule(DataModule):
    def __init__(self, root: str = "data", batch_size: int = 32) -> None:
        super().__init__(batch_size=batch_size)
        self.root = root
        self.class_names = ["TODO_class_a", "TODO_class_b"]  # TODO: your class names, in label order

    def build_datasets(self) -> Splits:
        # TODO: return Splits(train=..., val=..., test=...) of (input tensor, class index) pairs.
        raise NotImplementedError(
            "fill in MyDataModule.build_datasets in {package}/data/my_data.py: return Splits(train=..., val=...)"
        )
'''
    )
    (dest / "configs" / "experiments" / "my_data.yaml").write_text(
        f"# Your data: fill in {package}/data/my_data.py first.\ndata:\n  class_path: {package}.data.my_data.MyDataModule\n"
    )


def _readme(answers: Answers) -> str:
    p = answers.package_name
    byo = (
        f"\nYour data goes in `{p}/data/my_data.py` (`MyDataModule.build_datasets`), then "
        "`make train EXPERIMENT=my_data`.\n"
        if answers.example == "bring_your_own"
        else ""
    )
    return f"""# {answers.project_name}

## Set-up

```bash
make train   # creates .venv, installs, trains the default experiment (digits), tests the best checkpoint
make test    # runs the test suite
```

`make help` lists every target. Runs land in `runs/<experiment>/<run>/` with `summary.json`.

## Your data and your model

Edit `build_datasets` (and optionally `build_transforms`) of a `{p}.data.DataModule` subclass, and
`build_backbone` / `build_head` of `{p}/models/classifier.py`; switch to them in `configs/`.{byo}

## Updating from the template

`.trainforge.json` records the template commit this project was made from. To see what changed since:
render the same answers from the newer template into a scratch folder and diff it against this one,
`cookiecutter --no-input <template> -o /tmp/new project_name="{answers.project_name}" package_name={p}`
then `git diff --no-index . /tmp/new/{answers.slug}`, and apply what you want.
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Make a new project from this trainforge.")
    parser.add_argument("dest", type=Path)
    parser.add_argument("--project-name", required=True)
    parser.add_argument("--package-name", default="")
    parser.add_argument("--author", default="Your Name")
    parser.add_argument("--license", default="MIT", choices=list(LICENSES))
    parser.add_argument("--no-wandb", action="store_true")
    parser.add_argument("--example", default="digits", choices=EXAMPLES)
    args = parser.parse_args(argv)
    answers = Answers(
        args.project_name, args.package_name, args.author, args.license, not args.no_wandb, args.example
    )
    try:
        validate(answers)
    except ScaffoldError as err:
        raise SystemExit(f"error: {err}") from None
    if args.dest.exists() and any(args.dest.iterdir()):
        raise SystemExit(f"error: {args.dest} exists and is not empty; choose a new folder")
    print(f"project written to {render(Path(__file__).resolve().parent.parent, args.dest, answers)}")


if __name__ == "__main__":
    main()
