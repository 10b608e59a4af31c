"""The key hierarchy: one master key (given by configuration) wraps one data key per user.

``memsaga.data_keys`` holds each user's data key wrapped with the master key (AES-256-GCM, the
user id as associated data). A user's key is made at the first personal write for the user, and
destroyed when the user is forgotten: the wrapped bytes are cleared for good, and everything the
key sealed (event fields, blobs, Temporal payloads) can no longer be read by anyone.

Keys are cached per process for ``cache_seconds`` (live ones) or for good (destroyed ones), so a
process that held a user's key sees its destruction within that time. When a lookup has to read
the table anyway, it also reads again the users whose entries expired but were used meanwhile
(one round trip for many instead of one each); expired entries nobody used are dropped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from eventstore.encryption import KEY_BYTES, DataKey
from eventstore.errors import EncryptionError, UserWasForgotten, WrongMasterKey

DEFAULT_CACHE_SECONDS = 5.0
"""How long a process keeps a live key: also how long a destroyed key may still be held in memory."""
REFRESH_LIMIT = 1000
"""Expired entries in use read again along with one lookup, at most."""


class InvalidMasterKey(EncryptionError):
    """The master key given by configuration is not 32 bytes in base64."""


@dataclass(frozen=True)
class MasterKey:
    """The key-encryption key: 32 bytes, given as base64 text (``MEMSAGA_MASTER_KEY``) or a file."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise InvalidMasterKey(f"a master key has {KEY_BYTES} bytes, not {len(self.secret)}")

    @classmethod
    def generate(cls) -> MasterKey:
        """A new random master key."""
        return cls(os.urandom(KEY_BYTES))

    @classmethod
    def from_text(cls, text: str, *, source: str = "the master key") -> MasterKey:
        """Parse base64 (standard or URL-safe) of 32 bytes.

        :raises InvalidMasterKey: not base64, or not 32 bytes.
        """
        cleaned = text.strip()
        try:
            secret = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise InvalidMasterKey(
                f"{source} is not base64 (make one with `memsaga keys new`, 32 random bytes in base64)"
            ) from None
        if len(secret) != KEY_BYTES:
            raise InvalidMasterKey(
                f"{source} holds {len(secret)} bytes, not {KEY_BYTES} (make one with `memsaga keys new`)"
            )
        return cls(secret)

    @classmethod
    def from_file(cls, path: Path) -> MasterKey:
        """Read a key file (base64 text). :raises InvalidMasterKey: unreadable or malformed."""
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidMasterKey(f"cannot read the master key file {path}: {exc}") from None
        return cls.from_text(text, source=f"the master key file {path}")

    def text(self) -> str:
        """The key as base64 text (what a key file holds)."""
        return base64.b64encode(self.secret).decode()

    @property
    def key_id(self) -> str:
        """A public name of this key (16 hex digits), stored with every key it wraps."""
        return hmac.new(self.secret, b"memsaga/master-key-id", hashlib.sha256).hexdigest()[:16]

    def wrap(self, user_id: str, secret: bytes) -> bytes:
        """``secret`` encrypted for storage, bound to ``user_id``."""
        nonce = os.urandom(12)
        return nonce + AESGCM(self.secret).encrypt(nonce, secret, user_id.encode())

    def unwrap(self, user_id: str, wrapped: bytes) -> bytes:
        """The data key ``wrap`` stored. :raises WrongMasterKey: another key wrapped it."""
        try:
            return AESGCM(self.secret).decrypt(wrapped[:12], wrapped[12:], user_id.encode())
        except Exception:
            raise WrongMasterKey(self.key_id, ["(a key under this id that does not open)"]) from None


@dataclass
class _Cached:
    key: DataKey | None
    until: float
    exists: bool = True  # False: the user has no key (yet)
    wrapped: bytes | None = None  # what ``key`` was unwrapped from
    used: bool = False  # served since it was read


