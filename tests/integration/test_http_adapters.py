"""The http extractor and embedder over real HTTP, against a tiny OpenAI-compatible server in-process.

The fake speaks just enough HTTP/1.1 (one request per connection) on 127.0.0.1 with an ephemeral
port; httpx is not mocked. A closed port stands in for an embedder that is down for good.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio

from adapters import build_embedder, build_extractor
from adapters.http_embedder import EmbedderResponseInvalid, EmbedderUnavailable, HttpEmbedder
from adapters.http_endpoint import JsonEndpoint
from adapters.http_extractor import (
    SYSTEM_PROMPT,
    ExtractorResponseInvalid,
    ExtractorUnavailable,
    HttpExtractor,
)
from memsaga.bootstrap import adapter_config
from memsaga.settings import Settings

MEMORIES = [
    {"text": "User is allergic to peanuts", "kind": "health", "sensitive": True},
    {
        "text": "User loves hiking",
        "kind": "preference",
        "sensitive": False,
        "slot": "preference:hiking",
        "value": "positive",
        "polarity": "holds",
        "valid_from": None,
    },
]


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeOpenAI:
    """Answers ``/v1/chat/completions`` and ``/v1/embeddings``; ``overrides`` replace a path's answer."""

    requests: list[Request] = field(default_factory=list)
    overrides: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    chat_content: str = json.dumps(MEMORIES)
    vector_length: int | None = None  # None: honour the request's "dimensions"
    delay: float = 0.0
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            _method, path, _version = (await reader.readline()).decode().split(" ", 2)
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, value = line.decode().split(":", 1)
                headers[name.strip().lower()] = value.strip()
            raw = await reader.readexactly(int(headers.get("content-length", "0")))
            body = json.loads(raw) if raw else None
            self.requests.append(Request(path, headers, body))
            status, payload = self.overrides.get(path) or self.answer(path, body)
            await asyncio.sleep(self.delay)
            head = f"HTTP/1.1 {status} Fake\r\nContent-Type: application/json\r\n"
            head += f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
            writer.write(head.encode() + payload)
            await writer.drain()
        finally:
            writer.close()

    def answer(self, path: str, body: Any) -> tuple[int, bytes]:
        if path == "/v1/chat/completions":
            reply = {
                "choices": [{"index": 0, "message": {"role": "assistant", "content": self.chat_content}}]
            }
            return 200, json.dumps(reply).encode()
        if path == "/v1/embeddings":
            length = self.vector_length or body["dimensions"]
            # Answer in reverse order: the client must put vectors back in input order by "index".
            data = [
                {"index": i, "embedding": [float(i) + 0.5] * length}
                for i in reversed(range(len(body["input"])))
            ]
            return 200, json.dumps({"data": data, "model": body["model"]}).encode()
        return 404, b'{"error": "no such path"}'


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    server_state = FakeOpenAI()
    server = await asyncio.start_server(server_state.handle, "127.0.0.1", 0)
    server_state.port = server.sockets[0].getsockname()[1]
    async with server:
        yield server_state


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def extractor(base_url: str, **endpoint: Any) -> HttpExtractor:
    return HttpExtractor(
        JsonEndpoint(base_url, variables="MEMSAGA_LLM", api_key="sk-test", **endpoint), model="tiny-llm"
    )


def embedder(base_url: str, dimension: int = 4, batch_size: int = 64) -> HttpEmbedder:
    endpoint = JsonEndpoint(base_url, variables="MEMSAGA_EMBEDDING")
    return HttpEmbedder(endpoint, model="tiny-embed", dimension=dimension, batch_size=batch_size)


# --- Extractor -------------------------------------------------------------------------------------


async def test_the_extractor_sends_the_episode_and_parses_the_memories(fake: FakeOpenAI) -> None:
    candidates = await extractor(fake.base_url).extract("I'm allergic to peanuts. I love hiking.")

    assert [(c.text, c.kind, c.sensitive, c.slot, c.value) for c in candidates] == [
        ("User is allergic to peanuts", "health", True, None, None),
        ("User loves hiking", "preference", False, "preference:hiking", "positive"),
    ]
    [request] = fake.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.body["model"] == "tiny-llm"
    assert request.body["messages"] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "I'm allergic to peanuts. I love hiking."},
    ]


async def test_the_extractor_heartbeats_while_it_waits(fake: FakeOpenAI) -> None:
    fake.delay = 0.3
    beats: list[float] = []

    await extractor(fake.base_url, heartbeat_interval=0.05).extract(
        "I love hiking.", heartbeat=lambda: beats.append(1)
    )

    assert len(beats) >= 4  # one at once, then one per 50 ms of a 300 ms wait


async def test_garbage_from_the_model_is_a_named_error(fake: FakeOpenAI) -> None:
    fake.chat_content = "Sure! Here are some memories: the user likes hiking."

    with pytest.raises(ExtractorResponseInvalid, match="not JSON"):
        await extractor(fake.base_url).extract("I love hiking.")


