"""The payload codec without services: plain payloads pass, and a database that does not answer
is a named, retryable error (never an asyncpg error for the caller to guess at)."""

from __future__ import annotations

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import WorkflowSerializationContext

from eventstore.keys import MasterKey
from memsaga.errors import DatabaseUnreachable
from memsaga.payload_codec import KeyAccess, SealingCodec
from memsaga.settings import Settings

CLOSED = "postgresql://nobody:secret@127.0.0.1:9/none"


def codec(workflow_id: str | None) -> SealingCodec:
    settings = Settings(database_url=CLOSED, master_key=MasterKey.generate().text())
    plain = SealingCodec(KeyAccess(settings))
    if workflow_id is None:
        return plain
    return plain.with_context(WorkflowSerializationContext(namespace="default", workflow_id=workflow_id))


async def test_payloads_outside_a_workflow_and_plain_ones_need_no_database() -> None:
    payload = Payload(metadata={"encoding": b"json/plain"}, data=b'"hello"')
    assert await codec(None).encode([payload]) == [payload]
    assert await codec("extract-x").decode([payload]) == [payload]


async def test_an_unreachable_database_is_named_with_the_password_masked() -> None:
    with pytest.raises(DatabaseUnreachable) as raised:
        await codec("extract-x").encode([Payload(data=b'"hello"')])
    assert "127.0.0.1:9" in str(raised.value) and "secret" not in str(raised.value)
