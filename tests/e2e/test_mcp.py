"""`memsaga mcp` driven by the MCP SDK's own client, over stdio and streamable HTTP, against the
real stack: remember an episode, then recall it (read-your-writes); bad calls are tool errors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp_types import CallToolResult, TextContent
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from memsaga.client import reject_extraction
from memsaga.mcp_server import build_server
from tests.e2e.conftest import Stack
from tests.workflows.support import EPISODE, SENSITIVE_EPISODE, closed_port

MEMSAGA = str(Path(sys.executable).parent / "memsaga")


def server_env(stack: Stack) -> dict[str, str]:
    """The MEMSAGA_* variables a client configuration gives the server."""
    settings = stack.settings
    assert settings.database_url and settings.temporal_address
    return {
        "MEMSAGA_DATABASE_URL": settings.database_url,
        "MEMSAGA_TEMPORAL_ADDRESS": settings.temporal_address,
        "MEMSAGA_TASK_QUEUE": settings.task_queue,
        "MEMSAGA_STATE_DIR": str(settings.state_dir),
        "MEMSAGA_MASTER_KEY": os.environ["MEMSAGA_MASTER_KEY"],  # tests/conftest.py: one per run
    }


def structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def error_text(result: CallToolResult) -> str:
    assert result.is_error
    [content] = result.content
    assert isinstance(content, TextContent)
    assert "Traceback" not in content.text
    return content.text


async def remember_then_recall(client: Client, user: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Remember EPISODE and wait for it; recall where the user lives after its last position."""
    remembered = structured(await client.call_tool("remember", {"text": EPISODE, "wait": True, **user}))
    result = remembered["result"]
    assert result["outcome"] == "completed" and result["last_position"] > 0, remembered
    found = structured(
        await client.call_tool(
            "recall",
            {"query": "where does the user live?", "after_position": result["last_position"], **user},
        )
    )
    hits = found["hits"]
    assert hits and "Lisbon" in hits[0]["text"], hits
    assert {hit["memory_id"] for hit in hits} <= set(result["memory_ids"])
    assert hits[0]["workflow_id"] == remembered["workflow_id"]
    return remembered, [hit["text"] for hit in hits]


