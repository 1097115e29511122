"""The diagnosis names the right problem on constructed curves of each kind."""

import math

import pytest

from trainforge.reporting.diagnosis import SWITCHES, diagnose, format_diagnosis


def history(train_loss, val_loss, train_metric, val_metric):
    return {
        "epoch": [float(i) for i in range(len(train_loss))],
        "train_loss": train_loss,
        "val_loss": val_loss,
        "train_metric": train_metric,
        "val_metric": val_metric,
    }


CASES = {
    "overfitting": history(
        [1.0, 0.5, 0.1, 0.02], [1.0, 0.8, 0.9, 1.1], [0.6, 0.8, 0.97, 0.99], [0.6, 0.7, 0.72, 0.71]
    ),
    "underfitting": history(
        [2.3, 2.2, 2.2, 2.1], [2.3, 2.25, 2.2, 2.2], [0.12, 0.2, 0.25, 0.3], [0.1, 0.18, 0.2, 0.21]
    ),
    "diverged": history(
        [1.0, 0.8, 3.0, 9.0], [1.0, 0.9, 4.0, 12.0], [0.6, 0.7, 0.3, 0.1], [0.6, 0.7, 0.2, 0.1]
    ),
    "still_improving": history(
        [1.0, 0.6, 0.4, 0.3], [1.0, 0.6, 0.45, 0.35], [0.7, 0.8, 0.86, 0.9], [0.7, 0.8, 0.85, 0.89]
    ),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_each_kind_is_recognised_with_its_switches(kind):
    findings = diagnose(CASES[kind])
    assert [f["kind"] for f in findings][:1] == [kind]
    assert findings[0]["switches"] == SWITCHES[kind] and 2 <= len(SWITCHES[kind]) <= 3
    assert kind in format_diagnosis(findings)


def test_nan_loss_is_diverged_and_a_converged_run_is_healthy():
    nan = history([1.0, math.nan], [1.0, math.nan], [0.5, math.nan], [0.5, math.nan])
    assert [f["kind"] for f in diagnose(nan)] == ["diverged"]
    healthy = history(
        [1.0, 0.3, 0.2, 0.2], [1.0, 0.35, 0.25, 0.25], [0.7, 0.95, 0.96, 0.96], [0.7, 0.95, 0.95, 0.95]
    )
    assert diagnose(healthy) == []
    assert "healthy" in format_diagnosis([])


def test_min_mode_metric_overfits_when_train_is_far_lower():
    curves = history([1.0, 0.5, 0.2], [1.0, 0.9, 1.0], [0.5, 0.2, 0.05], [0.5, 0.4, 0.45])
    assert [f["kind"] for f in diagnose(curves, mode="min")] == ["overfitting"]
