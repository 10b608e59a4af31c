"""The chaos run's own stack: PostgreSQL, NATS and Temporal on free ports in a directory of
its own, and workers, relays and projectors as OS processes (``worker-1``, ``worker-2``, …:
as many of each as asked); every one can be killed and brought back on its port and data.
:meth:`ChaosStack.close` stops everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from eventstore import migrate
from eventstore.keys import MasterKey
from memsaga.bootstrap import MIGRATION_SOURCES, connect_database
from memsaga.chaos.errors import ServiceDidNotComeBack
from memsaga.devstack import start_nats, start_postgres, start_temporal, stop_service
from memsaga.devstack.postgres import bin_path
from memsaga.devstack.process import wait_for_exit
from memsaga.settings import Settings
from memsaga.stackstate import MASTER_KEY_FILE, ServiceState, ensure_master_key_file

PARTITIONS = 2
"""Partitions of every projection under chaos: the projectors split them by lease, and a killed
one's partitions are taken over by the other (docs/deploy.md)."""
ROLES: dict[str, tuple[str, ...]] = {
    "worker": ("worker",),
    "relay": ("relay",),
    "projector": ("project", "--partitions", str(PARTITIONS)),
}
"""Each long-running role and its ``memsaga`` arguments."""
DEFAULT_REPLICAS: dict[str, int] = {"worker": 2, "relay": 1, "projector": 2}
"""How many processes of each role run by default: two workers share the task queue, two
projectors share each projection's work, one relay (``--relays 2`` runs a standby)."""


def instance_name(role: str, n: int) -> str:
    """The name of the ``n``-th process (from 1) of ``role``: ``worker-1``."""
    return f"{role}-{n}"


def role_of(instance: str) -> str:
    """The role of a process name: ``worker`` for ``worker-2``."""
    return instance.rsplit("-", 1)[0]


ROLE_SETTINGS = {
    "MEMSAGA_EMBEDDER": "hashing",
    "MEMSAGA_PROJECTION_ACK_WAIT_SECONDS": "5",
    "MEMSAGA_PROJECTION_RETRY_DELAY_SECONDS": "0.5",
    "MEMSAGA_RELAY_POLL_INTERVAL_SECONDS": "0.2",
}
"""What the roles run with: the offline embedder, quick redelivery and polling."""


def port_of(url: str) -> int:
    """The port of a service URL or ``host:port``."""
    port = urlsplit(url if "://" in url else f"tcp://{url}").port
    assert port is not None, url
    return port


