"""Two runs started in the same second never share a run directory."""

from __future__ import annotations

import threading

from trainforge import rundir as run


def test_concurrent_launches_in_one_second_get_distinct_directories(tmp_path, monkeypatch):
    monkeypatch.setattr(run.time, "strftime", lambda fmt: "20250101-000000")  # all in the same second
    barrier, made, lock = threading.Barrier(16), [], threading.Lock()

    def launch() -> None:
        barrier.wait()
        path = run._new_timestamped_dir(tmp_path / "default")
        with lock:
            made.append(path)

    threads = [threading.Thread(target=launch) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 16 and len(set(made)) == 16
    assert all(p.is_dir() and p.name.startswith("20250101-000000") for p in made)
