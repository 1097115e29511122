"""Reading a table (CSV or Parquet, with pandas) and turning its rows into numbers, refusing bad cells by
name: every error says the file, the line (CSV: the header is line 1) and the column.

What a table's preprocessing holds (plain values, saved with every checkpoint): the target, the id column,
the numeric columns with their fill values and training mean/std, the categorical columns with their
categories. `encode` maps rows to the graph's input: the numeric cells as they are (NaN where empty), then
each categorical cell as the index of its category.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainforge.errors import TemplateError

MISSING_RULES = ("error", "mean", "median", "zero")


def read_table(path: str | Path, key: str = "data.path") -> pd.DataFrame:
    """The whole file as a DataFrame (strings kept as strings); a missing file names its closest sibling."""
    path = Path(path)
    if not path.is_file():
        folder = path.parent if path.parent.is_dir() else Path(".")
        near = difflib.get_close_matches(path.name, [p.name for p in folder.iterdir() if p.is_file()], n=1)
        mean = f" Did you mean '{folder / near[0]}'?" if near else ""
        raise TemplateError(f"{key}: table file '{path}' not found.{mean} Give a .csv or .parquet file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, skipinitialspace=True)
    except (ValueError, OSError, pd.errors.ParserError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TemplateError(f"{path}: cannot read it as a table ({first})") from error


def line_of(frame: pd.DataFrame, path: str | Path, row: Any) -> str:
    """Where a row is, as a user finds it: a CSV line number (header = line 1), a Parquet row index. Row
    labels are the file's row positions (read_table's index), kept by the split's subsets."""
    position = int(row)
    return f"row {position}" if Path(path).suffix.lower() in (".parquet", ".pq") else f"line {position + 2}"


def column(frame: pd.DataFrame, name: str, path: str | Path, what: str) -> pd.Series:
    """A column by name; a missing one is refused with the closest name and the columns there are."""
    if name not in frame.columns:
        columns = [str(c) for c in frame.columns]
        near = difflib.get_close_matches(name, columns, n=1, cutoff=0.5)
        mean = f" Did you mean '{near[0]}'?" if near else ""
        shown = ", ".join(columns[:12]) + (", ..." if len(columns) > 12 else "")
        raise TemplateError(f"{path}: no {what} column '{name}'.{mean} Its columns: {shown}")
    return frame[name]


def is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def looks_numeric(values: pd.Series) -> bool:
    """A text column whose cells are mostly numbers: a numeric column with a typo, not categories."""
    cells = values.dropna()
    parsed = pd.to_numeric(cells, errors="coerce")
    return len(cells) > 0 and parsed.notna().mean() >= 0.5


def numbers(frame: pd.DataFrame, name: str, path: str | Path) -> np.ndarray:
    """A numeric column as float64 (NaN where empty); a cell that is not a number is refused by name."""
    values = column(frame, name, path, "feature")
    if is_numeric(values):
        return values.to_numpy(dtype=np.float64)
    parsed = pd.to_numeric(values, errors="coerce")
    bad = values.notna() & parsed.isna()
    if bad.any():
        row = bad.idxmax()
        raise TemplateError(
            f"{path} {line_of(frame, path, row)}, column '{name}': '{values[row]}' is not a number "
            f"({int(bad.sum())} such cell(s) in the column). Fix the cell, or list '{name}' in data.categorical"
        )
    return parsed.to_numpy(dtype=np.float64)


def check_missing(frame: pd.DataFrame, values: np.ndarray, name: str, path: str | Path, rule: str) -> None:
    """With `missing: error`, an empty numeric cell is refused by line and column."""
    empty = np.isnan(values)
    if rule == "error" and empty.any():
        row = frame.index[int(np.argmax(empty))]
        raise TemplateError(
            f"{path} {line_of(frame, path, row)}, column '{name}': the cell is empty ({int(empty.sum())} empty "
            "cell(s) in the column). Fill it, or choose a rule: --data.missing=mean|median|zero"
        )


def fill_value(values: np.ndarray, rule: str) -> float:
    """What an empty cell becomes under `rule`, from the training rows' values."""
    present = values[~np.isnan(values)]
    if rule == "zero" or not len(present):
        return 0.0
    return float(np.median(present) if rule == "median" else present.mean())


def category_codes(frame: pd.DataFrame, name: str, categories: list[str], path: str | Path) -> np.ndarray:
    """Each cell's index in `categories` (as a float, the graph's input type); an unseen value is refused."""
    cells = column(frame, name, path, "categorical").astype("string").fillna("")
    index = {c: i for i, c in enumerate(categories)}
    codes = cells.map(lambda cell: index.get(cell, -1)).to_numpy(dtype=np.float64)
    if (codes < 0).any():
        row = frame.index[int(np.argmax(codes < 0))]
        raise TemplateError(
            f"{path} {line_of(frame, path, row)}, column '{name}': category '{cells[row]}' was not in the "
            f"training data (known: {', '.join(repr(c) for c in categories[:10])})"
        )
    return codes


def categories_of(values: pd.Series) -> list[str]:
    """The sorted distinct values of a categorical column, as strings ('' stands for an empty cell)."""
    return sorted(values.astype("string").fillna("").unique().tolist())


def encode(frame: pd.DataFrame, spec: dict[str, Any], path: str | Path) -> np.ndarray:
    """Rows as the graph's input `(n, numeric + categorical)`: raw numbers (NaN where empty, refused under
    `missing: error`), then category indices."""
    parts = []
    for name in spec["numeric"]:
        values = numbers(frame, name, path)
        check_missing(frame, values, name, path, spec["missing"])
        parts.append(values)
    for name, categories in spec["categorical"].items():
        parts.append(category_codes(frame, name, categories, path))
    return np.stack(parts, axis=1) if parts else np.zeros((len(frame), 0))


def check_columns(frame: pd.DataFrame, spec: dict[str, Any], path: str | Path) -> None:
    """New rows must carry exactly the training features (the id and target columns may be there too)."""
    expected = [*spec["numeric"], *spec["categorical"]]
    allowed = {*expected, spec["target"], spec.get("id_column")}
    columns = [str(c) for c in frame.columns]
    missing = [c for c in expected if c not in columns]
    extra = [c for c in columns if c not in allowed]
    if missing or extra:
        said = [f"missing column(s) {', '.join(repr(c) for c in missing)}"] if missing else []
        said += [f"extra column(s) {', '.join(repr(c) for c in extra)}"] if extra else []
        raise TemplateError(
            f"{path}: {' and '.join(said)}; the model was trained on the columns "
            f"{', '.join(expected[:12])}{', ...' if len(expected) > 12 else ''}"
        )
