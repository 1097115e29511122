"""Bad input to a table run, and failures in a user's own classes: one line naming the file, line and
column (or the class and file:line), exit 2, no traceback unless --debug, no run directory left; and
"did you mean" over the keys of the class the experiment selected, with the package the user ran."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import run_cli
from tests.table_helpers import QUIET, cancer_csv, one_error_line

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    cancer_csv(folder)
    frame = pd.read_csv(folder / "cancer.csv")
    frame["mean radius"] = frame["mean radius"].astype(str)
    frame.loc[7, "mean radius"] = "12,3x"  # a decimal comma and a stray letter
    frame.to_csv(folder / "typo.csv", index=False)
    (folder / "my_data.py").write_text(
        "import pandas as pd\n"
        "from trainforge.data.table import TableDataModule\n\n\n"
        "class Sheets(TableDataModule):\n"
        "    def __init__(self, **kwargs):\n"
        "        super().__init__(**kwargs)\n"
        "        self.extra = pd.read_csv('lookup_table.csv')\n"
    )
    (folder / "my_model.py").write_text(
        "from trainforge.models.mlp import MLP\n\n\n"
        "class Wide(MLP):\n"
        "    def __init__(self, **kwargs):\n"
        "        super().__init__(**kwargs)\n"
        "        raise ValueError('hidden must be a multiple of 8')\n"
    )
    return folder


def fail(folder, *args, module="trainforge"):
    result = run_cli(
        "fit", "--experiment", "table", f"--run.root={folder / 'runs'}", *QUIET, *args,
        cwd=folder, check=False, module=module,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    assert not (folder / "runs").exists()  # nothing half-made is left behind
    return result


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--data.path=cancer.csv", "--data.target=lable"],
            "error: cancer.csv: no target column 'lable'. Did you mean 'label'?",
        ),
        (
            ["--data.path=typo.csv", "--data.target=label"],
            "error: typo.csv line 9, column 'mean radius': '12,3x' is not a number",
        ),
        (
            ["--data.path=cancr.csv", "--data.target=label"],
            "error: data.path: table file 'cancr.csv' not found. Did you mean 'cancer.csv'?",
        ),
    ],
    ids=["missing-label-column", "non-numeric-cell", "misspelt-path"],
)
def test_bad_tables_give_one_line_naming_file_line_and_column(folder, args, expected):
    line = one_error_line(fail(folder, *args).stderr)
    assert line.startswith(expected), line


def test_an_exception_in_a_user_datamodule_init_is_one_line_naming_class_and_place(folder):
    result = fail(folder, "--data.class_path=my_data.Sheets", "--data.path=cancer.csv", "--data.target=label")
    line = one_error_line(result.stderr)
    assert line.startswith("error: building my_data.Sheets: file not found: lookup_table.csv"), line
    assert "my_data.py:8" in line
    debug = fail(folder, "--data.class_path=my_data.Sheets", "--data.path=cancer.csv", "--debug")
    assert "Traceback" in debug.stderr and "FileNotFoundError" in debug.stderr


def test_an_exception_in_a_user_model_init_is_one_line(folder):
    result = fail(
        folder, "--data.path=cancer.csv", "--data.missing=median", "--model.class_path=my_model.Wide"
    )
    line = one_error_line(result.stderr)
    assert line.startswith("error: building my_model.Wide: ValueError: hidden must be a multiple of 8"), line
    assert "my_model.py:7" in line


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("--model.lrr=0.1", "model.lr"),
        ("--data.batchsize=8", "data.batch_size"),
        ("--model.hiden=8", "model.hidden"),
    ],
)
def test_did_you_mean_is_over_the_selected_class_and_names_the_package_run(folder, typo, meant):
    result = fail(folder, "--data.path=cancer.csv", typo, module="template")
    line = one_error_line(result.stderr)
    assert f"Did you mean '{meant}'?" in line and "`python -m template fit --help`" in line, line
