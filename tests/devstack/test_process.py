"""Process bookkeeping: a recorded pid reused by another process is never signalled."""

from __future__ import annotations

import subprocess

from memsaga.devstack import stop_service
from memsaga.devstack.process import pid_alive, runs
from memsaga.stackstate import ServiceState


def test_stop_service_leaves_an_unrelated_process_with_the_recorded_pid_alone() -> None:
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        stale = ServiceState(
            name="nats",
            url="nats://127.0.0.1:1",
            managed=True,
            pid=stranger.pid,
            data_dir="/gone/.memsaga/nats",
        )
        assert not runs(stale.pid, stale.data_dir)
        stop_service(stale, timeout=1.0)
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()
    assert not pid_alive(stranger.pid)