async def test_a_body_that_is_not_json_is_a_named_error(fake: FakeOpenAI) -> None:
    fake.overrides["/v1/chat/completions"] = (200, b"<html>gateway</html>")

    with pytest.raises(ExtractorResponseInvalid, match="not JSON"):
        await extractor(fake.base_url).extract("I love hiking.")


async def test_an_answer_without_choices_is_a_named_error(fake: FakeOpenAI) -> None:
    fake.overrides["/v1/chat/completions"] = (200, b'{"object": "chat.completion"}')

    with pytest.raises(ExtractorResponseInvalid, match="choices"):
        await extractor(fake.base_url).extract("I love hiking.")


@pytest.mark.parametrize(
    ("status", "retryable", "hint"),
    [
        (500, True, "retry later"),
        (429, True, "retry later"),
        (401, False, "MEMSAGA_LLM_API_KEY"),
        (400, False, "MEMSAGA_LLM_MODEL"),
    ],
)
async def test_http_errors_say_whether_to_retry(
    fake: FakeOpenAI, status: int, retryable: bool, hint: str
) -> None:
    fake.overrides["/v1/chat/completions"] = (status, b'{"error": "nope"}')

    with pytest.raises(ExtractorUnavailable, match=hint) as caught:
        await extractor(fake.base_url).extract("I love hiking.")

    assert caught.value.status == status and caught.value.retryable is retryable


async def test_a_closed_port_fails_at_once_and_is_retryable() -> None:
    started = time.monotonic()

    with pytest.raises(ExtractorUnavailable, match="cannot connect") as caught:
        await extractor(f"http://127.0.0.1:{closed_port()}/v1").extract("I love hiking.")

    assert caught.value.retryable and caught.value.status is None
    assert time.monotonic() - started < 2.0


async def test_build_extractor_from_settings_reaches_the_server(fake: FakeOpenAI) -> None:
    settings = Settings(llm_base_url=fake.base_url, llm_api_key="sk-settings", llm_model="from-settings")

    candidates = await build_extractor("http", adapter_config(settings)).extract("I love hiking.")

    assert len(candidates) == 2
    assert fake.requests[0].body["model"] == "from-settings"
    assert fake.requests[0].headers["authorization"] == "Bearer sk-settings"


# --- Embedder --------------------------------------------------------------------------------------


async def test_the_embedder_returns_vectors_in_input_order_in_batches(fake: FakeOpenAI) -> None:
    vectors = await embedder(fake.base_url, dimension=3, batch_size=2).embed(["a", "b", "c", "d", "e"])

    assert vectors == [[0.5] * 3, [1.5] * 3, [0.5] * 3, [1.5] * 3, [0.5] * 3]
    assert [r.body["input"] for r in fake.requests] == [["a", "b"], ["c", "d"], ["e"]]
    assert all(r.body == r.body | {"model": "tiny-embed", "dimensions": 3} for r in fake.requests)


async def test_no_texts_make_no_request(fake: FakeOpenAI) -> None:
    assert await embedder(fake.base_url).embed([]) == []
    assert fake.requests == []


async def test_a_wrong_dimension_says_which_setting_to_change(fake: FakeOpenAI) -> None:
    fake.vector_length = 5

    with pytest.raises(EmbedderResponseInvalid, match="MEMSAGA_EMBEDDING_DIMENSION=5"):
        await embedder(fake.base_url, dimension=4).embed(["a"])


async def test_a_garbage_embedding_answer_is_a_named_error(fake: FakeOpenAI) -> None:
    fake.overrides["/v1/embeddings"] = (200, b'{"data": [{"embedding": "zero"}]}')

    with pytest.raises(EmbedderResponseInvalid, match="not a list of numbers"):
        await embedder(fake.base_url).embed(["a"])


async def test_a_server_error_is_retryable_and_a_client_error_is_not(fake: FakeOpenAI) -> None:
    fake.overrides["/v1/embeddings"] = (503, b"{}")
    with pytest.raises(EmbedderUnavailable) as server_error:
        await embedder(fake.base_url).embed(["a"])

    fake.overrides["/v1/embeddings"] = (404, b"{}")
    with pytest.raises(EmbedderUnavailable, match="MEMSAGA_EMBEDDING_BASE_URL") as client_error:
        await embedder(fake.base_url).embed(["a"])

    assert server_error.value.retryable and not client_error.value.retryable


async def test_an_embedder_on_a_closed_port_fails_at_once() -> None:
    settings = Settings(embedding_base_url=f"http://127.0.0.1:{closed_port()}/v1", embedding_dimension=4)
    started = time.monotonic()

    with pytest.raises(EmbedderUnavailable, match="MEMSAGA_EMBEDDING_BASE_URL") as caught:
        await build_embedder("http", adapter_config(settings)).embed(["User loves hiking"])

    assert caught.value.retryable
    assert time.monotonic() - started < 2.0
