"""Two sweep workers against one PostgreSQL server share a study and never run a trial twice.

The test starts a throwaway server (initdb into a temporary folder, a free localhost port). PostgreSQL
comes from Debian's packages (`apt-get install postgresql`, done by .ci/run). Where none can be started
the test is skipped loudly, except in CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml

from tests.launchers import free_port
from tests.test_sweep import SPACE, sweep_command, sweep_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _unavailable(reason: str) -> None:
    message = f"PostgreSQL multi-worker sweep test NOT RUN: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI must run it: .ci/run installs postgresql)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb") or ""]
    bindir = Path(found[-1]).parent if found[-1] else None
    if bindir is None:
        _unavailable("no initdb found; install it with `apt-get install postgresql`")
    base = Path(tempfile.mkdtemp(prefix="pg-sweep-"))
    data, sock = base / "data", base / "sock"
    data.mkdir()
    sock.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        os.chmod(base, 0o755)
        shutil.chown(data, "postgres")
        shutil.chown(sock, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    log = sock / "server.log"
    commands = [
        [*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        [
            *as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w",
            "-o", f"-p {port} -k {sock} -c listen_addresses=127.0.0.1", "start",
        ],
    ]  # fmt: skip
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            shutil.rmtree(base, ignore_errors=True)
            _unavailable(f"`{' '.join(command)}` failed: {result.stderr[-1000:]}")
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], timeout=60
        )
        if log.exists():
            print(log.read_text()[-2000:])
        shutil.rmtree(base, ignore_errors=True)


def test_two_workers_share_one_postgres_study(postgres_url: str, tmp_path: Path) -> None:
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    args = ["--space", "space.yaml", "--study", "pg", "--storage", postgres_url, "--trials", "2"]
    workers = [
        subprocess.Popen(sweep_command(*args), cwd=tmp_path, env=sweep_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]  # fmt: skip
    outputs = [worker.communicate(timeout=900)[0] for worker in workers]
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, output[-4000:]

    study = optuna.load_study(study_name="pg", storage=postgres_url)
    trials = study.trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers took trials
    run_dirs = [Path(t.user_attrs["run_dir"]) for t in trials]
    assert len(set(run_dirs)) == 4
    assert sorted(p.name for p in (tmp_path / "runs" / "default").iterdir()) == [
        f"pg-trial-{n}" for n in range(4)
    ]
    for trial, run_dir in zip(trials, run_dirs, strict=True):
        # Each trial trained exactly once, with its own sampled values.
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["model"]["init_args"]["lr"] == pytest.approx(trial.params["model.init_args.lr"])
        assert not list(run_dir.parent.glob(f"{run_dir.name}.replaced-*"))
    assert len({t.params["model.init_args.lr"] for t in trials}) == 4
