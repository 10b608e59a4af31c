"""memsaga roles (relay, projector, worker) as child processes whose output can be watched."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from memsaga.devstack.ports import LOCALHOST, free_port

REPO = Path(__file__).resolve().parents[2]
ENTRY = "from memsaga.cli import main; main()"


def dead_address() -> str:
    """``host:port`` where nothing listens (free now; nobody should take it within a test)."""
    return f"{LOCALHOST}:{free_port()}"


class Role:
    """``memsaga ARGS`` as a child process, its stdout and stderr in files that can be polled."""

    def __init__(self, tmp_path: Path, environ: dict[str, str], *args: str) -> None:
        name = "-".join(args)
        self.args = args
        self.out = tmp_path / f"{name}.out"
        self.err = tmp_path / f"{name}.err"
        env = {**os.environ, "COLUMNS": "400", **environ}  # wide: one log line per line
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", ENTRY, *args], cwd=REPO, env=env, stdout=out, stderr=err
            )

    def output(self) -> str:
        """What it printed so far, stdout then stderr."""
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")

    async def said(self, text: str, timeout: float = 60.0) -> None:
        """Until its output contains ``text``. :raises AssertionError: it exited or time ran out."""
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.proc.poll() is not None:
                raise AssertionError(f"memsaga {' '.join(self.args)} exited early:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} after {timeout}s from {self.args}:\n{self.output()}")
            await asyncio.sleep(0.05)

    def count(self, text: str) -> int:
        """How many lines of its output contain ``text``."""
        return sum(text in line for line in self.output().splitlines())

    async def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, then its exit code (it is killed if it does not exit within ``timeout``)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.proc.wait, timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait)
            raise AssertionError(f"{self.args} ignored SIGTERM:\n{self.output()}") from None

    def kill(self) -> None:
        """SIGKILL if still running (cleanup)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def assert_clean_exit(self, code: int) -> None:
        """Exit 0 and no traceback."""
        text = self.output()
        assert code == 0, f"{self.args} exited {code}:\n{text}"
        assert "Traceback" not in text, text
