"""Sealing personal fields and blobs (eventstore/encryption.py, personal.py, keys.py): pure parts."""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
import uuid
from typing import Annotated

import orjson
import pytest
from pydantic import BaseModel

from eventstore.encryption import (
    BLIND,
    ERASED,
    SEALED_VALUES,
    TOKEN,
    DataKey,
    _KeyedHmac,
    open_blob,
    open_event,
    open_payload,
    seal_blob,
    seal_event,
    seal_payload,
)
from eventstore.errors import DataErased, SealedDataCorrupt, WrongMasterKey
from eventstore.keys import InvalidMasterKey, MasterKey
from eventstore.personal import PERSONAL, IndexedPersonalStr, PersonalStr, personal_paths
from sagas.memory_extraction.events import CandidatesExtracted, EpisodeRecorded, MemoryCreated


class Inner(BaseModel):
    said: PersonalStr
    plain: str


class Outer(BaseModel):
    name: IndexedPersonalStr
    maybe: PersonalStr | None = None
    items: list[Inner] = []
    notes: list[Annotated[str, PERSONAL]] = []
    attrs: dict[str, PersonalStr] = {}
    count: int = 0


def key(user: str = "u-1") -> DataKey:
    return DataKey(user, os.urandom(32))


def test_personal_paths_walk_nested_models_lists_and_dicts() -> None:
    found = {("/".join(f.path), f.indexed) for f in personal_paths(Outer)}
    assert found == {
        ("name", True),
        ("maybe", False),
        ("items/*/said", False),
        ("notes/*", False),
        ("attrs/*", False),
    }


def test_a_non_string_field_cannot_be_marked_personal() -> None:
    class Bad(BaseModel):
        age: Annotated[int, PERSONAL]

    with pytest.raises(TypeError, match=r"Bad\.age is marked personal but is not a str"):
        personal_paths(Bad)


def test_the_saga_events_declare_their_personal_fields() -> None:
    assert {f.path for f in personal_paths(EpisodeRecorded)} >= {("text",), ("text_sha256",)}
    assert ("candidates", "*", "text") in {f.path for f in personal_paths(CandidatesExtracted)}
    indexed = {f.path for f in personal_paths(MemoryCreated) if f.indexed}
    assert indexed == {("content_hash",), ("slot",)}


def test_seal_then_open_gives_the_payload_back_and_hides_every_personal_value() -> None:
    k, event_id = key(), uuid.uuid4()
    payload = Outer(
        name="Ana", maybe=None, items=[Inner(said="I'm allergic to peanuts", plain="p")], notes=["n1"],
        attrs={"city": "Utrecht"}, count=3,
    ).model_dump(mode="json")  # fmt: skip
    sealed = seal_payload(payload, personal_paths(Outer), k, event_id)
    # The tokens and blind indexes (hex digits) next to the values; the ciphertext is random
    # bytes that may hold a short value by chance, so only a long one is looked for in it.
    text = repr({name: value for name, value in sealed.items() if name != SEALED_VALUES})
    for secret in ("Ana", "peanuts", "n1", "Utrecht"):
        assert secret not in text
    assert b"allergic to peanuts" not in binascii.a2b_base64(sealed[SEALED_VALUES])
    assert sealed["maybe"] is None and sealed["count"] == 3 and sealed["items"][0]["plain"] == "p"
    assert BLIND in sealed["name"] and BLIND not in sealed["items"][0]["said"]
    opened = open_payload(sealed, k, event_id)
    assert opened == payload
    assert sealed["items"][0]["said"] == {TOKEN: 1}  # the sealed payload was not changed by opening


GOLDEN_KEY = DataKey("u-golden", bytes(range(32)))
GOLDEN_EVENT = uuid.UUID("12345678-1234-5678-1234-567812345678")
GOLDEN_SEALED_SHA256 = "7156df330646cc86fb88fe4d7355dd69536f0222eb228c3601c24f79d93f90fe"


def test_sealed_bytes_and_blind_indexes_stay_what_stored_events_hold() -> None:
    """Vectors made by the first release of the ``sealed`` column: the same key, event and
    payload must seal to the same bytes (a re-sent event stays a duplicate) and index to the
    same values (lookups keep matching stored events)."""
    payload = Outer(
        name="Ana", items=[Inner(said="I'm allergic to peanuts", plain="p")], notes=["n1", "n2"],
        attrs={"city": "Utrecht"}, count=3,
    ).model_dump(mode="json")  # fmt: skip
    sealed = seal_event(payload, personal_paths(Outer), GOLDEN_KEY, GOLDEN_EVENT)
    assert sealed is not None
    redacted, ciphertext = sealed
    assert redacted == {
        "attrs": {"city": {TOKEN: 4}},
        "count": 3,
        "items": [{"plain": "p", "said": {TOKEN: 1}}],
        "maybe": None,
        "name": {TOKEN: 0, BLIND: "84c5a8e097e5877c2d4d71f7644228d8671ddfb69252b31576e62ab20c44d08c"},
        "notes": [{TOKEN: 2}, {TOKEN: 3}],
    }
    assert hashlib.sha256(ciphertext).hexdigest() == GOLDEN_SEALED_SHA256
    assert ciphertext[1:13].hex() == "dfb35de90fb5d1acd1fe02de"  # the synthetic nonce
    assert orjson.loads(open_event(ciphertext, GOLDEN_KEY, GOLDEN_EVENT)) == payload
    lisbon = "7d1e299ad58fd1bf0b062326ce8894ffeb55fb46b291454eca73431c3478f4af"
    assert GOLDEN_KEY.blind_index("Lisbon") == lisbon
    address, content = seal_blob(GOLDEN_KEY, b"blob data")
    assert address == "132314be7c08aabe244ad7fd572a04a50545019b5dca15de6b7bcf94a4db43bf"
    # magic, synthetic nonce, ciphertext and tag
    blob = "6d7362318394889f3d0edccaf8a4b753e251d1ca98709309cacb1a60e1852fd4c75dce144d7d9a5fc7"
    assert content.hex() == blob


