"""Encryption of personal fields and blobs with a user's data key (AES-256-GCM).

An event with personal fields is stored twice over, in one row:

* ``payload`` (``jsonb``) holds the payload *redacted*: each personal value replaced by
  ``{"$enc": i}`` (a JSON object where the plain value was a string, so a redacted value can never
  be mistaken for a plain one), plus ``"$idx"``, a blind index, for an indexed field. This is what
  SQL sees (the blind-index lookups) and what a reader gets once the user's key is destroyed.
* ``sealed`` (``bytea``) holds the whole plain payload as canonical JSON, sealed with the user's
  key (:data:`PAYLOAD_FORMAT`, a 12-byte nonce, then the AES-GCM ciphertext and tag). A reader with
  the key decrypts it and parses it instead of the ``jsonb``: one AES-GCM operation and one JSON
  parse per event, as cheap as reading a plain row plus the decryption (issue 17's replay target).
  The associated data binds the ciphertext to its event id and user.

The nonce is synthetic: an HMAC of the event id and the plain payload under a key of its own.
Re-sending an event (at-least-once) therefore seals it to the same bytes, and the store's
duplicate check stays a comparison of columns; two different contents never share a nonce under
one key, since the nonce depends on them.

Rows written before the ``sealed`` column (eventstore/migrations/0007) kept only the personal
values, with their paths, in one ciphertext at the payload key ``"$sealed"`` (base64):
:func:`open_payload` still opens them, so those events read as they always did.

A blob of a user is stored under an HMAC of its content with the user's address key (equal
content of two users gets two addresses, and an address reveals nothing without the key), and its
content is sealed with the address as associated data.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from eventstore.errors import DataErased, SealedDataCorrupt
from eventstore.personal import ITEMS, Path, PersonalField

TOKEN = "$enc"
"""Key of the object that stands in for a sealed value: ``{"$enc": <its index>}``."""
BLIND = "$idx"
"""Key of a sealed value's blind index, beside :data:`TOKEN`."""
SEALED_VALUES = "$sealed"
"""Top-level payload key of the sealed values of an event stored before the ``sealed`` column."""
PAYLOAD_FORMAT = b"\x01"
"""First byte of a ``sealed`` column value: the layout of what follows (nonce, ciphertext)."""
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


_BLOCK = 64  # SHA-256's block size
_IPAD = bytes(0x36 for _ in range(_BLOCK))
_OPAD = bytes(0x5C for _ in range(_BLOCK))


class _KeyedHmac:
    """HMAC-SHA256 (RFC 2104) under one key, keyed once: the padded key's inner and outer hash
    states are kept and copied per message. The same values as ``hmac.new(key, message,
    sha256)``, in a third of the time for short messages (``hmac`` keys, or copies, in Python)."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            raise ValueError("a key longer than a block would be hashed first: not supported")
        padded = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(a ^ b for a, b in zip(padded, _IPAD, strict=True)))
        self._outer = hashlib.sha256(bytes(a ^ b for a, b in zip(padded, _OPAD, strict=True)))

    def _mac(self, message: bytes) -> Any:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer

    def digest(self, message: bytes) -> bytes:
        """The HMAC of ``message``."""
        mac: bytes = self._mac(message).digest()
        return mac

    def hexdigest(self, message: bytes) -> str:
        """The HMAC of ``message`` in hex digits."""
        mac: str = self._mac(message).hexdigest()
        return mac


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
    def _events(self) -> AESGCM:
        return AESGCM(_derive(self.secret, b"event-payload"))

    @cached_property
    def _payloads(self) -> AESGCM:
        return AESGCM(_derive(self.secret, b"payloads"))

    @cached_property
    def _address_key(self) -> bytes:
        return _derive(self.secret, b"blob-address")

    # HMACs keyed once per key: keying one costs about as much as using it.
    @cached_property
    def _nonce_mac(self) -> _KeyedHmac:
        return _KeyedHmac(_derive(self.secret, b"nonce"))

    @cached_property
    def _index_mac(self) -> _KeyedHmac:
        return _KeyedHmac(_derive(self.secret, b"blind-index"))

    def _nonce(self, *parts: bytes) -> bytes:
        message = b"".join(len(part).to_bytes(4, "big") + part for part in parts)
        return self._nonce_mac.digest(message)[:_NONCE_BYTES]

    def _event_nonce(self, event_id: bytes, plain: bytes) -> bytes:
        """``_nonce(b"event", event_id, plain)``, spelled out: it runs for every event."""
        message = _EVENT_NONCE_PREFIX + event_id + len(plain).to_bytes(4, "big") + plain
        return self._nonce_mac.digest(message)[:_NONCE_BYTES]

    def blind_index(self, value: str) -> str:
        """The value's blind index: equal values of one user match, nothing else is revealed."""
        return self._index_mac.hexdigest(value.encode())

    def blob_address(self, data: bytes) -> str:
        """The 64-hex-digit address of ``data`` as this user's blob."""
        return hmac.new(self._address_key, data, hashlib.sha256).hexdigest()


