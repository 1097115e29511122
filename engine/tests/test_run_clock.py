"""A run killed with SIGKILL and rerun reports the wall time of both segments, not only the last one."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.test_resume import ARGS, _start, _wait_for

pytestmark = pytest.mark.timeout(900)


@pytest.mark.slow
def test_a_killed_and_rerun_run_sums_the_wall_time_of_its_segments(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "default" / "clock"
    proc = _start([*ARGS, "--run.name=clock"], tmp_path, TRAINFORGE_TEST_PAUSE_AT_STEP="3")
    _wait_for(run / "paused", proc)  # step 3's last.ckpt is saved; the process waits before step 4
    killed = json.loads((run / "segments.json").read_text())["segments"]
    assert len(killed) == 1 and killed[0]["last_step"] == 3 and killed[0]["wall_s"] > 0
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    resumed = run_cli(*ARGS, "--run.name=clock", cwd=tmp_path)  # the same command resumes from step 3
    summary = json.loads((run / "summary.json").read_text())
    segments = json.loads((run / "segments.json").read_text())["segments"]
    assert summary["segments"] == len(segments) == 2
    assert segments[0] == killed[0]  # the killed segment as last persisted (at its step-3 checkpoint)
    assert (segments[1]["first_step"], segments[1]["last_step"]) == (3, 8)
    assert summary["segment_wall_s"] == [s["wall_s"] for s in segments]
    assert summary["wall_time_s"] == round(sum(summary["segment_wall_s"]), 2)
    assert summary["wall_time_s"] > segments[1]["wall_s"]  # more than the last segment alone
    assert "wall time (s), 2 segments" in resumed.stdout  # the table printed at the end says so too