async def test_over_stdio_one_user_remembers_then_recalls(search_stack: Stack, tmp_path: Path) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    params = StdioServerParameters(
        command=MEMSAGA, args=["mcp", "--user", user], env=server_env(search_stack), cwd=tmp_path
    )
    with (tmp_path / "stderr.log").open("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            remembered, _ = await remember_then_recall(client, {})
            other = await client.call_tool("recall", {"query": "where?", "user_id": "someone-else"})
            same = await client.call_tool("recall", {"query": "hiking", "user_id": user})
            empty = await client.call_tool("recall", {"query": "   "})
            bad_k = await client.call_tool("recall", {"query": "hiking", "k": 0})
            blank = await client.call_tool("remember", {"text": " "})

    assert set(tools) == {"remember", "recall", "memory_history", "forget_memory"}
    assert tools["recall"].input_schema["required"] == ["query"]
    assert remembered["user_id"] == user and remembered["workflow_id"] in remembered["url"]
    assert f"serves user {user!r} only" in error_text(other) and "someone-else" in error_text(other)
    assert "hiking" in structured(same)["hits"][0]["text"]
    assert "the query is empty" in error_text(empty)
    assert "k\n" in error_text(bad_k) and "greater than or equal to 1" in error_text(bad_k)
    assert "text must not be empty" in error_text(blank)


async def test_over_http_each_call_names_its_user(search_stack: Stack, tmp_path: Path) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    async with http_server(search_stack, tmp_path) as url, Client(url) as client:
        tools = (await client.list_tools()).tools
        _, texts = await remember_then_recall(client, {"user_id": user})
        missing = await client.call_tool("recall", {"query": "where does the user live?"})

    assert {tool.name for tool in tools} == {"remember", "recall", "memory_history", "forget_memory"}
    assert any("Lisbon" in text for text in texts)
    assert "user_id is required" in error_text(missing)


async def test_a_memory_s_history_and_forgetting_it_are_the_user_s_own(search_stack: Stack) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    server = build_server(search_stack.settings)
    async with Client(server) as client:
        remembered, _ = await remember_then_recall(client, {"user_id": user})
        memory_id = remembered["result"]["memory_ids"][0]
        history = structured(
            await client.call_tool("memory_history", {"memory_id": memory_id, "user_id": user})
        )
        stranger = await client.call_tool(
            "memory_history", {"memory_id": memory_id, "user_id": "someone-else"}
        )
        refused = await client.call_tool(
            "forget_memory", {"memory_id": memory_id, "reason": "not mine", "user_id": "someone-else"}
        )
        done = structured(
            await client.call_tool(
                "forget_memory", {"memory_id": memory_id, "reason": "asked", "user_id": user}
            )
        )
        again = structured(
            await client.call_tool(
                "forget_memory", {"memory_id": memory_id, "reason": "asked", "user_id": user}
            )
        )
        after = structured(
            await client.call_tool("memory_history", {"memory_id": memory_id, "user_id": user})
        )

    assert (history["memory_id"], history["status"]) == (memory_id, "current")
    assert history["events"][0]["event_type"] == "MemoryCreated"
    assert f"no memory {memory_id!r}" in error_text(stranger) and f"no memory {memory_id!r}" in error_text(
        refused
    )
    assert (done["outcome"], again["outcome"]) == ("retracted", "already_retracted")
    assert after["status"] == "retracted"


async def test_a_tool_call_is_the_parent_of_the_saga_start_span(
    search_stack: Stack, span_exporter: InMemorySpanExporter
) -> None:
    server = build_server(search_stack.settings, user=f"u-{uuid.uuid4().hex[:8]}")
    async with Client(server) as client:
        structured(await client.call_tool("remember", {"text": EPISODE}))

    spans = {span.name: span for span in span_exporter.get_finished_spans()}
    call, start = spans["tools/call remember"], spans["StartWorkflow:MemoryExtraction"]
    assert start.parent is not None and start.parent.span_id == call.context.span_id


async def test_remember_returns_the_status_of_a_saga_that_waits_for_a_review(search_stack: Stack) -> None:
    server = build_server(search_stack.settings, wait_seconds=60.0)
    async with Client(server) as client:
        started = time.monotonic()
        shown = structured(
            await client.call_tool(
                "remember", {"text": SENSITIVE_EPISODE, "user_id": f"u-{uuid.uuid4().hex[:8]}", "wait": True}
            )
        )
        waited = time.monotonic() - started
    await reject_extraction(search_stack.client, shown["workflow_id"], reason="test over")

    assert shown["result"] is None
    assert shown["status"]["waiting_for_review"] is True and shown["status"]["step"] == "review"
    assert waited < 60.0  # back once the saga waits for a human, not after the whole wait


@contextlib.asynccontextmanager
async def http_server(stack: Stack, tmp_path: Path) -> AsyncIterator[str]:
    """`memsaga mcp --transport http` on a free port; its endpoint once it accepts connections."""
    port = closed_port()
    with (tmp_path / "stderr.log").open("w+") as errlog:
        process = subprocess.Popen(
            [MEMSAGA, "mcp", "--transport", "http", "--port", str(port)],
            env={**os.environ, **server_env(stack)},
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=errlog,
        )
        try:
            await listening(port, process, errlog)
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            process.terminate()
            process.wait(timeout=20)


async def listening(port: int, process: subprocess.Popen[bytes], errlog: Any, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if process.poll() is not None:
            errlog.seek(0)
            raise AssertionError(f"memsaga mcp exited with {process.returncode}: {errlog.read()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"memsaga mcp did not listen on {port} within {timeout} s")


async def test_a_retried_remember_with_its_request_id_returns_the_same_saga(search_stack: Stack) -> None:
    server = build_server(search_stack.settings, user=f"u-{uuid.uuid4().hex[:8]}")
    request_id = f"chat-{uuid.uuid4().hex[:8]}"
    async with Client(server) as client:
        first = structured(await client.call_tool("remember", {"text": EPISODE, "request_id": request_id}))
        again = structured(await client.call_tool("remember", {"text": EPISODE, "request_id": request_id}))
        other = structured(await client.call_tool("remember", {"text": EPISODE}))

    assert first["workflow_id"] == again["workflow_id"] == f"extract-{request_id}"
    assert other["workflow_id"] != first["workflow_id"]
