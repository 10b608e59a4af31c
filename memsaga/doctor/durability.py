"""PostgreSQL's durability settings: what ``memsaga doctor`` shows and the roles refuse.

With ``fsync`` off a crash can corrupt the database; with ``synchronous_commit`` off a crash
loses the last commits, events whose appends memsaga (and Temporal) already took as done; with
``full_page_writes`` off a crash can leave torn pages. The settings are read on memsaga's own
connection, so a value set for its database or role, or in the DSN's ``options``, is seen too.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from memsaga.errors import InvalidSettings

SETTINGS = ("fsync", "synchronous_commit", "full_page_writes")
"""The settings checked, in the order they are shown."""

REFUSED = ("fsync", "synchronous_commit")
"""The settings with which the roles (worker, relay, projector) refuse to start when off."""

ALLOW_VARIABLE = "MEMSAGA_ALLOW_UNSAFE_POSTGRES"


@dataclass(frozen=True)
class Setting:
    """One setting as memsaga's connection sees it, and where its value comes from."""

    name: str
    value: str
    source: str
    """``pg_settings.source``: configuration file, command line, database, user, client, …"""
    database: str = "memsaga"
    user: str = "memsaga"

    @property
    def unsafe(self) -> bool:
        """Off: a crash can lose or corrupt committed data."""
        return self.value == "off"

    def fix(self) -> str:
        """How to turn it back on, by where the value comes from."""
        name, db, user = self.name, self.database, self.user
        match self.source:
            case "database":
                return f"ALTER DATABASE {db} RESET {name}"
            case "user":
                return f"ALTER ROLE {user} RESET {name}"
            case "database user":
                return f"ALTER ROLE {user} IN DATABASE {db} RESET {name}"
            case "client":
                return f"drop {name} from the connection's options (MEMSAGA_DATABASE_URL, PGOPTIONS)"
            case "command line":
                return f"start the server without -c {name}=off"
            case _:
                return f"ALTER SYSTEM SET {name} = on; SELECT pg_reload_conf() (or edit postgresql.conf)"


_READ = """SELECT name, setting, source, current_database() AS db, current_user AS usr
           FROM pg_settings WHERE name = ANY($1::text[])"""


async def read_settings(conn: asyncpg.Connection | asyncpg.Pool) -> list[Setting]:
    """The durability settings, in :data:`SETTINGS` order."""
    rows = {r["name"]: r for r in await conn.fetch(_READ, list(SETTINGS))}
    return [
        Setting(n, str(r["setting"]), str(r["source"]), str(r["db"]), str(r["usr"]))
        for n in SETTINGS
        if (r := rows.get(n)) is not None
    ]


class UnsafePostgres(InvalidSettings):
    """The event store's PostgreSQL runs with fsync or synchronous_commit off: a role refuses it."""

    def __init__(self, role: str, unsafe: list[Setting]) -> None:
        self.role = role
        self.unsafe = unsafe
        names = " and ".join(f"{s.name}=off" for s in unsafe)
        fixes = "; ".join(s.fix() for s in unsafe)
        self.problems = [names]
        super(InvalidSettings, self).__init__(
            f"{role} refuses to start: PostgreSQL runs with {names}, so a crash can lose events it"
            f" already acknowledged. Fix: {fixes}. For a benchmark only, set {ALLOW_VARIABLE}=1"
            " (`memsaga doctor` shows every durability setting)"
        )


async def require_durable(pool: asyncpg.Pool, *, role: str, allow_unsafe: bool) -> list[Setting]:
    """The unsafe settings, which are allowed only with ``allow_unsafe`` (a benchmark).

    :raises UnsafePostgres: fsync or synchronous_commit is off and ``allow_unsafe`` is not set.
    """
    unsafe = [s for s in await read_settings(pool) if s.name in REFUSED and s.unsafe]
    if unsafe and not allow_unsafe:
        raise UnsafePostgres(role, unsafe)
    return unsafe