# The length-prefixed parts of an event's nonce before the event id's 16 bytes (``_nonce``).
_EVENT_NONCE_PREFIX = len(b"event").to_bytes(4, "big") + b"event" + (16).to_bytes(4, "big")


def _event_aad(event_id: uuid.UUID, user_id: str) -> bytes:
    return event_id.bytes + user_id.encode()


Located = list[tuple[list[str | int], str]]
"""Each sealed value with its concrete path in the payload (list indices and dict keys included)."""


def seal_event(
    payload: dict[str, Any], fields: tuple[PersonalField, ...], key: DataKey, event_id: uuid.UUID
) -> tuple[dict[str, Any], bytes] | None:
    """``(redacted payload, sealed payload)`` of an event whose ``fields`` hold string values, or
    None when none does (None values stay None, and such a payload is stored plain).

    The redacted payload has each value replaced by ``{"$enc": i}`` (plus ``"$idx"``, its blind
    index, for an indexed field); the sealed bytes hold the whole payload as canonical JSON
    (module docstring). Sealing one event twice gives the same bytes.
    """
    redacted, located = _redact(payload, fields, key)
    if not located:
        return None
    plain = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    event_bytes = event_id.bytes
    nonce = key._event_nonce(event_bytes, plain)
    ciphertext = key._events.encrypt(nonce, plain, event_bytes + key.user_id.encode())  # _event_aad
    return redacted, PAYLOAD_FORMAT + nonce + ciphertext


def open_event(sealed: bytes, key: DataKey, event_id: uuid.UUID) -> bytes:
    """The plain payload JSON :func:`seal_event` sealed.

    :raises SealedDataCorrupt: the bytes do not open with ``key``, or have another layout.
    """
    try:
        if sealed[:1] != PAYLOAD_FORMAT:
            raise ValueError(f"unknown layout {sealed[:1]!r}")
        nonce, ciphertext = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
        return key._events.decrypt(nonce, ciphertext, _event_aad(event_id, key.user_id))
    except Exception as exc:  # InvalidTag, ValueError, TypeError: all mean "not ours"
        raise SealedDataCorrupt(
            f"the sealed payload of event {event_id} does not open with its user's key"
        ) from exc


def erase(redacted: dict[str, Any]) -> dict[str, Any]:
    """A redacted payload with each sealed value read as :data:`ERASED` (its key is destroyed)."""
    erased: dict[str, Any] = _erase({k: v for k, v in redacted.items() if k != SEALED_VALUES})
    return erased


def _redact(
    payload: dict[str, Any], fields: tuple[PersonalField, ...], key: DataKey
) -> tuple[dict[str, Any], Located]:
    """``payload`` with the string values of ``fields`` replaced by tokens, and those values with
    their concrete paths, in token order (the order of ``fields``, each walked in payload order)."""
    located: Located = []
    redacted = payload
    for path, indexed in fields:
        if len(path) != 1:
            redacted = _seal_at(redacted, path, [], indexed, key, located)
            continue
        # A top-level field (most of them): the same token as the walk makes, without the walk.
        value = redacted.get(path[0])
        if isinstance(value, str):
            if redacted is payload:
                redacted = dict(payload)
            redacted[path[0]] = _token(value, indexed, key, located, [path[0]])
    return redacted, located


