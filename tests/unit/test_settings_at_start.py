"""Settings are checked once, before any command: a bad variable is named, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CLOSED = "127.0.0.1:9"  # nothing listens: a command that got as far as connecting would say so


def memsaga(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMSAGA_")}
    env |= {
        "MEMSAGA_DATABASE_URL": f"postgresql://nobody@{CLOSED}/none",
        "MEMSAGA_TEMPORAL_ADDRESS": CLOSED,
        "MEMSAGA_NATS_URL": f"nats://{CLOSED}",
        **variables,
    }
    return subprocess.run(
        [sys.executable, "-m", "memsaga", *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "command",
    [
        ["memories", "--user", "u"],
        ["extract", "--user", "u", "--text", "I live in Rome."],
        ["status", "extract-x"],
        ["worker"],
        ["trace", "extract-x"],
        ["migrate"],
        ["dev", "status"],
        ["search", "--user", "u", "where?"],
    ],
)
def test_a_malformed_number_is_named_with_its_value(command: list[str]) -> None:
    done = memsaga(*command, MEMSAGA_PROJECTION_MAX_DELIVER="abc")

    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "MEMSAGA_PROJECTION_MAX_DELIVER='abc'" in done.stderr and "valid integer" in done.stderr


def test_an_unknown_adapter_names_the_choices() -> None:
    done = memsaga("extract", "--user", "u", "--text", "I live in Rome.", MEMSAGA_EXTRACTOR="nonsense")

    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "MEMSAGA_EXTRACTOR='nonsense': choose one of rules, http" in done.stderr


def test_help_works_whatever_the_settings() -> None:
    done = memsaga("extract", "--help", MEMSAGA_PROJECTION_MAX_DELIVER="abc")
    assert done.returncode == 0 and "--user" in done.stdout


@pytest.mark.parametrize("command", [["extract", "--user", "u", "--text", "I live in Rome."], ["worker"]])
def test_an_http_adapter_without_its_url_is_refused_before_anything_connects(command: list[str]) -> None:
    done = memsaga(*command, MEMSAGA_EMBEDDER="http")

    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "needs MEMSAGA_EMBEDDING_BASE_URL" in done.stderr
    assert "Temporal" not in done.stderr and "PostgreSQL" not in done.stderr  # it never got that far


def test_with_json_an_error_is_one_json_object_on_stdout() -> None:
    bad_setting = memsaga("memories", "--user", "u", "--json", MEMSAGA_PROJECTION_MAX_DELIVER="abc")
    bad_input = memsaga("search", "--user", "u", "", "--json")

    for done, kind in ((bad_setting, "InvalidSettings"), (bad_input, "InvalidSearch")):
        assert done.returncode == 1 and "Traceback" not in done.stderr
        shown = json.loads(done.stdout)
        assert set(shown) == {"error", "message"} and shown["error"] == kind
    assert "MEMSAGA_PROJECTION_MAX_DELIVER='abc'" in json.loads(bad_setting.stdout)["message"]
