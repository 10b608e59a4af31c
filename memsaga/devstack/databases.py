"""Throw-away databases on one PostgreSQL server (for tests and experiments)."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import asyncpg

from memsaga.devstack.postgres import create_database, with_database


class DatabaseFactory:
    """Creates uniquely named databases through an admin URL, and drops them again."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self._created: list[str] = []

    async def __call__(self, prefix: str = "memsaga_test") -> str:
        """Same as :meth:`create`."""
        return await self.create(prefix)

    async def create(self, prefix: str = "memsaga_test") -> str:
        """A new empty database ``<prefix>_<12 hex>``; its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        await create_database(self.admin_url, name)
        self._created.append(name)
        return with_database(self.admin_url, name)

    async def drop(self, url: str) -> None:
        """Drop the database ``url`` names, closing its connections first."""
        name = urlsplit(url).path.lstrip("/")
        if not name.isidentifier():
            raise ValueError(f"not a plain database name: {name!r}")
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        if name in self._created:
            self._created.remove(name)

    async def drop_all(self) -> None:
        """Drop every database this factory created and has not dropped yet."""
        for name in list(self._created):
            await self.drop(with_database(self.admin_url, name))