def _token(value: str, indexed: bool, key: DataKey, located: Located, at: list[str | int]) -> dict[str, Any]:
    """The token of the next sealed value (``value``, found at ``at``), which joins ``located``."""
    token: dict[str, Any] = {TOKEN: len(located)}
    if indexed:
        token[BLIND] = key.blind_index(value)
    located.append((at, value))
    return token


def _seal_at(
    value: Any, path: Path, at: list[str | int], indexed: bool, key: DataKey, located: Located
) -> Any:
    """``value`` with the strings at ``path`` (below ``at``) replaced by tokens; copies, never changes."""
    if not path:
        return _token(value, indexed, key, located, at) if isinstance(value, str) else value
    head, rest = path[0], path[1:]
    if head == ITEMS:
        if isinstance(value, dict):
            return {k: _seal_at(v, rest, [*at, k], indexed, key, located) for k, v in value.items()}
        if not isinstance(value, list):
            return value
        return [_seal_at(item, rest, [*at, i], indexed, key, located) for i, item in enumerate(value)]
    if not isinstance(value, dict) or head not in value:
        return value
    return {**value, head: _seal_at(value[head], rest, [*at, head], indexed, key, located)}


def seal_payload(
    payload: dict[str, Any], fields: tuple[PersonalField, ...], key: DataKey, event_id: uuid.UUID
) -> dict[str, Any]:
    """``payload`` sealed as events were stored before the ``sealed`` column: tokens in place of
    the values, and the values with their paths in one ciphertext under :data:`SEALED_VALUES`.

    The store no longer writes this form (:func:`seal_event`); it is kept so that tests and the
    event corpus can write such rows, which :func:`open_payload` still opens.
    """
    sealed, located = _redact(payload, fields, key)
    if not located:
        result: dict[str, Any] = sealed
        return result
    plain = orjson.dumps(located)
    nonce = key._nonce(event_id.bytes, plain)
    ciphertext = key._fields.encrypt(nonce, plain, _event_aad(event_id, key.user_id))
    return {**sealed, SEALED_VALUES: binascii.b2a_base64(nonce + ciphertext, newline=False).decode()}


def is_token(value: Any) -> bool:
    """Whether ``value`` stands for a sealed field."""
    return isinstance(value, dict) and TOKEN in value and len(value) <= 2


def open_payload(
    payload: dict[str, Any], key: DataKey | None, event_id: uuid.UUID, *, in_place: bool = False
) -> dict[str, Any]:
    """A copy of ``payload`` with its sealed values put back, or :data:`ERASED` in their place
    when ``key`` is None (destroyed); a payload without sealed values is returned as it is.
    ``in_place``: change ``payload`` itself (its caller holds the only reference: a fresh read).

    :raises SealedDataCorrupt: the values do not open with ``key``.
    """
    packed = payload.get(SEALED_VALUES)
    if packed is None:
        return payload
    opened = payload if in_place else dict(payload)
    del opened[SEALED_VALUES]
    if key is None:
        erased: dict[str, Any] = _erase(opened)
        return erased
    try:
        raw = binascii.a2b_base64(packed)
        plain = key._fields.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _event_aad(event_id, key.user_id))
        located: Located = orjson.loads(plain)
    except Exception as exc:  # InvalidTag, binascii.Error, TypeError: all mean "not ours"
        raise SealedDataCorrupt(
            f"the sealed fields of event {event_id} do not open with its user's key"
        ) from exc
    for path, value in located:
        if len(path) == 1:
            opened[path[0]] = value  # type: ignore[index]
        else:
            _put(opened, path, value, copy=not in_place)
    return opened


def _put(root: dict[str, Any], path: list[str | int], value: str, *, copy: bool) -> None:
    """Set ``value`` at ``path`` in ``root``; with ``copy`` (``root`` is a fresh top-level copy),
    copy the containers on the way so that the sealed payload it came from is not changed."""
    node: Any = root
    for step in path[:-1]:
        child = node[step]
        if copy:
            child = dict(child) if isinstance(child, dict) else list(child)
            node[step] = child
        node = child
    node[path[-1]] = value


def _erase(value: Any) -> Any:
    if isinstance(value, dict):
        if is_token(value):
            return ERASED
        return {k: _erase(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_erase(v) for v in value]
    return value


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
