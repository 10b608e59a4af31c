"""Settings are checked once, before any command: a bad variable is named, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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

    assert done.returncode == 3 and "Traceback" not in done.stderr  # configuration
    assert "MEMSAGA_PROJECTION_MAX_DELIVER='abc'" in done.stderr and "valid integer" in done.stderr


def test_an_unknown_adapter_names_the_choices() -> None:
    done = memsaga("extract", "--user", "u", "--text", "I live in Rome.", MEMSAGA_EXTRACTOR="nonsense")

    assert done.returncode == 3 and "Traceback" not in done.stderr
    assert "MEMSAGA_EXTRACTOR='nonsense': choose one of rules, http" in done.stderr


def test_help_works_whatever_the_settings() -> None:
    done = memsaga("extract", "--help", MEMSAGA_PROJECTION_MAX_DELIVER="abc")
    assert done.returncode == 0 and "--user" in done.stdout


@pytest.mark.parametrize("command", [["extract", "--user", "u", "--text", "I live in Rome."], ["worker"]])
def test_an_http_adapter_without_its_url_is_refused_before_anything_connects(command: list[str]) -> None:
    done = memsaga(*command, MEMSAGA_EMBEDDER="http")

    assert done.returncode == 3 and "Traceback" not in done.stderr
    assert "needs MEMSAGA_EMBEDDING_BASE_URL" in done.stderr
    assert "Temporal" not in done.stderr and "PostgreSQL" not in done.stderr  # it never got that far


def test_with_json_an_error_is_one_json_object_on_stdout() -> None:
    bad_setting = memsaga("memories", "--user", "u", "--json", MEMSAGA_PROJECTION_MAX_DELIVER="abc")
    bad_input = memsaga("search", "--user", "u", "", "--json")

    for done, kind, code in ((bad_setting, "InvalidSettings", 3), (bad_input, "InvalidSearch", 2)):
        assert done.returncode == code and "Traceback" not in done.stderr
        shown = json.loads(done.stdout)
        assert set(shown) == {"error", "message", "hint", "exit_code"} and shown["error"] == kind
        assert shown["exit_code"] == code and shown["hint"]
    assert "MEMSAGA_PROJECTION_MAX_DELIVER='abc'" in json.loads(bad_setting.stdout)["message"]


@pytest.mark.parametrize(
    ("episode", "code", "said"),
    [
        (b"I live in Sevilla, ma\xf1ana I fly.", 2, "is not UTF-8 text"),  # Latin-1, not UTF-8
        (b"I live in Rome.\x00", 2, "NUL character"),
        (None, 5, "no such file"),
    ],
)
def test_a_bad_episode_is_refused_before_anything_connects(
    episode: bytes | None, code: int, said: str, tmp_path: Path
) -> None:
    file = tmp_path / "episode.txt"
    if episode is not None:
        file.write_bytes(episode)

    done = memsaga("extract", "--user", "u", "--file", str(file))

    assert done.returncode == code and "Traceback" not in done.stderr and said in done.stderr
    assert "Temporal" not in done.stderr and "PostgreSQL" not in done.stderr  # nothing was started or written


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (["memories", "--user", "u"], 4),
        (["trace", "extract-x"], 4),
        # (not `worker`: it waits for its services, tests/projections/test_roles_wait.py)
        (["status", "extract-x"], 4),
        (["stats"], 4),
        (["retract", "m-1", "--reason", "asked"], 4),
        (["trace"], 2),
        (["extract", "--user", "u"], 2),
        (["extract", "--user", "u", "I live in Rome."], 4),  # the text as an argument: on to Temporal
        (["extract", "--user", "u", "I live in Rome.", "--text", "Twice?"], 2),
    ],
)
def test_each_kind_of_error_has_its_exit_code(command: list[str], code: int) -> None:
    done = memsaga(*command)

    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.startswith("error: ")


def test_help_lists_the_exit_codes() -> None:
    done = memsaga("--help")

    assert done.returncode == 0 and "Exit codes" in done.stdout and "5 not found" in done.stdout


@pytest.mark.parametrize("key", ["abc", "not base64 at all!", "QUJD" * 20])
def test_a_malformed_master_key_stops_every_command_without_showing_it(key: str) -> None:
    done = memsaga("forget", "--user", "u", MEMSAGA_MASTER_KEY=key)
    assert done.returncode == 3, done.stderr
    assert "MEMSAGA_MASTER_KEY=(hidden)" in done.stderr and "memsaga keys new" in done.stderr
    assert key not in done.stderr and "Traceback" not in done.stderr


def test_no_master_key_is_named_with_how_to_make_one(tmp_path: Path) -> None:
    done = memsaga("worker", MEMSAGA_STATE_DIR=str(tmp_path))
    assert done.returncode == 3, done.stderr
    assert "no master key" in done.stderr and "MEMSAGA_MASTER_KEY" in done.stderr
