"""Regression through the two hooks: scikit-learn's diabetes data (442 patients, 10 measurements; target:
disease progression one year later; shipped offline), with the same MLP as the tabular example.

`make train EXPERIMENT=regression`: mean-squared error on standardised targets (the task's `mean`/`std`,
from the training split), MAE/RMSE/R2 in the target's own units, the checkpoint chosen on `val/mae`,
residuals.png and worst.csv as reports, and predictions and exports in the target's units.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.datasets import load_diabetes

from template.examples.tabular import TabularData
from trainforge.tasks import Regression, regression_scale


class Diabetes(TabularData):
    """Disease progression from 10 measurements (the split stratified by target quintile)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.features, self.targets = load_diabetes(return_X_y=True)
        self.split(np.digitize(self.targets, np.quantile(self.targets, [0.2, 0.4, 0.6, 0.8])))
        self.task = Regression(["progression"], **regression_scale(self.targets[self.parts[0]]))
