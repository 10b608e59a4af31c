"""The codec server the Temporal UI calls to show sealed payloads (``memsaga codec-server``).

It implements Temporal's remote codec protocol: ``POST /decode`` and ``POST /encode`` with a
JSON body ``{"payloads": [<Payload in protobuf JSON>]}``, answered in kind. Decoding opens a
user's sealed payload with the master key this process is configured with; a payload of a
forgotten user decodes to the JSON string ``"[erased: user forgotten]"``. Encoding passes
payloads through (the UI's requests carry no workflow to seal them for). Only the origins given
may call it from a browser (the local stack's UI by default). Run it where operators may see
users' data, and nowhere else.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.api.common.v1 import Payload

from eventstore.errors import DataErased, SealedDataCorrupt
from memsaga.payload_codec import SealingCodec

ERASED_PAYLOAD = Payload(metadata={"encoding": b"json/plain"}, data=b'"[erased: user forgotten]"')


def _payloads(body: Any) -> list[Payload]:
    if not isinstance(body, dict) or not isinstance(body.get("payloads"), list):
        raise ValueError('the body must be {"payloads": [...]}')
    try:
        return [ParseDict(p, Payload()) for p in body["payloads"]]
    except ParseError as exc:
        raise ValueError(f"not a payload: {exc}") from None


def _answer(payloads: list[Payload]) -> JSONResponse:
    return JSONResponse({"payloads": [MessageToDict(p) for p in payloads]})


def codec_app(codec: SealingCodec, *, origins: list[str]) -> Starlette:
    """The ASGI app: ``/decode`` and ``/encode`` over ``codec``, callable from ``origins``."""

    async def decode(request: Request) -> JSONResponse:
        try:
            payloads = _payloads(await request.json())
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        opened = []
        for payload in payloads:
            try:
                [plain] = await codec.decode([payload])
            except DataErased:
                plain = ERASED_PAYLOAD
            except SealedDataCorrupt:
                plain = payload
            opened.append(plain)
        return _answer(opened)

    async def encode(request: Request) -> JSONResponse:
        try:
            return _answer(_payloads(await request.json()))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    return Starlette(
        routes=[Route("/decode", decode, methods=["POST"]), Route("/encode", encode, methods=["POST"])],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=origins,
                allow_methods=["POST", "OPTIONS"],
                allow_headers=["content-type", "x-namespace", "authorization"],
                allow_credentials=True,
            )
        ],
    )
