"""How much the selection split flattered the model a run reports: summary.json `selection`, `reported`,
`optimism`.

Whatever chose the reported weights (the best checkpoint, WiSE-FT's mixing weight, the probe-or-fine-tune
choice) read the selection split (`val`); the reported figure is the held-out split's (`test`). The chosen
model's score on the first is biased upwards by the choice itself, so the gap between the two is the
optimism a user would otherwise not see. Where no test split exists the reported split *is* the selection
split and the gap cannot be measured: `optimism` is null then, and says why.
"""

from __future__ import annotations

from typing import Any


def selection_vs_reported(
    metrics: dict[str, float],
    monitor: str | None,
    mode: str | None,
    selected_on: str | None = None,
    evaluated_on: str | None = None,
) -> dict[str, Any]:
    """The chosen model's score on the selection split beside the reported split's, and their gap.

    `metrics` are the final evaluation's (`val/...` and `test/...` of the reported checkpoint); the metric is
    the monitored one (`val/acc` -> `acc`). `optimism` is positive when the selection split rated the model
    higher than the reported split: selection - reported for a metric to maximise, reported - selection for
    one to minimise (a loss, an MAE). Empty when the monitored metric was not evaluated on `val`.
    """
    if not monitor or not monitor.startswith("val/") or monitor not in metrics:
        return {}
    name = monitor.removeprefix("val/")
    selection = {"split": "val", "metric": monitor, "value": round(float(metrics[monitor]), 6)}
    if selected_on:
        selection["described"] = selected_on
    test_key = f"test/{name}"
    if test_key not in metrics:
        return {
            "selection": selection,
            "reported": {**selection, "described": evaluated_on or "val (no test split)"},
            "optimism": None,
            "optimism_note": "reported on the selection split itself (no test split): optimism not measurable",
        }
    reported = {"split": "test", "metric": test_key, "value": round(float(metrics[test_key]), 6)}
    if evaluated_on:
        reported["described"] = evaluated_on
    gap = selection["value"] - reported["value"]
    return {
        "selection": selection,
        "reported": reported,
        "optimism": round(gap if mode != "min" else -gap, 6),
    }
