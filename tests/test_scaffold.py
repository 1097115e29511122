"""The scaffold: cookiecutter and `python -m template new` write a project that holds only the user's surface
plus the pinned engine wheel, is renamed throughout, and passes its own tests on that wheel."""

from __future__ import annotations

import json
import re

import pytest
from cookiecutter.exceptions import FailedHookException
from scaffold_helpers import (
    ENGINE,
    REPO,
    SURFACE,
    cookiecutter_project,
    engine_seen,
    install_engine,
    new_project,
    project_tests,
    quick_tests,
    run_in,
    short_fit,
    vendored,
)

from trainforge.tools import scaffold
from trainforge.tools.scaffold import TEMPLATE_ONLY, Answers, ScaffoldError, rename, validate
from trainforge.tools.update import engine_version

CODE_REF = re.compile(
    r"\b(import|from) template\b|\bimport ([\w.]+, )+template\b|-m template\b|(?<![\w.])template\.\w|\"template\"|:= template"
)
ENGINE_NAME = re.compile(r"trainforge", re.IGNORECASE)
TEXT = {".py", ".toml", ".yaml", ".yml", ".txt", ".sbatch", ".cfg", ".md", ""}


def _check_surface(project, package: str, version: str) -> None:
    top = {p.name for p in project.iterdir()}
    assert top <= SURFACE | {package}, f"not the user's surface: {top - SURFACE - {package}}"
    for gone in (
        "engine",
        "docs",
        "hooks",
        "scripts",
        "template",
        "cookiecutter.json",
        "{{cookiecutter.project_slug}}",
    ):
        assert not (project / gone).exists(), gone
    assert not any((project / rel).exists() for rel in TEMPLATE_ONLY)
    engine_modules = {
        p.relative_to(ENGINE / "trainforge").as_posix() for p in (ENGINE / "trainforge").rglob("*.py")
    }
    for py in project.rglob("*.py"):
        rel = py.relative_to(project)
        assert rel.parts[0] in (package, "tests"), f"{rel}: Python outside the package and tests"
        inside = rel.relative_to(rel.parts[0]).as_posix()
        assert inside in ("__init__.py", "__main__.py") or inside not in engine_modules, (
            f"{rel} is engine code"
        )
    assert [w.name for w in vendored(project)] == [f"trainforge-{version}-py3-none-any.whl"]

    copied = {re.sub(r"^template/", f"{package}/", rel) for rel in scaffold.source_files(REPO)}
    for path in project.rglob("*"):
        rel = path.relative_to(project).as_posix()
        if not path.is_file() or rel.startswith("vendor/") or path.suffix not in TEXT:
            continue
        text = path.read_text()
        assert not CODE_REF.search(text), f"{rel} still refers to the template package"
        if rel in copied:  # renaming the package never renames the engine (trainforge, TRAINFORGE_*)
            source = (REPO / re.sub(rf"^{package}/", "template/", rel)).read_text()
            assert len(ENGINE_NAME.findall(text)) == len(ENGINE_NAME.findall(source)), rel


CASES = {  # how the project is made: cookiecutter with the defaults, or `python -m template new` with options
    "defaults-cookiecutter": ("leaf_doctor", False, True, "MIT"),
    "byo-nowandb-apache-new": ("petscan", True, False, "Apache-2.0"),
}


@pytest.fixture(scope="module", params=list(CASES))
def generated(request, tmp_path_factory):
    """(project, case), generated once per case and given its vendored engine in `<tmp>/site`."""
    package, byo, _, licence = CASES[request.param]
    tmp = tmp_path_factory.mktemp(request.param)
    if not byo:
        project = cookiecutter_project(tmp, project_name="Leaf Doctor")
        assert project.name == "leaf-doctor"
    else:
        project = tmp / "pet-scan"
        args = ["--project-name", "Pet Scan", "--package-name", package, "--example", "bring_your_own"]
        made = new_project(REPO, project, *args, "--no-wandb", "--license", licence, cwd=tmp)
        assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    install_engine(project, tmp / "site")
    return project, request.param


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_generated_project_is_the_renamed_surface_with_the_pinned_engine(generated):
    project, case = generated
    package, byo, wandb, licence = CASES[case]
    version = engine_version(ENGINE)
    _check_surface(project, package, version)
    pyproject = (project / "pyproject.toml").read_text()
    assert f'name = "{package}"' in pyproject and f'{package} = "{package}.__main__:main"' in pyproject
    assert re.findall(r"^testpaths = .*$", pyproject, flags=re.M) == ['testpaths = ["tests"]']
    assert f'"trainforge=={version}"' in pyproject and f'license = {{ text = "{licence}" }}' in pyproject
    record = json.loads((project / ".template.json").read_text())
    assert record["engine"] == version and record["answers"]["package_name"] == package
    assert record["template"] == str(REPO) and re.fullmatch(r"[0-9a-f]{40}(-dirty)?", record["commit"] or "")
    assert (project / "LICENSE").read_text().startswith("MIT License" if licence == "MIT" else "Copyright")
    assert ("enabled: false" in (project / "configs/logger.yaml").read_text()) == (not wandb)
    assert (project / package / "data.py").is_file() and (project / package / "model.py").is_file()
    assert (project / package / "my_data.py").is_file() == byo
    seen = engine_seen(project, project.parent / "site")
    assert seen["version"] == version and seen["file"].startswith(str(project.parent / "site")), seen


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_generated_project_trains_and_passes_its_hook_tests(generated):
    project, case = generated
    package, byo, _, _ = CASES[case]
    site = project.parent / "site"
    project_tests(project, site, *quick_tests(project))
    short_fit(project, site, package)
    if byo:  # the skeleton says what to fill in, and where
        args = ["--model.backbone=resnet10t", "--trainer.max_epochs=1", "--wandb.enabled=false"]
        fail = run_in(project, site, "-m", package, "fit", "--experiment", "my_data", *args, ok=False)
        assert fail.returncode != 0
        assert f"fill in MyData.build_datasets in {package}/my_data.py" in fail.stderr, fail.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("generated", ["defaults-cookiecutter"], indirect=True)  # minutes: once is enough
