"""TableDataModule: a CSV or Parquet table, one row per sample, chosen from config with no Python.

    make train EXPERIMENT=table DATA=my.csv TARGET=label
    make predict CKPT=<run dir> DATA=new.csv          # predictions with the input's id column
    make export CKPT=<run dir>                        # the graph takes raw rows (see TableEncoder)

Everything the rows need to become model inputs is fitted on the training split only and saved with every
checkpoint (`preprocessing.json`): the columns, fill values, mean/std, categories and the task. Predict and
export read nothing but that, so new rows need no training file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from trainforge.data import table_read as tr
from trainforge.data.datamodule import DataModule, Splits
from trainforge.data.split import stratified_split
from trainforge.data.table_encoder import TableEncoder, TableRows
from trainforge.errors import TemplateError
from trainforge.tasks import Binary, Multiclass, Regression, Task, regression_scale, task_from_config

Kind = Literal["auto", "binary", "multiclass", "regression"]


class TableDataModule(DataModule):
    """Rows of a CSV or Parquet table; one column is the target, the others (or `features`) the inputs.

    Args:
        path: The training table (.csv, or .parquet/.pq). Without `val_path`/`test_path`, `val_fraction` and
            `test_fraction` of its rows are held out (stratified by class, or by target quintile).
        target: The column to predict.
        val_path: Optional table of validation rows (selection: best epoch, early stopping).
        test_path: Optional table of test rows (what the run reports).
        features: Input columns; default: every column but the target and the id column.
        categorical: Columns to one-hot encode (categories: every value seen in the training file); text
            columns are categorical without being listed; list integer codes here to one-hot them too.
        id_column: Column naming each row, kept in predictions and never an input (ignored when absent).
        missing: Empty numeric cells: `error` (refused, naming line and column), or filled with the training
            rows' `mean`, `median` or `zero`.
        kind: `auto` infers the task from the target: text, or integers with at most `max_classes` distinct
            values, are classes (`binary` for two), other numbers `regression`. Name one to override.
        max_classes: The most distinct integer targets `auto` still treats as classes.
        val_fraction: Share of the training table held out for validation when there is no `val_path`.
        test_fraction: Share held out for the reported test when there is no `test_path`.
        Other arguments: the DataModule base's (batch size, workers, split_seed, sampler...).
    """

    def __init__(
        self,
        path: str | None = None,
        target: str = "label",
        val_path: str | None = None,
        test_path: str | None = None,
        features: list[str] | None = None,
        categorical: list[str] | None = None,
        id_column: str | None = "id",
        missing: Literal["error", "mean", "median", "zero"] = "error",
        kind: Kind = "auto",
        max_classes: int = 20,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.path, self.target = path, target
        self.val_path, self.test_path = val_path, test_path
        self.features, self.categorical, self.id_column = features, categorical, id_column
        self.missing, self.kind, self.max_classes = missing, kind, max_classes
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self._frames: dict[str, pd.DataFrame | None] | None = None
        self._parts: list[np.ndarray] | None = None

    # ------------------------------------------------------------------ what the model is told
    @property
    def input_shape(self) -> list[int]:  # type: ignore[override]
        spec = self.preprocessing
        return [len(spec["numeric"]) + sum(len(c) for c in spec["categorical"].values())]

    @input_shape.setter
    def input_shape(self, value: Any) -> None:  # the base class's default; the table's shape is its own
        pass

    def build_task(self) -> Task:
        return task_from_config(self.preprocessing["task"])

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._task = None  # the task follows the restored preprocessing

    # ------------------------------------------------------------------ reading and fitting
    def frames(self) -> dict[str, pd.DataFrame | None]:
        """The training table and the optional val/test tables, read once."""
        if self._frames is None:
            if not self.path:
                raise TemplateError(
                    "data.path: give the table to train on: make train EXPERIMENT=table DATA=<file.csv> "
                    "TARGET=<column> (or --data.path=<file> --data.target=<column>)"
                )
            self._frames = {
                "train": tr.read_table(self.path),
                "val": tr.read_table(self.val_path, "data.val_path") if self.val_path else None,
                "test": tr.read_table(self.test_path, "data.test_path") if self.test_path else None,
            }
        return self._frames

    def resolve_preprocessing(self) -> dict[str, Any]:
        frame = self.frames()["train"]
        assert frame is not None
        target = tr.column(frame, self.target, self.path, "target")
        self._check_target_present(frame, target, self.path)
        spec: dict[str, Any] = {"target": self.target, "missing": self.missing}
        spec["id_column"] = self.id_column if self.id_column in frame.columns else None
        names = self.features or [c for c in frame.columns if c not in (self.target, spec["id_column"])]
        for name in names:
            tr.column(frame, name, self.path, "feature")
        listed = set(self.categorical or [])
        unknown = sorted(listed - set(names))
        if unknown:
            raise TemplateError(f"data.categorical: {unknown} are not feature columns of {self.path}")
        text = {n for n in names if not tr.is_numeric(frame[n]) and not tr.looks_numeric(frame[n])}
        spec["numeric"] = [n for n in names if n not in listed | text]
        spec["categorical"] = {n: tr.categories_of(frame[n]) for n in names if n in listed | text}
        kind = self._kind(target)
        if kind != "regression":
            spec["classes"] = sorted(set(_labels(target)), key=_class_order)
        self._parts = self._split(frame, kind, spec)
        train = frame.iloc[self._parts[0]]
        numbers = [tr.numbers(train, n, self.path) for n in spec["numeric"]]
        for name, values in zip(spec["numeric"], numbers, strict=True):
            tr.check_missing(train, values, name, self.path, self.missing)
        spec["fill"] = [tr.fill_value(v, self.missing) for v in numbers]
        filled = [np.where(np.isnan(v), f, v) for v, f in zip(numbers, spec["fill"], strict=True)]
        spec["mean"] = [float(v.mean()) for v in filled]
        spec["std"] = [float(max(v.std(), 1e-8)) for v in filled]
        spec["task"] = self._task_for(kind, spec, train).to_config()
        return spec

    def split_positions(self) -> list[np.ndarray]:
        """Row positions of train, val and test in the training table (empty where a file of its own
        holds the split): the split another tool (a scikit-learn reference) must share."""
        if self._parts is None:
            spec = self.preprocessing  # fitting it draws the split; a restored one does not
            if self._parts is None:
                kind = "regression" if "classes" not in spec else "class"
                self._parts = self._split(self.frames()["train"], kind, spec)
        return self._parts

    def _kind(self, target: pd.Series) -> str:
        if self.kind != "auto":
            return self.kind
        few_integers = pd.api.types.is_integer_dtype(target) and target.nunique() <= self.max_classes
        if tr.is_numeric(target) and not few_integers:
            return "regression"
        return "binary" if target.nunique() == 2 else "multiclass"

    def _task_for(self, kind: str, spec: dict[str, Any], train: pd.DataFrame) -> Task:
        if kind == "regression":
            values = tr.numbers(train, self.target, self.path)
            return Regression([self.target], **regression_scale(np.array(values)))  # a writable copy
        classes = spec["classes"]
        if kind == "binary":
            if len(classes) != 2:
                raise TemplateError(f"data.kind=binary: target '{self.target}' has {len(classes)} classes")
            return Binary(classes)
        return Multiclass(classes)

    def _split(self, frame: pd.DataFrame, kind: str, spec: dict[str, Any]) -> list[np.ndarray]:
        """Train, val and test row positions of the training table; a part with its own file is empty."""
        fractions = [
            0.0 if self.val_path else self.val_fraction,
            0.0 if self.test_path else self.test_fraction,
        ]
        if kind == "regression":
            values = tr.numbers(frame, self.target, self.path)
            strata = np.digitize(values, np.quantile(values, [0.2, 0.4, 0.6, 0.8]))
        else:
            strata = np.asarray([spec["classes"].index(v) for v in _labels(frame[self.target])])
        if np.bincount(strata).min() < 3:  # too few of a class to stratify: a plain seeded split
            strata = np.zeros(len(frame), dtype=int)
        try:
            return stratified_split(strata, fractions, seed=self.split_seed)
        except ValueError as error:  # scikit-learn's: too few rows for the fractions held out
            raise TemplateError(
                f"{self.path}: {len(frame)} rows are too few to hold out val_fraction={fractions[0]} and "
                f"test_fraction={fractions[1]}; give more rows, or data.val_path/data.test_path"
            ) from error

    def _check_target_present(self, frame: pd.DataFrame, target: pd.Series, path: Any) -> None:
        empty = target.isna()
        if empty.any():
            row = empty.idxmax()
            raise TemplateError(
                f"{path} {tr.line_of(frame, path, row)}, column '{self.target}': the target is empty "
                f"({int(empty.sum())} such row(s)); drop those rows or fill them"
            )

    # ------------------------------------------------------------------ datasets and transforms
    def rows(self, frame: pd.DataFrame, path: Any, with_target: bool = True) -> TableRows:
        """Rows of a table encoded with the saved preprocessing, targets included when `with_target`."""
        spec = self.preprocessing
        x = tr.encode(frame, spec, path)
        ids_column = spec.get("id_column")
        ids = (
            frame[ids_column].astype(str).tolist()
            if ids_column in frame.columns
            else [str(i) for i in range(len(frame))]
        )
        if not with_target:
            return TableRows(x, torch.full((len(frame),), -1, dtype=torch.long), ids)
        target = tr.column(frame, self.target, path, "target")
        self._check_target_present(frame, target, path)
        if "classes" not in spec:
            return TableRows(
                x, torch.as_tensor(tr.numbers(frame, self.target, path), dtype=torch.float32), ids
            )
        index = {c: i for i, c in enumerate(spec["classes"])}
        labels = _labels(target)
        unknown = [i for i, v in enumerate(labels) if v not in index]
        if unknown:
            where = tr.line_of(frame, path, frame.index[unknown[0]])
            raise TemplateError(f"{path} {where}, column '{self.target}': class '{labels[unknown[0]]}' is not "
                                f"among the training classes {spec['classes'][:10]}")  # fmt: skip
        return TableRows(x, torch.as_tensor([index[v] for v in labels], dtype=torch.long), ids)

    def build_datasets(self) -> Splits:
        frames = self.frames()
        train = frames["train"]
        parts = [self.rows(train.iloc[p], self.path) if len(p) else None for p in self.split_positions()]
        val = self.rows(frames["val"], self.val_path) if frames["val"] is not None else parts[1]
        test = self.rows(frames["test"], self.test_path) if frames["test"] is not None else parts[2]
        return Splits(train=parts[0], val=val, test=test)

    def build_transforms(self, stage: Literal["train", "eval"]) -> TableEncoder:
        return self.graph_transform()

    def graph_transform(self) -> TableEncoder:
        """The preprocessing as a module: export puts it inside the TorchScript/ONNX graph."""
        spec = self.preprocessing
        sizes = [len(c) for c in spec["categorical"].values()]
        return TableEncoder(spec["fill"], spec["mean"], spec["std"], sizes)

    def graph_inputs(self, count: int) -> torch.Tensor:
        """Raw rows for export's check: the validation (else test) rows, or, without the training file
        here, rows drawn around the training mean with the first category of each categorical column."""
        try:
            self.setup()
            assert self.raw is not None
            rows = self.raw.val or self.raw.test or self.raw.train
            return rows.tensors[0][:count]  # type: ignore[union-attr]
        except TemplateError:
            spec = self.preprocessing
            numbers = torch.randn(count, len(spec["mean"])) * torch.tensor(spec["std"]) + torch.tensor(
                spec["mean"]
            )
            return torch.cat([numbers, torch.zeros(count, len(spec["categorical"]))], dim=1)

    def graph_input_contract(self) -> dict[str, Any]:
        """What the exported graph's input holds, column by column (written to export.json)."""
        spec = self.preprocessing
        return {
            "columns": [*spec["numeric"], *spec["categorical"]],
            "numeric": "the raw value as a float; NaN for an empty cell "
            + (
                "(refused in training: missing=error)"
                if spec["missing"] == "error"
                else f"(filled: {spec['missing']})"
            ),
            "categorical": "the index of the cell's value in `categories` (another index gives all zeros)",
            "categories": spec["categorical"],
        }

    def files_dataset(self, paths: list[Path]) -> Dataset:
        raise TemplateError("a table predicts on a table file: make predict CKPT=<run> DATA=<new.csv>")

    def table_dataset(self, path: str | Path) -> TableRows:
        """New rows to predict on (target column optional, ignored): the same columns as in training."""
        frame = tr.read_table(path, "DATA")
        tr.check_columns(frame, self.preprocessing, path)
        return self.rows(frame, path, with_target=False)


def _labels(target: pd.Series) -> list[str]:
    """Class labels as strings; integer-valued numbers without a trailing `.0`."""
    if tr.is_numeric(target) and (target.dropna() % 1 == 0).all():
        return [str(int(v)) for v in target]
    return [str(v) for v in target]


def _class_order(label: str) -> tuple[int, float | str]:
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)