class RoleProcess:
    """One role as a child process (``python -m memsaga ARGS``), its output appended to a log."""

    def __init__(self, name: str, argv: tuple[str, ...], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.failpoints: str | None = None
        self.restarts = 0

    def start(self, failpoints: str | None = None) -> None:
        """Start it (again), with ``MEMSAGA_FAILPOINTS`` set to ``failpoints`` when given."""
        env = {k: v for k, v in self.env.items() if k != "MEMSAGA_FAILPOINTS"}
        if failpoints:
            env["MEMSAGA_FAILPOINTS"] = failpoints
        self.failpoints = failpoints
        with self.log.open("ab") as out:
            out.write(f"\n=== start {self.name} failpoints={failpoints or '-'}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "memsaga", *self.argv],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.restarts += 1

    def exit_code(self) -> int | None:
        """Its exit status once it has exited (negative: the signal that ended it), else None."""
        return None if self.proc is None else self.proc.poll()

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class ChaosStack:
    """Services and roles of one chaos run, under ``root``."""

    root: Path
    services: dict[str, ServiceState] = field(default_factory=dict)
    roles: dict[str, RoleProcess] = field(default_factory=dict)

    async def start_services(self) -> None:
        """Start PostgreSQL, NATS and Temporal on free ports (together), write a master key
        (``<root>/master.key``, found by every role through ``MEMSAGA_STATE_DIR``) and migrate."""
        ensure_master_key_file(self.root, lambda: MasterKey.generate().text())
        results = await asyncio.gather(
            start_postgres(self.root),
            start_nats(self.root),
            start_temporal(self.root),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, ServiceState):
                self.services[result.name] = result
        for result in results:
            if isinstance(result, BaseException):
                raise result
        conn = await connect_database(self.settings())
        try:
            await migrate(conn, MIGRATION_SOURCES)
        finally:
            await conn.close()

    def settings(self) -> Settings:
        """Settings naming this stack's services, its master key and the defaults for the rest:
        none of the caller's ``MEMSAGA_*`` variables (they may name the user's deployment)."""
        return Settings.model_construct(
            database_url=self.services["postgres"].url,
            nats_url=self.services["nats"].url,
            temporal_address=self.services["temporal"].url,
            temporal_ui_url=self.services["temporal"].ui_url,
            state_dir=self.root,
            master_key_file=self.root / MASTER_KEY_FILE,
            embedder="hashing",
        )

    def start_roles(self, replicas: dict[str, int] | None = None) -> None:
        """Start ``replicas[role]`` processes of each role (default :data:`DEFAULT_REPLICAS`)."""
        s = self.settings()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MEMSAGA_")},
            **ROLE_SETTINGS,
            "MEMSAGA_STATE_DIR": str(self.root),
            "MEMSAGA_DATABASE_URL": s.require_database_url(),
            "MEMSAGA_NATS_URL": s.require_nats_url(),
            "MEMSAGA_TEMPORAL_ADDRESS": s.require_temporal_address(),
            "COLUMNS": "400",
        }
        logs = self.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        counts = replicas or DEFAULT_REPLICAS
        for role, argv in ROLES.items():
            for n in range(1, counts.get(role, 1) + 1):
                name = instance_name(role, n)
                self.roles[name] = RoleProcess(name, argv, env, logs / f"{name}.log")
                self.roles[name].start()

    def instances(self, role: str) -> list[str]:
        """The process names of ``role``, in order."""
        return [name for name in self.roles if role_of(name) == role]

    def pid(self, service: str) -> int:
        """The process id of a service."""
        pid = self.services[service].pid
        assert pid is not None
        return pid

    async def kill_service(self, name: str) -> None:
        """SIGKILL a service's process and reap it."""
        pid = self.pid(name)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(wait_for_exit, pid, 30.0)

    async def stop_postgres(self, mode: str) -> None:
        """``pg_ctl stop -m <mode>`` (``immediate``: no checkpoint, a crash recovery at the next start)."""
        service = self.services["postgres"]
        assert service.data_dir is not None
        data_dir = Path(service.data_dir)
        owner = data_dir.stat()
        as_user = os.geteuid() == 0 and owner.st_uid != 0
        argv = [str(bin_path("pg_ctl")), "stop", "-D", str(data_dir), "-m", mode, "-w", "-t", "30"]
        await asyncio.to_thread(
            subprocess.run,
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            cwd=data_dir,
            user=owner.st_uid if as_user else None,
            group=owner.st_gid if as_user else None,
            extra_groups=[] if as_user else None,
            check=False,
        )
        await asyncio.to_thread(wait_for_exit, self.pid("postgres"), 30.0)

    async def restart_service(self, name: str) -> None:
        """Start a stopped service again on its port and data.

        :raises ServiceDidNotComeBack: it came back on another port (it was taken meanwhile).
        :raises DevstackError: it did not start.
        """
        old = self.services[name]
        port = port_of(old.url)
        if name == "postgres":
            self.services[name] = await start_postgres(self.root, port=port)
        elif name == "nats":
            self.services[name] = await start_nats(self.root, port=port)
        else:
            assert old.ui_url is not None
            self.services[name] = await start_temporal(self.root, ports=(port, port_of(old.ui_url)))
        if self.services[name].url != old.url:
            raise ServiceDidNotComeBack(name, old.url, self.services[name].url)

    def close(self) -> None:
        """Stop every role, then every service (whatever state they are in)."""
        for role in self.roles.values():
            role.stop(timeout=5.0)
        for service in self.services.values():
            if service.pid is not None:
                try:
                    os.kill(service.pid, signal.SIGCONT)  # a paused NATS cannot stop
                except ProcessLookupError:
                    continue
            stop_service(service, timeout=10.0)
        for pid in _servers_under(self.root):  # started, but not yet recorded when the run was cut short
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _servers_under(root: Path) -> list[int]:
    """Processes whose command line names ``root`` (our servers: data dir, config, database file)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(root) in command and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found
