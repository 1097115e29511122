"""What a model predicts: the task kind, declared once by the DataModule and read by everything else.

The DataModule sets `self.task` (e.g. `Multiclass(["cat", "dog"])`, `Regression(["price"])`); the CLI
links it into the model, which saves it in its checkpoint. Loss, metrics, the training metric, the
checkpoint's monitored key, reports, predictions (`make predict`, `predict`) and export all ask the task,
so data and model agree by construction. A project adds a kind by subclassing `Task` (a dataclass) and
setting it in its DataModule; `task_from_config` restores it by class path.
"""

from trainforge.tasks.base import Task
from trainforge.tasks.classification import Binary, Multiclass, Multilabel
from trainforge.tasks.regression import Regression, regression_scale
from trainforge.tasks.restore import task_from_config

KINDS: dict[str, type[Task]] = {cls.kind: cls for cls in (Multiclass, Binary, Multilabel, Regression)}

__all__ = [
    "KINDS",
    "Binary",
    "Multiclass",
    "Multilabel",
    "Regression",
    "Task",
    "regression_scale",
    "task_from_config",
]
