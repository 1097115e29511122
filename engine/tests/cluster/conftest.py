"""The cluster tier (`make test-cluster`, marker `cluster`): a real SLURM cluster on this machine, started
once per session and stopped (every daemon, by pid) at its end, also after a failure."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.slurm import LocalSlurm, local_slurm, unavailable


@pytest.fixture(scope="session")
def slurm() -> Iterator[LocalSlurm]:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    with local_slurm() as cluster:
        yield cluster