class KeyRing:
    """Users' data keys in ``memsaga.data_keys``, unwrapped with ``master`` and cached."""

    def __init__(
        self, pool: asyncpg.Pool, master: MasterKey, *, cache_seconds: float = DEFAULT_CACHE_SECONDS
    ) -> None:
        self.pool = pool
        self.master = master
        self.cache_seconds = cache_seconds
        # Live and absent keys in the order they were read (so, of expiry); destroyed ones apart.
        self._cache: dict[str, _Cached] = {}
        self._destroyed: set[str] = set()

    async def check_master(self) -> None:
        """Refuse a master key that did not wrap the stored keys (call at process start).

        :raises WrongMasterKey: some live key was wrapped by another master key.
        """
        others = await self.pool.fetch(
            "SELECT DISTINCT master_key_id FROM memsaga.data_keys"
            " WHERE master_key_id IS NOT NULL AND master_key_id <> $1",
            self.master.key_id,
        )
        if others:
            raise WrongMasterKey(self.master.key_id, sorted(r[0] for r in others))

    async def keys_for_write(self, user_ids: Iterable[str]) -> dict[str, DataKey]:
        """Each user's live key, made now for a user who has none.

        :raises UserWasForgotten: a user's key was destroyed.
        """
        wanted = set(user_ids)
        now, cache, live = time.monotonic(), self._cache, {}
        for user_id in wanted:  # the common case: every key cached and live
            cached = cache.get(user_id)
            if cached is None or cached.key is None or cached.until <= now:
                break
            cached.used = True
            live[user_id] = cached.key
        else:
            return live
        keys = await self.keys_for_read(wanted)
        missing = [u for u in wanted if u not in keys]
        if missing:
            await self._create(missing)
            for user_id in missing:
                self._cache.pop(user_id, None)
            keys.update(await self.keys_for_read(missing))
        for user_id in wanted:
            found = keys.get(user_id)
            if found is None:
                raise UserWasForgotten(user_id)
        return {u: k for u, k in keys.items() if k is not None}

    async def keys_for_read(self, user_ids: Iterable[str]) -> dict[str, DataKey | None]:
        """Each known user's key, None for a destroyed one; users without a key are left out."""
        now, cache = time.monotonic(), self._cache
        found: dict[str, DataKey | None] = {}
        wanted: set[str] = set()
        for user_id in set(user_ids):
            if user_id in self._destroyed:
                found[user_id] = None
                continue
            cached = cache.get(user_id)
            if cached is not None and cached.until > now:
                cached.used = True
                if cached.exists:
                    found[user_id] = cached.key
            else:
                wanted.add(user_id)
        if wanted:
            found.update(await self._read(wanted, [*wanted, *self._expired_in_use(now, wanted)], now))
        return found

    async def _read(self, wanted: set[str], fetch: list[str], now: float) -> dict[str, DataKey | None]:
        """Read ``fetch``'s keys into the cache; ``wanted``'s (known ones) are returned."""
        rows = await self.pool.fetch(
            "SELECT user_id, wrapped, master_key_id FROM memsaga.data_keys WHERE user_id = ANY($1::text[])",
            fetch,
        )
        found: dict[str, DataKey | None] = {}
        for row in rows:
            user_id = row["user_id"]
            wrapped = None if row["wrapped"] is None else bytes(row["wrapped"])
            if wrapped is not None and row["master_key_id"] != self.master.key_id:
                if user_id in wanted:
                    raise WrongMasterKey(self.master.key_id, [row["master_key_id"]])
                self._cache.pop(user_id, None)  # read along only: refused when asked for
                continue
            if wrapped is None:
                self._forget(user_id)
                key = None
            else:
                key = self._unwrapped(user_id, wrapped)
                self._keep(user_id, _Cached(key, now + self.cache_seconds, wrapped=wrapped))
            if user_id in wanted:
                found[user_id] = key
        for user_id in set(fetch) - {row["user_id"] for row in rows}:
            self._keep(user_id, _Cached(None, now + self.cache_seconds, exists=False))
        return found

    def _expired_in_use(self, now: float, skip: set[str]) -> list[str]:
        """Users (not in ``skip``) whose entries expired after being used: read again with the
        lookup at hand, up to :data:`REFRESH_LIMIT`. Expired entries nobody used are dropped.
        Entries are in the order they were read, so the expired ones come first."""
        expired: list[str] = []
        for user_id, cached in self._cache.items():
            if cached.until > now or len(expired) >= REFRESH_LIMIT:
                break
            expired.append(user_id)
        again = []
        for user_id in expired:
            if user_id in skip:
                continue
            if self._cache[user_id].used:
                again.append(user_id)
            else:
                del self._cache[user_id]
        return again

    def _keep(self, user_id: str, entry: _Cached) -> None:
        """Cache ``entry``, last in the order of reading."""
        self._cache.pop(user_id, None)
        self._cache[user_id] = entry

    def _forget(self, user_id: str) -> None:
        """Cache ``user_id``'s key as destroyed, for good."""
        self._cache.pop(user_id, None)
        self._destroyed.add(user_id)

    def _unwrapped(self, user_id: str, wrapped: bytes) -> DataKey:
        """The key ``wrapped`` holds. A key read again unchanged (its entry expired, the user
        still live) is the one already unwrapped, with the subkeys it derived: only whether it
        is still live had to be read again, not the key material."""
        previous = self._cache.get(user_id)
        if previous is not None and previous.key is not None and previous.wrapped == wrapped:
            return previous.key
        return DataKey(user_id, self.master.unwrap(user_id, wrapped))

    async def state(self, user_id: str) -> str:
        """``"active"``, ``"destroyed"`` or ``"none"`` (never had personal data), from the table."""
        row = await self.pool.fetchrow("SELECT wrapped FROM memsaga.data_keys WHERE user_id = $1", user_id)
        if row is None:
            return "none"
        return "destroyed" if row["wrapped"] is None else "active"

    async def destroy(self, user_id: str) -> bool:
        """Destroy ``user_id``'s key for good (a user without one gets a destroyed entry, so that
        nothing personal can be stored for the id afterwards). True when a live key was destroyed.

        The table is vacuumed afterwards so that the old row version, which still holds the
        wrapped key, is not left on its pages (WAL and backups are out of reach: docs/privacy.md).
        """
        row = await self.pool.fetchrow(
            "WITH before AS (SELECT wrapped IS NOT NULL AS live FROM memsaga.data_keys WHERE user_id = $1)"
            " INSERT INTO memsaga.data_keys AS k (user_id, wrapped, master_key_id, destroyed_at)"
            " VALUES ($1, NULL, NULL, now())"
            " ON CONFLICT (user_id) DO UPDATE SET wrapped = NULL, master_key_id = NULL,"
            " destroyed_at = coalesce(k.destroyed_at, now())"
            " RETURNING coalesce((SELECT live FROM before), false) AS live",
            user_id,
        )
        self._forget(user_id)
        await self.pool.execute("VACUUM memsaga.data_keys")
        assert row is not None
        return bool(row["live"])

    async def rewrap(self, new_master: MasterKey) -> int:
        """Wrap every live data key with ``new_master`` instead (in one transaction); events and
        blobs are untouched. Returns how many keys were re-wrapped.

        :raises WrongMasterKey: some key was wrapped by neither (nothing is changed).
        """
        await self.check_master()
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT user_id, wrapped FROM memsaga.data_keys WHERE wrapped IS NOT NULL FOR UPDATE"
            )
            for row in rows:
                secret = self.master.unwrap(row["user_id"], bytes(row["wrapped"]))
                await conn.execute(
                    "UPDATE memsaga.data_keys SET wrapped = $2, master_key_id = $3 WHERE user_id = $1",
                    row["user_id"],
                    new_master.wrap(row["user_id"], secret),
                    new_master.key_id,
                )
        self.master = new_master
        self._cache.clear()
        await self.pool.execute("VACUUM memsaga.data_keys")
        return len(rows)

    async def _create(self, user_ids: list[str]) -> None:
        for user_id in sorted(user_ids):
            await self.pool.execute(
                "INSERT INTO memsaga.data_keys (user_id, wrapped, master_key_id) VALUES ($1, $2, $3)"
                " ON CONFLICT (user_id) DO NOTHING",
                user_id,
                self.master.wrap(user_id, os.urandom(KEY_BYTES)),
                self.master.key_id,
            )
