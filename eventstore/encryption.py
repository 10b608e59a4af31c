"""Encryption of personal fields and blobs with a user's data key (AES-256-GCM).

A sealed field's value becomes ``{"$enc": "<base64 nonce + ciphertext>"}``: a JSON object where
the plain value was a string, so a sealed value can never be mistaken for a plain one and
opening needs no schema. The associated data binds a ciphertext to its event id and user.

The nonce is synthetic: an HMAC of the event id, the field's path and the plain value under a
key of its own. Re-sending an event (at-least-once) therefore seals it to the same bytes, and the
store's duplicate check stays a byte comparison; two different values never share a nonce under
one key, since the nonce depends on the value.

A blob of a user is stored under an HMAC of its content with the user's address key (equal
content of two users gets two addresses, and an address reveals nothing without the key), and its
content is sealed with the address as associated data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from eventstore.errors import DataErased, SealedDataCorrupt
from eventstore.personal import ITEMS, Path, PersonalField

TOKEN = "$enc"
BLIND = "$idx"
ERASED = "[erased]"
"""What a personal field reads as once its user's key is destroyed."""
SEALED = "sealed"
"""Metadata key set on an event whose payload holds sealed fields (removed once opened)."""
ERASED_FLAG = "erased"
"""Metadata key set on an event read after its user's key was destroyed."""
KEY_BYTES = 32
_NONCE_BYTES = 12


def _derive(secret: bytes, purpose: bytes) -> bytes:
    return hmac.new(secret, b"memsaga/" + purpose, hashlib.sha256).digest()


@dataclass(frozen=True)
class DataKey:
    """One user's data key (32 random bytes), with the subkeys derived from it."""

    user_id: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise ValueError(f"a data key has {KEY_BYTES} bytes, not {len(self.secret)}")

    @cached_property
    def _fields(self) -> AESGCM:
        return AESGCM(_derive(self.secret, b"fields"))

    @cached_property
    def _blobs(self) -> AESGCM:
        return AESGCM(_derive(self.secret, b"blobs"))

    @cached_property
    def _payloads(self) -> AESGCM:
        return AESGCM(_derive(self.secret, b"payloads"))

    @cached_property
    def _nonce_key(self) -> bytes:
        return _derive(self.secret, b"nonce")

    @cached_property
    def _address_key(self) -> bytes:
        return _derive(self.secret, b"blob-address")

    def _nonce(self, *parts: bytes) -> bytes:
        mac = hmac.new(self._nonce_key, digestmod=hashlib.sha256)
        for part in parts:
            mac.update(len(part).to_bytes(4, "big") + part)
        return mac.digest()[:_NONCE_BYTES]

    @cached_property
    def _index_key(self) -> bytes:
        return _derive(self.secret, b"blind-index")

    def blind_index(self, value: str) -> str:
        """The value's blind index: equal values of one user match, nothing else is revealed."""
        return hmac.new(self._index_key, value.encode(), hashlib.sha256).hexdigest()

    def blob_address(self, data: bytes) -> str:
        """The 64-hex-digit address of ``data`` as this user's blob."""
        return hmac.new(self._address_key, data, hashlib.sha256).hexdigest()


def _event_aad(event_id: uuid.UUID, user_id: str) -> bytes:
    return event_id.bytes + user_id.encode()


def seal_value(
    key: DataKey, event_id: uuid.UUID, path: Path, value: str, *, indexed: bool = False
) -> dict[str, str]:
    """``value`` sealed as a token (deterministic for one event, path and value); ``indexed``
    adds its blind index (:meth:`DataKey.blind_index`)."""
    plain = value.encode()
    nonce = key._nonce(event_id.bytes, "/".join(path).encode(), plain)
    sealed = key._fields.encrypt(nonce, plain, _event_aad(event_id, key.user_id))
    token = {TOKEN: base64.b64encode(nonce + sealed).decode()}
    if indexed:
        token[BLIND] = key.blind_index(value)
    return token