def test_generated_project_passes_its_whole_make_test(generated):
    """`make test`'s selection of the project's own tests, training runs included."""
    project, _ = generated
    project_tests(project, project.parent / "site")


@pytest.mark.parametrize("bad", ["class", "torch", "1leaf", "Leaf-Doctor", "json", "trainforge"])
def test_invalid_package_names_are_refused_before_anything_is_written(tmp_path, bad):
    with pytest.raises(FailedHookException):
        cookiecutter_project(tmp_path / "cc", project_name="Leaf Doctor", package_name=bad)
    assert not (tmp_path / "cc").exists() or list((tmp_path / "cc").iterdir()) == []
    with pytest.raises(ScaffoldError, match=f"'{re.escape(bad)}'"):
        scaffold.main([str(tmp_path / "new"), "--project-name", "Leaf Doctor", "--package-name", bad])
    assert not (tmp_path / "new").exists()


def test_validate_refuses_with_a_clear_message():
    with pytest.raises(ScaffoldError, match="'torch' clashes with a module"):
        validate(Answers("x", "torch"))
    with pytest.raises(ScaffoldError, match="'class' is a Python keyword"):
        validate(Answers("x", "class"))
    with pytest.raises(ScaffoldError, match="license 'GPL' is not one of"):
        validate(Answers("x", license="GPL"))
    assert Answers("Leaf Doctor").package_name == "leaf_doctor"


def test_new_leaves_nothing_behind_when_rendering_fails(tmp_path, monkeypatch):
    def fake_wheel(engine, out):  # the real build takes seconds; this test is about the clean-up
        (wheel := out / "trainforge-0.2.0-py3-none-any.whl").write_bytes(b"")
        return wheel

    def broken(*args):
        raise RuntimeError("disk trouble halfway")

    monkeypatch.setattr(scaffold, "build_wheel", fake_wheel)
    monkeypatch.setattr(scaffold, "_apply_options", broken)
    with pytest.raises(RuntimeError, match="halfway"):
        scaffold.main([str(tmp_path / "p"), "--project-name", "Leaf Doctor", "--template", str(REPO)])
    assert not (tmp_path / "p").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError, match="halfway"):
        scaffold.main([str(tmp_path / "empty"), "--project-name", "Leaf Doctor", "--template", str(REPO)])
    assert list((tmp_path / "empty").iterdir()) == []
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ScaffoldError, match="not empty"):
        scaffold.main([str(tmp_path / "full"), "--project-name", "Leaf Doctor", "--template", str(REPO)])
    with pytest.raises(ScaffoldError, match="not a template checkout"):
        scaffold.main([str(tmp_path / "q"), "--project-name", "Leaf Doctor", "--template", str(tmp_path)])
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine" and not (tmp_path / "q").exists()


def test_rename_touches_the_package_and_never_the_engine():
    text = (
        "from template.data import ProjectData\nimport template\npython -m template fit\n-c import trainforge, template\n"
        'name = "template"\ninclude = ["template*"]\nPACKAGE := template\n  class_path: template.model.X\n'
        "from trainforge.cli import main\nTRAINFORGE_CONFIGS=configs\nsee .template.json\n"
        "vendor/trainforge-*.whl\n# the template's own repository\n"
    )
    out = rename(text, "leaf_doctor")
    assert (
        "from leaf_doctor.data import" in out
        and "import leaf_doctor\n" in out
        and "-m leaf_doctor fit" in out
    )
    assert 'name = "leaf_doctor"' in out and '"leaf_doctor*"' in out and "PACKAGE := leaf_doctor" in out
    assert "class_path: leaf_doctor.model.X" in out and "# the template's own repository" in out
    assert "from trainforge.cli import main" in out and "TRAINFORGE_CONFIGS=configs" in out
    assert "see .template.json" in out and "vendor/trainforge-*.whl" in out
