"""MEMSAGA_LOG_FORMAT=json: one JSON object per log record and line, with the role and the exception."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from memsaga.json_logs import JsonLogFormatter
from tests.projections.roles import Role, dead_address


def test_a_record_is_one_line_of_json_with_its_exception_and_extra_fields() -> None:
    try:
        raise ConnectionRefusedError("nobody listens")
    except ConnectionRefusedError:
        record = logging.LogRecord(
            "projections.relay", logging.ERROR, __file__, 1, "lost %s\nagain", ("NATS",), sys.exc_info()
        )
    record.correlation_id = "chat-42"
    record.unencodable = object()

    line = JsonLogFormatter("relay").format(record)

    assert "\n" not in line
    shown = json.loads(line)
    assert shown["ts"].endswith("+00:00") and shown["ts"][:4].isdigit()  # ISO-8601, UTC
    assert (shown["level"], shown["logger"], shown["role"]) == ("ERROR", "projections.relay", "relay")
    assert shown["message"] == "lost NATS\nagain"
    assert shown["exc"].startswith("Traceback") and "ConnectionRefusedError: nobody listens" in shown["exc"]
    assert shown["correlation_id"] == "chat-42" and shown["unencodable"].startswith("<object object")
    assert not {"args", "msg", "exc_info", "levelno", "pathname"} & set(shown)  # only what says something


async def test_a_role_logs_json_lines_only(tmp_path: Path) -> None:
    nowhere = dead_address()
    environ = {
        "MEMSAGA_DATABASE_URL": f"postgresql://postgres:secret@{nowhere}/memsaga",
        "MEMSAGA_NATS_URL": f"nats://{nowhere}",
        "MEMSAGA_STATE_DIR": str(tmp_path / "state"),
        "MEMSAGA_LOG_FORMAT": "json",
    }
    relay = Role(tmp_path, environ, "relay")
    try:
        await relay.said("waiting for PostgreSQL", timeout=30)
        relay.assert_clean_exit(await relay.terminate())
    finally:
        relay.kill()

    records = [json.loads(line) for line in relay.err.read_text().splitlines()]
    waiting = [r for r in records if "waiting for PostgreSQL" in r["message"]]
    assert len(waiting) == 1 and waiting[0]["level"] == "WARNING" and waiting[0]["role"] == "relay"
    assert waiting[0]["logger"].startswith("memsaga") and "secret" not in relay.output()


def test_an_unknown_format_is_refused_at_start_with_exit_3() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMSAGA_")}
    env |= {"MEMSAGA_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none", "MEMSAGA_LOG_FORMAT": "xml"}
    done = subprocess.run(
        [sys.executable, "-m", "memsaga", "relay"], env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 3 and "Traceback" not in done.stderr
    assert "MEMSAGA_LOG_FORMAT='xml': Input should be 'text' or 'json'" in done.stderr
