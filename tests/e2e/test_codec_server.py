"""Sealed Temporal payloads (memsaga/payload_codec.py) and the UI's codec server
(memsaga/codec_server.py), against a real PostgreSQL; ``memsaga keys`` rotation."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from google.protobuf.json_format import MessageToDict
from temporalio.api.common.v1 import Payload
from temporalio.converter import WorkflowSerializationContext

from eventstore import EVENTSTORE_MIGRATIONS, MigrationSource
from eventstore.keys import KeyRing, MasterKey
from memsaga.codec_server import codec_app
from memsaga.devstack.databases import DatabaseFactory
from memsaga.payload_codec import ENCODING, KeyAccess, SealingCodec
from memsaga.settings import Settings
from tests.support import migrated_database

pytestmark = pytest.mark.services

SAGAS = MigrationSource("sagas", "sagas")
MEMSAGA = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "memsaga")


def plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=f'"{text}"'.encode())


async def test_a_users_saga_payloads_are_sealed_and_the_codec_server_opens_them(
    fresh_database: DatabaseFactory,
) -> None:
    dsn = await migrated_database(fresh_database, [EVENTSTORE_MIGRATIONS, SAGAS])
    master, user, workflow = MasterKey.generate(), f"u-{uuid.uuid4().hex[:6]}", "extract-codec-1"
    settings = Settings(database_url=dsn, master_key=master.text())
    access = KeyAccess(settings)
    owners, keyring = await access.get()
    await owners.register(workflow, user)
    codec = SealingCodec(access).with_context(
        WorkflowSerializationContext(namespace="default", workflow_id=workflow)
    )
    [sealed] = await codec.encode([plain("I'm allergic to peanuts")])
    assert sealed.metadata["encoding"] == ENCODING and b"peanuts" not in sealed.SerializeToString()
    [other] = (
        await SealingCodec(access)
        .with_context(WorkflowSerializationContext(namespace="default", workflow_id="forget-someone"))
        .encode([plain("no owner")])
    )
    assert other.data == b'"no owner"'  # a workflow without an owner stays plain

    app = codec_app(SealingCodec(KeyAccess(settings, cache_seconds=0)), origins=["http://127.0.0.1:8233"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://codec") as http:
        answer = await http.post("/decode", json={"payloads": [MessageToDict(sealed)]})
        assert answer.status_code == 200
        assert answer.json()["payloads"][0]["data"] == MessageToDict(plain("I'm allergic to peanuts"))["data"]
        preflight = await http.options(
            "/decode",
            headers={"Origin": "http://127.0.0.1:8233", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.headers["access-control-allow-origin"] == "http://127.0.0.1:8233"
        assert (await http.post("/decode", json={"nope": 1})).status_code == 400

        await keyring.destroy(user)
        erased = await http.post("/decode", json={"payloads": [MessageToDict(sealed)]})
        assert (
            erased.json()["payloads"][0]["data"]
            == MessageToDict(Payload(data=b'"[erased: user forgotten]"'))["data"]
        )


async def test_keys_rotate_rewraps_and_keeps_data_readable(
    fresh_database: DatabaseFactory, tmp_path: Path
) -> None:
    dsn = await migrated_database(fresh_database, [EVENTSTORE_MIGRATIONS, SAGAS])
    old = MasterKey.generate()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        key = (await KeyRing(pool, old).keys_for_write(["u-rot"]))["u-rot"]
        new_file = tmp_path / "new.key"
        made = subprocess.run(
            [MEMSAGA, "keys", "new", "--out", str(new_file)], capture_output=True, text=True
        )
        assert made.returncode == 0, made.stderr
        env = {**os.environ, "MEMSAGA_DATABASE_URL": dsn, "MEMSAGA_MASTER_KEY": old.text()}
        rotated = subprocess.run(
            [MEMSAGA, "keys", "rotate", "--new-key-file", str(new_file), "--json"],
            capture_output=True,
            text=True,
            env=env,
        )
        assert rotated.returncode == 0, rotated.stderr
        assert '"rewrapped": 1' in rotated.stdout
        new = MasterKey.from_file(new_file)
        assert (await KeyRing(pool, new).keys_for_read(["u-rot"]))["u-rot"] == key
        again = subprocess.run(
            [MEMSAGA, "keys", "rotate", "--new-key-file", str(new_file)],
            capture_output=True,
            text=True,
            env=env,
        )
        assert (
            again.returncode == 3 and "did not wrap the stored data keys" in again.stderr
        )  # old key is stale
    finally:
        await pool.close()