def open_value(key: DataKey, event_id: uuid.UUID, token: dict[str, Any]) -> str:
    """The plain value of a token. :raises SealedDataCorrupt: it does not open with ``key``."""
    try:
        raw = base64.b64decode(token[TOKEN], validate=True)
        plain = key._fields.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _event_aad(event_id, key.user_id))
    except Exception as exc:  # InvalidTag, binascii.Error, TypeError: all mean "not ours"
        raise SealedDataCorrupt(
            f"a sealed field of event {event_id} does not open with its user's key"
        ) from exc
    return plain.decode()


def seal_payload(
    payload: dict[str, Any], fields: tuple[PersonalField, ...], key: DataKey, event_id: uuid.UUID
) -> dict[str, Any]:
    """A copy of ``payload`` with the string values of ``fields`` sealed (None stays None)."""

    def seal(value: Any, path: Path, at: Path, indexed: bool) -> Any:
        if not path:
            if not isinstance(value, str):
                return value
            return seal_value(key, event_id, at, value, indexed=indexed)
        head, rest = path[0], path[1:]
        if head == ITEMS:
            if isinstance(value, dict):
                return {k: seal(v, rest, (*at, k), indexed) for k, v in value.items()}
            if not isinstance(value, list):
                return value
            return [seal(item, rest, (*at, str(i)), indexed) for i, item in enumerate(value)]
        if not isinstance(value, dict) or head not in value:
            return value
        return {**value, head: seal(value[head], rest, (*at, head), indexed)}

    sealed: Any = payload
    for personal in fields:
        sealed = seal(sealed, personal.path, (), personal.indexed)
    result: dict[str, Any] = sealed
    return result


def is_token(value: Any) -> bool:
    """Whether ``value`` is a sealed field."""
    return isinstance(value, dict) and TOKEN in value and len(value) <= 2


def open_payload(payload: dict[str, Any], key: DataKey | None, event_id: uuid.UUID) -> dict[str, Any]:
    """A copy of ``payload`` with every token opened, or replaced by :data:`ERASED` when
    ``key`` is None (destroyed)."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if is_token(value):
                return ERASED if key is None else open_value(key, event_id, value)
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    opened: dict[str, Any] = walk(payload)
    return opened


_BLOB_MAGIC = b"msb1"


def seal_blob(key: DataKey, data: bytes) -> tuple[str, bytes]:
    """``(address, sealed content)`` of ``data`` as ``key``'s user's blob."""
    address = key.blob_address(data)
    nonce = key._nonce(b"blob", address.encode())
    return address, _BLOB_MAGIC + nonce + key._blobs.encrypt(nonce, data, address.encode())


def open_blob(key: DataKey | None, address: str, content: bytes) -> bytes:
    """The plain bytes of a sealed blob.

    :raises DataErased: the user's key was destroyed.
    :raises SealedDataCorrupt: the content does not open with the key.
    """
    if key is None:
        raise DataErased(f"blob {address}")
    if not content.startswith(_BLOB_MAGIC):
        raise SealedDataCorrupt(f"blob {address} is not sealed")
    body = content[len(_BLOB_MAGIC) :]
    try:
        return key._blobs.decrypt(body[:_NONCE_BYTES], body[_NONCE_BYTES:], address.encode())
    except Exception as exc:
        raise SealedDataCorrupt(f"blob {address} does not open with its user's key") from exc


def seal_bytes(key: DataKey, data: bytes, aad: bytes) -> bytes:
    """``data`` sealed under ``key`` (a random nonce; for payloads outside the event store, such
    as Temporal's), bound to ``aad``."""
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + key._payloads.encrypt(nonce, data, aad)


def open_bytes(key: DataKey, sealed: bytes, aad: bytes) -> bytes:
    """The bytes :func:`seal_bytes` sealed. :raises SealedDataCorrupt: they do not open."""
    try:
        return key._payloads.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], aad)
    except Exception as exc:
        raise SealedDataCorrupt("a sealed payload does not open with its user's key") from exc
