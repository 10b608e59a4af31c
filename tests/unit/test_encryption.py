"""Sealing personal fields and blobs (eventstore/encryption.py, personal.py, keys.py): pure parts."""

from __future__ import annotations

import os
import uuid
from typing import Annotated

import pytest
from pydantic import BaseModel

from eventstore.encryption import (
    BLIND,
    ERASED,
    SEALED_VALUES,
    TOKEN,
    DataKey,
    open_blob,
    open_payload,
    seal_blob,
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
    text = repr(sealed)
    for secret in ("Ana", "peanuts", "n1", "Utrecht"):
        assert secret not in text
    assert sealed["maybe"] is None and sealed["count"] == 3 and sealed["items"][0]["plain"] == "p"
    assert BLIND in sealed["name"] and BLIND not in sealed["items"][0]["said"]
    opened = open_payload(sealed, k, event_id)
    assert opened == payload
    assert sealed["items"][0]["said"] == {TOKEN: 1}  # the sealed payload was not changed by opening


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
