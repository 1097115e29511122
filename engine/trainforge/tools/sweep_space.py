"""A sweep's search space file: which config keys to tune, over what ranges, toward which metric.

```yaml
metric: val/acc            # a key of the trial's summary.json metrics
direction: maximize        # or minimize
trials: 20                 # default number of trials per `make sweep`
pruner: {name: MedianPruner, n_startup_trials: 3, n_warmup_steps: 1}   # any optuna.pruners class, or none
experiment: default        # configs/experiments/<name>.yaml of every trial (--experiment wins)
args: ["--trainer.max_epochs=10"]    # fixed overrides of every trial
params:                    # config key -> distribution
  model.init_args.lr: {type: log_uniform, low: 1.0e-4, high: 1.0e-1}
  model.init_args.drop_rate: {type: uniform, low: 0.0, high: 0.5}
  data.init_args.batch_size: {type: categorical, choices: [32, 64, 128]}
  trainer.max_epochs: {type: int, low: 5, high: 20}
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml

TYPES = ("log_uniform", "uniform", "int", "log_int", "categorical")


class SpaceError(ValueError):
    """A search space file that cannot be used; the message names the file, key and what to do."""


@dataclass
class Space:
    path: Path
    params: dict[str, dict[str, Any]]
    metric: str = "val/acc"
    direction: str = "maximize"
    trials: int = 20
    pruner: dict[str, Any] | None = None
    args: list[str] = field(default_factory=list)
    experiment: str = "default"

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Draw one value per key; the key is the config key, so trial.params reads as overrides."""
        values: dict[str, Any] = {}
        for key, spec in self.params.items():
            kind = spec["type"]
            if kind == "categorical":
                values[key] = trial.suggest_categorical(key, list(spec["choices"]))
            elif kind in ("int", "log_int"):
                values[key] = trial.suggest_int(
                    key,
                    int(spec["low"]),
                    int(spec["high"]),
                    step=int(spec.get("step", 1)),
                    log=kind == "log_int",
                )
            else:
                values[key] = trial.suggest_float(
                    key, float(spec["low"]), float(spec["high"]), log=kind == "log_uniform"
                )
        return values


def _check_param(path: Path, key: str, spec: Any) -> dict[str, Any]:
    where = f"{path}: params.{key}"
    if not isinstance(spec, dict) or spec.get("type") not in TYPES:
        raise SpaceError(f"{where}: give a mapping with `type:` one of {', '.join(TYPES)} (got {spec!r})")
    if spec["type"] == "categorical":
        if not isinstance(spec.get("choices"), list) or not spec["choices"]:
            raise SpaceError(f"{where}: a categorical needs a non-empty `choices:` list")
        return spec
    missing = [k for k in ("low", "high") if k not in spec]
    if missing:
        raise SpaceError(f"{where}: `{spec['type']}` needs {' and '.join(missing)}")
    try:
        low, high = float(spec["low"]), float(spec["high"])
    except (TypeError, ValueError) as err:
        raise SpaceError(f"{where}: low/high must be numbers (write 1.0e-4, not 1e-4, in YAML)") from err
    if low > high:
        raise SpaceError(f"{where}: low ({low}) is above high ({high})")
    if spec["type"] in ("log_uniform", "log_int") and low <= 0:
        raise SpaceError(f"{where}: a log scale needs low > 0 (got {low})")
    return spec


def load_space(path: str | Path) -> Space:
    """A space file; `configs/sweeps/<name>.yaml` not in the project is the engine's (config_files layers)."""
    from trainforge.config_files import config_layers, find_config

    path = Path(path)
    if not path.is_file() and path.parts[:2] == ("configs", "sweeps"):
        path = find_config("/".join(path.parts[1:])) or path
    if not path.is_file():
        known = sorted({p.name for layer in config_layers() for p in (layer / "sweeps").glob("*.yaml")})
        raise SpaceError(
            f"search space {path} not found. Known in configs/sweeps: {', '.join(known) or 'none'}"
        )
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict) or not isinstance(raw.get("params"), dict) or not raw["params"]:
        raise SpaceError(
            f"{path}: needs a `params:` mapping of config key -> {{type: ..., low/high/choices}}"
        )
    unknown = set(raw) - {"params", "metric", "direction", "trials", "pruner", "args", "experiment"}
    if unknown:
        raise SpaceError(f"{path}: unknown top-level keys {sorted(unknown)}")
    params = {str(k): _check_param(path, str(k), v) for k, v in raw["params"].items()}
    direction = raw.get("direction", "maximize")
    if direction not in ("maximize", "minimize"):
        raise SpaceError(f"{path}: direction must be maximize or minimize (got {direction!r})")
    args = raw.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str) and a.startswith("--") for a in args):
        raise SpaceError(f"{path}: `args:` must be a list of CLI overrides like '--trainer.max_epochs=5'")
    return Space(
        path=path,
        params=params,
        metric=str(raw.get("metric", "val/acc")),
        direction=direction,
        trials=int(raw.get("trials", 20)),
        pruner=raw.get("pruner"),
        args=args,
        experiment=str(raw.get("experiment", "default")),
    )


def build_pruner(spec: dict[str, Any] | str | None) -> optuna.pruners.BasePruner:
    """`{name: MedianPruner, n_warmup_steps: 1}` -> optuna.pruners.MedianPruner(n_warmup_steps=1)."""
    if spec is None or spec == "none" or (isinstance(spec, dict) and spec.get("name") in (None, "none")):
        return optuna.pruners.NopPruner()
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = spec.pop("name")
    cls = getattr(optuna.pruners, name, None)
    if cls is None:
        raise SpaceError(f"pruner {name!r} is not a class of optuna.pruners (e.g. MedianPruner, none)")
    return cls(**spec)
