"""docker-compose.yml: valid against the Compose specification, and consistent with the settings."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from memsaga.cli import app
from memsaga.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    schema_file = resources.files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json"
    schema = json.loads(schema_file.read_text())
    jsonschema.validate(compose, schema)  # raises with the offending path on any deviation


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment must be a mapping"
    return {str(k): str(v) for k, v in env.items()}


def _published(service: dict[str, Any]) -> set[int]:
    return {int(str(p).split(":")[-1]) for p in service.get("ports", [])}


def test_app_services_use_only_known_settings(compose: dict[str, Any]) -> None:
    fields = {f"MEMSAGA_{name.upper()}" for name in Settings.model_fields}
    used = set()
    for service in compose["services"].values():
        used |= {k for k in _environment(service) if k.startswith("MEMSAGA_")}
    assert used, "the app services must be configured through MEMSAGA_ variables"
    assert used <= fields, f"unknown settings: {sorted(used - fields)}"


def test_urls_point_at_the_services_and_their_ports(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = _environment(services["worker"])
    targets = {
        "MEMSAGA_DATABASE_URL": ("postgres", 5432),
        "MEMSAGA_NATS_URL": ("nats", 4222),
        "MEMSAGA_TEMPORAL_ADDRESS": ("temporal", 7233),
        "OTEL_EXPORTER_OTLP_ENDPOINT": ("jaeger", 4318),
    }
    for variable, (host, port) in targets.items():
        match = re.search(r"(?:@|//|^)([a-z]+):(\d+)", env[variable])
        assert match is not None, f"{variable}={env[variable]} names no host:port"
        assert (match.group(1), int(match.group(2))) == (host, port), variable
        assert port in _published(services[host]), f"{host} does not publish {port}"
    assert {8233} <= _published(services["temporal"]), "the Temporal UI port"
    assert {16686} <= _published(services["jaeger"]), "the Jaeger UI port"
    command = " ".join(services["temporal"]["command"])
    assert "CorrelationId=Keyword" in command and "UserId=Keyword" in command


def test_every_role_runs_an_existing_cli_command(compose: dict[str, Any]) -> None:
    commands = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    for name in ("migrate", "worker", "relay", "projector"):
        service = compose["services"][name]
        assert service["command"][0] in commands, f"{name} runs unknown command {service['command'][0]!r}"
        if name != "migrate":
            assert _environment(service)["OTEL_SERVICE_NAME"] == f"memsaga-{name}"


def test_nats_runs_jetstream_syncing_every_write(compose: dict[str, Any]) -> None:
    nats = compose["services"]["nats"]
    command = nats["command"]
    config_file = command[command.index("-c") + 1]
    [mounted] = [c for c in nats["configs"] if c["target"] == config_file]
    content = compose["configs"][mounted["source"]]["content"]
    jetstream = re.search(r"jetstream\s*\{([^}]*)\}", content)
    assert jetstream is not None, content
    settings = dict(re.findall(r"^\s*(\w+)\s*:\s*(\S+)\s*$", jetstream.group(1), re.MULTILINE))
    assert settings["sync_interval"] == "always"
    assert settings["store_dir"] in {v.split(":")[1] for v in nats["volumes"]}  # on the volume