@pytest.mark.parametrize("size", [0, 1, 32, 64])
def test_a_keyed_hmac_is_the_standard_one(size: int) -> None:
    key = os.urandom(size)
    for message in (b"", b"Lisbon", os.urandom(200), os.urandom(5000)):
        assert _KeyedHmac(key).digest(message) == hmac.new(key, message, hashlib.sha256).digest()
        assert _KeyedHmac(key).hexdigest(message) == hmac.new(key, message, hashlib.sha256).hexdigest()
    with pytest.raises(ValueError, match="longer than a block"):
        _KeyedHmac(os.urandom(65))


def test_a_top_level_field_is_redacted_as_the_walk_redacts_it() -> None:
    """Top-level fields take a short path; tokens keep the order of the fields all the same."""
    payload = {"name": "Ana", "maybe": None, "notes": ["a", "b"], "attrs": {}, "count": 1}
    sealed = seal_event(payload, personal_paths(Outer), GOLDEN_KEY, GOLDEN_EVENT)
    assert sealed is not None
    assert sealed[0]["name"][TOKEN] == 0 and sealed[0]["notes"] == [{TOKEN: 1}, {TOKEN: 2}]
    assert sealed[0]["maybe"] is None and payload["name"] == "Ana"  # the given payload is not changed
    assert seal_event({"count": 1, "maybe": None}, personal_paths(Outer), GOLDEN_KEY, GOLDEN_EVENT) is None


def test_sealing_is_deterministic_per_event_and_differs_between_events() -> None:
    k, event_id = key(), uuid.uuid4()
    payload = {"name": "Ana"}
    paths = personal_paths(Outer)
    assert seal_payload(payload, paths, k, event_id) == seal_payload(payload, paths, k, event_id)
    other = seal_payload(payload, paths, k, uuid.uuid4())
    assert other[SEALED_VALUES] != seal_payload(payload, paths, k, event_id)[SEALED_VALUES]
    assert other["name"] == {TOKEN: 0, BLIND: k.blind_index("Ana")}  # the blind index matches across events


def test_a_token_does_not_open_with_another_key_or_event() -> None:
    k, event_id = key(), uuid.uuid4()
    sealed = seal_payload({"name": "Ana"}, personal_paths(Outer), k, event_id)
    with pytest.raises(SealedDataCorrupt):
        open_payload(sealed, key(), event_id)
    with pytest.raises(SealedDataCorrupt):
        open_payload(sealed, k, uuid.uuid4())


def test_without_the_key_a_payload_reads_as_erased() -> None:
    k, event_id = key(), uuid.uuid4()
    sealed = seal_payload({"name": "Ana", "count": 1}, personal_paths(Outer), k, event_id)
    assert open_payload(sealed, None, event_id) == {"name": ERASED, "count": 1}


def test_blobs_are_sealed_and_addressed_per_user() -> None:
    a, b = key("a"), key("b")
    data = b"a long episode " * 100
    address_a, content_a = seal_blob(a, data)
    address_b, _ = seal_blob(b, data)
    assert address_a != address_b and len(address_a) == 64
    assert b"long episode" not in content_a
    assert open_blob(a, address_a, content_a) == data
    with pytest.raises(SealedDataCorrupt):
        open_blob(b, address_a, content_a)
    with pytest.raises(DataErased):
        open_blob(None, address_a, content_a)


def test_master_key_text_round_trips_and_bad_keys_are_named() -> None:
    master = MasterKey.generate()
    assert MasterKey.from_text(master.text()).key_id == master.key_id
    with pytest.raises(InvalidMasterKey, match="not base64"):
        MasterKey.from_text("not a key!")
    with pytest.raises(InvalidMasterKey, match="holds 3 bytes"):
        MasterKey.from_text("YWJj")


def test_a_wrapped_key_opens_only_with_its_master_and_user() -> None:
    master, secret = MasterKey.generate(), os.urandom(32)
    wrapped = master.wrap("u-1", secret)
    assert master.unwrap("u-1", wrapped) == secret
    with pytest.raises(WrongMasterKey):
        MasterKey.generate().unwrap("u-1", wrapped)
    with pytest.raises(WrongMasterKey):
        master.unwrap("u-2", wrapped)
