"""Several "nodes" on localhost under torchrun: one `python -m torch.distributed.run ... -m trainforge`
launch per node rank, started together, read to the end, killed if anything goes wrong."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_nodes(
    args: list[str], cwd: Path, env: dict[str, str], *, nodes: int = 2, c10d: bool = False
) -> list[subprocess.Popen]:
    """`python -m trainforge *args` on `nodes` node ranks, one process per node, output (and errors) in a
    pipe. The rendezvous is static (rank 0's address and a port) or, with `c10d`, a c10d store there."""
    port = free_port()
    procs = []
    for node in range(nodes):
        if c10d:
            rendezvous = [
                "--nproc-per-node=1",
                f"--node-rank={node}",
                "--rdzv-backend=c10d",
                f"--rdzv-endpoint=127.0.0.1:{port}",
                "--rdzv-id=nodes",  # every agent agrees on it: the run is named torchrun-nodes
            ]
        else:
            rendezvous = [
                "--nproc_per_node=1",
                f"--node_rank={node}",
                "--master_addr=127.0.0.1",
                f"--master_port={port}",
            ]
        command = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nodes}", *rendezvous]
        procs.append(
            subprocess.Popen(
                [*command, "-m", "trainforge", *args],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    return procs


def finish(
    procs: list[subprocess.Popen],
    timeout: float,
    stop: Callable[[subprocess.Popen], None] = subprocess.Popen.kill,
) -> list[str]:
    """Each process's output, waiting at most `timeout` s for each; `stop` ends any still running after."""
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=timeout)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                stop(proc)
    return outputs


def torchrun_nodes(
    args: list[str],
    cwd: Path,
    env: dict[str, str],
    *,
    timeout: float,
    nodes: int = 2,
    c10d: bool = False,
    stop: Callable[[subprocess.Popen], None] = subprocess.Popen.kill,
) -> list[tuple[int, str]]:
    """Start the node launches and wait for them: (return code, output) per node rank."""
    procs = start_nodes(args, cwd, env, nodes=nodes, c10d=c10d)
    outputs = finish(procs, timeout, stop)
    return [(proc.returncode, output) for proc, output in zip(procs, outputs, strict=True)]
